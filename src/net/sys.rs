//! The socket calls of the network code, through rustix (raw syscalls) and nix (for what rustix
//! lacks: SO_BINDTODEVICE, if_nametoindex and getifaddrs). No unsafe code of our own.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{
    self as rnet, netlink, sockopt, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

/// NETLINK_ROUTE socket bound to a kernel-assigned port id (pid 0), close-on-exec.
pub fn netlink_route_socket() -> io::Result<OwnedFd> {
    let fd = rnet::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE is protocol 0
    )?;
    rnet::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0))?;
    Ok(fd)
}

/// SO_RCVTIMEO.
pub fn set_rcv_timeout(fd: impl AsFd, t: Duration) -> io::Result<()> {
    sockopt::set_socket_timeout(fd, sockopt::Timeout::Recv, Some(t))?;
    Ok(())
}

/// send(2), retried on EINTR.
pub fn send(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rnet::send(fd.as_fd(), buf, SendFlags::empty()) {
            Err(Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// recv(2), retried on EINTR; the number of bytes received (at most `buf.len()`).
pub fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rnet::recv(fd.as_fd(), &mut *buf, RecvFlags::empty()) {
            Err(Errno::INTR) => continue,
            r => return Ok(r?.0),
        }
    }
}

/// Interface index of `name`; an error naming the interface when it does not exist.
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("interface {name}: {e}"))
    })
}

/// UDP socket on 0.0.0.0:68, bound to `iface`: the DHCP client's.
pub fn dhcp_socket(iface: &str) -> io::Result<UdpSocket> {
    udp_socket_on(iface, 68)
}

/// UDP socket on 0.0.0.0:`port`, bound to `iface` (SO_BINDTODEVICE, set before bind so one
/// socket per interface can coexist), broadcast allowed.
pub fn udp_socket_on(iface: &str, port: u16) -> io::Result<UdpSocket> {
    let e = |what: &str, err: io::Error| {
        io::Error::new(err.kind(), format!("DHCP socket on {iface}: {what}: {err}"))
    };
    let fd = rnet::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rnet::ipproto::UDP),
    )
    .map_err(|x| e("socket", x.into()))?;
    nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::BindToDevice,
        &OsString::from(iface),
    )
    .map_err(|x| e("SO_BINDTODEVICE", x.into()))?;
    sockopt::set_socket_reuseaddr(&fd, true).map_err(|x| e("SO_REUSEADDR", x.into()))?;
    sockopt::set_socket_broadcast(&fd, true).map_err(|x| e("SO_BROADCAST", x.into()))?;
    rnet::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        .map_err(|x| e(&format!("bind 0.0.0.0:{port}"), x.into()))?;
    Ok(UdpSocket::from(fd))
}

/// (interface, address, prefix length) of every IPv4 address, from getifaddrs(3).
pub fn ipv4_addresses() -> io::Result<Vec<(String, Ipv4Addr, u8)>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let v4 = |s: Option<&nix::sys::socket::SockaddrStorage>| {
            s.and_then(|s| s.as_sockaddr_in()).map(|a| a.ip())
        };
        if let (Some(addr), Some(mask)) = (v4(ifa.address.as_ref()), v4(ifa.netmask.as_ref())) {
            if let Some(prefix) = super::mask_to_prefix(mask) {
                out.push((ifa.interface_name, addr, prefix));
            }
        }
    }
    Ok(out)
}

/// Moves the calling thread into a fresh network namespace (tests only).
#[cfg(test)]
pub fn unshare_net() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}
