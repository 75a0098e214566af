//! The crate's one GPT reader: device naming reads partition GUIDs and names with it, and the
//! disk stages read back the table they just wrote with it (writing goes through the `gpt`
//! crate, in `disk::gpt`).
//!
//! Why a reader of our own rather than the `gpt` crate's: it runs at boot on every block
//! device present, whatever is on it, so it must never panic on malformed data, must work
//! without knowing the sector size (it tries 512 and 4096 bytes, as the kernel does) and must
//! fall back to the backup header when the primary one is damaged; the `gpt` crate's reader
//! needs the sector size up front and is not hardened against arbitrary input. It lives here,
//! not in `disk`, because device naming (this layer) needs it and `disk` builds on this layer.
//! CRC-32 comes from the `crc` crate, which the `gpt` crate already links in.

use std::io::{self, Read, Seek, SeekFrom};

use super::bytes::{bytes_at, is_c_space, le32, le64, read_upto};
use crate::util::{guid_from_le, uuid_string};

/// One used entry of a GPT partition array, as device naming needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPart {
    /// Partition number as Linux numbers it: entry index + 1.
    pub number: u32,
    /// Unique partition GUID, lowercase 8-4-4-4-12.
    pub part_uuid: String,
    /// Partition name (UTF-16LE decoded, trailing whitespace removed as blkid does).
    pub part_label: String,
}

/// A used entry with everything the partition array says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Entry index + 1.
    pub number: u32,
    /// Partition type GUID, canonical byte order (as `uuid::Uuid::as_bytes`).
    pub type_guid: [u8; 16],
    /// Unique partition GUID, canonical byte order.
    pub part_guid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    /// UTF-16LE decoded up to the first NUL (not trimmed).
    pub name: String,
}

/// A valid GPT: disk GUID (canonical byte order), the sector size it was found with, and its
/// used entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptTable {
    pub disk_guid: [u8; 16],
    pub sector_size: u64,
    pub entries: Vec<GptEntry>,
}

/// Largest partition array we read (the usual one is 16 KiB).
pub(super) const MAX_GPT_ARRAY: usize = 4 << 20;

/// CRC-32 (IEEE 802.3, reflected) as the GPT headers use it.
pub fn crc32(data: &[u8]) -> u32 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC32.checksum(data)
}

/// Reads a GPT and returns its used entries: partition number (entry index + 1), lowercase
/// unique GUID and the name decoded from UTF-16LE.
///
/// Needs a protective (or hybrid) MBR, as the kernel does. Tries 512- then 4096-byte sectors;
/// a header counts only if its signature, `my_lba` and both CRC32s (header and entry array)
/// are right. When the primary header is damaged the backup at the last sector is used.
/// `Ok(None)`: no valid GPT.
pub fn read_gpt<R: Read + Seek>(r: &mut R) -> io::Result<Option<Vec<GptPart>>> {
    Ok(read_table(r, None)?.map(|t| {
        t.entries
            .into_iter()
            .map(|e| GptPart {
                number: e.number,
                part_uuid: uuid_string(&e.part_guid),
                part_label: e.name.trim_end_matches(is_c_space).to_string(),
            })
            .collect()
    }))
}

/// Reads the whole table, with the checks of [`read_gpt`]. `sector_size` `None` tries 512
/// then 4096 bytes; `Some` only that size.
pub fn read_table<R: Read + Seek>(
    r: &mut R,
    sector_size: Option<u64>,
) -> io::Result<Option<GptTable>> {
    if !has_protective_mbr(r)? {
        return Ok(None);
    }
    let sizes = match sector_size {
        Some(ss) => vec![ss],
        None => vec![512u64, 4096],
    };
    let size = r.seek(SeekFrom::End(0))?;
    for &ss in &sizes {
        if let Some(t) = read_gpt_at(r, ss, 1)? {
            return Ok(Some(t));
        }
    }
    for &ss in &sizes {
        if size >= 2 * ss {
            if let Some(t) = read_gpt_at(r, ss, size / ss - 1)? {
                log::warn!("primary GPT header damaged; using the backup ({ss}-byte sectors)");
                return Ok(Some(t));
            }
        }
    }
    Ok(None)
}

fn has_protective_mbr<R: Read + Seek>(r: &mut R) -> io::Result<bool> {
    let mbr = read_upto(r, 0, 512)?;
    if bytes_at(&mbr, 510, 2) != Some(&[0x55, 0xAA]) {
        return Ok(false);
    }
    Ok((0..4).any(|i| mbr.get(446 + 16 * i + 4) == Some(&0xEE)))
}

/// The GPT whose header is at `lba`, if that header and its entry array are valid.
fn read_gpt_at<R: Read + Seek>(r: &mut R, ss: u64, lba: u64) -> io::Result<Option<GptTable>> {
    let Some(offset) = lba.checked_mul(ss) else {
        return Ok(None);
    };
    let hdr = read_upto(r, offset, usize::try_from(ss).unwrap_or(512))?;
    let Some(array) = gpt_array_location(&hdr, ss, lba) else {
        return Ok(None);
    };
    let (entries_lba, count, entry_size, array_crc) = array;
    let Some(len) = count
        .checked_mul(entry_size)
        .filter(|&l| l <= MAX_GPT_ARRAY)
    else {
        log::warn!(
            "GPT at LBA {lba}: partition array of {count} x {entry_size} bytes is implausible"
        );
        return Ok(None);
    };
    let Some(array_off) = entries_lba.checked_mul(ss) else {
        return Ok(None);
    };
    let data = read_upto(r, array_off, len)?;
    if data.len() != len || crc32(&data) != array_crc {
        return Ok(None);
    }
    let Some(disk_guid) = guid_at(&hdr, 56) else {
        return Ok(None);
    };
    Ok(Some(GptTable {
        disk_guid,
        sector_size: ss,
        entries: data
            .chunks_exact(entry_size)
            .enumerate()
            .filter_map(|(i, e)| gpt_entry(i, e))
            .collect(),
    }))
}

/// Checks a GPT header; returns (entries LBA, entry count, entry size, entry array CRC).
fn gpt_array_location(hdr: &[u8], ss: u64, lba: u64) -> Option<(u64, usize, usize, u32)> {
    if bytes_at(hdr, 0, 8)? != b"EFI PART" {
        return None;
    }
    let size = usize::try_from(le32(hdr, 12)?).ok()?;
    if size < 92 || size as u64 > ss {
        return None;
    }
    let mut copy = bytes_at(hdr, 0, size)?.to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != le32(hdr, 16)? || le64(hdr, 24)? != lba {
        return None;
    }
    let count = usize::try_from(le32(hdr, 80)?).ok()?;
    let entry_size = usize::try_from(le32(hdr, 84)?).ok()?;
    if entry_size < 128 || entry_size % 8 != 0 {
        return None;
    }
    Some((le64(hdr, 72)?, count, entry_size, le32(hdr, 88)?))
}

/// The mixed-endian GUID at `off`, in canonical byte order.
fn guid_at(buf: &[u8], off: usize) -> Option<[u8; 16]> {
    Some(guid_from_le(bytes_at(buf, off, 16)?.try_into().ok()?))
}

fn gpt_entry(index: usize, e: &[u8]) -> Option<GptEntry> {
    if bytes_at(e, 0, 16)?.iter().all(|&b| b == 0) {
        return None;
    }
    let (first_lba, last_lba) = (le64(e, 32)?, le64(e, 40)?);
    if first_lba > last_lba {
        return None;
    }
    let units: Vec<u16> = bytes_at(e, 56, 72)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Some(GptEntry {
        number: u32::try_from(index + 1).ok()?,
        type_guid: guid_at(e, 0)?,
        part_guid: guid_at(e, 16)?,
        first_lba,
        last_lba,
        name: String::from_utf16_lossy(&units),
    })
}
