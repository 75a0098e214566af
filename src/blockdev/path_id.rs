//! udev's `path_id`: the `by-path` name of a disk from its sysfs ancestry.

use super::sysfs::numbered;
use super::BlockInfo;

/// udev's `ID_PATH` and, for ATA, `ID_PATH_ATA_COMPAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathId {
    pub(super) path: String,
    pub(super) ata_compat: Option<String>,
}

/// What a sysfs directory name says about the device, for path_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node<'a> {
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

pub(super) fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `dddd:bb:dd.f` (domain may be longer, as with VMD).
pub(super) fn is_pci_addr(s: &str) -> bool {
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

pub(super) fn parse_hctl(s: &str) -> Option<Node<'_>> {
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
pub(super) fn is_usb_interface(s: &str) -> bool {
    let Some((dev, cfg)) = s.split_once(':') else {
        return false;
    };
    let Some((c, i)) = cfg.split_once('.') else {
        return false;
    };
    is_usb_device(dev) && all_digits(c) && all_digits(i)
}

/// `1-2.3`: a USB device.
pub(super) fn is_usb_device(s: &str) -> bool {
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    all_digits(bus) && ports.split('.').all(all_digits)
}

pub(super) fn classify(name: &str) -> Node<'_> {
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
pub(super) fn disk_ancestors(info: &BlockInfo) -> Option<Vec<&str>> {
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
pub(super) fn path_id(info: &BlockInfo) -> Option<PathId> {
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
