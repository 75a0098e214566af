//! LUKS stage: makes the planned LUKS2 containers on the partitions or arrays just written and
//! opens them as /dev/mapper/NAME, with cryptsetup from the image's tools root. The choices
//! (argon2id with bounded memory, crypttab options) are explained in `crate::disk::luks`.
//!
//! The passphrase is a payload secret: cryptsetup reads it from /payload (tmpfs, RAM) itself,
//! so it is never copied, put on a command line or logged, and the install stage wipes it.
//! The opened containers are recorded in the context so that a failure closes them before the
//! arrays are stopped and the written disks' tables are cleared.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::blockdev::device as blockdev;
use crate::cmd;
use crate::disk::luks::{self, Backing, PlannedLuks};

const NOT_FOUND: &str = "cryptsetup not found in the image; pack it with `--binary /sbin/cryptsetup` (and `--module luks` for dm_crypt and its ciphers)";

fn cryptsetup() -> Result<String> {
    cmd::which("cryptsetup").ok_or_else(|| anyhow!(NOT_FOUND))
}

/// The passphrase file of `l` in the payload: its path and key-file arguments.
pub fn key_file(payload: &Path, l: &PlannedLuks) -> Result<(String, Vec<String>)> {
    let (shown, newline, len) = secret_file(payload, l, &l.passphrase, "passphrase")?;
    let args = luks::key_args(&shown, newline, len);
    Ok((shown, args))
}

/// A passphrase file of `l` in the payload: its path, whether it ends in a newline (which is
/// not part of the passphrase) and its length. The content is looked at only for its length and
/// its last byte.
fn secret_file(
    payload: &Path,
    l: &PlannedLuks,
    rel: &str,
    what: &str,
) -> Result<(String, bool, u64)> {
    let path = payload.join(rel);
    let shown = path.display().to_string();
    let mut f = fs::File::open(&path)
        .with_context(|| format!("LUKS volume {:?}: opening its {what} file {shown}", l.name))?;
    let len = f.seek(SeekFrom::End(0))?;
    let mut last = [0u8; 1];
    if len > 0 {
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
    }
    let newline = len > 0 && last[0] == b'\n';
    if len <= u64::from(newline) {
        bail!("LUKS volume {:?}: the {what} file {shown} is empty", l.name);
    }
    Ok((shown, newline, len))
}

/// The recovery passphrase file of `l`, when it has one: (path, ends in newline, length).
fn recovery_file(payload: &Path, l: &PlannedLuks) -> Result<Option<(String, bool, u64)>> {
    l.recovery
        .as_deref()
        .map(|r| secret_file(payload, l, r, "recovery passphrase"))
        .transpose()
}

/// The node the container is made on.
fn backing_node(l: &PlannedLuks) -> String {
    match &l.on {
        Backing::Partition {
            disk_path, number, ..
        } => blockdev::partition_node(disk_path, *number),
        Backing::Array(n) => {
            let dev = format!("/dev/md/{n}");
            fs::canonicalize(&dev)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or(dev)
        }
    }
}

/// Waits for /dev/mapper/NAME (libdevmapper makes the node itself when no udev runs).
fn wait_device(l: &PlannedLuks, timeout: Duration) -> Result<()> {
    let dev = l.device();
    let t = Instant::now();
    while !Path::new(&dev).exists() {
        if t.elapsed() > timeout {
            bail!(
                "{dev} did not appear within {} s after cryptsetup open",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Formats and opens every container; `opened(name)` is called as soon as one is open.
pub fn open_all(payload: &Path, all: &[PlannedLuks], mut opened: impl FnMut(&str)) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let prog = cryptsetup()?;
    // cryptsetup's lock directory; without it every command warns.
    let _ = fs::create_dir_all("/run/cryptsetup");
    for l in all {
        let node = backing_node(l);
        let (_, key) = key_file(payload, l)?;
        let args = luks::format_args(l, &node, &key);
        log::info!(
            "creating LUKS2 {} on {node}: {}",
            l.name,
            cmd::render(&prog, &args)
        );
        cmd::run(&prog, &args)
            .with_context(|| format!("creating the LUKS2 container {:?} on {node}", l.name))?;
        if let Some((file, newline, len)) = recovery_file(payload, l)? {
            let args = luks::add_key_args(l, &node, &key, &file, newline, len);
            log::info!(
                "adding the recovery keyslot to {}: {}",
                l.name,
                cmd::render(&prog, &args)
            );
            cmd::run(&prog, &args).with_context(|| {
                format!(
                    "adding the recovery keyslot to the LUKS2 container {:?}",
                    l.name
                )
            })?;
        }
        let args = luks::open_args(l, &node, &key);
        cmd::run(&prog, &args)
            .with_context(|| format!("opening the LUKS2 container {:?} on {node}", l.name))?;
        opened(&l.name);
        wait_device(l, Duration::from_secs(10))?;
        log::info!(
            "opened LUKS2 {} on {node} as {} (uuid {}, argon2id {} KiB)",
            l.name,
            l.device(),
            crate::util::uuid_string(&l.uuid),
            l.pbkdf_kib
        );
    }
    Ok(())
}

/// Closes the given containers, last opened first (after their filesystems were unmounted);
/// errors are logged.
pub fn close_all(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let Some(prog) = cmd::which("cryptsetup") else {
        log::error!("cannot close {}: cryptsetup not found", names.join(", "));
        return;
    };
    for name in names.iter().rev() {
        match cmd::run(&prog, &["close".to_string(), name.clone()]) {
            Ok(_) => log::info!("closed LUKS2 /dev/mapper/{name}"),
            Err(e) => log::error!("closing /dev/mapper/{name}: {e:#}"),
        }
    }
}

/// Writes the target's /etc/crypttab under `target`, keeping the lines of one the installed
/// system brought.
pub fn write_crypttab(target: &str, all: &[PlannedLuks]) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let dir = format!("{target}/etc");
    fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let path = format!("{dir}/crypttab");
    let existing = fs::read_to_string(&path).ok();
    fs::write(&path, luks::merge_crypttab(existing.as_deref(), all))
        .with_context(|| format!("writing {path}"))?;
    log::info!("wrote {path}");
    Ok(())
}

/// What the `check` stage verifies before the first write: cryptsetup in the tools root and
/// every passphrase file in the payload.
pub fn check(payload: &Path, all: &[PlannedLuks]) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let prog =
        cmd::which("cryptsetup").ok_or_else(|| anyhow!("{NOT_FOUND}; nothing was written"))?;
    for l in all {
        key_file(payload, l).map_err(|e| e.context("nothing was written"))?;
        recovery_file(payload, l).map_err(|e| e.context("nothing was written"))?;
    }
    log::info!(
        "check: {prog} is in the tools root and the passphrase of every LUKS volume is in the payload"
    );
    Ok(())
}

/// The `luks` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = ctx.plan.clone() else {
        return Ok(());
    };
    let list = &mut ctx.luks;
    open_all(Path::new(super::install::PAYLOAD), &p.luks, |n| {
        list.push(n.to_string())
    })
}
