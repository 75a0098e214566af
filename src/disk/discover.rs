//! Finding disks: from sysfs in the init (and on a real host), or from image files standing in
//! for disks on the host (`anemos plan --disk FILE[:serial=S]`).

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::plan::DiskInfo;

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whole disks under `<sysfs>/block` (skipping loop, ram, zram, optical and device-mapper).
/// `by_id` names come from `/dev/disk/by-id` links when present (the init creates them).
pub fn from_sysfs(sysfs: &Path, dev: &Path) -> Result<Vec<DiskInfo>> {
    let mut out = Vec::new();
    let rd = fs::read_dir(sysfs.join("block"))
        .with_context(|| format!("reading {}/block", sysfs.display()))?;
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut links = by_id_links(dev);
    if links.is_empty() {
        // No udev and no init-made links (e.g. `anemos kexec` on a minimal system): derive the
        // same by-id names from sysfs, exactly as the init would.
        if let Ok(infos) = crate::blockdev::read_block_infos(sysfs) {
            for info in infos.iter().filter(|i| i.parent.is_none()) {
                for (l, t) in crate::blockdev::link_names(info, &Default::default()) {
                    if let Some(n) = l.strip_prefix("by-id/") {
                        links.push((n.to_string(), t.trim_start_matches("../../").to_string()));
                    }
                }
            }
        }
    }
    for k in names {
        if ["loop", "ram", "zram", "sr", "dm-", "md", "nbd"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            continue;
        }
        let b = sysfs.join("block").join(&k);
        let sectors: u64 = read_trim(&b.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let lbs: u64 = read_trim(&b.join("queue/logical_block_size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(512);
        let devpath = fs::canonicalize(&b)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let path = format!("/dev/{k}");
        out.push(DiskInfo {
            path: path.clone(),
            size_bytes: sectors * 512,
            sector_size: lbs,
            serial: read_trim(&b.join("serial")).or_else(|| read_trim(&b.join("device/serial"))),
            wwn: read_trim(&b.join("wwid")).or_else(|| read_trim(&b.join("device/wwid"))),
            model: read_trim(&b.join("device/model")),
            by_id: links
                .iter()
                .filter(|(_, t)| *t == k)
                .map(|(n, _)| n.clone())
                .collect(),
            aliases: vec![],
            removable: read_trim(&b.join("removable")).as_deref() == Some("1"),
            usb: devpath.contains("/usb"),
        });
    }
    Ok(out)
}

/// (link name, target kernel name) for every /dev/disk/by-id link.
fn by_id_links(dev: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(dev.join("disk/by-id")) {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                if let Some(k) = t.file_name() {
                    v.push((
                        e.file_name().to_string_lossy().into_owned(),
                        k.to_string_lossy().into_owned(),
                    ));
                }
            }
        }
    }
    v.sort();
    v
}

/// Parses `FILE[:serial=S][:model=M][:sector=4096][:id=BY-ID]` into a DiskInfo for a disk
/// image file. A serial S also provides the by-id name `virtio-S`, as QEMU's virtio-blk does.
pub fn from_image_spec(spec: &str) -> Result<DiskInfo> {
    let mut it = spec.split(':');
    let file = it.next().unwrap_or_default();
    let md = fs::metadata(file).with_context(|| format!("--disk {spec}: cannot read {file}"))?;
    let mut d = DiskInfo {
        path: file.to_string(),
        size_bytes: md.len(),
        sector_size: 512,
        ..Default::default()
    };
    for kv in it {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--disk {spec}: expected KEY=VALUE after ':', got {kv:?}")
        };
        match k {
            "serial" => {
                d.serial = Some(v.to_string());
                d.by_id.push(format!("virtio-{v}"));
            }
            "model" => d.model = Some(v.to_string()),
            "id" => d.by_id.push(v.to_string()),
            "sector" => {
                d.sector_size = v
                    .parse()
                    .with_context(|| format!("--disk {spec}: sector={v:?} is not a number"))?
            }
            other => bail!("--disk {spec}: unknown key {other:?} (serial, model, id, sector)"),
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_spec() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.img");
        fs::File::create(&f).unwrap().set_len(1 << 20).unwrap();
        let d = from_image_spec(&format!("{}:serial=sys0:sector=4096", f.display())).unwrap();
        assert_eq!(
            (d.size_bytes, d.sector_size, d.serial.as_deref()),
            (1 << 20, 4096, Some("sys0"))
        );
        assert_eq!(d.by_id, ["virtio-sys0"]);
        let e = from_image_spec(&format!("{}:colour=red", f.display())).unwrap_err();
        assert!(e.to_string().contains("unknown key \"colour\""), "{e}");
        assert!(from_image_spec("/nonexistent.img")
            .unwrap_err()
            .to_string()
            .contains("cannot read /nonexistent.img"));
    }

    #[test]
    fn sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("sys");
        let dev = dir.path().join("dev");
        let vda = s.join("devices/pci0000:00/0000:00:03.0/virtio1/block/vda");
        fs::create_dir_all(vda.join("queue")).unwrap();
        fs::write(vda.join("size"), "131072\n").unwrap();
        fs::write(vda.join("serial"), "sys0\n").unwrap();
        fs::write(vda.join("queue/logical_block_size"), "512\n").unwrap();
        fs::write(vda.join("removable"), "0\n").unwrap();
        fs::create_dir_all(s.join("block")).unwrap();
        std::os::unix::fs::symlink(&vda, s.join("block/vda")).unwrap();
        let l = s.join("devices/virtual/block/loop0");
        fs::create_dir_all(&l).unwrap();
        fs::write(l.join("size"), "100\n").unwrap();
        std::os::unix::fs::symlink(&l, s.join("block/loop0")).unwrap();
        fs::create_dir_all(dev.join("disk/by-id")).unwrap();
        std::os::unix::fs::symlink("../../vda", dev.join("disk/by-id/virtio-sys0")).unwrap();
        let disks = from_sysfs(&s, &dev).unwrap();
        assert_eq!(disks.len(), 1, "loop devices are skipped");
        assert_eq!(disks[0].path, "/dev/vda");
        assert_eq!(disks[0].size_bytes, 64 << 20);
        assert_eq!(disks[0].by_id, ["virtio-sys0"]);
        assert!(!disks[0].usb && !disks[0].removable);
    }
}
