//! Named module sets (`--module storage`, `--module virtio`, ...), usable wherever a module
//! name is.

/// One member of a named module set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMember {
    /// A module by name; skipped when this kernel does not have it.
    Module(&'static str),
    /// Every module whose path (relative to the tree) starts with this prefix.
    Dir(&'static str),
}

/// A named set of modules, usable wherever a module name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSet {
    /// Set name, case-sensitive (`usb-storage` keeps its dash).
    pub name: &'static str,
    /// One-line description for help texts.
    pub description: &'static str,
    /// Members; those missing from the kernel are skipped silently.
    pub members: &'static [SetMember],
}

use SetMember::{Dir, Module};

/// All named sets, in the order help texts list them.
pub(super) const SETS: &[ModuleSet] = &[
    ModuleSet {
        name: "virtio",
        description: "virtio transports, disks, network, console and rng",
        members: &[
            Module("virtio_pci"),
            Module("virtio_mmio"),
            Module("virtio_blk"),
            Module("virtio_scsi"),
            Module("virtio_net"),
            Module("virtio_console"),
            Module("virtio_rng"),
        ],
    },
    ModuleSet {
        name: "nvme",
        description: "NVMe disks",
        members: &[Module("nvme"), Module("nvme_core")],
    },
    ModuleSet {
        name: "ahci",
        description: "SATA disks behind an AHCI controller",
        members: &[
            Module("ahci"),
            Module("libahci"),
            Module("libata"),
            Module("sd_mod"),
        ],
    },
    ModuleSet {
        name: "usb-storage",
        description: "USB mass storage and USB host controllers",
        members: &[
            Module("usb_storage"),
            Module("uas"),
            Module("xhci_pci"),
            Module("ehci_pci"),
            Module("ohci_pci"),
            Module("sd_mod"),
        ],
    },
    ModuleSet {
        name: "md",
        description: "software RAID (md): the md core and RAID0/1/10",
        members: &[
            Module("md_mod"),
            Module("raid0"),
            Module("raid1"),
            Module("raid10"),
        ],
    },
    ModuleSet {
        name: "luks",
        description: "LUKS2 (dm-crypt): device-mapper, dm_crypt, the XTS/AES ciphers and the kernel crypto API for cryptsetup",
        members: &[
            Module("dm_mod"),
            Module("dm_crypt"),
            Module("xts"),
            Module("ecb"),
            Module("cbc"),
            Module("aes_generic"),
            Module("aesni_intel"),
            Module("af_alg"),
            Module("algif_skcipher"),
            Module("algif_hash"),
            Module("sha256_generic"),
        ],
    },
    ModuleSet {
        name: "storage",
        description: "every block, SCSI, ATA, NVMe, MD/DM and MMC driver, plus virtio disks",
        members: &[
            Dir("kernel/drivers/block/"),
            Dir("kernel/drivers/scsi/"),
            Dir("kernel/drivers/ata/"),
            Dir("kernel/drivers/nvme/"),
            Dir("kernel/drivers/md/"),
            Dir("kernel/drivers/mmc/"),
            Module("virtio_blk"),
            Module("virtio_scsi"),
        ],
    },
    ModuleSet {
        name: "net",
        description: "every network driver (ethernet, virtio_net, ...)",
        members: &[Dir("kernel/drivers/net/")],
    },
    ModuleSet {
        name: "fs",
        description: "every filesystem module",
        members: &[Dir("kernel/fs/")],
    },
];

/// Modules that come with another one because the init cannot use it without them (as dracut
/// adds the codepages with vfat): requesting the first (by name, alias or set) adds the others
/// this kernel has. vfat: the codepage and IO charset of the init's vfat mount options.
pub(super) const COMPANIONS: &[(&str, &[&str])] =
    &[("vfat", &crate::disk::vfat::MOUNT_NLS_MODULES)];

/// The companions of module `name` (see [`COMPANIONS`]).
pub(super) fn companions(name: &str) -> &'static [&'static str] {
    COMPANIONS
        .iter()
        .find(|(m, _)| *m == name)
        .map(|(_, c)| *c)
        .unwrap_or(&[])
}

/// Looks up a named module set; names are case-sensitive.
pub fn module_set(name: &str) -> Option<&'static ModuleSet> {
    SETS.iter().find(|s| s.name == name)
}

/// All named module sets.
#[allow(dead_code)] // listing for docs/tests
pub fn module_sets() -> &'static [ModuleSet] {
    SETS
}
