//! `[install]`, `[bootloader]`, `[deploy]` and `[network]`: parsed and validated here, consumed
//! by the install, bootloader, finish and network stages. Each section has a `kind` (or `finish`) that decides which
//! other keys it takes; a key given for the wrong kind is an error, not silently ignored.

use std::net::IpAddr;

use super::schema::{
    BootloaderConfig, DeployConfig, InstallConfig, InterfaceConfig, NetworkConfig,
};
use super::units::{check_absolute_path, check_plain, check_relative_path, parse_sha256};
use super::validate::Problems;
use super::{
    Bootloader, Deploy, Download, Finish, Firmware, Install, Interface, InterfaceMatch, Network,
    RootfsSource, Route,
};

/// Reports each given key that `kind` does not take.
fn reject_unused(
    section: &str,
    kind: &str,
    given: &[(&str, bool)],
    allowed: &[&str],
    p: &mut Problems,
) {
    for (field, present) in given {
        if *present && !allowed.contains(field) {
            let takes = if allowed.is_empty() {
                "no other keys".to_string()
            } else {
                allowed.join(", ")
            };
            p.add(
                format!("{section}.{field}"),
                format!("not used with kind = {kind:?} (it takes: {takes})"),
            );
        }
    }
}

/// The `kind` key, or a "missing"/"unknown" problem.
fn kind<'a>(
    section: &str,
    value: Option<&'a str>,
    kinds: &[&str],
    p: &mut Problems,
) -> Option<&'a str> {
    let key = format!("{section}.kind");
    match value {
        None => p.add(key, format!("missing: use one of {}", kinds.join(", "))),
        Some(k) if kinds.contains(&k) => return Some(k),
        Some(k) => p.add(
            key,
            format!("unknown kind {k:?} (use one of: {})", kinds.join(", ")),
        ),
    }
    None
}

pub fn install(c: &InstallConfig, p: &mut Problems) -> Install {
    let placeholder = Install::Script {
        path: String::new(),
        args: Vec::new(),
    };
    let Some(k) = kind(
        "install",
        c.kind.as_deref(),
        &["makeimg", "script", "rootfs"],
        p,
    ) else {
        return placeholder;
    };
    let given = [
        ("command", c.command.is_some()),
        ("args", c.args.is_some()),
        ("path", c.path.is_some()),
        ("url", c.url.is_some()),
        ("sha256", c.sha256.is_some()),
        ("insecure", c.insecure.is_some()),
        ("provision", c.provision.is_some()),
        ("download", c.download.is_some()),
        ("mirror", c.mirror.is_some()),
        ("proxy", c.proxy.is_some()),
    ];
    let allowed: &[&str] = match k {
        "makeimg" => &["command", "args", "mirror", "proxy"],
        "script" => &["path", "args"],
        _ => &["path", "url", "sha256", "insecure", "provision", "download"],
    };
    reject_unused("install", k, &given, allowed, p);
    let args = c.args.clone().unwrap_or_default();
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            p.add(format!("install.args[{i}]"), "contains a NUL character");
        }
    }
    match k {
        "makeimg" => {
            if let Some(command) = &c.command {
                if command.is_empty()
                    || command
                        .chars()
                        .any(|ch| ch.is_whitespace() || ch.is_control())
                {
                    p.add(
                        "install.command",
                        format!("{command:?}: give a program name or absolute path; put its arguments in args"),
                    );
                }
            }
            if let Some(m) = &c.mirror {
                p.check("install.mirror", check_mirror(m));
            }
            if let Some(x) = &c.proxy {
                p.check("install.proxy", check_proxy(x));
            }
            Install::Makeimg {
                command: c.command.clone(),
                args,
                mirror: c.mirror.clone(),
                proxy: c.proxy.clone(),
            }
        }
        "script" => match c.path.as_deref() {
            None => {
                p.add(
                    "install.path",
                    "missing: the executable to run, relative to the payload directory",
                );
                placeholder
            }
            Some(path) => {
                p.check("install.path", check_relative_path(path));
                Install::Script {
                    path: path.to_string(),
                    args,
                }
            }
        },
        _ => rootfs(c, p),
    }
}

fn rootfs(c: &InstallConfig, p: &mut Problems) -> Install {
    let source = match (c.path.as_deref(), c.url.as_deref()) {
        (Some(_), Some(_)) => {
            p.add(
                "install.url",
                "give path (an archive in the payload) or url, not both",
            );
            RootfsSource::Path(String::new())
        }
        (None, None) => {
            p.add(
                "install.path",
                "missing: give path (an archive in the payload) or url",
            );
            RootfsSource::Path(String::new())
        }
        (Some(path), None) => {
            p.check("install.path", check_relative_path(path));
            RootfsSource::Path(path.to_string())
        }
        (None, Some(url)) => {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                p.add(
                    "install.url",
                    format!("{url:?} is not an http:// or https:// URL"),
                );
            }
            RootfsSource::Url(url.to_string())
        }
    };
    let sha256 = c
        .sha256
        .as_deref()
        .and_then(|s| parse_sha256(s).map_err(|e| p.add("install.sha256", e)).ok());
    let insecure = c.insecure.unwrap_or(false);
    match &source {
        RootfsSource::Url(_) if c.sha256.is_none() && !insecure => p.add(
            "install.sha256",
            "required with url: the download is verified against it (insecure = true skips this; not recommended)",
        ),
        RootfsSource::Path(_) if c.insecure.is_some() => {
            p.add("install.insecure", "applies only to url (a payload file is verified by the payload manifest)")
        }
        _ => {}
    }
    let download = match (c.download.as_deref(), &source) {
        (None, _) => Download::Auto,
        (Some(_), RootfsSource::Path(_)) => {
            p.add(
                "install.download",
                "applies only to url (a payload file is already in RAM)",
            );
            Download::Auto
        }
        (Some("auto"), _) => Download::Auto,
        (Some("ram"), _) => Download::Ram,
        (Some("stream"), _) => Download::Stream,
        (Some(other), _) => {
            p.add(
                "install.download",
                format!("{other:?} is not one of \"auto\", \"ram\", \"stream\""),
            );
            Download::Auto
        }
    };
    if let Some(s) = c.provision.as_deref() {
        p.check("install.provision", check_relative_path(s));
    }
    Install::Rootfs {
        source,
        sha256,
        insecure,
        provision: c.provision.clone(),
        download,
    }
}

pub fn bootloader(c: Option<&BootloaderConfig>, p: &mut Problems) -> Bootloader {
    let Some(c) = c else {
        return Bootloader::None;
    };
    let Some(k) = kind(
        "bootloader",
        c.kind.as_deref(),
        &["systemd-boot", "grub", "command", "none"],
        p,
    ) else {
        return Bootloader::None;
    };
    let given = [
        ("options", c.options.is_some()),
        ("kernel", c.kernel.is_some()),
        ("initrd", c.initrd.is_some()),
        ("command", c.command.is_some()),
        ("firmware", c.firmware.is_some()),
    ];
    let allowed: &[&str] = match k {
        "systemd-boot" => &["options", "kernel", "initrd", "firmware"],
        "grub" => &["firmware", "options"],
        "command" => &["command"],
        _ => &[],
    };
    reject_unused("bootloader", k, &given, allowed, p);
    match k {
        "grub" => {
            if let Some(o) = c.options.as_deref() {
                p.check("bootloader.options", check_plain(o));
                p.check("bootloader.options", check_grub_options(o));
            }
            let firmware = match c.firmware.as_deref() {
                None => {
                    p.add(
                        "bootloader.firmware",
                        "missing: say which firmware grub is installed for: [\"bios\"], [\"uefi\"] or [\"bios\", \"uefi\"]",
                    );
                    Firmware::default()
                }
                Some(list) => firmware(list, p),
            };
            Bootloader::Grub {
                firmware,
                options: c.options.clone(),
            }
        }
        "systemd-boot" => {
            if let Some(list) = c.firmware.as_deref() {
                let f = firmware(list, p);
                if f.bios {
                    p.add(
                        "bootloader.firmware",
                        "systemd-boot is a UEFI program and cannot start from BIOS: use firmware = [\"uefi\"], or kind = \"grub\" for BIOS",
                    );
                }
            }
            if let Some(o) = c.options.as_deref() {
                p.check("bootloader.options", check_plain(o));
            }
            if let Some(kernel) = c.kernel.as_deref() {
                p.check("bootloader.kernel", check_absolute_path(kernel));
            }
            let initrd = c.initrd.clone().unwrap_or_default();
            for (i, path) in initrd.iter().enumerate() {
                p.check(
                    &format!("bootloader.initrd[{i}]"),
                    check_absolute_path(path),
                );
            }
            Bootloader::SystemdBoot {
                options: c.options.clone(),
                kernel: c.kernel.clone(),
                initrd,
            }
        }
        "command" => match c.command.as_deref() {
            None => {
                p.add(
                    "bootloader.command",
                    "missing: the shell command to run chrooted in the target",
                );
                Bootloader::None
            }
            Some(cmd) => {
                p.check("bootloader.command", check_plain(cmd));
                Bootloader::Command {
                    command: cmd.to_string(),
                }
            }
        },
        _ => Bootloader::None,
    }
}

/// `bootloader.firmware`: a non-empty list of "bios" and "uefi", each at most once.
fn firmware(list: &[String], p: &mut Problems) -> Firmware {
    let mut f = Firmware::default();
    for (i, name) in list.iter().enumerate() {
        let slot = match name.as_str() {
            "bios" => &mut f.bios,
            "uefi" => &mut f.uefi,
            other => {
                p.add(
                    format!("bootloader.firmware[{i}]"),
                    format!("unknown firmware {other:?} (use \"bios\" or \"uefi\")"),
                );
                continue;
            }
        };
        if *slot {
            p.add(
                format!("bootloader.firmware[{i}]"),
                format!("{name:?} is listed twice"),
            );
        }
        *slot = true;
    }
    if list.is_empty() {
        p.add(
            "bootloader.firmware",
            "empty: list \"bios\", \"uefi\" or both",
        );
    }
    f
}

/// grub options go into a double-quoted shell assignment (`GRUB_CMDLINE_LINUX="…"`), which
/// grub-mkconfig sources: characters that the shell would expand or end the string with are
/// refused rather than escaped, since kernel options have no use for them.
fn check_grub_options(o: &str) -> Result<(), String> {
    match o.chars().find(|c| matches!(c, '"' | '\\' | '$' | '`')) {
        Some(c) => Err(format!(
            "{o:?} contains {c:?}, which the grub defaults file (a shell script) would interpret"
        )),
        None => Ok(()),
    }
}

pub fn deploy(c: Option<&DeployConfig>, bootloader: &Bootloader, p: &mut Problems) -> Deploy {
    let finish = match c.and_then(|c| c.finish.as_deref()) {
        None | Some("reboot") => Finish::Reboot,
        Some("kexec") => {
            if !matches!(
                bootloader,
                Bootloader::SystemdBoot { .. } | Bootloader::Grub { .. }
            ) {
                p.add(
                    "deploy.finish",
                    "\"kexec\" boots the kernel that anemos' bootloader setup found, so it needs [bootloader] kind = \"systemd-boot\" or \"grub\"",
                );
            }
            Finish::Kexec
        }
        Some("poweroff") => Finish::Poweroff,
        Some(other) => {
            p.add(
                "deploy.finish",
                format!("unknown finish {other:?} (use one of: reboot, kexec, poweroff)"),
            );
            Finish::Reboot
        }
    };
    Deploy { finish }
}

pub fn network(c: Option<&NetworkConfig>, p: &mut Problems) -> Network {
    let Some(c) = c else {
        return Network::default();
    };
    let interfaces = c
        .interface
        .iter()
        .enumerate()
        .map(|(i, ic)| interface(ic, &format!("network.interface[{i}]"), p))
        .collect();
    Network { interfaces }
}

fn interface(c: &InterfaceConfig, ik: &str, p: &mut Problems) -> Interface {
    let matcher = interface_match(c, ik, p);
    let dhcp = c.dhcp.unwrap_or(false);
    let addresses: Vec<(IpAddr, u8)> = c
        .addresses
        .iter()
        .enumerate()
        .filter_map(|(j, a)| {
            parse_cidr(a)
                .map_err(|e| p.add(format!("{ik}.addresses[{j}]"), e))
                .ok()
        })
        .collect();
    if let Some(t) = c.link_timeout {
        if !(1..=3600).contains(&t) {
            p.add(
                format!("{ik}.link_timeout"),
                format!("{t} is out of range (1..=3600 seconds)"),
            );
        }
    }
    let slaac = c.slaac.unwrap_or(false);
    if !dhcp && !slaac && c.addresses.is_empty() {
        p.add(
            format!("{ik}.dhcp"),
            "this interface gets no address: set dhcp = true (IPv4), slaac = true (IPv6) or give addresses",
        );
    }
    let ips = |field: &str, list: &[String], p: &mut Problems| -> Vec<IpAddr> {
        let parsed = list.iter().enumerate().map(|(j, s)| {
            s.parse::<IpAddr>().map_err(|_| {
                p.add(
                    format!("{ik}.{field}[{j}]"),
                    format!("{s:?} is not an IP address"),
                )
            })
        });
        parsed.filter_map(Result::ok).collect()
    };
    let gateways = ips("gateways", &c.gateways, p);
    let dns = ips("dns", &c.dns, p);
    // One default route per family: a second one would be silently shadowed.
    for (v6, fam) in [(false, "IPv4"), (true, "IPv6")] {
        let same: Vec<&IpAddr> = gateways.iter().filter(|g| g.is_ipv6() == v6).collect();
        if same.len() > 1 {
            p.add(
                format!("{ik}.gateways"),
                format!(
                    "{} {fam} gateways given; at most one per address family (use routes for more)",
                    same.len()
                ),
            );
        }
    }
    let has_v4 = dhcp || addresses.iter().any(|(a, _)| a.is_ipv4());
    for (j, g) in gateways.iter().enumerate() {
        if g.is_ipv4() && !has_v4 {
            p.add(
                format!("{ik}.gateways[{j}]"),
                format!("{g} is IPv4 but this interface gets no IPv4 address (no dhcp, no IPv4 in addresses)"),
            );
        }
    }
    for (j, d) in c.search.iter().enumerate() {
        if let Err(e) = check_domain(d) {
            p.add(format!("{ik}.search[{j}]"), e);
        }
    }
    let routes = c
        .routes
        .iter()
        .enumerate()
        .filter_map(|(j, r)| route(r, &format!("{ik}.routes[{j}]"), has_v4, p))
        .collect();
    if let Some(mtu) = c.mtu {
        let min = if addresses.iter().any(|(a, _)| a.is_ipv6()) {
            1280
        } else {
            68
        };
        if !(min..=65535).contains(&mtu) {
            p.add(
                format!("{ik}.mtu"),
                format!("{mtu} is out of range ({min}..=65535)"),
            );
        }
    }
    Interface {
        matcher,
        dhcp,
        addresses,
        gateways,
        dns,
        search: c.search.clone(),
        slaac,
        routes,
        mtu: c.mtu,
        link_timeout: c.link_timeout,
    }
}

fn route(
    r: &super::schema::RouteConfig,
    rk: &str,
    has_v4: bool,
    p: &mut Problems,
) -> Option<Route> {
    let to = match r.to.as_deref() {
        None => {
            p.add(
                format!("{rk}.to"),
                "missing: the destination network, e.g. \"10.1.0.0/16\"",
            );
            None
        }
        Some(t) => parse_cidr(t).map_err(|e| p.add(format!("{rk}.to"), e)).ok(),
    };
    let via = match r.via.as_deref() {
        None => {
            p.add(format!("{rk}.via"), "missing: the gateway address");
            None
        }
        Some(v) => v
            .parse::<IpAddr>()
            .map_err(|_| p.add(format!("{rk}.via"), format!("{v:?} is not an IP address")))
            .ok(),
    };
    let (to, via) = (to?, via?);
    if to.0.is_ipv4() != via.is_ipv4() {
        p.add(
            format!("{rk}.via"),
            format!(
                "{via} and the destination {}/{} are different address families",
                to.0, to.1
            ),
        );
        return None;
    }
    if via.is_ipv4() && !has_v4 {
        p.add(
            format!("{rk}.via"),
            format!("{via} is IPv4 but this interface gets no IPv4 address"),
        );
    }
    if to.1 == 0 {
        p.add(
            format!("{rk}.to"),
            "a default route: put the gateway in gateways instead",
        );
        return None;
    }
    if !host_bits_zero(to.0, to.1) {
        p.add(
            format!("{rk}.to"),
            format!(
                "{}/{} has host bits set; give the network address",
                to.0, to.1
            ),
        );
    }
    Some(Route { to, via })
}

fn host_bits_zero(a: IpAddr, prefix: u8) -> bool {
    super::network_of(a, prefix) == a
}

/// A DNS search domain: dot-separated labels of letters, digits and '-', at most 253 bytes.
fn check_domain(d: &str) -> Result<(), String> {
    let d2 = d.strip_suffix('.').unwrap_or(d);
    let ok = !d2.is_empty()
        && d2.len() <= 253
        && d2.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{d:?} is not a domain name (e.g. \"example.com\")"))
    }
}

fn interface_match(c: &InterfaceConfig, ik: &str, p: &mut Problems) -> InterfaceMatch {
    let mk = format!("{ik}.match");
    let Some(m) = &c.matcher else {
        p.add(mk, "missing: say which interface this is, e.g. match = { name = \"eth0\" } (name, mac, driver)");
        return InterfaceMatch::default();
    };
    if m.name.is_none() && m.mac.is_none() && m.driver.is_none() {
        p.add(
            &mk,
            "no matcher given: set at least one of name, mac, driver",
        );
    }
    if let Some(n) = m.name.as_deref() {
        let bad = n.is_empty()
            || n.chars()
                .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control());
        if bad || (!n.contains('*') && n.len() > 15) {
            p.add(
                format!("{mk}.name"),
                format!(
                    "{n:?} is not an interface name (at most 15 characters, no '/', ':' or spaces)"
                ),
            );
        }
    }
    let mac = m
        .mac
        .as_deref()
        .and_then(|s| parse_mac(s).map_err(|e| p.add(format!("{mk}.mac"), e)).ok());
    if let Some(d) = m.driver.as_deref() {
        if d.is_empty()
            || !d
                .bytes()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == b'_' || ch == b'-')
        {
            p.add(
                format!("{mk}.driver"),
                format!("{d:?} is not a kernel driver name (e.g. \"virtio_net\")"),
            );
        }
    }
    InterfaceMatch {
        name: m.name.clone(),
        mac,
        driver: m.driver.clone(),
    }
}

/// "192.0.2.10/24", "2001:db8::10/64".
fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} needs a prefix length, e.g. \"192.0.2.10/24\""
        ));
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?}: {addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(n) if n <= max => Ok((addr, n)),
        _ => Err(format!("{text:?}: the prefix length must be 0..={max}")),
    }
}

/// "52:54:00:12:34:56" (any case).
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    crate::util::mac::parse(text)
        .ok_or_else(|| format!("{text:?} is not a MAC address (e.g. \"52:54:00:12:34:56\")"))
}

/// A package mirror: an `http://` or `https://` URL, or a whole apt source line
/// (`deb [options] URL SUITE [COMPONENTS]`, e.g. for a flat repository).
fn check_mirror(m: &str) -> Result<(), String> {
    let url = match m.strip_prefix("deb ") {
        Some(line) => line
            .split_whitespace()
            .find(|w| w.contains("://"))
            .ok_or_else(|| format!("{m:?}: a source line needs a URL, e.g. \"deb [trusted=yes] http://10.0.2.100/ ./\""))?,
        None => m,
    };
    if m.chars().any(|c| c.is_control()) {
        return Err(format!("{m:?}: contains a control character"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(format!(
            "{m:?}: give an http:// or https:// URL (e.g. \"http://deb.debian.org/debian\") or a source line starting with \"deb \""
        ));
    }
    Ok(())
}

/// An HTTP proxy for the bootstrap: `http://host[:port][/]`.
fn check_proxy(x: &str) -> Result<(), String> {
    match x.strip_prefix("http://") {
        Some(rest)
            if !rest.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(format!("{x:?}: give the proxy as http://HOST[:PORT]")),
    }
}
