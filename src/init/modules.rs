//! Modules stage: load the packed manifest in order, then name drivers the image lacks.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::module_manifest::{self, ManifestEntry};
use crate::util::fnmatch;

/// Where the packer links the manifest.
pub const MANIFEST: &str = module_manifest::LINK;

/// Outcome of loading, for the log and the figures.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    pub already: usize,
    pub blacklisted: usize,
    pub failed: Vec<(String, String)>,
    pub ms: u128,
}

/// Loads every module of the manifest (if the image has one).
pub fn load_all(blacklist: &[String]) -> Result<LoadReport> {
    let t = Instant::now();
    let mut r = LoadReport::default();
    let text = match fs::read_to_string(MANIFEST) {
        Ok(t) => t,
        Err(_) => {
            log::info!("no module manifest in the image ({MANIFEST}); relying on built-in drivers");
            return Ok(r);
        }
    };
    let entries = module_manifest::parse(&text)
        .with_context(|| format!("reading the module manifest {MANIFEST}"))?;
    for e in entries {
        load_one(&e, blacklist, &mut r);
    }
    r.ms = t.elapsed().as_millis();
    Ok(r)
}

fn load_one(e: &ManifestEntry, blacklist: &[String], r: &mut LoadReport) {
    if blacklist.contains(&e.name) {
        log::info!(
            "module {}: blacklisted on the kernel command line, not loaded",
            e.name
        );
        r.blacklisted += 1;
        return;
    }
    if Path::new("/sys/module")
        .join(&e.name)
        .join("initstate")
        .exists()
    {
        r.already += 1;
        return;
    }
    let data = match fs::read(&e.path) {
        Ok(d) => d,
        Err(err) => {
            r.failed.push((
                e.name.clone(),
                format!("reading {}: {err}", e.path.display()),
            ));
            return;
        }
    };
    let params = CString::new(e.params.clone().unwrap_or_default()).unwrap_or_default();
    match nix::kmod::init_module(&data, &params) {
        Ok(()) => {
            log::debug!("loaded module {}", e.name);
            r.loaded += 1;
        }
        Err(nix::errno::Errno::EEXIST) => r.already += 1,
        Err(err) => {
            log::warn!(
                "module {}: init_module failed: {} ({})",
                e.name,
                err.desc(),
                err
            );
            r.failed.push((e.name.clone(), err.desc().to_string()));
        }
    }
}

/// A device no driver claimed, and the modules whose aliases match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclaimed {
    pub device: String,
    pub modalias: String,
    pub modules: Vec<String>,
}

/// Devices whose missing driver matters for a deploy: storage and network controllers, USB
/// host controllers, virtio block/net/scsi, SCSI and NVMe. Other unclaimed devices (buttons,
/// serio, fw_cfg, cpufreq) are normal in a minimal image and only logged at debug level.
pub fn relevant(modalias: &str) -> bool {
    if let Some(rest) = modalias.strip_prefix("pci:") {
        return ["bc01", "bc02", "bc0C"].iter().any(|c| rest.contains(c));
    }
    if let Some(rest) = modalias.strip_prefix("virtio:") {
        return ["d00000001v", "d00000002v", "d00000008v"]
            .iter()
            .any(|d| rest.starts_with(d));
    }
    modalias.starts_with("scsi:")
        || modalias.starts_with("nvme:")
        || (modalias.starts_with("usb:") && modalias.contains("ic08"))
}

/// Parses modules.alias lines (`alias PATTERN module`).
pub fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("alias"), Some(p), Some(m)) => Some((p.to_string(), m.replace('-', "_"))),
                _ => None,
            }
        })
        .collect()
}

/// Pure: which modules would claim each (device, modalias) pair.
pub fn match_unclaimed(
    devices: &[(String, String)],
    aliases: &[(String, String)],
    loaded: &BTreeSet<String>,
) -> Vec<Unclaimed> {
    // Index aliases by their literal prefix up to the first ':' (the bus), and precompute the
    // literal part before any wildcard: matching ~2400 patterns per device took over a second
    // under TCG otherwise.
    let mut by_bus: std::collections::HashMap<&str, Vec<(&str, &str, &str)>> =
        std::collections::HashMap::new();
    for (p, m) in aliases {
        let lit = p.find(['*', '?', '[']).map(|i| &p[..i]).unwrap_or(p);
        let bus = lit.split(':').next().unwrap_or("");
        by_bus
            .entry(bus)
            .or_default()
            .push((lit, p.as_str(), m.as_str()));
    }
    let mut out = Vec::new();
    for (dev, ma) in devices {
        let bus = ma.split(':').next().unwrap_or("");
        let Some(cands) = by_bus.get(bus) else {
            continue;
        };
        let mut mods: Vec<String> = cands
            .iter()
            .filter(|(lit, p, _)| ma.starts_with(lit) && fnmatch(p, ma))
            .map(|(_, _, m)| m.to_string())
            .collect();
        mods.sort();
        mods.dedup();
        if mods.is_empty() || mods.iter().any(|m| loaded.contains(m)) {
            continue;
        }
        out.push(Unclaimed {
            device: dev.clone(),
            modalias: ma.clone(),
            modules: mods,
        });
    }
    out
}

/// Walks /sys/bus/*/devices for devices with a modalias and no driver, and names the
/// modules (from the kernel's modules.alias, packed into the image) that would drive them.
pub fn report_missing_drivers(debug: bool) -> Vec<Unclaimed> {
    let mut devices = Vec::new();
    if let Ok(buses) = fs::read_dir("/sys/bus") {
        for bus in buses.flatten() {
            // Only buses that carry storage/network devices, unless debugging: walking every
            // ACPI/platform/cpu/memory device costs hundreds of ms under TCG.
            let bn = bus.file_name().to_string_lossy().into_owned();
            if !debug && !["pci", "virtio", "scsi", "usb", "nvme"].contains(&bn.as_str()) {
                continue;
            }
            let Ok(devs) = fs::read_dir(bus.path().join("devices")) else {
                continue;
            };
            for d in devs.flatten() {
                let p = d.path();
                if p.join("driver").exists() {
                    continue;
                }
                if let Ok(ma) = fs::read_to_string(p.join("modalias")) {
                    if !debug && !relevant(ma.trim()) {
                        continue;
                    }
                    let name = format!(
                        "{} {}",
                        bus.file_name().to_string_lossy(),
                        d.file_name().to_string_lossy()
                    );
                    devices.push((name, ma.trim().to_string()));
                }
            }
        }
    }
    // The common case is a fully claimed machine: then there is nothing to name, and parsing
    // modules.alias (hundreds of KB, tens of ms under TCG) would be wasted boot time.
    if devices.is_empty() {
        return Vec::new();
    }
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let Ok(text) = fs::read_to_string(format!("/lib/modules/{release}/modules.alias")) else {
        log::debug!("no modules.alias in the image; cannot name missing drivers");
        return Vec::new();
    };
    let aliases = parse_aliases(&text);
    let loaded: BTreeSet<String> = fs::read_dir("/sys/module")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let (found, other): (Vec<Unclaimed>, Vec<Unclaimed>) =
        match_unclaimed(&devices, &aliases, &loaded)
            .into_iter()
            .partition(|u| relevant(&u.modalias));
    for u in &other {
        log::debug!(
            "no driver for {} ({}); {} could claim it",
            u.device,
            u.modalias,
            u.modules.join(" or ")
        );
    }
    for u in &found {
        log::warn!(
            "missing driver: {} ({}) has no driver; module {} would claim it but is not in this image (pack with --module {})",
            u.device,
            u.modalias,
            u.modules.join(" or "),
            u.modules[0]
        );
    }
    found
}

/// The `modules` stage: loads the manifest's modules, then names drivers still missing.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let r = load_all(&ctx.params.blacklist)?;
    ctx.modules_ms = r.ms;
    log::info!(
        "modules: {} loaded, {} already present, {} blacklisted, {} failed in {} ms",
        r.loaded,
        r.already,
        r.blacklisted,
        r.failed.len(),
        r.ms
    );
    for (m, why) in &r.failed {
        log::warn!("module {m} failed to load: {why}");
    }
    // Naming drivers that are missing is diagnosis, not deployment: it parses modules.alias
    // (tens of ms under emulation), so it runs beside the boot at the lowest priority and
    // the devices stage, whose waits leave the CPU idle, collects it.
    let debug = ctx.params.debug;
    ctx.driver_scan = std::thread::Builder::new()
        .name("driver-scan".into())
        .spawn(move || {
            let t = Instant::now();
            // Best effort: at worst the scan competes at normal priority.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            report_missing_drivers(debug);
            t.elapsed().as_millis()
        })
        .ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_module_for_an_unclaimed_device() {
        let aliases = parse_aliases(
            "# comment\nalias virtio:d00000002v* virtio_blk\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio-pci\nalias fs-vfat vfat\n",
        );
        assert_eq!(aliases.len(), 3);
        let devs = vec![
            (
                "virtio virtio1".to_string(),
                "virtio:d00000002v00001AF4".to_string(),
            ),
            (
                "pci 0000:00:03.0".to_string(),
                "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00".to_string(),
            ),
            (
                "platform serial8250".to_string(),
                "platform:serial8250".to_string(),
            ),
        ];
        let loaded: BTreeSet<String> = ["virtio_pci".to_string()].into();
        let u = match_unclaimed(&devs, &aliases, &loaded);
        assert_eq!(
            u,
            vec![Unclaimed {
                device: "virtio virtio1".into(),
                modalias: devs[0].1.clone(),
                modules: vec!["virtio_blk".into()]
            }]
        );
    }

    #[test]
    fn relevance_filter() {
        assert!(relevant(
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
        ));
        assert!(relevant("virtio:d00000002v00001AF4"));
        assert!(relevant("virtio:d00000001v00001AF4"));
        assert!(
            !relevant("virtio:d00000004v00001AF4"),
            "rng is not a deploy concern"
        );
        assert!(!relevant("serio:ty01pr00id00ex00"));
        assert!(!relevant("acpi:LNXPWRBN:"));
        assert!(
            !relevant("pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00"),
            "ISA bridge"
        );
    }
}
