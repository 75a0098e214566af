//! The kernel command line's `ip=` and `nameserver=` parameters, and IPv4 netmask helpers.

use std::net::{IpAddr, Ipv4Addr};

/// One `ip=` kernel parameter (the kernel's nfsroot syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpParam {
    /// `ip=off` / `ip=none`, or an explicit `off` autoconf with no client address.
    Off,
    /// `ip=dhcp|on|any|both|bootp|rarp`, or `ip=:::::eth0:dhcp`; `device: None` means every
    /// interface (first one that gets a lease wins, the caller decides).
    Dhcp { device: Option<String> },
    /// A fully static configuration.
    Static {
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        hostname: Option<String>,
        device: Option<String>,
        dns: Vec<Ipv4Addr>,
    },
}

fn is_dhcp_word(s: &str) -> bool {
    matches!(s, "dhcp" | "on" | "any" | "both" | "bootp" | "rarp")
}

fn is_off_word(s: &str) -> bool {
    matches!(s, "off" | "none")
}

/// Parse the value of one `ip=` parameter (without the `ip=` prefix).
///
/// Form: `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
/// trailing fields may be omitted. `server-ip` and `ntp0-ip` are validated and ignored.
/// A missing netmask with a client address falls back to the classful default, as the kernel
/// does. The netmask field also accepts a prefix length (`24`, dracut style).
pub fn parse_ip_param(value: &str) -> Result<IpParam, String> {
    let v = value.trim();
    if !v.contains(':') {
        if is_off_word(v) {
            return Ok(IpParam::Off);
        }
        if is_dhcp_word(v) {
            return Ok(IpParam::Dhcp { device: None });
        }
        if v.is_empty() {
            return Err("ip=: empty value".into());
        }
        // A lone address: a static address with the classful mask, nothing else.
        let addr = ipv4_field("client-ip", v)?;
        return Ok(IpParam::Static {
            addr,
            prefix: classful_prefix(addr),
            gateway: None,
            hostname: None,
            device: None,
            dns: Vec::new(),
        });
    }
    let f: Vec<&str> = v.split(':').collect();
    if f.len() > 10 {
        return Err(format!("ip=: {} fields, at most 10 are allowed", f.len()));
    }
    let field = |i: usize| f.get(i).copied().unwrap_or("").trim();
    let opt_v4 = |name: &str, i: usize| -> Result<Option<Ipv4Addr>, String> {
        let s = field(i);
        if s.is_empty() {
            Ok(None)
        } else {
            ipv4_field(name, s).map(Some)
        }
    };
    let client = opt_v4("client-ip", 0)?;
    let _server = opt_v4("server-ip", 1)?;
    let gateway = opt_v4("gw-ip", 2)?;
    let mask = field(3);
    let hostname = Some(field(4)).filter(|s| !s.is_empty()).map(str::to_string);
    let device = Some(field(5)).filter(|s| !s.is_empty()).map(str::to_string);
    let autoconf = field(6);
    let dns0 = opt_v4("dns0-ip", 7)?;
    let dns1 = opt_v4("dns1-ip", 8)?;
    let _ntp = opt_v4("ntp0-ip", 9)?;
    if let Some(d) = &device {
        if d.len() >= 16 || d.contains('/') {
            return Err(format!("ip=: device {d:?} is not a valid interface name"));
        }
    }
    let prefix = if mask.is_empty() {
        None
    } else {
        Some(netmask_field(mask)?)
    };

    if is_dhcp_word(autoconf) || (autoconf.is_empty() && client.is_none()) {
        return Ok(IpParam::Dhcp { device });
    }
    if !autoconf.is_empty() && !is_off_word(autoconf) {
        return Err(format!(
            "ip=: autoconf {autoconf:?} is not one of off, none, dhcp, on, any, both, bootp, rarp"
        ));
    }
    let Some(addr) = client else {
        return Ok(IpParam::Off);
    };
    Ok(IpParam::Static {
        addr,
        prefix: prefix.unwrap_or_else(|| classful_prefix(addr)),
        gateway,
        hostname,
        device,
        dns: dns0.into_iter().chain(dns1).collect(),
    })
}

fn ipv4_field(name: &str, s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| format!("ip=: {name} {s:?} is not an IPv4 address"))
}

fn netmask_field(s: &str) -> Result<u8, String> {
    if let Ok(p) = s.parse::<u8>() {
        if !s.contains('.') {
            return if p <= 32 {
                Ok(p)
            } else {
                Err(format!("ip=: netmask {s:?} is not a prefix length (0-32)"))
            };
        }
    }
    let m = s
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("ip=: netmask {s:?} is not an IPv4 netmask"))?;
    mask_to_prefix(m).ok_or_else(|| format!("ip=: netmask {s:?} is not a contiguous netmask"))
}

/// Prefix length of a contiguous netmask, `None` if the mask has holes.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    if m.checked_shl(ones).unwrap_or(0) == 0 {
        Some(ones as u8)
    } else {
        None
    }
}

/// The netmask of a prefix length (0..=32).
pub fn prefix_to_mask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - p).unwrap_or(0))
}

/// Class A/B/C default prefix, what the kernel assumes when no netmask is given.
pub(super) fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Parse one `nameserver=` value (dracut syntax; IPv4 or IPv6, IPv6 may be in brackets).
pub fn parse_nameserver(value: &str) -> Result<IpAddr, String> {
    let v = value.trim();
    let inner = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    inner
        .parse::<IpAddr>()
        .map_err(|_| format!("nameserver=: {v:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_param_table() {
        let st = |addr,
                  prefix,
                  gw: Option<&str>,
                  host: Option<&str>,
                  dev: Option<&str>,
                  dns: &[&str]| IpParam::Static {
            addr: ip(addr),
            prefix,
            gateway: gw.map(ip),
            hostname: host.map(String::from),
            device: dev.map(String::from),
            dns: dns.iter().map(|d| ip(d)).collect(),
        };
        let cases: Vec<(&str, IpParam)> = vec![
            ("dhcp", IpParam::Dhcp { device: None }),
            ("on", IpParam::Dhcp { device: None }),
            ("any", IpParam::Dhcp { device: None }),
            ("off", IpParam::Off),
            ("none", IpParam::Off),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0:host:eth0:off",
                st("10.0.2.15", 24, Some("10.0.2.2"), Some("host"), Some("eth0"), &[]),
            ),
            (
                "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none:10.0.2.3",
                st("10.0.2.15", 24, Some("10.0.2.2"), None, Some("eth0"), &["10.0.2.3"]),
            ),
            (
                "192.168.1.5:192.168.1.1:192.168.1.1:255.255.0.0:h:enp1s0:off:1.1.1.1:8.8.8.8:9.9.9.9",
                st("192.168.1.5", 16, Some("192.168.1.1"), Some("h"), Some("enp1s0"), &["1.1.1.1", "8.8.8.8"]),
            ),
            (":::::eth0:dhcp", IpParam::Dhcp { device: Some("eth0".into()) }),
            (":::::eth0:", IpParam::Dhcp { device: Some("eth0".into()) }),
            ("::::::off", IpParam::Off),
            // No netmask: classful default; prefix-length netmask accepted.
            ("10.1.2.3", st("10.1.2.3", 8, None, None, None, &[])),
            ("172.16.0.9::::::off", st("172.16.0.9", 16, None, None, None, &[])),
            ("10.0.0.2:::22", st("10.0.0.2", 22, None, None, None, &[])),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ip_param(input), Ok(want), "ip={input}");
        }
    }

    #[test]
    fn ip_param_errors_name_the_field() {
        let err = |s| parse_ip_param(s).unwrap_err();
        assert_eq!(
            err("10.0.2.15::10.0.2.2:255.0.255.0::eth0:off"),
            "ip=: netmask \"255.0.255.0\" is not a contiguous netmask"
        );
        assert_eq!(
            err("10.0.2.300::10.0.2.2:255.255.255.0"),
            "ip=: client-ip \"10.0.2.300\" is not an IPv4 address"
        );
        assert!(err("10.0.2.15::gw:255.255.255.0").contains("gw-ip \"gw\""));
        assert!(err("10.0.2.15::::::off:8.8.8:").contains("dns0-ip \"8.8.8\""));
        assert!(err("10.0.2.15:::33").contains("netmask \"33\""));
        assert!(err("10.0.2.15::::::static").contains("autoconf \"static\""));
        assert!(err("a:b:c:d:e:f:g:h:i:j:k").contains("11 fields"));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn nameserver() {
        assert_eq!(parse_nameserver("1.2.3.4"), Ok("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_nameserver("[2001:db8::1]"),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("2001:db8::1"),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("1.2.3"),
            Err("nameserver=: \"1.2.3\" is not an IP address".into())
        );
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix(ip("255.255.255.0")), Some(24));
        assert_eq!(mask_to_prefix(ip("0.0.0.0")), Some(0));
        assert_eq!(mask_to_prefix(ip("255.255.255.255")), Some(32));
        assert_eq!(mask_to_prefix(ip("255.255.254.0")), Some(23));
        assert_eq!(mask_to_prefix(ip("255.0.255.0")), None);
        assert_eq!(mask_to_prefix(ip("0.255.255.255")), None);
        assert_eq!(prefix_to_mask(0), ip("0.0.0.0"));
        assert_eq!(prefix_to_mask(20), ip("255.255.240.0"));
        assert_eq!(prefix_to_mask(32), ip("255.255.255.255"));
    }
}
