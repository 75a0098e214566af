//! md RAID arrays in the plan: which partitions form each array, its identifiers, the mdadm
//! command that creates it and the target's /etc/mdadm/mdadm.conf. Pure.
//!
//! Choices, made once here:
//! - Metadata 1.2: the superblock sits 4 KiB from the start of each member and the data starts
//!   after a gap (mdadm's "Data Offset"). A member therefore never looks like a plain
//!   filesystem: nothing (firmware, a rescue system, blkid) can mount one half of the mirror on
//!   its own and silently desync it, which metadata 1.0 (superblock at the end) allows. The
//!   price is that firmware cannot read a member, which is why an ESP is never an array (each
//!   disk gets its own ESP); GRUB reads 1.2 arrays, so `/boot` can be one.
//! - Homehost `any`: the superblock names the array `any:NAME`, which every host assembles as
//!   /dev/md/NAME, so the name is the same in the deploy image, in the installed system and in
//!   a rescue system (with the deploy image's hostname it would assemble as md127 elsewhere).
//! - No `--assume-clean`: the members hold whatever the disks held before, so the initial
//!   resync runs, in the background. The deploy does not wait for it: the filesystem is created
//!   and written at once (writes go to both members), and the kernel resumes the resync after
//!   the reboot from where it stopped. Assuming clean would leave blocks that differ between
//!   the members, which a scrub (`checkarray`) reports as mismatches and reads may return
//!   differently.
//! - An internal write-intent bitmap on every array (mdadm adds one only above 100 GB): after
//!   an unclean shutdown only the regions being written are resynced.

use super::plan::{derive_uuid, DiskAction, DiskPlan, PlanError, PlannedPart};
use crate::config::layout::{ArraySpec, FsKind};

/// The metadata format every array is created with (see the module comment).
pub const METADATA: &str = "1.2";

/// One member of a planned array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The partition label.
    pub label: String,
    /// The `[[disk]]` entry's name and the disk's path.
    pub disk: String,
    pub disk_path: String,
    pub number: u32,
    pub bytes: u64,
}

/// One array in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedArray {
    pub name: String,
    pub level: u32,
    pub uuid: [u8; 16],
    pub members: Vec<Member>,
    /// The size of every member partition (the array's data is this minus mdadm's data offset).
    pub member_bytes: u64,
    pub fs: Option<FsKind>,
    pub fs_uuid: Option<[u8; 16]>,
    pub fs_label: Option<String>,
    pub mount: Option<String>,
    pub mount_options: Option<String>,
}

impl PlannedArray {
    /// The array's device: /dev/md/NAME.
    pub fn device(&self) -> String {
        format!("/dev/md/{}", self.name)
    }

    /// The array as a partition-like value for mkfs (no position: not a partition).
    pub fn as_part(&self) -> PlannedPart {
        PlannedPart::unpositioned(
            &self.name,
            self.fs,
            self.fs_uuid,
            self.fs_label.clone(),
            self.mount.clone(),
            self.mount_options.clone(),
        )
    }
}

/// The seed component that keeps array identifiers apart from partitions' (a disk name cannot
/// contain '/').
const SEED_DISK: &str = "md/";

/// The array UUID as mdadm writes and reads it: four groups of 8 hex digits.
pub fn mdadm_uuid(u: &[u8; 16]) -> String {
    u.chunks(4)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// Finds every array's members in the laid-out disks. Members are checked again here (the
/// validation already did) because sizes are only final after layout.
pub fn plan_arrays(
    seed: &str,
    specs: &[ArraySpec],
    disks: &[DiskPlan],
) -> Result<Vec<PlannedArray>, PlanError> {
    let mut out = Vec::new();
    for a in specs {
        let mut members = Vec::new();
        for label in &a.members {
            let found = disks.iter().find_map(|d| match &d.action {
                DiskAction::Repartition { parts, .. } => parts
                    .iter()
                    .find(|p| &p.label == label)
                    .map(|p| (d, p.number, p.sectors() * d.disk.sector_size)),
                DiskAction::Preserve => None,
            });
            let Some((d, number, bytes)) = found else {
                return Err(PlanError::Array {
                    name: a.name.clone(),
                    problem: format!("member {label:?} is not a partition of a wiped disk"),
                });
            };
            members.push(Member {
                label: label.clone(),
                disk: d.name.clone(),
                disk_path: d.disk.path.clone(),
                number,
                bytes,
            });
        }
        let member_bytes = members.iter().map(|m| m.bytes).min().unwrap_or(0);
        if let Some(m) = members.iter().find(|m| m.bytes != member_bytes) {
            let sizes: Vec<String> = members
                .iter()
                .map(|m| format!("{} on {}: {}", m.label, m.disk_path, m.bytes))
                .collect();
            return Err(PlanError::Array {
                name: a.name.clone(),
                problem: format!(
                    "member {:?} differs in size from the others ({} bytes); members must be the same size",
                    m.label,
                    sizes.join(", ")
                ),
            });
        }
        out.push(PlannedArray {
            name: a.name.clone(),
            level: a.level,
            uuid: a
                .uuid
                .unwrap_or_else(|| derive_uuid("mduuid", seed, SEED_DISK, &a.name)),
            members,
            member_bytes,
            fs: a.format,
            fs_uuid: a.format.map(|_| {
                a.fs_uuid
                    .unwrap_or_else(|| derive_uuid("fsuuid", seed, SEED_DISK, &a.name))
            }),
            fs_label: a
                .format
                .map(|_| a.fs_label.clone().unwrap_or_else(|| a.name.clone())),
            mount: a.mount.clone(),
            mount_options: a.mount_options.clone(),
        });
    }
    Ok(out)
}

/// The `mdadm --create` arguments for `a` over the member nodes (in member order).
pub fn create_args(a: &PlannedArray, nodes: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--create".into(),
        a.device(),
        // No questions: the members were just wiped, there is nobody to answer.
        "--run".into(),
        format!("--level={}", a.level),
        format!("--raid-devices={}", nodes.len()),
        format!("--metadata={METADATA}"),
        "--homehost=any".into(),
        format!("--name={}", a.name),
        format!("--uuid={}", mdadm_uuid(&a.uuid)),
        "--bitmap=internal".into(),
    ];
    v.extend(nodes.iter().cloned());
    v
}

/// The ARRAY line for `a`, as `mdadm --detail --scan` writes it.
pub fn array_line(a: &PlannedArray) -> String {
    format!(
        "ARRAY {} metadata={METADATA} UUID={} name=any:{}",
        a.device(),
        mdadm_uuid(&a.uuid),
        a.name
    )
}

/// The target's /etc/mdadm/mdadm.conf; empty when there is no array.
pub fn render_conf(arrays: &[PlannedArray]) -> String {
    if arrays.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "# /etc/mdadm/mdadm.conf written by anemos from anemos.toml\n\
         # The arrays were created with homehost \"any\": every host assembles them by name.\n\
         MAILADDR root\n",
    );
    for a in arrays {
        s.push_str(&array_line(a));
        s.push('\n');
    }
    s
}

/// mdadm.conf after the install: an mdadm.conf the installed system brought keeps its
/// settings and gets the ARRAY lines it lacks; none at all gets [`render_conf`].
pub fn merge_conf(existing: Option<&str>, arrays: &[PlannedArray]) -> String {
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        return render_conf(arrays);
    };
    let mut s = text.to_string();
    let missing: Vec<String> = arrays
        .iter()
        .filter(|a| {
            let uuid = format!("UUID={}", mdadm_uuid(&a.uuid));
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("ARRAY") && l.contains(&uuid))
        })
        .map(array_line)
        .collect();
    if missing.is_empty() {
        return s;
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("# arrays created by anemos\n");
    for l in missing {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// Plan table lines for the arrays.
pub fn render(arrays: &[PlannedArray]) -> String {
    let mut s = String::new();
    for a in arrays {
        let members: Vec<String> = a
            .members
            .iter()
            .map(|m| format!("{} ({} #{})", m.label, m.disk_path, m.number))
            .collect();
        s.push_str(&format!(
            "array \"{}\" = {}: RAID{} over {}, metadata {METADATA}, uuid {}, members {} each\n",
            a.name,
            a.device(),
            a.level,
            members.join(", "),
            mdadm_uuid(&a.uuid),
            crate::util::human(a.member_bytes),
        ));
        s.push_str(&super::mkfs::plan_fs_line(
            a.fs,
            a.fs_label.as_deref(),
            a.mount.as_deref(),
            a.fs_uuid,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layout::{DiskSpec, Layout, Matcher, PartSpec, SizeSpec};
    use crate::disk::plan::{plan, DiskIdentity, MIB};
    use crate::disk::{fstab, plan_json};

    fn raid(label: &str, size: SizeSpec) -> PartSpec {
        PartSpec {
            label: label.into(),
            type_name: "raid".into(),
            type_guid: [0xa1; 16],
            size,
            format: None,
            mount: None,
            mount_options: None,
            fs_label: None,
            part_uuid: None,
            fs_uuid: None,
            fat32: false,
        }
    }

    fn swap(label: &str) -> PartSpec {
        PartSpec {
            format: Some(FsKind::Swap),
            ..raid(label, SizeSpec::Bytes(64 * MIB))
        }
    }

    fn disk_spec(name: &str, serial: &str, parts: Vec<PartSpec>) -> DiskSpec {
        DiskSpec {
            name: name.into(),
            matcher: Matcher {
                serial: Some(serial.into()),
                ..Default::default()
            },
            wipe: true,
            preserve: false,
            removable: false,
            partitions: parts,
            mounts: vec![],
        }
    }

    fn array(name: &str, members: &[&str], fs: FsKind, mount: &str) -> ArraySpec {
        ArraySpec {
            name: name.into(),
            level: 1,
            members: members.iter().map(|m| m.to_string()).collect(),
            format: Some(fs),
            mount: Some(mount.into()),
            mount_options: None,
            fs_label: None,
            fs_uuid: None,
            uuid: None,
        }
    }

    fn disk(path: &str, serial: &str, size: u64, ss: u64) -> DiskIdentity {
        DiskIdentity {
            path: path.into(),
            size_bytes: size,
            sector_size: ss,
            serial: Some(serial.into()),
            ..Default::default()
        }
    }

    /// Disk "a" 1 GiB (512-byte sectors), disk "b" 1.5 GiB (4096-byte sectors): /boot members
    /// of 256 MiB, "/" members "rest" with swap after them on "b".
    fn layout() -> Layout {
        Layout {
            seed: "db1".into(),
            disks: vec![
                disk_spec(
                    "a",
                    "a0",
                    vec![
                        raid("boot-a", SizeSpec::Bytes(256 * MIB - 5)),
                        raid("root-a", SizeSpec::Rest),
                    ],
                ),
                disk_spec(
                    "b",
                    "b0",
                    vec![
                        raid("boot-b", SizeSpec::Bytes(256 * MIB)),
                        raid("root-b", SizeSpec::Rest),
                        swap("swap-b"),
                    ],
                ),
            ],
            arrays: vec![
                array("boot", &["boot-a", "boot-b"], FsKind::Ext4, "/boot"),
                array("root", &["root-a", "root-b"], FsKind::Ext4, "/"),
            ],
            luks: vec![],
        }
    }

    fn disks() -> Vec<DiskIdentity> {
        vec![
            disk("/dev/vda", "a0", 1 << 30, 512),
            disk("/dev/vdb", "b0", 3 << 29, 4096),
        ]
    }

    #[test]
    fn members_get_one_size_rest_from_the_smallest_disk() {
        let p = plan(&layout(), &disks()).unwrap();
        let [boot, root] = &p.arrays[..] else {
            panic!("{p:#?}")
        };
        assert_eq!(boot.member_bytes, 256 * MIB);
        // Disk a: 1 GiB minus 2 MiB of tables/alignment, minus /boot.
        assert_eq!(root.member_bytes, (1024 - 2 - 256) * MIB);
        for a in [boot, root] {
            assert!(a.members.iter().all(|m| m.bytes == a.member_bytes), "{a:?}");
        }
        let m: Vec<(&str, &str, u32)> = root
            .members
            .iter()
            .map(|m| (m.label.as_str(), m.disk_path.as_str(), m.number))
            .collect();
        assert_eq!(m, [("root-a", "/dev/vda", 2), ("root-b", "/dev/vdb", 2)]);
        // On the larger disk the capped "rest" is followed directly by the swap partition.
        let DiskAction::Repartition { parts, .. } = &p.disks[1].action else {
            panic!()
        };
        assert_eq!(parts[1].sectors() * 4096, root.member_bytes);
        assert_eq!(parts[2].first_lba, parts[1].last_lba + 1);
        assert_eq!(parts[2].sectors() * 4096, 64 * MIB);
    }

    #[test]
    fn identifiers_are_derived_and_distinct() {
        let p = plan(&layout(), &disks()).unwrap();
        let root = &p.arrays[1];
        assert_eq!(root.uuid, derive_uuid("mduuid", "db1", "md/", "root"));
        assert_eq!(
            root.fs_uuid,
            Some(derive_uuid("fsuuid", "db1", "md/", "root"))
        );
        assert_ne!(p.arrays[0].uuid, root.uuid);
        assert_ne!(Some(root.uuid), root.fs_uuid);
        let again = plan(&layout(), &disks()).unwrap();
        assert_eq!(
            again.arrays, p.arrays,
            "the same config plans the same arrays"
        );
        let mut l = layout();
        l.seed = "db2".into();
        assert_ne!(plan(&l, &disks()).unwrap().arrays[1].uuid, root.uuid);
        let mut l = layout();
        l.arrays[1].uuid = Some([0x11; 16]);
        assert_eq!(plan(&l, &disks()).unwrap().arrays[1].uuid, [0x11; 16]);
        assert_eq!(
            mdadm_uuid(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 1, 2, 3, 4, 5, 6, 7]),
            "01234567:89abcdef:00010203:04050607"
        );
        assert_eq!(root.fs_label.as_deref(), Some("root"));
    }

    #[test]
    fn a_missing_member_disk_names_the_array() {
        let e = plan(&layout(), &disks()[..1]).unwrap_err().to_string();
        assert!(
            e.starts_with("array \"boot\": the disk of member \"boot-b\" is missing: disk \"b\": match { serial = \"b0\" } found no disk"),
            "{e}"
        );
    }

    #[test]
    fn mdadm_command_conf_and_fstab() {
        let p = plan(&layout(), &disks()).unwrap();
        let root = &p.arrays[1];
        let u = mdadm_uuid(&root.uuid);
        let args = create_args(root, &["/dev/vda2".into(), "/dev/vdb2".into()]);
        assert_eq!(
            args.join(" "),
            format!("--create /dev/md/root --run --level=1 --raid-devices=2 --metadata=1.2 --homehost=any --name=root --uuid={u} --bitmap=internal /dev/vda2 /dev/vdb2")
        );
        let conf = render_conf(&p.arrays);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "MAILADDR root".to_string(),
                format!(
                    "ARRAY /dev/md/boot metadata=1.2 UUID={} name=any:boot",
                    mdadm_uuid(&p.arrays[0].uuid)
                ),
                format!("ARRAY /dev/md/root metadata=1.2 UUID={u} name=any:root"),
            ]
        );
        assert_eq!(render_conf(&[]), "");
        // A distribution's own mdadm.conf keeps its settings and gets the missing lines once.
        let theirs = "HOMEHOST <system>\nMAILADDR ops@example.net\n";
        let merged = merge_conf(Some(theirs), &p.arrays);
        assert!(merged.starts_with(theirs), "{merged}");
        assert_eq!(merged.matches("ARRAY ").count(), 2, "{merged}");
        assert_eq!(merge_conf(Some(&merged), &p.arrays), merged);
        assert_eq!(merge_conf(None, &p.arrays), conf);
        // fstab: the arrays' filesystems by UUID, never the members; "/" first.
        let f = fstab::render(&p);
        let body: Vec<&str> = f.lines().filter(|l| !l.starts_with('#')).collect();
        let fs_uuid = |a: &PlannedArray| crate::util::uuid_string(&a.fs_uuid.unwrap());
        assert_eq!(
            body,
            [
                format!("UUID={} / ext4 defaults 0 1", fs_uuid(root)),
                format!("UUID={} /boot ext4 defaults 0 2", fs_uuid(&p.arrays[0])),
                format!(
                    "UUID={} none swap defaults 0 0",
                    crate::util::uuid_string(&derive_uuid("fsuuid", "db1", "b", "swap-b"))
                ),
            ]
        );
        let mounts: Vec<(String, Option<String>)> = fstab::target_mounts(&p)
            .into_iter()
            .map(|m| (m.mount, m.device))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/".to_string(), Some("/dev/md/root".to_string())),
                ("/boot".to_string(), Some("/dev/md/boot".to_string()))
            ]
        );
        let text = crate::disk::plan::render(&p);
        assert!(
            text.contains(&format!("array \"root\" = /dev/md/root: RAID1 over root-a (/dev/vda #2), root-b (/dev/vdb #2), metadata 1.2, uuid {u}")),
            "{text}"
        );
        let json = serde_json::to_value(plan_json::view(&p, f)).unwrap();
        let a = &json["arrays"][1];
        assert_eq!(a["name"], "root");
        assert_eq!(a["device"], "/dev/md/root");
        assert_eq!(a["uuid"], u);
        assert_eq!(a["members"][1]["path"], "/dev/vdb");
        assert_eq!(a["members"][1]["number"], 2);
        assert_eq!(a["member_size_bytes"], root.member_bytes);
        assert_eq!(a["fs_uuid"], fs_uuid(root));
        assert_eq!(json["mdadm_conf"], conf);
    }
}
