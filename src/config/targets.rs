//! What the install and the bootloader need from the layout: a "/" to install to, an ESP
//! for UEFI loaders, a BIOS boot partition for grub on GPT, and mirrored ESPs of one size.

use super::units::part_type_guid;
use super::validate::Problems;
use super::{Bootloader, Install};
use crate::config::layout::{FsKind, Layout, PartSpec, SizeSpec};

/// What the install and bootloader need from the layout.
pub(super) fn check_targets(
    layout: &Layout,
    install: Option<&Install>,
    bootloader: &Bootloader,
    p: &mut Problems,
) {
    let parts = || layout.disks.iter().flat_map(|d| d.partitions.iter());
    let has_root = parts().any(|s| s.mount.as_deref() == Some("/"))
        || layout
            .arrays
            .iter()
            .any(|a| a.mount.as_deref() == Some("/"))
        || layout.luks.iter().any(|l| l.mount.as_deref() == Some("/"));
    let esp = part_type_guid("esp");
    let has_esp = parts()
        .any(|s| Some(s.type_guid) == esp && s.format == Some(FsKind::Vfat) && s.mount.is_some());
    if let Some(i @ (Install::Makeimg { .. } | Install::Rootfs { .. })) = install {
        if !has_root {
            let kind = if matches!(i, Install::Makeimg { .. }) {
                "makeimg"
            } else {
                "rootfs"
            };
            p.add(
                "install.kind",
                format!(
                    "{kind:?} installs a system, but no partition, array or LUKS volume has mount = \"/\" to hold it"
                ),
            );
        }
    }
    check_esp_mirrors(layout, p);
    if matches!(bootloader, Bootloader::SystemdBoot { .. }) && !has_esp {
        p.add(
            "bootloader.kind",
            "\"systemd-boot\" is installed onto the ESP, but no partition has type = \"esp\", format = \"vfat\" and a mount (e.g. mount = \"/boot\" or \"/boot/efi\")",
        );
    }
    if let Bootloader::Grub { firmware, .. } = bootloader {
        check_grub(layout, *firmware, has_root, has_esp, p);
    }
}

/// What grub needs of the layout: a root filesystem for grub-mkconfig and grub-install to run
/// in; for BIOS a BIOS boot partition (anemos writes GPT, which leaves no gap after the MBR for
/// grub's core image); for UEFI a mounted ESP; and a /boot that grub can read without
/// unlocking anything.
fn check_grub(
    layout: &Layout,
    firmware: super::Firmware,
    has_root: bool,
    has_esp: bool,
    p: &mut Problems,
) {
    if !has_root {
        p.add(
            "bootloader.kind",
            "\"grub\" is installed from the target's own packages, but no partition, array or LUKS volume has mount = \"/\"",
        );
    }
    let bios_boot = part_type_guid("bios-boot");
    let has_bios_boot = layout
        .disks
        .iter()
        .filter(|d| d.wipe)
        .flat_map(|d| d.partitions.iter())
        .any(|s| Some(s.type_guid) == bios_boot);
    if firmware.bios && !has_bios_boot {
        p.add(
            "bootloader.firmware",
            "\"bios\" on GPT (anemos writes GPT) needs a BIOS boot partition for grub's core image, but no partition has type = \"bios-boot\": add { label = \"bios\", type = \"bios-boot\", size = \"1MiB\" } to each disk that should boot",
        );
    }
    if firmware.uefi && !has_esp {
        p.add(
            "bootloader.firmware",
            "\"uefi\": grub's EFI program goes onto the ESP, but no partition has type = \"esp\", format = \"vfat\" and a mount (e.g. mount = \"/boot/efi\")",
        );
    }
    // The filesystem that holds /boot: a /boot mount, else the root.
    let boot = if layout_mounts(layout, "/boot") {
        "/boot"
    } else {
        "/"
    };
    if let Some(l) = layout
        .luks
        .iter()
        .find(|l| l.mount.as_deref() == Some(boot))
    {
        p.add(
            "bootloader.kind",
            format!(
                "grub reads the kernel from {boot}, which is on the LUKS volume {:?}: grub cannot unlock it here; give /boot a partition or array of its own",
                l.name
            ),
        );
    }
}

/// Whether a partition, array or LUKS volume of `layout` is mounted at `mount`.
fn layout_mounts(layout: &Layout, mount: &str) -> bool {
    let m = Some(mount);
    layout
        .disks
        .iter()
        .flat_map(|d| d.partitions.iter())
        .any(|s| s.mount.as_deref() == m)
        || layout.arrays.iter().any(|a| a.mount.as_deref() == m)
        || layout.luks.iter().any(|l| l.mount.as_deref() == m)
}

/// Mirrored ESPs (a vfat ESP without a mount point, kept identical to the mounted one by the
/// bootloader stage) must have the mounted ESP's size: the copy must fit, and a firmware that
/// falls back to the other disk should find the same volume.
fn check_esp_mirrors(layout: &Layout, p: &mut Problems) {
    let esp = part_type_guid("esp");
    let esps: Vec<(usize, usize, &PartSpec)> = layout
        .disks
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.partitions.iter().enumerate().map(move |(j, s)| (i, j, s)))
        .filter(|(_, _, s)| Some(s.type_guid) == esp)
        .collect();
    let Some(&(mi, mj, main)) = esps.iter().find(|(_, _, s)| s.mount.is_some()) else {
        return;
    };
    let show = |s: SizeSpec| match s {
        SizeSpec::Bytes(b) => crate::util::human(b),
        SizeSpec::Rest => "rest".into(),
    };
    for &(i, j, s) in &esps {
        if s.mount.is_none() && s.format == Some(FsKind::Vfat) && s.size != main.size {
            p.add(
                format!("disk[{i}].partitions[{j}].size"),
                format!(
                    "this ESP mirrors the one mounted at {} (disk[{mi}].partitions[{mj}], size {}) but its size is {}: mirrored ESPs must be the same size",
                    main.mount.as_deref().unwrap_or_default(),
                    show(main.size),
                    show(s.size)
                ),
            );
        }
    }
}
