//! FAT (vfat) volumes without `mkfs.vfat`: formats a partition (the ESP). The bootloader
//! stage then fills it through the kernel's vfat driver, so no file writing lives here.
//!
//! # Crate choice
//!
//! The work is done by `fatfs` 0.3.6 (crates.io, `default-features = false`, so no chrono
//! and no clock). hadris-fat was fsck-clean out of the box but pulls about 25 crates and is
//! young; fatfs is small and its defects are few and well understood, so this module keeps
//! fatfs and repairs what it gets wrong. Every volume this module produces passes
//! `fsck.vfat -n` (dosfstools 4.2) without a single message; the tests check that.
//!
//! # What fatfs 0.3.6 gets wrong, and what this module does about it
//!
//! * **FAT32 silently becomes FAT16/FAT12** on volumes too small for 65,525 clusters:
//!   `FormatVolumeOptions::fat_type(Fat32)` only chooses the cluster size. [`format()`]
//!   computes the FAT32 cluster count itself *before writing anything* and fails with
//!   [`VfatError::TooSmallForFat32`]; after formatting it mounts the volume and checks
//!   `fat_type()` again ([`VfatError::NotFat32`]).
//! * **`hidden sectors` stays 0**: [`format()`] patches BPB offset 0x1C in the boot sector and
//!   in the FAT32 backup boot sector (they must stay identical or fsck reports *"There are
//!   differences between boot sector and its backup"*).
//! * **FSInfo free-cluster count is left "unknown"** (0xFFFFFFFF) by `format_volume`; [`format()`]
//!   mounts once and calls `stats()`, which counts the free clusters and writes them back on
//!   unmount, as mkfs.vfat does.
//! * **Stale signatures**: `format_volume` leaves reserved sectors 2–5 and 7 untouched, so an
//!   old ext4 superblock (1 KiB) or swap signature (4 KiB) survives and `blkid -p` fails with
//!   "ambivalent result" (tested). [`format()`] zeroes the first 128 KiB first (which also
//!   covers btrfs at 64 KiB). Signatures elsewhere on the partition (e.g. at its end) are the
//!   caller's job.
//! * The volume label goes into both the BPB and a root-directory volume-label entry; fatfs
//!   0.3.6 already writes both when a label is given (the tests check both through `blkid`:
//!   `LABEL` comes from the root-directory entry, `LABEL_FATBOOT` from the BPB).
//!
//! # Sector size
//!
//! The FAT's logical sector ([`VfatOptions::sector_size`]) must be the device's logical
//! block size: the kernel refuses to mount a FAT whose sector is smaller than the device's
//! block ("logical sector size too small for device"), so a 512-byte FAT on a 4Kn disk is
//! unusable. With 4096-byte sectors a cluster is at least 4 KiB, so FAT32's 65,525 clusters
//! need at least 257 MiB ([`fat32_min_bytes`]); that is why 4Kn ESPs are usually 300 MiB or
//! more.
//!
//! # Determinism
//!
//! No clock is read: every timestamp fatfs writes comes from [`FixedTime`], 1980-01-01
//! 00:00:00 (the DOS epoch). The same options on the same (zeroed) partition give the same
//! bytes.
//!
//! # Performance note
//!
//! fatfs does small unbuffered reads and writes (4-byte FAT entries). That is fine on a block
//! device (page cache) and on image files; do not hand it a pipe-like device.

use std::io::{self, Read, Seek, SeekFrom, Write};

use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

/// The smallest logical sector; the unit of the byte offsets in [`read_sector`].
const SECTOR: u64 = 512;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// Fewest clusters a FAT32 volume may have (Microsoft FAT spec; fatfs and fsck use the same).
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// Reserved sectors fatfs 0.3.6 puts in front of a FAT32 FAT (boot, FSInfo, backup boot).
const FAT32_RESERVED_SECTORS: u64 = 8;
/// Number of FATs fatfs writes by default.
const FAT_COUNT: u64 = 2;
/// Smallest volume this module formats at all.
const MIN_VOLUME_BYTES: u64 = MIB;
/// How much of the partition start is zeroed before formatting (stale signatures).
const WIPE_BYTES: u64 = 128 * KIB;

/// How to format a FAT volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfatOptions {
    /// Volume label: at most 11 printable ASCII characters, no `"*+,./:;<=>?[\]|`, not
    /// starting with a space. Lower case is uppercased. `None` gives the BPB label
    /// `NO NAME` and no root-directory label entry (like mkfs.vfat without `-n`).
    pub label: Option<String>,
    /// Volume serial number; `blkid` shows 0x1234ABCD as `UUID=1234-ABCD`.
    pub volume_id: u32,
    /// `true`: FAT32 or an error, never anything else. `false`: fatfs picks by size
    /// (FAT12 below 4 MiB, FAT16 below 512 MiB, FAT32 above).
    pub fat32: bool,
    /// The partition's first LBA (in `sector_size` units), stored as BPB "hidden sectors"
    /// as mkfs.vfat does; 0 for a volume that is not inside a partition table.
    pub hidden_sectors: u32,
    /// Bytes per FAT sector: the device's logical block size (512, 1024, 2048 or 4096). The
    /// kernel refuses to mount a FAT whose sector is smaller than the device's logical block.
    pub sector_size: u32,
}

impl Default for VfatOptions {
    fn default() -> Self {
        VfatOptions {
            label: None,
            volume_id: 0,
            fat32: false,
            hidden_sectors: 0,
            sector_size: 512,
        }
    }
}

/// Mount options the init mounts a FAT volume with: codepage and IO charset explicit, so the
/// modules needed ([`MOUNT_NLS_MODULES`]) do not depend on the kernel's configured defaults.
pub const MOUNT_OPTIONS: &std::ffi::CStr = c"codepage=437,iocharset=ascii";

/// The kernel modules [`MOUNT_OPTIONS`] needs; `anemos pack --module vfat` adds them.
pub const MOUNT_NLS_MODULES: [&str; 2] = ["nls_cp437", "nls_ascii"];

/// Everything that can go wrong here. Messages are one line; the cause (if any) is the
/// error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum VfatError {
    #[error("partition of {} is too small for FAT32 with {sector}-byte sectors (needs at least {})", show_size(*size), show_size(*min))]
    TooSmallForFat32 { size: u64, min: u64, sector: u32 },
    #[error("partition of {} is too small for a FAT filesystem (needs at least {})", show_size(*size), show_size(*min))]
    TooSmall { size: u64, min: u64 },
    #[error("partition of {} is too large for FAT with {sector}-byte sectors (at most 2^32 sectors)", show_size(*size))]
    TooLarge { size: u64, sector: u32 },
    #[error("FAT cannot use {0}-byte sectors (512, 1024, 2048 or 4096)")]
    SectorSize(u32),
    #[error("invalid FAT volume label {label:?}: {reason}")]
    BadLabel { label: String, reason: &'static str },
    #[error("asked for FAT32 but the formatted volume is {found}")]
    NotFat32 { found: &'static str },
    #[error("formatting the FAT volume")]
    Format(#[source] io::Error),
    #[error("opening the FAT volume")]
    Mount(#[source] io::Error),
    #[error("{op} on the FAT volume")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, VfatError>;

/// Builds a closure that wraps an I/O error with what was being done.
fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> VfatError {
    move |source| VfatError::Io { op, source }
}

/// A byte count for messages: "32 MiB" when whole MiB, else KiB or bytes.
fn show_size(bytes: u64) -> String {
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

// ---------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------

/// Formats the whole of `dev` (a partition: Read+Write+Seek starting at offset 0, `len`
/// bytes). Only the first `len` bytes (rounded down to the sector size) are touched.
pub fn format<D: Read + Write + Seek>(dev: &mut D, len: u64, opts: &VfatOptions) -> Result<()> {
    let label = opts.label.as_deref().map(label_bytes).transpose()?;
    let ss = check_sector_size(opts.sector_size)?;
    let total_sectors = total_sectors(len, ss)?;
    let mut fopts = FormatVolumeOptions::new()
        .bytes_per_sector(ss as u16)
        .total_sectors(total_sectors)
        .volume_id(opts.volume_id);
    if let Some(label) = label {
        fopts = fopts.volume_label(label);
    }
    if opts.fat32 {
        let cluster = fat32_cluster_bytes(len, ss);
        check_fat32_fits(len, u64::from(total_sectors), u64::from(cluster), ss)?;
        fopts = fopts.fat_type(FatType::Fat32).bytes_per_cluster(cluster);
    }
    wipe_start(dev, len)?;
    dev.seek(SeekFrom::Start(0)).map_err(io_err("seeking"))?;
    fatfs::format_volume(&mut *dev, fopts).map_err(VfatError::Format)?;
    if opts.hidden_sectors != 0 {
        set_hidden_sectors(dev, opts.hidden_sectors, ss)?;
    }
    finish_format(dev, opts.fat32)
}

/// Smallest FAT32 volume in bytes with `sector_size`-byte sectors (one sector per cluster),
/// rounded up to whole MiB: 33 MiB with 512-byte sectors, 257 MiB with 4096-byte ones.
pub fn fat32_min_bytes(sector_size: u32) -> u64 {
    let ss = u64::from(sector_size.max(SECTOR as u32));
    let (mut lo, mut hi) = (0u64, 1u64 << 22);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fat32_clusters(mid, 1, ss) >= FAT32_MIN_CLUSTERS {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo * ss).div_ceil(MIB) * MIB
}

// ---------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------

/// The fixed clock fatfs uses for every timestamp: 1980-01-01 00:00:00.
#[derive(Debug)]
pub struct FixedTime;

/// The one [`FixedTime`] instance handed to fatfs.
static FIXED_TIME: FixedTime = FixedTime;

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: self.get_current_date(),
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// Mount options: fixed clock, no access-date updates.
fn fs_options() -> FsOptions {
    FsOptions::new()
        .time_provider(&FIXED_TIME)
        .update_accessed_date(false)
}

/// Mounts the volume at the start of `dev`.
fn mount<D: Read + Write + Seek>(dev: &mut D) -> Result<FileSystem<&mut D>> {
    dev.seek(SeekFrom::Start(0)).map_err(io_err("seeking"))?;
    FileSystem::new(dev, fs_options()).map_err(VfatError::Mount)
}

/// Validates and pads a volume label to the 11 bytes FAT stores.
fn label_bytes(label: &str) -> Result<[u8; 11]> {
    let bad = |reason| VfatError::BadLabel {
        label: label.to_string(),
        reason,
    };
    let upper = label.to_ascii_uppercase();
    if upper.is_empty() {
        return Err(bad("empty (use None for no label)"));
    }
    if upper.len() > 11 {
        return Err(bad("longer than 11 characters"));
    }
    if upper.starts_with(' ') {
        return Err(bad("starts with a space"));
    }
    if let Some(reason) = upper.bytes().find_map(label_char_problem) {
        return Err(bad(reason));
    }
    let mut out = [b' '; 11];
    for (slot, byte) in out.iter_mut().zip(upper.bytes()) {
        *slot = byte;
    }
    Ok(out)
}

/// Why `b` may not appear in a volume label, if it may not.
fn label_char_problem(b: u8) -> Option<&'static str> {
    if !(b == b' ' || b.is_ascii_graphic()) {
        Some("only printable ASCII is allowed")
    } else if b"\"*+,./:;<=>?[\\]|".contains(&b) {
        Some("contains one of \"*+,./:;<=>?[\\]|")
    } else {
        None
    }
}

/// The sector size as a byte count, if FAT (and fatfs) can use it.
fn check_sector_size(sector_size: u32) -> Result<u64> {
    match sector_size {
        512 | 1024 | 2048 | 4096 => Ok(u64::from(sector_size)),
        other => Err(VfatError::SectorSize(other)),
    }
}

/// Number of `ss`-byte sectors for a partition of `len` bytes, within FAT's limits.
fn total_sectors(len: u64, ss: u64) -> Result<u32> {
    if len < MIN_VOLUME_BYTES {
        return Err(VfatError::TooSmall {
            size: len,
            min: MIN_VOLUME_BYTES,
        });
    }
    u32::try_from(len / ss).map_err(|_| VfatError::TooLarge {
        size: len,
        sector: ss as u32,
    })
}

/// FAT32 cluster size for a volume of `len` bytes (the Microsoft / mkfs.vfat table), never
/// smaller than one `ss`-byte sector.
fn fat32_cluster_bytes(len: u64, ss: u64) -> u32 {
    let table = match len {
        l if l <= 260 * MIB => 512,
        l if l <= 8 * GIB => 4096,
        l if l <= 16 * GIB => 8192,
        l if l <= 32 * GIB => 16384,
        _ => 32768,
    };
    table.max(ss as u32)
}

/// Clusters a FAT32 volume of `total_sectors` `ss`-byte sectors gets with
/// `sectors_per_cluster`, computed the way fatfs 0.3.6 sizes the FAT (8 reserved sectors, two
/// FATs, room for two extra entries).
fn fat32_clusters(total_sectors: u64, sectors_per_cluster: u64, ss: u64) -> u64 {
    let entries_per_cluster = sectors_per_cluster * ss / 4;
    let t0 = total_sectors.saturating_sub(FAT32_RESERVED_SECTORS);
    let fat_sectors = (t0 + 2 * sectors_per_cluster).div_ceil(entries_per_cluster + FAT_COUNT);
    let used = FAT32_RESERVED_SECTORS + FAT_COUNT * fat_sectors;
    total_sectors.saturating_sub(used) / sectors_per_cluster
}

/// Fails before anything is written if FAT32 would not fit (fatfs would fall back silently).
fn check_fat32_fits(len: u64, total_sectors: u64, cluster_bytes: u64, ss: u64) -> Result<()> {
    if fat32_clusters(total_sectors, cluster_bytes / ss, ss) >= FAT32_MIN_CLUSTERS {
        Ok(())
    } else {
        Err(VfatError::TooSmallForFat32 {
            size: len,
            min: fat32_min_bytes(ss as u32),
            sector: ss as u32,
        })
    }
}

/// Zeroes the first `WIPE_BYTES` of the partition so no stale signature survives in the
/// sectors fatfs does not write.
fn wipe_start<D: Write + Seek>(dev: &mut D, len: u64) -> Result<()> {
    let n = usize::try_from(len.min(WIPE_BYTES)).unwrap_or(0);
    dev.seek(SeekFrom::Start(0)).map_err(io_err("seeking"))?;
    dev.write_all(&vec![0u8; n])
        .map_err(io_err("wiping the partition start"))
}

/// Writes `hidden` into the BPB of the boot sector and, on FAT32, of its backup (sector
/// numbers in `ss`-byte sectors).
fn set_hidden_sectors<D: Read + Write + Seek>(dev: &mut D, hidden: u32, ss: u64) -> Result<()> {
    let boot = read_sector(dev, 0)?;
    let mut sectors = vec![0u64];
    if le16(&boot, 0x16) == 0 {
        let backup = u64::from(le16(&boot, 0x32));
        if backup != 0 {
            sectors.push(backup);
        }
    }
    for sector in sectors {
        write_at(dev, sector * ss + 0x1C, &hidden.to_le_bytes())?;
    }
    Ok(())
}

/// Mounts the fresh volume, checks its FAT type and records the free-cluster count.
fn finish_format<D: Read + Write + Seek>(dev: &mut D, want_fat32: bool) -> Result<()> {
    let fs = mount(dev)?;
    let fat_type = fs.fat_type();
    if want_fat32 && fat_type != FatType::Fat32 {
        return Err(VfatError::NotFat32 {
            found: fat_type_name(fat_type),
        });
    }
    fs.stats().map_err(io_err("counting free clusters"))?;
    fs.unmount().map_err(io_err("unmounting"))
}

/// Human name of a FAT type.
fn fat_type_name(fat_type: FatType) -> &'static str {
    match fat_type {
        FatType::Fat12 => "FAT12",
        FatType::Fat16 => "FAT16",
        FatType::Fat32 => "FAT32",
    }
}

// ---------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------

/// Little-endian u16 at `at`, 0 if out of range.
fn le16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

/// Reads the first 512 bytes of the volume starting at byte `n * 512`.
fn read_sector<D: Read + Seek>(dev: &mut D, n: u64) -> Result<[u8; 512]> {
    let mut buf = [0u8; 512];
    read_at(dev, n * SECTOR, &mut buf)?;
    Ok(buf)
}

/// Fills `buf` from byte `offset`.
fn read_at<D: Read + Seek>(dev: &mut D, offset: u64, buf: &mut [u8]) -> Result<()> {
    dev.seek(SeekFrom::Start(offset))
        .map_err(io_err("seeking"))?;
    dev.read_exact(buf).map_err(io_err("reading"))
}

/// Writes `buf` at byte `offset`.
fn write_at<D: Write + Seek>(dev: &mut D, offset: u64, buf: &[u8]) -> Result<()> {
    dev.seek(SeekFrom::Start(offset))
        .map_err(io_err("seeking"))?;
    dev.write_all(buf).map_err(io_err("writing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs::{File, OpenOptions};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use tempfile::NamedTempFile;

    const LABEL: &str = "ESP";
    const ID: u32 = 0x1234_ABCD;

    fn esp_opts() -> VfatOptions {
        VfatOptions {
            label: Some(LABEL.into()),
            volume_id: ID,
            fat32: true,
            hidden_sectors: 2048,
            sector_size: 512,
        }
    }

    /// The ESP options on a disk with 4096-byte logical blocks (4Kn).
    fn esp_4k_opts() -> VfatOptions {
        VfatOptions {
            hidden_sectors: 256,
            sector_size: 4096,
            ..esp_opts()
        }
    }

    /// A sparse temp file of `len` bytes.
    fn sparse(len: u64) -> NamedTempFile {
        let f = NamedTempFile::new().unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    fn open_rw(p: &Path) -> File {
        OpenOptions::new().read(true).write(true).open(p).unwrap()
    }

    /// A sparse image of `len` bytes formatted with `opts`.
    fn formatted(len: u64, opts: &VfatOptions) -> NamedTempFile {
        let img = sparse(len);
        format(&mut open_rw(img.path()), len, opts).unwrap();
        img
    }

    /// Deterministic pseudo-random bytes (xorshift64).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    /// Finds a system tool in PATH or the sbin directories; panics (fails the test) if absent.
    fn tool(name: &str) -> PathBuf {
        let path = std::env::var("PATH").unwrap_or_default();
        let dirs = path
            .split(':')
            .map(PathBuf::from)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
        for d in dirs {
            let p = d.join(name);
            if p.is_file() {
                return p;
            }
        }
        panic!("{name} not found: apt-get install dosfstools mtools util-linux");
    }

    fn run(cmd: &mut Command) -> Output {
        cmd.output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
    }

    fn text(o: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// `fsck.vfat -n` must exit 0 and print nothing but its banner and the summary line.
    fn assert_fsck_clean(img: &Path) {
        let out = run(Command::new(tool("fsck.vfat")).arg("-n").arg(img));
        let all = text(&out);
        let summary = format!("{}: ", img.display());
        let is_quiet = |l: &str| {
            l.starts_with("fsck.fat ") || (l.starts_with(&summary) && l.contains(" files, "))
        };
        let noise: Vec<&str> = all.lines().filter(|l| !is_quiet(l)).collect();
        assert!(
            out.status.success() && noise.is_empty(),
            "fsck.vfat -n {}: {:?}\n{all}",
            img.display(),
            out.status
        );
        assert!(all.contains(&summary), "no summary line from fsck:\n{all}");
    }

    /// `blkid -p -o export` as a map.
    fn blkid(img: &Path) -> HashMap<String, String> {
        let out = run(Command::new(tool("blkid"))
            .args(["-p", "-o", "export"])
            .arg(img));
        assert!(out.status.success(), "blkid failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    fn assert_blkid(img: &Path, version: &str, label: Option<&str>, uuid: &str) {
        let b = blkid(img);
        assert_eq!(b.get("TYPE").map(String::as_str), Some("vfat"), "{b:?}");
        assert_eq!(b.get("VERSION").map(String::as_str), Some(version), "{b:?}");
        assert_eq!(
            b.get("LABEL").map(String::as_str),
            label,
            "root-dir label {b:?}"
        );
        assert_eq!(
            b.get("LABEL_FATBOOT").map(String::as_str),
            label,
            "BPB label {b:?}"
        );
        assert_eq!(b.get("UUID").map(String::as_str), Some(uuid), "{b:?}");
    }

    fn read_range(p: &Path, start: u64, len: usize) -> Vec<u8> {
        let mut f = File::open(p).unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    fn hidden_sectors_at(img: &Path, sector: u64) -> u32 {
        let b = read_range(img, sector * 512, 512);
        u32::from_le_bytes([b[0x1C], b[0x1D], b[0x1E], b[0x1F]])
    }

    #[test]
    fn fat32_esp_sizes_are_fsck_clean_and_blkid_matches() {
        for mib in [64u64, 100, 512] {
            let img = formatted(mib * MIB, &esp_opts());
            assert_fsck_clean(img.path());
            assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
            let mut f = open_rw(img.path());
            let fs = mount(&mut f).unwrap();
            assert_eq!(fs.fat_type(), FatType::Fat32, "{mib} MiB");
            assert_eq!(
                fs.read_volume_label_from_root_dir().unwrap().as_deref(),
                Some("ESP")
            );
            assert_eq!(fs.volume_label(), "ESP");
            assert_eq!(fs.volume_id(), ID);
            drop(fs);
            assert_eq!(hidden_sectors_at(img.path(), 0), 2048);
            assert_eq!(hidden_sectors_at(img.path(), 6), 2048, "backup boot sector");
        }
    }

    #[test]
    fn fat32_on_32_mib_is_a_clear_error_and_writes_nothing() {
        let img = sparse(32 * MIB);
        std::fs::write(img.path(), noise(32 * MIB as usize, 3)).unwrap();
        let err = format(&mut open_rw(img.path()), 32 * MIB, &esp_opts()).unwrap_err();
        assert!(matches!(err, VfatError::TooSmallForFat32 { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "partition of 32 MiB is too small for FAT32 with 512-byte sectors (needs at least 33 MiB)"
        );
        assert!(
            std::fs::read(img.path()).unwrap() == noise(32 * MIB as usize, 3),
            "device was modified"
        );
    }

    #[test]
    fn fat32_minimum_reported_is_really_enough() {
        let min = fat32_min_bytes(512);
        assert_eq!(min, 33 * MIB);
        let img = formatted(min, &esp_opts());
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
    }

    /// Bytes per sector as the BPB states it.
    fn bpb_sector_size(img: &Path) -> u16 {
        let b = read_range(img, 0, 512);
        u16::from_le_bytes([b[0x0B], b[0x0C]])
    }

    #[test]
    fn fat32_with_4096_byte_sectors_is_fsck_clean_and_mountable() {
        let len = 300 * MIB;
        let img = formatted(len, &esp_4k_opts());
        assert_eq!(bpb_sector_size(img.path()), 4096);
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
        let mut f = open_rw(img.path());
        let fs = mount(&mut f).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_label(), "ESP");
        drop(fs);
        let b = read_range(img.path(), 0, 512);
        assert_eq!(b[0x0D], 1, "one 4096-byte sector per cluster");
        assert_eq!(
            u32::from_le_bytes([b[0x1C], b[0x1D], b[0x1E], b[0x1F]]),
            256
        );
        let backup = read_range(img.path(), 6 * 4096, 512);
        assert!(
            backup == b,
            "the backup boot sector (sector 6 of 4096 bytes) differs"
        );
    }

    #[test]
    fn fat32_minimum_with_4096_byte_sectors() {
        let min = fat32_min_bytes(4096);
        assert_eq!(min, 257 * MIB);
        let img = formatted(min, &esp_4k_opts());
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
        let mut dev = io::Cursor::new(Vec::new());
        let err = format(&mut dev, 256 * MIB, &esp_4k_opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "partition of 256 MiB is too small for FAT32 with 4096-byte sectors (needs at least 257 MiB)"
        );
        assert!(dev.get_ref().is_empty(), "wrote before failing");
    }

    #[test]
    fn fat16_with_4096_byte_sectors() {
        let opts = VfatOptions {
            label: Some("data".into()),
            volume_id: 0xDEAD_BEEF,
            sector_size: 4096,
            ..VfatOptions::default()
        };
        let img = formatted(64 * MIB, &opts);
        assert_eq!(bpb_sector_size(img.path()), 4096);
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT16", Some("DATA"), "DEAD-BEEF");
    }

    #[test]
    fn mount_options_and_their_modules_agree() {
        let opts = MOUNT_OPTIONS.to_str().unwrap();
        for (opt, module) in opts.split(',').zip(MOUNT_NLS_MODULES) {
            let (key, value) = opt.split_once('=').unwrap();
            let want = match key {
                "codepage" => format!("nls_cp{value}"),
                "iocharset" => format!("nls_{value}"),
                other => panic!("unexpected option {other}"),
            };
            assert_eq!(module, want);
        }
    }

    #[test]
    fn cluster_size_is_at_least_one_sector() {
        assert_eq!(fat32_cluster_bytes(100 * MIB, 512), 512);
        assert_eq!(fat32_cluster_bytes(300 * MIB, 4096), 4096);
        assert_eq!(fat32_cluster_bytes(100 * MIB, 4096), 4096);
        assert_eq!(fat32_cluster_bytes(20 * GIB, 4096), 16384);
    }

    #[test]
    fn fat16_and_fat12_when_fat32_is_not_asked() {
        for (mib, version) in [(32u64, "FAT16"), (2, "FAT12")] {
            let opts = VfatOptions {
                label: Some("data".into()),
                volume_id: 0xDEAD_BEEF,
                fat32: false,
                hidden_sectors: 0,
                sector_size: 512,
            };
            let img = formatted(mib * MIB, &opts);
            assert_fsck_clean(img.path());
            assert_blkid(img.path(), version, Some("DATA"), "DEAD-BEEF");
        }
    }

    #[test]
    fn no_label_gives_no_name() {
        let opts = VfatOptions {
            label: None,
            volume_id: 1,
            fat32: true,
            hidden_sectors: 0,
            sector_size: 512,
        };
        let img = formatted(64 * MIB, &opts);
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", None, "0000-0001");
        assert_eq!(hidden_sectors_at(img.path(), 0), 0);
    }

    #[test]
    fn formatting_is_deterministic() {
        let build = || {
            let img = formatted(64 * MIB, &esp_opts());
            std::fs::read(img.path()).unwrap()
        };
        assert!(build() == build(), "two runs gave different bytes");
    }

    #[test]
    fn stale_signatures_are_wiped() {
        let img = sparse(64 * MIB);
        std::fs::write(img.path(), noise(64 * MIB as usize, 11)).unwrap();
        format(&mut open_rw(img.path()), 64 * MIB, &esp_opts()).unwrap();
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
        let head = read_range(img.path(), 0, 8 * 512);
        assert!(
            head[2 * 512..6 * 512].iter().all(|&b| b == 0),
            "reserved sectors not zeroed"
        );
    }

    #[test]
    fn old_swap_signature_does_not_confuse_blkid() {
        // "SWAPSPACE2" sits at 4086, in reserved sector 7 that fatfs never writes.
        let img = sparse(64 * MIB);
        let out = run(Command::new(tool("mkswap")).arg(img.path()));
        assert!(out.status.success(), "mkswap: {}", text(&out));
        format(&mut open_rw(img.path()), 64 * MIB, &esp_opts()).unwrap();
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let mut dev = io::Cursor::new(vec![0u8; 2 * MIB as usize]);
        let with_label = |l: &str| VfatOptions {
            label: Some(l.into()),
            ..VfatOptions::default()
        };
        for bad in ["", "TWELVE_CHARS", "A.B", " X", "Ä"] {
            let e = format(&mut dev, 2 * MIB, &with_label(bad)).unwrap_err();
            assert!(matches!(e, VfatError::BadLabel { .. }), "{bad:?}: {e:?}");
        }
        let e = format(&mut dev, 512 * 1024, &VfatOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "partition of 512 KiB is too small for a FAT filesystem (needs at least 1 MiB)"
        );
        let e = format(&mut dev, 3 << 40, &VfatOptions::default()).unwrap_err();
        assert!(matches!(e, VfatError::TooLarge { .. }), "{e:?}");
        let odd = VfatOptions {
            sector_size: 520,
            ..VfatOptions::default()
        };
        let e = format(&mut dev, 2 * MIB, &odd).unwrap_err();
        assert_eq!(
            e.to_string(),
            "FAT cannot use 520-byte sectors (512, 1024, 2048 or 4096)"
        );
        format(&mut dev, 2 * MIB, &with_label("ok")).unwrap();
    }
}
