//! `anemos inspect --cat`: the visitors and the in-image symlink resolution behind [`cat`].
//!
//! [`cat`]: super::cat

use std::collections::{HashMap, VecDeque};
use std::io::Read;

use super::walk::{link_key, EntryAt, VisitError, Visitor};
use super::{canonical, EntryInfo, Segment, MAX_CAT_SYMLINKS};

/// The last entry seen for one path, with its data if it is a regular file.
pub(super) struct CatHit {
    pub(super) archive: usize,
    pub(super) info: EntryInfo,
    pub(super) data: Vec<u8>,
}

/// Remembers the last entry whose name matches `wanted`.
pub(super) struct CatScan {
    wanted: String,
    pub(super) hit: Option<CatHit>,
}

impl CatScan {
    pub(super) fn new(wanted: &str) -> Self {
        CatScan {
            wanted: wanted.to_string(),
            hit: None,
        }
    }
}

impl Visitor for CatScan {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if canonical(&info.path) != self.wanted {
            return Ok(());
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).map_err(VisitError::Read)?;
        self.hit = Some(CatHit {
            archive: at.archive,
            info: info.clone(),
            data: content,
        });
        Ok(())
    }
}

/// Rebuilds a hard-linked file's content as the kernel does: the first link creates the file,
/// every later link's data overwrites it from the start without truncating.
pub(super) struct HardlinkFold {
    archive: usize,
    key: (u32, u32, u32),
    pub(super) data: Vec<u8>,
}

impl HardlinkFold {
    pub(super) fn new(archive: usize, key: (u32, u32, u32)) -> Self {
        HardlinkFold {
            archive,
            key,
            data: Vec::new(),
        }
    }
}

impl Visitor for HardlinkFold {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if at.archive != self.archive || !info.is_file() || link_key(info) != self.key {
            return Ok(());
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).map_err(VisitError::Read)?;
        let overlap = content.len().min(self.data.len());
        self.data[..overlap].copy_from_slice(&content[..overlap]);
        self.data.extend_from_slice(&content[overlap..]);
        Ok(())
    }
}

/// The last entry for every canonical path.
pub(super) fn latest_entries(segments: &[Segment]) -> HashMap<String, &EntryInfo> {
    let mut latest = HashMap::new();
    for entry in segments.iter().flat_map(|s| &s.entries) {
        latest.insert(canonical(&entry.path), entry);
    }
    latest
}

/// Resolves symlinks in `path` using the image's own entries; `None` on too many links.
pub(super) fn resolve_in_image(latest: &HashMap<String, &EntryInfo>, path: &str) -> Option<String> {
    let mut pending: VecDeque<String> = canonical(path)
        .split('/')
        .filter(|c| *c != ".")
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut followed = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        resolved.push(part);
        let here = resolved.join("/");
        let Some(target) = latest
            .get(here.as_str())
            .and_then(|e| e.link_target.as_deref())
        else {
            continue;
        };
        followed += 1;
        if followed > MAX_CAT_SYMLINKS {
            return None;
        }
        resolved.pop();
        if target.starts_with('/') {
            resolved.clear();
        }
        for part in target
            .split('/')
            .rev()
            .filter(|c| !c.is_empty() && *c != ".")
        {
            pending.push_front(part.to_string());
        }
    }
    Some(if resolved.is_empty() {
        ".".to_string()
    } else {
        resolved.join("/")
    })
}
