//! `[[array]]`: md RAID arrays over partitions of wiped disks. Validated after the disks, since
//! the members are partition labels. Every problem names its key path (`array[0].members[1]`).

use super::schema::ArrayConfig;
use super::units::{format_size, parse_guid, part_type_guid, MIB};
use super::validate::{check_fs_keys, is_device_name, FsKeys, Problems, Seen};
use crate::config::layout::{ArraySpec, DiskSpec, FsKind, PartSpec, SizeSpec};

/// Longest array name: the md superblock holds 32 bytes for `any:NAME` and a NUL.
pub const ARRAY_NAME_MAX: usize = 27;

/// What the firmware does to an ESP on md, said once for both ways of asking for one.
const ESP_ON_MD: &str = "the firmware reads and writes the ESP without md, so its writes desync \
     the mirror, and bootctl refuses an ESP on md; give each disk its own ESP partition instead \
     (one ESP per disk, outside any array)";

/// Where a partition label lives.
struct Found<'a> {
    disk: &'a DiskSpec,
    part: Option<&'a PartSpec>,
}

fn find_label<'a>(disks: &'a [DiskSpec], label: &str) -> Option<Found<'a>> {
    disks.iter().find_map(|d| {
        if let Some(part) = d.partitions.iter().find(|p| p.label == label) {
            return Some(Found {
                disk: d,
                part: Some(part),
            });
        }
        d.mounts.iter().any(|m| m.label == label).then_some(Found {
            disk: d,
            part: None,
        })
    })
}

fn aligned(s: SizeSpec) -> Option<u64> {
    match s {
        SizeSpec::Bytes(b) => Some(b.div_ceil(MIB) * MIB),
        SizeSpec::Rest => None,
    }
}

pub(super) fn validate_array(
    c: &ArrayConfig,
    i: usize,
    all: &[ArrayConfig],
    disks: &[DiskSpec],
    seen: &mut Seen,
    p: &mut Problems,
) -> ArraySpec {
    let ak = format!("array[{i}]");
    let key = |f: &str| format!("{ak}.{f}");
    let name = c.name.clone().unwrap_or_default();
    let who = format!("array {name:?}");
    match c.name.as_deref() {
        None => p.add(
            key("name"),
            "missing: every array needs a name, e.g. name = \"root\" (it becomes /dev/md/root)",
        ),
        Some(n) => {
            if !is_device_name(n, ARRAY_NAME_MAX) {
                p.add(
                    key("name"),
                    format!("{n:?}: an array name is 1 to {ARRAY_NAME_MAX} lowercase letters, digits, '-' or '_', starting with a letter"),
                );
            } else if let Some(j) = all[..i].iter().position(|o| o.name.as_deref() == Some(n)) {
                p.add(
                    key("name"),
                    format!("duplicate array name {n:?} (already used by array[{j}].name)"),
                );
            }
        }
    }
    let level = match c.level {
        None => {
            p.add(key("level"), "missing: give the RAID level, level = 1");
            1
        }
        Some(1) => 1,
        Some(n) => {
            p.add(
                key("level"),
                format!("level {n} is not supported: anemos creates RAID1 arrays (level = 1)"),
            );
            1
        }
    };
    let members = c.members.clone().unwrap_or_default();
    check_members(c, i, all, &who, &members, disks, p);

    let (format, fs_uuid) = check_fs_keys(
        &FsKeys {
            format: c.format.as_deref(),
            mount: c.mount.as_deref(),
            options: c.options.as_deref(),
            fs_label: c.fs_label.as_deref(),
            fs_uuid: c.fs_uuid.as_deref(),
        },
        "array",
        &key,
        seen,
        p,
    );
    if format == Some(FsKind::Vfat) {
        p.add(
            key("format"),
            format!("{who}: \"vfat\" on an array is an ESP on md: {ESP_ON_MD}"),
        );
    }
    let uuid = c
        .uuid
        .as_deref()
        .and_then(|u| parse_guid(u).map_err(|e| p.add(key("uuid"), e)).ok());
    ArraySpec {
        name,
        level,
        members,
        format,
        mount: c.mount.clone(),
        mount_options: c.options.clone(),
        fs_label: c.fs_label.clone(),
        fs_uuid,
        uuid,
    }
}

/// Members: at least two, each a partition of a wiped disk, each on its own disk, in no other
/// array, without a filesystem of its own, not an ESP, all of one size.
fn check_members(
    c: &ArrayConfig,
    i: usize,
    all: &[ArrayConfig],
    who: &str,
    members: &[String],
    disks: &[DiskSpec],
    p: &mut Problems,
) {
    let mk = format!("array[{i}].members");
    if c.members.is_none() {
        p.add(
            &mk,
            "missing: the partition labels of the members, e.g. members = [\"root-a\", \"root-b\"]",
        );
        return;
    }
    if members.len() < 2 {
        p.add(
            &mk,
            format!(
                "{who}: RAID1 needs at least 2 members on different disks ({} given)",
                members.len()
            ),
        );
    }
    let esp = part_type_guid("esp");
    // (label, disk name, size) of the members that are partitions of wiped disks.
    let mut ok: Vec<(&str, &str, SizeSpec)> = Vec::new();
    for (j, m) in members.iter().enumerate() {
        let key = format!("{mk}[{j}]");
        if members[..j].contains(m) {
            p.add(key, format!("{who}: member {m:?} is listed twice"));
            continue;
        }
        if let Some(o) = all[..i].iter().position(|a| {
            a.members
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == m)
        }) {
            p.add(
                key,
                format!("{who}: member {m:?} is already a member of array[{o}]; a partition belongs to one array only"),
            );
            continue;
        }
        let Some(found) = find_label(disks, m) else {
            p.add(
                key,
                format!("{who}: member {m:?} is not a partition label (members name partitions of wiped disks by their label)"),
            );
            continue;
        };
        let Some(part) = found.part.filter(|_| !found.disk.preserve) else {
            p.add(
                key,
                format!(
                    "{who}: member {m:?} is on the preserved disk {:?}; members must be partitions of wiped disks (a preserved disk is never written)",
                    found.disk.name
                ),
            );
            continue;
        };
        if Some(part.type_guid) == esp {
            p.add(
                key,
                format!("{who}: member {m:?} is an ESP (type = \"esp\"): {ESP_ON_MD}"),
            );
            continue;
        }
        let own: Vec<&str> = [
            ("format", part.format.is_some()),
            ("mount", part.mount.is_some()),
            ("fs_label", part.fs_label.is_some()),
            ("fs_uuid", part.fs_uuid.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| *f)
        .collect();
        if !own.is_empty() {
            p.add(
                key,
                format!(
                    "{who}: member {m:?} has {} of its own; a member carries no filesystem (give format and mount to the array)",
                    own.join(", ")
                ),
            );
            continue;
        }
        if let Some((other, _, _)) = ok.iter().find(|(_, d, _)| *d == found.disk.name) {
            p.add(
                key,
                format!(
                    "{who}: members {other:?} and {m:?} are both on disk {:?}; each member must be on a different disk (a mirror on one disk does not survive that disk's failure)",
                    found.disk.name
                ),
            );
            continue;
        }
        ok.push((m, &found.disk.name, part.size));
    }
    let sizes: Vec<Option<u64>> = ok.iter().map(|(_, _, s)| aligned(*s)).collect();
    if sizes.windows(2).any(|w| w[0] != w[1]) {
        let list: Vec<String> = ok
            .iter()
            .zip(&sizes)
            .map(|((l, _, _), s)| {
                format!(
                    "{l}: {}",
                    s.map(format_size).unwrap_or_else(|| "rest".into())
                )
            })
            .collect();
        p.add(
            mk,
            format!(
                "{who}: members have different sizes ({}); give every member the same size, or \"rest\" to every one (the smallest disk then decides)",
                list.join(", ")
            ),
        );
    }
}
