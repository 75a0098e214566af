//! `anemos plan --json`: the plan with stable field names, for scripts and tests.
//!
//! A view built from the planner's types rather than serde on them: the names below are the
//! contract (documented in docs/config.md), so the planner's own types can change freely.
//! Sectors are the disk's logical sectors; `last_lba` is inclusive, as sgdisk prints it.

use serde::Serialize;

use super::luks::{self, Backing, PlannedLuks};
use super::md::{self, PlannedArray};
use super::mkfs::{display_uuid, stored_label};
use super::plan::Plan;
use super::plan::{DiskAction, DiskPlan, PlannedPart};
use crate::util::uuid_string;

#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    pub disks: Vec<DiskJson<'a>>,
    /// md arrays over partitions of the disks.
    pub arrays: Vec<ArrayJson<'a>>,
    /// LUKS2 containers on partitions or arrays.
    pub luks: Vec<LuksJson<'a>>,
    /// The /etc/fstab the deploy writes.
    pub fstab: String,
    /// The /etc/mdadm/mdadm.conf the deploy writes (empty without arrays).
    pub mdadm_conf: String,
    /// The /etc/crypttab the deploy writes (empty without LUKS).
    pub crypttab: String,
}

#[derive(Debug, Serialize)]
pub struct LuksJson<'a> {
    pub name: &'a str,
    /// /dev/mapper/NAME.
    pub device: String,
    /// The LUKS header UUID (what crypttab names).
    pub uuid: String,
    /// The partition label or array name it is made on, and that device's path.
    pub on: &'a str,
    pub on_device: String,
    pub pbkdf: &'static str,
    pub pbkdf_memory_kib: u64,
    /// A second keyslot for a recovery passphrase is added.
    pub recovery_keyslot: bool,
    pub filesystem: Option<&'static str>,
    pub fs_uuid: Option<String>,
    pub fs_label: Option<String>,
    pub mount: Option<&'a str>,
    pub mount_options: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ArrayJson<'a> {
    pub name: &'a str,
    /// /dev/md/NAME.
    pub device: String,
    pub level: u32,
    /// md metadata version ("1.2").
    pub metadata: &'static str,
    /// As mdadm shows it (xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx).
    pub uuid: String,
    /// Each member: its partition label, disk entry, disk path and partition number.
    pub members: Vec<MemberJson<'a>>,
    /// The size of each member partition.
    pub member_size_bytes: u64,
    pub filesystem: Option<&'static str>,
    pub fs_uuid: Option<String>,
    pub fs_label: Option<String>,
    pub mount: Option<&'a str>,
    pub mount_options: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct MemberJson<'a> {
    pub label: &'a str,
    pub disk: &'a str,
    pub path: &'a str,
    pub number: u32,
}

#[derive(Debug, Serialize)]
pub struct DiskJson<'a> {
    /// The `[[disk]]` entry's name.
    pub name: &'a str,
    pub path: &'a str,
    pub by_id: &'a [String],
    pub serial: Option<&'a str>,
    pub wwn: Option<&'a str>,
    pub model: Option<&'a str>,
    pub size_bytes: u64,
    pub logical_sector_size: u64,
    /// "repartition" (every partition and all data erased) or "preserve" (never written).
    pub action: &'static str,
    /// Repartitioned disks only (null when preserved).
    pub disk_guid: Option<String>,
    pub first_usable_lba: Option<u64>,
    pub last_usable_lba: Option<u64>,
    /// The partitions to create (empty when preserved).
    pub partitions: Vec<PartJson<'a>>,
    /// Preserved disks: existing filesystems put in fstab, by label.
    pub preserved_mounts: Vec<MountJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct PartJson<'a> {
    pub number: u32,
    /// The GPT partition name.
    pub label: &'a str,
    /// The config's type name (esp, root, linux, swap, ... or a GUID).
    #[serde(rename = "type")]
    pub type_name: &'a str,
    pub type_guid: String,
    pub partuuid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub start_bytes: u64,
    pub size_bytes: u64,
    /// vfat, ext4, xfs, btrfs, swap; null when left unformatted.
    pub filesystem: Option<&'static str>,
    /// As blkid and fstab show it (vfat: XXXX-XXXX).
    pub fs_uuid: Option<String>,
    /// As the filesystem stores it (vfat: upper case, at most 11 characters).
    pub fs_label: Option<String>,
    pub mount: Option<&'a str>,
    pub mount_options: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct MountJson<'a> {
    pub label: &'a str,
    pub mount: &'a str,
    pub mount_options: Option<&'a str>,
    pub mount_during_install: bool,
}

/// The JSON view of `plan`; `fstab` is the rendered /etc/fstab.
pub fn view(plan: &Plan, fstab: String) -> PlanJson<'_> {
    PlanJson {
        disks: plan.disks.iter().map(disk).collect(),
        arrays: plan.arrays.iter().map(array).collect(),
        luks: plan.luks.iter().map(luks_view).collect(),
        fstab,
        mdadm_conf: md::render_conf(&plan.arrays),
        crypttab: luks::render_crypttab(&plan.luks),
    }
}

fn luks_view(l: &PlannedLuks) -> LuksJson<'_> {
    let (on, on_device) = match &l.on {
        Backing::Partition {
            label,
            disk_path,
            number,
        } => (
            label.as_str(),
            crate::blockdev::device::partition_node(disk_path, *number),
        ),
        Backing::Array(n) => (n.as_str(), format!("/dev/md/{n}")),
    };
    LuksJson {
        name: &l.name,
        device: l.device(),
        uuid: uuid_string(&l.uuid),
        on,
        on_device,
        pbkdf: "argon2id",
        pbkdf_memory_kib: l.pbkdf_kib,
        recovery_keyslot: l.recovery.is_some(),
        filesystem: l.fs.map(|f| f.name()),
        fs_uuid: match (l.fs, l.fs_uuid) {
            (Some(fs), Some(u)) => Some(display_uuid(fs, &u)),
            _ => None,
        },
        fs_label: match (l.fs, &l.fs_label) {
            (Some(fs), Some(lb)) => stored_label(fs, lb),
            _ => None,
        },
        mount: l.mount.as_deref(),
        mount_options: l.mount_options.as_deref(),
    }
}

fn array(a: &PlannedArray) -> ArrayJson<'_> {
    ArrayJson {
        name: &a.name,
        device: a.device(),
        level: a.level,
        metadata: md::METADATA,
        uuid: md::mdadm_uuid(&a.uuid),
        members: a
            .members
            .iter()
            .map(|m| MemberJson {
                label: &m.label,
                disk: &m.disk,
                path: &m.disk_path,
                number: m.number,
            })
            .collect(),
        member_size_bytes: a.member_bytes,
        filesystem: a.fs.map(|f| f.name()),
        fs_uuid: match (a.fs, a.fs_uuid) {
            (Some(fs), Some(u)) => Some(display_uuid(fs, &u)),
            _ => None,
        },
        fs_label: match (a.fs, &a.fs_label) {
            (Some(fs), Some(l)) => stored_label(fs, l),
            _ => None,
        },
        mount: a.mount.as_deref(),
        mount_options: a.mount_options.as_deref(),
    }
}

fn disk(d: &DiskPlan) -> DiskJson<'_> {
    let ss = d.disk.sector_size;
    let (disk_guid, first, last, partitions) = match &d.action {
        DiskAction::Repartition {
            disk_guid,
            parts,
            first_usable,
            last_usable,
        } => (
            Some(uuid_string(disk_guid)),
            Some(*first_usable),
            Some(*last_usable),
            parts.iter().map(|p| part(p, ss)).collect(),
        ),
        DiskAction::Preserve => (None, None, None, Vec::new()),
    };
    let preserved_mounts = match d.action {
        DiskAction::Preserve => d
            .spec
            .mounts
            .iter()
            .map(|m| MountJson {
                label: &m.label,
                mount: &m.mount,
                mount_options: m.mount_options.as_deref(),
                mount_during_install: m.mount_during_install,
            })
            .collect(),
        DiskAction::Repartition { .. } => Vec::new(),
    };
    DiskJson {
        name: &d.name,
        path: &d.disk.path,
        by_id: &d.disk.by_id,
        serial: d.disk.serial.as_deref(),
        wwn: d.disk.wwn.as_deref(),
        model: d.disk.model.as_deref(),
        size_bytes: d.disk.size_bytes,
        logical_sector_size: ss,
        action: match d.action {
            DiskAction::Repartition { .. } => "repartition",
            DiskAction::Preserve => "preserve",
        },
        disk_guid,
        first_usable_lba: first,
        last_usable_lba: last,
        partitions,
        preserved_mounts,
    }
}

fn part(p: &PlannedPart, ss: u64) -> PartJson<'_> {
    PartJson {
        number: p.number,
        label: &p.label,
        type_name: &p.type_name,
        type_guid: uuid_string(&p.type_guid),
        partuuid: uuid_string(&p.part_uuid),
        first_lba: p.first_lba,
        last_lba: p.last_lba,
        start_bytes: p.first_lba * ss,
        size_bytes: p.sectors() * ss,
        filesystem: p.fs.map(|f| f.name()),
        fs_uuid: match (p.fs, p.fs_uuid) {
            (Some(fs), Some(u)) => Some(display_uuid(fs, &u)),
            _ => None,
        },
        fs_label: match (p.fs, &p.fs_label) {
            (Some(fs), Some(l)) => stored_label(fs, l),
            _ => None,
        },
        mount: p.mount.as_deref(),
        mount_options: p.mount_options.as_deref(),
    }
}
