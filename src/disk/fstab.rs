//! The target's /etc/fstab, generated from the plan with `UUID=` lines. Pure.

use super::mkfs::display_uuid;
use super::plan::{DiskAction, Plan};
use crate::config::layout::FsKind;

/// One mount of the target tree, in the order it must be mounted (parents first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMount {
    /// Partition node, filled in by the caller once nodes exist (e.g. /dev/vda3).
    pub disk_path: String,
    pub number: u32,
    /// The device to mount when it is not a partition (an array: /dev/md/NAME; a LUKS
    /// container: /dev/mapper/NAME).
    pub device: Option<String>,
    pub mount: String,
    pub fs: FsKind,
    pub options: String,
}

/// Mounts of created filesystems, sorted so that a path comes after its parent ("/" first).
pub fn target_mounts(plan: &Plan) -> Vec<TargetMount> {
    let mut v = Vec::new();
    for d in &plan.disks {
        if let DiskAction::Repartition { parts, .. } = &d.action {
            for p in parts {
                if let (Some(m), Some(fs)) = (&p.mount, p.fs) {
                    v.push(TargetMount {
                        disk_path: d.disk.path.clone(),
                        number: p.number,
                        device: None,
                        mount: m.clone(),
                        fs,
                        options: p.mount_options.clone().unwrap_or_else(|| "defaults".into()),
                    });
                }
            }
        }
    }
    for a in &plan.arrays {
        if let (Some(m), Some(fs)) = (&a.mount, a.fs) {
            v.push(TargetMount {
                disk_path: String::new(),
                number: 0,
                device: Some(a.device()),
                mount: m.clone(),
                fs,
                options: a.mount_options.clone().unwrap_or_else(|| "defaults".into()),
            });
        }
    }
    for l in &plan.luks {
        if let (Some(m), Some(fs)) = (&l.mount, l.fs) {
            v.push(TargetMount {
                disk_path: String::new(),
                number: 0,
                device: Some(l.device()),
                mount: m.clone(),
                fs,
                options: l.mount_options.clone().unwrap_or_else(|| "defaults".into()),
            });
        }
    }
    v.sort_by(|a, b| {
        mount_depth(&a.mount)
            .cmp(&mount_depth(&b.mount))
            .then(a.mount.cmp(&b.mount))
    });
    v
}

fn mount_depth(m: &str) -> usize {
    m.split('/').filter(|c| !c.is_empty()).count()
}

/// The fstab line of a created filesystem (a partition's or an array's) with its sort key;
/// None when it is neither mounted nor swap.
fn created_line(
    fs: Option<FsKind>,
    uuid: Option<[u8; 16]>,
    mount: Option<&String>,
    options: Option<&String>,
) -> Option<(usize, String, String)> {
    let (Some(fs), Some(uuid)) = (fs, uuid) else {
        return None;
    };
    let id = format!("UUID={}", display_uuid(fs, &uuid));
    if fs == FsKind::Swap {
        return Some((
            usize::MAX,
            String::new(),
            format!("{id} none swap defaults 0 0"),
        ));
    }
    let m = mount?;
    let pass = if m == "/" { 1 } else { 2 };
    let opts = options.cloned().unwrap_or_else(|| {
        if fs == FsKind::Vfat {
            "umask=0077".into()
        } else {
            "defaults".into()
        }
    });
    Some((
        mount_depth(m),
        m.clone(),
        format!("{id} {m} {} {opts} 0 {pass}", fs.name()),
    ))
}

/// Renders fstab: created filesystems (on partitions, arrays and opened LUKS containers) by UUID, swap, and preserved
/// disks' mounts by LABEL (with `nofail`, so a missing data disk does not stop the boot).
pub fn render(plan: &Plan) -> String {
    let mut s = String::from("# /etc/fstab written by anemos from anemos.toml\n# <file system> <mount point> <type> <options> <dump> <pass>\n");
    let mut lines: Vec<(usize, String, String)> = Vec::new();
    for a in &plan.arrays {
        lines.extend(created_line(
            a.fs,
            a.fs_uuid,
            a.mount.as_ref(),
            a.mount_options.as_ref(),
        ));
    }
    for l in &plan.luks {
        lines.extend(created_line(
            l.fs,
            l.fs_uuid,
            l.mount.as_ref(),
            l.mount_options.as_ref(),
        ));
    }
    for d in &plan.disks {
        match &d.action {
            DiskAction::Repartition { parts, .. } => {
                for p in parts {
                    lines.extend(created_line(
                        p.fs,
                        p.fs_uuid,
                        p.mount.as_ref(),
                        p.mount_options.as_ref(),
                    ));
                }
            }
            DiskAction::Preserve => {
                for m in &d.spec.mounts {
                    let opts = m.mount_options.clone().unwrap_or_else(|| "defaults".into());
                    lines.push((
                        mount_depth(&m.mount),
                        m.mount.clone(),
                        format!("LABEL={} {} auto {opts},nofail 0 2", m.label, m.mount),
                    ));
                }
            }
        }
    }
    lines.sort();
    for (_, _, l) in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layout::{DiskSpec, Layout, Matcher, PartSpec, PreservedMount, SizeSpec};
    use crate::disk::plan::{plan, DiskIdentity, MIB};

    fn p(label: &str, size: SizeSpec, fs: FsKind, mount: Option<&str>) -> PartSpec {
        PartSpec {
            label: label.into(),
            type_name: "linux".into(),
            type_guid: [1; 16],
            size,
            format: Some(fs),
            mount: mount.map(String::from),
            mount_options: None,
            fs_label: None,
            part_uuid: None,
            fs_uuid: None,
            fat32: fs == FsKind::Vfat,
        }
    }

    #[test]
    fn fstab_and_mount_order() {
        let layout = Layout {
            seed: "h".into(),
            arrays: vec![],
            luks: vec![],
            disks: vec![
                DiskSpec {
                    name: "system".into(),
                    matcher: Matcher {
                        serial: Some("s".into()),
                        ..Default::default()
                    },
                    wipe: true,
                    preserve: false,
                    removable: false,
                    partitions: vec![
                        p(
                            "esp",
                            SizeSpec::Bytes(100 * MIB),
                            FsKind::Vfat,
                            Some("/boot"),
                        ),
                        p("swap", SizeSpec::Bytes(64 * MIB), FsKind::Swap, None),
                        p(
                            "var",
                            SizeSpec::Bytes(100 * MIB),
                            FsKind::Ext4,
                            Some("/var"),
                        ),
                        p("root", SizeSpec::Rest, FsKind::Ext4, Some("/")),
                    ],
                    mounts: vec![],
                },
                DiskSpec {
                    name: "data".into(),
                    matcher: Matcher {
                        serial: Some("d".into()),
                        ..Default::default()
                    },
                    wipe: false,
                    preserve: true,
                    removable: false,
                    partitions: vec![],
                    mounts: vec![PreservedMount {
                        label: "home".into(),
                        mount: "/home".into(),
                        mount_options: None,
                        mount_during_install: false,
                    }],
                },
            ],
        };
        let disks = vec![
            DiskIdentity {
                path: "/dev/vda".into(),
                size_bytes: 1 << 30,
                sector_size: 512,
                serial: Some("s".into()),
                ..Default::default()
            },
            DiskIdentity {
                path: "/dev/vdb".into(),
                size_bytes: 1 << 30,
                sector_size: 512,
                serial: Some("d".into()),
                ..Default::default()
            },
        ];
        let pl = plan(&layout, &disks).unwrap();
        let tm = target_mounts(&pl);
        let m: Vec<&str> = tm.iter().map(|t| t.mount.as_str()).collect();
        assert_eq!(m, ["/", "/boot", "/var"]);
        let f = render(&pl);
        let body: Vec<&str> = f.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body.len(), 5, "{f}");
        assert!(body[0].contains(" / ext4 defaults 0 1"), "{f}");
        assert!(
            body[1].contains(" /boot vfat umask=0077 0 2")
                && body[1].starts_with("UUID=")
                && body[1].len() < 60,
            "{f}"
        );
        assert_eq!(body[2], "LABEL=home /home auto defaults,nofail 0 2");
        assert!(body[3].contains(" /var ext4 "), "{f}");
        assert!(body[4].ends_with(" none swap defaults 0 0"), "{f}");
    }
}
