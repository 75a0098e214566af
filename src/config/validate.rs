//! [`Config`] → [`Validated`]: every rule of docs/config.md for `hostname` and `[[disk]]`, plus
//! the cross-section checks. Problems are collected, never returned early: each carries the key
//! path it is about. When a value is bad a placeholder stands in for it, so later rules still
//! run; the result is only used when no problem was found.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;

use super::schema::{Config, DiskConfig, MatchConfig, MountConfig, PartitionConfig};
use super::units::{
    check_absolute_path, check_hostname, check_label, check_mount_options, check_plain,
    format_size, parse_guid, parse_part_type, parse_size, parse_size_range, part_type_guid, MIB,
    SIZE_HINT,
};
use super::{sections, Validated};
use crate::config::layout::{
    DiskSpec, FsKind, Layout, Matcher, PartSpec, PreservedMount, SizeSpec,
};

/// Smallest partition anemos formats as FAT32 (fatfs itself needs about 33 MiB; 64 MiB leaves
/// room for rounding and keeps the cluster count well clear of the FAT16 boundary).
pub const FAT32_MIN: u64 = 64 * MIB;

/// Room a wiped disk needs besides its partitions: 1 MiB before the first partition (protective
/// MBR, primary GPT, alignment) and 1 MiB at the end (backup GPT, alignment).
pub const TABLE_OVERHEAD: u64 = 2 * MIB;

/// Collected problems: (key path, message).
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }

    /// Records `result`'s error under `key`; true when it was Ok.
    pub fn check(&mut self, key: &str, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => true,
            Err(m) => {
                self.add(key, m);
                false
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// Values that must be unique across the whole file, with the key path of their first use.
#[derive(Default)]
pub(super) struct Seen {
    disk_names: HashMap<String, String>,
    labels: HashMap<String, String>,
    mounts: HashMap<String, String>,
    part_guids: HashMap<[u8; 16], String>,
    pub(super) fs_uuids: HashMap<[u8; 16], String>,
}

/// Records `value` as used at `key`; returns the key path of an earlier use.
fn first_use<K: Hash + Eq>(map: &mut HashMap<K, String>, value: K, key: &str) -> Option<String> {
    match map.entry(value) {
        Entry::Occupied(e) => Some(e.get().clone()),
        Entry::Vacant(e) => {
            e.insert(key.to_string());
            None
        }
    }
}

pub fn validate(cfg: &Config, p: &mut Problems) -> Validated {
    if let Some(h) = &cfg.hostname {
        p.check("hostname", check_hostname(h));
    }
    let mut seen = Seen::default();
    let disks: Vec<DiskSpec> = cfg
        .disk
        .iter()
        .enumerate()
        .map(|(i, d)| validate_disk(d, &format!("disk[{i}]"), &mut seen, p))
        .collect();
    let arrays = cfg
        .array
        .iter()
        .enumerate()
        .map(|(i, a)| super::arrays::validate_array(a, i, &cfg.array, &disks, &mut seen, p))
        .collect();
    let luks = cfg
        .luks
        .iter()
        .enumerate()
        .map(|(i, l)| super::luks::validate_luks(l, i, cfg, &disks, &mut seen, p))
        .collect();
    let layout = Layout {
        seed: cfg.hostname.clone().unwrap_or_else(|| "anemos".into()),
        disks,
        arrays,
        luks,
    };
    let install = cfg.install.as_ref().map(|c| sections::install(c, p));
    let bootloader = sections::bootloader(cfg.bootloader.as_ref(), p);
    let deploy = sections::deploy(cfg.deploy.as_ref(), &bootloader, p);
    let network = sections::network(cfg.network.as_ref(), p);
    super::targets::check_targets(&layout, install.as_ref(), &bootloader, p);
    Validated {
        hostname: cfg.hostname.clone(),
        layout,
        install,
        bootloader,
        deploy,
        network,
    }
}

fn validate_disk(d: &DiskConfig, dk: &str, seen: &mut Seen, p: &mut Problems) -> DiskSpec {
    let name = disk_name(d.name.as_deref(), dk, seen, p);
    let matcher = validate_matcher(d.matcher.as_ref(), dk, p);
    match (d.preserve, d.wipe) {
        (true, true) => p.add(
            format!("{dk}.wipe"),
            "wipe = true contradicts preserve = true (a preserved disk is never written); choose one",
        ),
        (true, false) if !d.partitions.is_empty() => p.add(
            format!("{dk}.partitions"),
            "a preserved disk (preserve = true) cannot have partitions to create; list its filesystems under mounts",
        ),
        (false, true) if !d.mounts.is_empty() => p.add(
            format!("{dk}.mounts"),
            "mounts lists filesystems kept on a preserved disk; this disk is wiped, so give its partitions a mount",
        ),
        (false, false) if !d.partitions.is_empty() => p.add(
            format!("{dk}.wipe"),
            format!(
                "disk {name:?}: partitions given but wipe = false: anemos only writes a new table when wipe = true"
            ),
        ),
        (false, false) if !d.mounts.is_empty() => p.add(
            format!("{dk}.preserve"),
            format!("disk {name:?}: mounts given but preserve = false: mounts are for preserved disks"),
        ),
        (false, false) => p.add(
            format!("{dk}.wipe"),
            format!(
                "disk {name:?}: set wipe = true to repartition this disk, or preserve = true to keep it untouched"
            ),
        ),
        _ => {}
    }

    let mut rest_at: Option<String> = None;
    let mut partitions = Vec::new();
    for (j, c) in d.partitions.iter().enumerate() {
        let pk = format!("{dk}.partitions[{j}]");
        let spec = validate_partition(c, &pk, seen, p);
        if spec.size == SizeSpec::Rest {
            match &rest_at {
                Some(prev) => p.add(
                    format!("{pk}.size"),
                    format!("a second \"rest\" on this disk ({prev} already takes the rest); at most one per disk"),
                ),
                None => rest_at = Some(format!("{pk}.size")),
            }
        }
        partitions.push(spec);
    }
    if let (Some(max), true) = (matcher.size_max, d.wipe && !partitions.is_empty()) {
        check_fit(&partitions, max, dk, p);
    }
    let mounts = d
        .mounts
        .iter()
        .enumerate()
        .map(|(j, m)| validate_mount(m, &format!("{dk}.mounts[{j}]"), seen, p))
        .collect();
    DiskSpec {
        name,
        matcher,
        wipe: d.wipe,
        preserve: d.preserve,
        removable: d.removable,
        partitions,
        mounts,
    }
}

fn disk_name(name: Option<&str>, dk: &str, seen: &mut Seen, p: &mut Problems) -> String {
    let key = format!("{dk}.name");
    let Some(n) = name else {
        p.add(
            key,
            "missing: every disk needs a role name, e.g. name = \"system\"",
        );
        return String::new();
    };
    let ok = n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if !ok {
        p.add(
            &key,
            format!("{n:?}: a disk name is 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter"),
        );
    } else if let Some(prev) = first_use(&mut seen.disk_names, n.to_string(), &key) {
        p.add(
            &key,
            format!("duplicate disk name {n:?} (already used by {prev})"),
        );
    }
    n.to_string()
}

fn validate_matcher(m: Option<&MatchConfig>, dk: &str, p: &mut Problems) -> Matcher {
    let mk = format!("{dk}.match");
    let Some(m) = m else {
        p.add(
            mk,
            "missing: say which disk this is, e.g. match = { serial = \"...\" }",
        );
        return Matcher::default();
    };
    let strings = [
        ("by_id", &m.by_id),
        ("serial", &m.serial),
        ("wwn", &m.wwn),
        ("model", &m.model),
        ("path", &m.path),
    ];
    if strings.iter().all(|(_, v)| v.is_none()) && m.size.is_none() {
        p.add(
            &mk,
            "no matcher given: set at least one of by_id, serial, wwn, model, path, size",
        );
    }
    for (field, value) in strings {
        if let Some(v) = value {
            p.check(&format!("{mk}.{field}"), check_plain(v));
        }
    }
    if let Some(v) = m.by_id.as_deref().filter(|v| v.contains('/')) {
        p.add(
            format!("{mk}.by_id"),
            format!("{v:?}: by_id is a name in /dev/disk/by-id/, without the directory (e.g. \"virtio-sys0\")"),
        );
    }
    if let Some(v) = m.path.as_deref().filter(|v| !v.starts_with("/dev/")) {
        p.add(
            format!("{mk}.path"),
            format!("{v:?} is not a device path under /dev/"),
        );
    }
    let (size_min, size_max) = match m.size.as_deref().map(parse_size_range) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            p.add(format!("{mk}.size"), e);
            (None, None)
        }
        None => (None, None),
    };
    Matcher {
        by_id: m.by_id.clone(),
        serial: m.serial.clone(),
        wwn: m.wwn.clone(),
        model: m.model.clone(),
        path: m.path.clone(),
        size_min,
        size_max,
    }
}

/// "cannot fit": only knowable when match.size gives an upper bound.
fn check_fit(parts: &[PartSpec], max: u64, dk: &str, p: &mut Problems) {
    let need = parts.iter().fold(TABLE_OVERHEAD, |acc, s| {
        let bytes = match s.size {
            SizeSpec::Bytes(b) => b.div_ceil(MIB).saturating_mul(MIB),
            SizeSpec::Rest => MIB,
        };
        acc.saturating_add(bytes)
    });
    if need > max {
        p.add(
            format!("{dk}.partitions"),
            format!(
                "cannot fit: these partitions need at least {} (sizes rounded up to 1MiB, 1MiB for \"rest\", \
                 2MiB for the partition tables) but match.size allows a disk of at most {}",
                format_size(need),
                format_size(max)
            ),
        );
    }
}

pub(super) fn parse_format(text: &str) -> Result<FsKind, String> {
    let all = [
        FsKind::Vfat,
        FsKind::Ext4,
        FsKind::Xfs,
        FsKind::Btrfs,
        FsKind::Swap,
    ];
    all.into_iter().find(|k| k.name() == text).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|k| k.name()).collect();
        format!("unknown format {text:?} (use one of: {})", names.join(", "))
    })
}

/// Filesystem label limits of each mkfs (bytes).
pub(super) fn check_fs_label(text: &str, fs: FsKind) -> Result<(), String> {
    check_plain(text)?;
    let max = match fs {
        FsKind::Vfat => 11,
        FsKind::Xfs => 12,
        FsKind::Ext4 | FsKind::Swap => 16,
        FsKind::Btrfs => 255,
    };
    if text.len() > max {
        return Err(format!(
            "{text:?} is {} bytes long; a {} label holds at most {max}",
            text.len(),
            fs.name()
        ));
    }
    let vfat_ok =
        |c: u8| (c.is_ascii_graphic() || c == b' ') && !b"\"*+,./:;<=>?[\\]|".contains(&c);
    if fs == FsKind::Vfat && !text.bytes().all(vfat_ok) {
        return Err(format!(
            "{text:?}: a vfat label is ASCII without any of \"*+,./:;<=>?[\\]|"
        ));
    }
    Ok(())
}

fn validate_partition(
    c: &PartitionConfig,
    pk: &str,
    seen: &mut Seen,
    p: &mut Problems,
) -> PartSpec {
    let key = |f: &str| format!("{pk}.{f}");
    match c.label.as_deref() {
        None => p.add(
            key("label"),
            "missing: every partition needs a label (its GPT PARTLABEL)",
        ),
        Some(l) => {
            if p.check(&key("label"), check_label(l)) {
                check_unique_label(l, &key("label"), seen, p);
            }
        }
    }
    let type_guid = match c.type_name.as_deref().map(parse_part_type) {
        None => {
            p.add(
                key("type"),
                "missing: give a type name (esp, root, swap, linux, ...) or a type GUID",
            );
            [0; 16]
        }
        Some(Err(e)) => {
            p.add(key("type"), e);
            [0; 16]
        }
        Some(Ok(g)) => g,
    };
    let is_esp = Some(type_guid) == part_type_guid("esp");
    let size = partition_size(c.size.as_deref(), &key("size"), p);
    let format = c
        .format
        .as_deref()
        .and_then(|f| parse_format(f).map_err(|e| p.add(key("format"), e)).ok());
    check_format_rules(c, type_guid, is_esp, format, pk, p);

    if let Some(m) = c.mount.as_deref() {
        if p.check(&key("mount"), check_absolute_path(m)) {
            check_unique_mount(m, &key("mount"), seen, p);
        }
    }
    if let Some(o) = c.options.as_deref() {
        p.check(&key("options"), check_mount_options(o));
        if c.mount.is_none() && format != Some(FsKind::Swap) {
            p.add(
                key("options"),
                "options are for the fstab line, but this partition has no mount",
            );
        }
    }
    let part_uuid = unique_guid(c.guid.as_deref(), &key("guid"), &mut seen.part_guids, p);
    let fs_uuid = unique_guid(c.fs_uuid.as_deref(), &key("fs_uuid"), &mut seen.fs_uuids, p);

    let fat32 = format == Some(FsKind::Vfat) && c.fat32.unwrap_or(is_esp);
    if let (true, SizeSpec::Bytes(b)) = (fat32, size) {
        if b > 0 && b < FAT32_MIN {
            p.add(
                key("size"),
                format!(
                    "{} is too small for FAT32: FAT32 needs at least 64MiB here (grow it, or set fat32 = false)",
                    format_size(b)
                ),
            );
        }
    }
    PartSpec {
        label: c.label.clone().unwrap_or_default(),
        type_name: c.type_name.clone().unwrap_or_default(),
        type_guid,
        size,
        format,
        mount: c.mount.clone(),
        mount_options: c.options.clone(),
        fs_label: c.fs_label.clone(),
        part_uuid,
        fs_uuid,
        fat32,
    }
}

fn partition_size(text: Option<&str>, key: &str, p: &mut Problems) -> SizeSpec {
    match text {
        None => p.add(key, "missing: give a size (\"512MiB\") or \"rest\""),
        Some("rest") => return SizeSpec::Rest,
        Some(t) => match parse_size(t) {
            Ok(0) => p.add(
                key,
                format!("{t:?}: a partition size must be greater than zero"),
            ),
            Ok(b) => return SizeSpec::Bytes(b),
            Err(e) => p.add(
                key,
                e.replace(SIZE_HINT, &format!("{SIZE_HINT}, or \"rest\"")),
            ),
        },
    }
    SizeSpec::Bytes(0)
}

/// How type, format, mount, fs_label, fs_uuid and fat32 go together.
fn check_format_rules(
    c: &PartitionConfig,
    type_guid: [u8; 16],
    is_esp: bool,
    format: Option<FsKind>,
    pk: &str,
    p: &mut Problems,
) {
    let key = |f: &str| format!("{pk}.{f}");
    let is_swap_type = Some(type_guid) == part_type_guid("swap");
    if Some(type_guid) == part_type_guid("bios-boot") && c.format.is_some() {
        p.add(
            key("format"),
            "a BIOS boot partition holds grub's core image, not a filesystem: remove format (and mount)",
        );
    }
    match format {
        Some(f) if is_swap_type && f != FsKind::Swap => p.add(
            key("format"),
            format!(
                "{:?} on a partition of type \"swap\": use format = \"swap\" (or no format)",
                f.name()
            ),
        ),
        Some(f) if is_esp && f != FsKind::Vfat => p.add(
            key("format"),
            format!(
                "{:?} on the ESP: UEFI firmware reads only FAT, use format = \"vfat\"",
                f.name()
            ),
        ),
        _ => {}
    }
    // A format that was given but is invalid is already reported; "needs a format" would mislead.
    let no_format = c.format.is_none();
    if c.mount.is_some() {
        match format {
            None if no_format => p.add(
                key("mount"),
                "a mount needs a format: anemos mounts only filesystems it creates (add e.g. format = \"ext4\")",
            ),
            Some(FsKind::Swap) => p.add(key("mount"), "swap is not mounted; remove mount"),
            _ => {}
        }
    }
    if let Some(l) = c.fs_label.as_deref() {
        match format {
            None if no_format => p.add(key("fs_label"), "a filesystem label needs a format"),
            None => {}
            Some(f) => {
                p.check(&key("fs_label"), check_fs_label(l, f));
            }
        }
    }
    if c.fs_uuid.is_some() {
        match format {
            None if no_format => p.add(key("fs_uuid"), "a filesystem UUID needs a format"),
            Some(FsKind::Vfat) => p.add(
                key("fs_uuid"),
                "vfat has a 32-bit volume ID, not a UUID: leave fs_uuid unset and anemos derives one",
            ),
            _ => {}
        }
    }
    if c.fat32.is_some() && format != Some(FsKind::Vfat) && (no_format || format.is_some()) {
        p.add(key("fat32"), "fat32 applies only to format = \"vfat\"");
    }
}

/// A name that becomes a device node (/dev/md/NAME, /dev/mapper/NAME): 1 to `max` lowercase
/// letters, digits, '-' or '_', starting with a letter.
pub(super) fn is_device_name(n: &str, max: usize) -> bool {
    n.len() <= max
        && n.starts_with(|ch: char| ch.is_ascii_lowercase())
        && n.bytes()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == b'-' || ch == b'_')
}

/// The filesystem keys that an array or a LUKS volume carries the way a partition does.
pub(super) struct FsKeys<'a> {
    pub format: Option<&'a str>,
    pub mount: Option<&'a str>,
    pub options: Option<&'a str>,
    pub fs_label: Option<&'a str>,
    pub fs_uuid: Option<&'a str>,
}

/// Checks [`FsKeys`] of `what` ("array", "LUKS volume"), each problem under `key(field)`:
/// the format parses; the mount is absolute, unique and has a mountable format; options go with
/// a mount (or swap); a label fits the format; a UUID needs a format and is unique. Returns
/// the format and the explicit filesystem UUID. What only one kind refuses (vfat on md, an
/// encrypted /boot) is the caller's.
pub(super) fn check_fs_keys(
    k: &FsKeys,
    what: &str,
    key: &dyn Fn(&str) -> String,
    seen: &mut Seen,
    p: &mut Problems,
) -> (Option<FsKind>, Option<[u8; 16]>) {
    let format = k
        .format
        .and_then(|f| parse_format(f).map_err(|e| p.add(key("format"), e)).ok());
    // A format that was given but is invalid is already reported; "needs a format" would mislead.
    let no_format = k.format.is_none();
    if let Some(m) = k.mount {
        if p.check(&key("mount"), check_absolute_path(m)) {
            check_unique_mount(m, &key("mount"), seen, p);
        }
        match format {
            None if no_format => p.add(
                key("mount"),
                "a mount needs a format: anemos mounts only filesystems it creates (add e.g. format = \"ext4\")",
            ),
            Some(FsKind::Swap) => p.add(key("mount"), "swap is not mounted; remove mount"),
            _ => {}
        }
    }
    if let Some(o) = k.options {
        p.check(&key("options"), check_mount_options(o));
        if k.mount.is_none() && format != Some(FsKind::Swap) {
            p.add(
                key("options"),
                format!("options are for the fstab line, but this {what} has no mount"),
            );
        }
    }
    if let Some(l) = k.fs_label {
        match format {
            None if no_format => p.add(key("fs_label"), "a filesystem label needs a format"),
            None => {}
            Some(f) => {
                p.check(&key("fs_label"), check_fs_label(l, f));
            }
        }
    }
    if k.fs_uuid.is_some() && no_format {
        p.add(key("fs_uuid"), "a filesystem UUID needs a format");
    }
    let fs_uuid = unique_guid(k.fs_uuid, &key("fs_uuid"), &mut seen.fs_uuids, p);
    (format, fs_uuid)
}

fn check_unique_label(label: &str, key: &str, seen: &mut Seen, p: &mut Problems) {
    if let Some(prev) = first_use(&mut seen.labels, label.to_string(), key) {
        p.add(
            key,
            format!(
                "duplicate label {label:?} (already used by {prev}); labels name partitions in \
                 /dev/disk/by-partlabel and fstab, so they must be unique across all disks"
            ),
        );
    }
}

pub(super) fn check_unique_mount(mount: &str, key: &str, seen: &mut Seen, p: &mut Problems) {
    if let Some(prev) = first_use(&mut seen.mounts, mount.to_string(), key) {
        p.add(
            key,
            format!("duplicate mount point {mount:?} (already used by {prev})"),
        );
    }
}

pub(super) fn unique_guid(
    text: Option<&str>,
    key: &str,
    seen: &mut HashMap<[u8; 16], String>,
    p: &mut Problems,
) -> Option<[u8; 16]> {
    let g = parse_guid(text?).map_err(|e| p.add(key, e)).ok()?;
    if let Some(prev) = first_use(seen, g, key) {
        p.add(
            key,
            format!(
                "duplicate GUID {:?} (already used by {prev})",
                text.unwrap_or_default()
            ),
        );
    }
    Some(g)
}

fn validate_mount(c: &MountConfig, mk: &str, seen: &mut Seen, p: &mut Problems) -> PreservedMount {
    let key = |f: &str| format!("{mk}.{f}");
    match c.label.as_deref() {
        None => p.add(
            key("label"),
            "missing: the filesystem label or PARTLABEL of the filesystem to mount",
        ),
        Some(l) => {
            if p.check(&key("label"), check_label(l)) {
                check_unique_label(l, &key("label"), seen, p);
            }
        }
    }
    match c.mount.as_deref() {
        None => p.add(
            key("mount"),
            "missing: where the filesystem goes in the target, e.g. mount = \"/home\"",
        ),
        Some(m) => {
            if p.check(&key("mount"), check_absolute_path(m)) {
                check_unique_mount(m, &key("mount"), seen, p);
            }
        }
    }
    if let Some(o) = c.options.as_deref() {
        p.check(&key("options"), check_mount_options(o));
    }
    PreservedMount {
        label: c.label.clone().unwrap_or_default(),
        mount: c.mount.clone().unwrap_or_default(),
        mount_options: c.options.clone(),
        mount_during_install: c.during_install,
    }
}
