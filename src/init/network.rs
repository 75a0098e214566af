//! Network stage: plans the interfaces from `ip=`, the kept network, anemos.toml or the default
//! (see [`crate::net::plan_network`] and docs/network.md), brings them up
//! ([`crate::net::apply`]), then writes /etc/resolv.conf and /etc/hosts, which the install (it
//! runs in this root) uses.

use anyhow::{Context, Result};

pub use crate::net::{apply, plan_network, KEPT_PATH};
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
