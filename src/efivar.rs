//! EFI variables through efivarfs: mounting it, writing (overwrite, read back), reading,
//! listing and deleting. Used for the failure report (`crate::failreport`, one variable of our
//! own, which must reach the operator without writing to any disk) and for the firmware's boot
//! entries (`crate::efiboot`, global variables).
//!
//! efivarfs represents a variable as the file `<Name>-<vendor GUID>` whose content is a 4-byte
//! little-endian attribute word followed by the data; a write must carry both in one write(2).
//! Variables with a vendor GUID the kernel does not know are created immutable
//! (FS_IMMUTABLE_FL), so replacing or deleting one clears that flag first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Our vendor GUID: generated once at random for anemos, so our variable can collide with no
/// other vendor's. Never change it (a report written by one version must be found by another).
pub const VENDOR_GUID: &str = "7f5f875b-8674-41cc-bbe0-1a0ef378bd90";
/// The name of the one variable the failure report is kept in.
pub const FAILURE_VAR: &str = "AnemosFailure";

pub const EFI_DIR: &str = "/sys/firmware/efi";
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS: kept across reboots and
/// readable from the running OS.
pub const ATTRIBUTES: u32 = 0x1 | 0x2 | 0x4;

/// Why the variable store cannot be used on this machine.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("no EFI: this machine did not boot through UEFI (no {EFI_DIR})")]
    NoEfi,
    #[error("efivarfs not available: mounting it on {EFIVARS} failed ({0}); the kernel has no efivarfs (load the efivarfs module; a deploy image needs `anemos pack --module efivarfs`) or its EFI runtime services are disabled")]
    NoEfivarfs(io::Error),
}

/// The file name of variable `name` under efivarfs.
pub fn var_file(name: &str) -> String {
    format!("{name}-{VENDOR_GUID}")
}

fn var_path_in(guid: &str, name: &str) -> PathBuf {
    Path::new(EFIVARS).join(format!("{name}-{guid}"))
}

/// The names of the variables of vendor `guid` (sorted).
pub fn list_in(guid: &str) -> io::Result<Vec<String>> {
    let suffix = format!("-{guid}");
    let mut v: Vec<String> = fs::read_dir(EFIVARS)?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(&suffix))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Pure: the efivarfs file content for `data` (attributes first, little-endian).
pub fn with_attributes(data: &[u8]) -> Vec<u8> {
    let mut v = ATTRIBUTES.to_le_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// Pure: the data of an efivarfs file, without its attribute word. None when the file is
/// shorter than the attribute word (an empty or half-created variable).
pub fn strip_attributes(content: &[u8]) -> Option<(u32, &[u8])> {
    let (attr, data) = content.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*attr), data))
}

/// Pure: how `mounts` (/proc/mounts text) has efivarfs on [`EFIVARS`]: None when it is not
/// mounted there, Some(true) read-write, Some(false) read-only (as some systems mount it).
pub fn efivarfs_mounted(mounts: &str) -> Option<bool> {
    mounts.lines().rev().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fstype, opts) = (f.next(), f.next(), f.next(), f.next());
        (at == Some(EFIVARS) && fstype == Some("efivarfs"))
            .then(|| opts.unwrap_or("").split(',').any(|o| o == "rw"))
    })
}

const MOUNT_FLAGS: rustix::mount::MountFlags = rustix::mount::MountFlags::NOSUID
    .union(rustix::mount::MountFlags::NODEV)
    .union(rustix::mount::MountFlags::NOEXEC);

/// Makes sure efivarfs is mounted on [`EFIVARS`]. `modprobe`: on mount failure, try
/// `modprobe efivarfs` and mount again (a full system; the init loads modules itself).
pub fn ensure_mounted(modprobe: bool) -> Result<(), Unavailable> {
    if !Path::new(EFI_DIR).is_dir() {
        return Err(Unavailable::NoEfi);
    }
    match efivarfs_mounted(&fs::read_to_string("/proc/mounts").unwrap_or_default()) {
        Some(true) => return Ok(()),
        Some(false) => {
            // Mounted read-only: writing and deleting need it read-write. If the remount
            // fails, reading still works and a write or delete says why it cannot.
            let _ = rustix::mount::mount_remount(EFIVARS, MOUNT_FLAGS, "");
            return Ok(());
        }
        None => {}
    }
    let mount = || {
        rustix::mount::mount("efivarfs", EFIVARS, "efivarfs", MOUNT_FLAGS, None)
            .map_err(io::Error::from)
    };
    match mount() {
        Ok(()) => Ok(()),
        Err(e) if modprobe => {
            let loaded = std::process::Command::new("modprobe")
                .arg("efivarfs")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if loaded {
                mount().map_err(Unavailable::NoEfivarfs)
            } else {
                Err(Unavailable::NoEfivarfs(e))
            }
        }
        Err(e) => Err(Unavailable::NoEfivarfs(e)),
    }
}

/// Clears FS_IMMUTABLE_FL on an existing variable file (efivarfs sets it on variables of
/// vendors it does not know), so it can be rewritten or deleted.
fn make_mutable(path: &Path) -> io::Result<()> {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let f = fs::File::open(path)?;
    let flags = ioctl_getflags(&f)?;
    if flags.contains(IFlags::IMMUTABLE) {
        ioctl_setflags(&f, flags - IFlags::IMMUTABLE)?;
    }
    Ok(())
}

/// Reads variable `name`: None when it does not exist.
pub fn read(name: &str) -> io::Result<Option<Vec<u8>>> {
    read_in(VENDOR_GUID, name)
}

/// Reads variable `name` of vendor `guid` (attributes first): None when it does not exist.
pub fn read_in(guid: &str, name: &str) -> io::Result<Option<Vec<u8>>> {
    match fs::read(var_path_in(guid, name)) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes variable `name` (no error when it does not exist).
pub fn delete(name: &str) -> io::Result<()> {
    delete_in(VENDOR_GUID, name)
}

/// Deletes variable `name` of vendor `guid` (no error when it does not exist).
pub fn delete_in(guid: &str, name: &str) -> io::Result<()> {
    let p = var_path_in(guid, name);
    if !p.exists() {
        return Ok(());
    }
    make_mutable(&p)?;
    match fs::remove_file(&p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Why a write did not stick.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the firmware's variable store is full (ENOSPC)")]
    Full,
    #[error("{0}")]
    Io(io::Error),
    #[error("written, but reading it back gave {0} different bytes (the firmware lost or changed the write)")]
    Mismatch(String),
}

/// Writes variable `name` with `data` (one variable, overwritten, never appended), then reads
/// it back through the firmware to check it. Returns the bytes stored (attributes included).
pub fn write(name: &str, data: &[u8]) -> Result<usize, WriteError> {
    write_in(VENDOR_GUID, name, data)
}

/// [`write`] for variable `name` of vendor `guid`.
pub fn write_in(guid: &str, name: &str, data: &[u8]) -> Result<usize, WriteError> {
    let p = var_path_in(guid, name);
    let content = with_attributes(data);
    if p.exists() {
        // Replace, never accumulate: a write to an existing variable sets it as a whole, but
        // the file must be writable first.
        make_mutable(&p).map_err(WriteError::Io)?;
    }
    let r = write_once(&p, &content);
    if let Err(e) = r {
        if p.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            // A failed create can leave an empty file behind; it is no variable.
            let _ = make_mutable(&p);
            let _ = fs::remove_file(&p);
        }
        return Err(if e.raw_os_error() == Some(libc::ENOSPC) {
            WriteError::Full
        } else {
            WriteError::Io(e)
        });
    }
    match fs::read(&p) {
        Ok(back) if back == content => Ok(content.len()),
        Ok(back) => Err(WriteError::Mismatch(format!(
            "{} instead of {}",
            back.len(),
            content.len()
        ))),
        Err(e) => Err(WriteError::Mismatch(format!("no ({e})"))),
    }
}

/// One write(2) of the whole content, as efivarfs requires.
fn write_once(p: &Path, content: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(p)?;
    let n = rustix::io::write(&f, content)?;
    if n != content.len() {
        return Err(io::Error::other(format!(
            "short write to efivarfs ({n} of {} bytes)",
            content.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_prefix_round_trip() {
        let c = with_attributes(b"hello");
        assert_eq!(&c[..4], &[7, 0, 0, 0]);
        assert_eq!(strip_attributes(&c), Some((7, &b"hello"[..])));
        assert_eq!(strip_attributes(&[7, 0, 0]), None);
        assert_eq!(strip_attributes(&[]), None);
        assert_eq!(strip_attributes(&[7, 0, 0, 0]), Some((7, &b""[..])));
    }

    #[test]
    fn var_file_is_name_dash_guid() {
        assert_eq!(
            var_file(FAILURE_VAR),
            "AnemosFailure-7f5f875b-8674-41cc-bbe0-1a0ef378bd90"
        );
        assert!(uuid::Uuid::parse_str(VENDOR_GUID).is_ok());
    }

    #[test]
    fn mounted_check_reads_proc_mounts() {
        let m =
            "sysfs /sys sysfs rw 0 0\nefivarfs /sys/firmware/efi/efivars efivarfs rw,nosuid 0 0\n";
        assert_eq!(efivarfs_mounted(m), Some(true));
        let ro = "efivarfs /sys/firmware/efi/efivars efivarfs ro,nosuid,nodev,noexec 0 0\n";
        assert_eq!(efivarfs_mounted(ro), Some(false));
        assert_eq!(efivarfs_mounted("sysfs /sys sysfs rw 0 0\n"), None);
        assert_eq!(
            efivarfs_mounted("tmpfs /sys/firmware/efi/efivars tmpfs rw 0 0\n"),
            None
        );
    }
}
