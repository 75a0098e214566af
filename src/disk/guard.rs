//! Pre-write guards: nothing is written to a disk that has a mounted, swap or held partition,
//! one that is a member of an active md array of the running system, or one under an open
//! device-mapper mapping (a LUKS container, an LVM volume) of the running system.
//! Pure parsing of /proc and sysfs text; the caller reads the files.

use std::fs;
use std::path::Path;

/// Why a disk is busy, one reason per partition or use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub disk: String,
    pub reasons: Vec<String>,
}

/// Names of the disk and its partitions ("vda", "vda1", ...) from sysfs.
pub fn disk_and_partitions(sysfs: &Path, kname: &str) -> Vec<String> {
    let mut v = vec![kname.to_string()];
    if let Ok(rd) = fs::read_dir(sysfs.join("block").join(kname)) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if e.path().join("partition").exists() {
                v.push(n);
            }
        }
    }
    v.sort();
    v
}

/// One array of /proc/mdstat: its kernel name ("md127"), what it is ("active raid1") and the
/// kernel names of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdArray {
    pub name: String,
    pub what: String,
    pub members: Vec<String>,
}

/// Parses /proc/mdstat's array lines: `md127 : active raid1 vdb2[1] vda2[0](F)`.
pub fn parse_mdstat(text: &str) -> Vec<MdArray> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(" : ")?;
            let name = name.trim();
            if !name.starts_with("md") {
                return None;
            }
            let mut what = Vec::new();
            let mut members = Vec::new();
            for w in rest.split_whitespace() {
                match w.split_once('[') {
                    Some((dev, _)) => members.push(dev.to_string()),
                    None if members.is_empty() => what.push(w),
                    None => {}
                }
            }
            Some(MdArray {
                name: name.to_string(),
                what: what.join(" "),
                members,
            })
        })
        .collect()
}

/// A device holding a partition or disk (an entry of sysfs `holders/`): its kernel name and,
/// for a device-mapper device, its mapping's name and uuid (sysfs `dm/name`, `dm/uuid`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub kname: String,
    pub dm_name: Option<String>,
    pub dm_uuid: Option<String>,
}

#[cfg(test)]
impl Holder {
    /// A holder known only by its kernel name.
    pub fn plain(kname: &str) -> Holder {
        Holder {
            kname: kname.to_string(),
            ..Holder::default()
        }
    }
}

/// Why `dev` (e.g. "/dev/vda2") being held by `h` makes the disk busy, with what would free it.
/// The dm uuid's prefix tells who made the mapping: cryptsetup ("CRYPT-LUKS2-…",
/// "CRYPT-PLAIN-…") or LVM ("LVM-…").
pub fn describe_holder(dev: &str, h: &Holder) -> String {
    let (Some(name), uuid) = (h.dm_name.as_deref(), h.dm_uuid.as_deref().unwrap_or("")) else {
        return format!("{dev} is held by {}", h.kname);
    };
    if let Some(rest) = uuid.strip_prefix("CRYPT-") {
        let kind = rest.split('-').next().unwrap_or("dm-crypt");
        let kind = match kind {
            "LUKS1" | "LUKS2" | "PLAIN" | "BITLK" | "TCRYPT" => kind,
            _ => "dm-crypt",
        };
        format!(
            "{dev} holds the running system's open {kind} mapping /dev/mapper/{name} ({}); close it first (cryptsetup close {name})",
            h.kname
        )
    } else if uuid.starts_with("LVM-") {
        format!(
            "{dev} holds the running system's active LVM volume /dev/mapper/{name} ({}); deactivate it first (vgchange -an)",
            h.kname
        )
    } else {
        format!(
            "{dev} is held by the device-mapper device /dev/mapper/{name} ({}); remove it first (dmsetup remove {name})",
            h.kname
        )
    }
}

/// Pure: the busy reasons for `names` given /proc/self/mounts, /proc/swaps and /proc/mdstat
/// text and the holders of each name.
pub fn busy_reasons(
    names: &[String],
    mounts: &str,
    swaps: &str,
    mdstat: &str,
    holders: &[(String, Vec<Holder>)],
) -> Vec<String> {
    let mut r = Vec::new();
    let arrays = parse_mdstat(mdstat);
    for l in mounts.lines() {
        let mut it = l.split_whitespace();
        let (Some(src), Some(dst)) = (it.next(), it.next()) else {
            continue;
        };
        if let Some(n) = src.strip_prefix("/dev/") {
            if names.iter().any(|x| x == n) {
                r.push(format!("/dev/{n} is mounted on {dst}"));
            }
        }
    }
    for l in swaps.lines().skip(1) {
        if let Some(n) = l
            .split_whitespace()
            .next()
            .and_then(|s| s.strip_prefix("/dev/"))
        {
            if names.iter().any(|x| x == n) {
                r.push(format!("/dev/{n} is in use as swap"));
            }
        }
    }
    let mut in_md: Vec<(&str, &str)> = Vec::new();
    for a in &arrays {
        for m in a.members.iter().filter(|m| names.contains(m)) {
            r.push(format!(
                "/dev/{m} is a member of the running system's md array /dev/{} ({}); stop it first (mdadm --stop /dev/{})",
                a.name, a.what, a.name
            ));
            in_md.push((m, &a.name));
        }
    }
    for (n, hs) in holders {
        if !names.contains(n) {
            continue;
        }
        for h in hs
            .iter()
            .filter(|h| !in_md.contains(&(n.as_str(), h.kname.as_str())))
        {
            r.push(describe_holder(&format!("/dev/{n}"), h));
        }
    }
    r
}

/// The holders of `dir` (a sysfs `holders/` directory), with their dm name and uuid.
fn read_holders(sysfs: &Path, dir: &Path) -> Vec<Holder> {
    let read = |k: &str, f: &str| {
        fs::read_to_string(sysfs.join("block").join(k).join("dm").join(f))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut v: Vec<Holder> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let k = e.file_name().to_string_lossy().into_owned();
                    Holder {
                        dm_name: read(&k, "name"),
                        dm_uuid: read(&k, "uuid"),
                        kname: k,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.kname.cmp(&b.kname));
    v
}

/// Reads the live state and returns the reasons `kname` is busy (empty = free).
pub fn check_disk(kname: &str) -> Busy {
    let sysfs = Path::new("/sys");
    let names = disk_and_partitions(sysfs, kname);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    let mdstat = fs::read_to_string("/proc/mdstat").unwrap_or_default();
    let holders: Vec<(String, Vec<Holder>)> = names
        .iter()
        .map(|n| {
            let dir = if n == kname {
                sysfs.join("block").join(n).join("holders")
            } else {
                sysfs.join("block").join(kname).join(n).join("holders")
            };
            (n.clone(), read_holders(sysfs, &dir))
        })
        .collect();
    Busy {
        disk: kname.into(),
        reasons: busy_reasons(&names, &mounts, &swaps, &mdstat, &holders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_from_mounts_swaps_and_holders() {
        let names = vec!["vda".to_string(), "vda1".to_string(), "vda2".to_string()];
        let mounts =
            "rootfs / rootfs rw 0 0\n/dev/vda1 /mnt ext4 rw 0 0\n/dev/vdb1 /data ext4 rw 0 0\n";
        let swaps = "Filename Type Size Used Priority\n/dev/vda2 partition 1024 0 -2\n";
        let holders = vec![
            ("vda1".to_string(), vec![]),
            ("vda".to_string(), vec![Holder::plain("dm-0")]),
        ];
        let r = busy_reasons(&names, mounts, swaps, "", &holders);
        assert_eq!(
            r,
            [
                "/dev/vda1 is mounted on /mnt",
                "/dev/vda2 is in use as swap",
                "/dev/vda is held by dm-0"
            ]
        );
        assert!(busy_reasons(&["vdc".to_string()], mounts, swaps, "", &holders).is_empty());
    }

    #[test]
    fn md_members_of_the_running_system_are_named() {
        let mdstat = "Personalities : [raid1]\n\
            md126 : active raid1 vdb3[1] vda3[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n\
            md127 : active (auto-read-only) raid1 sdb1[1](F) sda1[0]\n      1046528 blocks\n\
            unused devices: <none>\n";
        let arrays = parse_mdstat(mdstat);
        assert_eq!(arrays.len(), 2);
        assert_eq!(arrays[0].name, "md126");
        assert_eq!(arrays[0].what, "active raid1");
        assert_eq!(arrays[0].members, ["vdb3", "vda3"]);
        assert_eq!(arrays[1].what, "active (auto-read-only) raid1");
        assert_eq!(arrays[1].members, ["sdb1", "sda1"]);
        let names = vec!["vda".to_string(), "vda3".to_string()];
        let holders = vec![("vda3".to_string(), vec![Holder::plain("md126")])];
        let r = busy_reasons(&names, "", "", mdstat, &holders);
        assert_eq!(
            r,
            ["/dev/vda3 is a member of the running system's md array /dev/md126 (active raid1); stop it first (mdadm --stop /dev/md126)"],
            "the holder md126 is not reported twice"
        );
        // A holder that mdstat does not explain is still reported.
        let holders = vec![("vda3".to_string(), vec![Holder::plain("dm-0")])];
        let r = busy_reasons(&names, "", "", mdstat, &holders);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1], "/dev/vda3 is held by dm-0");
    }

    #[test]
    fn device_mapper_holders_are_named_by_what_made_them() {
        let dm = |k: &str, name: &str, uuid: &str| Holder {
            kname: k.into(),
            dm_name: Some(name.into()),
            dm_uuid: Some(uuid.into()),
        };
        let names = vec!["sda".to_string(), "sda2".to_string(), "sda3".to_string()];
        let holders = vec![
            (
                "sda2".to_string(),
                vec![dm(
                    "dm-0",
                    "sda2_crypt",
                    "CRYPT-LUKS2-0f5c1e2d3c4b5a697887766554433221-sda2_crypt",
                )],
            ),
            ("sda3".to_string(), vec![dm("dm-1", "vg0-root", "LVM-abc")]),
            (
                "sdb1".to_string(),
                vec![dm("dm-2", "other", "CRYPT-PLAIN-other")],
            ),
        ];
        let r = busy_reasons(&names, "", "", "", &holders);
        assert_eq!(
            r,
            [
                "/dev/sda2 holds the running system's open LUKS2 mapping /dev/mapper/sda2_crypt (dm-0); close it first (cryptsetup close sda2_crypt)",
                "/dev/sda3 holds the running system's active LVM volume /dev/mapper/vg0-root (dm-1); deactivate it first (vgchange -an)",
            ],
            "sdb1 is not one of the names"
        );
        assert_eq!(
            describe_holder("/dev/vdb", &dm("dm-3", "x", "CRYPT-PLAIN-x")),
            "/dev/vdb holds the running system's open PLAIN mapping /dev/mapper/x (dm-3); close it first (cryptsetup close x)"
        );
        assert_eq!(
            describe_holder("/dev/vdb", &dm("dm-4", "mp", "mpath-36001")),
            "/dev/vdb is held by the device-mapper device /dev/mapper/mp (dm-4); remove it first (dmsetup remove mp)"
        );
    }
}
