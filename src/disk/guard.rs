//! Pre-write guards: nothing is written to a disk that has a mounted, swap or held partition.
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

/// Pure: the busy reasons for `names` given /proc/self/mounts and /proc/swaps text and the
/// holders of each name.
pub fn busy_reasons(
    names: &[String],
    mounts: &str,
    swaps: &str,
    holders: &[(String, Vec<String>)],
) -> Vec<String> {
    let mut r = Vec::new();
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
    for (n, hs) in holders {
        if names.contains(n) && !hs.is_empty() {
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
        reasons: busy_reasons(&names, &mounts, &swaps, &holders),
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
        let r = busy_reasons(&names, mounts, swaps, &holders);
        assert_eq!(
            r,
            [
                "/dev/vda1 is mounted on /mnt",
                "/dev/vda2 is in use as swap",
                "/dev/vda is held by dm-0"
            ]
        );
        assert!(busy_reasons(&["vdc".to_string()], mounts, swaps, &holders).is_empty());
    }
}
