//! Networking for the deploy image (and `anemos kexec --network keep`): `ip=` / `nameserver=` parameters, a small rtnetlink client,
//! interface discovery from sysfs, link wait, a DHCPv4 client and resolv.conf text.
//!
//! Everything that can be pure is pure (parsers, netlink and DHCP encoders, reply parsing,
//! resolv.conf) and unit-tested without root or network. The syscalls live in a handful of
//! thin wrappers at the bottom of the `sys` section, each with a `// SAFETY:` note.
#![allow(unsafe_code)]

/// Where `anemos kexec --network keep` puts what it captured (an extra cpio segment of the
/// deploy image); the init's network stage reads it.
pub const KEPT_PATH: &str = "/etc/anemos/network-kept.toml";

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// ip= and nameserver=
// ---------------------------------------------------------------------------------------------

/// One `ip=` kernel parameter (Documentation/admin-guide/nfs/nfsroot.rst).
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
fn classful_prefix(a: Ipv4Addr) -> u8 {
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

/// `/etc/resolv.conf` text: one `search` line (if any domain) and one `nameserver` line per
/// distinct server, in order. musl and glibc use only the first three servers.
pub fn resolv_conf(dns: &[IpAddr], search: &[String]) -> String {
    let mut out = String::new();
    let mut domains: Vec<&str> = Vec::new();
    for d in search.iter().map(|s| s.trim().trim_end_matches('.')) {
        if !d.is_empty() && !domains.contains(&d) {
            domains.push(d);
        }
    }
    if !domains.is_empty() {
        out.push_str("search ");
        out.push_str(&domains.join(" "));
        out.push('\n');
    }
    let mut seen: Vec<IpAddr> = Vec::new();
    for a in dns {
        if !seen.contains(a) {
            seen.push(*a);
            out.push_str(&format!("nameserver {a}\n"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// rtnetlink
// ---------------------------------------------------------------------------------------------

// Kernel ABI constants (uapi/linux/netlink.h, rtnetlink.h, if_addr.h, if_link.h). Spelled out
// here so the encoders and their tests do not depend on which of them a libc target exports.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RTA_DST: u16 = 1;
const RTA_PRIORITY: u16 = 6;
const RTNH_F_ONLINK: u32 = 4;
const RT_SCOPE_LINK: u8 = 253;
const IFF_UP: u32 = 0x1;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Start a message: a 16-byte nlmsghdr whose length is patched by [`finish`].
fn nl_header(ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
    b
}

/// Append one rtattr (len, type, payload) padded to 4 bytes.
fn push_attr(b: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(align4(b.len()), 0);
}

fn finish(mut b: Vec<u8>) -> Vec<u8> {
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b
}

/// RTM_NEWLINK: set (or clear) IFF_UP on `index`, optionally IFLA_MTU.
pub fn encode_newlink(seq: u32, index: u32, up: bool, mtu: Option<u32>) -> Vec<u8> {
    let mut b = nl_header(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
    b.push(AF_UNSPEC);
    b.push(0);
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&(if up { IFF_UP } else { 0 }).to_ne_bytes());
    b.extend_from_slice(&IFF_UP.to_ne_bytes());
    if let Some(m) = mtu {
        push_attr(&mut b, IFLA_MTU, &m.to_ne_bytes());
    }
    finish(b)
}

/// RTM_NEWADDR: `addr/prefix` on `index` with IFA_LOCAL and IFA_ADDRESS, plus IFA_BROADCAST for
/// prefixes up to /30. 127/8 addresses get host scope, like iproute2 gives them.
/// IPv6 addresses carry IFA_LOCAL and IFA_ADDRESS (like `ip -6 addr add`), link scope for fe80::/10.
pub fn encode_newaddr(seq: u32, index: u32, addr: impl Into<IpAddr>, prefix: u8) -> Vec<u8> {
    let addr = match addr.into() {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => return encode_newaddr6(seq, index, a, prefix),
    };
    let scope = if addr.is_loopback() {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut b = newaddr_head(seq, AF_INET, prefix, scope, index);
    push_attr(&mut b, IFA_LOCAL, &addr.octets());
    push_attr(&mut b, IFA_ADDRESS, &addr.octets());
    if prefix <= 30 {
        let bcast = u32::from(addr) | !u32::from(prefix_to_mask(prefix));
        push_attr(&mut b, IFA_BROADCAST, &Ipv4Addr::from(bcast).octets());
    }
    finish(b)
}

/// RTM_NEWADDR header + `struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; }`.
fn newaddr_head(seq: u32, family: u8, prefix: u8, scope: u8, index: u32) -> Vec<u8> {
    let mut b = nl_header(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    b.extend_from_slice(&[family, prefix, 0, scope]);
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

fn encode_newaddr6(seq: u32, index: u32, addr: Ipv6Addr, prefix: u8) -> Vec<u8> {
    let scope = if is_link_local6(&addr) {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut b = newaddr_head(seq, AF_INET6, prefix, scope, index);
    push_attr(&mut b, IFA_LOCAL, &addr.octets());
    push_attr(&mut b, IFA_ADDRESS, &addr.octets());
    finish(b)
}

pub fn is_link_local6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// RTM_NEWROUTE: default route (0.0.0.0/0) via `gw` out of `index`, main table, proto boot.
pub fn encode_newroute(seq: u32, index: u32, gw: Ipv4Addr) -> Vec<u8> {
    encode_route(
        seq,
        index,
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        gw.into(),
        RouteOpts::default(),
    )
}

/// Extra route attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteOpts {
    /// RTA_PRIORITY (the metric); the kernel's default when `None`.
    pub metric: Option<u32>,
    /// RTNH_F_ONLINK: the gateway is on the link although no address prefix covers it (a /32
    /// address with its gateway, as some clouds hand out).
    pub onlink: bool,
}

/// RTM_NEWROUTE: `to` (network, prefix length; /0 = default, sent without RTA_DST like
/// iproute2) via `gw` out of `index`, main table, proto boot. Both must be one family.
pub fn encode_route(seq: u32, index: u32, to: (IpAddr, u8), gw: IpAddr, o: RouteOpts) -> Vec<u8> {
    let mut b = nl_header(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    let family = if gw.is_ipv4() { AF_INET } else { AF_INET6 };
    // struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
    b.extend_from_slice(&[
        family,
        to.1,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ]);
    let flags = if o.onlink { RTNH_F_ONLINK } else { 0 };
    b.extend_from_slice(&flags.to_ne_bytes());
    if to.1 > 0 {
        push_attr(&mut b, RTA_DST, &ip_octets(to.0));
    }
    push_attr(&mut b, RTA_GATEWAY, &ip_octets(gw));
    push_attr(&mut b, RTA_OIF, &index.to_ne_bytes());
    if let Some(m) = o.metric {
        push_attr(&mut b, RTA_PRIORITY, &m.to_ne_bytes());
    }
    finish(b)
}

fn ip_octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Look for the ACK of `seq` in a buffer of netlink messages: `Some(Ok(()))` for an ACK,
/// `Some(Err(errno))` for an error ACK, `None` if the buffer holds no answer to `seq`.
pub fn parse_ack(buf: &[u8], seq: u32) -> Option<Result<(), i32>> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().ok()?);
        let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().ok()?);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && mseq == seq && len >= NLMSG_HDRLEN + 4 {
            let p = off + NLMSG_HDRLEN;
            let err = i32::from_ne_bytes(buf[p..p + 4].try_into().ok()?);
            return Some(if err == 0 { Ok(()) } else { Err(-err) });
        }
        off += align4(len);
    }
    None
}

/// A NETLINK_ROUTE socket with the few operations the init needs. Each call waits for the
/// kernel's ACK; an error ACK becomes an `io::Error` (kind from the errno) naming the operation.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let fd = sys::netlink_route_socket()?;
        sys::set_rcv_timeout(fd.as_raw_fd(), Duration::from_secs(5))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Interface index of `name` (if_nametoindex).
    pub fn link_index(&self, name: &str) -> io::Result<u32> {
        sys::if_nametoindex(name)
    }

    pub fn set_up(&mut self, index: u32, mtu: Option<u32>) -> io::Result<()> {
        let seq = self.next_seq();
        let what = match mtu {
            Some(m) => format!("RTM_NEWLINK ifindex {index} up mtu {m}"),
            None => format!("RTM_NEWLINK ifindex {index} up"),
        };
        self.request(&encode_newlink(seq, index, true, mtu), seq, &what)
    }

    pub fn add_addr_v4(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.add_addr(index, addr.into(), prefix)
    }

    pub fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("prefix /{prefix} > {max}"),
            ));
        }
        let seq = self.next_seq();
        let what = format!("RTM_NEWADDR {addr}/{prefix} on ifindex {index}");
        self.request(&encode_newaddr(seq, index, addr, prefix), seq, &what)
    }

    pub fn add_default_route_v4(&mut self, index: u32, gw: Ipv4Addr) -> io::Result<()> {
        let seq = self.next_seq();
        let what = format!("RTM_NEWROUTE default via {gw} on ifindex {index}");
        self.request(&encode_newroute(seq, index, gw), seq, &what)
    }

    /// A route to `to` via `gw`; `to` with prefix 0 is the default route of that family.
    pub fn add_route(
        &mut self,
        index: u32,
        to: (IpAddr, u8),
        gw: IpAddr,
        o: RouteOpts,
    ) -> io::Result<()> {
        if to.0.is_ipv4() != gw.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("route {}/{} via {gw}: mixed address families", to.0, to.1),
            ));
        }
        let seq = self.next_seq();
        let what = if to.1 == 0 {
            format!("RTM_NEWROUTE default via {gw} on ifindex {index}")
        } else {
            format!("RTM_NEWROUTE {}/{} via {gw} on ifindex {index}", to.0, to.1)
        };
        self.request(&encode_route(seq, index, to, gw, o), seq, &what)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn request(&mut self, msg: &[u8], seq: u32, what: &str) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let n = sys::send(fd, msg).map_err(|e| ctx(e, &format!("{what}: send")))?;
        if n != msg.len() {
            return Err(io::Error::other(format!(
                "{what}: short send ({n} of {})",
                msg.len()
            )));
        }
        let mut buf = vec![0u8; 8192];
        loop {
            let n =
                sys::recv(fd, &mut buf).map_err(|e| ctx(e, &format!("{what}: waiting for ACK")))?;
            if n == 0 {
                return Err(io::Error::other(format!("{what}: netlink socket closed")));
            }
            match parse_ack(&buf[..n], seq) {
                Some(Ok(())) => return Ok(()),
                Some(Err(errno)) => return Err(ctx(io::Error::from_raw_os_error(errno), what)),
                None => continue, // a stale answer or a notification: keep reading
            }
        }
    }
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Bring an interface up with a DHCP lease: link up (with the lease's MTU), address, default
/// route. An address or route that already exists is not an error.
#[allow(dead_code)] // kept for a future DHCP renewal path; tested
pub fn apply_lease(nl: &mut Netlink, index: u32, lease: &Lease) -> io::Result<()> {
    nl.set_up(index, lease.mtu.map(u32::from))?;
    ok_if_exists(nl.add_addr_v4(index, lease.addr, lease.prefix))?;
    if let Some(gw) = lease.router {
        ok_if_exists(nl.add_default_route_v4(index, gw))?;
    }
    Ok(())
}

/// An address or route that already exists (a retried stage) is not an error.
pub fn ok_if_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

// ---------------------------------------------------------------------------------------------
// sysfs: interfaces and carrier
// ---------------------------------------------------------------------------------------------

/// A network interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff` as in `address`.
    pub mac: String,
    /// Basename of the `device/driver` symlink; `None` for virtual interfaces.
    pub driver: Option<String>,
}

/// Interfaces under `<sysfs>/class/net` (`sysfs` is normally `/sys`), except `lo`, by name.
pub fn list_ifaces(sysfs: &Path) -> io::Result<Vec<Iface>> {
    let dir = sysfs.join("class/net");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let p = dir.join(&name);
        let mac = fs::read_to_string(p.join("address"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let driver = fs::read_link(p.join("device/driver"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
        out.push(Iface { name, mac, driver });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
#[allow(dead_code)]
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Whether sysfs says the link is up: `carrier` is 1, or `operstate` is `up`.
fn link_is_up(dir: &Path) -> bool {
    let read = |f: &str| fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
    matches!(read("carrier").as_deref(), Ok("1"))
        || matches!(read("operstate").as_deref(), Ok("up"))
}

/// Poll `<sysfs>/class/net/<name>/{carrier,operstate}` every 50 ms until the link is up or
/// `timeout` passes. The interface must already be administratively up.
pub fn wait_link(sysfs: &Path, name: &str, timeout: Duration) -> bool {
    let dir = sysfs.join("class/net").join(name);
    let deadline = Instant::now() + timeout;
    loop {
        if link_is_up(&dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// DHCPv4
// ---------------------------------------------------------------------------------------------

/// What a DHCP server handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Server identifier (option 54), else siaddr.
    pub server: Ipv4Addr,
    pub lease_secs: Option<u32>,
    pub domain: Option<String>,
    /// Domain search list (option 119, RFC 3397).
    pub search: Vec<String>,
    pub mtu: Option<u16>,
}

/// The kind of a server reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Offer,
    Ack,
    Nak,
}

// Our own DHCPv4 wire codec (RFC 2131/2132), instead of the dhcproto crate at run time:
// dhcproto pulls hickory-proto and ICU tables into the static binary (about +1 MB, past the
// image's 3 MiB budget) for the dozen fields we use. dhcproto stays a dev-dependency: the tests
// decode our requests and build server replies with it, so the two implementations agree.

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
const MSG_DISCOVER: u8 = 1;
const MSG_OFFER: u8 = 2;
const MSG_REQUEST: u8 = 3;
const MSG_ACK: u8 = 5;
const MSG_NAK: u8 = 6;
/// Parameter request list: subnet mask, router, DNS, domain name, MTU, lease time, server id,
/// domain search list.
const PARAMS: [u8; 8] = [1, 3, 6, 15, 26, 51, 54, 119];

fn base_request(mac: [u8; 6], xid: u32, kind: u8) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = OP_REQUEST;
    m[1] = 1; // htype ethernet
    m[2] = 6; // hlen
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast flag: we have no address yet
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(&[53, 1, kind]);
    m.extend_from_slice(&[61, 7, 1]);
    m.extend_from_slice(&mac);
    m.push(55);
    m.push(PARAMS.len() as u8);
    m.extend_from_slice(&PARAMS);
    m.extend_from_slice(&[57, 2]);
    m.extend_from_slice(&1500u16.to_be_bytes());
    m
}

fn finish_dhcp(mut m: Vec<u8>) -> Vec<u8> {
    m.push(255);
    // Some BOOTP relays and servers drop messages shorter than the classic 300 bytes.
    if m.len() < 300 {
        m.resize(300, 0);
    }
    m
}

/// DHCPDISCOVER, broadcast flag set, client id = 01:mac.
pub fn build_discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    finish_dhcp(base_request(mac, xid, MSG_DISCOVER))
}

/// DHCPREQUEST (SELECTING state): requested address and server id from the OFFER.
pub fn build_request(mac: [u8; 6], xid: u32, offered: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    let mut m = base_request(mac, xid, MSG_REQUEST);
    m.extend_from_slice(&[50, 4]);
    m.extend_from_slice(&offered.octets());
    m.extend_from_slice(&[54, 4]);
    m.extend_from_slice(&server.octets());
    finish_dhcp(m)
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// Options of a message as (code, value) pairs; stops at END, skips PAD.
fn options(b: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = *b.get(i + 1).ok_or("truncated DHCP option")? as usize;
                let v = b
                    .get(i + 2..i + 2 + len)
                    .ok_or_else(|| format!("DHCP option {code} runs past the end"))?;
                out.push((code, v));
                i += 2 + len;
            }
        }
    }
    Ok(out)
}

/// Parse a server reply for transaction `xid`: OFFER, ACK or NAK and the lease it carries
/// (for a NAK the lease holds only the server id). Anything else is an error.
pub fn parse_reply(bytes: &[u8], xid: u32) -> Result<(MessageKind, Lease), String> {
    if bytes.len() < 240 {
        return Err(format!(
            "bad DHCP message: {} bytes is shorter than a BOOTP header",
            bytes.len()
        ));
    }
    if bytes[0] != OP_REPLY {
        return Err("not a BOOTREPLY".into());
    }
    let got = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if got != xid {
        return Err(format!("xid {got:#010x} is not ours ({xid:#010x})"));
    }
    if bytes[236..240] != COOKIE {
        return Err("no DHCP magic cookie (plain BOOTP)".into());
    }
    let opts = options(&bytes[240..])?;
    let get = |c: u8| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| *v);
    let kind = match get(53).and_then(|v| v.first().copied()) {
        Some(MSG_OFFER) => MessageKind::Offer,
        Some(MSG_ACK) => MessageKind::Ack,
        Some(MSG_NAK) => MessageKind::Nak,
        Some(t) => return Err(format!("unexpected DHCP message type {t}")),
        None => return Err("no DHCP message type (plain BOOTP)".into()),
    };
    let addr = ip4(&bytes[16..20]).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let server = get(54)
        .and_then(ip4)
        .or_else(|| ip4(&bytes[20..24]))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let prefix = match get(1).and_then(ip4) {
        Some(mask) => {
            mask_to_prefix(mask).ok_or_else(|| format!("subnet mask {mask} is not contiguous"))?
        }
        None => classful_prefix(addr),
    };
    let router = get(3)
        .map(|v| v.chunks(4).filter_map(ip4).find(|a| !a.is_unspecified()))
        .unwrap_or(None);
    let dns: Vec<Ipv4Addr> = get(6)
        .map(|v| v.chunks(4).filter_map(ip4).collect())
        .unwrap_or_default();
    let lease_secs = get(51)
        .and_then(|v| v.get(..4))
        .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
    let domain = get(15)
        .map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .trim()
                .to_string()
        })
        .filter(|d| !d.is_empty());
    // Option 119 may be split over several instances (RFC 3396): concatenate them.
    let search_raw: Vec<u8> = opts
        .iter()
        .filter(|(k, _)| *k == 119)
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    // A malformed list (some servers send a plain string) costs the search domains, not the
    // lease.
    let search = if search_raw.is_empty() {
        Vec::new()
    } else {
        parse_search_list(&search_raw).unwrap_or_else(|e| {
            log::warn!("DHCP: ignoring a malformed domain search list (option 119): {e}");
            Vec::new()
        })
    };
    let mtu = get(26)
        .and_then(|v| v.get(..2))
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .filter(|m| *m >= 68);
    if kind != MessageKind::Nak && (addr.is_unspecified() || addr.is_broadcast()) {
        return Err(format!("{kind:?} offers no usable address ({addr})"));
    }
    Ok((
        kind,
        Lease {
            addr,
            prefix,
            router,
            dns,
            server,
            lease_secs,
            domain,
            search,
            mtu,
        },
    ))
}

/// Option 119: a sequence of DNS names in wire format, where a pointer (two bytes, top bits
/// 11) refers back to an earlier offset in the option data (RFC 3397 §2).
pub fn parse_search_list(data: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let mut labels: Vec<String> = Vec::new();
        let mut i = pos;
        let mut end: Option<usize> = None;
        let mut jumps = 0;
        loop {
            let len = *data.get(i).ok_or("name runs past the end")? as usize;
            if len == 0 {
                end.get_or_insert(i + 1);
                break;
            }
            if len & 0xc0 == 0xc0 {
                let lo = *data.get(i + 1).ok_or("pointer runs past the end")? as usize;
                end.get_or_insert(i + 2);
                let target = ((len & 0x3f) << 8) | lo;
                jumps += 1;
                if target >= i || jumps > 64 {
                    return Err(format!("bad compression pointer to offset {target}"));
                }
                i = target;
                continue;
            }
            if len & 0xc0 != 0 {
                return Err(format!("bad label length byte {len:#04x}"));
            }
            let l = data
                .get(i + 1..i + 1 + len)
                .ok_or("label runs past the end")?;
            if !l
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            {
                return Err(format!(
                    "label {:?} is not a host name label",
                    String::from_utf8_lossy(l)
                ));
            }
            labels.push(String::from_utf8_lossy(l).into_owned());
            i += 1 + len;
        }
        let name = labels.join(".");
        if name.len() > 253 {
            return Err("name longer than 253 bytes".into());
        }
        if !name.is_empty() {
            out.push(name);
        }
        pos = end.unwrap_or(data.len());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// IPv6: SLAAC is the kernel's job (accept_ra + autoconf); we switch it on or off per interface
// and watch /proc/net/if_inet6 and /proc/net/ipv6_route for what it configured.
// ---------------------------------------------------------------------------------------------

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

/// (interface, address, prefix length) of every IPv4 address on this system (getifaddrs).
pub fn ipv4_addresses() -> io::Result<Vec<(String, Ipv4Addr, u8)>> {
    sys::ipv4_addresses()
}

/// Whether the kernel has IPv6 (not built without it, not `ipv6.disable=1`).
pub fn ipv6_available() -> bool {
    Path::new("/proc/sys/net/ipv6").is_dir()
}

/// Run DISCOVER → OFFER → REQUEST → ACK on `iface` (which must be up). Each step is retried
/// with a 1, 2, 4, 4… s wait; a NAK or an unanswered REQUEST starts over; `timeout` bounds
/// the whole exchange. Returns the ACKed lease; configuring the interface is the caller's
/// job (see [`apply_lease`]).
pub fn dhcp(iface: &str, mac: [u8; 6], xid: u32, timeout: Duration) -> io::Result<Lease> {
    let sock = sys::dhcp_socket(iface)?;
    let deadline = Instant::now() + timeout;
    let dest = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    let discover = build_discover(mac, xid);
    let mut buf = vec![0u8; 1500];
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("DHCP on {iface}: no lease within {}s", timeout.as_secs()),
        )
    };
    loop {
        // SELECTING: DISCOVER until an OFFER arrives.
        let offer = exchange(&sock, &discover, dest, deadline, &mut buf, xid, &mac, |k| {
            k == MessageKind::Offer
        })?;
        let Some((_, offer)) = offer else {
            return Err(timed_out());
        };
        log::info!(
            "dhcp {iface}: offer {}/{} from {}",
            offer.addr,
            offer.prefix,
            offer.server
        );
        // REQUESTING: REQUEST until ACK or NAK.
        let request = build_request(mac, xid, offer.addr, offer.server);
        let reply = exchange(&sock, &request, dest, deadline, &mut buf, xid, &mac, |k| {
            k != MessageKind::Offer
        })?;
        match reply {
            Some((MessageKind::Ack, lease)) => {
                log::info!(
                    "dhcp {iface}: ack {}/{} router {:?}",
                    lease.addr,
                    lease.prefix,
                    lease.router
                );
                return Ok(lease);
            }
            Some((_, nak)) => log::warn!("dhcp {iface}: NAK from {}, starting over", nak.server),
            None if Instant::now() >= deadline => return Err(timed_out()),
            None => log::warn!("dhcp {iface}: no ACK, starting over"),
        }
    }
}

/// Send `msg` and wait for a reply accepted by `want`, resending with backoff (1, 2, 4, 4 s);
/// gives up after 4 sends or at `deadline` (`Ok(None)`).
#[allow(clippy::too_many_arguments)]
fn exchange(
    sock: &UdpSocket,
    msg: &[u8],
    dest: SocketAddr,
    deadline: Instant,
    buf: &mut [u8],
    xid: u32,
    mac: &[u8; 6],
    want: impl Fn(MessageKind) -> bool,
) -> io::Result<Option<(MessageKind, Lease)>> {
    for wait in [1u64, 2, 4, 4] {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        sock.send_to(msg, dest)?;
        let until = (now + Duration::from_secs(wait)).min(deadline);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let n = match sock.recv_from(buf) {
                Ok((n, _)) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let pkt = &buf[..n];
            // chaddr at offset 28: another client's reply (same xid by chance) is not ours.
            if pkt.len() < 34 || &pkt[28..34] != mac {
                continue;
            }
            match parse_reply(pkt, xid) {
                Ok((k, l)) if want(k) => return Ok(Some((k, l))),
                Ok(_) => {}
                Err(e) => log::debug!("dhcp: ignoring reply: {e}"),
            }
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// The syscalls: thin wrappers, the only unsafe code in the module.
// ---------------------------------------------------------------------------------------------

mod sys {
    use super::*;
    use std::ffi::{CStr, CString};
    use std::mem::size_of;

    fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
        // SAFETY: socket(2) takes no pointers; a non-negative return is a fresh fd we own.
        let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
        // SAFETY: `fd` was just returned by socket(2) and nothing else holds it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn setsockopt_bytes(
        fd: RawFd,
        level: libc::c_int,
        opt: libc::c_int,
        val: &[u8],
    ) -> io::Result<()> {
        // SAFETY: `val` is a live slice for the duration of the call and its length is passed.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                val.as_ptr().cast(),
                val.len() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    fn setsockopt_int(
        fd: RawFd,
        level: libc::c_int,
        opt: libc::c_int,
        v: libc::c_int,
    ) -> io::Result<()> {
        setsockopt_bytes(fd, level, opt, &v.to_ne_bytes())
    }

    pub fn set_rcv_timeout(fd: RawFd, t: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            #[allow(deprecated)]
            tv_sec: t.as_secs() as libc::time_t,
            #[allow(deprecated)]
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a plain C struct living on the stack for the call; size is exact.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// NETLINK_ROUTE socket bound to a kernel-assigned port id.
    pub fn netlink_route_socket() -> io::Result<OwnedFd> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (pid 0 = let the
        // kernel pick, no groups).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and the length passed is its size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(fd)
    }

    pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
            let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
            let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub fn if_nametoindex(name: &str) -> io::Result<u32> {
        let c = CString::new(name).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if i == 0 {
            let e = io::Error::last_os_error();
            let e = if e.raw_os_error() == Some(0) {
                io::Error::from(io::ErrorKind::NotFound)
            } else {
                e
            };
            return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
        }
        Ok(i)
    }

    /// UDP socket on 0.0.0.0:68, bound to `iface` (SO_BINDTODEVICE, set before bind so one
    /// socket per interface can coexist), broadcast allowed.
    pub fn dhcp_socket(iface: &str) -> io::Result<UdpSocket> {
        udp_socket_on(iface, 68)
    }

    pub fn udp_socket_on(iface: &str, port: u16) -> io::Result<UdpSocket> {
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP)?;
        let raw = fd.as_raw_fd();
        let e = |what: &str, err: io::Error| {
            io::Error::new(err.kind(), format!("DHCP socket on {iface}: {what}: {err}"))
        };
        setsockopt_bytes(
            raw,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            iface.as_bytes(),
        )
        .map_err(|x| e("SO_BINDTODEVICE", x))?;
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|x| e("SO_REUSEADDR", x))?;
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)
            .map_err(|x| e("SO_BROADCAST", x))?;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        // SAFETY: `sa` is a valid sockaddr_in and the length passed is its size.
        cvt(unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })
        .map_err(|x| e(&format!("bind 0.0.0.0:{port}"), x))?;
        Ok(UdpSocket::from(fd))
    }

    /// (interface, address, prefix length) of every IPv4 address, from getifaddrs(3).
    pub fn ipv4_addresses() -> io::Result<Vec<(String, Ipv4Addr, u8)>> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut p = head;
        while !p.is_null() {
            // SAFETY: p is a node of the list getifaddrs returned, not yet freed. For
            // AF_INET entries ifa_addr and ifa_netmask point to sockaddr_in.
            unsafe {
                let ifa = &*p;
                if !ifa.ifa_addr.is_null()
                    && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
                    && !ifa.ifa_netmask.is_null()
                {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    let addr = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    let mask = Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr));
                    let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                    if let Some(prefix) = super::mask_to_prefix(mask) {
                        out.push((name, addr, prefix));
                    }
                }
                p = ifa.ifa_next;
            }
        }
        // SAFETY: head came from getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(head) };
        Ok(out)
    }

    /// Move the calling thread into a fresh network namespace (tests only).
    #[cfg(test)]
    pub fn unshare_net() -> io::Result<()> {
        // SAFETY: unshare(2) takes no pointers; it only affects the calling thread.
        cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map(drop)
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};

    /// Encodes with dhcproto (test-only: server replies for our parser).
    fn encode_msg(m: &Message) -> Vec<u8> {
        let mut buf = Vec::with_capacity(300);
        let mut e = Encoder::new(&mut buf);
        m.encode(&mut e).expect("encode DHCP message");
        buf
    }

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

    #[test]
    fn resolv_conf_text() {
        let dns: Vec<IpAddr> = vec![
            "10.0.2.3".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
            "10.0.2.3".parse().unwrap(),
        ];
        assert_eq!(
            resolv_conf(
                &dns,
                &[
                    "example.com".into(),
                    "lab.example.com.".into(),
                    "example.com".into()
                ]
            ),
            "search example.com lab.example.com\nnameserver 10.0.2.3\nnameserver 2001:db8::53\n"
        );
        assert_eq!(resolv_conf(&[], &[]), "");
    }

    #[test]
    fn mac_parse() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:5g"), None);
    }

    // Netlink is host byte order; these expectations are written out for little endian.
    #[cfg(target_endian = "little")]
    #[test]
    fn newlink_bytes() {
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            40, 0, 0, 0,   16, 0,   5, 0,   7, 0, 0, 0,   0, 0, 0, 0,   // len 40, RTM_NEWLINK, REQUEST|ACK, seq 7, pid 0
            0, 0, 0, 0,    3, 0, 0, 0,    1, 0, 0, 0,    1, 0, 0, 0,     // AF_UNSPEC, pad, type 0, index 3, flags IFF_UP, change IFF_UP
            8, 0, 4, 0,    0xdc, 0x05, 0, 0,                             // IFLA_MTU = 1500
        ];
        assert_eq!(encode_newlink(7, 3, true, Some(1500)), want);
        #[rustfmt::skip]
        let down: Vec<u8> = vec![
            32, 0, 0, 0,   16, 0,   5, 0,   1, 0, 0, 0,   0, 0, 0, 0,
            0, 0, 0, 0,    2, 0, 0, 0,    0, 0, 0, 0,    1, 0, 0, 0,     // flags 0, change IFF_UP: down
        ];
        assert_eq!(encode_newlink(1, 2, false, None), down);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn newaddr_bytes() {
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            48, 0, 0, 0,   20, 0,   0x05, 0x06,   9, 0, 0, 0,   0, 0, 0, 0, // RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE (0x605)
            2, 24, 0, 0,   2, 0, 0, 0,                                      // AF_INET, /24, flags 0, scope universe, index 2
            8, 0, 2, 0,    10, 0, 2, 15,                                    // IFA_LOCAL
            8, 0, 1, 0,    10, 0, 2, 15,                                    // IFA_ADDRESS
            8, 0, 4, 0,    10, 0, 2, 255,                                   // IFA_BROADCAST
        ];
        assert_eq!(encode_newaddr(9, 2, ip("10.0.2.15"), 24), want);
        // /32: no broadcast; loopback gets host scope.
        #[rustfmt::skip]
        let lo: Vec<u8> = vec![
            40, 0, 0, 0,   20, 0,   0x05, 0x06,   1, 0, 0, 0,   0, 0, 0, 0,
            2, 32, 0, 254,   1, 0, 0, 0,
            8, 0, 2, 0,    127, 0, 0, 2,
            8, 0, 1, 0,    127, 0, 0, 2,
        ];
        assert_eq!(encode_newaddr(1, 1, ip("127.0.0.2"), 32), lo);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn newroute_bytes() {
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            44, 0, 0, 0,   24, 0,   0x05, 0x06,   3, 0, 0, 0,   0, 0, 0, 0, // RTM_NEWROUTE, 0x605
            2, 0, 0, 0,    254, 3, 0, 1,    0, 0, 0, 0,                     // AF_INET, dst/src 0, tos 0, main, boot, universe, unicast, flags 0
            8, 0, 5, 0,    10, 0, 2, 2,                                     // RTA_GATEWAY
            8, 0, 4, 0,    2, 0, 0, 0,                                      // RTA_OIF = 2
        ];
        assert_eq!(encode_newroute(3, 2, ip("10.0.2.2")), want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_addr_and_route_bytes() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let o = a.octets();
        let mut want: Vec<u8> = vec![
            64, 0, 0, 0, 20, 0, 0x05, 0x06, 4, 0, 0, 0, 0, 0, 0, 0, // RTM_NEWADDR
            10, 64, 0, 0, 3, 0, 0, 0, // AF_INET6, /64, universe, index 3
            20, 0, 2, 0, // IFA_LOCAL
        ];
        want.extend_from_slice(&o);
        want.extend_from_slice(&[20, 0, 1, 0]); // IFA_ADDRESS
        want.extend_from_slice(&o);
        assert_eq!(encode_newaddr(4, 3, IpAddr::V6(a), 64), want);
        // fe80::/10 gets link scope.
        let ll = encode_newaddr(4, 3, IpAddr::V6("fe80::1".parse().unwrap()), 64);
        assert_eq!(ll[19], RT_SCOPE_LINK);
        // A v6 route with a destination: RTA_DST then RTA_GATEWAY then RTA_OIF.
        let dst: Ipv6Addr = "2001:db8:1::".parse().unwrap();
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let r = encode_route(
            7,
            3,
            (IpAddr::V6(dst), 48),
            IpAddr::V6(gw),
            RouteOpts::default(),
        );
        assert_eq!(r.len(), 16 + 12 + 20 + 20 + 8);
        assert_eq!(&r[16..18], &[AF_INET6, 48]);
        assert_eq!(&r[28..32], &[20, 0, 1, 0]);
        assert_eq!(&r[32..48], &dst.octets());
        assert_eq!(&r[48..52], &[20, 0, 5, 0]);
        assert_eq!(&r[52..68], &gw.octets());
        // The v4 default route is the same message as before (no RTA_DST for /0).
        assert_eq!(
            encode_route(
                3,
                2,
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                IpAddr::V4(ip("10.0.2.2")),
                RouteOpts::default()
            ),
            encode_newroute(3, 2, ip("10.0.2.2"))
        );
        // Metric and onlink: rtm_flags = 4, RTA_PRIORITY after RTA_OIF.
        let m = encode_route(
            3,
            2,
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V4(ip("172.31.1.1")),
            RouteOpts {
                metric: Some(101),
                onlink: true,
            },
        );
        assert_eq!(&m[24..28], &4u32.to_ne_bytes());
        assert_eq!(&m[m.len() - 8..], &[8, 0, 6, 0, 101, 0, 0, 0]);
    }

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

    #[test]
    fn search_list_option_119() {
        // RFC 3397 section 2's example: eng.apple.com, marketing.apple.com (compressed).
        let data = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04";
        assert_eq!(
            parse_search_list(data).unwrap(),
            ["eng.apple.com", "marketing.apple.com"]
        );
        assert!(parse_search_list(b"\x03en").is_err());
        // A pointer to itself or forward is refused (no loops).
        assert!(parse_search_list(b"\x03foo\xc0\x04")
            .unwrap_err()
            .contains("pointer"));
        assert!(parse_search_list(b"\x02a b\x00").is_err());
        // dhcproto encodes the same list; we decode it to the same names.
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(XID)
            .set_yiaddr(ip("10.0.2.15"));
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::ServerIdentifier(ip("10.0.2.2")));
        o.insert(DhcpOption::SubnetMask(ip("255.255.255.0")));
        o.insert(DhcpOption::DomainSearch(vec![
            "lab.example.org".parse().unwrap(),
            "example.org".parse().unwrap(),
        ]));
        let (_, l) = parse_reply(&encode_msg(&m), XID).unwrap();
        assert_eq!(l.search, ["lab.example.org", "example.org"]);
        // Option 119 sent as a plain string: the lease stands, without search domains.
        let mut raw = encode_msg(&m);
        let end = raw.iter().rposition(|b| *b == 255).unwrap();
        raw.truncate(end);
        let mut bad = raw[..240].to_vec();
        let opts = options(&raw[240..]).unwrap();
        for (k, v) in opts.iter().filter(|(k, _)| *k != 119) {
            bad.push(*k);
            bad.push(v.len() as u8);
            bad.extend_from_slice(v);
        }
        bad.extend_from_slice(&[119, 11]);
        bad.extend_from_slice(b"example.org");
        bad.push(255);
        let (k, l) = parse_reply(&bad, XID).unwrap();
        assert_eq!(
            (k, l.addr, l.search.len()),
            (MessageKind::Ack, ip("10.0.2.15"), 0)
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn attr_padding() {
        let mut b = vec![];
        push_attr(&mut b, 3, b"eth0\0"); // rta_len 4 + 5 = 9, padded to 12
        assert_eq!(b, vec![9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0]);
        push_attr(&mut b, 4, &[]); // empty attribute: just the 4-byte header
        assert_eq!(b[12..], [4, 0, 4, 0]);
    }

    #[test]
    fn ack_parsing() {
        let mk = |seq: u32, err: i32| {
            let mut b = nl_header(NLMSG_ERROR, 0, seq);
            b.extend_from_slice(&err.to_ne_bytes());
            b.extend_from_slice(&nl_header(RTM_NEWADDR, 0, seq)); // echoed request header
            finish(b)
        };
        assert_eq!(parse_ack(&mk(5, 0), 5), Some(Ok(())));
        assert_eq!(parse_ack(&mk(5, -17), 5), Some(Err(17)));
        assert_eq!(parse_ack(&mk(4, 0), 5), None);
        // Two messages in one datagram: a stale one then ours.
        let two = [mk(4, -1), mk(6, -19)].concat();
        assert_eq!(parse_ack(&two, 6), Some(Err(19)));
        assert_eq!(parse_ack(&two[..10], 6), None);
    }

    #[test]
    fn ifaces_from_fake_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("class/net");
        let mk = |name: &str, mac: &str, driver: Option<&str>| {
            let d = net.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("address"), format!("{mac}\n")).unwrap();
            if let Some(drv) = driver {
                let target = t.path().join("bus/pci/drivers").join(drv);
                fs::create_dir_all(&target).unwrap();
                fs::create_dir_all(d.join("device")).unwrap();
                std::os::unix::fs::symlink(&target, d.join("device/driver")).unwrap();
            }
        };
        mk("lo", "00:00:00:00:00:00", None);
        mk("eth1", "52:54:00:00:00:02", Some("e1000"));
        mk("eth0", "52:54:00:12:34:56", Some("virtio_net"));
        mk("dummy0", "aa:bb:cc:dd:ee:ff", None);
        let got = list_ifaces(t.path()).unwrap();
        let want = vec![
            Iface {
                name: "dummy0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                driver: None,
            },
            Iface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: Some("virtio_net".into()),
            },
            Iface {
                name: "eth1".into(),
                mac: "52:54:00:00:00:02".into(),
                driver: Some("e1000".into()),
            },
        ];
        assert_eq!(got, want);
        assert!(list_ifaces(&t.path().join("nope")).is_err());

        // wait_link: down then up.
        let d = net.join("eth0");
        fs::write(d.join("operstate"), "down\n").unwrap();
        assert!(!wait_link(t.path(), "eth0", Duration::from_millis(120)));
        fs::write(d.join("carrier"), "1\n").unwrap();
        assert!(wait_link(t.path(), "eth0", Duration::from_millis(0)));
        fs::remove_file(d.join("carrier")).unwrap();
        fs::write(d.join("operstate"), "up\n").unwrap();
        assert!(wait_link(t.path(), "eth0", Duration::from_secs(1)));
        assert!(!wait_link(t.path(), "missing", Duration::from_millis(60)));
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const XID: u32 = 0x1234_5678;

    /// A reply as QEMU's slirp sends it (slirp/src/bootp.c: siaddr = server, options 53, 54,
    /// 51, 1, 3, 6 in that order).
    fn slirp_reply(kind: MessageType, xid: u32) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, ip("10.0.2.15"), ip("10.0.2.2"), z, &MAC);
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(ip("10.0.2.2")));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::SubnetMask(ip("255.255.255.0")));
        o.insert(DhcpOption::Router(vec![ip("10.0.2.2")]));
        o.insert(DhcpOption::DomainNameServer(vec![ip("10.0.2.3")]));
        encode_msg(&m)
    }

    fn slirp_lease() -> Lease {
        Lease {
            addr: ip("10.0.2.15"),
            prefix: 24,
            router: Some(ip("10.0.2.2")),
            dns: vec![ip("10.0.2.3")],
            server: ip("10.0.2.2"),
            lease_secs: Some(86400),
            domain: None,
            search: vec![],
            mtu: None,
        }
    }

    #[test]
    fn dhcp_offer_and_ack() {
        assert_eq!(
            parse_reply(&slirp_reply(MessageType::Offer, XID), XID),
            Ok((MessageKind::Offer, slirp_lease()))
        );
        assert_eq!(
            parse_reply(&slirp_reply(MessageType::Ack, XID), XID),
            Ok((MessageKind::Ack, slirp_lease()))
        );
    }

    #[test]
    fn dhcp_wrong_xid_nak_and_junk() {
        let e = parse_reply(&slirp_reply(MessageType::Offer, XID + 1), XID).unwrap_err();
        assert!(e.contains("xid"), "{e}");
        let (k, l) = parse_reply(&slirp_reply(MessageType::Nak, XID), XID).unwrap();
        assert_eq!(k, MessageKind::Nak);
        assert_eq!(l.server, ip("10.0.2.2"));
        assert!(parse_reply(&slirp_reply(MessageType::Discover, XID), XID).is_err());
        assert!(parse_reply(&[1, 2, 3], XID).is_err());
        // Our own DISCOVER (a BOOTREQUEST) echoed back is not a reply.
        assert!(parse_reply(&build_discover(MAC, XID), XID)
            .unwrap_err()
            .contains("BOOTREPLY"));
    }

    /// A hand-assembled OFFER byte for byte as slirp's bootp.c lays it out (not decoded by
    /// dhcproto to build it), with extra options 15 (domain) and 26 (MTU).
    #[test]
    fn dhcp_raw_offer_bytes() {
        let mut p = vec![0u8; 236];
        p[0] = 2; // BOOTREPLY
        p[1] = 1; // ethernet
        p[2] = 6;
        p[4..8].copy_from_slice(&XID.to_be_bytes());
        p[10] = 0x80; // broadcast flag echoed
        p[16..20].copy_from_slice(&[10, 0, 2, 15]); // yiaddr
        p[20..24].copy_from_slice(&[10, 0, 2, 2]); // siaddr
        p[28..34].copy_from_slice(&MAC);
        p.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
        p.extend_from_slice(&[53, 1, 2]); // OFFER
        p.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]); // 86400
        p.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        p.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
        p.extend_from_slice(&[6, 4, 10, 0, 2, 3]);
        p.extend_from_slice(&[15, 8]);
        p.extend_from_slice(b"qemu.lan");
        p.extend_from_slice(&[26, 2, 0x05, 0xdc]); // 1500
        p.push(255);
        p.resize(300, 0); // BOOTP minimum size padding
        let want = Lease {
            domain: Some("qemu.lan".into()),
            mtu: Some(1500),
            ..slirp_lease()
        };
        assert_eq!(parse_reply(&p, XID), Ok((MessageKind::Offer, want)));
    }

    /// Packets captured from a live QEMU (slirp, `-netdev user,restrict=on`) talking to this init
    /// by qemu-tests/capture-dhcp.sh: our DISCOVER and REQUEST, slirp's OFFER and ACK.
    #[test]
    fn dhcp_captured_from_live_qemu() {
        let cap = |n: &str| {
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/init/testdata/").to_owned() + n)
                .unwrap()
        };
        let discover = cap("slirp-dhcp-1-discover.bin");
        let offer = cap("slirp-dhcp-2-offer.bin");
        let request = cap("slirp-dhcp-3-request.bin");
        let ack = cap("slirp-dhcp-4-ack.bin");
        let xid = u32::from_be_bytes(discover[4..8].try_into().unwrap());
        let mac: [u8; 6] = discover[28..34].try_into().unwrap();
        // What we sent then is what we build now, byte for byte.
        assert_eq!(discover, build_discover(mac, xid));
        assert_eq!(
            request,
            build_request(mac, xid, ip("10.0.2.15"), ip("10.0.2.2"))
        );
        // slirp's replies, as restrict=on sends them: mask, lease time, server id; no router, no DNS.
        let want = Lease {
            router: None,
            dns: vec![],
            ..slirp_lease()
        };
        assert_eq!(
            parse_reply(&offer, xid),
            Ok((MessageKind::Offer, want.clone()))
        );
        assert_eq!(parse_reply(&ack, xid), Ok((MessageKind::Ack, want)));
        assert!(parse_reply(&ack, xid ^ 1).is_err());
        // dhcproto reads the captured replies the same way.
        let m = Message::decode(&mut Decoder::new(&ack)).unwrap();
        assert_eq!((m.xid(), m.yiaddr()), (xid, ip("10.0.2.15")));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn dhcp_requests_are_well_formed() {
        let d = build_discover(MAC, XID);
        assert_eq!(d[0], 1, "BOOTREQUEST");
        assert_eq!(&d[4..8], &XID.to_be_bytes());
        assert_eq!(&d[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&d[28..34], &MAC);
        assert_eq!(&d[236..240], &[99, 130, 83, 99]);
        let m = Message::decode(&mut Decoder::new(&d)).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert!(m.opts().get(OptionCode::RequestedIpAddress).is_none());

        let r = build_request(MAC, XID, ip("10.0.2.15"), ip("10.0.2.2"));
        let m = Message::decode(&mut Decoder::new(&r)).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(m.xid(), XID);
        assert!(m.flags().broadcast());
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ip("10.0.2.15")))
        );
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(ip("10.0.2.2")))
        );
        let mut cid = vec![1];
        cid.extend_from_slice(&MAC);
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(cid))
        );
    }

    // -----------------------------------------------------------------------------------------
    // Privileged: run in a fresh network namespace on a dedicated thread; SKIP if not permitted.
    // -----------------------------------------------------------------------------------------

    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || match sys::unshare_net() {
            Ok(()) => Some(f()),
            Err(e) => {
                eprintln!("SKIP: unshare(CLONE_NEWNET): {e}");
                None
            }
        })
        .join()
        .unwrap()
    }

    fn ip_cmd(args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("ip").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn netns_netlink_ops() {
        in_netns(|| {
            let mut nl = Netlink::open().unwrap();
            let lo = nl.link_index("lo").unwrap();
            assert_eq!(lo, 1);
            assert!(nl.link_index("nope0").is_err());
            nl.set_up(lo, None).unwrap();
            nl.add_addr_v4(lo, ip("127.0.0.2"), 8).unwrap();
            let e = nl.add_addr_v4(lo, ip("127.0.0.2"), 8).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("RTM_NEWADDR 127.0.0.2/8"), "{e}");
            let Some(out) = ip_cmd(&["-4", "addr", "show", "dev", "lo"]) else {
                eprintln!("SKIP: no usable `ip` to verify");
                return;
            };
            assert!(out.contains("inet 127.0.0.2/8"), "{out}");
            assert!(out.contains("UP"), "{out}");

            // A veth link (dummy may not be built) for MTU, a universe address and the route.
            if ip_cmd(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]).is_none() {
                eprintln!("SKIP: cannot create a veth pair");
                return;
            }
            let v0 = nl.link_index("v0").unwrap();
            nl.set_up(v0, Some(1400)).unwrap();
            nl.add_addr_v4(v0, ip("10.9.0.2"), 24).unwrap();
            nl.add_default_route_v4(v0, ip("10.9.0.1")).unwrap();
            let e = nl.add_default_route_v4(v0, ip("10.9.0.1")).unwrap_err();
            assert!(e.to_string().contains("RTM_NEWROUTE"), "{e}");
            let link = ip_cmd(&["link", "show", "v0"]).unwrap();
            assert!(link.contains("mtu 1400"), "{link}");
            let addr = ip_cmd(&["-4", "addr", "show", "dev", "v0"]).unwrap();
            assert!(addr.contains("inet 10.9.0.2/24 brd 10.9.0.255"), "{addr}");
            let route = ip_cmd(&["-d", "-4", "route", "show", "default"]).unwrap();
            assert!(
                route.contains("unicast default via 10.9.0.1 dev v0 proto boot scope global"),
                "{route}"
            );
            // A static route, and IPv6: address, route to a prefix, default route.
            nl.add_route(
                v0,
                (ip("10.10.0.0").into(), 16),
                ip("10.9.0.1").into(),
                RouteOpts::default(),
            )
            .unwrap();
            // A gateway outside every prefix is accepted on-link, with a metric.
            nl.add_route(
                v0,
                (ip("0.0.0.0").into(), 0),
                ip("172.31.1.1").into(),
                RouteOpts {
                    metric: Some(300),
                    onlink: true,
                },
            )
            .unwrap();
            let r = ip_cmd(&["-4", "route", "show", "default", "metric", "300"]).unwrap();
            assert!(
                r.contains("default via 172.31.1.1 dev v0") && r.contains("onlink"),
                "{r}"
            );
            let r4 = ip_cmd(&["-4", "route", "show", "10.10.0.0/16"]).unwrap();
            assert!(r4.contains("10.10.0.0/16 via 10.9.0.1 dev v0"), "{r4}");
            if ipv6_available() {
                set_ipv6_conf("v0", "accept_ra", "0").unwrap();
                let a6: IpAddr = "fd00:9::2".parse().unwrap();
                nl.add_addr(v0, a6, 64).unwrap();
                let gw6: IpAddr = "fd00:9::1".parse().unwrap();
                let o = RouteOpts::default();
                nl.add_route(v0, ("fd00:10::".parse().unwrap(), 48), gw6, o)
                    .unwrap();
                nl.add_route(v0, ("::".parse().unwrap(), 0), gw6, o)
                    .unwrap();
                let a = ip_cmd(&["-6", "addr", "show", "dev", "v0"]).unwrap();
                assert!(a.contains("inet6 fd00:9::2/64 scope global"), "{a}");
                let r = ip_cmd(&["-6", "route", "show", "dev", "v0"]).unwrap();
                assert!(r.contains("fd00:10::/48 via fd00:9::1"), "{r}");
                assert!(r.contains("default via fd00:9::1"), "{r}");
                // /proc/net is the thread group leader's namespace; this thread unshared.
                let t = std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap();
                assert!(
                    parse_if_inet6(&t)
                        .iter()
                        .any(|x| x.iface == "v0"
                            && x.addr == "fd00:9::2".parse::<Ipv6Addr>().unwrap())
                );
                let rt = std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
                assert_eq!(
                    ipv6_default_gateway(&rt, "v0"),
                    Some("fd00:9::1".parse().unwrap())
                );
                assert!(nl
                    .add_route(v0, ("::".parse().unwrap(), 0), ip("10.9.0.1").into(), o)
                    .unwrap_err()
                    .to_string()
                    .contains("mixed address families"));
            } else {
                eprintln!("SKIP: IPv6 part (no IPv6 in this kernel)");
            }
            // Gateway off-link is refused with an error naming the operation.
            let e = nl.add_default_route_v4(v0, ip("192.0.2.1")).unwrap_err();
            assert!(
                e.to_string().contains("RTM_NEWROUTE default via 192.0.2.1"),
                "{e}"
            );
        });
    }

    /// End to end: dhcp() on one end of a veth pair against a tiny slirp-like server on the
    /// other, which ignores the first DISCOVER so the retry path runs; then apply_lease.
    #[test]
    fn netns_dhcp_end_to_end() {
        in_netns(|| {
            if ip_cmd(&["link", "add", "c0", "type", "veth", "peer", "name", "s0"]).is_none() {
                eprintln!("SKIP: cannot create a veth pair");
                return;
            }
            let mut nl = Netlink::open().unwrap();
            let c0 = nl.link_index("c0").unwrap();
            nl.set_up(c0, None).unwrap();
            let mac =
                parse_mac(&fs::read_to_string("/sys/class/net/c0/address").unwrap_or_default())
                    .unwrap_or(MAC);
            // The server end lives in a namespace of its own (in one namespace the kernel
            // delivers the broadcasts locally instead of across the veth).
            let (tx, rx) = std::sync::mpsc::channel::<u32>();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let server = std::thread::spawn(move || {
                sys::unshare_net().unwrap();
                // SAFETY: gettid takes no arguments and cannot fail.
                tx.send(unsafe { libc::gettid() } as u32).unwrap();
                go_rx.recv().unwrap();
                let mut nl = Netlink::open().unwrap();
                let s0 = nl.link_index("s0").unwrap();
                nl.set_up(s0, None).unwrap();
                nl.add_addr_v4(s0, ip("10.0.2.2"), 24).unwrap();
                let srv = sys::udp_socket_on("s0", 67).unwrap();
                let mut buf = [0u8; 1500];
                let mut discovers = 0;
                srv.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                loop {
                    let (n, _) = srv.recv_from(&mut buf).expect("server recv");
                    let m = Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
                    let reply = match m.opts().msg_type() {
                        Some(MessageType::Discover) => {
                            discovers += 1;
                            if discovers == 1 {
                                continue;
                            }
                            MessageType::Offer
                        }
                        Some(MessageType::Request) => MessageType::Ack,
                        t => panic!("server got {t:?}"),
                    };
                    let mut r =
                        Message::decode(&mut Decoder::new(&slirp_reply(reply, m.xid()))).unwrap();
                    r.set_chaddr(&m.chaddr()[..6]);
                    r.set_flags(m.flags());
                    let dst = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
                    srv.send_to(&encode_msg(&r), dst).unwrap();
                    if reply == MessageType::Ack {
                        return discovers;
                    }
                }
            });
            let tid = rx.recv().unwrap().to_string();
            ip_cmd(&["link", "set", "s0", "netns", &tid]).expect("move s0 to the server namespace");
            go_tx.send(()).unwrap();
            let t0 = Instant::now();
            let lease = dhcp("c0", mac, 0xabcd_0001, Duration::from_secs(10)).unwrap();
            assert_eq!(lease, slirp_lease());
            assert_eq!(
                server.join().unwrap(),
                2,
                "first DISCOVER ignored, second answered"
            );
            assert!(
                t0.elapsed() >= Duration::from_millis(900),
                "retry waited ~1 s"
            );
            apply_lease(&mut nl, c0, &lease).unwrap();
            apply_lease(&mut nl, c0, &lease).unwrap(); // idempotent
            let addr = ip_cmd(&["-4", "addr", "show", "dev", "c0"]).unwrap();
            assert!(addr.contains("inet 10.0.2.15/24"), "{addr}");
            let route = ip_cmd(&["-4", "route", "show", "default"]).unwrap();
            assert!(route.contains("default via 10.0.2.2 dev c0"), "{route}");

            // Nobody answering (the server's namespace, and so the veth pair, is gone; lo only
            // echoes our own DISCOVERs, which must be ignored): a timeout error within the bound.
            nl.set_up(1, None).unwrap();
            let t0 = Instant::now();
            let e = dhcp("lo", mac, 0xabcd_0002, Duration::from_millis(1500)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            assert!(t0.elapsed() < Duration::from_secs(3));
        });
    }
}
