//! Validated disk layout: what the planner consumes. Produced from `anemos.toml` by
//! `crate::config` (which owns parsing, key paths and error messages); nothing here is serde.

/// A size request for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// Exactly this many bytes (rounded up to the 1 MiB alignment by the planner).
    Bytes(u64),
    /// Everything left on the disk (at most one per disk).
    Rest,
}

/// How a disk is recognised. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// A /dev/disk/by-id name without the directory, e.g. "virtio-sys0".
    pub by_id: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// Substring of the model.
    pub model: Option<String>,
    /// A device path such as /dev/vda or /dev/disk/by-path/...
    pub path: Option<String>,
    /// Inclusive byte range; either bound optional ("100G..", "..2T").
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
}

/// Filesystems anemos can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Vfat,
    Ext4,
    Xfs,
    Btrfs,
    Swap,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Vfat => "vfat",
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
        }
    }
}

/// One partition to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    /// GPT PARTLABEL (≤ 36 UTF-16 code units); unique across the config.
    pub label: String,
    /// The type as written by the user ("esp", "root", a GUID) for display.
    pub type_name: String,
    /// GPT partition type GUID (mixed-endian on-disk order is the writer's job; this is the
    /// canonical big-endian byte order of the textual GUID).
    pub type_guid: [u8; 16],
    pub size: SizeSpec,
    pub format: Option<FsKind>,
    /// Absolute mount point in the target ("/", "/boot"), if any.
    pub mount: Option<String>,
    pub mount_options: Option<String>,
    /// Filesystem label (defaults to the partition label, truncated to the fs limit).
    pub fs_label: Option<String>,
    /// Explicit PARTUUID; else derived from the seed.
    pub part_uuid: Option<[u8; 16]>,
    /// Explicit filesystem UUID; else derived from the seed.
    pub fs_uuid: Option<[u8; 16]>,
    /// For vfat: require FAT32 (default true for the ESP).
    pub fat32: bool,
}

/// A filesystem on a preserved disk that goes into the target's fstab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreservedMount {
    /// Filesystem label or PARTLABEL identifying it ("home").
    pub label: String,
    pub mount: String,
    pub mount_options: Option<String>,
    /// Mount it (read-only) during the install; default false.
    pub mount_during_install: bool,
}

/// One `[[disk]]` entry after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Role name used in logs, env vars and the plan.
    pub name: String,
    pub matcher: Matcher,
    /// A new table may be written (required to repartition).
    pub wipe: bool,
    /// Never opened for writing.
    pub preserve: bool,
    /// Allow removable/USB disks to match.
    pub removable: bool,
    pub partitions: Vec<PartSpec>,
    pub mounts: Vec<PreservedMount>,
}

/// One `[[array]]` after validation: a Linux md array over partitions of wiped disks, each on
/// a different disk. It carries a filesystem like a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySpec {
    /// The array's name: /dev/md/NAME, and `any:NAME` in the md superblock.
    pub name: String,
    /// RAID level (1).
    pub level: u32,
    /// Partition labels of the members, in the order given.
    pub members: Vec<String>,
    pub format: Option<FsKind>,
    pub mount: Option<String>,
    pub mount_options: Option<String>,
    /// Filesystem label (defaults to the array name, truncated to the fs limit).
    pub fs_label: Option<String>,
    /// Explicit filesystem UUID; else derived from the seed.
    pub fs_uuid: Option<[u8; 16]>,
    /// Explicit array UUID; else derived from the seed.
    pub uuid: Option<[u8; 16]>,
}

/// What a LUKS container sits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LuksOn {
    /// A partition of a wiped disk, by label.
    Partition(String),
    /// An array, by name.
    Array(String),
}

/// One `[[luks]]` after validation: a LUKS2 container opened as /dev/mapper/NAME, which
/// carries a filesystem like a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksSpec {
    /// The mapping name: /dev/mapper/NAME, and the first field of the crypttab line.
    pub name: String,
    pub on: LuksOn,
    /// The passphrase file, relative to the payload (under `secrets/`).
    pub passphrase: String,
    /// A second passphrase file for a recovery keyslot (under `secrets/`), if any.
    pub recovery: Option<String>,
    /// Argon2id memory cost in KiB.
    pub pbkdf_kib: u64,
    pub format: Option<FsKind>,
    pub mount: Option<String>,
    pub mount_options: Option<String>,
    /// Filesystem label (defaults to the mapping name, truncated to the fs limit).
    pub fs_label: Option<String>,
    /// Explicit filesystem UUID; else derived from the seed.
    pub fs_uuid: Option<[u8; 16]>,
    /// Explicit LUKS UUID; else derived from the seed.
    pub uuid: Option<[u8; 16]>,
}

/// The validated storage description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Seed for derived identifiers: hostname (the planner adds disk name + label).
    pub seed: String,
    pub disks: Vec<DiskSpec>,
    /// md arrays over partitions of `disks`.
    pub arrays: Vec<ArraySpec>,
    /// LUKS2 containers on partitions of `disks` or on `arrays`.
    pub luks: Vec<LuksSpec>,
}
