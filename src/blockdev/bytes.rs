//! Byte-level helpers for the probes and decoders: every read goes through `get`, so
//! malformed input yields `None`, never a panic.

use std::io::{self, Read, Seek, SeekFrom};

pub(super) fn bytes_at(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

pub(super) fn le16(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes_at(buf, off, 2)?.try_into().ok()?))
}

pub(super) fn le32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes_at(buf, off, 4)?.try_into().ok()?))
}

pub(super) fn be32(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes_at(buf, off, 4)?.try_into().ok()?))
}

pub(super) fn le64(buf: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes_at(buf, off, 8)?.try_into().ok()?))
}

/// Reads up to `len` bytes at `offset`; fewer at the end of the device, none past it.
pub(super) fn read_upto<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.by_ref().take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// C `isspace`: blank, tab, newline, vertical tab, form feed, carriage return.
pub(super) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// A label field: up to the first NUL, trailing whitespace removed (blkid's
/// `blkid_rtrim_whitespace`), `None` when empty.
pub(super) fn label_from(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]);
    let s = s.trim_end_matches(is_c_space);
    (!s.is_empty()).then(|| s.to_string())
}
