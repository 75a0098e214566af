//! Pre-write guards: nothing is written to a disk that has a mounted, swap or held partition,
//! or one that is a member of an active md array of the running system.
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

/// Pure: the busy reasons for `names` given /proc/self/mounts, /proc/swaps and /proc/mdstat
/// text and the holders of each name.
pub fn busy_reasons(
    names: &[String],
    mounts: &str,
    swaps: &str,
    mdstat: &str,
    holders: &[(String, Vec<String>)],
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
        let hs: Vec<&String> = hs
            .iter()
            .filter(|h| !in_md.contains(&(n.as_str(), h.as_str())))
            .collect();
        if names.contains(n) && !hs.is_empty() {
            let hs: Vec<&str> = hs.iter().map(|h| h.as_str()).collect();
            r.push(format!("/dev/{n} is held by {}", hs.join(", ")));
        }
    }
    r
}

/// Reads the live state and returns the reasons `kname` is busy (empty = free).
pub fn check_disk(kname: &str) -> Busy {
    let sysfs = Path::new("/sys");
    let names = disk_and_partitions(sysfs, kname);
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    let mdstat = fs::read_to_string("/proc/mdstat").unwrap_or_default();
    let holders: Vec<(String, Vec<String>)> = names
        .iter()
        .map(|n| {
            let dir = if n == kname {
                sysfs.join("block").join(n).join("holders")
            } else {
                sysfs.join("block").join(kname).join(n).join("holders")
            };
            let hs = fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (n.clone(), hs)
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
            ("vda".to_string(), vec!["dm-0".to_string()]),
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
        let holders = vec![("vda3".to_string(), vec!["md126".to_string()])];
        let r = busy_reasons(&names, "", "", mdstat, &holders);
        assert_eq!(
            r,
            ["/dev/vda3 is a member of the running system's md array /dev/md126 (active raid1); stop it first (mdadm --stop /dev/md126)"],
            "the holder md126 is not reported twice"
        );
        // A holder that mdstat does not explain is still reported.
        let holders = vec![("vda3".to_string(), vec!["dm-0".to_string()])];
        let r = busy_reasons(&names, "", "", mdstat, &holders);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1], "/dev/vda3 is held by dm-0");
    }
}
