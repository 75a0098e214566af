//! The `/dev/disk/by-*` names udev's `60-persistent-storage.rules` would give a device. Pure.

use std::collections::BTreeSet;

use super::bytes::is_c_space;
use super::path_id::{is_usb_interface, path_id};
use super::sysfs::truncate_chars;
use super::vpd::vendor_model;
use super::{BlockInfo, Probe};

// udev's string escaping.

/// Characters udev allows in device names unchanged.
pub(super) fn udev_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)
}

/// `udev_replace_chars(s, NULL)`: every character outside `[A-Za-z0-9#+-.:=@_]` becomes `_`,
/// except multi-byte UTF-8 characters and `\x` escapes, which are kept.
pub(super) fn replace_chars(s: &str) -> String {
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
pub(super) fn replace_whitespace(s: &str) -> String {
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
pub(super) fn attr_escape(s: &str) -> String {
    replace_chars(s.trim_end_matches(is_c_space))
}

/// `blkid_encode_string`, which makes `ID_FS_LABEL_ENC`, `ID_FS_UUID_ENC` and
/// `ID_PART_ENTRY_NAME`: characters outside `[A-Za-z0-9#+-.:=@_]`, and `\`, become `\xNN`
/// (lowercase hex); multi-byte UTF-8 characters are kept.
pub(super) fn encode_string(s: &str) -> String {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bus {
    Virtio,
    Nvme,
    Ata,
    Scsi,
    Mmc,
    Other,
}

pub(super) fn disk_kname(info: &BlockInfo) -> &str {
    info.parent.as_deref().unwrap_or(&info.kname)
}

pub(super) fn bus_of(info: &BlockInfo) -> Bus {
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
pub(super) fn handled_by_rules(kname: &str) -> bool {
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
pub(super) fn mmc_boot_area(kname: &str) -> Option<&str> {
    let rest = kname.strip_prefix("mmcblk")?;
    let (n, m) = rest.split_once("boot")?;
    (!n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !m.is_empty()
        && m.bytes().all(|b| b.is_ascii_digit()))
    .then_some(m)
}

pub(super) fn nonempty(s: &Option<String>) -> Option<&str> {
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
pub(super) fn by_id_names(info: &BlockInfo) -> Vec<String> {
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
pub(super) fn wwn(info: &BlockInfo) -> Option<String> {
    let w = nonempty(&info.wwn).map(str::to_string).or_else(|| {
        let naa = nonempty(&info.wwid)?.trim().strip_prefix("naa.")?;
        Some(format!("0x{}", naa.to_ascii_lowercase()))
    })?;
    Some(replace_chars(w.trim()))
}

/// scsi_id's `ID_SERIAL`: from the VPD pages when read, else rebuilt from the kernel wwid
/// (`naa.` → `3`, `eui.` → `2`, `t10.` → `1`), else `S` + vendor + model + unit serial.
pub(super) fn scsi_id_serial(info: &BlockInfo) -> Option<String> {
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
