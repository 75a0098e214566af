//! Devices stage (no udev): wait, bounded, for block devices to settle or for the ones the
//! config needs, then create /dev/disk/by-* symlinks from sysfs and our own probing.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::blockdev as devnames;

/// Block device names currently in sysfs.
fn block_names(sysfs: &Path) -> BTreeSet<String> {
    fs::read_dir(sysfs.join("class/block"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every path in `needed` exists (bounded by `timeout`), or, with nothing needed,
/// until the set of block devices is unchanged for 200 ms. Returns the time waited and the
/// paths still missing.
pub fn wait_for(needed: &[String], timeout: Duration) -> (Duration, Vec<String>) {
    let t = Instant::now();
    let mut last = block_names(Path::new("/sys"));
    let mut stable_since = Instant::now();
    loop {
        let missing: Vec<String> = needed
            .iter()
            .filter(|p| !Path::new(p).exists())
            .cloned()
            .collect();
        if !needed.is_empty() && missing.is_empty() {
            return (t.elapsed(), missing);
        }
        if needed.is_empty() && stable_since.elapsed() >= Duration::from_millis(200) {
            return (t.elapsed(), missing);
        }
        if t.elapsed() >= timeout {
            return (t.elapsed(), missing);
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = block_names(Path::new("/sys"));
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
}

/// Creates the by-* links for every block device and logs one line per whole disk.
pub fn create_disk_links(verbose: bool) -> usize {
    let infos = match devnames::read_block_infos(Path::new("/sys")) {
        Ok(i) => i,
        Err(e) => {
            log::warn!("reading /sys/class/block: {e}");
            return 0;
        }
    };
    let mut all = Vec::new();
    for info in &infos {
        let node = format!("/dev/{}", info.kname);
        let mut probe = match fs::File::open(&node) {
            Ok(mut f) => devnames::probe_fs(&mut f).unwrap_or_default(),
            Err(_) => Default::default(),
        };
        if let (Some(parent), Some(n)) = (&info.parent, info.partnum) {
            if let Ok(mut f) = fs::File::open(format!("/dev/{parent}")) {
                if let Ok(Some(parts)) = devnames::read_gpt(&mut f) {
                    if let Some(p) = parts.into_iter().find(|p| p.number == n) {
                        probe.part_uuid = Some(p.part_uuid);
                        probe.part_label = Some(p.part_label);
                    }
                }
            }
        }
        let links = devnames::link_names(info, &probe);
        if info.parent.is_none()
            && !info.kname.starts_with("loop")
            && !info.kname.starts_with("ram")
        {
            let level = if verbose {
                log::Level::Info
            } else {
                log::Level::Debug
            };
            let disk = devnames::identity::identify(Path::new("/sys"), info);
            log::log!(level, "disk {}", disk.describe());
        }
        all.extend(links);
    }
    match devnames::create_links(Path::new("/dev"), &all) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("creating /dev/disk links: {e}");
            0
        }
    }
}

/// The `devices` stage: waits for what the layout names, then creates the by-* links.
pub(super) fn stage(ctx: &mut super::Ctx) -> anyhow::Result<()> {
    let needed = ctx
        .layout()
        .map(super::disks::needed_paths)
        .unwrap_or_default();
    // by-id links are ours to create: make them first, then wait for what the config names.
    create_disk_links(false);
    let (waited, missing) = wait_for(&needed, ctx.params.timeout);
    ctx.devices_ms = waited.as_millis();
    for m in missing {
        log::warn!(
            "device {m} did not appear within {} s",
            ctx.params.timeout.as_secs()
        );
    }
    if let Some(scan) = ctx.driver_scan.take() {
        ctx.scan_ms = scan.join().unwrap_or_default();
        log::info!(
            "figures: missing-driver scan {} ms (beside the boot, lowest priority)",
            ctx.scan_ms
        );
    }
    let n = create_disk_links(true);
    log::info!(
        "devices: settled after {} ms; {n} /dev/disk links created",
        waited.as_millis()
    );
    Ok(())
}
