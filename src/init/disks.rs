//! Disks stage: plan, verify, partition, mkfs, mount — the destructive heart.
//!
//! Safety checks, all before the first write: every `[[disk]]` matches exactly one disk; the
//! layout fits; no target disk has a mounted, swap or held partition; each target is opened
//! with O_EXCL and flock(LOCK_EX). The plan is printed before anything is written. Preserved
//! disks are never opened for writing. Write order per disk: wipe old signatures at both ends,
//! write the new table, fsync, re-read it (BLKRRPART), compare with the plan, wait for the
//! partition nodes, then create filesystems. If anything fails after the first write the runner
//! clears the written tables (see [`clear_tables`]) unless `anemos.keep_on_failure` is set.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::blockdev::{device as blockdev, identity};
use crate::config::layout::Layout;
use crate::disk::plan::{self, DiskAction, Plan};
use crate::disk::{fstab, gpt, guard, mkfs};

/// Where the target tree is mounted.
pub const TARGET: &str = "/run/anemos/target";

/// Device paths the layout names directly, to wait for before planning.
pub fn needed_paths(layout: &Layout) -> Vec<String> {
    let mut v = Vec::new();
    for d in &layout.disks {
        if let Some(id) = &d.matcher.by_id {
            v.push(format!("/dev/disk/by-id/{id}"));
        }
        if let Some(p) = &d.matcher.path {
            v.push(p.clone());
        }
    }
    v
}

/// Plans against the disks present and prints the plan. No writes.
pub fn plan_stage(layout: &Layout) -> Result<Plan> {
    let disks = identity::disks_from_sysfs(Path::new("/sys"), Path::new("/dev"))?;
    let p = plan::plan(layout, &disks)?;
    for line in plan::render(&p).lines() {
        log::info!("plan: {line}");
    }
    Ok(p)
}

/// Refuses busy targets, listing every reason.
pub fn verify_stage(p: &Plan) -> Result<()> {
    let mut problems = Vec::new();
    for d in &p.disks {
        if let DiskAction::Repartition { .. } = d.action {
            let k = d.disk.path.trim_start_matches("/dev/");
            let b = guard::check_disk(k);
            if !b.reasons.is_empty() {
                problems.push(format!(
                    "refusing to partition {} (disk \"{}\"): {}",
                    d.disk.path,
                    d.name,
                    b.reasons.join("; ")
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

/// Partitions every target. Calls `started(path)` just before the first write to each disk.
pub fn partition_stage(p: &Plan, mut started: impl FnMut(&str)) -> Result<()> {
    for d in &p.disks {
        let DiskAction::Repartition {
            disk_guid, parts, ..
        } = &d.action
        else {
            log::info!(
                "disk \"{}\" ({}): preserved, not opened for writing",
                d.name,
                d.disk.path
            );
            continue;
        };
        let path = &d.disk.path;
        let ex = blockdev::open_exclusive(path)?;
        let mut f = ex
            .file
            .try_clone()
            .context("duplicating the device handle")?;
        log::info!(
            "partitioning {path} (disk \"{}\"): {} partitions, {}-byte sectors",
            d.name,
            parts.len(),
            d.disk.sector_size
        );
        started(path);
        gpt::wipe_signatures(&mut f, path, d.disk.size_bytes)?;
        let f = gpt::write_table(
            f,
            path,
            d.disk.sector_size,
            d.disk.sectors(),
            *disk_guid,
            parts,
        )?;
        f.sync_all().with_context(|| format!("syncing {path}"))?;
        blockdev::reread_partitions(&f, path)?;
        let dup = f.try_clone().context("duplicating the device handle")?;
        let (_, read) = gpt::read_table(dup, d.disk.sector_size)
            .with_context(|| format!("{path}: reading back the table just written"))?;
        let want: Vec<(u64, u64, [u8; 16])> = parts
            .iter()
            .map(|p| (p.first_lba, p.last_lba, p.part_uuid))
            .collect();
        let got: Vec<(u64, u64, [u8; 16])> = read
            .iter()
            .map(|r| (r.first_lba, r.last_lba, r.part_uuid))
            .collect();
        if want != got {
            bail!("{path}: the table read back differs from the plan (wanted {want:?}, found {got:?})");
        }
        blockdev::wait_partition_nodes(path, parts.len() as u32, Duration::from_secs(10))?;
        drop(f);
        drop(ex);
    }
    Ok(())
}

/// Creates every planned filesystem.
pub fn mkfs_stage(p: &Plan) -> Result<()> {
    for d in &p.disks {
        let DiskAction::Repartition { parts, .. } = &d.action else {
            continue;
        };
        for part in parts {
            let Some(fs) = part.fs else { continue };
            let node = blockdev::partition_node(&d.disk.path, part.number);
            let len = part.sectors() * d.disk.sector_size;
            let uuid = part
                .fs_uuid
                .map(|u| mkfs::display_uuid(fs, &u))
                .unwrap_or_default();
            log::info!(
                "creating {} on {node} (label {}, uuid {uuid}, {})",
                fs.name(),
                part.fs_label.as_deref().unwrap_or("-"),
                crate::util::human(len)
            );
            mkfs::make(part, &node, len, part.first_lba, d.disk.sector_size)
                .with_context(|| format!("creating {} on {node}", fs.name()))?;
        }
    }
    for a in &p.arrays {
        let Some(fs) = a.fs else { continue };
        let dev = a.device();
        let len = super::arrays::device_size(&dev)?;
        log::info!(
            "creating {} on {dev} (label {}, uuid {}, {})",
            fs.name(),
            a.fs_label.as_deref().unwrap_or("-"),
            a.fs_uuid
                .map(|u| mkfs::display_uuid(fs, &u))
                .unwrap_or_default(),
            crate::util::human(len)
        );
        let sector = crate::blockdev::sysfs::logical_sector_size(&dev);
        mkfs::make(&a.as_part(), &dev, len, 0, sector)
            .with_context(|| format!("creating {} on {dev}", fs.name()))?;
    }
    for l in &p.luks {
        let Some(fs) = l.fs else { continue };
        let dev = l.device();
        let len = super::arrays::device_size(&dev)?;
        log::info!(
            "creating {} on {dev} (label {}, uuid {}, {})",
            fs.name(),
            l.fs_label.as_deref().unwrap_or("-"),
            l.fs_uuid
                .map(|u| mkfs::display_uuid(fs, &u))
                .unwrap_or_default(),
            crate::util::human(len)
        );
        mkfs::make(
            &l.as_part(),
            &dev,
            len,
            0,
            crate::blockdev::sysfs::logical_sector_size(&dev),
        )
        .with_context(|| format!("creating {} on {dev}", fs.name()))?;
    }
    Ok(())
}

/// Mounts the target tree under [`TARGET`] (parents first) and writes its fstab.
/// Returns the mount points, for unmounting in reverse.
pub fn mount_stage(p: &Plan) -> Result<Vec<String>> {
    let mut mounted = Vec::new();
    fs::create_dir_all(TARGET).with_context(|| format!("creating {TARGET}"))?;
    for m in fstab::target_mounts(p) {
        let node = m
            .device
            .clone()
            .unwrap_or_else(|| blockdev::partition_node(&m.disk_path, m.number));
        let dst = format!(
            "{TARGET}{}",
            if m.mount == "/" { "" } else { m.mount.as_str() }
        );
        fs::create_dir_all(&dst).with_context(|| format!("creating {dst}"))?;
        super::mountfail::mount(m.fs, &node, &dst)?;
        log::info!("mounted {node} on {dst}");
        mounted.push(dst);
    }
    for d in &p.disks {
        for m in d.spec.mounts.iter().filter(|m| m.mount_during_install) {
            let src = format!("/dev/disk/by-label/{}", m.label);
            let dst = format!("{TARGET}{}", m.mount);
            fs::create_dir_all(&dst).with_context(|| format!("creating {dst}"))?;
            rustix::mount::mount(
                src.as_str(),
                dst.as_str(),
                "ext4",
                rustix::mount::MountFlags::RDONLY,
                None,
            )
            .or_else(|_| {
                rustix::mount::mount(
                    src.as_str(),
                    dst.as_str(),
                    "xfs",
                    rustix::mount::MountFlags::RDONLY,
                    None,
                )
            })
            .with_context(|| format!("mounting preserved {src} read-only on {dst}"))?;
            log::info!("mounted preserved {src} read-only on {dst}");
            mounted.push(dst);
        }
    }
    let etc = format!("{TARGET}/etc");
    fs::create_dir_all(&etc)?;
    fs::write(format!("{etc}/fstab"), fstab::render(p))
        .with_context(|| format!("writing {etc}/fstab"))?;
    log::info!("wrote {etc}/fstab");
    super::arrays::write_conf(TARGET, &p.arrays)?;
    super::luks::write_crypttab(TARGET, &p.luks)?;
    Ok(mounted)
}

/// Failure cleanup: unmount the target, close the LUKS containers, stop the arrays created (they hold the partitions) and
/// zero both ends of every disk we started writing, so a half-done disk never boots stale data.
pub fn clear_tables(written: &[(String, u64)], arrays: &[String], luks: &[String]) {
    crate::init::pid1::unmount_all();
    super::luks::close_all(luks);
    super::arrays::stop_all(arrays);
    for (path, size) in written {
        match fs::OpenOptions::new().read(true).write(true).open(path) {
            Ok(mut f) => match gpt::wipe_signatures(&mut f, path, *size) {
                Ok(()) => {
                    let _ = f.sync_all();
                    let _ = blockdev::reread_partitions(&f, path);
                    log::warn!("cleared the partition table of {path} (the deploy failed after writing it)");
                }
                Err(e) => log::error!("clearing {path}: {e:#}"),
            },
            Err(e) => log::error!("opening {path} to clear its table: {e}"),
        }
    }
}

/// The `plan` stage.
pub(super) fn stage_plan(ctx: &mut super::Ctx) -> Result<()> {
    let Some(l) = ctx.layout() else {
        log::info!("anemos.toml has no [[disk]]: no disk will be touched");
        return Ok(());
    };
    let p = plan_stage(l)?;
    if let Some(payload) = &ctx.payload {
        for line in super::grub::describe(&payload.config.bootloader, &p) {
            log::info!("plan: {line}");
        }
    }
    ctx.plan = Some(p);
    Ok(())
}

/// The `verify` stage.
pub(super) fn stage_verify(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = &ctx.plan else { return Ok(()) };
    verify_stage(p)?;
    super::arrays::preflight(&p.arrays)?;
    log::info!("verify: every target disk is free (nothing mounted, no swap, no holders)");
    if ctx.params.dry_run {
        log::info!("dry run (anemos.dry_run): stopping before the first write; the plan above is what a real run would do");
    }
    Ok(())
}

/// The `partition` stage.
pub(super) fn stage_partition(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = ctx.plan.clone() else {
        return Ok(());
    };
    let sizes: Vec<(String, u64)> = p
        .disks
        .iter()
        .map(|d| (d.disk.path.clone(), d.disk.size_bytes))
        .collect();
    let written = &mut ctx.written;
    let destructive = &mut ctx.destructive_started;
    partition_stage(&p, |path| {
        *destructive = true;
        if let Some(s) = sizes.iter().find(|(d, _)| d == path) {
            if !written.iter().any(|(d, _)| d == path) {
                written.push(s.clone());
            }
        }
    })?;
    // The new partitions need their by-partuuid/by-label links.
    super::devices::create_disk_links(false);
    Ok(())
}

/// The `mkfs` stage.
pub(super) fn stage_mkfs(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = &ctx.plan else { return Ok(()) };
    mkfs_stage(p)?;
    super::devices::create_disk_links(false);
    Ok(())
}

/// The `mount` stage.
pub(super) fn stage_mount(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = &ctx.plan else { return Ok(()) };
    mount_stage(p)?;
    Ok(())
}
