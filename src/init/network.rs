//! Network stage: plans the interfaces from `ip=`, the kept network, anemos.toml or the default
//! (see [`crate::net::plan_network`] and docs/network.md), brings them up
//! ([`crate::net::apply`]), then writes /etc/resolv.conf and /etc/hosts, which the install (it
//! runs in this root) uses.

use std::path::Path;

use anyhow::{Context, Result};

use crate::net::{apply, plan_network, KEPT_PATH};
use crate::net::{resolv_conf, Applied};

/// Writes /etc/resolv.conf and /etc/hosts.
pub fn write_resolver(a: &Applied, hostname: &str) -> Result<()> {
    let dns = &a.dns;
    std::fs::create_dir_all("/etc")?;
    std::fs::write("/etc/resolv.conf", resolv_conf(dns, &a.search))
        .context("writing /etc/resolv.conf")?;
    std::fs::write(
        "/etc/hosts",
        format!("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n"),
    )
    .context("writing /etc/hosts")?;
    log::info!(
        "network: /etc/resolv.conf with {} server(s), search {:?}",
        dns.len(),
        a.search
    );
    Ok(())
}

/// The `network` stage: interfaces planned from the parsed kernel parameters, the kept
/// network and anemos.toml, brought up, then the resolver files written.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(p) = &ctx.payload else { return Ok(()) };
    if let Some(e) = ctx.params.net_errors.first() {
        anyhow::bail!("{e}");
    }
    let ifaces = crate::net::list_ifaces(Path::new("/sys")).unwrap_or_default();
    let kept = match std::fs::read_to_string(KEPT_PATH) {
        Ok(text) => Some(
            crate::config::load_network(&text, KEPT_PATH).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        Err(_) => None,
    };
    let downloads = super::download::install_downloads(ctx);
    // Configured by nobody, wanted only so that a watcher can reach the ssh server: then a
    // network that does not come up (no DHCP server there) costs the watching, not the deploy.
    let only_for_watch = !downloads
        && ctx.params.ip.is_empty()
        && kept.as_ref().is_none_or(|k| k.interfaces.is_empty())
        && p.config.network.interfaces.is_empty();
    let plans = plan_network(
        &ctx.params.ip,
        &ctx.params.nameservers,
        kept.as_ref(),
        &p.config.network,
        &ifaces,
        downloads || super::sshd::requested(),
    )?;
    if plans.is_empty() {
        log::info!("network: not configured and not needed");
        return Ok(());
    }
    let applied = match apply(&plans, ctx.params.timeout) {
        Ok(a) => a,
        Err(e) if only_for_watch => {
            log::warn!("network: DHCP for the ssh server failed ({e:#}); the deploy goes on unwatched (give the deploy image a network with [network], ip= or anemos deploy --network keep)");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    ctx.network_up = true;
    write_resolver(&applied, p.config.hostname.as_deref().unwrap_or("anemos"))?;
    Ok(())
}
