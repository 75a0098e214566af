//! Arrays stage: creates the planned md arrays over the partitions just written, with mdadm
//! from the image's tools root. The choices (metadata 1.2, homehost any, background resync,
//! internal bitmap) are explained in `crate::disk::md`.
//!
//! Before an array is created, old signatures at both ends of every member are zeroed: an md
//! superblock of an earlier deploy (1.1/1.2 near the start, 0.90/1.0 at the end), or a
//! filesystem, would otherwise make mdadm ask whether to continue, or an old array's
//! superblock would survive next to the new one. The created arrays are recorded in the
//! context so that a failure stops them before the written disks' tables are cleared.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::blockdev::device as blockdev;
use crate::cmd;
use crate::disk::md::{self, PlannedArray};
use crate::disk::plan::MIB;

/// Zeroes the first and last MiB of a member partition of `len` bytes.
fn zero_ends(node: &str, len: u64) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(node)
        .with_context(|| format!("opening {node} to wipe old signatures"))?;
    let zeros = vec![0u8; MIB as usize];
    let n = MIB.min(len);
    for at in [0, len.saturating_sub(n)] {
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&zeros[..n as usize])
            .with_context(|| format!("wiping old signatures on {node}"))?;
    }
    f.sync_all()
        .with_context(|| format!("syncing {node} after the wipe"))?;
    Ok(())
}

fn mdadm() -> Result<String> {
    cmd::which("mdadm").ok_or_else(|| {
        anyhow!("mdadm not found in the image; pack it with `--binary /sbin/mdadm` (and `--module md` for the md kernel modules)")
    })
}

/// Waits for /dev/md/NAME (mdadm makes the link itself when no udev runs).
fn wait_device(a: &PlannedArray, timeout: Duration) -> Result<String> {
    let dev = a.device();
    let t = Instant::now();
    loop {
        if let Ok(real) = fs::canonicalize(&dev) {
            return Ok(real.to_string_lossy().into_owned());
        }
        if t.elapsed() > timeout {
            return Err(anyhow!(
                "{dev} did not appear within {} s after mdadm --create",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pure: the RAID levels whose personality the kernel lacks, from /proc/mdstat's
/// `Personalities : [raid1] [raid10]` line.
pub fn missing_personalities(mdstat: &str, levels: &[u32]) -> Vec<u32> {
    let line = mdstat
        .lines()
        .find(|l| l.starts_with("Personalities"))
        .unwrap_or("");
    let mut v: Vec<u32> = levels
        .iter()
        .copied()
        .filter(|l| !line.contains(&format!("[raid{l}]")))
        .collect();
    v.dedup();
    v
}

/// Checks, before anything is written, that the arrays can be created: mdadm in the image and
/// the md driver with each level's personality loaded (the init loads every packed module;
/// nothing loads one on demand).
pub fn preflight(arrays: &[PlannedArray]) -> Result<()> {
    if arrays.is_empty() {
        return Ok(());
    }
    mdadm()?;
    let Ok(stat) = fs::read_to_string("/proc/mdstat") else {
        return Err(anyhow!(
            "the kernel has no md driver (/proc/mdstat is missing); pack with `--module md` (md_mod, raid1)"
        ));
    };
    let levels: Vec<u32> = arrays.iter().map(|a| a.level).collect();
    let missing = missing_personalities(&stat, &levels);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|l| format!("raid{l}")).collect();
        return Err(anyhow!(
            "the kernel's md driver lacks {} (not loaded); pack with `--module md`",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Creates every array; `created(device)` is called as soon as one exists.
pub fn create_all(arrays: &[PlannedArray], mut created: impl FnMut(&str)) -> Result<()> {
    if arrays.is_empty() {
        return Ok(());
    }
    let prog = mdadm()?;
    for a in arrays {
        let nodes: Vec<String> = a
            .members
            .iter()
            .map(|m| blockdev::partition_node(&m.disk_path, m.number))
            .collect();
        for (m, node) in a.members.iter().zip(&nodes) {
            zero_ends(node, m.bytes)?;
        }
        log::info!(
            "wiped old signatures on {} (both ends of each member)",
            nodes.join(", ")
        );
        let args = md::create_args(a, &nodes);
        log::info!("creating array {}: {}", a.name, cmd::render(&prog, &args));
        fs::create_dir_all("/dev/md").context("creating /dev/md")?;
        cmd::run(&prog, &args).with_context(|| format!("creating array {}", a.device()))?;
        created(&a.device());
        let real = wait_device(a, Duration::from_secs(10))?;
        log::info!(
            "created array {} ({real}): RAID{} over {}, uuid {}; the initial resync runs in the background",
            a.device(),
            a.level,
            nodes.join(", "),
            md::mdadm_uuid(&a.uuid)
        );
    }
    if let Ok(stat) = fs::read_to_string("/proc/mdstat") {
        for l in stat.lines().filter(|l| !l.trim().is_empty()) {
            log::info!("mdstat: {l}");
        }
    }
    Ok(())
}

/// Stops the given arrays (after their filesystems were unmounted); errors are logged.
pub fn stop_all(devices: &[String]) {
    if devices.is_empty() {
        return;
    }
    let Some(prog) = cmd::which("mdadm") else {
        log::error!("cannot stop {}: mdadm not found", devices.join(", "));
        return;
    };
    for dev in devices {
        match cmd::run(&prog, &["--stop".to_string(), dev.clone()]) {
            Ok(_) => log::info!("stopped array {dev}"),
            Err(e) => log::error!("stopping array {dev}: {e:#}"),
        }
    }
}

/// The size of a block device in bytes.
pub fn device_size(dev: &str) -> Result<u64> {
    let mut f = fs::File::open(dev).with_context(|| format!("opening {dev}"))?;
    f.seek(SeekFrom::End(0))
        .with_context(|| format!("reading the size of {dev}"))
}

/// Writes the target's /etc/mdadm/mdadm.conf under `target`, keeping the settings of one the
/// installed system brought.
pub fn write_conf(target: &str, arrays: &[PlannedArray]) -> Result<()> {
    if arrays.is_empty() {
        return Ok(());
    }
    let dir = format!("{target}/etc/mdadm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let path = format!("{dir}/mdadm.conf");
    let existing = fs::read_to_string(&path).ok();
    fs::write(&path, md::merge_conf(existing.as_deref(), arrays))
        .with_context(|| format!("writing {path}"))?;
    log::info!("wrote {path}");
    Ok(())
}

/// The `arrays` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = ctx.plan.clone() else {
        return Ok(());
    };
    if p.arrays.is_empty() {
        return Ok(());
    }
    let list = &mut ctx.arrays;
    create_all(&p.arrays, |dev| list.push(dev.to_string()))?;
    // Filesystems on the arrays get their by-uuid/by-label links after mkfs.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personalities_from_mdstat() {
        let stat = "Personalities : [raid0] [raid1] [raid10] \nunused devices: <none>\n";
        assert!(missing_personalities(stat, &[1, 1]).is_empty());
        assert_eq!(missing_personalities(stat, &[1, 5]), [5]);
        let none = "Personalities : \nunused devices: <none>\n";
        assert_eq!(missing_personalities(none, &[1, 1]), [1]);
    }
}
