//! Filling an [`Archive`] from host trees, single files and tar archives.
//!
//! Tree and tar entries are checked for paths escaping their root (`..`, and absolute paths
//! in tars) before anything is added. Owners are reset to 0 unless `keep_owner` is set.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

use super::archive::{Archive, ArchiveError, Data, Kind, Node, NEWC_MAX_FILE};
use crate::codec;

/// Errors naming the input that caused them.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{origin}: {path}: no such file or directory")]
    Missing { origin: String, path: String },
    #[error("{origin}: reading {path}")]
    Io {
        origin: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: entry {entry:?} escapes the archive root (absolute path or \"..\")")]
    Escapes { origin: String, entry: String },
    #[error(
        "{origin}: hard link {entry:?} points at {target:?}, which is not earlier in the archive"
    )]
    DanglingHardLink {
        origin: String,
        entry: String,
        target: String,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

pub type Result<T> = std::result::Result<T, SourceError>;

fn io_err(origin: &str, path: &Path) -> impl FnOnce(io::Error) -> SourceError {
    let (origin, path) = (origin.to_string(), path.display().to_string());
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            SourceError::Missing { origin, path }
        } else {
            SourceError::Io {
                origin,
                path,
                source: e,
            }
        }
    }
}

fn check_size(origin: &str, dest: &str, size: u64) -> Result<()> {
    if size > NEWC_MAX_FILE {
        return Err(ArchiveError::TooLarge {
            origin: origin.into(),
            path: dest.into(),
            size,
        }
        .into());
    }
    Ok(())
}

/// Adds a host file, symlink, device node or whole directory tree at `dest`.
/// Symlinks are stored as symlinks (never followed); hard links inside a tree are preserved.
pub fn add_host_path(
    a: &mut Archive,
    origin: &str,
    src: &Path,
    dest: &str,
    keep_owner: bool,
) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(io_err(origin, src))?;
    if !md.is_dir() {
        let mut links = HashMap::new();
        return add_one(a, origin, src, &md, dest, keep_owner, &mut links);
    }
    let mut links: HashMap<(u64, u64), u64> = HashMap::new();
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let p = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| src.display().to_string());
            SourceError::Io {
                origin: origin.into(),
                path: p,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = if rel.as_os_str().is_empty() {
            dest.to_string()
        } else {
            format!("{}/{}", dest, rel.display())
        };
        let md = entry
            .path()
            .symlink_metadata()
            .map_err(io_err(origin, entry.path()))?;
        add_one(
            a,
            origin,
            entry.path(),
            &md,
            &target,
            keep_owner,
            &mut links,
        )?;
    }
    Ok(())
}

fn add_one(
    a: &mut Archive,
    origin: &str,
    src: &Path,
    md: &fs::Metadata,
    dest: &str,
    keep_owner: bool,
    links: &mut HashMap<(u64, u64), u64>,
) -> Result<()> {
    let ft = md.file_type();
    let perm = md.mode() & 0o7777;
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        check_size(origin, dest, md.len())?;
        Kind::File(Data::Path {
            path: src.to_path_buf(),
            len: md.len(),
        })
    } else if ft.is_symlink() {
        let t = fs::read_link(src).map_err(io_err(origin, src))?;
        Kind::Symlink(t.to_string_lossy().into_owned())
    } else if ft.is_char_device() {
        Kind::Char(major(md.rdev()), minor(md.rdev()))
    } else if ft.is_block_device() {
        Kind::Block(major(md.rdev()), minor(md.rdev()))
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    };
    let link_group = if ft.is_file() && md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        Some(match links.get(&key) {
            Some(g) => *g,
            None => {
                let g = a.new_link_group();
                links.insert(key, g);
                g
            }
        })
    } else {
        None
    };
    let (uid, gid) = if keep_owner {
        (md.uid(), md.gid())
    } else {
        (0, 0)
    };
    if kind == Kind::Dir {
        a.mkdir_p(origin, dest)?;
    }
    a.insert(
        origin,
        dest,
        Node {
            kind,
            perm,
            uid,
            gid,
            link_group,
        },
    )?;
    Ok(())
}

/// Linux's dev_t encoding (glibc/musl `major()`/`minor()`).
fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32
}
fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32
}

/// Checks a tar entry path: relative, no `..`.
pub fn tar_path_ok(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Adds every entry of a tar archive (plain, gzip, zstd or xz, detected from its content)
/// under `dest_root`. Fails before adding anything if an entry escapes its root.
pub fn add_tar(
    a: &mut Archive,
    origin: &str,
    tar_path: &Path,
    dest_root: &str,
    keep_owner: bool,
) -> Result<()> {
    let f = fs::File::open(tar_path).map_err(io_err(origin, tar_path))?;
    let rd = codec::auto_decoder(f).map_err(io_err(origin, tar_path))?;
    let mut staged = Archive::new();
    let mut groups: HashMap<String, u64> = HashMap::new();
    let mut ar = tar::Archive::new(rd);
    let entries = ar.entries().map_err(io_err(origin, tar_path))?;
    for e in entries {
        let mut e = e.map_err(io_err(origin, tar_path))?;
        let raw = e.path().map_err(io_err(origin, tar_path))?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        if !tar_path_ok(&raw) {
            return Err(SourceError::Escapes {
                origin: origin.into(),
                entry: name,
            });
        }
        let h = e.header();
        let perm = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = if keep_owner {
            (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
        } else {
            (0, 0)
        };
        let dest = format!("{}/{}", dest_root, name);
        let et = h.entry_type();
        let kind = match et {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                check_size(origin, &dest, size)?;
                let mut buf = Vec::with_capacity(size.min(1 << 30) as usize);
                e.read_to_end(&mut buf).map_err(io_err(origin, tar_path))?;
                Kind::File(Data::Bytes(buf))
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name()
                    .map_err(io_err(origin, tar_path))?
                    .unwrap_or_default();
                Kind::Symlink(t.to_string_lossy().into_owned())
            }
            tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .map_err(io_err(origin, tar_path))?
                    .unwrap_or_default();
                let tn = t.to_string_lossy().into_owned();
                if !tar_path_ok(&t) {
                    return Err(SourceError::Escapes {
                        origin: origin.into(),
                        entry: format!("{name} -> {tn}"),
                    });
                }
                let key = super::archive::normalize(origin, &format!("{dest_root}/{tn}"))?;
                let Some(target) = staged.get(&key).cloned() else {
                    return Err(SourceError::DanglingHardLink {
                        origin: origin.into(),
                        entry: name,
                        target: tn,
                    });
                };
                let g = *groups
                    .entry(key.clone())
                    .or_insert_with(|| staged.new_link_group());
                let mut t2 = target.clone();
                t2.link_group = Some(g);
                staged.insert(origin, &key, t2.clone())?;
                staged.insert(origin, &dest, t2)?;
                continue;
            }
            tar::EntryType::Char => Kind::Char(
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            ),
            tar::EntryType::Block => Kind::Block(
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            ),
            tar::EntryType::Fifo => Kind::Fifo,
            // pax headers and GNU long names are consumed by the tar crate; skip the rest.
            _ => continue,
        };
        if kind == Kind::Dir {
            staged.mkdir_p(origin, &dest)?;
        }
        staged.insert(
            origin,
            &dest,
            Node {
                kind,
                perm,
                uid,
                gid,
                link_group: None,
            },
        )?;
    }
    // Nothing was added to `a` until the whole archive was checked.
    let remap: HashMap<u64, u64> = HashMap::new();
    let mut remap = remap;
    for (path, node) in staged.iter() {
        let mut n = node.clone();
        if let Some(g) = n.link_group {
            n.link_group = Some(*remap.entry(g).or_insert_with(|| a.new_link_group()));
        }
        if n.kind == Kind::Dir {
            a.mkdir_p(origin, path)?;
        }
        a.insert(origin, path, n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn tree_with_hardlink_and_symlink() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("t/sub")).unwrap();
        fs::write(d.path().join("t/sub/f"), b"data").unwrap();
        fs::hard_link(d.path().join("t/sub/f"), d.path().join("t/g")).unwrap();
        symlink("sub/f", d.path().join("t/l")).unwrap();
        let mut a = Archive::new();
        add_host_path(&mut a, "--rootfs", &d.path().join("t"), "", false).unwrap();
        let f = a.get("sub/f").unwrap();
        let g = a.get("g").unwrap();
        assert!(f.link_group.is_some());
        assert_eq!(f.link_group, g.link_group);
        assert_eq!(a.get("l").unwrap().kind, Kind::Symlink("sub/f".into()));
    }

    #[test]
    fn missing_source_names_input() {
        let mut a = Archive::new();
        let e =
            add_host_path(&mut a, "--add", Path::new("/nonexistent/x"), "x", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--add: /nonexistent/x: no such file or directory"
        );
    }

    fn tar_with(name: &[u8]) -> Vec<u8> {
        // Build the header by hand: the tar crate refuses to write ".." paths itself.
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_escapes_are_refused_and_nothing_added() {
        let d = tempfile::tempdir().unwrap();
        for bad in [&b"../evil"[..], b"/etc/shadow", b"a/../../b"] {
            let p = d.path().join("bad.tar");
            fs::write(&p, tar_with(bad)).unwrap();
            let mut a = Archive::new();
            let e = add_tar(&mut a, "--rootfs", &p, "", false).unwrap_err();
            assert!(e.to_string().contains("escapes the archive root"), "{e}");
            assert!(a.is_empty());
        }
    }

    #[test]
    fn compressed_tar_with_hardlink() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o755);
        b.append_data(&mut h, "bin/busybox", &b"abc"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "bin/sh", "bin/busybox").unwrap();
        let raw = b.into_inner().unwrap();
        let ((), z) = codec::compress_with::<_, _, io::Error>(
            codec::Compression::Zstd,
            None,
            Vec::new(),
            |w| w.write_all(&raw),
        )
        .unwrap();
        let p = d.path().join("r.tar.zst");
        fs::write(&p, z).unwrap();
        let mut a = Archive::new();
        add_tar(&mut a, "--rootfs", &p, "", false).unwrap();
        let bb = a.get("bin/busybox").unwrap();
        let sh = a.get("bin/sh").unwrap();
        assert!(bb.link_group.is_some() && bb.link_group == sh.link_group);
        assert_eq!(bb.perm, 0o755);
    }
}
