//! Network stage: bring interfaces up from, in this precedence (docs/network.md):
//! 1. `ip=` on the kernel command line (the operator's override for this boot),
//! 2. what `anemos kexec --network keep` captured on the old system (/etc/anemos/network-kept.toml
//!    in the image; interfaces matched by MAC),
//! 3. `[[network.interface]]` in anemos.toml,
//! 4. if the install needs the network (rootfs by URL) and nothing is configured: DHCP on each
//!    interface in turn until one gets a lease.
//!
//! `nameserver=` on the command line adds DNS servers in every case. Then /etc/resolv.conf and
//! /etc/hosts are written (visible to the install, which runs in this root).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::{Interface, Network, Route};
use crate::net::{self, Iface, IpParam};

/// What to do on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfacePlan {
    pub name: String,
    /// DHCPv4.
    pub dhcp: bool,
    /// IPv6 SLAAC (router advertisements); off otherwise, so no address appears undeclared.
    pub slaac: bool,
    pub addrs: Vec<(IpAddr, u8)>,
    /// Default routes, at most one per family.
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<Route>,
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
    pub mtu: Option<u32>,
    /// Carrier wait; `None`: the caller's default (`anemos.timeout`).
    pub link_timeout: Option<Duration>,
    pub source: &'static str,
}

impl IfacePlan {
    /// Nothing configured yet on `name`.
    fn new(name: &str, source: &'static str) -> IfacePlan {
        IfacePlan {
            name: name.into(),
            dhcp: false,
            slaac: false,
            addrs: vec![],
            gateways: vec![],
            routes: vec![],
            dns: vec![],
            search: vec![],
            mtu: None,
            link_timeout: None,
            source,
        }
    }

    fn dhcp_on(name: &str, source: &'static str) -> IfacePlan {
        IfacePlan {
            dhcp: true,
            ..IfacePlan::new(name, source)
        }
    }
}

/// What the network stage configured: resolver servers and search domains.
#[derive(Debug, Default)]
pub struct Applied {
    pub dns: Vec<IpAddr>,
    pub search: Vec<String>,
}

pub use crate::net::KEPT_PATH;

pub const SRC_CMDLINE: &str = "kernel command line ip=";
pub const SRC_KEPT: &str = "kept from the old system (anemos kexec --network keep)";
pub const SRC_CONFIG: &str = "anemos.toml [[network.interface]]";
pub const SRC_DEFAULT: &str = "default: DHCP (the install downloads its rootfs)";

fn iface_matches(m: &crate::config::InterfaceMatch, i: &Iface) -> bool {
    let name = m
        .name
        .as_ref()
        .map(|n| crate::util::fnmatch(n, &i.name))
        .unwrap_or(true);
    let mac = m
        .mac
        .map(|mac| {
            let s: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            s.join(":").eq_ignore_ascii_case(&i.mac)
        })
        .unwrap_or(true);
    let drv = m
        .driver
        .as_ref()
        .map(|d| i.driver.as_deref() == Some(d.as_str()))
        .unwrap_or(true);
    name && mac && drv
}

fn from_config(c: &Interface, name: &str, source: &'static str) -> IfacePlan {
    IfacePlan {
        name: name.into(),
        dhcp: c.dhcp,
        slaac: c.slaac,
        addrs: c.addresses.clone(),
        gateways: c.gateways.clone(),
        routes: c.routes.clone(),
        dns: c.dns.clone(),
        search: c.search.clone(),
        mtu: c.mtu,
        link_timeout: c.link_timeout.map(Duration::from_secs),
        source,
    }
}

fn from_section(
    cfg: &Network,
    section: &str,
    source: &'static str,
    ifaces: &[Iface],
) -> Result<Vec<IfacePlan>> {
    let mut out: Vec<IfacePlan> = Vec::new();
    for (k, c) in cfg.interfaces.iter().enumerate() {
        let i = ifaces
            .iter()
            .find(|i| iface_matches(&c.matcher, i))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{section}[{k}]: no interface matches {} (interfaces: {})",
                    describe_match(&c.matcher),
                    list(ifaces)
                )
            })?;
        if out.iter().any(|p| p.name == i.name) {
            bail!(
                "{section}[{k}]: {} is already configured by an earlier entry",
                i.name
            );
        }
        out.push(from_config(c, &i.name, source));
    }
    Ok(out)
}

fn describe_match(m: &crate::config::InterfaceMatch) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &m.name {
        parts.push(format!("name {n:?}"));
    }
    if let Some(mac) = m.mac {
        let s: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        parts.push(format!("mac {}", s.join(":")));
    }
    if let Some(d) = &m.driver {
        parts.push(format!("driver {d:?}"));
    }
    parts.join(", ")
}

/// Pure: the interface plans for this boot. Precedence (docs/network.md): `ip=` on the kernel
/// command line, then what `anemos kexec --network keep` captured, then anemos.toml, then DHCP
/// on every interface when the install needs the network.
pub fn plan_network(
    ip: &[IpParam],
    nameservers: &[IpAddr],
    kept: Option<&Network>,
    cfg: &Network,
    ifaces: &[Iface],
    need: bool,
) -> Result<Vec<IfacePlan>> {
    let mut out = Vec::new();
    if ip.contains(&IpParam::Off) {
        return Ok(out);
    }
    if !ip.is_empty() {
        for p in ip {
            match p {
                IpParam::Off => {}
                IpParam::Dhcp { device } => {
                    let names: Vec<&Iface> = ifaces
                        .iter()
                        .filter(|i| device.as_ref().map(|d| d == &i.name).unwrap_or(true))
                        .collect();
                    if names.is_empty() {
                        bail!(
                            "ip=: interface {:?} does not exist (interfaces: {})",
                            device,
                            list(ifaces)
                        );
                    }
                    for i in names {
                        out.push(IfacePlan::dhcp_on(&i.name, SRC_CMDLINE));
                    }
                }
                IpParam::Static {
                    addr,
                    prefix,
                    gateway,
                    device,
                    dns,
                    ..
                } => {
                    let i = match device {
                        Some(d) => ifaces.iter().find(|i| &i.name == d),
                        None => ifaces.first(),
                    }
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "ip=: interface {:?} does not exist (interfaces: {})",
                            device,
                            list(ifaces)
                        )
                    })?;
                    let mut p = IfacePlan::new(&i.name, SRC_CMDLINE);
                    p.addrs = vec![(IpAddr::V4(*addr), *prefix)];
                    p.gateways = gateway.iter().map(|g| IpAddr::V4(*g)).collect();
                    p.dns = dns.iter().map(|d| IpAddr::V4(*d)).collect();
                    out.push(p);
                }
            }
        }
    } else if let Some(k) = kept.filter(|k| !k.interfaces.is_empty()) {
        out = from_section(k, "kept network.interface", SRC_KEPT, ifaces)?;
    } else if !cfg.interfaces.is_empty() {
        out = from_section(cfg, "network.interface", SRC_CONFIG, ifaces)?;
    } else if need {
        for i in ifaces {
            out.push(IfacePlan::dhcp_on(&i.name, SRC_DEFAULT));
        }
    }
    for p in &mut out {
        p.dns.extend(nameservers.iter().copied());
    }
    Ok(out)
}

fn list(ifaces: &[Iface]) -> String {
    if ifaces.is_empty() {
        return "none; is the network driver in the image?".into();
    }
    ifaces
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i.name,
                i.mac,
                i.driver.as_deref().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Brings the planned interfaces up. With several DHCP candidates from the default rule,
/// the first lease wins.
pub fn apply(plans: &[IfacePlan], link_timeout: Duration) -> Result<Applied> {
    let mut nl = net::Netlink::open().context("opening a netlink socket")?;
    let mut out = Applied::default();
    let mut errors = Vec::new();
    let default_rule = plans.iter().all(|p| p.source == SRC_DEFAULT);
    for (k, p) in plans.iter().enumerate() {
        match apply_one(&mut nl, p, link_timeout, k) {
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
        if net::is_link_local6(&g) {
            return true; // always on the link
        }
    }
    let net_of = crate::config::network_of;
    addrs
        .iter()
        .any(|(a, p)| a.is_ipv4() == gw.is_ipv4() && net_of(*a, *p) == net_of(gw, *p))
}

/// `k`: the interface's position in the plan; its routes get metric 100 + k, so several
/// interfaces with gateways do not collide and the first one listed is preferred.
fn apply_one(
    nl: &mut net::Netlink,
    p: &IfacePlan,
    default_wait: Duration,
    k: usize,
) -> Result<Applied> {
    let link_timeout = p.link_timeout.unwrap_or(default_wait);
    let t = Instant::now();
    let idx = nl.link_index(&p.name).context("no such interface")?;
    let wants_v6 = p.slaac
        || p.addrs.iter().any(|(a, _)| a.is_ipv6())
        || p.gateways.iter().any(|g| g.is_ipv6());
    if net::ipv6_available() {
        // Router advertisements only where SLAAC is declared: nothing undeclared appears.
        let v = if p.slaac { "1" } else { "0" };
        net::set_ipv6_conf(&p.name, "accept_ra", v)?;
        net::set_ipv6_conf(&p.name, "autoconf", v)?;
    } else if wants_v6 {
        bail!("IPv6 is configured but the kernel has no IPv6 (ipv6.disable=1 or not built in)");
    }
    nl.set_up(idx, p.mtu).context("setting the link up")?;
    let carrier = net::wait_link(Path::new("/sys"), &p.name, link_timeout);
    log::info!(
        "network {}: link {} after {} ms ({})",
        p.name,
        if carrier { "up" } else { "NOT up" },
        t.elapsed().as_millis(),
        p.source
    );
    if !carrier {
        bail!("no link (carrier) within {} s", link_timeout.as_secs());
    }
    let mut addrs = p.addrs.clone();
    let mut gateways = p.gateways.clone();
    let mut applied = Applied {
        dns: Vec::new(),
        search: p.search.clone(),
    };
    if p.dhcp {
        let t = Instant::now();
        let mac = read_mac(&p.name).unwrap_or([0; 6]);
        let xid = u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ (std::process::id() << 8);
        let l = net::dhcp(&p.name, mac, xid, Duration::from_secs(20))
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
        net::ok_if_exists(nl.add_addr(idx, *a, *pfx))
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
    let opts = |gw: IpAddr| net::RouteOpts {
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
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        net::ok_if_exists(nl.add_route(idx, (any, 0), *g, opts(*g)))
            .with_context(|| format!("default route via {g}"))?;
        log::info!("network {}: default route via {g} ({})", p.name, note(*g));
    }
    for r in &p.routes {
        net::ok_if_exists(nl.add_route(idx, r.to, r.via, opts(r.via)))
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

/// Polls /proc/net/if_inet6 every `step` until `f` returns `Some`, for at most `timeout`.
fn poll_inet6<T>(
    timeout: Duration,
    step: Duration,
    mut f: impl FnMut(&[net::Inet6Addr]) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = net::parse_if_inet6(&std::fs::read_to_string("/proc/net/if_inet6")?);
        if let Some(v) = f(&all)? {
            return Ok(Some(v));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(step);
    }
}

/// Waits for duplicate address detection of a static IPv6 address on `iface`.
fn wait_dad(iface: &str, a: std::net::Ipv6Addr, pfx: u8) -> Result<()> {
    let t = Instant::now();
    let passed = poll_inet6(
        Duration::from_secs(10),
        Duration::from_millis(50),
        |all| match all.iter().find(|x| x.iface == iface && x.addr == a) {
            Some(x) if x.flags & net::IFA_F_DADFAILED != 0 => bail!(
                "{a}/{pfx} failed duplicate address detection: another host on the link uses it"
            ),
            Some(x) if x.flags & net::IFA_F_TENTATIVE == 0 => Ok(Some(())),
            _ => Ok(None),
        },
    )?;
    if passed.is_none() {
        bail!("{a}/{pfx} still tentative (duplicate address detection) after 10 s");
    }
    log::info!(
        "network {iface}: {a} passed duplicate address detection in {} ms",
        t.elapsed().as_millis()
    );
    Ok(())
}

/// Waits for an address from a router advertisement on `iface` (one that is not among the
/// static `addrs`) and logs it with the advertised default route.
fn wait_slaac(iface: &str, addrs: &[(IpAddr, u8)]) -> Result<()> {
    let t = Instant::now();
    let got = poll_inet6(Duration::from_secs(15), Duration::from_millis(100), |all| {
        let auto: Vec<net::Inet6Addr> = all
            .iter()
            .filter(|x| {
                x.iface == iface
                    && x.usable_routable()
                    && !addrs.iter().any(|(a, _)| *a == IpAddr::V6(x.addr))
            })
            .cloned()
            .collect();
        Ok((!auto.is_empty()).then_some(auto))
    })?;
    let Some(got) = got else {
        bail!("SLAAC: no address from a router advertisement within 15 s (is there an IPv6 router on the link?)");
    };
    for x in got {
        log::info!(
            "network {iface}: SLAAC address {}/{} after {} ms",
            x.addr,
            x.prefix,
            t.elapsed().as_millis()
        );
    }
    let routes = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    match net::ipv6_default_gateway(&routes, iface) {
        Some(g) => log::info!("network {iface}: IPv6 default route via {g} (router advertisement)"),
        None => log::info!("network {iface}: the router advertisement gave no IPv6 default route"),
    }
    Ok(())
}

fn read_mac(name: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    v.try_into().ok()
}

/// Writes /etc/resolv.conf and /etc/hosts.
pub fn write_resolver(a: &Applied, hostname: &str) -> Result<()> {
    let dns = &a.dns;
    std::fs::create_dir_all("/etc")?;
    std::fs::write("/etc/resolv.conf", net::resolv_conf(dns, &a.search))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InterfaceMatch;

    fn ifs() -> Vec<Iface> {
        vec![
            Iface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: Some("virtio_net".into()),
            },
            Iface {
                name: "eth1".into(),
                mac: "52:54:00:ab:cd:ef".into(),
                driver: Some("e1000".into()),
            },
        ]
    }

    #[test]
    fn precedence_cmdline_over_config_over_default() {
        let cfg = Network {
            interfaces: vec![Interface {
                matcher: InterfaceMatch {
                    name: None,
                    mac: None,
                    driver: Some("e1000".into()),
                },
                dhcp: false,
                addresses: vec![(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), 24)],
                gateways: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))],
                dns: vec![],
                search: vec![],
                slaac: false,
                routes: vec![],
                mtu: Some(9000),
                link_timeout: None,
            }],
        };
        let ns = [IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))];
        // ip= wins.
        let p = plan_network(
            &[IpParam::Dhcp {
                device: Some("eth0".into()),
            }],
            &ns,
            None,
            &cfg,
            &ifs(),
            true,
        )
        .unwrap();
        assert_eq!(
            (p.len(), p[0].name.as_str(), p[0].dhcp, p[0].source),
            (1, "eth0", true, "kernel command line ip=")
        );
        assert_eq!(p[0].dns, ns);
        // then the config (matched by driver).
        let p = plan_network(&[], &[], None, &cfg, &ifs(), true).unwrap();
        assert_eq!(
            (p[0].name.as_str(), p[0].dhcp, p[0].mtu),
            ("eth1", false, Some(9000))
        );
        assert_eq!(p[0].gateways, [IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))]);
        // then DHCP everywhere, only when needed.
        let p = plan_network(&[], &[], None, &Network::default(), &ifs(), true).unwrap();
        assert_eq!(
            p.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "eth1"]
        );
        assert!(
            plan_network(&[], &[], None, &Network::default(), &ifs(), false)
                .unwrap()
                .is_empty()
        );
        assert!(plan_network(&[IpParam::Off], &[], None, &cfg, &ifs(), true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn kept_network_sits_between_cmdline_and_config() {
        let mk = |m: InterfaceMatch, addr: &str| Network {
            interfaces: vec![Interface {
                matcher: m,
                dhcp: false,
                addresses: vec![(addr.parse().unwrap(), 24)],
                gateways: vec![],
                dns: vec![],
                search: vec!["lab.example.org".into()],
                slaac: true,
                routes: vec![],
                mtu: None,
                link_timeout: None,
            }],
        };
        let kept = mk(
            InterfaceMatch {
                mac: Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
                ..Default::default()
            },
            "10.0.2.77",
        );
        let cfg = mk(
            InterfaceMatch {
                name: Some("eth0".into()),
                ..Default::default()
            },
            "192.168.1.5",
        );
        let p = plan_network(&[], &[], Some(&kept), &cfg, &ifs(), true).unwrap();
        assert_eq!(
            (p.len(), p[0].name.as_str(), p[0].source),
            (1, "eth1", SRC_KEPT),
            "kept config matched by MAC wins over anemos.toml"
        );
        assert_eq!(p[0].addrs, [("10.0.2.77".parse().unwrap(), 24)]);
        assert!(p[0].slaac);
        assert_eq!(p[0].search, ["lab.example.org"]);
        let p = plan_network(
            &[IpParam::Dhcp { device: None }],
            &[],
            Some(&kept),
            &cfg,
            &ifs(),
            true,
        )
        .unwrap();
        assert_eq!(p[0].source, SRC_CMDLINE);
        let empty = Network::default();
        let p = plan_network(&[], &[], Some(&empty), &cfg, &ifs(), true).unwrap();
        assert_eq!((p[0].name.as_str(), p[0].source), ("eth0", SRC_CONFIG));
        // A kept interface whose MAC is gone is named, with what exists.
        let gone = mk(
            InterfaceMatch {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..Default::default()
            },
            "10.0.2.77",
        );
        let e = plan_network(&[], &[], Some(&gone), &cfg, &ifs(), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("kept network.interface[0]: no interface matches mac 02:00:00:00:00:01"),
            "{e}"
        );
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

    #[test]
    fn unmatched_interface_is_named() {
        let cfg = Network {
            interfaces: vec![Interface {
                matcher: InterfaceMatch {
                    name: Some("enp*".into()),
                    mac: None,
                    driver: None,
                },
                dhcp: true,
                addresses: vec![],
                gateways: vec![],
                dns: vec![],
                search: vec![],
                slaac: false,
                routes: vec![],
                mtu: None,
                link_timeout: None,
            }],
        };
        let e = plan_network(&[], &[], None, &cfg, &ifs(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("network.interface[0]: no interface matches")
                && e.contains("eth0 52:54:00:12:34:56 virtio_net"),
            "{e}"
        );
        let e = plan_network(
            &[IpParam::Dhcp {
                device: Some("eth9".into()),
            }],
            &[],
            None,
            &cfg,
            &ifs(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("interface Some(\"eth9\") does not exist"), "{e}");
    }
}
