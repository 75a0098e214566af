//! Creating the `/dev/disk/by-*` symlinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A link name as a relative path of normal components only.
pub(super) fn safe_rel(name: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    ok.then(|| parts.iter().collect())
}

/// The device node a target kernel name stands for, relative to `/dev` (`cciss!c0d0` is
/// `cciss/c0d0`, as in udev).
pub(super) fn node_rel(kname: &str) -> Option<PathBuf> {
    safe_rel(&kname.replace('!', "/"))
}

/// `../../vda1` for `by-id/x`: one `..` per component of the link path.
pub(super) fn relative_target(rel: &Path, node: &Path) -> PathBuf {
    let mut t = PathBuf::new();
    for _ in rel.components() {
        t.push("..");
    }
    t.push(node);
    t
}

/// Lexically resolves `..` and `.` components.
pub(super) fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Creates the links under `<dev>/disk`, with relative targets like udev's (`../../vda1`),
/// and returns how many of them are in place afterwards.
///
/// Existing links at the same path are replaced atomically (a temporary link renamed over the
/// old one), so the call is idempotent. Stale links are removed: symlinks under `<dev>/disk`
/// that are not in `links` and either point to one of the devices in `links` or dangle.
/// Links to other, existing devices are left alone, so callers may pass one device at a time.
/// Empty directories left behind are removed.
///
/// When two entries want the same path for different devices, the first wins (udev would use
/// link priorities). Unsafe names (`..`, empty components) and per-link failures are logged
/// and skipped; only failing to create `<dev>/disk` is an error.
pub fn create_links(dev: &Path, links: &[(String, String)]) -> io::Result<usize> {
    let root = dev.join("disk");
    fs::create_dir_all(&root)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", root.display())))?;
    let mut wanted: BTreeMap<PathBuf, PathBuf> = BTreeMap::new(); // link rel path -> node rel path
    for (name, kname) in links {
        let (Some(rel), Some(node)) = (safe_rel(name), node_rel(kname)) else {
            log::warn!("not creating /dev/disk/{name} -> {kname}: unsafe name");
            continue;
        };
        match wanted.get(&rel) {
            Some(other) if *other != node => {
                log::warn!(
                    "/dev/disk/{name}: claimed by {} and {kname}; keeping the first",
                    other.display()
                );
            }
            Some(_) => {}
            None => {
                wanted.insert(rel, node);
            }
        }
    }
    let mut placed = 0;
    for (rel, node) in &wanted {
        let path = root.join(rel);
        match place_link(&path, &relative_target(rel, node)) {
            Ok(()) => placed += 1,
            Err(e) => log::warn!("creating {}: {e}", path.display()),
        }
    }
    let nodes: BTreeSet<PathBuf> = wanted.values().map(|n| dev.join(n)).collect();
    prune(&root, &root, &wanted, &nodes);
    Ok(placed)
}

/// Makes `path` a symlink to `target`, unless it already is one.
pub(super) fn place_link(path: &Path, target: &Path) -> io::Result<()> {
    if fs::read_link(path).is_ok_and(|cur| cur == target) {
        return Ok(());
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "link path has no parent",
        ));
    };
    fs::create_dir_all(dir)?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        ));
    }
    let tmp = dir.join(format!(".{}.anemos-tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Removes stale symlinks below `dir` (see [`create_links`]) and then empty directories.
pub(super) fn prune(
    root: &Path,
    dir: &Path,
    wanted: &BTreeMap<PathBuf, PathBuf>,
    nodes: &BTreeSet<PathBuf>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            prune(root, &path, wanted, nodes);
            if fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                let _ = fs::remove_dir(&path);
            }
        } else if ft.is_symlink() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            if wanted.contains_key(rel) {
                continue;
            }
            let Ok(target) = fs::read_link(&path) else {
                continue;
            };
            let dest = lexical(&path.parent().unwrap_or(root).join(target));
            if nodes.contains(&dest) || fs::symlink_metadata(&dest).is_err() {
                log::debug!("removing stale link {}", path.display());
                let _ = fs::remove_file(&path);
            }
        }
    }
}
