//! Carrying out a network plan: sysctls, link up, carrier wait, DHCP, addresses, routes, the
//! IPv6 waits. Every interface's steps and timings are logged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::{IfacePlan, SRC_DEFAULT};
use super::{wait_dad, wait_slaac, Netlink, RouteOpts};

/// What the network stage configured: resolver servers and search domains.
#[derive(Debug, Default)]
pub struct Applied {
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// Brings the planned interfaces up. `default_wait` (`anemos.timeout`) bounds the link wait
/// and DHCP of interfaces without a `link_timeout`. With several DHCP candidates from the
/// default rule, the first lease wins.
pub fn apply(plans: &[IfacePlan], default_wait: Duration) -> Result<Applied> {
    let mut nl = Netlink::open().context("opening a netlink socket")?;
    let mut out = Applied::default();
    let mut errors = Vec::new();
    let default_rule = plans.iter().all(|p| p.source == SRC_DEFAULT);
    for (k, p) in plans.iter().enumerate() {
        match apply_one(&mut nl, p, default_wait, k) {
            Ok(a) => {
                out.dns.extend(a.dns);
                out.search.extend(a.search);
                if default_rule {
                    errors.clear();
                    break;
                }
            }
            Err(e) => errors.push(format!("{}: {e:#}", p.name)),
        }
    }
    if !errors.is_empty() {
        bail!("network did not come up: {}", errors.join("; "));
    }
    Ok(out)
}

/// Whether `gw` lies inside one of `addrs`' prefixes (else the route needs "onlink").
fn covered(addrs: &[(IpAddr, u8)], gw: IpAddr) -> bool {
    if let IpAddr::V6(g) = gw {
        if super::is_link_local6(&g) {
            return true; // always on the link
        }
    }
    let net_of = crate::config::network_of;
    addrs
        .iter()
        .any(|(a, p)| a.is_ipv4() == gw.is_ipv4() && net_of(*a, *p) == net_of(gw, *p))
}

/// How long to wait for the link (carrier) on `p`: its `link_timeout`, else `default`
/// (`anemos.timeout`).
fn link_timeout(p: &IfacePlan, default: Duration) -> Duration {
    p.link_timeout.unwrap_or(default)
}

/// How long DHCP may take to get a lease on `p`: the same bound as its link wait (its
/// `link_timeout`, else `anemos.timeout`), counted from when the link is up.
fn dhcp_timeout(p: &IfacePlan, default: Duration) -> Duration {
    link_timeout(p, default)
}

/// `k`: the interface's position in the plan; its routes get metric 100 + k, so several
/// interfaces with gateways do not collide and the first one listed is preferred.
fn apply_one(nl: &mut Netlink, p: &IfacePlan, default_wait: Duration, k: usize) -> Result<Applied> {
    let link_wait = link_timeout(p, default_wait);
    let t = Instant::now();
    let idx = nl.link_index(&p.name).context("no such interface")?;
    let wants_v6 = p.slaac
        || p.addrs.iter().any(|(a, _)| a.is_ipv6())
        || p.gateways.iter().any(|g| g.is_ipv6());
    if super::ipv6_available() {
        // Router advertisements only where SLAAC is declared: nothing undeclared appears.
        let v = if p.slaac { "1" } else { "0" };
        super::set_ipv6_conf(&p.name, "accept_ra", v)?;
        super::set_ipv6_conf(&p.name, "autoconf", v)?;
    } else if wants_v6 {
        bail!("IPv6 is configured but the kernel has no IPv6 (ipv6.disable=1 or not built in)");
    }
    nl.set_up(idx, p.mtu).context("setting the link up")?;
    let carrier = super::wait_link(Path::new("/sys"), &p.name, link_wait);
    log::info!(
        "network {}: link {} after {} ms ({})",
        p.name,
        if carrier { "up" } else { "NOT up" },
        t.elapsed().as_millis(),
        p.source
    );
    if !carrier {
        bail!("no link (carrier) within {} s", link_wait.as_secs());
    }
    let mut addrs = p.addrs.clone();
    let mut gateways = p.gateways.clone();
    let mut applied = Applied {
        dns: Vec::new(),
        search: p.search.clone(),
    };
    if p.dhcp {
        let t = Instant::now();
        let mac = super::read_mac(Path::new("/sys"), &p.name)?;
        let wait = dhcp_timeout(p, default_wait);
        let l = super::dhcp(&p.name, mac, super::new_xid(), wait)
            .map_err(|e| anyhow::anyhow!("DHCP got no lease: {e}"))?;
        log::info!(
            "network {}: DHCP lease {}/{} from {} in {} ms (router {:?}, dns {:?}, search {:?})",
            p.name,
            l.addr,
            l.prefix,
            l.server,
            t.elapsed().as_millis(),
            l.router,
            l.dns,
            l.search
        );
        addrs.insert(0, (IpAddr::V4(l.addr), l.prefix));
        if !gateways.iter().any(|g| g.is_ipv4()) {
            gateways.extend(l.router.map(IpAddr::V4));
        }
        applied.dns.extend(l.dns.iter().map(|a| IpAddr::V4(*a)));
        applied.search.extend(l.domain.clone());
        applied.search.extend(l.search.iter().cloned());
    }
    for (a, pfx) in &addrs {
        super::ok_if_exists(nl.add_addr(idx, *a, *pfx))
            .with_context(|| format!("adding {a}/{pfx}"))?;
        log::info!("network {}: address {a}/{pfx}", p.name);
    }
    // A static IPv6 address is usable once duplicate address detection passed.
    for (a, pfx) in &addrs {
        if let IpAddr::V6(a6) = a {
            wait_dad(&p.name, *a6, *pfx)?;
        }
    }
    let metric = 100 + k as u32;
    let opts = |gw: IpAddr| RouteOpts {
        metric: Some(metric),
        onlink: !covered(&addrs, gw),
    };
    let note = |gw: IpAddr| {
        if opts(gw).onlink {
            format!("metric {metric}, on-link: no address prefix covers it")
        } else {
            format!("metric {metric}")
        }
    };
    for g in &gateways {
        let any = if g.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        super::ok_if_exists(nl.add_route(idx, (any, 0), *g, opts(*g)))
            .with_context(|| format!("default route via {g}"))?;
        log::info!("network {}: default route via {g} ({})", p.name, note(*g));
    }
    for r in &p.routes {
        super::ok_if_exists(nl.add_route(idx, r.to, r.via, opts(r.via)))
            .with_context(|| format!("route {}/{} via {}", r.to.0, r.to.1, r.via))?;
        log::info!(
            "network {}: route {}/{} via {} ({})",
            p.name,
            r.to.0,
            r.to.1,
            r.via,
            note(r.via)
        );
    }
    if p.slaac {
        wait_slaac(&p.name, &addrs)?;
    }
    applied.dns.extend(p.dns.iter().copied());
    if !applied.dns.is_empty() {
        log::info!("network {}: DNS {:?}", p.name, applied.dns);
    }
    log::info!(
        "network {}: configured in {} ms",
        p.name,
        t.elapsed().as_millis()
    );
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_waits_as_long_as_the_link() {
        let mut p = IfacePlan::dhcp_on("eth0", SRC_DEFAULT);
        let d = Duration::from_secs(30);
        assert_eq!(
            dhcp_timeout(&p, d),
            d,
            "anemos.timeout when no link_timeout"
        );
        assert_eq!(
            dhcp_timeout(&p, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        p.link_timeout = Some(Duration::from_secs(90));
        assert_eq!(
            dhcp_timeout(&p, d),
            Duration::from_secs(90),
            "link_timeout wins"
        );
        assert_eq!(link_timeout(&p, d), Duration::from_secs(90));
    }

    #[test]
    fn onlink_only_when_no_prefix_covers_the_gateway() {
        let a = |s: &str, p: u8| (s.parse::<IpAddr>().unwrap(), p);
        let g = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(covered(&[a("10.0.2.15", 24)], g("10.0.2.2")));
        assert!(!covered(&[a("10.0.2.15", 24)], g("10.0.3.2")));
        // A /32 address (clouds): its gateway is never covered.
        assert!(!covered(&[a("203.0.113.7", 32)], g("172.31.1.1")));
        assert!(covered(&[a("2001:db8::5", 64)], g("2001:db8::1")));
        assert!(!covered(&[a("2001:db8::5", 64)], g("2001:db8:1::1")));
        assert!(
            covered(&[], g("fe80::1")),
            "link-local gateways are on the link"
        );
        assert!(!covered(&[a("10.0.2.15", 24)], g("2001:db8::1")));
        assert!(covered(&[a("10.0.0.1", 0)], g("192.0.2.1")));
    }
}
