//! Networking for the deploy image (and `anemos kexec --network keep`), one concern per file:
//!
//! - `ipparam`: the kernel command line's `ip=` / `nameserver=`, netmask helpers;
//! - `netlink`: rtnetlink encoders and a NETLINK_ROUTE client;
//! - `iface`: interfaces, MAC addresses and carrier from sysfs;
//! - `dhcp`: the DHCPv4 codec and client;
//! - `ipv6`: /proc/net parsers, the SLAAC switches, DAD and SLAAC waits;
//! - `resolv`: resolv.conf text;
//! - `plan`: which interfaces the network stage configures, and how (pure);
//! - `apply`: carrying out such a plan;
//! - `sys`: the socket calls, through rustix and nix.
//!
//! Everything that can be pure is (parsers, encoders, reply parsing, planning) and is
//! unit-tested without root; the netlink and DHCP clients are tested in network namespaces.

mod apply;
pub mod dhcp;
mod iface;
pub mod ipparam;
mod ipv6;
pub mod netlink;
mod plan;
mod resolv;
mod sys;
#[cfg(test)]
mod testns;

pub use apply::{apply, Applied};
pub use dhcp::{dhcp, new_xid};
pub use iface::{list_ifaces, read_mac, wait_link, Iface};
pub use ipparam::{mask_to_prefix, parse_ip_param, parse_nameserver, prefix_to_mask, IpParam};
pub use ipv6::{
    ipv6_available, ipv6_default_gateway, is_link_local6, parse_if_inet6, set_ipv6_conf, wait_dad,
    wait_slaac,
};
pub use netlink::{ok_if_exists, Netlink, RouteOpts};
pub use plan::plan_network;
pub use resolv::resolv_conf;
pub use sys::ipv4_addresses;

use ipparam::classful_prefix;

/// Where `anemos kexec --network keep` puts what it captured (an extra cpio segment of the
/// deploy image); the init's network stage reads it.
pub const KEPT_PATH: &str = "/etc/anemos/network-kept.toml";

/// `e` with `what` in front of its message, keeping its kind.
fn ctx(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}
