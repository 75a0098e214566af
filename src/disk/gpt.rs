//! Writing GPTs through the `gpt` crate, on any Read+Write+Seek (a block device in the init,
//! a disk image file on the host and in tests); reading them back goes through the crate's one
//! GPT reader in `blockdev::gpt`.
//!
//! gpt 4.1 quirks handled here: it does not write the
//! protective MBR, and its partition GUIDs are random, so we build the whole 128-entry map
//! ourselves (used entries with our derived GUIDs, the rest zeroed) and write the MBR.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use gpt::GptConfig;
use uuid::Uuid;

use super::plan::PlannedPart;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{device}: writing the GPT")]
    Write {
        device: String,
        #[source]
        source: gpt::GptError,
    },
    #[error("{device}: writing the protective MBR")]
    Mbr {
        device: String,
        #[source]
        source: gpt::mbr::MBRError,
    },
    #[error("{device}: {op}")]
    Io {
        device: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn lbs(ss: u64) -> LogicalBlockSize {
    if ss == 4096 {
        LogicalBlockSize::Lb4096
    } else {
        LogicalBlockSize::Lb512
    }
}

/// Zeroes the first and last MiB of the device: old GPT headers (primary and backup), MBR,
/// and the superblocks of most filesystems and RAID members live there.
pub fn wipe_signatures<D: Read + Write + Seek>(
    dev: &mut D,
    device: &str,
    size: u64,
) -> Result<(), GptError> {
    let io = |op| {
        move |e| GptError::Io {
            device: device.to_string(),
            op,
            source: e,
        }
    };
    let zero = vec![0u8; 1 << 20];
    let head = size.min(1 << 20);
    dev.seek(SeekFrom::Start(0))
        .map_err(io("seeking to the start"))?;
    dev.write_all(&zero[..head as usize])
        .map_err(io("wiping the first MiB"))?;
    let tail = size.min(1 << 20);
    dev.seek(SeekFrom::Start(size - tail))
        .map_err(io("seeking to the end"))?;
    dev.write_all(&zero[..tail as usize])
        .map_err(io("wiping the last MiB"))?;
    dev.flush().map_err(io("flushing"))?;
    Ok(())
}

/// Writes a protective MBR and a GPT holding exactly `parts` to `dev`.
/// The caller must `sync_all` a real device afterwards and re-read the table.
pub fn write_table<D: Read + Write + Seek + std::fmt::Debug>(
    mut dev: D,
    device: &str,
    sector_size: u64,
    total_sectors: u64,
    disk_guid: [u8; 16],
    parts: &[PlannedPart],
) -> Result<D, GptError> {
    let mbr_size = u32::try_from(total_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(mbr_size)
        .overwrite_lba0(&mut dev)
        .map_err(|e| GptError::Mbr {
            device: device.into(),
            source: e,
        })?;
    let werr = |e| GptError::Write {
        device: device.into(),
        source: e,
    };
    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(lbs(sector_size))
        .create_from_device(dev, Some(Uuid::from_bytes(disk_guid)))
        .map_err(werr)?;
    let mut map = BTreeMap::new();
    for id in 1..=128u32 {
        map.insert(id, Partition::zero());
    }
    for p in parts {
        map.insert(
            p.number,
            Partition {
                part_type_guid: gpt::partition_types::Type {
                    guid: Uuid::from_bytes(p.type_guid),
                    os: gpt::partition_types::OperatingSystem::None,
                },
                part_guid: Uuid::from_bytes(p.part_uuid),
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                flags: 0,
                name: p.label.clone(),
            },
        );
    }
    disk.update_partitions(map).map_err(werr)?;
    disk.write().map_err(werr)
}

/// A partition read back from a GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPart {
    pub number: u32,
    pub label: String,
    pub type_guid: [u8; 16],
    pub part_uuid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
}

/// Reads the GPT of `dev` (for verification after writing, and for tests) with the crate's
/// one GPT reader, `blockdev::gpt`, at the given sector size.
pub fn read_table<D: Read + Seek>(
    mut dev: D,
    sector_size: u64,
) -> std::io::Result<([u8; 16], Vec<ReadPart>)> {
    let table =
        crate::blockdev::gpt::read_table(&mut dev, Some(sector_size))?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no valid GPT with {sector_size}-byte sectors"),
            )
        })?;
    let parts = table
        .entries
        .into_iter()
        .map(|e| ReadPart {
            number: e.number,
            label: e.name,
            type_guid: e.type_guid,
            part_uuid: e.part_guid,
            first_lba: e.first_lba,
            last_lba: e.last_lba,
        })
        .collect();
    Ok((table.disk_guid, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layout::{DiskSpec, FsKind, Matcher, PartSpec, SizeSpec};
    use crate::disk::plan::{layout_disk, DiskAction, DiskIdentity, MIB};
    use crate::util::uuid_string;
    use std::process::Command;

    const ESP: [u8; 16] = [
        0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ];
    const ROOT_X64: [u8; 16] = [
        0x4f, 0x68, 0xbc, 0xe3, 0xe8, 0xcd, 0x4d, 0xb1, 0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7,
        0x09,
    ];

    fn spec() -> DiskSpec {
        let p = |label: &str, tn: &str, tg: [u8; 16], size| PartSpec {
            label: label.into(),
            type_name: tn.into(),
            type_guid: tg,
            size,
            format: Some(FsKind::Ext4),
            mount: None,
            mount_options: None,
            fs_label: None,
            part_uuid: None,
            fs_uuid: None,
            fat32: false,
        };
        DiskSpec {
            name: "system".into(),
            matcher: Matcher::default(),
            wipe: true,
            preserve: false,
            removable: false,
            partitions: vec![
                p("esp", "esp", ESP, SizeSpec::Bytes(64 * MIB)),
                p("root", "root", ROOT_X64, SizeSpec::Rest),
            ],
            mounts: vec![],
        }
    }

    fn tool(name: &str) -> bool {
        Command::new(name).arg("--version").output().is_ok()
    }

    fn write_image(path: &std::path::Path, size: u64, ss: u64) -> (DiskAction, [u8; 16]) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        f.set_len(size).unwrap();
        let d = DiskIdentity {
            path: "img".into(),
            size_bytes: size,
            sector_size: ss,
            ..Default::default()
        };
        let action = layout_disk("host", &spec(), &d).unwrap();
        let DiskAction::Repartition {
            disk_guid, parts, ..
        } = &action
        else {
            panic!()
        };
        let f = write_table(f, "img", ss, size / ss, *disk_guid, parts).unwrap();
        f.sync_all().unwrap();
        let g = *disk_guid;
        (action, g)
    }

    #[test]
    fn sgdisk_and_sfdisk_read_our_table() {
        if !tool("sgdisk") || !tool("sfdisk") {
            panic!("sgdisk and sfdisk are required (apt-get install gdisk fdisk)");
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d.img");
        let (action, guid) = write_image(&img, 256 * MIB, 512);
        let DiskAction::Repartition { parts, .. } = action else {
            panic!()
        };
        let v = Command::new("sgdisk").arg("-v").arg(&img).output().unwrap();
        let vs = String::from_utf8_lossy(&v.stdout);
        assert!(vs.contains("No problems found"), "sgdisk -v:\n{vs}");
        let p = String::from_utf8_lossy(
            &Command::new("sgdisk")
                .arg("-p")
                .arg(&img)
                .output()
                .unwrap()
                .stdout,
        )
        .to_string();
        assert!(
            p.contains(&format!(
                "Disk identifier (GUID): {}",
                uuid_string(&guid).to_uppercase()
            )),
            "{p}"
        );
        assert!(
            p.contains(&format!(
                "   1            2048          {}   64.0 MiB    EF00  esp",
                parts[0].last_lba
            )),
            "{p}"
        );
        assert!(
            p.contains(&format!(
                "   2          {}          {}",
                parts[1].first_lba, parts[1].last_lba
            )),
            "{p}"
        );
        let dump = String::from_utf8_lossy(
            &Command::new("sfdisk")
                .arg("--dump")
                .arg(&img)
                .output()
                .unwrap()
                .stdout,
        )
        .to_string();
        assert!(dump.contains("label: gpt"), "{dump}");
        assert!(dump.contains(&format!("start=        2048, size=      131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid={}, name=\"esp\"", uuid_string(&parts[0].part_uuid).to_uppercase())), "{dump}");
        assert!(
            dump.contains("type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
                && dump.contains("name=\"root\""),
            "{dump}"
        );
        // Our own reader agrees.
        let (g2, read) = read_table(
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&img)
                .unwrap(),
            512,
        )
        .unwrap();
        assert_eq!(g2, guid);
        assert_eq!(read.len(), 2);
        assert_eq!(
            (
                read[1].first_lba,
                read[1].last_lba,
                read[1].part_uuid,
                read[1].type_guid
            ),
            (
                parts[1].first_lba,
                parts[1].last_lba,
                parts[1].part_uuid,
                ROOT_X64
            )
        );
    }

    #[test]
    fn four_k_sector_table_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("d4k.img");
        let (action, _) = write_image(&img, 256 * MIB, 4096);
        let DiskAction::Repartition { parts, .. } = action else {
            panic!()
        };
        assert_eq!(parts[0].first_lba, 256, "1 MiB in 4 KiB sectors");
        let (_, read) = read_table(
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&img)
                .unwrap(),
            4096,
        )
        .unwrap();
        assert_eq!(
            read.iter()
                .map(|r| (r.first_lba, r.last_lba))
                .collect::<Vec<_>>(),
            parts
                .iter()
                .map(|p| (p.first_lba, p.last_lba))
                .collect::<Vec<_>>()
        );
        // The header sits at LBA 1 = byte 4096 (sfdisk 2.38 here cannot be told the sector size).
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(&bytes[4096..4104], b"EFI PART");
        assert_ne!(&bytes[512..520], b"EFI PART");
    }

    #[test]
    fn we_read_a_table_written_by_sgdisk() {
        if !tool("sgdisk") {
            panic!("sgdisk is required (apt-get install gdisk)");
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("s.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(128 * MIB)
            .unwrap();
        let st = Command::new("sgdisk")
            .args([
                "-n",
                "1:2048:+32M",
                "-t",
                "1:EF00",
                "-c",
                "1:boot",
                "-u",
                "1:11111111-2222-4333-8444-555555555555",
                "-n",
                "2:0:0",
                "-t",
                "2:8300",
                "-c",
                "2:data",
            ])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let (_, read) = read_table(
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&img)
                .unwrap(),
            512,
        )
        .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            (read[0].label.as_str(), read[0].first_lba, read[0].last_lba),
            ("boot", 2048, 2048 + 65536 - 1)
        );
        assert_eq!(
            uuid_string(&read[0].part_uuid),
            "11111111-2222-4333-8444-555555555555"
        );
        assert_eq!(read[0].type_guid, ESP);
        assert_eq!(read[1].label, "data");
    }

    #[test]
    fn wipe_clears_both_ends_only() {
        let mut buf = std::io::Cursor::new(vec![0xAAu8; 4 * MIB as usize]);
        wipe_signatures(&mut buf, "mem", 4 * MIB).unwrap();
        let v = buf.into_inner();
        assert!(v[..MIB as usize].iter().all(|b| *b == 0));
        assert!(v[3 * MIB as usize..].iter().all(|b| *b == 0));
        assert!(v[MIB as usize..3 * MIB as usize].iter().all(|b| *b == 0xAA));
    }
}
