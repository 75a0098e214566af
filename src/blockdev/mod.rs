//! `/dev/disk/by-*` names without udev.
//!
//! PID 1 runs no udev, yet fstab entries, kernel command lines and installers name disks as
//! `/dev/disk/by-uuid/...`, `by-partuuid`, `by-label`, `by-id` or `by-path`. This module works
//! out the names udev's `60-persistent-storage.rules` (with its `path_id`, `ata_id`, `scsi_id`
//! and `blkid` helpers) would give each block device, and creates the symlinks:
//!
//! - [`read_block_infos`] reads identity data from sysfs (the sysfs root is a parameter);
//! - [`probe_fs`] and [`read_gpt`] read filesystem superblocks and the GPT of a device;
//! - [`link_names`] turns those into link names (pure);
//! - [`create_links`] makes the links under `<dev>/disk`.
//!
//! Reference: systemd's current rules and builtins (which keep the older by-id and by-path
//! names as compatibility links; the `by-path/<path>-part/` tree and partition by-diskseq
//! links are newer than Debian 12's udev), and libblkid 2.38 for the superblock fields.
//!
//! Deviations we know of (most are repeated at the code that makes them):
//!
//! - Device strings (serials, models, wwids) are escaped the `string_escape=replace` way for
//!   every bus: whitespace and `/` become `_`. udev leaves them unescaped for virtio, MMC and
//!   the NVMe `wwid` link, so a space there would split the link into several and a `/` would
//!   make a subdirectory; we make one flat link instead.
//! - Labels that are not valid UTF-8 are decoded lossily, so their `\xNN` escapes differ.
//! - by-id for USB disks (`usb-...`, from `usb_id`) is not made; by-path for USB omits the
//!   `usbvN-` variant (it needs the root hub's protocol). by-path is not made for Fibre
//!   Channel, SAS, iSCSI, Hyper-V, FireWire, CCISS or S390 devices: their names need
//!   transport attributes we do not read.
//! - SCSI by-path rebasing of the host number uses [`BlockInfo::scsi_host_base`]; without it
//!   we assume one SCSI host per controller (true for virtio-scsi and most HBAs).
//! - Without `device/vpd_pg89` an ATA disk's model comes from `device/model`, which SCSI
//!   truncates to 16 characters (ata_id reads all 40 with IDENTIFY DEVICE).
//! - Only GPT partitions get by-partuuid (udev also makes `<disk id>-<nn>` for MBR).
//! - `vfat` labels are read from the root directory's first cluster only; ext4 metadata
//!   checksums and XFS superblock fields beyond the block size are not verified; when more
//!   than one superblock matches, the first in the order XFS, ext, btrfs, swap, vfat wins
//!   (libblkid reports none).
//! - `by-loop-inode`/`by-loop-ref`, the FireWire and pmem by-id names, and the device-mapper
//!   and MD `by-id` names are not made; `dm-*` and `md*` devices do get by-uuid and by-label.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Everything needed to name one block device, read from sysfs and the device itself.
///
/// Fields a bus does not have stay `None`. For a partition, the identity fields (serial,
/// model, wwid...) are those of its whole disk, as udev imports them from the parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Kernel name: `vda`, `vda1`, `sda`, `nvme0n1p2`.
    pub kname: String,
    /// Whole-disk kernel name, for partitions.
    pub parent: Option<String>,
    /// Partition number (sysfs `partition`), for partitions.
    pub partnum: Option<u32>,
    /// Device serial: virtio `serial`, NVMe controller `serial`, the ATA serial (IDENTIFY or
    /// VPD page 0x80), SCSI unit serial (VPD 0x80), MMC `serial`.
    pub serial: Option<String>,
    /// Kernel `wwid` attribute (NVMe namespace or SCSI device), e.g. `eui.0025...`, `naa.5000...`.
    pub wwid: Option<String>,
    /// Model: NVMe/SCSI `device/model`, the full ATA model when IDENTIFY data is readable,
    /// the MMC card `name`.
    pub model: Option<String>,
    /// SCSI `device/vendor` (`ATA` for libata disks), unpadded or padded.
    pub vendor: Option<String>,
    /// Resolved sysfs path of the block device, reported as if sysfs were mounted on `/sys`:
    /// `/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda`.
    pub devpath: String,
    /// Bus the names come from: `virtio`, `nvme`, `ata`, `scsi` or `mmc`. `None` means "guess
    /// from the kernel name and vendor".
    pub subsystem_hint: Option<String>,
    /// NVMe namespace id (sysfs `nsid`), used in by-id and by-path.
    pub nsid: Option<u32>,
    /// World wide name as udev's `ID_WWN_WITH_EXTENSION` (`0x5000c500a1b2c3d4`), from ATA
    /// IDENTIFY data or the SCSI NAA designator. `None`: derived from a `naa.` [`Self::wwid`].
    pub wwn: Option<String>,
    /// SCSI `ID_SERIAL` as scsi_id builds it from the VPD pages, before whitespace is squeezed
    /// (`0QEMU    QEMU HARDDISK   drive-scsi0-0-0-0`). `None`: derived from wwid or serial.
    pub id_serial: Option<String>,
    /// libata `port_no` of the ATA port the disk is on (by-path `ata-<port>.<target>`).
    pub ata_port_no: Option<u32>,
    /// Lowest `hostN` number under the SCSI host's parent device (path_id's rebase).
    pub scsi_host_base: Option<u32>,
    /// For NVMe namespaces under `/devices/virtual/nvme-subsystem/` (native multipath), the
    /// path of the controller udev uses for by-path, e.g. `/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0`.
    pub nvme_ctrl_path: Option<String>,
    /// Disk sequence number (sysfs `diskseq`) of the whole disk.
    pub diskseq: Option<u64>,
}

/// What probing a device found: filesystem superblock and GPT partition entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// `ext2`, `ext3`, `ext4`, `xfs`, `btrfs`, `vfat` or `swap`.
    pub fs_type: Option<String>,
    /// Filesystem UUID as blkid prints it (lowercase 8-4-4-4-12, or `XXXX-XXXX` for vfat).
    pub fs_uuid: Option<String>,
    /// Filesystem label, trailing whitespace removed.
    pub fs_label: Option<String>,
    /// GPT partition GUID, lowercase.
    pub part_uuid: Option<String>,
    /// GPT partition name, trailing whitespace removed.
    pub part_label: Option<String>,
}

/// One used entry of a GPT partition array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPart {
    /// Partition number as Linux numbers it: entry index + 1.
    pub number: u32,
    /// Unique partition GUID, lowercase 8-4-4-4-12.
    pub part_uuid: String,
    /// Partition name (UTF-16LE decoded, trailing whitespace removed as blkid does).
    pub part_label: String,
}

// ---------------------------------------------------------------------------------------------
// Small byte helpers. Every read goes through `get`, so malformed input yields `None`, never a
// panic.

fn bytes_at(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

fn le16(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes_at(buf, off, 2)?.try_into().ok()?))
}

fn le32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes_at(buf, off, 4)?.try_into().ok()?))
}

fn be32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes_at(buf, off, 4)?.try_into().ok()?))
}

fn le64(buf: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes_at(buf, off, 8)?.try_into().ok()?))
}

/// Reads up to `len` bytes at `offset`; fewer at the end of the device, none past it.
fn read_upto<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.by_ref().take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as the GPT headers use it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 16-byte UUID stored big-endian (ext, XFS, btrfs, swap), or `None` when all zero (blkid
/// does not report empty UUIDs).
fn uuid_be(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&x| x == 0) {
        return None;
    }
    let h = hex(b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A GUID in the mixed-endian layout of EFI (first three fields little-endian).
fn guid_le(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let mut s = [0u8; 16];
    s.copy_from_slice(b);
    s[0..4].reverse();
    s[4..6].reverse();
    s[6..8].reverse();
    let h = hex(&s);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// C `isspace`: blank, tab, newline, vertical tab, form feed, carriage return.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A label field: up to the first NUL, trailing whitespace removed (blkid's
/// `blkid_rtrim_whitespace`), `None` when empty.
fn label_from(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]);
    let s = s.trim_end_matches(is_c_space);
    (!s.is_empty()).then(|| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// udev's string escaping.

/// Characters udev allows in device names unchanged.
fn udev_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)
}

/// `udev_replace_chars(s, NULL)`: every character outside `[A-Za-z0-9#+-.:=@_]` becomes `_`,
/// except multi-byte UTF-8 characters and `\x` escapes, which are kept.
fn replace_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let hex_escape = c == '\\' && chars.peek() == Some(&'x');
        if udev_plain(c) || c.len_utf8() > 1 || hex_escape {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// `udev_replace_whitespace`: strips leading and trailing whitespace and turns each inner run
/// of whitespace into one `_` (how ata_id and scsi_id clean model and serial strings).
fn replace_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.trim_matches(is_c_space).chars() {
        if is_c_space(c) {
            gap = true;
            continue;
        }
        if gap {
            out.push('_');
            gap = false;
        }
        out.push(c);
    }
    out
}

/// A value substituted from a sysfs attribute into a link name: trailing whitespace removed,
/// then escaped like `string_escape=replace` (udev keeps spaces and `/` for some buses; see
/// the module notes).
fn attr_escape(s: &str) -> String {
    replace_chars(s.trim_end_matches(is_c_space))
}

/// `blkid_encode_string`, which makes `ID_FS_LABEL_ENC`, `ID_FS_UUID_ENC` and
/// `ID_PART_ENTRY_NAME`: characters outside `[A-Za-z0-9#+-.:=@_]`, and `\`, become `\xNN`
/// (lowercase hex); multi-byte UTF-8 characters are kept.
fn encode_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if udev_plain(c) || c.len_utf8() > 1 {
            out.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// sysfs.

/// Reads a sysfs attribute, dropping the trailing newline. `None` when missing, unreadable or
/// empty.
fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let bytes = fs::read(dir.join(name)).ok()?;
    let s = String::from_utf8_lossy(&bytes);
    let s = s.trim_end_matches('\n');
    (!s.is_empty()).then(|| s.to_string())
}

fn read_num<T: std::str::FromStr>(dir: &Path, name: &str) -> Option<T> {
    read_attr(dir, name)?.trim().parse().ok()
}

/// `<prefix><digits>`, e.g. `host2` with prefix `host`.
fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Reads [`BlockInfo`] for every entry of `<sysfs>/class/block`, sorted by kernel name.
///
/// Hidden devices (NVMe per-path `nvme0c0n1`) are left out. An entry that cannot be read is
/// logged and skipped; only a missing or unreadable `class/block` is an error.
pub fn read_block_infos(sysfs: &Path) -> io::Result<Vec<BlockInfo>> {
    let class = sysfs.join("class/block");
    let root = fs::canonicalize(sysfs)
        .map_err(|e| io::Error::new(e.kind(), format!("resolving {}: {e}", sysfs.display())))?;
    let mut names: Vec<String> = fs::read_dir(&class)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", class.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut infos = Vec::new();
    for name in names {
        match read_one(sysfs, &root, &name) {
            Ok(Some(info)) => infos.push(info),
            Ok(None) => log::debug!("block device {name}: hidden, not named"),
            Err(e) => log::warn!("block device {name}: reading sysfs: {e}"),
        }
    }
    Ok(infos)
}

/// A path under the (canonical) sysfs root, reported as if sysfs were mounted on `/sys`.
fn sys_path(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => Path::new("/sys").join(rel).to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

fn read_one(sysfs: &Path, root: &Path, name: &str) -> io::Result<Option<BlockInfo>> {
    let dir = fs::canonicalize(sysfs.join("class/block").join(name))?;
    if read_attr(&dir, "hidden").as_deref() == Some("1") {
        return Ok(None);
    }
    let partnum: Option<u32> = read_num(&dir, "partition");
    let disk_dir = match partnum {
        Some(_) => dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.clone()),
        None => dir.clone(),
    };
    let parent = partnum
        .and(disk_dir.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let mut info = BlockInfo {
        kname: name.to_string(),
        parent,
        partnum,
        devpath: sys_path(root, &dir),
        diskseq: read_num(&disk_dir, "diskseq"),
        ..BlockInfo::default()
    };
    let disk = info.parent.clone().unwrap_or_else(|| name.to_string());
    if disk.starts_with("vd") {
        read_virtio(&mut info, &disk_dir);
    } else if disk.starts_with("nvme") {
        read_nvme(&mut info, sysfs, root, &disk_dir, &disk);
    } else if disk.starts_with("sd") || disk.starts_with("sr") {
        read_scsi(&mut info, sysfs, root, &disk_dir);
    } else if disk.starts_with("mmcblk") {
        let device = disk_dir.join("device");
        info.model = read_attr(&device, "name");
        info.serial = read_attr(&device, "serial");
        info.subsystem_hint = Some("mmc".into());
    }
    Ok(Some(info))
}

/// virtio-blk: `serial` on the disk (the device returns at most 20 bytes).
fn read_virtio(info: &mut BlockInfo, disk_dir: &Path) {
    info.serial = read_attr(disk_dir, "serial").map(|s| truncate_chars(&s, 20));
    info.subsystem_hint = Some("virtio".into());
}

fn truncate_chars(s: &str, max_bytes: usize) -> String {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// NVMe: model and serial of the controller (or subsystem), wwid and nsid of the namespace.
fn read_nvme(info: &mut BlockInfo, sysfs: &Path, root: &Path, disk_dir: &Path, disk: &str) {
    let device = disk_dir.join("device");
    info.model = read_attr(&device, "model");
    info.serial = read_attr(&device, "serial");
    info.wwid = read_attr(disk_dir, "wwid");
    info.nsid = read_num(disk_dir, "nsid");
    info.subsystem_hint = Some("nvme".into());
    if info.devpath.contains("/nvme-subsystem/") {
        // As udev's find_real_nvme_parent: the controller named by the `nvme<N>` prefix.
        let digits: String = disk
            .trim_start_matches("nvme")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(ctrl) = fs::canonicalize(sysfs.join("class/nvme").join(format!("nvme{digits}"))) {
            info.nvme_ctrl_path = Some(sys_path(root, &ctrl));
        }
    }
}

/// SCSI and libata disks: vendor/model/wwid, plus what ata_id or scsi_id would read.
fn read_scsi(info: &mut BlockInfo, sysfs: &Path, root: &Path, disk_dir: &Path) {
    let device = disk_dir.join("device");
    info.vendor = read_attr(&device, "vendor");
    info.model = read_attr(&device, "model");
    info.wwid = read_attr(&device, "wwid");
    let vendor = info.vendor.clone().unwrap_or_default();
    let model = info.model.clone().unwrap_or_default();
    let pg80 = fs::read(device.join("vpd_pg80")).ok();
    let unit_serial = pg80.as_deref().and_then(vpd80_serial);
    if vendor.trim_end() == "ATA" {
        info.subsystem_hint = Some("ata".into());
        match fs::read(device.join("vpd_pg89"))
            .ok()
            .as_deref()
            .and_then(ata_identify_from_vpd89)
        {
            Some(id) => {
                info.model = Some(id.model);
                info.serial = Some(id.serial);
                info.wwn = id.wwn;
            }
            None => info.serial = unit_serial.map(|s| s.trim_matches(is_c_space).to_string()),
        }
        info.ata_port_no = ata_port_no(sysfs, root, disk_dir);
    } else {
        info.subsystem_hint = Some("scsi".into());
        info.serial = unit_serial
            .as_deref()
            .map(|s| s.trim_matches(is_c_space).to_string());
        let from83 = fs::read(device.join("vpd_pg83"))
            .ok()
            .and_then(|p| scsi_id_from_vpd83(&p, &vendor, &model));
        match from83 {
            Some((id, wwn)) => {
                info.id_serial = Some(id);
                info.wwn = wwn;
            }
            None => {
                info.id_serial =
                    unit_serial.map(|s| format!("S{}{s}", vendor_model(&vendor, &model)))
            }
        }
    }
    info.scsi_host_base = scsi_host_base(root, disk_dir);
}

/// The `ataN` directory above the disk, then its `ata_port` class device's `port_no`.
fn ata_port_no(sysfs: &Path, root: &Path, disk_dir: &Path) -> Option<u32> {
    let ata = disk_dir
        .ancestors()
        .take_while(|a| a.starts_with(root))
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| numbered(n, "ata"))
                .is_some()
        })?;
    let name = ata.file_name()?;
    read_num(&ata.join("ata_port").join(name), "port_no")
        .or_else(|| read_num(&sysfs.join("class/ata_port").join(name), "port_no"))
}

/// path_id's "rebase": the lowest `hostN` beside the disk's SCSI host.
fn scsi_host_base(root: &Path, disk_dir: &Path) -> Option<u32> {
    let host = disk_dir
        .ancestors()
        .take_while(|a| a.starts_with(root))
        .find(|a| {
            a.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| numbered(n, "host"))
                .is_some()
        })?;
    fs::read_dir(host.parent()?)
        .ok()?
        .flatten()
        .filter_map(|e| numbered(&e.file_name().to_string_lossy(), "host"))
        .min()
}

/// SCSI vendor (8) and model (16) padded with blanks, as INQUIRY returns them.
fn vendor_model(vendor: &str, model: &str) -> String {
    format!("{:<8.8}{:<16.16}", vendor, model)
}

/// VPD page 0x80 (unit serial number): the serial, raw.
fn vpd80_serial(page: &[u8]) -> Option<String> {
    if page.get(1) != Some(&0x80) {
        return None;
    }
    let len = usize::from(*page.get(3)?);
    let raw = page.get(4..4 + len).or_else(|| page.get(4..))?;
    let s = String::from_utf8_lossy(raw).into_owned();
    (!s.trim_matches(is_c_space).is_empty()).then_some(s)
}

/// ATA strings in IDENTIFY data: two characters per word, the first in the high byte.
fn ata_string(id: &[u8], first_word: usize, words: usize) -> Option<String> {
    let raw = bytes_at(id, first_word * 2, words * 2)?;
    let swapped: Vec<u8> = raw.chunks_exact(2).flat_map(|w| [w[1], w[0]]).collect();
    Some(
        String::from_utf8_lossy(&swapped)
            .trim_end_matches('\0')
            .to_string(),
    )
}

/// Model, serial and WWN from ATA IDENTIFY DEVICE data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AtaIdent {
    model: String,
    serial: String,
    wwn: Option<String>,
}

/// libata's VPD page 0x89 (ATA information) carries the 512 bytes of IDENTIFY DEVICE data at
/// offset 60; read from it what ata_id reads with the IDENTIFY command.
fn ata_identify_from_vpd89(page: &[u8]) -> Option<AtaIdent> {
    if page.get(1) != Some(&0x89) {
        return None;
    }
    let id = bytes_at(page, 60, 512)?;
    let word = |n: usize| le16(id, n * 2).unwrap_or(0);
    let serial = ata_string(id, 10, 10)?.trim_matches(is_c_space).to_string();
    let model = ata_string(id, 27, 20)?.trim_matches(is_c_space).to_string();
    if model.is_empty() {
        return None;
    }
    // ata_id: word 87 bits 15:14 = 01 (valid) and bit 8 (WWN supported).
    let wwn = (word(87) & 0xc100 == 0x4100).then(|| {
        let v = (108..112).fold(0u64, |acc, w| (acc << 16) | u64::from(word(w)));
        format!("0x{v:x}")
    });
    Some(AtaIdent { model, serial, wwn })
}

// scsi_id's descriptor search order in VPD page 0x83: (designator type, NAA type, code set).
// Designator types: 0 vendor specific, 1 T10 vendor id, 2 EUI-64, 3 NAA. Code sets: 1 binary,
// 2 ASCII. NAA types: 6 IEEE registered extended, 5 IEEE registered, None = any. (scsi_id
// first looks for a target port group, which never yields a serial, so it is left out.)
const ID_SEARCH: &[(u8, Option<u8>, u8)] = &[
    (3, Some(6), 1),
    (3, Some(6), 2),
    (3, Some(5), 1),
    (3, Some(5), 2),
    (3, None, 1),
    (3, None, 2),
    (2, None, 1),
    (2, None, 2),
    (1, None, 1),
    (1, None, 2),
    (0, None, 1),
    (0, None, 2),
];

/// scsi_id's `ID_SERIAL` (unsqueezed) and `ID_WWN_WITH_EXTENSION` from VPD page 0x83.
fn scsi_id_from_vpd83(page: &[u8], vendor: &str, model: &str) -> Option<(String, Option<String>)> {
    if page.get(1) != Some(&0x83) {
        return None;
    }
    let count = usize::from(*page.get(3)?);
    if *page.get(6)? != 0 {
        // Pre-SPC-3 (SCSI-2) layout: the binary id follows the header directly.
        return Some((format!("3{}", hex(page.get(4..4 + count)?)), None));
    }
    let total = (usize::from(*page.get(2)?) << 8) + count + 4;
    let end = total.min(page.len());
    let mut descriptors = Vec::new();
    let mut j = 4;
    while j + 4 <= end {
        let len = usize::from(page[j + 3]);
        let Some(d) = page.get(j..(j + 4 + len).min(end)) else {
            break;
        };
        descriptors.push(d);
        j += 4 + len;
    }
    for &(id_type, naa, code_set) in ID_SEARCH {
        for d in &descriptors {
            if let Some(found) = match_designator(d, id_type, naa, code_set, vendor, model) {
                return Some(found);
            }
        }
    }
    None
}

fn match_designator(
    d: &[u8],
    id_type: u8,
    naa: Option<u8>,
    code_set: u8,
    vendor: &str,
    model: &str,
) -> Option<(String, Option<String>)> {
    let (b0, b1, len) = (*d.first()?, *d.get(1)?, usize::from(*d.get(3)?));
    let body = d.get(4..4 + len)?;
    let matches = b1 & 0x30 == 0
        && b1 & 0x0f == id_type
        && naa.is_none_or(|n| body.first().map(|b| b >> 4) == Some(n))
        && b0 & 0x0f == code_set;
    if !matches {
        return None;
    }
    let id = if code_set == 2 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        hex(body)
    };
    let prefix = if id_type == 0 {
        vendor_model(vendor, model)
    } else {
        String::new()
    };
    let wwn = (id_type == 3).then(|| format!("0x{}", id.chars().take(32).collect::<String>()));
    Some((format!("{id_type}{prefix}{id}"), wwn))
}

// ---------------------------------------------------------------------------------------------
// Filesystem superblocks.

/// How much of the device the superblock probes need: up to the btrfs superblock at 64 KiB
/// (4 KiB) and the swap signature of 64 KiB pages.
const PROBE_LEN: usize = 0x11000;

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

fn fs_probe(fs_type: &str, uuid: Option<String>, label: Option<String>) -> Probe {
    Probe {
        fs_type: Some(fs_type.to_string()),
        fs_uuid: uuid,
        fs_label: label,
        ..Probe::default()
    }
}

/// ext2/3/4: superblock at 1024. The type follows libblkid: a journal device is not a
/// filesystem; any feature ext3 does not know makes ext4; else a journal makes ext3.
fn probe_ext(head: &[u8]) -> Option<Probe> {
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
fn probe_xfs(head: &[u8]) -> Option<Probe> {
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
fn probe_btrfs(head: &[u8]) -> Option<Probe> {
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
fn probe_swap(head: &[u8]) -> Option<Probe> {
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
struct FatBoot {
    serial_off: usize,
    ext_sig_off: usize,
    root_dir: (u64, usize),
}

/// FAT12/16/32 boot sector checks (as libblkid: sector size, cluster size, FAT count,
/// reserved sectors, media byte) and where the serial and root directory are.
fn fat_boot(head: &[u8]) -> Option<FatBoot> {
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
fn probe_vfat<R: Read + Seek>(r: &mut R, head: &[u8]) -> io::Result<Option<Probe>> {
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
fn fat_volume_label(dir: &[u8]) -> Option<Vec<u8>> {
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

// ---------------------------------------------------------------------------------------------
// GPT.

/// Largest partition array we read (the usual one is 16 KiB).
const MAX_GPT_ARRAY: usize = 4 << 20;

/// Reads a GPT and returns its used entries: partition number (entry index + 1), lowercase
/// unique GUID and the name decoded from UTF-16LE.
///
/// Needs a protective (or hybrid) MBR, as the kernel does. Tries 512- then 4096-byte sectors;
/// a header counts only if its signature, `my_lba` and both CRC32s (header and entry array)
/// are right. When the primary header is damaged the backup at the last sector is used.
/// `Ok(None)`: no valid GPT.
pub fn read_gpt<R: Read + Seek>(r: &mut R) -> io::Result<Option<Vec<GptPart>>> {
    if !has_protective_mbr(r)? {
        return Ok(None);
    }
    let size = r.seek(SeekFrom::End(0))?;
    for ss in [512u64, 4096] {
        if let Some(parts) = read_gpt_at(r, ss, 1)? {
            return Ok(Some(parts));
        }
    }
    for ss in [512u64, 4096] {
        if size >= 2 * ss {
            if let Some(parts) = read_gpt_at(r, ss, size / ss - 1)? {
                log::warn!("primary GPT header damaged; using the backup ({ss}-byte sectors)");
                return Ok(Some(parts));
            }
        }
    }
    Ok(None)
}

fn has_protective_mbr<R: Read + Seek>(r: &mut R) -> io::Result<bool> {
    let mbr = read_upto(r, 0, 512)?;
    if bytes_at(&mbr, 510, 2) != Some(&[0x55, 0xAA]) {
        return Ok(false);
    }
    Ok((0..4).any(|i| mbr.get(446 + 16 * i + 4) == Some(&0xEE)))
}

/// The GPT whose header is at `lba`, if that header and its entry array are valid.
fn read_gpt_at<R: Read + Seek>(r: &mut R, ss: u64, lba: u64) -> io::Result<Option<Vec<GptPart>>> {
    let Some(offset) = lba.checked_mul(ss) else {
        return Ok(None);
    };
    let hdr = read_upto(r, offset, usize::try_from(ss).unwrap_or(512))?;
    let Some(array) = gpt_array_location(&hdr, ss, lba) else {
        return Ok(None);
    };
    let (entries_lba, count, entry_size, array_crc) = array;
    let Some(len) = count
        .checked_mul(entry_size)
        .filter(|&l| l <= MAX_GPT_ARRAY)
    else {
        log::warn!(
            "GPT at LBA {lba}: partition array of {count} x {entry_size} bytes is implausible"
        );
        return Ok(None);
    };
    let Some(array_off) = entries_lba.checked_mul(ss) else {
        return Ok(None);
    };
    let data = read_upto(r, array_off, len)?;
    if data.len() != len || crc32(&data) != array_crc {
        return Ok(None);
    }
    Ok(Some(
        data.chunks_exact(entry_size)
            .enumerate()
            .filter_map(|(i, e)| gpt_entry(i, e))
            .collect(),
    ))
}

/// Checks a GPT header; returns (entries LBA, entry count, entry size, entry array CRC).
fn gpt_array_location(hdr: &[u8], ss: u64, lba: u64) -> Option<(u64, usize, usize, u32)> {
    if bytes_at(hdr, 0, 8)? != b"EFI PART" {
        return None;
    }
    let size = usize::try_from(le32(hdr, 12)?).ok()?;
    if size < 92 || size as u64 > ss {
        return None;
    }
    let mut copy = bytes_at(hdr, 0, size)?.to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != le32(hdr, 16)? || le64(hdr, 24)? != lba {
        return None;
    }
    let count = usize::try_from(le32(hdr, 80)?).ok()?;
    let entry_size = usize::try_from(le32(hdr, 84)?).ok()?;
    if entry_size < 128 || entry_size % 8 != 0 {
        return None;
    }
    Some((le64(hdr, 72)?, count, entry_size, le32(hdr, 88)?))
}

fn gpt_entry(index: usize, e: &[u8]) -> Option<GptPart> {
    if bytes_at(e, 0, 16)?.iter().all(|&b| b == 0) {
        return None;
    }
    if le64(e, 32)? > le64(e, 40)? {
        return None;
    }
    let units: Vec<u16> = bytes_at(e, 56, 72)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let name = String::from_utf16_lossy(&units);
    Some(GptPart {
        number: u32::try_from(index + 1).ok()?,
        part_uuid: guid_le(bytes_at(e, 16, 16)?)?,
        part_label: name.trim_end_matches(is_c_space).to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Link names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bus {
    Virtio,
    Nvme,
    Ata,
    Scsi,
    Mmc,
    Other,
}

fn disk_kname(info: &BlockInfo) -> &str {
    info.parent.as_deref().unwrap_or(&info.kname)
}

fn bus_of(info: &BlockInfo) -> Bus {
    match info.subsystem_hint.as_deref() {
        Some("virtio") => return Bus::Virtio,
        Some("nvme") => return Bus::Nvme,
        Some("ata") => return Bus::Ata,
        Some("scsi") => return Bus::Scsi,
        Some("mmc") => return Bus::Mmc,
        _ => {}
    }
    let disk = disk_kname(info);
    if disk.starts_with("vd") {
        Bus::Virtio
    } else if disk.starts_with("nvme") {
        Bus::Nvme
    } else if disk.starts_with("sd") || disk.starts_with("sr") {
        if info.vendor.as_deref().map(str::trim) == Some("ATA") {
            Bus::Ata
        } else {
            Bus::Scsi
        }
    } else if disk.starts_with("mmcblk") {
        Bus::Mmc
    } else {
        Bus::Other
    }
}

/// The kernel names `60-persistent-storage.rules` handles at all.
fn handled_by_rules(kname: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "loop", "mmcblk", "msblk", "mspblk", "nvme", "sd", "sr", "vd", "xvd", "bcache", "cciss",
        "dasd", "ubd", "ubi", "scm", "pmem", "nbd", "zd",
    ];
    let Some(prefix) = PREFIXES.iter().find(|p| kname.starts_with(**p)) else {
        return false;
    };
    // mmcblk*[0-9], msblk*[0-9], mspblk*[0-9]: must end in a digit.
    !matches!(*prefix, "mmcblk" | "msblk" | "mspblk")
        || kname.ends_with(|c: char| c.is_ascii_digit())
}

/// `mmcblk<N>boot<M>`: eMMC boot areas, named `<path>-boot<M>` and never probed.
fn mmc_boot_area(kname: &str) -> Option<&str> {
    let rest = kname.strip_prefix("mmcblk")?;
    let (n, m) = rest.split_once("boot")?;
    (!n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !m.is_empty()
        && m.bytes().all(|b| b.is_ascii_digit()))
    .then_some(m)
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref()
        .filter(|v| !v.trim_matches(is_c_space).is_empty())
}

/// The symlinks udev would create for this device: (path relative to `/dev/disk`, e.g.
/// `by-id/virtio-sys0`, target kernel name). Pure.
///
/// Covers by-id, by-path (with the ATA and virtio compatibility names), by-uuid, by-label,
/// by-partuuid, by-partlabel, the `by-path/<path>-part/by-*/` tree of recent udev, and
/// by-diskseq. Partition names come with the `-part<N>` suffix of their disk's names.
pub fn link_names(info: &BlockInfo, probe: &Probe) -> Vec<(String, String)> {
    let kname = info.kname.as_str();
    let suffix = info
        .partnum
        .map(|n| format!("-part{n}"))
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    let handled = handled_by_rules(kname);
    let boot_area = mmc_boot_area(kname);
    let path = if handled { path_id(info) } else { None };
    if handled {
        names.extend(
            by_id_names(info)
                .into_iter()
                .map(|n| format!("by-id/{n}{suffix}")),
        );
        if let Some(p) = &path {
            match boot_area {
                Some(m) => names.push(format!("by-path/{}-boot{m}", p.path)),
                None => {
                    names.push(format!("by-path/{}{suffix}", p.path));
                    if let Some(c) = &p.ata_compat {
                        names.push(format!("by-path/{c}{suffix}"));
                    }
                    if bus_of(info) == Bus::Virtio && p.path.starts_with("pci-") {
                        names.push(format!("by-path/virtio-{}{suffix}", p.path));
                    }
                }
            }
        }
    }
    let probed =
        boot_area.is_none() && (handled || kname.starts_with("dm-") || kname.starts_with("md"));
    let mut content = Vec::new(); // names that also go under by-path/<path>-part/
    if probed {
        if let Some(u) = nonempty(&probe.fs_uuid) {
            content.push(format!(
                "by-uuid/{}",
                encode_string(u.trim_end_matches(is_c_space))
            ));
        }
        if let Some(l) = nonempty(&probe.fs_label) {
            content.push(format!(
                "by-label/{}",
                encode_string(l.trim_end_matches(is_c_space))
            ));
        }
    }
    if handled || probed {
        if let Some(u) = nonempty(&probe.part_uuid) {
            content.push(format!("by-partuuid/{}", replace_chars(u)));
        }
        if let Some(l) = nonempty(&probe.part_label) {
            content.push(format!(
                "by-partlabel/{}",
                encode_string(l.trim_end_matches(is_c_space))
            ));
        }
    }
    names.extend(content.iter().cloned());
    if let (Some(p), Some(n)) = (&path, info.partnum) {
        names.push(format!("by-path/{}-part/by-partnum/{n}", p.path));
        names.extend(
            content
                .iter()
                .map(|c| format!("by-path/{}-part/{c}", p.path)),
        );
    }
    if handled {
        if let Some(seq) = info.diskseq {
            names.push(format!("by-diskseq/{seq}{suffix}"));
        }
    }
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names.into_iter().map(|n| (n, kname.to_string())).collect()
}

/// by-id names without the `-part<N>` suffix.
fn by_id_names(info: &BlockInfo) -> Vec<String> {
    let mut out = Vec::new();
    let bus = bus_of(info);
    if matches!(bus, Bus::Ata | Bus::Scsi) && info.devpath.split('/').any(is_usb_interface) {
        // udev names USB disks from usb_id (`usb-<vendor>_<model>_<serial>-0:0`); not done.
        return out;
    }
    match bus {
        Bus::Virtio => {
            // The rule uses the `serial` attribute, which virtio-blk caps at 20 bytes.
            if let Some(s) = nonempty(&info.serial) {
                out.push(format!("virtio-{}", attr_escape(&truncate_chars(s, 20))));
            }
        }
        Bus::Nvme => {
            if let Some(w) = nonempty(&info.wwid) {
                out.push(format!("nvme-{}", attr_escape(w)));
            }
            if let (Some(m), Some(s)) = (nonempty(&info.model), nonempty(&info.serial)) {
                let id = format!("{}_{}", attr_escape(m), attr_escape(s));
                out.push(format!("nvme-{id}"));
                if let Some(ns) = info.nsid {
                    out.push(format!("nvme-{id}_{ns}"));
                }
            }
        }
        Bus::Ata => {
            if let Some(m) = nonempty(&info.model) {
                let model = replace_chars(&replace_whitespace(m));
                let serial = nonempty(&info.serial).map(|s| replace_chars(&replace_whitespace(s)));
                match serial {
                    Some(s) => out.push(format!("ata-{model}_{s}")),
                    None => out.push(format!("ata-{model}")),
                }
            }
            out.extend(wwn(info).map(|w| format!("wwn-{w}")));
        }
        Bus::Scsi => {
            out.extend(scsi_id_serial(info).map(|s| format!("scsi-{s}")));
            out.extend(wwn(info).map(|w| format!("wwn-{w}")));
        }
        Bus::Mmc => {
            if let (Some(n), Some(s)) = (nonempty(&info.model), nonempty(&info.serial)) {
                out.push(format!("mmc-{}_{}", attr_escape(n), attr_escape(s)));
            }
        }
        Bus::Other => {}
    }
    out
}

/// `ID_WWN_WITH_EXTENSION`: from IDENTIFY / VPD data, or a kernel `naa.` wwid.
fn wwn(info: &BlockInfo) -> Option<String> {
    let w = nonempty(&info.wwn).map(str::to_string).or_else(|| {
        let naa = nonempty(&info.wwid)?.trim().strip_prefix("naa.")?;
        Some(format!("0x{}", naa.to_ascii_lowercase()))
    })?;
    Some(replace_chars(w.trim()))
}

/// scsi_id's `ID_SERIAL`: from the VPD pages when read, else rebuilt from the kernel wwid
/// (`naa.` → `3`, `eui.` → `2`, `t10.` → `1`), else `S` + vendor + model + unit serial.
fn scsi_id_serial(info: &BlockInfo) -> Option<String> {
    let raw = nonempty(&info.id_serial).map(str::to_string).or_else(|| {
        let w = nonempty(&info.wwid).map(str::trim);
        let from_wwid = w.and_then(|w| {
            [("naa.", '3'), ("eui.", '2'), ("t10.", '1')]
                .iter()
                .find_map(|(p, t)| w.strip_prefix(p).map(|rest| format!("{t}{rest}")))
        });
        from_wwid.or_else(|| {
            let serial = nonempty(&info.serial)?;
            let vm = vendor_model(
                info.vendor.as_deref().unwrap_or(""),
                info.model.as_deref().unwrap_or(""),
            );
            Some(format!("S{vm}{serial}"))
        })
    })?;
    let id = replace_chars(&replace_whitespace(&raw));
    (!id.is_empty()).then_some(id)
}

/// udev's `ID_PATH` and, for ATA, `ID_PATH_ATA_COMPAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathId {
    path: String,
    ata_compat: Option<String>,
}

/// What a sysfs directory name says about the device, for path_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node<'a> {
    Pci(&'a str),
    PciRoot,
    Virtio,
    ScsiDevice {
        host: u32,
        bus: u32,
        target: u32,
        lun: u64,
    },
    ScsiHost,
    ScsiTarget,
    AtaPort,
    NvmeCtrl,
    UsbInterface(&'a str),
    Usb,
    /// Class directories and children of buses path_id ignores (`block`, `nvme`, `mmc0`...).
    Glue,
    /// SCSI transports path_id names from attributes we do not read (FC, SAS, iSCSI, Hyper-V).
    Unsupported,
    Other(&'a str),
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `dddd:bb:dd.f` (domain may be longer, as with VMD).
fn is_pci_addr(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let [domain, bus, devfn] = parts.as_slice() else {
        return false;
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    domain.len() >= 4
        && all_hex(domain)
        && bus.len() == 2
        && all_hex(bus)
        && dev.len() == 2
        && all_hex(dev)
        && func.len() == 1
        && all_hex(func)
}

fn parse_hctl(s: &str) -> Option<Node<'_>> {
    let parts: Vec<&str> = s.split(':').collect();
    let [h, c, t, l] = parts.as_slice() else {
        return None;
    };
    if ![h, c, t, l].iter().all(|p| all_digits(p)) {
        return None;
    }
    Some(Node::ScsiDevice {
        host: h.parse().ok()?,
        bus: c.parse().ok()?,
        target: t.parse().ok()?,
        lun: l.parse().ok()?,
    })
}

/// `1-2.3:1.0`: a USB interface.
fn is_usb_interface(s: &str) -> bool {
    let Some((dev, cfg)) = s.split_once(':') else {
        return false;
    };
    let Some((c, i)) = cfg.split_once('.') else {
        return false;
    };
    is_usb_device(dev) && all_digits(c) && all_digits(i)
}

/// `1-2.3`: a USB device.
fn is_usb_device(s: &str) -> bool {
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    all_digits(bus) && ports.split('.').all(all_digits)
}

fn classify(name: &str) -> Node<'_> {
    if is_pci_addr(name) {
        return Node::Pci(name);
    }
    if let Some(n) = parse_hctl(name) {
        return n;
    }
    if name
        .strip_prefix("pci")
        .is_some_and(|r| r.split(':').all(all_hex) && r.contains(':'))
    {
        return Node::PciRoot;
    }
    if numbered(name, "virtio").is_some() {
        return Node::Virtio;
    }
    if numbered(name, "host").is_some() {
        return Node::ScsiHost;
    }
    if name
        .strip_prefix("target")
        .is_some_and(|r| r.split(':').count() == 3 && r.split(':').all(all_digits))
    {
        return Node::ScsiTarget;
    }
    if numbered(name, "ata").is_some() {
        return Node::AtaPort;
    }
    if numbered(name, "nvme").is_some() {
        return Node::NvmeCtrl;
    }
    if is_usb_interface(name) {
        return Node::UsbInterface(name);
    }
    if numbered(name, "usb").is_some() || is_usb_device(name) {
        return Node::Usb;
    }
    if ["rport-", "end_device-", "session", "vmbus_", "VMBUS"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Node::Unsupported;
    }
    let mmc = name
        .strip_prefix("mmc")
        .map(|r| r.split(':').next().map(all_digits).unwrap_or(false));
    if mmc == Some(true)
        || [
            "block",
            "nvme",
            "mmc_host",
            "scsi_host",
            "ata_port",
            "ata_link",
            "ata_device",
        ]
        .contains(&name)
    {
        return Node::Glue;
    }
    Node::Other(name)
}

/// The sysfs directories above the whole disk, root first (the part after `/devices/`).
fn disk_ancestors(info: &BlockInfo) -> Option<Vec<&str>> {
    let (base, is_ctrl) = match (
        &info.nvme_ctrl_path,
        info.devpath.contains("/nvme-subsystem/"),
    ) {
        (Some(ctrl), true) => (ctrl.as_str(), true),
        (None, true) => return None,
        _ => (info.devpath.as_str(), false),
    };
    let comps: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
    let start = comps.iter().position(|c| *c == "devices")? + 1;
    let mut comps = comps[start..].to_vec();
    if !is_ctrl {
        if info.partnum.is_some() {
            comps.pop();
        }
        comps.pop();
        if comps.last() == Some(&"block") {
            comps.pop();
        }
    }
    (comps.first() != Some(&"virtual")).then_some(comps)
}

/// path_id: walks from the disk up to the root, prepending one element per bus as udev's
/// `builtin_path_id` does, and requires (like udev) both a known parent (PCI, platform) and,
/// for block devices, a known transport (SCSI, virtio, NVMe, USB, platform).
fn path_id(info: &BlockInfo) -> Option<PathId> {
    let comps = disk_ancestors(info)?;
    let under_platform = comps.first() == Some(&"platform");
    let mut path: Vec<String> = Vec::new(); // bottom-up
    let mut compat: Option<Vec<String>> = None;
    let (mut transport, mut parent) = (false, false);
    let mut i = comps.len();
    while i > 0 {
        i -= 1;
        let both = |path: &mut Vec<String>, compat: &mut Option<Vec<String>>, s: String| {
            if let Some(c) = compat.as_mut() {
                c.push(s.clone());
            }
            path.push(s);
        };
        match classify(comps[i]) {
            Node::ScsiDevice {
                host,
                bus,
                target,
                lun,
            } => {
                transport = true;
                let above = &comps[..i];
                if above.iter().any(|a| classify(a) == Node::Unsupported) {
                    return None;
                }
                if above.iter().any(|a| classify(a) == Node::AtaPort) {
                    let port = info.ata_port_no?;
                    path.push(if bus != 0 {
                        format!("ata-{port}.{bus}.0")
                    } else {
                        format!("ata-{port}.{target}")
                    });
                    compat = Some(vec![format!("ata-{port}")]);
                } else {
                    let host_idx = above.iter().rposition(|a| classify(a) == Node::ScsiHost)?;
                    let rebased = host.checked_sub(info.scsi_host_base.unwrap_or(host))?;
                    path.push(format!("scsi-{rebased}:{bus}:{target}:{lun}"));
                    i = host_idx;
                }
            }
            Node::Virtio => transport = true,
            Node::NvmeCtrl => {
                // Without the nsid attribute udev skips NVMe, which then lacks a transport.
                let nsid = info.nsid?;
                both(&mut path, &mut compat, format!("nvme-{nsid}"));
                transport = true;
                parent = true;
            }
            Node::UsbInterface(name) => {
                let port = name.split_once('-')?.1;
                path.push(format!("usb-0:{port}"));
                transport = true;
                while i > 0 && matches!(classify(comps[i - 1]), Node::Usb | Node::UsbInterface(_)) {
                    i -= 1;
                }
            }
            Node::Pci(addr) => {
                both(&mut path, &mut compat, format!("pci-{addr}"));
                parent = true;
                while i > 0 && matches!(classify(comps[i - 1]), Node::Pci(_)) {
                    i -= 1;
                }
            }
            Node::Other(name) if under_platform && i >= 1 => {
                // The nearest platform device; the ones above it are skipped like udev does.
                both(&mut path, &mut compat, format!("platform-{name}"));
                transport = true;
                parent = true;
                break;
            }
            Node::Unsupported => return None,
            _ => {}
        }
    }
    if path.is_empty() || !parent || !transport {
        return None;
    }
    let join = |mut v: Vec<String>| {
        v.reverse();
        v.join("-")
    };
    Some(PathId {
        path: join(path),
        ata_compat: compat.map(join),
    })
}

// ---------------------------------------------------------------------------------------------
// Creating links.

/// A link name as a relative path of normal components only.
fn safe_rel(name: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    ok.then(|| parts.iter().collect())
}

/// The device node a target kernel name stands for, relative to `/dev` (`cciss!c0d0` is
/// `cciss/c0d0`, as in udev).
fn node_rel(kname: &str) -> Option<PathBuf> {
    safe_rel(&kname.replace('!', "/"))
}

/// `../../vda1` for `by-id/x`: one `..` per component of the link path.
fn relative_target(rel: &Path, node: &Path) -> PathBuf {
    let mut t = PathBuf::new();
    for _ in rel.components() {
        t.push("..");
    }
    t.push(node);
    t
}

/// Lexically resolves `..` and `.` components.
fn lexical(p: &Path) -> PathBuf {
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
fn place_link(path: &Path, target: &Path) -> io::Result<()> {
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
fn prune(root: &Path, dir: &Path, wanted: &BTreeMap<PathBuf, PathBuf>, nodes: &BTreeSet<PathBuf>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Cursor, Write};
    use std::os::unix::fs::symlink;
    use std::process::Command;

    // ---- helpers -------------------------------------------------------------------------

    /// A host tool from PATH or the sbin directories (mkfs.* live there), or `None` after
    /// printing a SKIP line naming the package, as the other host-tool tests do.
    fn tool(name: &str, package: &str, test: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        if found.is_none() {
            eprintln!("SKIP {test}: {name} is not installed (apt-get install {package})");
        }
        found
    }

    fn run(cmd: &Path, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}\n{}",
            cmd.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
        let p = dir.join(name);
        fs::File::create(&p).unwrap().set_len(size).unwrap();
        p
    }

    /// `blkid -p -o udev`: the properties udev's blkid builtin would import.
    fn blkid_props(blkid: &Path, img: &Path) -> HashMap<String, String> {
        let out = Command::new(blkid)
            .args(["-p", "-o", "udev"])
            .arg(img)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn probe_path(p: &Path) -> Probe {
        probe_fs(&mut fs::File::open(p).unwrap()).unwrap()
    }

    fn gpt_path(p: &Path) -> Option<Vec<GptPart>> {
        read_gpt(&mut fs::File::open(p).unwrap()).unwrap()
    }

    /// Decodes the `\xNN` escapes util-linux uses in `-P` output.
    fn unescape_x(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
                out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn names(links: &[(String, String)]) -> Vec<&str> {
        links.iter().map(|(n, _)| n.as_str()).collect()
    }

    // ---- primitives ----------------------------------------------------------------------

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn escaping_follows_udev_and_blkid() {
        // (input, blkid_encode_string, udev_replace_chars, udev_replace_whitespace)
        let cases = [
            (
                "plain-Name_1.2:3=@#+",
                "plain-Name_1.2:3=@#+",
                "plain-Name_1.2:3=@#+",
                "plain-Name_1.2:3=@#+",
            ),
            ("my disk", "my\\x20disk", "my_disk", "my_disk"),
            ("a/b", "a\\x2fb", "a_b", "a/b"),
            ("back\\slash", "back\\x5cslash", "back_slash", "back\\slash"),
            (
                "hex\\x20kept",
                "hex\\x5cx20kept",
                "hex\\x20kept",
                "hex\\x20kept",
            ),
            ("dätä", "dätä", "dätä", "dätä"),
            (
                "  lead  and\ttrail  ",
                "\\x20\\x20lead\\x20\\x20and\\x09trail\\x20\\x20",
                "__lead__and_trail__",
                "lead_and_trail",
            ),
            ("a(b)*?", "a\\x28b\\x29\\x2a\\x3f", "a_b___", "a(b)*?"),
        ];
        for (input, enc, rep, ws) in cases {
            assert_eq!(encode_string(input), enc, "encode_string({input:?})");
            assert_eq!(replace_chars(input), rep, "replace_chars({input:?})");
            assert_eq!(
                replace_whitespace(input),
                ws,
                "replace_whitespace({input:?})"
            );
        }
        assert_eq!(attr_escape("QEMU NVMe Ctrl   \n"), "QEMU_NVMe_Ctrl");
    }

    // ---- superblocks against blkid -------------------------------------------------------

    /// Makes an image with `mkfs`, probes it, and checks type, UUID and label (through the
    /// by-uuid/by-label names) against `blkid -p` on the same file.
    fn check_mkfs(
        test: &str,
        mkfs: (&str, &str),
        size: u64,
        args: &[&str],
        want_type: &str,
    ) -> Option<Probe> {
        let mkfs_tool = tool(mkfs.0, mkfs.1, test)?;
        let blkid = tool("blkid", "util-linux", test)?;
        let dir = tempfile::tempdir().unwrap();
        let img = sparse(dir.path(), "fs.img", size);
        let mut all: Vec<&str> = args.to_vec();
        let img_s = img.to_str().unwrap();
        all.push(img_s);
        run(&mkfs_tool, &all);
        let oracle = blkid_props(&blkid, &img);
        let probe = probe_path(&img);
        assert_eq!(
            oracle.get("ID_FS_TYPE").map(String::as_str),
            Some(want_type),
            "{test}: blkid type"
        );
        assert_eq!(probe.fs_type.as_deref(), Some(want_type), "{test}: type");
        assert_eq!(
            probe.fs_uuid.as_ref(),
            oracle.get("ID_FS_UUID"),
            "{test}: uuid"
        );
        let info = BlockInfo {
            kname: "vdb".into(),
            ..BlockInfo::default()
        };
        let links = link_names(&info, &probe);
        let mut want = Vec::new();
        if let Some(u) = oracle.get("ID_FS_UUID_ENC") {
            want.push(format!("by-uuid/{u}"));
        }
        if let Some(l) = oracle.get("ID_FS_LABEL_ENC") {
            want.push(format!("by-label/{l}"));
        }
        assert_eq!(names(&links), want, "{test}: by-uuid/by-label names");
        Some(probe)
    }

    const E2: (&str, &str) = ("mkfs.ext4", "e2fsprogs");

    #[test]
    fn probes_ext4_like_blkid() {
        let u = "01234567-89ab-cdef-0123-456789abcdef";
        let Some(p) = check_mkfs(
            "probes_ext4_like_blkid",
            E2,
            16 << 20,
            &["-q", "-F", "-U", u, "-L", "my disk/x"],
            "ext4",
        ) else {
            return;
        };
        assert_eq!(p.fs_uuid.as_deref(), Some(u));
        assert_eq!(p.fs_label.as_deref(), Some("my disk/x"));
    }

    #[test]
    fn probes_ext3_and_ext2_like_blkid() {
        let u = "fedcba98-7654-3210-fedc-ba9876543210";
        let ext3 = ["-q", "-F", "-t", "ext3", "-U", u, "-L", "old3"];
        if let Some(p) = check_mkfs(
            "probes_ext3_and_ext2_like_blkid",
            E2,
            16 << 20,
            &ext3,
            "ext3",
        ) {
            assert_eq!(p.fs_label.as_deref(), Some("old3"));
        }
        let ext2 = ["-q", "-F", "-t", "ext2", "-U", u];
        if let Some(p) = check_mkfs(
            "probes_ext3_and_ext2_like_blkid",
            E2,
            16 << 20,
            &ext2,
            "ext2",
        ) {
            assert_eq!(p.fs_label, None);
        }
    }

    #[test]
    fn probes_xfs_like_blkid() {
        let u = "11111111-2222-3333-4444-555555555555";
        let args = ["-q", "-f", "-m", &format!("uuid={u}"), "-L", "xfs lbl"].map(String::from);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Some(p) = check_mkfs(
            "probes_xfs_like_blkid",
            ("mkfs.xfs", "xfsprogs"),
            300 << 20,
            &args,
            "xfs",
        ) {
            assert_eq!(p.fs_label.as_deref(), Some("xfs lbl"));
            assert_eq!(p.fs_uuid.as_deref(), Some(u));
        }
    }

    #[test]
    fn probes_btrfs_like_blkid() {
        let u = "99999999-8888-7777-6666-555555555555";
        let args = ["-q", "-f", "-U", u, "-L", "dätä böot"];
        if let Some(p) = check_mkfs(
            "probes_btrfs_like_blkid",
            ("mkfs.btrfs", "btrfs-progs"),
            128 << 20,
            &args,
            "btrfs",
        ) {
            assert_eq!(p.fs_label.as_deref(), Some("dätä böot"));
        }
    }

    const VFAT: (&str, &str) = ("mkfs.vfat", "dosfstools");

    #[test]
    fn probes_vfat_like_blkid() {
        let test = "probes_vfat_like_blkid";
        if let Some(p) = check_mkfs(
            test,
            VFAT,
            64 << 20,
            &["-F", "32", "-i", "1234ABCD", "-n", "ESP PART"],
            "vfat",
        ) {
            assert_eq!(p.fs_uuid.as_deref(), Some("1234-ABCD"));
            assert_eq!(p.fs_label.as_deref(), Some("ESP PART"));
        }
        if let Some(p) = check_mkfs(
            test,
            VFAT,
            32 << 20,
            &["-F", "16", "-i", "DEADBEEF", "-n", "LBL16"],
            "vfat",
        ) {
            assert_eq!(p.fs_uuid.as_deref(), Some("DEAD-BEEF"));
            assert_eq!(p.fs_label.as_deref(), Some("LBL16"));
        }
        if let Some(p) = check_mkfs(test, VFAT, 8 << 20, &["-F", "12", "-i", "0badf00d"], "vfat") {
            assert_eq!(p.fs_uuid.as_deref(), Some("0BAD-F00D"));
            assert_eq!(p.fs_label, None, "no label: NO NAME / no root entry");
        }
    }

    /// blkid takes the vfat label from the root directory, not the boot sector: rewrite the
    /// root-directory entry, then remove it, and compare with blkid each time.
    #[test]
    fn vfat_label_comes_from_the_root_directory_like_blkid() {
        let test = "vfat_label_comes_from_the_root_directory_like_blkid";
        let (Some(mkfs), Some(blkid)) = (
            tool("mkfs.vfat", "dosfstools", test),
            tool("blkid", "util-linux", test),
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let img = sparse(dir.path(), "v.img", 64 << 20);
        run(&mkfs, &["-F", "32", "-n", "BOOTLBL", img.to_str().unwrap()]);
        let head = fs::read(&img).unwrap();
        let boot = fat_boot(&head).unwrap();
        let root = usize::try_from(boot.root_dir.0).unwrap();
        assert_eq!(
            &head[root..root + 11],
            b"BOOTLBL    ",
            "mkfs.vfat writes the label into the root dir"
        );

        let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(root as u64)).unwrap();
        f.write_all(b"ROOT LBL   ").unwrap();
        drop(f);
        let oracle = blkid_props(&blkid, &img);
        assert_eq!(
            oracle.get("ID_FS_LABEL_ENC").map(String::as_str),
            Some("ROOT\\x20LBL")
        );
        assert_eq!(probe_path(&img).fs_label.as_deref(), Some("ROOT LBL"));

        let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(root as u64)).unwrap();
        f.write_all(&[0u8; 32]).unwrap();
        drop(f);
        assert_eq!(blkid_props(&blkid, &img).get("ID_FS_LABEL"), None);
        assert_eq!(
            probe_path(&img).fs_label,
            None,
            "boot-sector label alone is not LABEL"
        );
    }

    #[test]
    fn probes_swap_like_blkid() {
        let u = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let args = ["-U", u, "-L", "swap space"];
        if let Some(p) = check_mkfs(
            "probes_swap_like_blkid",
            ("mkswap", "util-linux"),
            16 << 20,
            &args,
            "swap",
        ) {
            assert_eq!(p.fs_label.as_deref(), Some("swap space"));
            assert_eq!(p.fs_uuid.as_deref(), Some(u));
        }
    }

    #[test]
    fn empty_and_tiny_inputs_have_no_filesystem() {
        for len in [0usize, 1, 511, 512, 1100, 4096, 70000] {
            let p = probe_fs(&mut Cursor::new(vec![0u8; len])).unwrap();
            assert_eq!(p, Probe::default(), "{len} zero bytes");
            assert_eq!(
                read_gpt(&mut Cursor::new(vec![0u8; len])).unwrap(),
                None,
                "{len} zero bytes"
            );
        }
    }

    // ---- GPT -----------------------------------------------------------------------------

    /// One GPT partition for the hand-built images: (type GUID bytes, unique GUID bytes, name).
    type RawPart = ([u8; 16], [u8; 16], &'static str);

    /// Builds a disk image with a protective MBR and primary + backup GPT for sector size
    /// `ss`, with 128 entries of 128 bytes.
    fn build_gpt(ss: usize, sectors: usize, parts: &[RawPart]) -> Vec<u8> {
        let mut img = vec![0u8; ss * sectors];
        img[446 + 4] = 0xEE;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        img[446 + 12..446 + 16].copy_from_slice(&u32::try_from(sectors - 1).unwrap().to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        let mut array = vec![0u8; 128 * 128];
        for (i, (ty, id, name)) in parts.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(ty);
            e[16..32].copy_from_slice(id);
            e[32..40].copy_from_slice(&(64 + 16 * i as u64).to_le_bytes());
            e[40..48].copy_from_slice(&(64 + 16 * i as u64 + 15).to_le_bytes());
            for (k, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        let array_sectors = array.len().div_ceil(ss);
        let last = sectors as u64 - 1;
        let header = |my: u64, alt: u64, entries: u64| {
            let mut h = vec![0u8; 92];
            h[0..8].copy_from_slice(b"EFI PART");
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&my.to_le_bytes());
            h[32..40].copy_from_slice(&alt.to_le_bytes());
            h[40..48].copy_from_slice(&(2 + array_sectors as u64).to_le_bytes());
            h[48..56].copy_from_slice(&(last - 1 - array_sectors as u64).to_le_bytes());
            h[56..72].copy_from_slice(&[0x42; 16]);
            h[72..80].copy_from_slice(&entries.to_le_bytes());
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&128u32.to_le_bytes());
            h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
            let crc = crc32(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            h
        };
        let backup_entries = last - array_sectors as u64;
        let primary = header(1, last, 2);
        let backup = header(last, 1, backup_entries);
        img[ss..ss + 92].copy_from_slice(&primary);
        img[2 * ss..2 * ss + array.len()].copy_from_slice(&array);
        let b = usize::try_from(backup_entries).unwrap() * ss;
        img[b..b + array.len()].copy_from_slice(&array);
        img[usize::try_from(last).unwrap() * ss..][..92].copy_from_slice(&backup);
        img
    }

    const LINUX_FS: [u8; 16] = [
        0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ];
    /// 01234567-89ab-cdef-0011-223344556677 in the on-disk (mixed-endian) layout.
    const GUID_A: [u8; 16] = [
        0x67, 0x45, 0x23, 0x01, 0xAB, 0x89, 0xEF, 0xCD, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
        0x77,
    ];

    #[test]
    fn reads_a_sgdisk_gpt_like_partx_and_sgdisk() {
        let test = "reads_a_sgdisk_gpt_like_partx_and_sgdisk";
        let (Some(sgdisk), Some(partx)) = (
            tool("sgdisk", "gdisk", test),
            tool("partx", "util-linux", test),
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let img = sparse(dir.path(), "disk.img", 64 << 20);
        let guids = [
            "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE5",
            "12345678-9ABC-DEF0-1234-56789ABCDEF0",
        ];
        let labels = ["EFI System", "a/b c  ", "ünï\\code"];
        let mut args = Vec::new();
        for (i, (g, l)) in guids.iter().zip(labels).enumerate() {
            let n = i + 1;
            let end = if n == 3 {
                "0".to_string()
            } else {
                "+8M".to_string()
            };
            args.extend([
                format!("-n={n}:0:{end}"),
                format!("-c={n}:{l}"),
                format!("-u={n}:{g}"),
            ]);
        }
        args.push(img.to_str().unwrap().to_string());
        run(
            &sgdisk,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );

        let parts = gpt_path(&img).expect("a GPT");
        assert_eq!(parts.len(), 3);
        // libblkid (through partx) as the oracle: number, lowercase GUID, name right-trimmed.
        let out = run(&partx, &["-o", "NR,UUID,NAME", "-P", img.to_str().unwrap()]);
        let mut oracle = Vec::new();
        for line in out.lines() {
            let field = |k: &str| {
                let start = line.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                let rest = &line[start..];
                unescape_x(&rest[..rest.find('"').unwrap()])
            };
            oracle.push(GptPart {
                number: field("NR").parse().unwrap(),
                part_uuid: field("UUID"),
                part_label: field("NAME"),
            });
        }
        assert_eq!(parts, oracle, "read_gpt vs partx");
        // sgdisk's own view: unique GUID and untrimmed name.
        for p in &parts {
            let info = run(
                &sgdisk,
                &["-i", &p.number.to_string(), img.to_str().unwrap()],
            );
            let guid = info
                .lines()
                .find_map(|l| l.strip_prefix("Partition unique GUID: "))
                .unwrap();
            let name = info
                .lines()
                .find_map(|l| l.strip_prefix("Partition name: '"))
                .unwrap();
            assert_eq!(p.part_uuid, guid.to_lowercase(), "partition {}", p.number);
            assert_eq!(
                p.part_label,
                name.trim_end_matches('\'').trim_end(),
                "partition {}",
                p.number
            );
        }
        assert_eq!(parts[1].part_label, "a/b c");

        // The names those partitions get.
        let probe = Probe {
            part_uuid: Some(parts[1].part_uuid.clone()),
            part_label: Some(parts[1].part_label.clone()),
            ..Probe::default()
        };
        let info = BlockInfo {
            kname: "vda2".into(),
            parent: Some("vda".into()),
            partnum: Some(2),
            ..BlockInfo::default()
        };
        assert_eq!(
            names(&link_names(&info, &probe)),
            [
                "by-partuuid/0fc63daf-8483-4772-8e79-3d69d8477de5",
                "by-partlabel/a\\x2fb\\x20c"
            ]
        );
        let p3 = Probe {
            part_label: Some(parts[2].part_label.clone()),
            ..Probe::default()
        };
        let info3 = BlockInfo {
            kname: "vda3".into(),
            partnum: Some(3),
            ..BlockInfo::default()
        };
        assert_eq!(
            names(&link_names(&info3, &p3)),
            ["by-partlabel/ünï\\x5ccode"]
        );

        // Damaged primary header or primary array: the backup GPT gives the same answer.
        let good = fs::read(&img).unwrap();
        let mut bad = good.clone();
        bad[512 + 40] ^= 0xFF;
        assert_eq!(
            read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
            Some(&parts),
            "bad primary header"
        );
        let mut bad = good.clone();
        bad[1024 + 56] ^= 0xFF;
        assert_eq!(
            read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
            Some(&parts),
            "bad primary array"
        );
        // Both copies damaged: no GPT.
        let last = good.len() - 512;
        bad[last + 40] ^= 0xFF;
        assert_eq!(
            read_gpt(&mut Cursor::new(&bad)).unwrap(),
            None,
            "both headers bad"
        );
        // No protective MBR: not a GPT disk for the kernel either.
        let mut bad = good.clone();
        bad[446 + 4] = 0x83;
        assert_eq!(
            read_gpt(&mut Cursor::new(&bad)).unwrap(),
            None,
            "no protective MBR"
        );
    }

    /// 4096-byte sectors: `fdisk -b 4096` writes a 4Kn GPT into a plain file; compare with
    /// what fdisk lists.
    #[test]
    fn reads_a_4k_sector_gpt_made_by_fdisk() {
        let test = "reads_a_4k_sector_gpt_made_by_fdisk";
        let Some(fdisk) = tool("fdisk", "fdisk", test) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let img = sparse(dir.path(), "4k.img", 64 << 20);
        let script = "g\nn\n1\n\n+8M\nn\n2\n\n\nx\nn\n1\nroot fs\nu\n1\n11111111-2222-3333-4444-555555555555\nn\n2\ndata\nr\nw\n";
        let mut child = Command::new(&fdisk)
            .args(["-b", "4096"])
            .arg(&img)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let bytes = fs::read(&img).unwrap();
        assert_eq!(
            &bytes[4096..4104],
            b"EFI PART",
            "fdisk wrote the header at LBA 1 of 4 KiB"
        );

        let parts = gpt_path(&img).expect("a 4K GPT");
        let listing = run(
            &fdisk,
            &[
                "-b",
                "4096",
                "-l",
                "-o",
                "Device,UUID,Name",
                img.to_str().unwrap(),
            ],
        );
        let img_s = img.to_str().unwrap();
        let oracle: Vec<GptPart> = listing
            .lines()
            .filter_map(|l| l.strip_prefix(img_s))
            .map(|rest| {
                let mut f = rest.split_whitespace();
                let number = f.next().unwrap().parse().unwrap();
                let part_uuid = f.next().unwrap().to_lowercase();
                GptPart {
                    number,
                    part_uuid,
                    part_label: f.collect::<Vec<_>>().join(" "),
                }
            })
            .collect();
        assert_eq!(oracle.len(), 2, "fdisk listing: {listing}");
        assert_eq!(parts, oracle);
        assert_eq!(parts[0].part_uuid, "11111111-2222-3333-4444-555555555555");
        assert_eq!(parts[0].part_label, "root fs");
    }

    /// Hand-built GPTs (no tools needed): 512 and 4096-byte sectors, backup fallback, and
    /// headers that must be refused.
    #[test]
    fn reads_hand_built_gpts_and_refuses_bad_ones() {
        let parts: [RawPart; 2] = [(LINUX_FS, GUID_A, "root"), (LINUX_FS, [0x11; 16], "swap  ")];
        for ss in [512usize, 4096] {
            let img = build_gpt(ss, 256, &parts);
            let got = read_gpt(&mut Cursor::new(&img))
                .unwrap()
                .unwrap_or_else(|| panic!("{ss}: no GPT"));
            assert_eq!(
                got,
                [
                    GptPart {
                        number: 1,
                        part_uuid: "01234567-89ab-cdef-0011-223344556677".into(),
                        part_label: "root".into()
                    },
                    GptPart {
                        number: 2,
                        part_uuid: "11111111-1111-1111-1111-111111111111".into(),
                        part_label: "swap".into()
                    },
                ],
                "{ss}-byte sectors"
            );
            let mut bad = img.clone();
            bad[ss + 8] ^= 1; // header CRC no longer matches: the backup is used
            assert_eq!(
                read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
                Some(&got),
                "{ss}: backup"
            );
        }
        // An unused slot between used ones keeps the numbering (entry index + 1).
        let img = build_gpt(
            512,
            256,
            &[
                (LINUX_FS, GUID_A, "a"),
                ([0; 16], [0; 16], ""),
                (LINUX_FS, [0x22; 16], "c"),
            ],
        );
        let numbers: Vec<u32> = read_gpt(&mut Cursor::new(&img))
            .unwrap()
            .unwrap()
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(numbers, [1, 3]);

        // Headers that lie: re-sign them so only the checked field is wrong.
        let resign = |img: &mut Vec<u8>, ss: usize| {
            img[ss + 16..ss + 20].fill(0);
            let crc = crc32(&img[ss..ss + 92]);
            img[ss + 16..ss + 20].copy_from_slice(&crc.to_le_bytes());
        };
        let base = build_gpt(512, 256, &parts);
        let last = base.len() - 512;
        let cases: [(&str, usize, &[u8]); 5] = [
            ("entry size below 128", 84, &64u32.to_le_bytes()),
            ("huge entry count", 80, &u32::MAX.to_le_bytes()),
            ("my_lba wrong", 24, &7u64.to_le_bytes()),
            ("header size too big", 12, &4096u32.to_le_bytes()),
            ("entries past the end", 72, &(1u64 << 60).to_le_bytes()),
        ];
        for (what, off, value) in cases {
            let mut img = base.clone();
            img[512 + off..512 + off + value.len()].copy_from_slice(value);
            resign(&mut img, 512);
            img[last..last + 8].copy_from_slice(b"NOT PART"); // no backup to fall back on
            assert_eq!(read_gpt(&mut Cursor::new(&img)).unwrap(), None, "{what}");
        }
    }

    /// Random damage to images carrying every signature must never panic.
    #[test]
    fn malformed_input_never_panics() {
        let mut base = build_gpt(512, 160, &[(LINUX_FS, GUID_A, "x")]);
        // FAT-looking boot sector fields with extreme values, plus every other magic.
        base[0x0B..0x0D].copy_from_slice(&4096u16.to_le_bytes());
        base[0x0D] = 128;
        base[0x0E..0x10].copy_from_slice(&0xFFFFu16.to_le_bytes());
        base[0x10] = 255;
        base[0x11..0x13].copy_from_slice(&0xFFFFu16.to_le_bytes());
        base[0x15] = 0xF8;
        base[0x16..0x18].copy_from_slice(&0xFFFFu16.to_le_bytes());
        base[0x36..0x3E].copy_from_slice(b"FAT16   ");
        base[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        base[4086..4096].copy_from_slice(b"SWAPSPACE2");
        base[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        let mut fat32 = base.clone();
        fat32[0x52..0x5A].copy_from_slice(b"FAT32   ");
        fat32[0x24..0x28].copy_from_slice(&u32::MAX.to_le_bytes());
        fat32[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes()); // cluster below 2
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let src = if round % 2 == 0 { &base } else { &fat32 };
            let mut img = src.clone();
            for _ in 0..(next() % 16) {
                let at = usize::try_from(next() % img.len() as u64).unwrap();
                img[at] = u8::try_from(next() & 0xFF).unwrap();
            }
            img.truncate(usize::try_from(next() % (img.len() as u64 + 1)).unwrap());
            let _ = probe_fs(&mut Cursor::new(&img)).unwrap();
            let _ = read_gpt(&mut Cursor::new(&img)).unwrap();
        }
        // The structured parsers on junk.
        for len in 0..700 {
            let junk: Vec<u8> = (0..len)
                .map(|_| u8::try_from(next() & 0xFF).unwrap())
                .collect();
            let mut page = junk.clone();
            if page.len() > 1 {
                page[1] = 0x83;
            }
            let _ = scsi_id_from_vpd83(&page, "V", "M");
            if page.len() > 1 {
                page[1] = 0x89;
            }
            let _ = ata_identify_from_vpd89(&page);
            if page.len() > 1 {
                page[1] = 0x80;
            }
            let _ = vpd80_serial(&page);
            let _ = fat_volume_label(&junk);
        }
    }

    // ---- link names ----------------------------------------------------------------------

    fn virtio_disk() -> BlockInfo {
        BlockInfo {
            kname: "vda".into(),
            serial: Some("sys0".into()),
            devpath: "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda".into(),
            diskseq: Some(9),
            ..BlockInfo::default()
        }
    }

    #[test]
    fn names_a_virtio_disk_and_partition() {
        let disk = virtio_disk();
        assert_eq!(
            names(&link_names(&disk, &Probe::default())),
            [
                "by-id/virtio-sys0",
                "by-path/pci-0000:00:03.0",
                "by-path/virtio-pci-0000:00:03.0",
                "by-diskseq/9"
            ]
        );
        let part = BlockInfo {
            kname: "vda1".into(),
            parent: Some("vda".into()),
            partnum: Some(1),
            devpath: format!("{}/vda1", disk.devpath),
            ..disk.clone()
        };
        let probe = Probe {
            fs_type: Some("vfat".into()),
            fs_uuid: Some("1234-ABCD".into()),
            fs_label: Some("EFI SYS".into()),
            part_uuid: Some("01234567-89ab-cdef-0011-223344556677".into()),
            part_label: Some("EFI System".into()),
        };
        let links = link_names(&part, &probe);
        assert!(links.iter().all(|(_, t)| t == "vda1"));
        assert_eq!(
            names(&links),
            [
                "by-id/virtio-sys0-part1",
                "by-path/pci-0000:00:03.0-part1",
                "by-path/virtio-pci-0000:00:03.0-part1",
                "by-uuid/1234-ABCD",
                "by-label/EFI\\x20SYS",
                "by-partuuid/01234567-89ab-cdef-0011-223344556677",
                "by-partlabel/EFI\\x20System",
                "by-path/pci-0000:00:03.0-part/by-partnum/1",
                "by-path/pci-0000:00:03.0-part/by-uuid/1234-ABCD",
                "by-path/pci-0000:00:03.0-part/by-label/EFI\\x20SYS",
                "by-path/pci-0000:00:03.0-part/by-partuuid/01234567-89ab-cdef-0011-223344556677",
                "by-path/pci-0000:00:03.0-part/by-partlabel/EFI\\x20System",
                "by-diskseq/9-part1",
            ]
        );
        // Serials longer than virtio's 20 bytes are cut; spaces and slashes do not survive.
        let long = BlockInfo {
            serial: Some("0123456789abcdefghijKLMN".into()),
            diskseq: None,
            ..virtio_disk()
        };
        assert_eq!(
            names(&link_names(&long, &Probe::default()))[0],
            "by-id/virtio-0123456789abcdefghij"
        );
        let odd = BlockInfo {
            serial: Some("a b/c".into()),
            ..virtio_disk()
        };
        assert_eq!(
            names(&link_names(&odd, &Probe::default()))[0],
            "by-id/virtio-a_b_c"
        );
        // virtio-mmio on a platform bus (no PCI, so no legacy virtio-pci name).
        let mmio = BlockInfo {
            serial: None,
            diskseq: None,
            devpath: "/sys/devices/platform/a003e00.virtio_mmio/virtio0/block/vda".into(),
            ..virtio_disk()
        };
        assert_eq!(
            names(&link_names(&mmio, &Probe::default())),
            ["by-path/platform-a003e00.virtio_mmio"]
        );
    }

    fn nvme_disk() -> BlockInfo {
        BlockInfo {
            kname: "nvme0n1".into(),
            model: Some("QEMU NVMe Ctrl".into()),
            serial: Some("deadbeef".into()),
            wwid: Some("nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001".into()),
            nsid: Some(1),
            devpath: "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1".into(),
            ..BlockInfo::default()
        }
    }

    #[test]
    fn names_nvme_namespaces_and_partitions() {
        let want = [
            "by-id/nvme-nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001",
            "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef",
            "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef_1",
            "by-path/pci-0000:00:04.0-nvme-1",
        ];
        assert_eq!(names(&link_names(&nvme_disk(), &Probe::default())), want);
        let part = BlockInfo {
            kname: "nvme0n1p2".into(),
            parent: Some("nvme0n1".into()),
            partnum: Some(2),
            devpath: "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2".into(),
            ..nvme_disk()
        };
        let want_part: Vec<String> = want.iter().map(|w| format!("{w}-part2")).collect();
        let mut want_part: Vec<&str> = want_part.iter().map(String::as_str).collect();
        want_part.push("by-path/pci-0000:00:04.0-nvme-1-part/by-partnum/2");
        assert_eq!(names(&link_names(&part, &Probe::default())), want_part);

        // Native multipath: the namespace lives under nvme-subsystem; by-path comes from the
        // controller, or is not made when the controller is unknown.
        let mp = BlockInfo {
            devpath: "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".into(),
            nvme_ctrl_path: Some("/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0".into()),
            ..nvme_disk()
        };
        assert_eq!(names(&link_names(&mp, &Probe::default())), want);
        let mp_unknown = BlockInfo {
            nvme_ctrl_path: None,
            ..mp
        };
        assert_eq!(
            names(&link_names(&mp_unknown, &Probe::default())),
            &want[..3]
        );
        // No nsid attribute: udev names no NVMe path.
        let no_nsid = BlockInfo {
            nsid: None,
            ..nvme_disk()
        };
        assert!(!names(&link_names(&no_nsid, &Probe::default()))
            .iter()
            .any(|n| n.starts_with("by-path/")));
        // A real drive: EUI wwid, model with spaces, controller behind a PCIe bridge.
        let samsung = BlockInfo {
            model: Some("Samsung SSD 970 EVO Plus 1TB            ".into()),
            serial: Some("S4EWNX0R123456A     ".into()),
            wwid: Some("eui.0025388b91b1f0a1".into()),
            devpath: "/sys/devices/pci0000:00/0000:00:1c.4/0000:3c:00.0/nvme/nvme0/nvme0n1".into(),
            ..nvme_disk()
        };
        assert_eq!(
            names(&link_names(&samsung, &Probe::default())),
            [
                "by-id/nvme-eui.0025388b91b1f0a1",
                "by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456A",
                "by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456A_1",
                "by-path/pci-0000:3c:00.0-nvme-1",
            ]
        );
    }

    fn sata_disk() -> BlockInfo {
        BlockInfo {
            kname: "sda".into(),
            vendor: Some("ATA     ".into()),
            model: Some("Samsung SSD 860 EVO 500GB".into()),
            serial: Some("  S3Z2NB0K123456X".into()),
            wwn: Some("0x5002538e40a1b2c3".into()),
            ata_port_no: Some(1),
            devpath:
                "/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda"
                    .into(),
            ..BlockInfo::default()
        }
    }

    #[test]
    fn names_sata_and_scsi_disks() {
        let want = [
            "by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z2NB0K123456X",
            "by-id/wwn-0x5002538e40a1b2c3",
            "by-path/pci-0000:00:1f.2-ata-1.0",
            "by-path/pci-0000:00:1f.2-ata-1",
        ];
        assert_eq!(names(&link_names(&sata_disk(), &Probe::default())), want);
        let part = BlockInfo {
            kname: "sda3".into(),
            parent: Some("sda".into()),
            partnum: Some(3),
            devpath: format!("{}/sda3", sata_disk().devpath),
            ..sata_disk()
        };
        let got = link_names(&part, &Probe::default());
        assert_eq!(
            names(&got)[..4],
            want.map(|w| format!("{w}-part3"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()[..]
        );
        // Port multiplier: bus != 0 gives ata-<port>.<bus>.0.
        let pmp = BlockInfo {
            devpath:
                "/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:1:0/2:1:0:0/block/sda"
                    .into(),
            ..sata_disk()
        };
        assert!(names(&link_names(&pmp, &Probe::default()))
            .contains(&"by-path/pci-0000:00:1f.2-ata-1.1.0"));
        // Unknown port number: no by-path rather than a wrong one.
        let no_port = BlockInfo {
            ata_port_no: None,
            ..sata_disk()
        };
        assert_eq!(names(&link_names(&no_port, &Probe::default())), &want[..2]);
        // No wwn from IDENTIFY: the kernel's naa. wwid gives the same wwn- name.
        let naa = BlockInfo {
            wwn: None,
            wwid: Some("naa.5002538E40A1B2C3".into()),
            ..sata_disk()
        };
        assert_eq!(
            names(&link_names(&naa, &Probe::default()))[1],
            "by-id/wwn-0x5002538e40a1b2c3"
        );

        // virtio-scsi with QEMU's vendor-specific designator (scsi_id ID_SERIAL from VPD 0x83).
        let scsi = BlockInfo {
            kname: "sdb".into(),
            vendor: Some("QEMU    ".into()),
            model: Some("QEMU HARDDISK   ".into()),
            id_serial: Some("0QEMU    QEMU HARDDISK   drive-scsi0-0-1-0".into()),
            scsi_host_base: Some(2),
            devpath:
                "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:1/2:0:1:0/block/sdb"
                    .into(),
            ..BlockInfo::default()
        };
        assert_eq!(
            names(&link_names(&scsi, &Probe::default())),
            [
                "by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-1-0",
                "by-path/pci-0000:00:05.0-scsi-0:0:1:0"
            ]
        );
        // Without VPD data: the NAA wwid (scsi_id's "3" + NAA) and its wwn- name.
        let naa_scsi = BlockInfo {
            id_serial: None,
            wwid: Some("naa.6001405abcdef0123456789abcdef012".into()),
            ..scsi.clone()
        };
        assert_eq!(
            names(&link_names(&naa_scsi, &Probe::default()))[..2],
            [
                "by-id/scsi-36001405abcdef0123456789abcdef012",
                "by-id/wwn-0x6001405abcdef0123456789abcdef012"
            ]
        );
        // USB mass storage: by-path through the USB interface, no scsi- by-id (udev uses usb_id).
        let usb = BlockInfo {
            kname: "sdc".into(),
            vendor: Some("SanDisk ".into()),
            model: Some("Cruzer Blade    ".into()),
            serial: Some("4C530001234".into()),
            scsi_host_base: Some(6),
            devpath: "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc".into(),
            ..BlockInfo::default()
        };
        assert_eq!(
            names(&link_names(&usb, &Probe::default())),
            ["by-path/pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"]
        );
        // iSCSI: path_id needs session attributes we do not read, so no by-path.
        let iscsi = BlockInfo {
            devpath: "/sys/devices/platform/host3/session1/target3:0:0/3:0:0:1/block/sdd".into(),
            ..scsi
        };
        assert!(!names(&link_names(&iscsi, &Probe::default()))
            .iter()
            .any(|n| n.starts_with("by-path/")));
    }

    #[test]
    fn labels_are_escaped_like_udev() {
        let info = BlockInfo {
            kname: "vdb".into(),
            ..BlockInfo::default()
        };
        let cases = [
            ("my disk/x", "by-label/my\\x20disk\\x2fx"),
            ("trail   ", "by-label/trail"),
            ("back\\slash", "by-label/back\\x5cslash"),
            ("über", "by-label/über"),
            ("a\"b'c", "by-label/a\\x22b\\x27c"),
        ];
        for (label, want) in cases {
            let probe = Probe {
                fs_label: Some(label.into()),
                ..Probe::default()
            };
            assert_eq!(names(&link_names(&info, &probe)), [want], "label {label:?}");
            let probe = Probe {
                part_label: Some(label.into()),
                ..Probe::default()
            };
            let want = want.replace("by-label/", "by-partlabel/");
            assert_eq!(
                names(&link_names(&info, &probe)),
                [want.as_str()],
                "partlabel {label:?}"
            );
        }
        let blank = Probe {
            fs_label: Some("   ".into()),
            part_label: Some(String::new()),
            ..Probe::default()
        };
        assert!(link_names(&info, &blank).is_empty());
    }

    #[test]
    fn only_devices_udev_handles_get_names() {
        let probe = Probe {
            fs_type: Some("ext4".into()),
            fs_uuid: Some("u-1".into()),
            ..Probe::default()
        };
        let cases: [(&str, &str, &[&str]); 6] = [
            (
                "loop0",
                "/sys/devices/virtual/block/loop0",
                &["by-uuid/u-1"],
            ),
            ("dm-0", "/sys/devices/virtual/block/dm-0", &["by-uuid/u-1"]),
            (
                "md127",
                "/sys/devices/virtual/block/md127",
                &["by-uuid/u-1"],
            ),
            ("zram0", "/sys/devices/virtual/block/zram0", &[]),
            ("ram0", "/sys/devices/virtual/block/ram0", &[]),
            (
                "mmcblk0boot0",
                "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0boot0",
                &["by-path/platform-fe340000.mmc-boot0"],
            ),
        ];
        for (kname, devpath, want) in cases {
            let info = BlockInfo {
                kname: kname.into(),
                devpath: devpath.into(),
                ..BlockInfo::default()
            };
            assert_eq!(names(&link_names(&info, &probe)), want, "{kname}");
        }
        let emmc = BlockInfo {
            kname: "mmcblk0".into(),
            model: Some("DG4016".into()),
            serial: Some("0x12345678".into()),
            devpath: "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
                .into(),
            ..BlockInfo::default()
        };
        assert_eq!(
            names(&link_names(&emmc, &Probe::default())),
            [
                "by-id/mmc-DG4016_0x12345678",
                "by-path/platform-fe340000.mmc"
            ]
        );
    }

    // ---- VPD parsing ---------------------------------------------------------------------

    /// VPD page 0x89 with IDENTIFY data: strings byte-swapped per word, WWN in words 108-111.
    fn vpd89(model: &str, serial: &str, wwn: Option<u64>) -> Vec<u8> {
        let mut page = vec![0u8; 572];
        page[1] = 0x89;
        page[2..4].copy_from_slice(&568u16.to_be_bytes());
        page[56] = 0xEC;
        let id = &mut page[60..];
        let mut put = |word: usize, s: &str, words: usize| {
            let padded = format!("{s:<width$}", width = words * 2);
            for (k, pair) in padded.as_bytes().chunks(2).enumerate() {
                id[(word + k) * 2] = pair[1];
                id[(word + k) * 2 + 1] = pair[0];
            }
        };
        put(10, serial, 10);
        put(27, model, 20);
        if let Some(w) = wwn {
            id[87 * 2..87 * 2 + 2].copy_from_slice(&0x4100u16.to_le_bytes());
            for k in 0..4 {
                let v = u16::try_from((w >> (48 - 16 * k)) & 0xFFFF).unwrap();
                id[(108 + k) * 2..(108 + k) * 2 + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        page
    }

    /// VPD page 0x83 from (code set, designator type, body) descriptors.
    fn vpd83(descriptors: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (code_set, ty, id) in descriptors {
            body.extend([*code_set, *ty, 0, u8::try_from(id.len()).unwrap()]);
            body.extend_from_slice(id);
        }
        let mut page = vec![0, 0x83];
        page.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        page.extend(body);
        page
    }

    #[test]
    fn parses_ata_identify_and_scsi_vpd_pages() {
        let id = ata_identify_from_vpd89(&vpd89(
            "Samsung SSD 860 EVO 500GB",
            "S3Z2NB0K123456X",
            Some(0x5002538e40a1b2c3),
        ));
        assert_eq!(
            id,
            Some(AtaIdent {
                model: "Samsung SSD 860 EVO 500GB".into(),
                serial: "S3Z2NB0K123456X".into(),
                wwn: Some("0x5002538e40a1b2c3".into()),
            })
        );
        assert_eq!(
            ata_identify_from_vpd89(&vpd89("QEMU HARDDISK", "QM00001", None))
                .unwrap()
                .wwn,
            None
        );
        assert_eq!(
            ata_identify_from_vpd89(&vpd89("x", "y", None)[..300]),
            None,
            "short page"
        );

        // QEMU scsi-hd: only a vendor-specific ASCII designator.
        let qemu = vpd83(&[(2, 0, b"drive-scsi0-0-1-0")]);
        assert_eq!(
            scsi_id_from_vpd83(&qemu, "QEMU", "QEMU HARDDISK"),
            Some(("0QEMU    QEMU HARDDISK   drive-scsi0-0-1-0".into(), None))
        );
        // NAA beats T10 and vendor-specific whatever the order; binary is printed in hex.
        let naa: &[u8] = &[
            0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
            0xf0, 0x12,
        ];
        let lio = vpd83(&[
            (2, 0, b"vendor-thing"),
            (2, 1, b"LIO-ORG block1"),
            (1, 3, naa),
        ]);
        assert_eq!(
            scsi_id_from_vpd83(&lio, "LIO-ORG", "block1"),
            Some((
                "36001405abcdef0123456789abcdef012".into(),
                Some("0x6001405abcdef0123456789abcdef012".into())
            ))
        );
        // A target-port (association 1) NAA is not the device's id.
        let port_only = vpd83(&[(1, 0x13, naa), (2, 1, b"ATA     QEMU HARDDISK   QM00003")]);
        assert_eq!(
            scsi_id_from_vpd83(&port_only, "ATA", "QEMU HARDDISK")
                .unwrap()
                .0,
            "1ATA     QEMU HARDDISK   QM00003"
        );
        assert_eq!(
            vpd80_serial(&[0, 0x80, 0, 4, b'1', b'2', b'3', b'4']).as_deref(),
            Some("1234")
        );
        assert_eq!(vpd80_serial(&[0, 0x80, 0, 4, b' ', b' ']), None);
    }

    // ---- sysfs ---------------------------------------------------------------------------

    fn write(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// A fake sysfs: a virtio disk with two partitions, a multipath NVMe namespace with a
    /// partition (plus its hidden per-path device), a SATA disk on the second port of an AHCI
    /// controller, a virtio-scsi disk, and a loop device.
    fn fake_sysfs(sys: &Path) {
        let dev = sys.join("devices");
        let class = sys.join("class/block");
        fs::create_dir_all(&class).unwrap();
        let link = |name: &str, target: &Path| symlink(target, class.join(name)).unwrap();

        let vda = dev.join("pci0000:00/0000:00:03.0/virtio1/block/vda");
        write(&vda.join("serial"), b"sys0\n");
        write(&vda.join("diskseq"), b"7\n");
        write(&vda.join("vda1/partition"), b"1\n");
        write(&vda.join("vda2/partition"), b"2\n");
        link("vda", &vda);
        link("vda1", &vda.join("vda1"));
        link("vda2", &vda.join("vda2"));

        let subsys = dev.join("virtual/nvme-subsystem/nvme-subsys0");
        write(
            &subsys.join("model"),
            b"QEMU NVMe Ctrl                          \n",
        );
        write(&subsys.join("serial"), b"deadbeef            \n");
        let ns = subsys.join("nvme0n1");
        write(&ns.join("wwid"), b"eui.0025388b91b1f0a1\n");
        write(&ns.join("nsid"), b"1\n");
        symlink(&subsys, ns.join("device")).unwrap();
        write(&ns.join("nvme0n1p1/partition"), b"1\n");
        link("nvme0n1", &ns);
        link("nvme0n1p1", &ns.join("nvme0n1p1"));
        let ctrl = dev.join("pci0000:00/0000:00:04.0/nvme/nvme0");
        write(&ctrl.join("nvme0c0n1/hidden"), b"1\n");
        link("nvme0c0n1", &ctrl.join("nvme0c0n1"));
        fs::create_dir_all(sys.join("class/nvme")).unwrap();
        symlink(&ctrl, sys.join("class/nvme/nvme0")).unwrap();

        let ata = dev.join("pci0000:00/0000:00:1f.2/ata3");
        write(&ata.join("ata_port/ata3/port_no"), b"2\n");
        let sdev = ata.join("host2/target2:0:0/2:0:0:0");
        write(&sdev.join("vendor"), b"ATA     \n");
        write(&sdev.join("model"), b"Samsung SSD 860 \n");
        write(&sdev.join("wwid"), b"naa.5002538e40a1b2c3\n");
        write(
            &sdev.join("vpd_pg89"),
            &vpd89(
                "Samsung SSD 860 EVO 500GB",
                "S3Z2NB0K123456X",
                Some(0x5002538e40a1b2c3),
            ),
        );
        let sda = sdev.join("block/sda");
        fs::create_dir_all(&sda).unwrap();
        symlink(&sdev, sda.join("device")).unwrap();
        write(&sda.join("sda1/partition"), b"1\n");
        link("sda", &sda);
        link("sda1", &sda.join("sda1"));

        let virtio_scsi = dev.join("pci0000:00/0000:00:05.0/virtio2");
        fs::create_dir_all(virtio_scsi.join("host0")).unwrap();
        let sdev = virtio_scsi.join("host1/target1:0:1/1:0:1:0");
        write(&sdev.join("vendor"), b"QEMU    \n");
        write(&sdev.join("model"), b"QEMU HARDDISK   \n");
        write(
            &sdev.join("vpd_pg83"),
            &vpd83(&[(2, 0, b"drive-scsi0-0-1-0")]),
        );
        write(
            &sdev.join("vpd_pg80"),
            &[0, 0x80, 0, 4, b'1', b'2', b'3', b'4'],
        );
        let sdb = sdev.join("block/sdb");
        fs::create_dir_all(&sdb).unwrap();
        symlink(&sdev, sdb.join("device")).unwrap();
        link("sdb", &sdb);

        let loop0 = dev.join("virtual/block/loop0");
        fs::create_dir_all(&loop0).unwrap();
        link("loop0", &loop0);
    }

    #[test]
    fn reads_block_infos_from_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        fake_sysfs(&sys);
        let infos = read_block_infos(&sys).unwrap();
        let knames: Vec<&str> = infos.iter().map(|i| i.kname.as_str()).collect();
        assert_eq!(
            knames,
            [
                "loop0",
                "nvme0n1",
                "nvme0n1p1",
                "sda",
                "sda1",
                "sdb",
                "vda",
                "vda1",
                "vda2"
            ],
            "hidden nvme0c0n1 left out"
        );
        let by = |k: &str| infos.iter().find(|i| i.kname == k).unwrap().clone();

        assert_eq!(
            by("vda2"),
            BlockInfo {
                kname: "vda2".into(),
                parent: Some("vda".into()),
                partnum: Some(2),
                serial: Some("sys0".into()),
                devpath: "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda/vda2".into(),
                subsystem_hint: Some("virtio".into()),
                diskseq: Some(7),
                ..BlockInfo::default()
            }
        );
        assert_eq!(
            by("nvme0n1"),
            BlockInfo {
                kname: "nvme0n1".into(),
                model: Some("QEMU NVMe Ctrl                          ".into()),
                serial: Some("deadbeef            ".into()),
                wwid: Some("eui.0025388b91b1f0a1".into()),
                nsid: Some(1),
                devpath: "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".into(),
                subsystem_hint: Some("nvme".into()),
                nvme_ctrl_path: Some("/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0".into()),
                ..BlockInfo::default()
            }
        );
        let sda = by("sda");
        assert_eq!(
            sda.model.as_deref().map(str::trim_end),
            Some("Samsung SSD 860 EVO 500GB"),
            "full model from IDENTIFY"
        );
        assert_eq!(sda.ata_port_no, Some(2));
        assert_eq!(sda.subsystem_hint.as_deref(), Some("ata"));
        let sdb = by("sdb");
        assert_eq!(sdb.scsi_host_base, Some(0), "host1 beside host0");
        assert_eq!(sdb.serial.as_deref(), Some("1234"));
        assert_eq!(by("loop0").devpath, "/sys/devices/virtual/block/loop0");

        let all: BTreeMap<String, Vec<String>> = infos
            .iter()
            .map(|i| {
                (
                    i.kname.clone(),
                    link_names(i, &Probe::default())
                        .into_iter()
                        .map(|(n, _)| n)
                        .collect(),
                )
            })
            .collect();
        let has = |k: &str, n: &str| {
            assert!(
                all[k].iter().any(|x| x == n),
                "{k}: {n} missing from {:?}",
                all[k]
            )
        };
        has("vda", "by-id/virtio-sys0");
        has("vda2", "by-id/virtio-sys0-part2");
        has("vda2", "by-path/pci-0000:00:03.0-part2");
        has("vda", "by-diskseq/7");
        has("nvme0n1", "by-id/nvme-eui.0025388b91b1f0a1");
        has("nvme0n1", "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef_1");
        has("nvme0n1p1", "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef-part1");
        has("nvme0n1p1", "by-path/pci-0000:00:04.0-nvme-1-part1");
        has("sda", "by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z2NB0K123456X");
        has("sda", "by-id/wwn-0x5002538e40a1b2c3");
        has("sda", "by-path/pci-0000:00:1f.2-ata-2.0");
        has("sda1", "by-path/pci-0000:00:1f.2-ata-2-part1");
        has("sdb", "by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-1-0");
        has("sdb", "by-path/pci-0000:00:05.0-scsi-1:0:1:0");
        assert!(all["loop0"].is_empty());
    }

    #[test]
    fn missing_class_block_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_block_infos(dir.path()).unwrap_err();
        assert!(err.to_string().contains("class/block"), "{err}");
    }

    // ---- creating links ------------------------------------------------------------------

    /// Every symlink under `root` with its target, relative paths.
    fn snapshot(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_symlink() {
                    let rel = e
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.insert(
                        rel,
                        fs::read_link(e.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn creates_relative_links_and_replaces_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        for node in ["vda", "vda1", "vdb", "other"] {
            write(&dev.join(node), b"");
        }
        let disk = dev.join("disk");
        fs::create_dir_all(disk.join("by-id")).unwrap();
        fs::create_dir_all(disk.join("by-uuid")).unwrap();
        fs::create_dir_all(disk.join("by-label/gone")).unwrap();
        symlink("../../vdb", disk.join("by-id/virtio-sys0")).unwrap(); // wrong target: replaced
        symlink("../../vda1", disk.join("by-uuid/old-uuid")).unwrap(); // our device, old name: removed
        symlink("../../sdz", disk.join("by-id/dangling")).unwrap(); // device gone: removed
        symlink("../../other", disk.join("by-id/someone-else")).unwrap(); // live, not ours: kept

        let links = pairs(&[
            ("by-id/virtio-sys0", "vda"),
            ("by-id/virtio-sys0-part1", "vda1"),
            ("by-uuid/new-uuid", "vda1"),
            ("by-path/pci-0000:00:03.0-part/by-uuid/new-uuid", "vda1"),
        ]);
        assert_eq!(create_links(&dev, &links).unwrap(), 4);
        let want: BTreeMap<String, String> = [
            ("by-id/someone-else", "../../other"),
            ("by-id/virtio-sys0", "../../vda"),
            ("by-id/virtio-sys0-part1", "../../vda1"),
            (
                "by-path/pci-0000:00:03.0-part/by-uuid/new-uuid",
                "../../../../vda1",
            ),
            ("by-uuid/new-uuid", "../../vda1"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(snapshot(&disk), want);
        assert!(
            !disk.join("by-label").exists(),
            "empty directories are removed"
        );
        // The links resolve to the nodes.
        for (rel, node) in [
            ("by-id/virtio-sys0", "vda"),
            ("by-path/pci-0000:00:03.0-part/by-uuid/new-uuid", "vda1"),
        ] {
            assert_eq!(
                fs::canonicalize(disk.join(rel)).unwrap(),
                fs::canonicalize(dev.join(node)).unwrap()
            );
        }
        // Idempotent: same count, same links, no temporary files left.
        assert_eq!(create_links(&dev, &links).unwrap(), 4);
        assert_eq!(snapshot(&disk), want);
        let leftovers: Vec<_> = fs::read_dir(disk.join("by-id"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn refuses_unsafe_names_and_keeps_the_first_claimant() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        let links = pairs(&[
            ("by-label/..", "vda1"),
            ("../escape", "vda1"),
            ("by-id//x", "vda1"),
            ("by-id/ok", "../etc/passwd"),
            ("by-id/dup", "vda"),
            ("by-id/dup", "vdb"),
            ("by-id/dup", "vda"),
            ("by-id/cciss-disk", "cciss!c0d0"),
        ]);
        assert_eq!(create_links(&dev, &links).unwrap(), 2);
        let got = snapshot(&dev.join("disk"));
        let want: BTreeMap<String, String> = [
            ("by-id/dup", "../../vda"),
            ("by-id/cciss-disk", "../../cciss/c0d0"),
        ]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
        assert_eq!(got, want);
        assert!(!dir.path().join("escape").exists() && !dev.join("escape").exists());
    }

    /// The whole chain on files: a GPT disk image as `vda` and a filesystem image as `vda1`,
    /// named from a fake sysfs and linked under a fake /dev.
    #[test]
    fn names_images_end_to_end() {
        let test = "names_images_end_to_end";
        let (Some(sgdisk), Some(mkfs)) = (
            tool("sgdisk", "gdisk", test),
            tool("mkfs.ext4", "e2fsprogs", test),
        ) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        fake_sysfs(&sys);
        let dev = dir.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        let vda = sparse(&dev, "vda", 32 << 20);
        run(
            &sgdisk,
            &[
                "-n=1:0:0",
                "-c=1:root fs",
                "-u=1:5B8A5D2E-0B9A-4F6B-9D43-1C0E2A8B7F10",
                vda.to_str().unwrap(),
            ],
        );
        let vda1 = sparse(&dev, "vda1", 16 << 20);
        run(
            &mkfs,
            &[
                "-q",
                "-F",
                "-U",
                "c0ffee00-1234-4321-abcd-0123456789ab",
                "-L",
                "rootfs",
                vda1.to_str().unwrap(),
            ],
        );

        let mut all = Vec::new();
        for info in read_block_infos(&sys)
            .unwrap()
            .iter()
            .filter(|i| i.kname.starts_with("vda"))
        {
            let node = dev.join(&info.kname);
            let mut probe = if node.exists() {
                probe_path(&node)
            } else {
                Probe::default()
            };
            if let (Some(parent), Some(n)) = (&info.parent, info.partnum) {
                if let Some(p) = gpt_path(&dev.join(parent))
                    .and_then(|ps| ps.into_iter().find(|p| p.number == n))
                {
                    probe.part_uuid = Some(p.part_uuid);
                    probe.part_label = Some(p.part_label);
                }
            }
            all.extend(link_names(info, &probe));
        }
        create_links(&dev, &all).unwrap();
        for (rel, node) in [
            ("by-uuid/c0ffee00-1234-4321-abcd-0123456789ab", "vda1"),
            ("by-label/rootfs", "vda1"),
            ("by-partuuid/5b8a5d2e-0b9a-4f6b-9d43-1c0e2a8b7f10", "vda1"),
            ("by-partlabel/root\\x20fs", "vda1"),
            ("by-id/virtio-sys0", "vda"),
            ("by-path/pci-0000:00:03.0-part1", "vda1"),
        ] {
            let link = dev.join("disk").join(rel);
            assert_eq!(
                fs::canonicalize(&link).unwrap(),
                fs::canonicalize(dev.join(node)).unwrap(),
                "{rel}"
            );
        }
    }
}
