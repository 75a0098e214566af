//! `anemos inspect --extract`: writes entries under a destination directory without ever
//! following a symlink out of it.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::listing::kind_name;
use super::walk::{link_key, EntryAt, VisitError, Visitor};
use super::{
    safe_components, EntryInfo, ExtractSummary, InspectError, MAX_EXTRACT_SYMLINKS, S_IFBLK,
    S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG,
};

/// Metadata applied once everything is written.
struct Deferred {
    mode: u32,
    mtime: u32,
}

/// Writes entries under `dest`.
pub(super) struct Extractor {
    image: PathBuf,
    dest: PathBuf,
    pub(super) summary: ExtractSummary,
    archive: Option<usize>,
    links: HashMap<(u32, u32, u32), PathBuf>,
    deferred: HashMap<PathBuf, Deferred>,
    buffer: Vec<u8>,
}

/// Result of one extraction step; `Err` is a complete visitor error.
type Step<T> = Result<T, VisitError>;

impl Extractor {
    pub(super) fn new(image: &Path, dest: &Path) -> Self {
        Extractor {
            image: image.to_path_buf(),
            dest: dest.to_path_buf(),
            summary: ExtractSummary::default(),
            archive: None,
            links: HashMap::new(),
            deferred: HashMap::new(),
            buffer: vec![0; 64 * 1024],
        }
    }

    fn io_error(&self, info: &EntryInfo, target: &Path, source: io::Error) -> VisitError {
        VisitError::Fail(InspectError::Extract {
            image: self.image.clone(),
            entry: info.path.clone(),
            target: target.to_path_buf(),
            source,
        })
    }

    fn refuse(&self, at: &EntryAt, info: &EntryInfo, reason: String) -> VisitError {
        VisitError::Fail(InspectError::UnsafeEntry {
            image: self.image.clone(),
            entry: info.path.clone(),
            segment: at.segment_offset,
            reason,
        })
    }

    /// Resolves `parents` to a real directory under `dest`, creating missing ones and
    /// following symlinks only while they stay inside `dest`.
    fn parent_dir(&self, at: &EntryAt, info: &EntryInfo, parents: &[String]) -> Step<PathBuf> {
        let mut pending: VecDeque<String> = parents.iter().cloned().collect();
        let mut real = self.dest.clone();
        let mut depth = 0usize;
        let mut followed = 0usize;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                if depth == 0 {
                    return Err(self.refuse(
                        at,
                        info,
                        "a symlink on its path points outside the destination".into(),
                    ));
                }
                real.pop();
                depth -= 1;
                continue;
            }
            let next = real.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    followed += 1;
                    if followed > MAX_EXTRACT_SYMLINKS {
                        return Err(self.refuse(
                            at,
                            info,
                            "too many levels of symbolic links".into(),
                        ));
                    }
                    let target = fs::read_link(&next).map_err(|e| self.io_error(info, &next, e))?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        real = self.dest.clone();
                        depth = 0;
                    }
                    for part in target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty() && *c != ".")
                    {
                        pending.push_front(part.to_string());
                    }
                    continue;
                }
                Ok(_) => {
                    let err =
                        io::Error::new(io::ErrorKind::NotADirectory, "a parent is not a directory");
                    return Err(self.io_error(info, &next, err));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&next).map_err(|e| self.io_error(info, &next, e))?;
                }
                Err(e) => return Err(self.io_error(info, &next, e)),
            }
            real = next;
            depth += 1;
        }
        Ok(real)
    }

    /// Removes whatever is at `target` so a new entry can take its place.
    fn clear(&self, info: &EntryInfo, target: &Path) -> Step<()> {
        let result = match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => fs::remove_dir(target),
            Ok(_) => fs::remove_file(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.io_error(info, target, e))
    }

    fn make_dir(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                self.clear(info, target)?;
                fs::create_dir(target).map_err(|e| self.io_error(info, target, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(target).map_err(|e| self.io_error(info, target, e))?;
            }
            Err(e) => return Err(self.io_error(info, target, e)),
        }
        self.defer(target, info);
        self.summary.dirs += 1;
        Ok(())
    }

    fn make_symlink(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        self.clear(info, target)?;
        let link = info.link_target.clone().unwrap_or_default();
        std::os::unix::fs::symlink(&link, target).map_err(|e| self.io_error(info, target, e))?;
        self.deferred.remove(target);
        self.summary.symlinks += 1;
        Ok(())
    }

    fn make_file(&mut self, info: &EntryInfo, target: &Path, data: &mut dyn Read) -> Step<()> {
        let key = link_key(info);
        let first = match self.links.get(&key) {
            Some(first) if info.nlink >= 2 && first.as_path() != target => Some(first.clone()),
            _ => None,
        };
        self.clear(info, target)?;
        let mut file = if let Some(first) = first {
            fs::hard_link(&first, target).map_err(|e| self.io_error(info, target, e))?;
            self.summary.hardlinks += 1;
            OpenOptions::new().write(true).open(target)
        } else {
            if info.nlink >= 2 {
                self.links.insert(key, target.to_path_buf());
            }
            self.summary.files += 1;
            OpenOptions::new().write(true).create_new(true).open(target)
        }
        .map_err(|e| self.io_error(info, target, e))?;
        self.copy_data(info, target, data, &mut file)?;
        self.defer(target, info);
        Ok(())
    }

    /// Copies an entry's data, telling read errors (bad image) from write errors.
    fn copy_data(
        &mut self,
        info: &EntryInfo,
        target: &Path,
        data: &mut dyn Read,
        file: &mut File,
    ) -> Step<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            let n = match data.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(VisitError::Read(e)),
            };
            if let Err(e) = file.write_all(&buffer[..n]) {
                break Err(self.io_error(info, target, e));
            }
        };
        self.buffer = buffer;
        result
    }

    /// Counts a device node, fifo or socket and removes what an earlier entry left on its path.
    fn skip_special(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        self.clear(info, target)?;
        self.deferred.remove(target);
        self.summary.skipped_devices += 1;
        let detail = match info.file_type() {
            S_IFCHR | S_IFBLK => format!(" {},{}", info.rdev.0, info.rdev.1),
            _ => String::new(),
        };
        self.summary.warnings.push(format!(
            "skipped {}{detail}: {}",
            kind_name(info.mode),
            info.path
        ));
        Ok(())
    }

    fn defer(&mut self, target: &Path, info: &EntryInfo) {
        self.deferred.insert(
            target.to_path_buf(),
            Deferred {
                mode: info.mode,
                mtime: info.mtime,
            },
        );
    }

    /// Sets mtimes and permission bits, deepest paths first.
    pub(super) fn apply_deferred(&self) -> Result<(), InspectError> {
        let mut paths: Vec<(&PathBuf, &Deferred)> = self.deferred.iter().collect();
        paths.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, deferred) in paths {
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(deferred.mtime));
            // Best effort: a file we cannot open for this keeps its extraction time.
            if let Ok(file) = File::open(path) {
                let _ = file.set_modified(mtime);
            }
            let mode = deferred.mode & 0o1777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
                InspectError::Extract {
                    image: self.image.clone(),
                    entry: path
                        .strip_prefix(&self.dest)
                        .unwrap_or(path)
                        .display()
                        .to_string(),
                    target: path.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

impl Visitor for Extractor {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if self.archive != Some(at.archive) {
            self.archive = Some(at.archive);
            self.links.clear();
        }
        let parts = safe_components(&info.path).map_err(|reason| self.refuse(at, info, reason))?;
        let Some((name, parents)) = parts.split_last() else {
            if info.is_dir() {
                return Ok(());
            }
            return Err(self.refuse(
                at,
                info,
                "a non-directory entry names the destination itself".into(),
            ));
        };
        let parent = self.parent_dir(at, info, parents)?;
        let target = parent.join(name);
        match info.file_type() {
            S_IFDIR => self.make_dir(info, &target),
            S_IFREG => self.make_file(info, &target, data),
            S_IFLNK => self.make_symlink(info, &target),
            _ => self.skip_special(info, &target),
        }
    }
}
