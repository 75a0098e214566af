//! SCSI VPD pages and ATA IDENTIFY data: what `scsi_id` and `ata_id` read from a disk.

use super::bytes::{bytes_at, is_c_space, le16};
use crate::util::hex;

/// SCSI vendor (8) and model (16) padded with blanks, as INQUIRY returns them.
pub(super) fn vendor_model(vendor: &str, model: &str) -> String {
    format!("{:<8.8}{:<16.16}", vendor, model)
}

/// VPD page 0x80 (unit serial number): the serial, raw.
pub(super) fn vpd80_serial(page: &[u8]) -> Option<String> {
    if page.get(1) != Some(&0x80) {
        return None;
    }
    let len = usize::from(*page.get(3)?);
    let raw = page.get(4..4 + len).or_else(|| page.get(4..))?;
    let s = String::from_utf8_lossy(raw).into_owned();
    (!s.trim_matches(is_c_space).is_empty()).then_some(s)
}

/// ATA strings in IDENTIFY data: two characters per word, the first in the high byte.
pub(super) fn ata_string(id: &[u8], first_word: usize, words: usize) -> Option<String> {
    let raw = bytes_at(id, first_word * 2, words * 2)?;
    let swapped: Vec<u8> = raw.chunks_exact(2).flat_map(|w| [w[1], w[0]]).collect();
    Some(
        String::from_utf8_lossy(&swapped)
            .trim_end_matches('\0')
            .to_string(),
    )
}

/// Model, serial and WWN from ATA IDENTIFY DEVICE data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AtaIdent {
    pub(super) model: String,
    pub(super) serial: String,
    pub(super) wwn: Option<String>,
}

/// libata's VPD page 0x89 (ATA information) carries the 512 bytes of IDENTIFY DEVICE data at
/// offset 60; read from it what ata_id reads with the IDENTIFY command.
pub(super) fn ata_identify_from_vpd89(page: &[u8]) -> Option<AtaIdent> {
    if page.get(1) != Some(&0x89) {
        return None;
    }
    let id = bytes_at(page, 60, 512)?;
    let word = |n: usize| le16(id, n * 2).unwrap_or(0);
    let serial = ata_string(id, 10, 10)?.trim_matches(is_c_space).to_string();
    let model = ata_string(id, 27, 20)?.trim_matches(is_c_space).to_string();
    if model.is_empty() {
        return None;
    }
    // ata_id: word 87 bits 15:14 = 01 (valid) and bit 8 (WWN supported).
    let wwn = (word(87) & 0xc100 == 0x4100).then(|| {
        let v = (108..112).fold(0u64, |acc, w| (acc << 16) | u64::from(word(w)));
        format!("0x{v:x}")
    });
    Some(AtaIdent { model, serial, wwn })
}

// scsi_id's descriptor search order in VPD page 0x83: (designator type, NAA type, code set).
// Designator types: 0 vendor specific, 1 T10 vendor id, 2 EUI-64, 3 NAA. Code sets: 1 binary,
// 2 ASCII. NAA types: 6 IEEE registered extended, 5 IEEE registered, None = any. (scsi_id
// first looks for a target port group, which never yields a serial, so it is left out.)
pub(super) const ID_SEARCH: &[(u8, Option<u8>, u8)] = &[
    (3, Some(6), 1),
    (3, Some(6), 2),
    (3, Some(5), 1),
    (3, Some(5), 2),
    (3, None, 1),
    (3, None, 2),
    (2, None, 1),
    (2, None, 2),
    (1, None, 1),
    (1, None, 2),
    (0, None, 1),
    (0, None, 2),
];

/// scsi_id's `ID_SERIAL` (unsqueezed) and `ID_WWN_WITH_EXTENSION` from VPD page 0x83.
pub(super) fn scsi_id_from_vpd83(
    page: &[u8],
    vendor: &str,
    model: &str,
) -> Option<(String, Option<String>)> {
    if page.get(1) != Some(&0x83) {
        return None;
    }
    let count = usize::from(*page.get(3)?);
    if *page.get(6)? != 0 {
        // Pre-SPC-3 (SCSI-2) layout: the binary id follows the header directly.
        return Some((format!("3{}", hex(page.get(4..4 + count)?)), None));
    }
    let total = (usize::from(*page.get(2)?) << 8) + count + 4;
    let end = total.min(page.len());
    let mut descriptors = Vec::new();
    let mut j = 4;
    while j + 4 <= end {
        let len = usize::from(page[j + 3]);
        let Some(d) = page.get(j..(j + 4 + len).min(end)) else {
            break;
        };
        descriptors.push(d);
        j += 4 + len;
    }
    for &(id_type, naa, code_set) in ID_SEARCH {
        for d in &descriptors {
            if let Some(found) = match_designator(d, id_type, naa, code_set, vendor, model) {
                return Some(found);
            }
        }
    }
    None
}

pub(super) fn match_designator(
    d: &[u8],
    id_type: u8,
    naa: Option<u8>,
    code_set: u8,
    vendor: &str,
    model: &str,
) -> Option<(String, Option<String>)> {
    let (b0, b1, len) = (*d.first()?, *d.get(1)?, usize::from(*d.get(3)?));
    let body = d.get(4..4 + len)?;
    let matches = b1 & 0x30 == 0
        && b1 & 0x0f == id_type
        && naa.is_none_or(|n| body.first().map(|b| b >> 4) == Some(n))
        && b0 & 0x0f == code_set;
    if !matches {
        return None;
    }
    let id = if code_set == 2 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        hex(body)
    };
    let prefix = if id_type == 0 {
        vendor_model(vendor, model)
    } else {
        String::new()
    };
    let wwn = (id_type == 3).then(|| format!("0x{}", id.chars().take(32).collect::<String>()));
    Some((format!("{id_type}{prefix}{id}"), wwn))
}
