//! Planning the network stage (pure): which interfaces to configure and how, from `ip=` on the
//! kernel command line, what `anemos kexec --network keep` captured, anemos.toml, or the
//! default (DHCP everywhere when the install downloads: a rootfs URL or a package mirror). docs/network.md has the
//! precedence.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{Iface, IpParam};
use crate::config::{Interface, Network, Route};

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
    pub(super) fn new(name: &str, source: &'static str) -> IfacePlan {
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

    pub(super) fn dhcp_on(name: &str, source: &'static str) -> IfacePlan {
        IfacePlan {
            dhcp: true,
            ..IfacePlan::new(name, source)
        }
    }
}

pub const SRC_CMDLINE: &str = "kernel command line ip=";
pub const SRC_KEPT: &str = "kept from the old system (anemos kexec --network keep)";
pub const SRC_CONFIG: &str = "anemos.toml [[network.interface]]";
pub const SRC_DEFAULT: &str =
    "default: DHCP (the install downloads: a rootfs URL or a package mirror)";

fn iface_matches(m: &crate::config::InterfaceMatch, i: &Iface) -> bool {
    let name = m
        .name
        .as_ref()
        .map(|n| crate::util::glob::fnmatch(n, &i.name))
        .unwrap_or(true);
    let mac = m
        .mac
        .map(|mac| crate::util::mac::parse(&i.mac) == Some(mac))
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
        parts.push(format!("mac {}", crate::util::mac::format(&mac)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InterfaceMatch;
    use std::net::Ipv4Addr;

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
