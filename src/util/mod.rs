//! Small text helpers every side uses: hex, UUID and size formatting, MAC addresses, globs. One
//! implementation each.

pub mod glob;
pub mod mac;

pub use glob::fnmatch;

/// Lowercase hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Lowercase hex of a byte slice, one space between bytes (`1f 8b 08`), for error messages
/// that quote raw bytes.
pub fn hex_spaced(bytes: &[u8]) -> String {
    let mut s = hex(bytes);
    for i in (1..bytes.len()).rev() {
        s.insert(2 * i, ' ');
    }
    s
}

/// Formats 16 bytes (canonical order) as a lowercase UUID string.
pub fn uuid_string(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

/// A GUID as EFI stores it (mixed-endian: the first three fields little-endian, as in GPT
/// headers and entries) in canonical UUID byte order, ready for [`uuid_string`].
pub fn guid_from_le(raw: &[u8; 16]) -> [u8; 16] {
    *uuid::Uuid::from_bytes_le(*raw).as_bytes()
}

/// `n` bytes as a short human string (binary units), e.g. `1.5 GiB`: rounded, for people. A
/// size written back into configuration must be exact: `config::units::format_size`.
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", U[i])
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(hex_spaced(&[0, 0xab, 0x10]), "00 ab 10");
        assert_eq!(hex_spaced(&[]), "");
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7,
        ];
        assert_eq!(uuid_string(&u), "12345678-9abc-def0-0001-020304050607");
        let le = [
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0, 1, 2, 3, 4, 5, 6, 7,
        ];
        assert_eq!(guid_from_le(&le), u);
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1 GiB");
    }
}
