//! Network stage: bring interfaces up from, in this precedence (docs/network.md):
//! 1. `ip=` on the kernel command line (the operator's override for this boot),
//! 2. `[[network.interface]]` in anemos.toml,
//! 3. if the install needs the network (rootfs by URL) and nothing is configured: DHCP on each
//!    interface in turn until one gets a lease.
//! `nameserver=` on the command line adds DNS servers in every case. Then /etc/resolv.conf and
//! /etc/hosts are written (visible to the install, which runs in this root).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::net::{self, Iface, IpParam};
use crate::config::{Interface, Network};

/// What to do on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfacePlan {
    pub name: String,
    pub dhcp: bool,
    pub addrs: Vec<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<IpAddr>,
    pub mtu: Option<u32>,
    pub source: &'static str,
}

fn iface_matches(m: &crate::config::InterfaceMatch, i: &Iface) -> bool {
    let name = m
        .name
        .as_ref()
        .map(|n| crate::pack::modules::fnmatch(n, &i.name))
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

fn from_config(c: &Interface, name: &str) -> IfacePlan {
    let v4: Vec<(Ipv4Addr, u8)> = c
        .addresses
        .iter()
        .filter_map(|(a, p)| {
            if let IpAddr::V4(a) = a {
                Some((*a, *p))
            } else {
                None
            }
        })
        .collect();
    let gw = c.gateways.iter().find_map(|g| {
        if let IpAddr::V4(g) = g {
            Some(*g)
        } else {
            None
        }
    });
    IfacePlan {
        name: name.into(),
        dhcp: c.dhcp,
        addrs: v4,
        gateway: gw,
        dns: c.dns.clone(),
        mtu: c.mtu,
        source: "anemos.toml [[network.interface]]",
    }
}

/// Pure: the interface plans for this boot.
pub fn plan_network(
    ip: &[IpParam],
    nameservers: &[IpAddr],
    cfg: &Network,
    ifaces: &[Iface],
    need: bool,
) -> Result<Vec<IfacePlan>> {
    let mut out = Vec::new();
    if ip.iter().any(|p| *p == IpParam::Off) {
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
                        out.push(IfacePlan {
                            name: i.name.clone(),
                            dhcp: true,
                            addrs: vec![],
                            gateway: None,
                            dns: vec![],
                            mtu: None,
                            source: "kernel command line ip=",
                        });
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
                    out.push(IfacePlan {
                        name: i.name.clone(),
                        dhcp: false,
                        addrs: vec![(*addr, *prefix)],
                        gateway: *gateway,
                        dns: dns.iter().map(|d| IpAddr::V4(*d)).collect(),
                        mtu: None,
                        source: "kernel command line ip=",
                    });
                }
            }
        }
    } else if !cfg.interfaces.is_empty() {
        for (k, c) in cfg.interfaces.iter().enumerate() {
            let i = ifaces
                .iter()
                .find(|i| iface_matches(&c.matcher, i))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "network.interface[{k}]: no interface matches {:?} (interfaces: {})",
                        c.matcher,
                        list(ifaces)
                    )
                })?;
            out.push(from_config(c, &i.name));
        }
    } else if need {
        for i in ifaces {
            out.push(IfacePlan {
                name: i.name.clone(),
                dhcp: true,
                addrs: vec![],
                gateway: None,
                dns: vec![],
                mtu: None,
                source: "default: DHCP (the install downloads its rootfs)",
            });
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
pub fn apply(plans: &[IfacePlan], link_timeout: Duration) -> Result<Vec<IpAddr>> {
    let mut nl = net::Netlink::open().context("opening a netlink socket")?;
    let mut dns = Vec::new();
    let mut errors = Vec::new();
    let default_rule = plans.iter().all(|p| p.source.starts_with("default"));
    for p in plans {
        let t = Instant::now();
        let idx = nl
            .link_index(&p.name)
            .with_context(|| format!("interface {}", p.name))?;
        nl.set_up(idx, p.mtu)
            .with_context(|| format!("interface {}: setting the link up", p.name))?;
        let carrier = net::wait_link(Path::new("/sys"), &p.name, link_timeout);
        log::info!(
            "network {}: link {} after {} ms ({})",
            p.name,
            if carrier { "up" } else { "NOT up" },
            t.elapsed().as_millis(),
            p.source
        );
        if !carrier {
            errors.push(format!(
                "{}: no link (carrier) within {} s",
                p.name,
                link_timeout.as_secs()
            ));
            continue;
        }
        let (addrs, gw, mut d) = if p.dhcp {
            let t = Instant::now();
            let mac = read_mac(&p.name).unwrap_or([0; 6]);
            let xid =
                u32::from_le_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ (std::process::id() << 8);
            match net::dhcp(&p.name, mac, xid, Duration::from_secs(20)) {
                Ok(l) => {
                    log::info!(
                        "network {}: DHCP lease {}/{} from {} in {} ms (router {:?}, dns {:?})",
                        p.name,
                        l.addr,
                        l.prefix,
                        l.server,
                        t.elapsed().as_millis(),
                        l.router,
                        l.dns
                    );
                    (
                        vec![(l.addr, l.prefix)],
                        l.router,
                        l.dns.iter().map(|a| IpAddr::V4(*a)).collect::<Vec<_>>(),
                    )
                }
                Err(e) => {
                    errors.push(format!("{}: DHCP got no lease: {e}", p.name));
                    continue;
                }
            }
        } else {
            (p.addrs.clone(), p.gateway, Vec::new())
        };
        for (a, pfx) in &addrs {
            nl.add_addr_v4(idx, *a, *pfx)
                .with_context(|| format!("interface {}: adding {a}/{pfx}", p.name))?;
            log::info!("network {}: address {a}/{pfx}", p.name);
        }
        if let Some(g) = gw {
            nl.add_default_route_v4(idx, g)
                .with_context(|| format!("interface {}: default route via {g}", p.name))?;
            log::info!("network {}: default route via {g}", p.name);
        }
        d.extend(p.dns.iter().copied());
        dns.extend(d);
        if default_rule {
            errors.clear();
            break;
        }
    }
    if !errors.is_empty() {
        bail!("network did not come up: {}", errors.join("; "));
    }
    Ok(dns)
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
pub fn write_resolver(dns: &[IpAddr], hostname: &str) -> Result<()> {
    std::fs::create_dir_all("/etc")?;
    std::fs::write("/etc/resolv.conf", net::resolv_conf(dns, &[]))
        .context("writing /etc/resolv.conf")?;
    std::fs::write(
        "/etc/hosts",
        format!("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n"),
    )
    .context("writing /etc/hosts")?;
    log::info!("network: /etc/resolv.conf with {} server(s)", dns.len());
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
                mtu: Some(9000),
            }],
        };
        let ns = [IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))];
        // ip= wins.
        let p = plan_network(
            &[IpParam::Dhcp {
                device: Some("eth0".into()),
            }],
            &ns,
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
        let p = plan_network(&[], &[], &cfg, &ifs(), true).unwrap();
        assert_eq!(
            (p[0].name.as_str(), p[0].dhcp, p[0].mtu),
            ("eth1", false, Some(9000))
        );
        assert_eq!(p[0].gateway, Some(Ipv4Addr::new(192, 168, 1, 1)));
        // then DHCP everywhere, only when needed.
        let p = plan_network(&[], &[], &Network::default(), &ifs(), true).unwrap();
        assert_eq!(
            p.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "eth1"]
        );
        assert!(plan_network(&[], &[], &Network::default(), &ifs(), false)
            .unwrap()
            .is_empty());
        assert!(plan_network(&[IpParam::Off], &[], &cfg, &ifs(), true)
            .unwrap()
            .is_empty());
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
                mtu: None,
            }],
        };
        let e = plan_network(&[], &[], &cfg, &ifs(), false)
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
            &cfg,
            &ifs(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("interface Some(\"eth9\") does not exist"), "{e}");
    }
}
