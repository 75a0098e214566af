//! The failure report in an EFI variable: after a failed stage the init leaves what failed in
//! the firmware's variable store, where `anemos report` on the system that boots next finds it.
//! It reaches the operator even when the deploy image had no network, and writes no disk.
//!
//! Best effort only: every problem (no EFI, no efivarfs, a full store, a firmware that loses
//! the write) is logged in one line and the init goes on into its failure policy. The write
//! runs on a thread of its own with a time limit, so a firmware call that hangs cannot hold
//! the init.

use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Ctx;
use crate::efivar::{self, FAILURE_VAR};
use crate::failreport::{self, FailureReport};

/// How long the init waits for the firmware to store the report.
const WRITE_LIMIT: Duration = Duration::from_secs(10);
/// Log lines offered to the report (the encoder keeps the newest that fit).
const LOG_LINES: usize = 30;

/// Builds the report of a failure in `stage`.
pub fn build(ctx: &Ctx, stage: &str, e: &anyhow::Error) -> FailureReport {
    FailureReport {
        deploy_id: ctx.params.deploy_id.clone(),
        stage: stage.to_string(),
        error: e.chain().map(|c| c.to_string()).collect(),
        disks_written: ctx.destructive_started,
        log_tail: super::logger::tail(LOG_LINES),
        time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        omitted: 0,
    }
}

/// Stores the report of a failure in `stage` in the EFI variable, logging the outcome. Skipped
/// in dry runs (nothing is deployed, so nothing is reported to the next boot).
pub fn store(ctx: &Ctx, stage: &str, e: &anyhow::Error) {
    if ctx.params.dry_run {
        return;
    }
    let data = failreport::encode(&build(ctx, stage, e));
    let var = efivar::var_file(FAILURE_VAR);
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("efi-report".into())
        .spawn(move || {
            let r = match efivar::ensure_mounted(false) {
                Err(u) => Err(u.to_string()),
                Ok(()) => efivar::write(FAILURE_VAR, &data).map_err(|w| w.to_string()),
            };
            let _ = tx.send(r);
        });
    if let Err(err) = spawned {
        log::warn!("failure report not stored: cannot start a thread: {err}");
        return;
    }
    match rx.recv_timeout(WRITE_LIMIT) {
        Ok(Ok(n)) => log::info!("failure report stored in EFI variable {var} ({n} bytes)"),
        Ok(Err(why)) => log::warn!("failure report not stored in EFI variable {var}: {why}"),
        Err(mpsc::RecvTimeoutError::Timeout) => log::warn!(
            "failure report not stored in EFI variable {var}: the firmware did not answer within {} s",
            WRITE_LIMIT.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            log::warn!("failure report not stored in EFI variable {var}: the writer panicked")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(params: &str, destructive: bool) -> Ctx {
        Ctx {
            params: super::super::cmdline::parse(params),
            payload: None,
            destructive_started: destructive,
            modules_ms: 0,
            devices_ms: 0,
            scan_ms: 0,
            driver_scan: None,
            plan: None,
            written: Vec::new(),
            arrays: Vec::new(),
            entry: None,
            fetched: None,
            imgbuild: None,
            network_up: false,
            sshd_up: false,
            timings: Vec::new(),
        }
    }

    #[test]
    fn report_carries_deploy_id_stage_error_chain_and_disk_state() {
        let e = anyhow::anyhow!("no disk").context("disk \"system\"");
        let c = ctx("anemos.deploy_id=anemos-1-ab12", true);
        let r = build(&c, "plan", &e);
        assert_eq!(r.deploy_id.as_deref(), Some("anemos-1-ab12"));
        assert_eq!(r.stage, "plan");
        assert_eq!(r.error, ["disk \"system\"", "no disk"]);
        assert!(r.disks_written);
        assert!(r.time > 1_600_000_000);
        assert_eq!(failreport::decode(&failreport::encode(&r)).unwrap(), r);
        let r = build(&ctx("", false), "devices", &e);
        assert_eq!(r.deploy_id, None);
        assert!(!r.disks_written);
    }
}
