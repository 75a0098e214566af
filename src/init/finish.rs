//! The `finish` stage: the deploy report, then power off, reboot or kexec as configured.

use std::path::Path;

use anyhow::{Context, Result};

use super::pid1::{self, PowerRequest};
use super::{disks, logger, Ctx};

/// Writes the deploy report into the target's /var/log/anemos/ (never secrets: they are
/// never logged).
fn write_report(ctx: &Ctx) {
    let dir = format!("{}/var/log/anemos", disks::TARGET);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut r = format!(
        "anemos deploy report
{}

",
        crate::version::banner()
    );
    if let Some(id) = &ctx.params.deploy_id {
        r.push_str(&format!("deploy id: {id}\n\n"));
        // Its own file too: `anemos deploy` reads it to know the deployed system answers.
        let f = format!("{}/{}", disks::TARGET, crate::deploy_id::FILE);
        match std::fs::write(&f, format!("{id}\n")) {
            Ok(()) => log::info!("wrote {f}: {id}"),
            Err(e) => log::warn!("writing {f}: {e}"),
        }
    }
    if let Some(p) = &ctx.plan {
        r.push_str("plan:\n");
        r.push_str(&crate::disk::plan::render(p));
    }
    r.push_str("\nstage timings (ms):\n");
    for (s, ms) in &ctx.timings {
        r.push_str(&format!("  {s:<12} {ms}\n"));
    }
    if let Some(e) = &ctx.entry {
        r.push_str(&format!(
            "\nboot entry: {} (options {})\n",
            e.entry_path.display(),
            e.options
        ));
    }
    r.push_str("\nlog:\n");
    r.push_str(&std::fs::read_to_string("/run/anemos/log").unwrap_or_default());
    match std::fs::write(format!("{dir}/deploy-report.txt"), r) {
        Ok(()) => log::info!("wrote {dir}/deploy-report.txt"),
        Err(e) => log::warn!("writing the deploy report: {e}"),
    }
}

/// The `finish` stage.
pub(super) fn stage(ctx: &mut Ctx) -> Result<()> {
    let finish = ctx
        .payload
        .as_ref()
        .map(|p| p.config.deploy.finish)
        .unwrap_or_default();
    if ctx.plan.is_none() {
        log::info!("nothing was deployed (no [[disk]]); powering off");
        pid1::power(PowerRequest::Poweroff)
    }
    write_report(ctx);
    let per: Vec<String> = ctx
        .timings
        .iter()
        .map(|(s, ms)| format!("{s} {ms}"))
        .collect();
    log::info!("figures: stage timings (ms): {}", per.join(", "));
    log::info!("deploy finished in {} ms", logger::elapsed_ms());
    if ctx.sshd_up {
        crate::remote::state::write(&crate::remote::state::State {
            deploy_id: ctx.params.deploy_id.clone(),
            stage: "finish".into(),
            status: "done".into(),
            next: format!("{finish:?}").to_lowercase(),
            ..Default::default()
        });
        // A watcher polls every 200 ms: let it read the end before the network goes.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    if (!ctx.arrays.is_empty() || !ctx.luks.is_empty()) && finish != crate::config::Finish::Kexec {
        // Stopped cleanly, an array records how far its initial resync got; the installed
        // system resumes it from there.
        pid1::unmount_all();
        super::luks::close_all(&ctx.luks);
        super::arrays::stop_all(&ctx.arrays);
    }
    match finish {
        crate::config::Finish::Poweroff => pid1::power(PowerRequest::Poweroff),
        crate::config::Finish::Reboot => {
            log::info!("rebooting into the installed system");
            pid1::power(PowerRequest::Reboot)
        }
        crate::config::Finish::Kexec => {
            let e = ctx
                .entry
                .clone()
                .ok_or_else(|| anyhow::anyhow!("finish = \"kexec\" needs the kernel found by the bootloader setup (systemd-boot or grub)"))?;
            // Copy kernel and initrd to RAM first: the target is unmounted before the jump.
            std::fs::create_dir_all("/run/anemos/kexec")?;
            let k = Path::new("/run/anemos/kexec/kernel");
            std::fs::copy(&e.kernel, k).context("copying the kernel to /run")?;
            let i = match e.initrd.first() {
                Some(src) => {
                    let p = Path::new("/run/anemos/kexec/initrd");
                    std::fs::copy(src, p).context("copying the initrd to /run")?;
                    Some(p)
                }
                None => None,
            };
            let cmdline = e.options.clone();
            pid1::unmount_all();
            super::luks::close_all(&ctx.luks);
            super::arrays::stop_all(&ctx.arrays);
            crate::kexec::load(k, i, &cmdline)?;
            log::info!("kexec into {} with {cmdline}", e.kernel.display());
            crate::kexec::exec()?;
            anyhow::bail!("kexec returned")
        }
    }
}
