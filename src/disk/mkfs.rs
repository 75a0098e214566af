//! Creating filesystems: vfat natively (see vfat.rs), swap natively (a one-page header), and
//! ext4/xfs/btrfs through the mkfs tool in the image (a clear error if it is missing).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use anyhow::{anyhow, bail, Context, Result};

use super::plan::PlannedPart;
use crate::cmd;
use crate::config::layout::FsKind;
use crate::util::uuid_string;

const SWAP_PAGE: u64 = 4096;

/// Builds a Linux swap header (version 1) for a partition of `len` bytes. Pure.
pub fn swap_header(len: u64, uuid: &[u8; 16], label: &str) -> Result<Vec<u8>> {
    let pages = len / SWAP_PAGE;
    if pages < 10 {
        bail!("swap partition of {len} bytes is too small (needs at least 40 KiB)");
    }
    let mut h = vec![0u8; SWAP_PAGE as usize];
    h[1024..1028].copy_from_slice(&1u32.to_le_bytes()); // version
    let last = u32::try_from(pages - 1).unwrap_or(u32::MAX);
    h[1028..1032].copy_from_slice(&last.to_le_bytes()); // last_page
                                                        // nr_badpages = 0 at 1032
    h[1036..1052].copy_from_slice(uuid);
    let lb = label.as_bytes();
    let n = lb.len().min(15);
    h[1052..1052 + n].copy_from_slice(&lb[..n]);
    h[SWAP_PAGE as usize - 10..].copy_from_slice(b"SWAPSPACE2");
    Ok(h)
}

/// The mkfs command line for a tool-made filesystem. Pure.
pub fn mkfs_command(
    fs: FsKind,
    dev: &str,
    uuid: &str,
    label: &str,
) -> Option<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    match fs {
        FsKind::Ext4 => Some((
            "mkfs.ext4",
            s(&["-F", "-q", "-U", uuid, "-L", &truncate(label, 16), dev]),
        )),
        FsKind::Xfs => Some((
            "mkfs.xfs",
            s(&[
                "-f",
                "-q",
                "-m",
                &format!("uuid={uuid}"),
                "-L",
                &truncate(label, 12),
                dev,
            ]),
        )),
        FsKind::Btrfs => Some((
            "mkfs.btrfs",
            s(&["-f", "-q", "-U", uuid, "-L", &truncate(label, 255), dev]),
        )),
        FsKind::Vfat | FsKind::Swap => None,
    }
}

/// A FAT volume label from any label: uppercase ASCII, characters FAT forbids replaced by
/// `_`, at most 11; None when nothing is left.
pub fn vfat_label(label: &str) -> Option<String> {
    let l: String = label
        .chars()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| {
            if c.is_ascii_graphic() && !"\"*+,./:;<=>?[\\]|".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(11)
        .collect();
    let l = l.trim_start_matches(' ').to_string();
    if l.is_empty() {
        None
    } else {
        Some(l)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The label as `fs` stores it (what blkid shows): FAT's form, or cut to the filesystem's
/// limit as `make` cuts it; None when nothing is left.
pub fn stored_label(fs: FsKind, label: &str) -> Option<String> {
    match fs {
        FsKind::Vfat => vfat_label(label),
        FsKind::Ext4 => Some(truncate(label, 16)),
        FsKind::Xfs => Some(truncate(label, 12)),
        FsKind::Btrfs => Some(truncate(label, 255)),
        FsKind::Swap => {
            Some(String::from_utf8_lossy(&label.as_bytes()[..label.len().min(15)]).into_owned())
        }
    }
    .filter(|l| !l.is_empty())
}

/// Creates the planned filesystem on `dev`: a partition node of `len` bytes starting at
/// `first_lba` on a disk with `sector_size`-byte logical blocks (vfat takes that as its own
/// sector size; the mkfs tools read it from the device themselves).
pub fn make(p: &PlannedPart, dev: &str, len: u64, first_lba: u64, sector_size: u64) -> Result<()> {
    let Some(fs) = p.fs else { return Ok(()) };
    let uuid = p
        .fs_uuid
        .ok_or_else(|| anyhow!("partition {}: no filesystem UUID planned", p.label))?;
    let label = p.fs_label.clone().unwrap_or_else(|| p.label.clone());
    match fs {
        FsKind::Swap => {
            let h = swap_header(len, &uuid, &label)?;
            let mut f = OpenOptions::new()
                .write(true)
                .open(dev)
                .with_context(|| format!("opening {dev}"))?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&h)
                .with_context(|| format!("writing the swap header to {dev}"))?;
            f.sync_all()?;
            Ok(())
        }
        FsKind::Vfat => {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(dev)
                .with_context(|| format!("opening {dev}"))?;
            let id = u32::from_be_bytes([uuid[0], uuid[1], uuid[2], uuid[3]]);
            let opts = super::vfat::VfatOptions {
                label: vfat_label(&label),
                volume_id: id,
                fat32: p.fat32,
                hidden_sectors: u32::try_from(first_lba).unwrap_or(0),
                sector_size: u32::try_from(sector_size).unwrap_or(0),
            };
            super::vfat::format(&mut f, len, &opts)
                .with_context(|| format!("formatting {dev} as vfat"))?;
            f.sync_all()?;
            Ok(())
        }
        _ => {
            let Some((tool, args)) = mkfs_command(fs, dev, &uuid_string(&uuid), &label) else {
                return Ok(());
            };
            let prog = cmd::which(tool).or_else(|| if fs == FsKind::Ext4 { cmd::which("mke2fs") } else { None }).ok_or_else(|| {
                anyhow!(
                    "partition {}: {tool} not found in the image; pack it with `--binary /sbin/{tool}` or a tools root (--rootfs) that has it",
                    p.label
                )
            })?;
            let mut args = args;
            if prog.ends_with("mke2fs") {
                args.splice(0..0, ["-t".to_string(), "ext4".to_string()]);
            }
            cmd::run(&prog, &args)?;
            Ok(())
        }
    }
}

/// The plan table's second line for an array or a LUKS volume: the filesystem it carries.
pub fn plan_fs_line(
    fs: Option<FsKind>,
    label: Option<&str>,
    mount: Option<&str>,
    fs_uuid: Option<[u8; 16]>,
) -> String {
    format!(
        "  fs {}  label {}  mount {}  fs-uuid {}\n",
        fs.map(|f| f.name()).unwrap_or("-"),
        label.unwrap_or("-"),
        mount.unwrap_or("-"),
        match (fs, fs_uuid) {
            (Some(fs), Some(u)) => display_uuid(fs, &u),
            _ => "-".into(),
        }
    )
}

/// The filesystem UUID as blkid shows it (vfat: "XXXX-XXXX" from the volume id).
pub fn display_uuid(fs: FsKind, uuid: &[u8; 16]) -> String {
    match fs {
        FsKind::Vfat => format!(
            "{:02X}{:02X}-{:02X}{:02X}",
            uuid[0], uuid[1], uuid[2], uuid[3]
        ),
        _ => uuid_string(uuid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_header_is_recognised_by_blkid() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("swap.img");
        let uuid = [
            0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
            0xff, 0x00,
        ];
        let mut data = swap_header(8 << 20, &uuid, "swap").unwrap();
        data.resize(8 << 20, 0);
        std::fs::write(&img, &data).unwrap();
        let o = std::process::Command::new("blkid")
            .args(["-p", "-o", "export"])
            .arg(&img)
            .output()
            .expect("blkid");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("TYPE=swap"), "{s}");
        assert!(s.contains(&format!("UUID={}", uuid_string(&uuid))), "{s}");
        assert!(s.contains("LABEL=swap"), "{s}");
        assert!(swap_header(4096, &uuid, "x").is_err());
    }

    #[test]
    fn mkfs_commands() {
        let (t, a) =
            mkfs_command(FsKind::Ext4, "/dev/vda3", "u", "a-very-long-label-here").unwrap();
        assert_eq!(t, "mkfs.ext4");
        assert_eq!(
            a,
            ["-F", "-q", "-U", "u", "-L", "a-very-long-labe", "/dev/vda3"]
        );
        assert!(mkfs_command(FsKind::Vfat, "x", "u", "l").is_none());
        assert_eq!(vfat_label("esp").as_deref(), Some("ESP"));
        assert_eq!(vfat_label("boot.efi/x").as_deref(), Some("BOOT_EFI_X"));
        assert_eq!(
            vfat_label("a-very-long-label").as_deref(),
            Some("A-VERY-LONG")
        );
        assert_eq!(vfat_label(""), None);
        assert_eq!(
            display_uuid(
                FsKind::Vfat,
                &[0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            ),
            "1234-ABCD"
        );
    }

    #[test]
    fn stored_labels_match_what_make_writes() {
        let long = "a-very-long-label-here";
        let (_, a) = mkfs_command(FsKind::Ext4, "d", "u", long).unwrap();
        assert_eq!(stored_label(FsKind::Ext4, long).as_deref(), Some(&*a[5]));
        let (_, a) = mkfs_command(FsKind::Xfs, "d", "u", long).unwrap();
        assert_eq!(stored_label(FsKind::Xfs, long).as_deref(), Some(&*a[5]));
        assert_eq!(stored_label(FsKind::Vfat, "esp").as_deref(), Some("ESP"));
        assert_eq!(
            stored_label(FsKind::Swap, long).as_deref(),
            Some("a-very-long-lab")
        );
        assert_eq!(stored_label(FsKind::Ext4, ""), None);
    }
}
