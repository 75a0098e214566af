//! The block-device library: what a disk is and what it is called, without udev.
//!
//! PID 1 runs no udev, yet fstab entries, kernel command lines and installers name disks as
//! `/dev/disk/by-uuid/...`, `by-partuuid`, `by-label`, `by-id` or `by-path`, and the planner
//! matches `anemos.toml` disks by serial, WWN, model and by-id name. This module is the one
//! place that reads those facts and derives those names, one concern per file:
//!
//! - [`sysfs`]: [`read_block_infos`] reads identity data from sysfs (the root is a parameter),
//!   with [`vpd`] decoding the SCSI VPD pages and ATA IDENTIFY data `scsi_id`/`ata_id` read;
//! - [`identity`]: [`DiskIdentity`], a whole disk as the planner, `anemos plan`,
//!   `anemos kexec` and the devices stage see it (serial, WWN, model, by-id, size, sectors);
//! - [`probe`] and [`gpt`]: filesystem superblocks and the GPT of a device or image file;
//! - [`names`] (with [`path_id`]): the link names udev's `60-persistent-storage.rules` would
//!   give each device (pure);
//! - [`links`]: [`create_links`] makes the links under `<dev>/disk`;
//! - [`device`]: exclusive open, partition-table re-read, partition node names.
//!
//! Reference: systemd's current rules and builtins (which keep the older by-id and by-path
//! names as compatibility links; the `by-path/<path>-part/` tree and partition by-diskseq
//! links are newer than Debian 12's udev), and libblkid 2.38 for the superblock fields.
//!
//! Deviations we know of (most are repeated at the code that makes them):
//!
//! - Device strings (serials, models, wwids) are escaped the `string_escape=replace` way for
//!   every bus: whitespace and `/` become `_`. udev leaves them unescaped for virtio, MMC and
//!   the NVMe `wwid` link, so a space there would split the link into several and a `/` would
//!   make a subdirectory; we make one flat link instead.
//! - Labels that are not valid UTF-8 are decoded lossily, so their `\xNN` escapes differ.
//! - by-id for USB disks (`usb-...`, from `usb_id`) is not made; by-path for USB omits the
//!   `usbvN-` variant (it needs the root hub's protocol). by-path is not made for Fibre
//!   Channel, SAS, iSCSI, Hyper-V, FireWire, CCISS or S390 devices: their names need
//!   transport attributes we do not read.
//! - SCSI by-path rebasing of the host number uses [`BlockInfo::scsi_host_base`]; without it
//!   we assume one SCSI host per controller (true for virtio-scsi and most HBAs).
//! - Without `device/vpd_pg89` an ATA disk's model comes from `device/model`, which SCSI
//!   truncates to 16 characters (ata_id reads all 40 with IDENTIFY DEVICE).
//! - Only GPT partitions get by-partuuid (udev also makes `<disk id>-<nn>` for MBR).
//! - `vfat` labels are read from the root directory's first cluster only; ext4 metadata
//!   checksums and XFS superblock fields beyond the block size are not verified; when more
//!   than one superblock matches, the first in the order XFS, ext, btrfs, swap, vfat wins
//!   (libblkid reports none).
//! - `by-loop-inode`/`by-loop-ref`, the FireWire and pmem by-id names, and the device-mapper
//!   and MD `by-id` names are not made; `dm-*` and `md*` devices do get by-uuid and by-label.

/// Everything needed to name one block device, read from sysfs and the device itself.
///
/// Fields a bus does not have stay `None`. For a partition, the identity fields (serial,
/// model, wwid...) are those of its whole disk, as udev imports them from the parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Kernel name: `vda`, `vda1`, `sda`, `nvme0n1p2`.
    pub kname: String,
    /// Whole-disk kernel name, for partitions.
    pub parent: Option<String>,
    /// Partition number (sysfs `partition`), for partitions.
    pub partnum: Option<u32>,
    /// Device serial: virtio `serial`, NVMe controller `serial`, the ATA serial (IDENTIFY or
    /// VPD page 0x80), SCSI unit serial (VPD 0x80), MMC `serial`.
    pub serial: Option<String>,
    /// Kernel `wwid` attribute (NVMe namespace or SCSI device), e.g. `eui.0025...`, `naa.5000...`.
    pub wwid: Option<String>,
    /// Model: NVMe/SCSI `device/model`, the full ATA model when IDENTIFY data is readable,
    /// the MMC card `name`.
    pub model: Option<String>,
    /// SCSI `device/vendor` (`ATA` for libata disks), unpadded or padded.
    pub vendor: Option<String>,
    /// Resolved sysfs path of the block device, reported as if sysfs were mounted on `/sys`:
    /// `/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda`.
    pub devpath: String,
    /// Bus the names come from: `virtio`, `nvme`, `ata`, `scsi` or `mmc`. `None` means "guess
    /// from the kernel name and vendor".
    pub subsystem_hint: Option<String>,
    /// NVMe namespace id (sysfs `nsid`), used in by-id and by-path.
    pub nsid: Option<u32>,
    /// World wide name as udev's `ID_WWN_WITH_EXTENSION` (`0x5000c500a1b2c3d4`), from ATA
    /// IDENTIFY data or the SCSI NAA designator. `None`: derived from a `naa.` [`Self::wwid`].
    pub wwn: Option<String>,
    /// SCSI `ID_SERIAL` as scsi_id builds it from the VPD pages, before whitespace is squeezed
    /// (`0QEMU    QEMU HARDDISK   drive-scsi0-0-0-0`). `None`: derived from wwid or serial.
    pub id_serial: Option<String>,
    /// libata `port_no` of the ATA port the disk is on (by-path `ata-<port>.<target>`).
    pub ata_port_no: Option<u32>,
    /// Lowest `hostN` number under the SCSI host's parent device (path_id's rebase).
    pub scsi_host_base: Option<u32>,
    /// For NVMe namespaces under `/devices/virtual/nvme-subsystem/` (native multipath), the
    /// path of the controller udev uses for by-path, e.g. `/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0`.
    pub nvme_ctrl_path: Option<String>,
    /// Disk sequence number (sysfs `diskseq`) of the whole disk.
    pub diskseq: Option<u64>,
}

/// What probing a device found: filesystem superblock and GPT partition entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// `ext2`, `ext3`, `ext4`, `xfs`, `btrfs`, `vfat` or `swap`.
    pub fs_type: Option<String>,
    /// Filesystem UUID as blkid prints it (lowercase 8-4-4-4-12, or `XXXX-XXXX` for vfat).
    pub fs_uuid: Option<String>,
    /// Filesystem label, trailing whitespace removed.
    pub fs_label: Option<String>,
    /// GPT partition GUID, lowercase.
    pub part_uuid: Option<String>,
    /// GPT partition name, trailing whitespace removed.
    pub part_label: Option<String>,
}

mod bytes;
pub mod device;
pub mod gpt;
pub mod identity;
pub mod links;
pub mod names;
pub mod path_id;
pub mod probe;
pub mod sysfs;
pub mod vpd;

pub use gpt::read_gpt;
pub use identity::DiskIdentity;
pub use links::create_links;
pub use names::link_names;
pub use probe::probe_fs;
pub use sysfs::read_block_infos;

#[cfg(test)]
mod tests;
