//! The serde shape of `anemos.toml`, exactly as written. Every table rejects unknown keys.
//! Values are kept loose (strings, options) so that semantic checks happen in `validate`,
//! which reports every problem with its key path; serde only rejects unknown keys and wrong
//! TOML types. docs/config.md documents every key; keep it in step with this file.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Target hostname; also the seed for derived identifiers.
    pub hostname: Option<String>,
    /// `[[disk]]` entries. None at all means "touch no disk".
    #[serde(default)]
    pub disk: Vec<DiskConfig>,
    /// `[[array]]` entries: md RAID arrays over partitions of wiped disks.
    #[serde(default)]
    pub array: Vec<ArrayConfig>,
    /// `[[luks]]` entries: LUKS2 containers on a partition or an array.
    #[serde(default)]
    pub luks: Vec<LuksConfig>,
    pub install: Option<InstallConfig>,
    pub bootloader: Option<BootloaderConfig>,
    pub deploy: Option<DeployConfig>,
    pub network: Option<NetworkConfig>,
    /// File name used in error messages; set by `parse`.
    #[serde(skip)]
    pub(super) origin: String,
    /// Line/column of every key path in the source; set by `parse`.
    #[serde(skip)]
    pub(super) positions: super::source::Positions,
}

/// One `[[disk]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<MatchConfig>,
    #[serde(default)]
    pub wipe: bool,
    #[serde(default)]
    pub preserve: bool,
    #[serde(default)]
    pub removable: bool,
    #[serde(default)]
    pub partitions: Vec<PartitionConfig>,
    #[serde(default)]
    pub mounts: Vec<MountConfig>,
}

/// `disk.match`: every given field must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    pub by_id: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub model: Option<String>,
    pub path: Option<String>,
    pub size: Option<String>,
}

/// One entry of `disk.partitions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    pub size: Option<String>,
    pub format: Option<String>,
    pub mount: Option<String>,
    pub options: Option<String>,
    pub fs_label: Option<String>,
    pub guid: Option<String>,
    pub fs_uuid: Option<String>,
    pub fat32: Option<bool>,
}

/// One `[[array]]` entry: an md array whose members are partitions (by label); it carries a
/// filesystem like a partition does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConfig {
    pub name: Option<String>,
    pub level: Option<i64>,
    pub members: Option<Vec<String>>,
    pub format: Option<String>,
    pub mount: Option<String>,
    pub options: Option<String>,
    pub fs_label: Option<String>,
    pub fs_uuid: Option<String>,
    pub uuid: Option<String>,
}

/// One `[[luks]]` entry: a LUKS2 container on a partition (by label) or an array (by name);
/// the opened mapper device carries a filesystem like a partition does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuksConfig {
    pub name: Option<String>,
    pub device: Option<String>,
    pub passphrase: Option<String>,
    pub recovery_passphrase: Option<String>,
    pub pbkdf_memory: Option<String>,
    pub format: Option<String>,
    pub mount: Option<String>,
    pub options: Option<String>,
    pub fs_label: Option<String>,
    pub fs_uuid: Option<String>,
    pub uuid: Option<String>,
}

/// One entry of `disk.mounts` (preserved disks only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub label: Option<String>,
    pub mount: Option<String>,
    pub options: Option<String>,
    #[serde(default)]
    pub during_install: bool,
}

/// `[install]` (consumed by the fetch and install stages).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    pub kind: Option<String>,
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    pub path: Option<String>,
    pub url: Option<String>,
    pub sha256: Option<String>,
    pub insecure: Option<bool>,
    pub provision: Option<String>,
    pub download: Option<String>,
    pub mirror: Option<String>,
    pub proxy: Option<String>,
}

/// `[bootloader]` (consumed by the bootloader stage).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootloaderConfig {
    pub kind: Option<String>,
    pub options: Option<String>,
    pub kernel: Option<String>,
    pub initrd: Option<Vec<String>>,
    pub command: Option<String>,
    /// The firmware the installed loader is prepared for: "bios", "uefi".
    pub firmware: Option<Vec<String>>,
}

/// `[deploy]` (consumed by the finish stage).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    pub finish: Option<String>,
}

/// `[network]` (consumed by the network stage).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default)]
    pub interface: Vec<InterfaceConfig>,
}

/// One `[[network.interface]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    #[serde(rename = "match")]
    pub matcher: Option<InterfaceMatchConfig>,
    pub dhcp: Option<bool>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
    pub slaac: Option<bool>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    pub mtu: Option<u32>,
    pub link_timeout: Option<u64>,
}

/// One entry of `network.interface.routes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub to: Option<String>,
    pub via: Option<String>,
}

/// `network.interface.match`: every given field must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceMatchConfig {
    pub name: Option<String>,
    pub mac: Option<String>,
    pub driver: Option<String>,
}
