//! `anemos.toml`: parsing and validation. The one place that turns user text into the typed
//! descriptions the planner and the init stages consume ([`Validated`]).
//!
//! Two steps, both pure (text in, values out; the caller reads the file):
//! - [`parse`]: TOML syntax, unknown keys and wrong value types, each reported with
//!   `file:line:column` and its key path (`disk[0].partitions[1].sise`).
//! - [`Config::validate`]: every semantic rule (sizes, types, duplicates, what fits), collecting
//!   *all* problems, each naming its key path.
//!
//! [`load`] does both. Every key is documented in docs/config.md; keep it in step with
//! `schema.rs`.

// The plan/validate commands and the init stages that consume this are being wired in
// separately; until then most of the public surface is only used by tests.

mod arrays;
pub mod layout;
mod luks;
mod schema;
mod sections;
mod source;
mod targets;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use crate::config::layout::Layout;

pub use schema::Config;
pub use units::{network_of, parse_size, part_type_guid};

/// Parses `text` (the contents of the file named `origin`, used in messages) without semantic
/// validation. Fails on TOML syntax errors, unknown keys and wrong value types.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    source::parse_document(text, origin)
}

/// Parses and validates: the normal entry point.
pub fn load(text: &str, origin: &str) -> Result<Validated, ConfigErrors> {
    parse(text, origin)?.validate()
}

/// Parses and validates a file that holds only `[[network.interface]]` entries: what
/// `anemos kexec --network keep` captured (same keys and rules as in anemos.toml).
pub fn load_network(text: &str, origin: &str) -> Result<Network, ConfigErrors> {
    let cfg = parse(text, origin)?;
    let mut problems = validate::Problems::default();
    let net = sections::network(cfg.network.as_ref(), &mut problems);
    let other = !cfg.disk.is_empty()
        || !cfg.array.is_empty()
        || !cfg.luks.is_empty()
        || cfg.hostname.is_some()
        || cfg.install.is_some()
        || cfg.bootloader.is_some()
        || cfg.deploy.is_some();
    if other {
        problems.add("", "this file may hold only [[network.interface]] entries");
    }
    if problems.is_empty() {
        return Ok(net);
    }
    Err(cfg.errors(problems))
}

impl Config {
    /// Checks every rule in docs/config.md and returns the typed description, or every problem
    /// found (not just the first), each with its key path and, when known, line and column.
    pub fn validate(&self) -> Result<Validated, ConfigErrors> {
        let mut problems = validate::Problems::default();
        let validated = validate::validate(self, &mut problems);
        if problems.is_empty() {
            return Ok(validated);
        }
        Err(self.errors(problems))
    }

    /// The problems as errors with their positions, in file order (problems without a
    /// position, such as a missing section, last).
    fn errors(&self, problems: validate::Problems) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = problems
            .into_vec()
            .into_iter()
            .map(|(key, message)| ConfigError {
                position: self.positions.find(&key),
                key,
                message,
            })
            .collect();
        errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
        ConfigErrors::new(&self.origin, errors)
    }
}

/// Everything a deploy needs from `anemos.toml`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Target hostname, if given.
    pub hostname: Option<String>,
    /// The disks: what the planner consumes. No disks means "touch no disk".
    pub layout: Layout,
    /// `[install]`; `None` when the section is absent (the install stage then decides: makeimg
    /// when the payload has an IMGBUILD).
    pub install: Option<Install>,
    /// `[bootloader]`; [`Bootloader::None`] when absent.
    pub bootloader: Bootloader,
    /// `[deploy]`.
    pub deploy: Deploy,
    /// `[network]`; no interfaces when absent.
    pub network: Network,
}

/// How the OS gets into the target tree (consumed by the install stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// Build the system from the payload's IMGBUILD into the mounted target: the built-in
    /// builder, or `command` (an external makeimg in the image's tools root) when given.
    Makeimg {
        command: Option<String>,
        args: Vec<String>,
        /// The package mirror for the bootstrap: a URL, or a whole `deb ...` source line.
        mirror: Option<String>,
        /// An HTTP proxy (`http://host:port`) for the bootstrap's downloads.
        proxy: Option<String>,
    },
    /// Run an executable from the payload (path relative to the payload directory).
    Script { path: String, args: Vec<String> },
    /// Unpack a tar archive into the target, then optionally run `provision` chrooted in it.
    Rootfs {
        source: RootfsSource,
        sha256: Option<[u8; 32]>,
        insecure: bool,
        provision: Option<String>,
        /// URL only: download into RAM first, or stream into the unpack.
        download: Download,
    },
}

/// How a `rootfs` URL is fetched (`install.download`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Download {
    /// Into RAM before any disk is touched when it fits (size from the server), else streamed.
    #[default]
    Auto,
    /// Always into RAM first; refused up front when it does not fit.
    Ram,
    /// Always streamed straight into the unpack (the hash is checked at the end).
    Stream,
}

/// Where a `rootfs` archive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// Relative to the payload directory.
    Path(String),
    /// An http:// or https:// URL.
    Url(String),
}

/// Which bootloader to set up (consumed by the bootloader stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootloader {
    /// Installed by anemos onto the ESP, with a Boot Loader Specification entry.
    SystemdBoot {
        /// Extra kernel command-line options (anemos adds `root=PARTUUID=…`).
        options: Option<String>,
        /// Kernel path inside the target; found under /boot when `None`.
        kernel: Option<String>,
        /// Initrd paths inside the target, in load order; found under /boot when empty.
        initrd: Vec<String>,
    },
    /// GRUB from the target's own packages, installed chrooted in the target for the firmware
    /// named (`grub-install` for BIOS onto every disk with a BIOS boot partition, for UEFI onto
    /// the ESP), its grub.cfg made by the target's `grub-mkconfig`.
    Grub {
        firmware: Firmware,
        /// Kernel command-line options (`GRUB_CMDLINE_LINUX`; grub adds `root=… ro`).
        options: Option<String>,
    },
    /// A shell command run chrooted in the target (e.g. grub-install).
    Command { command: String },
    /// Nothing: the install step handled it.
    None,
}

/// Which firmware a bootloader is prepared for (`bootloader.firmware`); at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Firmware {
    /// Legacy BIOS (or UEFI's CSM): a core image behind the disk's MBR.
    pub bios: bool,
    /// UEFI: an EFI program on the ESP.
    pub uefi: bool,
}

impl Firmware {
    /// "BIOS", "UEFI" or "BIOS and UEFI", for the plan and messages.
    pub fn describe(self) -> &'static str {
        match (self.bios, self.uefi) {
            (true, true) => "BIOS and UEFI",
            (true, false) => "BIOS",
            (false, true) => "UEFI",
            (false, false) => "no firmware",
        }
    }
}

/// `[deploy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deploy {
    pub finish: Finish,
}

/// What happens after a successful deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Finish {
    #[default]
    Reboot,
    Kexec,
    Poweroff,
}

/// `[network]` (consumed by the network stage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub interfaces: Vec<Interface>,
}

/// One `[[network.interface]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub matcher: InterfaceMatch,
    pub dhcp: bool,
    /// Static addresses with prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
    pub gateways: Vec<IpAddr>,
    pub dns: Vec<IpAddr>,
    /// DNS search domains.
    pub search: Vec<String>,
    /// IPv6 stateless autoconfiguration from router advertisements.
    pub slaac: bool,
    pub routes: Vec<Route>,
    pub mtu: Option<u32>,
    /// Seconds to wait for carrier; `None`: the init's `anemos.timeout`.
    pub link_timeout: Option<u64>,
}

/// A static route: `to` (network, prefix length) via the gateway `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub to: (IpAddr, u8),
    pub via: IpAddr,
}

/// How an interface is recognised; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceMatch {
    /// Interface name; `*` matches any run of characters ("en*").
    pub name: Option<String>,
    pub mac: Option<[u8; 6]>,
    /// Kernel driver name, e.g. "virtio_net".
    pub driver: Option<String>,
}

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `disk[0].partitions[2].size`; empty for TOML syntax errors.
    pub key: String,
    pub message: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
}

/// Every problem found in one file. Displays one line per problem:
/// `anemos.toml:7:41: disk[0].partitions[1].size: "12Q" is not a size (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name given to [`parse`]/[`load`].
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn new(origin: &str, errors: Vec<ConfigError>) -> Self {
        ConfigErrors {
            origin: origin.to_string(),
            errors,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.position {
                Some((line, col)) => write!(f, "{}:{line}:{col}: {e}", self.origin)?,
                None => write!(f, "{}: {e}", self.origin)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
