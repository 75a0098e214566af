//! `anemos kexec --network keep`: capture how the running system reaches the network and hand
//! it to the deploy image, so a server without DHCP comes up with the address it has now.
//!
//! What is captured, per physical interface (one with a `device` link in sysfs) that has an
//! address: its MAC (the deploy image matches by MAC: names differ without udev), IPv4
//! addresses (DHCP-obtained ones too, kept as static), permanent global IPv6 addresses (dynamic
//! ones turn into `slaac = true`), the default gateways and gateway routes, the MTU when not
//! 1500, and the resolver's servers and search domains. It is written as the same
//! `[[network.interface]]` TOML anemos.toml uses, validated with the same rules, shown to the
//! operator, and carried into the image as /etc/anemos/network-kept.toml.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};

/// One interface as captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub name: String,
    pub mac: String,
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateways: Vec<IpAddr>,
    pub routes: Vec<((IpAddr, u8), IpAddr)>,
    pub slaac: bool,
    pub mtu: Option<u32>,
}

/// One IPv4 route through a gateway, from /proc/net/route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GwRoute {
    pub iface: String,
    pub to: (Ipv4Addr, u8),
    pub via: Ipv4Addr,
    pub metric: u32,
}

/// IPv4 routes with a gateway from /proc/net/route. Pure.
pub fn parse_proc_route(text: &str) -> Vec<GwRoute> {
    const RTF_GATEWAY: u32 = 0x2;
    // The kernel prints each network-order address as a host-order u32 in hex: its bytes in
    // memory are the address.
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_GATEWAY == 0 {
                return None;
            }
            let dest = addr(f[1])?;
            let via = addr(f[2])?;
            let mask = addr(f[7])?;
            let prefix = crate::net::mask_to_prefix(mask)?;
            Some(GwRoute {
                iface: f[0].to_string(),
                to: (dest, prefix),
                via,
                metric: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// Nameservers and search domains from resolv.conf text; loopback servers (a local stub such
/// as systemd-resolved's 127.0.0.53) are dropped: they do not exist in the deploy image. Pure.
pub fn parse_resolv_conf(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut ns = Vec::new();
    let mut search = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(a) = w.next().and_then(|a| a.parse::<IpAddr>().ok()) {
                    if !a.is_loopback() && !ns.contains(&a) {
                        ns.push(a);
                    }
                }
            }
            Some("search") | Some("domain") => {
                // systemd-resolved writes "search ." (the root domain): nothing to search.
                search = w
                    .map(|s| s.trim_end_matches('.').to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            _ => {}
        }
    }
    (ns, search)
}

/// Renders the captured interfaces as `[[network.interface]]` TOML. Pure.
pub fn render(ifaces: &[Captured], dns: &[IpAddr], search: &[String]) -> String {
    let q = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from(
        "# captured by `anemos kexec --network keep` on the old system; matched by MAC\n",
    );
    for (k, i) in ifaces.iter().enumerate() {
        let _ = writeln!(out, "\n# was {} on the old system", i.name);
        out.push_str("[[network.interface]]\n");
        let _ = writeln!(out, "match = {{ mac = \"{}\" }}", i.mac);
        let addrs: Vec<String> = i
            .addresses
            .iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect();
        if !addrs.is_empty() {
            let _ = writeln!(out, "addresses = [{}]", q(addrs));
        }
        if i.slaac {
            out.push_str("slaac = true\n");
        }
        if !i.gateways.is_empty() {
            let _ = writeln!(
                out,
                "gateways = [{}]",
                q(i.gateways.iter().map(|g| g.to_string()).collect())
            );
        }
        if !i.routes.is_empty() {
            let r: Vec<String> = i
                .routes
                .iter()
                .map(|((to, p), via)| format!("{{ to = \"{to}/{p}\", via = \"{via}\" }}"))
                .collect();
            let _ = writeln!(out, "routes = [{}]", r.join(", "));
        }
        if let Some(m) = i.mtu {
            let _ = writeln!(out, "mtu = {m}");
        }
        // The resolver is system-wide; it goes with the first interface.
        if k == 0 {
            if !dns.is_empty() {
                let _ = writeln!(
                    out,
                    "dns = [{}]",
                    q(dns.iter().map(|d| d.to_string()).collect())
                );
            }
            if !search.is_empty() {
                let _ = writeln!(out, "search = [{}]", q(search.to_vec()));
            }
        }
    }
    out
}

/// Reads the running system's network configuration (sysfs, getifaddrs, /proc/net, resolv.conf).
pub fn capture() -> Result<String> {
    let mut by_name: BTreeMap<String, Captured> = BTreeMap::new();
    for e in fs::read_dir("/sys/class/net").context("reading /sys/class/net")? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Physical interfaces only: bridges, bonds, VLANs, tunnels and veths need more than
        // addresses to recreate, and are not what a deploy downloads through.
        if !e.path().join("device").exists() {
            continue;
        }
        // Only interfaces with a link now: one without could not come up in the deploy image
        // either, and would fail its network stage.
        let carrier = fs::read_to_string(e.path().join("carrier")).unwrap_or_default();
        if carrier.trim() != "1" {
            continue;
        }
        let mac = fs::read_to_string(e.path().join("address"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mtu = fs::read_to_string(e.path().join("mtu"))
            .ok()
            .and_then(|m| m.trim().parse::<u32>().ok())
            .filter(|m| *m != 1500);
        by_name.insert(
            name.clone(),
            Captured {
                name,
                mac,
                mtu,
                ..Default::default()
            },
        );
    }
    for (name, addr, prefix) in crate::net::ipv4_addresses()? {
        if let Some(c) = by_name.get_mut(&name) {
            c.addresses.push((IpAddr::V4(addr), prefix));
        }
    }
    let inet6 = fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    const IFA_F_PERMANENT: u8 = 0x80;
    for a in crate::net::parse_if_inet6(&inet6) {
        let Some(c) = by_name.get_mut(&a.iface) else {
            continue;
        };
        if !a.usable_routable() {
            continue;
        }
        if a.flags & IFA_F_PERMANENT != 0 {
            c.addresses.push((IpAddr::V6(a.addr), a.prefix));
        } else {
            c.slaac = true;
        }
    }
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    // The deploy image prefers interfaces in the order they are listed (metric 100, 101, ...):
    // list them by their default route's metric here, as the old system preferred them.
    let mut default_metric: BTreeMap<String, u32> = BTreeMap::new();
    for r in parse_proc_route(&routes) {
        if let Some(c) = by_name.get_mut(&r.iface) {
            if r.to.1 == 0 {
                let m = default_metric.entry(r.iface.clone()).or_insert(u32::MAX);
                if r.metric < *m {
                    *m = r.metric;
                    c.gateways.retain(|g| !g.is_ipv4());
                    c.gateways.push(IpAddr::V4(r.via));
                }
            } else {
                c.routes
                    .push(((IpAddr::V4(r.to.0), r.to.1), IpAddr::V4(r.via)));
            }
        }
    }
    let v6routes = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    for c in by_name.values_mut() {
        // A router-advertised default comes back by itself with SLAAC.
        if !c.slaac {
            if let Some(g) = crate::net::ipv6_default_gateway(&v6routes, &c.name) {
                c.gateways.push(IpAddr::V6(g));
            }
        }
    }
    // systemd-resolved keeps the real upstream servers here; /etc/resolv.conf names its stub.
    let resolv = ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .unwrap_or_default();
    let (dns, search) = parse_resolv_conf(&resolv);
    let mut ifaces: Vec<Captured> = by_name
        .into_values()
        .filter(|c| !c.addresses.is_empty() || c.slaac)
        .collect();
    ifaces.sort_by_key(|c| default_metric.get(&c.name).copied().unwrap_or(u32::MAX));
    if ifaces.is_empty() {
        bail!("--network keep: no physical interface of this system has an address to keep");
    }
    let text = render(&ifaces, &dns, &search);
    // The deploy image validates it the same way; fail here, before the kexec, if it would not.
    crate::config::load_network(&text, "captured network").map_err(|e| {
        anyhow::anyhow!("--network keep: the captured configuration is not valid:\n{e}\n{text}")
    })?;
    Ok(text)
}

/// A cpio segment holding `/etc/anemos/network-kept.toml`, appended to the initramfs.
pub fn segment(text: &str) -> Result<Vec<u8>> {
    use crate::pack::archive::{Archive, Data, Node};
    let mut a = Archive::new();
    a.mkdir_p("--network keep", "etc/anemos")?;
    a.insert(
        "--network keep",
        crate::net::KEPT_PATH.trim_start_matches('/'),
        Node::file(Data::Bytes(text.as_bytes().to_vec()), 0o644),
    )?;
    let (_, out) =
        crate::pack::write_segment(&a, crate::codec::Compression::None, None, 0, Vec::new())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_route_gateways() {
        // A Debian guest: default via 10.0.2.2 on eth0, 192.0.2.0/24 via 10.0.2.3, the
        // connected 10.0.2.0/24 (no gateway flag) left out.
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t000200C0\t0302000A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let r = parse_proc_route(t);
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.iface.as_str(), r.to, r.via, r.metric))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "eth0",
                    (Ipv4Addr::UNSPECIFIED, 0),
                    Ipv4Addr::new(10, 0, 2, 2),
                    0
                ),
                (
                    "eth0",
                    (Ipv4Addr::new(192, 0, 2, 0), 24),
                    Ipv4Addr::new(10, 0, 2, 3),
                    0
                ),
            ]
        );
    }

    #[test]
    fn resolv_conf_drops_local_stubs() {
        let (ns, s) = parse_resolv_conf(
            "# stub\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lab.example.org. example.org .\noptions edns0\n",
        );
        assert_eq!(
            ns,
            [
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
        assert_eq!(s, ["lab.example.org", "example.org"]);
    }

    /// What we render, anemos.toml's rules accept, and it says what was captured.
    #[test]
    fn rendered_capture_round_trips_through_the_validator() {
        let c = vec![
            Captured {
                name: "enp1s0".into(),
                mac: "52:54:00:12:34:56".into(),
                addresses: vec![
                    ("10.0.2.77".parse().unwrap(), 24),
                    ("2001:db8::77".parse().unwrap(), 64),
                ],
                gateways: vec!["10.0.2.2".parse().unwrap(), "fe80::1".parse().unwrap()],
                routes: vec![(
                    ("192.0.2.0".parse().unwrap(), 24),
                    "10.0.2.3".parse().unwrap(),
                )],
                slaac: false,
                mtu: Some(9000),
            },
            Captured {
                name: "enp2s0".into(),
                mac: "52:54:00:ab:cd:ef".into(),
                slaac: true,
                ..Default::default()
            },
        ];
        let text = render(
            &c,
            &["192.0.2.53".parse().unwrap()],
            &["lab.example.org".into()],
        );
        let n = crate::config::load_network(&text, "x").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(n.interfaces.len(), 2);
        let i = &n.interfaces[0];
        assert_eq!(i.matcher.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(i.addresses, c[0].addresses);
        assert_eq!(i.gateways, c[0].gateways);
        assert_eq!(i.routes.len(), 1);
        assert_eq!((i.mtu, i.dhcp, i.slaac), (Some(9000), false, false));
        assert_eq!(i.search, ["lab.example.org"]);
        assert!(n.interfaces[1].slaac && n.interfaces[1].addresses.is_empty());
        assert!(text.contains("# was enp1s0 on the old system"));
    }

    #[test]
    fn segment_is_a_cpio_with_the_file() {
        let seg = segment("[[network.interface]]\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("seg");
        fs::write(&p, &seg).unwrap();
        let got = crate::pack::inspect::cat(&p, "etc/anemos/network-kept.toml").unwrap();
        assert_eq!(got, b"[[network.interface]]\n");
        assert_eq!(
            seg.len() % 4,
            0,
            "cpio segments are 4-byte aligned for concatenation"
        );
    }

    /// On the machine running the tests: whatever it has, the capture is valid or a clear error.
    #[test]
    fn capture_on_this_machine_is_valid_or_explains() {
        match capture() {
            Ok(text) => assert!(text.contains("[[network.interface]]"), "{text}"),
            // Only "nothing to keep" is acceptable: an invalid capture is a bug.
            Err(e) => assert!(
                e.to_string()
                    .contains("no physical interface of this system has an address"),
                "{e}"
            ),
        }
    }
}
