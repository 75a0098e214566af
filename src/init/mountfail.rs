//! Mounting a target filesystem and, when that fails, saying why: the errno, the kernel's own
//! messages about the device (read from /dev/kmsg), and a packing hint only when the kernel
//! says a module is missing (a vfat codepage or IO charset, or the filesystem itself).

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Result};
use rustix::io::Errno;

use crate::config::layout::FsKind;
use crate::disk::vfat;

/// Most kernel lines quoted in one error.
const MAX_KERNEL_LINES: usize = 6;

/// The kernel log from "now" on: records written after [`KmsgTail::open`].
pub struct KmsgTail(Option<File>);

impl KmsgTail {
    /// Opens /dev/kmsg at its end (non-blocking); without it the tail is simply empty.
    pub fn open() -> Self {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f));
        KmsgTail(f.ok())
    }

    /// The message text of every record since [`KmsgTail::open`] (one read is one record).
    pub fn read(mut self) -> Vec<String> {
        let Some(f) = self.0.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(record_text(&String::from_utf8_lossy(&buf[..n]))),
                // EPIPE: records were overwritten meanwhile; the next read goes on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// The message of one /dev/kmsg record (`prio,seq,time,flags;message\n KEY=value...`).
pub fn record_text(rec: &str) -> Option<String> {
    let (_, rest) = rec.split_once(';')?;
    let msg = rest.lines().next()?.trim_end();
    (!msg.is_empty()).then(|| msg.to_string())
}

/// The kernel's name of a partition node in its messages (`/dev/nvme0n1p1` → `nvme0n1p1`).
fn kernel_name(node: &str) -> &str {
    node.rsplit('/').next().unwrap_or(node)
}

/// The one-line explanation of a failed mount of `node` as `fs`: the errno, the kernel's
/// lines that name the device or the filesystem, and a hint when a module is missing. Pure.
pub fn explain(fs: FsKind, node: &str, errno: Errno, kernel: &[String]) -> String {
    let fstype = fs.name();
    let dev = kernel_name(node);
    let about: Vec<&str> = kernel
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains(dev) || l.contains(fstype) || l.contains("FAT-fs"))
        .filter(|l| !l.starts_with("anemos:"))
        .take(MAX_KERNEL_LINES)
        .collect();
    let mut s = std::io::Error::from_raw_os_error(errno.raw_os_error()).to_string();
    if !about.is_empty() {
        s.push_str("; kernel: ");
        s.push_str(&about.join(" | "));
    }
    let missing_nls = about
        .iter()
        .any(|l| l.contains("codepage") || l.contains("IO charset"));
    if fs == FsKind::Vfat && missing_nls {
        s.push_str(&format!(
            " (the vfat mount options {:?} need codepage modules: pack with --module {})",
            vfat::MOUNT_OPTIONS.to_string_lossy(),
            vfat::MOUNT_NLS_MODULES.join(" ")
        ));
    } else if errno == Errno::NODEV {
        s.push_str(&format!(
            " (the kernel has no {fstype} filesystem: pack its module with --module {fstype})"
        ));
    }
    s
}

/// Mount data for `fs`: vfat gets explicit codepage and IO charset, so the modules it needs
/// do not depend on the kernel's configured defaults.
pub fn mount_data(fs: FsKind) -> Option<&'static CStr> {
    (fs == FsKind::Vfat).then_some(vfat::MOUNT_OPTIONS)
}

/// Mounts `node` as `fs` on `dst`; on failure the error names the real cause ([`explain`]).
pub fn mount(fs: FsKind, node: &str, dst: &str) -> Result<()> {
    let fstype = fs.name();
    let tail = KmsgTail::open();
    let r = rustix::mount::mount(
        node,
        dst,
        fstype,
        rustix::mount::MountFlags::empty(),
        mount_data(fs),
    );
    if let Err(errno) = r {
        let why = explain(fs, node, errno, &tail.read());
        bail!("mounting {node} ({fstype}) on {dst}: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errno's text as this libc words it, e.g. "Invalid argument (os error 22)".
    fn os_error(errno: i32) -> String {
        std::io::Error::from_raw_os_error(errno).to_string()
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kmsg_records_give_their_message() {
        assert_eq!(
            record_text(
                "3,812,9012345,-;FAT-fs (vda1): codepage cp437 not found\n SUBSYSTEM=block\n"
            )
            .as_deref(),
            Some("FAT-fs (vda1): codepage cp437 not found")
        );
        assert_eq!(record_text("no separator"), None);
        assert_eq!(record_text("6,1,2,-;\n"), None);
    }

    #[test]
    fn io_error_is_not_blamed_on_codepages() {
        let k = lines(&[
            "nvme nvme0: 1/0/0 default/read/poll queues",
            "FAT-fs (nvme0n1p1): logical sector size too small for device (logical sector size = 512)",
            "anemos: mounting",
        ]);
        let m = explain(FsKind::Vfat, "/dev/nvme0n1p1", Errno::INVAL, &k);
        assert_eq!(
            m,
            format!(
                "{}; kernel: FAT-fs (nvme0n1p1): logical sector size too small for device (logical sector size = 512)",
                os_error(libc::EINVAL)
            )
        );
        assert!(!m.contains("module"), "{m}");
        let m = explain(FsKind::Vfat, "/dev/vda1", Errno::IO, &[]);
        assert_eq!(m, os_error(libc::EIO));
        assert!(m.ends_with("(os error 5)"), "{m}");
    }

    #[test]
    fn missing_codepage_names_the_modules() {
        let k = lines(&["FAT-fs (vda1): IO charset ascii not found"]);
        let m = explain(FsKind::Vfat, "/dev/vda1", Errno::INVAL, &k);
        assert!(
            m.contains("kernel: FAT-fs (vda1): IO charset ascii not found"),
            "{m}"
        );
        assert!(
            m.ends_with("pack with --module nls_cp437 nls_ascii)"),
            "{m}"
        );
    }

    #[test]
    fn unknown_filesystem_names_its_module() {
        let m = explain(FsKind::Xfs, "/dev/vda4", Errno::NODEV, &[]);
        assert_eq!(
            m,
            format!(
                "{} (the kernel has no xfs filesystem: pack its module with --module xfs)",
                os_error(libc::ENODEV)
            )
        );
    }

    #[test]
    fn only_vfat_gets_mount_data() {
        assert_eq!(mount_data(FsKind::Vfat), Some(vfat::MOUNT_OPTIONS));
        assert_eq!(mount_data(FsKind::Ext4), None);
    }
}
