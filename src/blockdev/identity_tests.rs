use super::*;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A block device directory under `<sys>/devices/...` linked from `class/block`.
fn block_dev(sys: &Path, devpath: &str, kname: &str, sectors: u64) -> PathBuf {
    let b = sys.join("devices").join(devpath).join("block").join(kname);
    write(&b.join("size"), format!("{sectors}\n").as_bytes());
    write(&b.join("queue/logical_block_size"), b"512\n");
    write(&b.join("removable"), b"0\n");
    fs::create_dir_all(sys.join("class/block")).unwrap();
    symlink(&b, sys.join("class/block").join(kname)).unwrap();
    b
}

/// A VPD page: header and payload.
fn vpd(page: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, page, 0, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

/// What QEMU's scsi-hd on virtio-scsi shows in sysfs: INQUIRY vendor/model, the unit serial
/// page and the device identification page (a vendor-specific serial designator and, with a
/// WWN, an NAA one).
fn qemu_scsi_hd(sys: &Path, serial: &str, wwn: Option<[u8; 8]>) {
    let scsi = "pci0000:00/0000:00:03.0/virtio1/host0/target0:0:0/0:0:0:0";
    let b = block_dev(sys, scsi, "sda", 1 << 20);
    let dev = sys.join("devices").join(scsi);
    symlink("../..", b.join("device")).unwrap();
    write(&dev.join("vendor"), b"QEMU    \n");
    write(&dev.join("model"), b"QEMU HARDDISK   \n");
    write(&dev.join("vpd_pg80"), &vpd(0x80, serial.as_bytes()));
    let mut d83 = Vec::new();
    if let Some(naa) = wwn {
        d83.extend([0x01, 0x03, 0x00, 8]);
        d83.extend(naa);
    }
    d83.extend([0x02, 0x00, 0x00, serial.len() as u8]);
    d83.extend(serial.as_bytes());
    write(&dev.join("vpd_pg83"), &vpd(0x83, &d83));
}

fn image(dir: &Path, size: u64) -> String {
    let f = dir.join("disk.img");
    fs::File::create(&f).unwrap().set_len(size).unwrap();
    f.display().to_string()
}

/// The identity fields as printed, without the path.
fn shown(d: &DiskIdentity) -> String {
    d.describe().strip_prefix(&d.path).unwrap().to_string()
}

#[test]
fn image_spec() {
    let dir = tempfile::tempdir().unwrap();
    let f = image(dir.path(), 1 << 20);
    let d = from_image_spec(&format!("{f}:serial=sys0:sector=4096")).unwrap();
    assert_eq!(
        (d.size_bytes, d.sector_size, d.serial.as_deref()),
        (1 << 20, 4096, Some("sys0"))
    );
    assert_eq!(d.by_id, ["virtio-sys0"]);
    let d = from_image_spec(&format!("{f}:id=ata-X:model=M")).unwrap();
    assert_eq!(
        (d.by_id, d.model.as_deref()),
        (vec!["ata-X".into()], Some("M"))
    );
    let e = from_image_spec(&format!("{f}:colour=red")).unwrap_err();
    assert!(e.to_string().contains("unknown key \"colour\""), "{e}");
    let e = from_image_spec(&format!("{f}:bus=usb")).unwrap_err();
    assert!(e.to_string().contains("bus=\"usb\""), "{e}");
    for bad in ["0", "1024", "7"] {
        let e = from_image_spec(&format!("{f}:sector={bad}")).unwrap_err();
        assert!(e.to_string().contains("512 or 4096"), "{e}");
    }
    // The same spec without the file: the size is given.
    let d = from_image_spec_sized("/dev/vdz:serial=z0", 3 << 30).unwrap();
    assert_eq!((d.path.as_str(), d.size_bytes), ("/dev/vdz", 3 << 30));
    assert_eq!(d.by_id, ["virtio-z0"]);
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
    let vda = block_dev(&s, "pci0000:00/0000:00:03.0/virtio1", "vda", 131072);
    write(&vda.join("serial"), b"sys0\n");
    let l = s.join("devices/virtual/block/loop0");
    write(&l.join("size"), b"100\n");
    symlink(&l, s.join("class/block/loop0")).unwrap();
    fs::create_dir_all(dev.join("disk/by-id")).unwrap();
    symlink("../../vda", dev.join("disk/by-id/virtio-sys0")).unwrap();
    symlink("../../vda", dev.join("disk/by-id/usb-Made_By_Udev")).unwrap();
    let disks = disks_from_sysfs(&s, &dev).unwrap();
    assert_eq!(disks.len(), 1, "loop devices are skipped");
    assert_eq!(disks[0].path, "/dev/vda");
    assert_eq!(disks[0].size_bytes, 64 << 20);
    assert_eq!(disks[0].serial.as_deref(), Some("sys0"));
    assert_eq!(
        disks[0].by_id,
        ["virtio-sys0", "usb-Made_By_Udev"],
        "our names, then other existing links"
    );
    assert!(!disks[0].usb && !disks[0].removable);
}

/// A SCSI disk's serial lives in VPD page 0x80, not in a `serial` attribute: the identity
/// must carry it (a `match = { serial = ... }` on virtio-scsi found nothing when it did not).
#[test]
fn scsi_disk_identity_matches_its_image_spec() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("sys");
    qemu_scsi_hd(&s, "scsisys0", None);
    let disks = disks_from_sysfs(&s, &dir.path().join("dev")).unwrap();
    assert_eq!(disks.len(), 1);
    let d = &disks[0];
    assert_eq!(
        d.describe(),
        "/dev/sda (by-id scsi-0QEMU_QEMU_HARDDISK_scsisys0, serial scsisys0, wwn -, \
         model QEMU HARDDISK, 512 MiB)"
    );
    let img = from_image_spec(&format!(
        "{}:bus=scsi:serial=scsisys0",
        image(dir.path(), 512 << 20)
    ))
    .unwrap();
    assert_eq!(
        shown(&img),
        shown(d),
        "anemos plan --disk shows what the init sees"
    );
    assert_eq!(
        (
            img.serial.clone(),
            img.wwn.clone(),
            img.model.clone(),
            img.by_id.clone()
        ),
        (
            d.serial.clone(),
            d.wwn.clone(),
            d.model.clone(),
            d.by_id.clone()
        )
    );
}

#[test]
fn scsi_disk_with_a_wwn_matches_its_image_spec() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("sys");
    qemu_scsi_hd(
        &s,
        "scsiwwn0",
        Some([0x50, 0x00, 0xc5, 0x00, 0x15, 0xea, 0x71, 0xac]),
    );
    let d = disks_from_sysfs(&s, &dir.path().join("dev"))
        .unwrap()
        .remove(0);
    assert_eq!(d.wwn.as_deref(), Some("0x5000c50015ea71ac"));
    assert_eq!(
        d.by_id,
        ["scsi-35000c50015ea71ac", "wwn-0x5000c50015ea71ac"]
    );
    let img = from_image_spec(&format!(
        "{}:bus=scsi:serial=scsiwwn0:wwn=0x5000C50015EA71AC",
        image(dir.path(), 512 << 20)
    ))
    .unwrap();
    assert_eq!(shown(&img), shown(&d));
}
