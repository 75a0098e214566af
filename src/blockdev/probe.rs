//! Filesystem superblocks (ext2/3/4, XFS, btrfs, vfat, swap): type, UUID and label, as
//! libblkid reports them.

use std::io::{self, Read, Seek};

use super::bytes::{be32, bytes_at, label_from, le16, le32, read_upto};
use super::Probe;
use crate::util::uuid_string;

/// A 16-byte UUID stored big-endian (ext, XFS, btrfs, swap), or `None` when all zero (blkid
/// does not report empty UUIDs).
pub(super) fn uuid_be(b: &[u8]) -> Option<String> {
    let u: [u8; 16] = b.try_into().ok()?;
    (u != [0; 16]).then(|| uuid_string(&u))
}

/// How much of the device the superblock probes need: up to the btrfs superblock at 64 KiB
/// (4 KiB) and the swap signature of 64 KiB pages.
pub(super) const PROBE_LEN: usize = 0x11000;

/// Probes filesystem superblocks (ext2/3/4, XFS, btrfs, vfat, swap) from any `Read + Seek`:
/// a device node or an image file.
///
/// Returns a [`Probe`] with only the `fs_*` fields set, or an empty one when nothing matched.
/// Errors are I/O errors only; malformed data is "no filesystem".
pub fn probe_fs<R: Read + Seek>(r: &mut R) -> io::Result<Probe> {
    let head = read_upto(r, 0, PROBE_LEN)?;
    let mut found: Vec<Probe> = [
        probe_xfs(&head),
        probe_ext(&head),
        probe_btrfs(&head),
        probe_swap(&head),
    ]
    .into_iter()
    .flatten()
    .collect();
    found.extend(probe_vfat(r, &head)?);
    if found.len() > 1 {
        let types: Vec<_> = found.iter().filter_map(|p| p.fs_type.clone()).collect();
        log::debug!(
            "several superblocks match ({}); using the first",
            types.join(", ")
        );
    }
    Ok(found.into_iter().next().unwrap_or_default())
}

pub(super) fn fs_probe(fs_type: &str, uuid: Option<String>, label: Option<String>) -> Probe {
    Probe {
        fs_type: Some(fs_type.to_string()),
        fs_uuid: uuid,
        fs_label: label,
        ..Probe::default()
    }
}

/// ext2/3/4: superblock at 1024. The type follows libblkid: a journal device is not a
/// filesystem; any feature ext3 does not know makes ext4; else a journal makes ext3.
pub(super) fn probe_ext(head: &[u8]) -> Option<Probe> {
    let sb = bytes_at(head, 1024, 1024)?;
    if le16(sb, 0x38)? != 0xEF53 {
        return None;
    }
    let (compat, incompat, ro_compat) = (le32(sb, 0x5C)?, le32(sb, 0x60)?, le32(sb, 0x64)?);
    const JOURNAL_DEV: u32 = 0x8;
    const EXT3_INCOMPAT_SUPP: u32 = 0x2 | 0x4 | 0x10; // filetype, recover, meta_bg
    const EXT3_RO_COMPAT_SUPP: u32 = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir
    const HAS_JOURNAL: u32 = 0x4;
    if incompat & JOURNAL_DEV != 0 {
        return None;
    }
    let fs_type = if incompat & !EXT3_INCOMPAT_SUPP != 0 || ro_compat & !EXT3_RO_COMPAT_SUPP != 0 {
        "ext4"
    } else if compat & HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Some(fs_probe(
        fs_type,
        uuid_be(bytes_at(sb, 0x68, 16)?),
        label_from(bytes_at(sb, 0x78, 16)?),
    ))
}

/// XFS: `XFSB` at 0, UUID at 32, 12-byte label at 108.
pub(super) fn probe_xfs(head: &[u8]) -> Option<Probe> {
    if bytes_at(head, 0, 4)? != b"XFSB" {
        return None;
    }
    let block_size = be32(head, 4)?;
    if !(512..=65536).contains(&block_size) || !block_size.is_power_of_two() {
        return None;
    }
    Some(fs_probe(
        "xfs",
        uuid_be(bytes_at(head, 32, 16)?),
        label_from(bytes_at(head, 108, 12)?),
    ))
}

/// btrfs: superblock at 64 KiB; magic at +0x40, fsid at +0x20, 256-byte label at +0x12b.
pub(super) fn probe_btrfs(head: &[u8]) -> Option<Probe> {
    let sb = bytes_at(head, 0x10000, 0x1000)?;
    if bytes_at(sb, 0x40, 8)? != b"_BHRfS_M" {
        return None;
    }
    Some(fs_probe(
        "btrfs",
        uuid_be(bytes_at(sb, 0x20, 16)?),
        label_from(bytes_at(sb, 0x12b, 256)?),
    ))
}

/// Linux swap: `SWAPSPACE2` in the last 10 bytes of the first page (any page size up to
/// 64 KiB); UUID at 1024+12 and label at 1024+28. The old `SWAP-SPACE` format has neither.
pub(super) fn probe_swap(head: &[u8]) -> Option<Probe> {
    for page in [4096usize, 8192, 16384, 32768, 65536] {
        match bytes_at(head, page - 10, 10) {
            Some(b"SWAPSPACE2") => {
                return Some(fs_probe(
                    "swap",
                    uuid_be(bytes_at(head, 1024 + 12, 16)?),
                    label_from(bytes_at(head, 1024 + 28, 16)?),
                ));
            }
            Some(b"SWAP-SPACE") => return Some(fs_probe("swap", None, None)),
            _ => {}
        }
    }
    None
}

/// The parts of a FAT boot sector the probe needs.
pub(super) struct FatBoot {
    serial_off: usize,
    ext_sig_off: usize,
    pub(super) root_dir: (u64, usize),
}

/// FAT12/16/32 boot sector checks (as libblkid: sector size, cluster size, FAT count,
/// reserved sectors, media byte) and where the serial and root directory are.
pub(super) fn fat_boot(head: &[u8]) -> Option<FatBoot> {
    if bytes_at(head, 510, 2)? != [0x55, 0xAA] {
        return None;
    }
    let bps = le16(head, 0x0B)?;
    let spc = *head.get(0x0D)?;
    let reserved = le16(head, 0x0E)?;
    let fats = *head.get(0x10)?;
    let media = *head.get(0x15)?;
    if !matches!(bps, 512 | 1024 | 2048 | 4096)
        || spc == 0
        || !spc.is_power_of_two()
        || reserved == 0
        || fats == 0
    {
        return None;
    }
    if !(media == 0xF0 || media >= 0xF8) {
        return None;
    }
    let (bps, spc, reserved, fats) = (
        u64::from(bps),
        u64::from(spc),
        u64::from(reserved),
        u64::from(fats),
    );
    if bytes_at(head, 0x52, 8)? == b"FAT32   " {
        let fat_size = u64::from(le32(head, 0x24)?);
        let root_cluster = u64::from(le32(head, 0x2C)?);
        let data = (reserved + fats * fat_size) * bps;
        let root = data + root_cluster.checked_sub(2)? * spc * bps;
        // Only the first cluster of the root directory is searched (libblkid follows the chain).
        let len = usize::try_from((spc * bps).min(1 << 20)).ok()?;
        Some(FatBoot {
            serial_off: 0x43,
            ext_sig_off: 0x42,
            root_dir: (root, len),
        })
    } else if bytes_at(head, 0x36, 4)? == b"FAT1" || bytes_at(head, 0x36, 8)? == b"FAT     " {
        let fat_size = u64::from(le16(head, 0x16)?);
        let entries = usize::from(le16(head, 0x11)?);
        let root = (reserved + fats * fat_size) * bps;
        Some(FatBoot {
            serial_off: 0x27,
            ext_sig_off: 0x26,
            root_dir: (root, (entries * 32).min(1 << 20)),
        })
    } else {
        None
    }
}

/// vfat: the UUID is the volume serial ("XXXX-XXXX"); the label is the volume-label entry of
/// the root directory, as libblkid reports it (the boot-sector copy is only its
/// `LABEL_FATBOOT`); "NO NAME" is no label.
pub(super) fn probe_vfat<R: Read + Seek>(r: &mut R, head: &[u8]) -> io::Result<Option<Probe>> {
    let Some(boot) = fat_boot(head) else {
        return Ok(None);
    };
    let uuid = match (
        head.get(boot.ext_sig_off),
        bytes_at(head, boot.serial_off, 4),
    ) {
        (Some(0x28 | 0x29), Some(s)) => {
            Some(format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0]))
        }
        _ => None,
    };
    let dir = read_upto(r, boot.root_dir.0, boot.root_dir.1)?;
    let label = fat_volume_label(&dir)
        .filter(|l| l != b"NO NAME    ")
        .and_then(|l| label_from(&l));
    Ok(Some(fs_probe("vfat", uuid, label)))
}

/// The 11-byte name of the first volume-label entry of a FAT directory.
pub(super) fn fat_volume_label(dir: &[u8]) -> Option<Vec<u8>> {
    for e in dir.chunks_exact(32) {
        match e[0] {
            0x00 => return None,
            0xE5 => continue,
            _ => {}
        }
        let attr = e[11];
        let cluster = le16(e, 20)? | le16(e, 26)?;
        if attr & 0x3F == 0x0F || cluster != 0 {
            continue;
        }
        if attr & (0x08 | 0x10) == 0x08 {
            let mut name = e[..11].to_vec();
            if name[0] == 0x05 {
                name[0] = 0xE5;
            }
            return Some(name);
        }
    }
    None
}
