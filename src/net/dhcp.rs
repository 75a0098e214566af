//! DHCPv4 (RFC 2131/2132): our own wire codec (pure, cross-checked against dhcproto in the
//! tests) and the DISCOVER → OFFER → REQUEST → ACK client.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::{classful_prefix, mask_to_prefix, sys};

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

/// A fresh random transaction ID, so that clients booting together (same image, same moment)
/// do not take each other's replies. GRND_INSECURE: it need not be secret, and early in boot
/// it must not wait for the entropy pool; kernels without it (before 5.6) get a non-blocking
/// read, and if that fails too the clock's nanoseconds stand in.
pub fn new_xid() -> u32 {
    use rustix::rand::{getrandom, GetRandomFlags};
    let mut b = [0u8; 4];
    let ok = |r: rustix::io::Result<usize>| matches!(r, Ok(4));
    if ok(getrandom(&mut b, GetRandomFlags::INSECURE))
        || ok(getrandom(&mut b, GetRandomFlags::NONBLOCK))
    {
        return u32::from_ne_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16)
}

/// Run DISCOVER → OFFER → REQUEST → ACK on `iface` (which must be up). Each step is retried
/// with a 1, 2, 4, 4… s wait; a NAK or an unanswered REQUEST starts over; `timeout` bounds
/// the whole exchange. Returns the ACKed lease; configuring the interface is the caller's
/// job. `xid` comes from [`new_xid`], `mac` from [`super::read_mac`].
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

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
