//! FAT (vfat) volumes without `mkfs.vfat`: format a partition, create directories and
//! write files into it (the ESP that the bootloader stage fills).
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
//! * **LFN entries for `.` and `..`**: every directory created by `Dir::create_dir` starts
//!   `[LFN "."] [.] [LFN ".."] [..]`. fsck.vfat: *"Expected a valid '.' entry in this slot"*.
//!   [`write_file`] creates one directory per mount, unmounts, and then `fix_dot_entries`
//!   rewrites the new directory's first four slots to `[.] [..] [end] [end]`.
//! * **`..` of first-level directories points at cluster 2 on FAT32** instead of 0 (the root
//!   is always cluster 0 in a `..` entry). fsck.vfat: *"… share clusters. Truncating second to
//!   0 bytes because first is FAT32 root dir"*. The same pass sets `..` to the parent's
//!   cluster, or 0 when the parent is the root.
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

#![allow(dead_code)] // write_file/read_file/Slice: used by the tests and for ESPs written without a kernel mount.
use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};

use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

/// Bytes per logical sector; the only size this module formats with.
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
/// Size of one directory entry.
const DIR_ENTRY: usize = 32;
/// Attribute byte value of a long-file-name entry.
const ATTR_LFN: u8 = 0x0F;
/// Attribute bit of a directory.
const ATTR_DIRECTORY: u8 = 0x10;
/// Attribute bit of a volume label.
const ATTR_VOLUME_ID: u8 = 0x08;
/// First name byte of a deleted entry.
const DELETED: u8 = 0xE5;
/// Short name of the `.` entry.
const DOT_NAME: [u8; 11] = *b".          ";
/// Short name of the `..` entry.
const DOTDOT_NAME: [u8; 11] = *b"..         ";

/// How to format a FAT volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The partition's first LBA (512-byte sectors), stored as BPB "hidden sectors" as
    /// mkfs.vfat does; 0 for a volume that is not inside a partition table.
    pub hidden_sectors: u32,
}

/// Everything that can go wrong here. Messages are one line; the cause (if any) is the
/// error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum VfatError {
    #[error("partition of {} is too small for FAT32 (needs at least {})", show_size(*size), show_size(*min))]
    TooSmallForFat32 { size: u64, min: u64 },
    #[error("partition of {} is too small for a FAT filesystem (needs at least {})", show_size(*size), show_size(*min))]
    TooSmall { size: u64, min: u64 },
    #[error("partition of {} is too large for FAT with 512-byte sectors (at most 2 TiB)", show_size(*size))]
    TooLarge { size: u64 },
    #[error("invalid FAT volume label {label:?}: {reason}")]
    BadLabel { label: String, reason: &'static str },
    #[error("invalid path {path:?} on a FAT volume: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("{path:?} is {size} bytes, more than a FAT file can hold (4 GiB - 1)")]
    FileTooLarge { path: String, size: usize },
    #[error("asked for FAT32 but the formatted volume is {found}")]
    NotFat32 { found: &'static str },
    #[error("formatting the FAT volume")]
    Format(#[source] io::Error),
    #[error("opening the FAT volume")]
    Mount(#[source] io::Error),
    #[error("{op} {path:?} on the FAT volume")]
    File {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} on the FAT volume")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("unexpected FAT layout: {0}")]
    Layout(String),
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, VfatError>;

/// Builds a closure that wraps an I/O error with what was being done.
fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> VfatError {
    move |source| VfatError::Io { op, source }
}

/// Builds a closure that wraps an I/O error with the operation and the FAT path.
fn file_err(op: &'static str, path: &str) -> impl FnOnce(io::Error) -> VfatError {
    let path = path.to_string();
    move |source| VfatError::File { op, path, source }
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
/// bytes). Only the first `len` bytes (rounded down to 512) are touched.
pub fn format<D: Read + Write + Seek>(dev: &mut D, len: u64, opts: &VfatOptions) -> Result<()> {
    let label = opts.label.as_deref().map(label_bytes).transpose()?;
    let total_sectors = total_sectors(len)?;
    let mut fopts = FormatVolumeOptions::new()
        .bytes_per_sector(SECTOR as u16)
        .total_sectors(total_sectors)
        .volume_id(opts.volume_id);
    if let Some(label) = label {
        fopts = fopts.volume_label(label);
    }
    if opts.fat32 {
        let cluster = fat32_cluster_bytes(len);
        check_fat32_fits(len, u64::from(total_sectors), u64::from(cluster))?;
        fopts = fopts.fat_type(FatType::Fat32).bytes_per_cluster(cluster);
    }
    wipe_start(dev, len)?;
    dev.seek(SeekFrom::Start(0)).map_err(io_err("seeking"))?;
    fatfs::format_volume(&mut *dev, fopts).map_err(VfatError::Format)?;
    if opts.hidden_sectors != 0 {
        set_hidden_sectors(dev, opts.hidden_sectors)?;
    }
    finish_format(dev, opts.fat32)
}

/// Creates parent directories and writes a file into an existing FAT volume. An existing
/// file is replaced. `path` is `/`-separated, relative to the root (a leading `/` is allowed).
pub fn write_file<D: Read + Write + Seek>(dev: &mut D, path: &str, data: &[u8]) -> Result<()> {
    let parts = split_path(path)?;
    if u32::try_from(data.len()).is_err() {
        return Err(VfatError::FileTooLarge {
            path: path.to_string(),
            size: data.len(),
        });
    }
    for depth in 1..parts.len() {
        ensure_dir(dev, &parts[..depth].join("/"))?;
    }
    write_data(dev, &parts.join("/"), data)
}

/// Reads a file back (for tests and verification).
pub fn read_file<D: Read + Write + Seek>(dev: &mut D, path: &str) -> Result<Vec<u8>> {
    let path = split_path(path)?.join("/");
    let fs = mount(dev)?;
    let mut data = Vec::new();
    {
        let mut file = fs
            .root_dir()
            .open_file(&path)
            .map_err(file_err("opening", &path))?;
        file.read_to_end(&mut data)
            .map_err(file_err("reading", &path))?;
    }
    fs.unmount().map_err(io_err("unmounting"))?;
    Ok(data)
}

/// A window onto a byte range of a larger Read+Write+Seek (to format a partition inside a
/// disk image file). Position 0 of the slice is `start` of the inner stream; reads stop at
/// `len`, writes past `len` fail.
#[derive(Debug)]
pub struct Slice<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T> Slice<T> {
    /// A window of `len` bytes starting at byte `start` of `inner`.
    pub fn new(inner: T, start: u64, len: u64) -> Self {
        Slice {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives the inner stream back.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Bytes that may be transferred at the current position, at most `want`.
    fn room(&self, want: usize) -> usize {
        let left = self.len.saturating_sub(self.pos);
        usize::try_from(left).map_or(want, |left| want.min(left))
    }

    /// Absolute inner offset of the current position.
    fn inner_pos(&self) -> io::Result<u64> {
        self.start.checked_add(self.pos).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "slice offset overflows u64")
        })
    }
}

impl<T: Read + Seek> Read for Slice<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let at = self.inner_pos()?;
        self.inner.seek(SeekFrom::Start(at))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Slice<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.room(buf.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let at = self.inner_pos()?;
        self.inner.seek(SeekFrom::Start(at))?;
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T> Seek for Slice<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => (n, 0),
            SeekFrom::End(d) => (self.len, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the slice",
            )
        })?;
        Ok(self.pos)
    }
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

/// Number of 512-byte sectors for a partition of `len` bytes, within FAT's limits.
fn total_sectors(len: u64) -> Result<u32> {
    if len < MIN_VOLUME_BYTES {
        return Err(VfatError::TooSmall {
            size: len,
            min: MIN_VOLUME_BYTES,
        });
    }
    u32::try_from(len / SECTOR).map_err(|_| VfatError::TooLarge { size: len })
}

/// FAT32 cluster size for a volume of `len` bytes (the Microsoft / mkfs.vfat table).
fn fat32_cluster_bytes(len: u64) -> u32 {
    match len {
        l if l <= 260 * MIB => 512,
        l if l <= 8 * GIB => 4096,
        l if l <= 16 * GIB => 8192,
        l if l <= 32 * GIB => 16384,
        _ => 32768,
    }
}

/// Clusters a FAT32 volume of `total_sectors` gets with `sectors_per_cluster`, computed the
/// way fatfs 0.3.6 sizes the FAT (8 reserved sectors, two FATs, room for two extra entries).
fn fat32_clusters(total_sectors: u64, sectors_per_cluster: u64) -> u64 {
    let entries_per_cluster = sectors_per_cluster * SECTOR / 4;
    let t0 = total_sectors.saturating_sub(FAT32_RESERVED_SECTORS);
    let fat_sectors = (t0 + 2 * sectors_per_cluster).div_ceil(entries_per_cluster + FAT_COUNT);
    let used = FAT32_RESERVED_SECTORS + FAT_COUNT * fat_sectors;
    total_sectors.saturating_sub(used) / sectors_per_cluster
}

/// Smallest FAT32 volume in bytes (512-byte clusters), rounded up to whole MiB.
fn fat32_min_bytes() -> u64 {
    let (mut lo, mut hi) = (0u64, 1u64 << 22);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fat32_clusters(mid, 1) >= FAT32_MIN_CLUSTERS {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (lo * SECTOR).div_ceil(MIB) * MIB
}

/// Fails before anything is written if FAT32 would not fit (fatfs would fall back silently).
fn check_fat32_fits(len: u64, total_sectors: u64, cluster_bytes: u64) -> Result<()> {
    if fat32_clusters(total_sectors, cluster_bytes / SECTOR) >= FAT32_MIN_CLUSTERS {
        Ok(())
    } else {
        Err(VfatError::TooSmallForFat32 {
            size: len,
            min: fat32_min_bytes(),
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

/// Writes `hidden` into the BPB of the boot sector and, on FAT32, of its backup.
fn set_hidden_sectors<D: Read + Write + Seek>(dev: &mut D, hidden: u32) -> Result<()> {
    let boot = read_sector(dev, 0)?;
    let mut sectors = vec![0u64];
    if le16(&boot, 0x16) == 0 {
        let backup = u64::from(le16(&boot, 0x32));
        if backup != 0 {
            sectors.push(backup);
        }
    }
    for sector in sectors {
        write_at(dev, sector * SECTOR + 0x1C, &hidden.to_le_bytes())?;
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
// Writing files
// ---------------------------------------------------------------------------------------

/// Splits a `/`-separated path into its components, rejecting empty, `.` and `..` ones.
fn split_path(path: &str) -> Result<Vec<&str>> {
    let bad = |reason| VfatError::BadPath {
        path: path.to_string(),
        reason,
    };
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(bad("names no file"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("has an empty component"));
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad("has a '.' or '..' component"));
    }
    Ok(parts)
}

/// Makes sure directory `dir` exists; a new one gets its `.`/`..` entries repaired.
fn ensure_dir<D: Read + Write + Seek>(dev: &mut D, dir: &str) -> Result<()> {
    let fs = mount(dev)?;
    let created = {
        let root = fs.root_dir();
        match root.open_dir(dir) {
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                root.create_dir(dir)
                    .map_err(file_err("creating directory", dir))?;
                true
            }
            Err(e) => return Err(file_err("opening directory", dir)(e)),
        }
    };
    fs.unmount().map_err(io_err("unmounting"))?;
    if created {
        fix_dot_entries(dev)?;
    }
    Ok(())
}

/// Creates or replaces file `path` (parents exist) with `data`.
fn write_data<D: Read + Write + Seek>(dev: &mut D, path: &str, data: &[u8]) -> Result<()> {
    let fs = mount(dev)?;
    {
        let mut file = fs
            .root_dir()
            .create_file(path)
            .map_err(file_err("creating", path))?;
        file.truncate().map_err(file_err("truncating", path))?;
        file.write_all(data).map_err(file_err("writing", path))?;
        file.flush().map_err(file_err("writing", path))?;
    }
    fs.unmount().map_err(io_err("unmounting"))
}

// ---------------------------------------------------------------------------------------
// Raw fix-up pass: the `.` and `..` entries of every subdirectory
// ---------------------------------------------------------------------------------------

/// What the fix-up pass needs to know about the volume, read straight from the BPB.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Bytes per cluster.
    cluster_bytes: u64,
    /// Byte offset of the first FAT.
    fat_offset: u64,
    /// Byte offset of the FAT12/16 root directory region.
    root_offset: u64,
    /// Bytes of the FAT12/16 root directory region (0 on FAT32).
    root_bytes: u64,
    /// Byte offset of cluster 2.
    data_offset: u64,
    /// Number of data clusters.
    clusters: u64,
    /// First cluster of the FAT32 root directory (0 on FAT12/16).
    root_cluster: u32,
    /// 12, 16 or 32.
    fat_bits: u8,
}

/// A directory: the fixed FAT12/16 root region, or a cluster chain.
#[derive(Debug, Clone, Copy)]
enum DirLoc {
    FixedRoot,
    Cluster(u32),
}

/// Walks the whole directory tree and makes every subdirectory start with proper `.` and
/// `..` entries: removes the LFN slots fatfs 0.3.6 writes in front of them and points `..`
/// at the parent (0 for the root). Idempotent; directories that are already right are not
/// written.
fn fix_dot_entries<D: Read + Write + Seek>(dev: &mut D) -> Result<()> {
    let geo = read_geometry(dev)?;
    let root = if geo.fat_bits == 32 {
        DirLoc::Cluster(geo.root_cluster)
    } else {
        DirLoc::FixedRoot
    };
    let mut seen = HashSet::new();
    let mut todo = vec![(root, true)];
    while let Some((dir, is_root)) = todo.pop() {
        let parent = if is_root { 0 } else { dir_cluster(dir) };
        for child in subdirs(dev, &geo, dir)? {
            if !seen.insert(child) {
                return Err(VfatError::Layout(format!(
                    "directory cluster {child} is reachable twice"
                )));
            }
            fix_one_dir(dev, &geo, child, parent)?;
            todo.push((DirLoc::Cluster(child), false));
        }
    }
    Ok(())
}

/// The cluster number a `..` entry uses for `dir`.
fn dir_cluster(dir: DirLoc) -> u32 {
    match dir {
        DirLoc::FixedRoot => 0,
        DirLoc::Cluster(c) => c,
    }
}

/// Rewrites the first slots of directory `cluster` (parent's cluster `parent`) if needed.
fn fix_one_dir<D: Read + Write + Seek>(
    dev: &mut D,
    geo: &Geometry,
    cluster: u32,
    parent: u32,
) -> Result<()> {
    let offset = cluster_offset(geo, cluster)?;
    let mut head = [0u8; 5 * DIR_ENTRY];
    read_at(dev, offset, &mut head)?;
    let slot = |i: usize| &head[i * DIR_ENTRY..(i + 1) * DIR_ENTRY];
    let mut fixed = [0u8; 4 * DIR_ENTRY];
    if is_lfn(slot(0))
        && has_name(slot(1), &DOT_NAME)
        && is_lfn(slot(2))
        && has_name(slot(3), &DOTDOT_NAME)
    {
        // [LFN][.][LFN][..] -> [.][..][free][free]
        fixed[..DIR_ENTRY].copy_from_slice(slot(1));
        fixed[DIR_ENTRY..2 * DIR_ENTRY].copy_from_slice(slot(3));
        if slot(4)[0] != 0 {
            // Entries follow: keep the chain of used slots unbroken.
            fixed[2 * DIR_ENTRY] = DELETED;
            fixed[3 * DIR_ENTRY] = DELETED;
        }
    } else if has_name(slot(0), &DOT_NAME) && has_name(slot(1), &DOTDOT_NAME) {
        fixed.copy_from_slice(&head[..4 * DIR_ENTRY]);
    } else {
        return Err(VfatError::Layout(format!(
            "directory at cluster {cluster} does not start with '.' and '..'"
        )));
    }
    set_entry_cluster(&mut fixed[..DIR_ENTRY], cluster);
    set_entry_cluster(&mut fixed[DIR_ENTRY..2 * DIR_ENTRY], parent);
    if fixed[..] != head[..4 * DIR_ENTRY] {
        write_at(dev, offset, &fixed)?;
    }
    Ok(())
}

/// Whether a 32-byte slot is a long-file-name entry.
fn is_lfn(entry: &[u8]) -> bool {
    entry.get(11) == Some(&ATTR_LFN) && entry.first() != Some(&DELETED) && entry.first() != Some(&0)
}

/// Whether a 32-byte slot is a short entry with exactly this 11-byte name.
fn has_name(entry: &[u8], name: &[u8; 11]) -> bool {
    entry.get(..11) == Some(&name[..]) && !is_lfn(entry)
}

/// Stores a first-cluster number into a 32-byte short entry.
fn set_entry_cluster(entry: &mut [u8], cluster: u32) {
    let [a, b, c, d] = cluster.to_le_bytes();
    if entry.len() >= DIR_ENTRY {
        entry[20] = c;
        entry[21] = d;
        entry[26] = a;
        entry[27] = b;
    }
}

/// First clusters of the subdirectories listed in `dir` (not `.`, `..`, labels or LFNs).
fn subdirs<D: Read + Seek>(dev: &mut D, geo: &Geometry, dir: DirLoc) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for (offset, len) in dir_extents(dev, geo, dir)? {
        let mut buf =
            vec![0u8; usize::try_from(len).map_err(|_| layout("directory extent too large"))?];
        read_at(dev, offset, &mut buf)?;
        for entry in buf.chunks_exact(DIR_ENTRY) {
            match entry[0] {
                0 => return Ok(out),
                DELETED => continue,
                _ => {}
            }
            let attr = entry[11];
            let special = has_name(entry, &DOT_NAME) || has_name(entry, &DOTDOT_NAME);
            if attr == ATTR_LFN
                || attr & ATTR_VOLUME_ID != 0
                || attr & ATTR_DIRECTORY == 0
                || special
            {
                continue;
            }
            out.push(entry_cluster(entry, geo));
        }
    }
    Ok(out)
}

/// The first-cluster number stored in a 32-byte short entry.
fn entry_cluster(entry: &[u8], geo: &Geometry) -> u32 {
    let lo = u32::from(le16(entry, 26));
    let hi = if geo.fat_bits == 32 {
        u32::from(le16(entry, 20))
    } else {
        0
    };
    (hi << 16) | lo
}

/// The byte ranges holding a directory's entries.
fn dir_extents<D: Read + Seek>(
    dev: &mut D,
    geo: &Geometry,
    dir: DirLoc,
) -> Result<Vec<(u64, u64)>> {
    match dir {
        DirLoc::FixedRoot => Ok(vec![(geo.root_offset, geo.root_bytes)]),
        DirLoc::Cluster(first) => cluster_chain(dev, geo, first)?
            .into_iter()
            .map(|c| Ok((cluster_offset(geo, c)?, geo.cluster_bytes)))
            .collect(),
    }
}

/// Byte offset of data cluster `cluster`.
fn cluster_offset(geo: &Geometry, cluster: u32) -> Result<u64> {
    let c = u64::from(cluster);
    if c < 2 || c >= geo.clusters + 2 {
        return Err(layout(&format!("cluster {cluster} is out of range")));
    }
    Ok(geo.data_offset + (c - 2) * geo.cluster_bytes)
}

/// The clusters of the chain starting at `first`, following the first FAT.
fn cluster_chain<D: Read + Seek>(dev: &mut D, geo: &Geometry, first: u32) -> Result<Vec<u32>> {
    let mut chain = vec![first];
    let mut current = first;
    loop {
        let next = fat_entry(dev, geo, current)?;
        if is_end_of_chain(geo, next) {
            return Ok(chain);
        }
        cluster_offset(geo, next)?;
        if chain.len() as u64 > geo.clusters {
            return Err(layout(&format!("cluster chain from {first} loops")));
        }
        chain.push(next);
        current = next;
    }
}

/// Whether a FAT entry value ends a chain.
fn is_end_of_chain(geo: &Geometry, value: u32) -> bool {
    match geo.fat_bits {
        12 => value >= 0xFF8,
        16 => value >= 0xFFF8,
        _ => value >= 0x0FFF_FFF8,
    }
}

/// Reads entry `cluster` of the first FAT.
fn fat_entry<D: Read + Seek>(dev: &mut D, geo: &Geometry, cluster: u32) -> Result<u32> {
    let c = u64::from(cluster);
    let mut buf = [0u8; 4];
    match geo.fat_bits {
        12 => {
            read_at(dev, geo.fat_offset + c * 3 / 2, &mut buf[..2])?;
            let pair = u32::from(le16(&buf, 0));
            Ok(if c % 2 == 1 { pair >> 4 } else { pair & 0xFFF })
        }
        16 => {
            read_at(dev, geo.fat_offset + c * 2, &mut buf[..2])?;
            Ok(u32::from(le16(&buf, 0)))
        }
        _ => {
            read_at(dev, geo.fat_offset + c * 4, &mut buf)?;
            Ok(u32::from_le_bytes(buf) & 0x0FFF_FFFF)
        }
    }
}

/// Parses the BPB of the volume at the start of `dev`.
fn read_geometry<D: Read + Seek>(dev: &mut D) -> Result<Geometry> {
    let boot = read_sector(dev, 0)?;
    let bytes_per_sector = u64::from(le16(&boot, 0x0B));
    let sectors_per_cluster = u64::from(boot[0x0D]);
    let reserved = u64::from(le16(&boot, 0x0E));
    let fats = u64::from(boot[0x10]);
    let root_entries = u64::from(le16(&boot, 0x11));
    let total16 = u64::from(le16(&boot, 0x13));
    let fat16_size = u64::from(le16(&boot, 0x16));
    let total32 = u64::from(le32(&boot, 0x20));
    let fat_size = if fat16_size != 0 {
        fat16_size
    } else {
        u64::from(le32(&boot, 0x24))
    };
    let total = if total16 != 0 { total16 } else { total32 };
    if bytes_per_sector == 0 || sectors_per_cluster == 0 {
        return Err(layout("boot sector has zero sector or cluster size"));
    }
    let root_bytes = root_entries * DIR_ENTRY as u64;
    let root_sectors = root_bytes.div_ceil(bytes_per_sector);
    let meta_sectors = reserved + fats * fat_size + root_sectors;
    let clusters = total
        .checked_sub(meta_sectors)
        .ok_or_else(|| layout("boot sector sizes exceed the volume"))?
        / sectors_per_cluster;
    let fat_bits = match clusters {
        c if c < 4085 => 12,
        c if c < FAT32_MIN_CLUSTERS => 16,
        _ => 32,
    };
    Ok(Geometry {
        cluster_bytes: bytes_per_sector * sectors_per_cluster,
        fat_offset: reserved * bytes_per_sector,
        root_offset: (reserved + fats * fat_size) * bytes_per_sector,
        root_bytes: if fat_bits == 32 { 0 } else { root_bytes },
        data_offset: meta_sectors * bytes_per_sector,
        clusters,
        root_cluster: if fat_bits == 32 { le32(&boot, 0x2C) } else { 0 },
        fat_bits,
    })
}

/// A layout error with this description.
fn layout(what: &str) -> VfatError {
    VfatError::Layout(what.to_string())
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

/// Little-endian u32 at `at`, 0 if out of range.
fn le32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Reads 512-byte sector `n`.
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

    /// A file read back with mtools (independent of fatfs).
    fn mtype(img: &Path, path: &str) -> Vec<u8> {
        let out = run(Command::new(tool("mcopy"))
            .arg("-n")
            .arg("-i")
            .arg(img)
            .arg(format!("::/{path}"))
            .arg("-"));
        assert!(
            out.status.success(),
            "mcopy {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn read_range(p: &Path, start: u64, len: usize) -> Vec<u8> {
        let mut f = File::open(p).unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    fn hidden_sectors_at(img: &Path, sector: u64) -> u32 {
        le32(&read_range(img, sector * 512, 512), 0x1C)
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
    fn write_file_is_fsck_clean_and_mtools_reads_it() {
        let img = formatted(64 * MIB, &esp_opts());
        let efi = noise(200 * 1024, 7);
        let conf = b"title anemos\nlinux /vmlinuz\n".to_vec();
        let mut dev = open_rw(img.path());
        write_file(&mut dev, "EFI/BOOT/BOOTX64.EFI", &efi).unwrap();
        write_file(&mut dev, "/loader/entries/a.conf", &conf).unwrap();
        drop(dev);
        assert_fsck_clean(img.path());
        assert!(
            mtype(img.path(), "EFI/BOOT/BOOTX64.EFI") == efi,
            "mcopy returned different bytes"
        );
        assert_eq!(mtype(img.path(), "loader/entries/a.conf"), conf);
        let mut dev = open_rw(img.path());
        assert!(read_file(&mut dev, "EFI/BOOT/BOOTX64.EFI").unwrap() == efi);
        assert_eq!(read_file(&mut dev, "loader/entries/a.conf").unwrap(), conf);
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
    }

    #[test]
    fn new_directories_have_plain_dot_entries() {
        let img = formatted(64 * MIB, &esp_opts());
        let mut dev = open_rw(img.path());
        write_file(&mut dev, "EFI/BOOT/x", b"x").unwrap();
        let geo = read_geometry(&mut dev).unwrap();
        let efi = subdirs(&mut dev, &geo, DirLoc::Cluster(geo.root_cluster)).unwrap();
        assert_eq!(efi.len(), 1);
        let boot = subdirs(&mut dev, &geo, DirLoc::Cluster(efi[0])).unwrap();
        assert_eq!(boot.len(), 1);
        for (dir, parent) in [(efi[0], 0), (boot[0], efi[0])] {
            let mut head = [0u8; 64];
            read_at(&mut dev, cluster_offset(&geo, dir).unwrap(), &mut head).unwrap();
            assert!(has_name(&head[..32], &DOT_NAME), "slot 0 of cluster {dir}");
            assert!(
                has_name(&head[32..], &DOTDOT_NAME),
                "slot 1 of cluster {dir}"
            );
            assert_eq!(entry_cluster(&head[..32], &geo), dir);
            assert_eq!(entry_cluster(&head[32..], &geo), parent);
        }
    }

    #[test]
    fn replacing_and_many_files_stay_clean() {
        let img = formatted(64 * MIB, &esp_opts());
        let mut dev = open_rw(img.path());
        write_file(&mut dev, "EFI/BOOT/BOOTX64.EFI", &noise(300 * 1024, 1)).unwrap();
        write_file(&mut dev, "EFI/BOOT/BOOTX64.EFI", b"short").unwrap();
        // 40 long names (3 slots each) overflow a 512-byte directory cluster several times.
        for i in 0..40 {
            write_file(
                &mut dev,
                &format!("EFI/Linux/kernel-with-a-long-name-{i}.efi"),
                &noise(1000 + i, i as u64),
            )
            .unwrap();
        }
        write_file(&mut dev, "EFI/Linux/sub/dir/after/growth.txt", b"deep").unwrap();
        drop(dev);
        assert_fsck_clean(img.path());
        let mut dev = open_rw(img.path());
        assert_eq!(
            read_file(&mut dev, "EFI/BOOT/BOOTX64.EFI").unwrap(),
            b"short"
        );
        assert_eq!(
            read_file(&mut dev, "EFI/Linux/kernel-with-a-long-name-39.efi").unwrap(),
            noise(1039, 39)
        );
        assert_eq!(
            mtype(img.path(), "EFI/Linux/sub/dir/after/growth.txt"),
            b"deep"
        );
    }

    #[test]
    fn fat32_on_32_mib_is_a_clear_error_and_writes_nothing() {
        let img = sparse(32 * MIB);
        std::fs::write(img.path(), noise(32 * MIB as usize, 3)).unwrap();
        let err = format(&mut open_rw(img.path()), 32 * MIB, &esp_opts()).unwrap_err();
        assert!(matches!(err, VfatError::TooSmallForFat32 { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "partition of 32 MiB is too small for FAT32 (needs at least 33 MiB)"
        );
        assert!(
            std::fs::read(img.path()).unwrap() == noise(32 * MIB as usize, 3),
            "device was modified"
        );
    }

    #[test]
    fn fat32_minimum_reported_is_really_enough() {
        let min = fat32_min_bytes();
        assert_eq!(min, 33 * MIB);
        let img = formatted(min, &esp_opts());
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", Some("ESP"), "1234-ABCD");
    }

    #[test]
    fn fat16_and_fat12_when_fat32_is_not_asked() {
        for (mib, version) in [(32u64, "FAT16"), (2, "FAT12")] {
            let opts = VfatOptions {
                label: Some("data".into()),
                volume_id: 0xDEAD_BEEF,
                fat32: false,
                hidden_sectors: 0,
            };
            let img = formatted(mib * MIB, &opts);
            assert_fsck_clean(img.path());
            assert_blkid(img.path(), version, Some("DATA"), "DEAD-BEEF");
            let mut dev = open_rw(img.path());
            write_file(&mut dev, "a/b/c.txt", b"hello").unwrap();
            write_file(&mut dev, "a/second.txt", &noise(5000, 9)).unwrap();
            drop(dev);
            assert_fsck_clean(img.path());
            assert_eq!(mtype(img.path(), "a/b/c.txt"), b"hello", "{version}");
            assert_eq!(
                mtype(img.path(), "a/second.txt"),
                noise(5000, 9),
                "{version}"
            );
        }
    }

    #[test]
    fn no_label_gives_no_name() {
        let opts = VfatOptions {
            label: None,
            volume_id: 1,
            fat32: true,
            hidden_sectors: 0,
        };
        let img = formatted(64 * MIB, &opts);
        assert_fsck_clean(img.path());
        assert_blkid(img.path(), "FAT32", None, "0000-0001");
        assert_eq!(hidden_sectors_at(img.path(), 0), 0);
    }

    #[test]
    fn slice_formats_a_partition_inside_an_image() {
        let (start, len, total) = (MIB, 64 * MIB, 66 * MIB);
        let img = sparse(total);
        std::fs::write(img.path(), noise(total as usize, 5)).unwrap();
        let before_head = read_range(img.path(), 0, start as usize);
        let tail = (start + len, (total - start - len) as usize);
        let before_tail = read_range(img.path(), tail.0, tail.1);
        let mut part = Slice::new(open_rw(img.path()), start, len);
        format(&mut part, len, &esp_opts()).unwrap();
        write_file(&mut part, "EFI/BOOT/BOOTX64.EFI", b"efi").unwrap();
        drop(part);
        assert!(
            read_range(img.path(), 0, start as usize) == before_head,
            "bytes before the slice changed"
        );
        assert!(
            read_range(img.path(), tail.0, tail.1) == before_tail,
            "bytes after the slice changed"
        );
        let extracted = NamedTempFile::new().unwrap();
        std::fs::write(
            extracted.path(),
            read_range(img.path(), start, len as usize),
        )
        .unwrap();
        assert_fsck_clean(extracted.path());
        assert_blkid(extracted.path(), "FAT32", Some("ESP"), "1234-ABCD");
        assert_eq!(mtype(extracted.path(), "EFI/BOOT/BOOTX64.EFI"), b"efi");
    }

    #[test]
    fn slice_refuses_writes_past_its_end() {
        let mut s = Slice::new(io::Cursor::new(vec![0u8; 16]), 4, 8);
        assert_eq!(s.write(&[1; 10]).unwrap(), 8);
        assert!(s.write(&[1]).is_err());
        assert_eq!(s.seek(SeekFrom::End(-2)).unwrap(), 6);
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).unwrap(), 2);
        assert!(s.seek(SeekFrom::Current(-9)).is_err());
        assert_eq!(
            s.into_inner().into_inner(),
            [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn formatting_is_deterministic() {
        let build = || {
            let img = formatted(64 * MIB, &esp_opts());
            let mut dev = open_rw(img.path());
            write_file(&mut dev, "EFI/BOOT/BOOTX64.EFI", &noise(10_000, 2)).unwrap();
            write_file(&mut dev, "loader/loader.conf", b"timeout 0\n").unwrap();
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
        format(&mut dev, 2 * MIB, &with_label("ok")).unwrap();
        for bad in ["", "/", "a//b", "a/../b", "./a"] {
            let e = write_file(&mut dev, bad, b"x").unwrap_err();
            assert!(matches!(e, VfatError::BadPath { .. }), "{bad:?}: {e:?}");
        }
        write_file(&mut dev, "file", b"x").unwrap();
        let e = write_file(&mut dev, "file/below", b"x").unwrap_err();
        assert!(matches!(e, VfatError::File { .. }), "{e:?}");
        let e = read_file(&mut dev, "missing").unwrap_err();
        assert!(
            matches!(&e, VfatError::File { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
    }
}
