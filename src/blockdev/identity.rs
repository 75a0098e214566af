//! One identity for a disk: what the planner matches `anemos.toml` disks against, what the
//! devices stage logs, what `anemos plan` and `anemos kexec` list. It is derived from the same
//! [`BlockInfo`] (and the same naming code) that makes the `/dev/disk/by-id` links, so a serial
//! or WWN that names a link also matches a disk.
//!
//! Disks come from sysfs ([`disks_from_sysfs`]) or, on the host, from image files standing in
//! for disks ([`from_image_spec`]), which build the [`BlockInfo`] QEMU's devices would give.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::names::{by_id_names, nonempty, wwn as udev_wwn};
use super::vpd::vendor_model;
use super::{read_block_infos, BlockInfo};
use crate::util::human;

/// A whole disk as the planner knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskIdentity {
    /// /dev/vda, or an image file path on the host.
    pub path: String,
    pub size_bytes: u64,
    /// Logical sector size: 512 or 4096.
    pub sector_size: u64,
    /// Device serial ([`BlockInfo::serial`], surrounding whitespace removed).
    pub serial: Option<String>,
    /// udev's `ID_WWN_WITH_EXTENSION` (`0x5000c500a1b2c3d4`, the `wwn-` by-id name without
    /// its prefix) for ATA and SCSI disks; the kernel `wwid` for NVMe, as udev's `ID_WWN`.
    pub wwn: Option<String>,
    pub model: Option<String>,
    /// /dev/disk/by-id names (without the directory).
    pub by_id: Vec<String>,
    /// Other paths that name this disk (by-path links).
    pub aliases: Vec<String>,
    pub removable: bool,
    pub usb: bool,
}

impl DiskIdentity {
    pub fn sectors(&self) -> u64 {
        self.size_bytes / self.sector_size.max(1)
    }

    /// The disk's identity from what sysfs (or an image spec) says about it. `info` must be a
    /// whole disk.
    pub fn from_info(info: &BlockInfo, path: String, size_bytes: u64, sector_size: u64) -> Self {
        let trimmed = |s: &Option<String>| nonempty(s).map(|v| v.trim().to_string());
        let wwn = udev_wwn(info).or_else(|| {
            (info.subsystem_hint.as_deref() == Some("nvme"))
                .then(|| trimmed(&info.wwid))
                .flatten()
        });
        DiskIdentity {
            path,
            size_bytes,
            sector_size,
            serial: trimmed(&info.serial),
            wwn,
            model: trimmed(&info.model),
            by_id: by_id_names(info),
            aliases: vec![],
            removable: false,
            usb: info.devpath.contains("/usb"),
        }
    }

    /// `/dev/sda (by-id A,B, serial S, wwn W, model M, 512 MiB)`: the one format the devices
    /// stage, the planner's candidate lists and the plan use.
    pub fn describe(&self) -> String {
        let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
        format!(
            "{} (by-id {}, serial {}, wwn {}, model {}, {})",
            self.path,
            if self.by_id.is_empty() {
                "-".into()
            } else {
                self.by_id.join(",")
            },
            or_dash(&self.serial),
            or_dash(&self.wwn),
            or_dash(&self.model),
            human(self.size_bytes)
        )
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Kernel names that are never disks to plan on: loop, ram, zram, optical, device-mapper,
/// MD and NBD devices.
fn plannable(kname: &str) -> bool {
    !["loop", "ram", "zram", "sr", "dm-", "md", "nbd"]
        .iter()
        .any(|p| kname.starts_with(p))
}

/// The identity of the whole disk `info` from `<sysfs>/class/block/<kname>`: size, logical
/// sector size, removable flag.
pub fn identify(sysfs: &Path, info: &BlockInfo) -> DiskIdentity {
    let b = sysfs.join("class/block").join(&info.kname);
    let sectors: u64 = read_trim(&b.join("size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let lbs: u64 = read_trim(&b.join("queue/logical_block_size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let mut d = DiskIdentity::from_info(info, format!("/dev/{}", info.kname), sectors * 512, lbs);
    d.removable = read_trim(&b.join("removable")).as_deref() == Some("1");
    d
}

/// Whole disks under `<sysfs>/class/block` (skipping loop, ram, zram, optical, device-mapper,
/// MD, NBD and empty devices), sorted by kernel name. Their by-id names are the ones the
/// devices stage links, plus any other `<dev>/disk/by-id` link to the disk (a host's udev
/// makes some we do not, such as `usb-...`).
pub fn disks_from_sysfs(sysfs: &Path, dev: &Path) -> Result<Vec<DiskIdentity>> {
    let infos = read_block_infos(sysfs)?;
    let links = by_id_links(dev);
    let mut out = Vec::new();
    for info in infos.iter().filter(|i| i.parent.is_none()) {
        if !plannable(&info.kname) {
            continue;
        }
        let mut d = identify(sysfs, info);
        if d.size_bytes == 0 {
            continue;
        }
        for (n, k) in &links {
            if *k == info.kname && !d.by_id.contains(n) {
                d.by_id.push(n.clone());
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// (link name, target kernel name) for every /dev/disk/by-id link.
fn by_id_links(dev: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(dev.join("disk/by-id")) {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                if let Some(k) = t.file_name() {
                    v.push((
                        e.file_name().to_string_lossy().into_owned(),
                        k.to_string_lossy().into_owned(),
                    ));
                }
            }
        }
    }
    v.sort();
    v
}

/// QEMU's scsi-hd INQUIRY vendor and default product.
const QEMU_SCSI_VENDOR: &str = "QEMU";
const QEMU_SCSI_MODEL: &str = "QEMU HARDDISK";

/// Parses `FILE[:bus=virtio|scsi][:serial=S][:wwn=0x..][:model=M][:sector=4096][:id=BY-ID]`
/// into the identity the same disk has in the init when QEMU attaches the image as
/// `virtio-blk-pci` (the default: serial S gives by-id `virtio-S`) or as `scsi-hd` on
/// virtio-scsi (`bus=scsi`: vendor QEMU, model `QEMU HARDDISK` unless given, by-id from the
/// VPD designators QEMU reports: the WWN's NAA one, else the vendor-specific serial one).
pub fn from_image_spec(spec: &str) -> Result<DiskIdentity> {
    let file = spec.split(':').next().unwrap_or_default();
    let md = fs::metadata(file).with_context(|| format!("--disk {spec}: cannot read {file}"))?;
    from_image_spec_sized(spec, md.len())
}

/// [`from_image_spec`] for an image of `size_bytes`, without looking at the file. Pure.
pub fn from_image_spec_sized(spec: &str, size_bytes: u64) -> Result<DiskIdentity> {
    let mut it = spec.split(':');
    let file = it.next().unwrap_or_default();
    let (mut bus, mut serial, mut wwn, mut model) = ("virtio", None, None, None);
    let (mut sector, mut ids) = (512u64, Vec::new());
    for kv in it {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--disk {spec}: expected KEY=VALUE after ':', got {kv:?}")
        };
        match k {
            "bus" => {
                bus = match v {
                    "virtio" => "virtio",
                    "scsi" => "scsi",
                    _ => bail!("--disk {spec}: bus={v:?} is not virtio or scsi"),
                }
            }
            "serial" => serial = Some(v.to_string()),
            "wwn" => wwn = Some(v.to_ascii_lowercase()),
            "model" => model = Some(v.to_string()),
            "id" => ids.push(v.to_string()),
            "sector" => {
                sector = v
                    .parse()
                    .with_context(|| format!("--disk {spec}: sector={v:?} is not a number"))?;
                if sector != 512 && sector != 4096 {
                    bail!("--disk {spec}: sector={v:?}: the sector size is 512 or 4096");
                }
            }
            other => {
                bail!("--disk {spec}: unknown key {other:?} (bus, serial, wwn, model, id, sector)")
            }
        }
    }
    let info = match bus {
        "scsi" => {
            let model = model.unwrap_or_else(|| QEMU_SCSI_MODEL.to_string());
            let naa = wwn
                .as_deref()
                .map(|w| w.trim_start_matches("0x").to_string());
            let id_serial = naa.map(|n| format!("3{n}")).or_else(|| {
                let s = serial.as_deref()?;
                Some(format!("0{}{s}", vendor_model(QEMU_SCSI_VENDOR, &model)))
            });
            BlockInfo {
                kname: "sda".into(),
                subsystem_hint: Some("scsi".into()),
                vendor: Some(QEMU_SCSI_VENDOR.into()),
                model: Some(model),
                serial,
                wwn,
                id_serial,
                ..BlockInfo::default()
            }
        }
        _ => BlockInfo {
            kname: "vda".into(),
            subsystem_hint: Some("virtio".into()),
            model,
            serial,
            wwn,
            ..BlockInfo::default()
        },
    };
    let mut d = DiskIdentity::from_info(&info, file.to_string(), size_bytes, sector);
    d.by_id.extend(ids);
    Ok(d)
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
