//! IPv6: SLAAC is the kernel's job (accept_ra + autoconf); we switch it on or off per interface
//! and watch /proc/net/if_inet6 and /proc/net/ipv6_route for what it configured.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::ctx;

/// One line of /proc/net/if_inet6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6Addr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
    /// 0x00 global, 0x10 host, 0x20 link, 0x40 site (fec0::/10).
    pub scope: u8,
    pub flags: u8,
    pub iface: String,
}

pub const IFA_F_DADFAILED: u8 = 0x08;
pub const IFA_F_TENTATIVE: u8 = 0x40;

impl Inet6Addr {
    /// Usable beyond the link: not link-local or loopback, DAD finished and passed.
    pub fn usable_routable(&self) -> bool {
        self.scope != 0x10
            && self.scope != 0x20
            && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }
}

fn hex_v6(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

/// Parses /proc/net/if_inet6. Pure.
pub fn parse_if_inet6(text: &str) -> Vec<Inet6Addr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(Inet6Addr {
                addr: hex_v6(f[0])?,
                prefix: u8::from_str_radix(f[2], 16).ok()?,
                scope: u8::from_str_radix(f[3], 16).ok()?,
                flags: u8::from_str_radix(f[4], 16).ok()?,
                iface: f[5].to_string(),
            })
        })
        .collect()
}

/// The IPv6 default route's gateway for `iface` in /proc/net/ipv6_route text. Pure.
pub fn ipv6_default_gateway(text: &str, iface: &str) -> Option<Ipv6Addr> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[9] != iface || f[1] != "00" {
            return None;
        }
        let dst = hex_v6(f[0])?;
        let gw = hex_v6(f[4])?;
        (dst.is_unspecified() && !gw.is_unspecified()).then_some(gw)
    })
}

/// Sets /proc/sys/net/ipv6/conf/<iface>/<key>.
pub fn set_ipv6_conf(iface: &str, key: &str, value: &str) -> io::Result<()> {
    let p = format!("/proc/sys/net/ipv6/conf/{iface}/{key}");
    std::fs::write(&p, value).map_err(|e| ctx(e, &format!("writing {value} to {p}")))
}

/// Whether the kernel has IPv6 (not built without it, not `ipv6.disable=1`).
pub fn ipv6_available() -> bool {
    Path::new("/proc/sys/net/ipv6").is_dir()
}

/// fe80::/10.
pub fn is_link_local6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Polls /proc/net/if_inet6 every `step` until `f` returns `Some`, for at most `timeout`.
fn poll_inet6<T>(
    timeout: Duration,
    step: Duration,
    mut f: impl FnMut(&[Inet6Addr]) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = parse_if_inet6(&std::fs::read_to_string("/proc/net/if_inet6")?);
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
pub fn wait_dad(iface: &str, a: Ipv6Addr, pfx: u8) -> Result<()> {
    let t = Instant::now();
    let passed = poll_inet6(
        Duration::from_secs(10),
        Duration::from_millis(50),
        |all| match all.iter().find(|x| x.iface == iface && x.addr == a) {
            Some(x) if x.flags & IFA_F_DADFAILED != 0 => bail!(
                "{a}/{pfx} failed duplicate address detection: another host on the link uses it"
            ),
            Some(x) if x.flags & IFA_F_TENTATIVE == 0 => Ok(Some(())),
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
pub fn wait_slaac(iface: &str, addrs: &[(IpAddr, u8)]) -> Result<()> {
    let t = Instant::now();
    let got = poll_inet6(Duration::from_secs(15), Duration::from_millis(100), |all| {
        let auto: Vec<Inet6Addr> = all
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
    match ipv6_default_gateway(&routes, iface) {
        Some(g) => log::info!("network {iface}: IPv6 default route via {g} (router advertisement)"),
        None => log::info!("network {iface}: the router advertisement gave no IPv6 default route"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/if_inet6 and /proc/net/ipv6_route as a Debian 6.1 guest on QEMU's user network
    /// shows them after SLAAC (fec0::/64 is QEMU's prefix; site scope 0x40).
    #[test]
    fn proc_ipv6_parsing() {
        let inet6 = "\
fec05054ff00000000005054fffe123456 02 40 40 00     eth0
fec0000000000000505400fffe123456 02 40 40 00     eth0
fe80000000000000505400fffe123456 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000010 02 40 00 40     eth0
";
        let v = parse_if_inet6(inet6);
        assert_eq!(v.len(), 4, "the malformed first line is skipped: {v:?}");
        assert_eq!(
            v[0].addr,
            "fec0::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            (v[0].prefix, v[0].scope, v[0].iface.as_str()),
            (64, 0x40, "eth0")
        );
        let usable: Vec<bool> = v.iter().map(|x| x.usable_routable()).collect();
        // site scope ok; link-local no; loopback no; global but tentative (0x40) no.
        assert_eq!(usable, [true, false, false, false]);
        let routes = "\
fec00000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000002 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        assert_eq!(
            ipv6_default_gateway(routes, "eth0"),
            Some("fe80::2".parse().unwrap())
        );
        assert_eq!(ipv6_default_gateway(routes, "lo"), None);
        assert_eq!(ipv6_default_gateway(routes, "eth1"), None);
    }
}
