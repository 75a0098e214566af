//! DHCP codec tests against dhcproto and captured packets; the client end to end on a veth pair.

use super::*;
use crate::net::testns::{in_netns, ip_cmd};
use crate::net::{ok_if_exists, Netlink, RouteOpts};
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::IpAddr;

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

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XID: u32 = 0x1234_5678;

/// A reply as QEMU's slirp sends it (its BOOTP server: siaddr = server, options 53, 54,
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

/// A hand-assembled OFFER byte for byte as slirp's BOOTP server lays it out (not decoded by
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
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/net/testdata/").to_owned() + n)
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

/// End to end: dhcp() on one end of a veth pair against a tiny slirp-like server on the
/// other, which ignores the first DISCOVER so the retry path runs; then the lease is applied
/// the way the network stage does it, twice (a retried stage).
#[test]
fn netns_dhcp_end_to_end() {
    const T: &str = "netns_dhcp_end_to_end";
    in_netns(T, || {
        // The MAC is set here: sysfs shows the test process's namespace, not this thread's.
        let mac_text = crate::util::mac::format(&MAC);
        let veth = [
            "link", "add", "c0", "address", &mac_text, "type", "veth", "peer", "name", "s0",
        ];
        if ip_cmd(&veth).is_none() {
            crate::testutil::skip(T, "cannot create a veth pair (veth module?)");
            return;
        }
        let mut nl = Netlink::open().unwrap();
        let c0 = nl.link_index("c0").unwrap();
        nl.set_up(c0, None).unwrap();
        let mac = MAC;
        // The server end lives in a namespace of its own (in one namespace the kernel
        // delivers the broadcasts locally instead of across the veth).
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            sys::unshare_net().unwrap();
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            go_rx.recv().unwrap();
            let mut nl = Netlink::open().unwrap();
            let s0 = nl.link_index("s0").unwrap();
            nl.set_up(s0, None).unwrap();
            nl.add_addr(s0, ip("10.0.2.2").into(), 24).unwrap();
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
        for _ in 0..2 {
            ok_if_exists(nl.add_addr(c0, lease.addr.into(), lease.prefix)).unwrap();
            let any = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
            let gw = IpAddr::V4(lease.router.unwrap());
            ok_if_exists(nl.add_route(c0, any, gw, RouteOpts::default())).unwrap();
        }
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

#[test]
fn xids_are_random() {
    let x: Vec<u32> = (0..4).map(|_| new_xid()).collect();
    // Four equal 32-bit draws would mean a constant (chance: 2^-96).
    assert!(x.windows(2).any(|w| w[0] != w[1]), "{x:?}");
}
