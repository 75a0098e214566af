//! A small rtnetlink client: the RTM_NEWLINK / RTM_NEWADDR / RTM_NEWROUTE encoders (pure,
//! tested byte for byte) and a NETLINK_ROUTE socket that sends them and waits for the ACK.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::{ctx, is_link_local6, prefix_to_mask, sys};

// Kernel ABI constants (the Linux netlink, rtnetlink, if_addr and if_link UAPI headers). Spelled
// out here so the encoders and their tests do not depend on which of them a libc target exports.
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
        sys::set_rcv_timeout(&fd, Duration::from_secs(5))?;
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
        let fd = &self.fd;
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

/// An address or route that already exists (a retried stage) is not an error.
pub fn ok_if_exists(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testns::{in_netns, ip_cmd};
    use crate::net::{ipv6_available, ipv6_default_gateway, parse_if_inet6, set_ipv6_conf};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The IPv4 default route via `gw`.
    fn encode_newroute(seq: u32, index: u32, gw: Ipv4Addr) -> Vec<u8> {
        let any = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        encode_route(seq, index, any, gw.into(), RouteOpts::default())
    }

    const DEFAULT4: (IpAddr, u8) = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

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
    fn netns_netlink_ops() {
        const T: &str = "netns_netlink_ops";
        in_netns(T, || {
            let mut nl = Netlink::open().unwrap();
            let lo = nl.link_index("lo").unwrap();
            assert_eq!(lo, 1);
            assert!(nl.link_index("nope0").is_err());
            nl.set_up(lo, None).unwrap();
            nl.add_addr(lo, ip("127.0.0.2").into(), 8).unwrap();
            let e = nl.add_addr(lo, ip("127.0.0.2").into(), 8).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert!(e.to_string().contains("RTM_NEWADDR 127.0.0.2/8"), "{e}");
            let Some(out) = ip_cmd(&["-4", "addr", "show", "dev", "lo"]) else {
                crate::testutil::skip(T, "`ip` cannot show the namespace's addresses");
                return;
            };
            assert!(out.contains("inet 127.0.0.2/8"), "{out}");
            assert!(out.contains("UP"), "{out}");

            // A veth link (dummy may not be built) for MTU, a universe address and the route.
            if ip_cmd(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]).is_none() {
                crate::testutil::skip(T, "cannot create a veth pair (veth module?)");
                return;
            }
            let v0 = nl.link_index("v0").unwrap();
            nl.set_up(v0, Some(1400)).unwrap();
            nl.add_addr(v0, ip("10.9.0.2").into(), 24).unwrap();
            nl.add_route(v0, DEFAULT4, ip("10.9.0.1").into(), RouteOpts::default())
                .unwrap();
            let e = nl
                .add_route(v0, DEFAULT4, ip("10.9.0.1").into(), RouteOpts::default())
                .unwrap_err();
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
                crate::testutil::skip(T, "IPv6 part: no IPv6 in this kernel");
            }
            // Gateway off-link is refused with an error naming the operation.
            let e = nl
                .add_route(v0, DEFAULT4, ip("192.0.2.1").into(), RouteOpts::default())
                .unwrap_err();
            assert!(
                e.to_string().contains("RTM_NEWROUTE default via 192.0.2.1"),
                "{e}"
            );
        });
    }
}
