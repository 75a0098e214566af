//! Chroot support shared by the image builder and the init's install stage: the running
//! system's API filesystems bound into a target root, and its resolv.conf lent to it, both
//! undone when dropped.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// API filesystems inside a chroot target, unmounted when dropped.
pub struct ChrootMounts {
    points: Vec<PathBuf>,
    resolv: Option<ResolvSwap>,
}

/// The target's /etc/resolv.conf as it was before the deploy image's was copied in.
struct ResolvSwap {
    path: PathBuf,
    ours: Vec<u8>,
    before: Before,
}

enum Before {
    Missing,
    File(Vec<u8>),
    Symlink(PathBuf),
}

impl ChrootMounts {
    /// /proc, /sys, /dev and /run of the running system (the deploy image's own /run holds
    /// nothing of a running host system) bound into `root`, and its resolv.conf copied in.
    pub fn new(root: &Path) -> Result<ChrootMounts> {
        Self::with(root, &["proc", "sys", "dev", "run"])
    }

    /// /proc, /sys and /dev only, for a build host: binding the host's /run would make tools
    /// in the chroot (systemctl, invoke-rc.d) believe the host's init is running there.
    pub fn api(root: &Path) -> Result<ChrootMounts> {
        Self::with(root, &["proc", "sys", "dev"])
    }

    fn with(root: &Path, dirs: &[&str]) -> Result<ChrootMounts> {
        let mut points: Vec<PathBuf> = Vec::new();
        for dst in dirs {
            let src = format!("/{dst}");
            let d = root.join(dst);
            fs::create_dir_all(&d)?;
            if let Err(e) = rustix::mount::mount_bind_recursive(src.as_str(), &d) {
                // What was mounted so far is undone by dropping it.
                drop(ChrootMounts {
                    points,
                    resolv: None,
                });
                return Err(e).with_context(|| format!("bind-mounting {src} on {}", d.display()));
            }
            points.push(d);
        }
        Ok(ChrootMounts {
            points,
            resolv: swap_in_resolv_conf(Path::new("/etc/resolv.conf"), root),
        })
    }
}

/// Puts the deploy image's /etc/resolv.conf (what the network stage configured) in the target
/// for the chroot's lifetime, so a provision step that downloads resolves names. A copy, not a
/// bind mount: provision may replace the file (a package making it a symlink) and must be able
/// to. Undone on drop unless provision changed it.
fn swap_in_resolv_conf(src: &Path, root: &Path) -> Option<ResolvSwap> {
    let ours = fs::read(src).ok()?;
    if !root.join("etc").is_dir() {
        return None;
    }
    let path = root.join("etc/resolv.conf");
    let before = match fs::symlink_metadata(&path) {
        Err(_) => Before::Missing,
        Ok(md) if md.file_type().is_symlink() => Before::Symlink(fs::read_link(&path).ok()?),
        Ok(md) if md.is_file() => Before::File(fs::read(&path).ok()?),
        Ok(_) => return None,
    };
    if matches!(before, Before::Symlink(_)) {
        fs::remove_file(&path).ok()?;
    }
    if let Err(e) = fs::write(&path, &ours) {
        log::warn!("chroot: writing {}: {e}", path.display());
        if let Before::Symlink(t) = &before {
            let _ = std::os::unix::fs::symlink(t, &path);
        }
        return None;
    }
    Some(ResolvSwap { path, ours, before })
}

impl ResolvSwap {
    fn undo(self) {
        let unchanged = fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file())
            && fs::read(&self.path).is_ok_and(|c| c == self.ours);
        if !unchanged {
            log::info!(
                "chroot: provision changed {}; left as it is",
                self.path.display()
            );
            return;
        }
        let r = match self.before {
            Before::Missing => fs::remove_file(&self.path),
            Before::File(c) => fs::write(&self.path, c),
            Before::Symlink(t) => {
                fs::remove_file(&self.path).and_then(|_| std::os::unix::fs::symlink(t, &self.path))
            }
        };
        if let Err(e) = r {
            log::warn!("chroot: restoring {}: {e}", self.path.display());
        }
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        if let Some(r) = self.resolv.take() {
            r.undo();
        }
        for p in self.points.iter().rev() {
            if let Err(e) = rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH) {
                log::warn!("unmounting {}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_is_swapped_in_and_restored() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("image-resolv.conf");
        fs::write(&src, "nameserver 10.0.2.3\nsearch lab.example.org\n").unwrap();
        let root = d.path().join("t");
        fs::create_dir_all(root.join("etc")).unwrap();
        let rc = root.join("etc/resolv.conf");
        // Missing before: present during, gone after.
        let s = swap_in_resolv_conf(&src, &root).unwrap();
        assert_eq!(fs::read(&rc).unwrap(), fs::read(&src).unwrap());
        s.undo();
        assert!(!rc.exists());
        // A file before: restored byte for byte.
        fs::write(&rc, "nameserver 192.0.2.1\n").unwrap();
        swap_in_resolv_conf(&src, &root).unwrap().undo();
        assert_eq!(fs::read_to_string(&rc).unwrap(), "nameserver 192.0.2.1\n");
        // A symlink before (systemd-resolved): a file during, the same symlink after.
        fs::remove_file(&rc).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", &rc).unwrap();
        let s = swap_in_resolv_conf(&src, &root).unwrap();
        assert!(fs::symlink_metadata(&rc).unwrap().is_file());
        s.undo();
        assert_eq!(
            fs::read_link(&rc).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        // Provision replaced it: left as provision made it.
        fs::remove_file(&rc).unwrap();
        let s = swap_in_resolv_conf(&src, &root).unwrap();
        fs::write(&rc, "nameserver 203.0.113.9\n").unwrap();
        s.undo();
        assert_eq!(fs::read_to_string(&rc).unwrap(), "nameserver 203.0.113.9\n");
    }
}
