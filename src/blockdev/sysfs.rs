//! Identity data of block devices from sysfs: kernel name, partition, serial, model, wwid,
//! the bus, and what udev's `ata_id`/`scsi_id` would read (through the VPD pages in sysfs).

use std::fs;
use std::io;
use std::path::Path;

use super::bytes::is_c_space;
use super::vpd::{ata_identify_from_vpd89, scsi_id_from_vpd83, vendor_model, vpd80_serial};
use super::BlockInfo;

/// Reads a sysfs attribute, dropping the trailing newline. `None` when missing, unreadable or
/// empty.
pub(super) fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let bytes = fs::read(dir.join(name)).ok()?;
    let s = String::from_utf8_lossy(&bytes);
    let s = s.trim_end_matches('\n');
    (!s.is_empty()).then(|| s.to_string())
}

/// The logical sector size of the block device node `dev` (a disk, an md array, a
/// device-mapper device; symlinks such as /dev/md/NAME are followed), from sysfs; 512 when it
/// cannot be read. A FAT made on the device must use it.
pub fn logical_sector_size(dev: &str) -> u64 {
    fs::canonicalize(dev)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .and_then(|n| {
            read_num(
                &Path::new("/sys/class/block").join(n).join("queue"),
                "logical_block_size",
            )
        })
        .unwrap_or(512)
}

pub(super) fn read_num<T: std::str::FromStr>(dir: &Path, name: &str) -> Option<T> {
    read_attr(dir, name)?.trim().parse().ok()
}

/// `<prefix><digits>`, e.g. `host2` with prefix `host`.
pub(super) fn numbered(name: &str, prefix: &str) -> Option<u32> {
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
pub(super) fn sys_path(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => Path::new("/sys").join(rel).to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

pub(super) fn read_one(sysfs: &Path, root: &Path, name: &str) -> io::Result<Option<BlockInfo>> {
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
pub(super) fn read_virtio(info: &mut BlockInfo, disk_dir: &Path) {
    info.serial = read_attr(disk_dir, "serial").map(|s| truncate_chars(&s, 20));
    info.subsystem_hint = Some("virtio".into());
}

pub(super) fn truncate_chars(s: &str, max_bytes: usize) -> String {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// NVMe: model and serial of the controller (or subsystem), wwid and nsid of the namespace.
pub(super) fn read_nvme(
    info: &mut BlockInfo,
    sysfs: &Path,
    root: &Path,
    disk_dir: &Path,
    disk: &str,
) {
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
pub(super) fn read_scsi(info: &mut BlockInfo, sysfs: &Path, root: &Path, disk_dir: &Path) {
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
pub(super) fn ata_port_no(sysfs: &Path, root: &Path, disk_dir: &Path) -> Option<u32> {
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
pub(super) fn scsi_host_base(root: &Path, disk_dir: &Path) -> Option<u32> {
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
