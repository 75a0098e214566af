//! Value parsers shared by the validators: sizes, size ranges, GUIDs, partition type names,
//! hostnames, paths and labels. Each returns `Err(message)`; the caller prefixes the key path.

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// The hint every size error ends with.
pub const SIZE_HINT: &str = "use KiB, MiB, GiB, TiB, e.g. \"512MiB\"";

/// Binary units accepted after the number (case-insensitive). `K`, `M`, `G`, `T` are binary too.
const UNITS: &[(&str, u64)] = &[
    ("kib", KIB),
    ("k", KIB),
    ("mib", MIB),
    ("m", MIB),
    ("gib", GIB),
    ("g", GIB),
    ("tib", TIB),
    ("t", TIB),
];

/// Decimal units, refused: "500MB" meaning 500 MiB would silently be 4.9% off (or 10% for TB).
/// (decimal unit, binary replacement, how much larger the binary unit is).
const DECIMAL_UNITS: &[(&str, &str, &str)] = &[
    ("kb", "KiB", "2.4%"),
    ("mb", "MiB", "4.9%"),
    ("gb", "GiB", "7.4%"),
    ("tb", "TiB", "10%"),
];

/// Parses a size such as "512MiB", "1G", "100 KiB". Zero is returned as zero (callers decide).
/// The error is the full message, starting with the quoted input.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.trim_start();
    let unit_lower = unit.to_ascii_lowercase();
    if number.is_empty() {
        return Err(format!("{text:?} is not a size ({SIZE_HINT})"));
    }
    if let Some((_, binary, more)) = DECIMAL_UNITS.iter().find(|(d, _, _)| *d == unit_lower) {
        return Err(format!(
            "{text:?} uses a decimal unit, which anemos refuses: sizes are binary (1 {binary} is {more} \
             more than 1 {unit}), so write {binary}, e.g. \"{number}{binary}\""
        ));
    }
    let Some((_, factor)) = UNITS.iter().find(|(u, _)| *u == unit_lower) else {
        if unit.is_empty() {
            return Err(format!("{text:?} has no unit ({SIZE_HINT})"));
        }
        return Err(format!("{text:?} is not a size ({SIZE_HINT})"));
    };
    if number.contains('.') {
        return Err(fraction_message(text, number, unit, *factor));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size ({SIZE_HINT})"))?;
    n.checked_mul(*factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// "1.5GiB" → suggest "1536MiB" when that is exact.
fn fraction_message(text: &str, number: &str, unit: &str, factor: u64) -> String {
    let smaller = UNITS
        .iter()
        .filter(|(u, _)| u.len() == 3)
        .find(|(_, f)| *f * KIB == factor);
    if let (Ok(x), Some((name, _))) = (number.parse::<f64>(), smaller) {
        let scaled = x * 1024.0;
        if scaled.fract() == 0.0 && scaled > 0.0 && scaled < 1e15 {
            let name = format!("{}iB", name[..1].to_ascii_uppercase());
            return format!("{text:?}: fractions are not accepted; write \"{scaled}{name}\"");
        }
    }
    format!(
        "{text:?}: fractions are not accepted; use a whole number of a smaller unit than {unit}"
    )
}

/// Parses a disk size range: "100GiB..200GiB", "100GiB..", "..2TiB". Returns (min, max).
pub fn parse_size_range(text: &str) -> Result<(Option<u64>, Option<u64>), String> {
    const RANGE_HINT: &str = "use \"MIN..MAX\", \"MIN..\" or \"..MAX\", e.g. \"100GiB..200GiB\"";
    let Some((lo, hi)) = text.split_once("..") else {
        return Err(format!("{text:?} is not a size range ({RANGE_HINT})"));
    };
    let bound = |s: &str| -> Result<Option<u64>, String> {
        if s.trim().is_empty() {
            Ok(None)
        } else {
            parse_size(s).map(Some)
        }
    };
    let (min, max) = (bound(lo)?, bound(hi)?);
    match (min, max) {
        (None, None) => Err(format!("{text:?} gives neither bound ({RANGE_HINT})")),
        (_, Some(0)) => Err(format!(
            "{text:?}: the upper bound must be greater than zero"
        )),
        (Some(a), Some(b)) if a > b => Err(format!(
            "{text:?}: the lower bound is above the upper bound"
        )),
        _ => Ok((min, max)),
    }
}

/// Formats a byte count with the largest binary unit that divides it exactly (`1025MiB`), in
/// the config syntax [`parse_size`] reads back; for an approximate figure meant for people
/// (`1.5 GiB`) use [`crate::util::human`].
pub fn format_size(bytes: u64) -> String {
    for (unit, f) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= f && bytes.is_multiple_of(f) {
            return format!("{}{unit}", bytes / f);
        }
    }
    format!("{bytes} bytes")
}

/// Parses a textual GUID/UUID (8-4-4-4-12 hex digits, any case) into its 16 bytes in textual
/// (big-endian) order. The all-zero GUID is refused (it marks an unused GPT entry).
pub fn parse_guid(text: &str) -> Result<[u8; 16], String> {
    let bad = || {
        format!("{text:?} is not a GUID (write 8-4-4-4-12 hex digits, e.g. \"4f68bce3-e8cd-4db1-96e7-fbcaf984b709\")")
    };
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return Err(bad());
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    if out == [0; 16] {
        return Err(format!(
            "{text:?} is the all-zero GUID, which marks an unused entry"
        ));
    }
    Ok(out)
}

/// Parses 64 hex digits into a SHA-256 digest.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let bad = || format!("{text:?} is not a SHA-256 digest (64 hex digits)");
    if text.len() != 64 || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).map_err(|_| bad())?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// Partition type names (Discoverable Partitions Specification; `root`/`usr` are x86-64's).
pub const PART_TYPES: &[(&str, &str)] = &[
    ("esp", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    ("xbootldr", "bc13c2ff-59e6-4262-a352-b275fd6f7172"),
    ("root", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
    ("usr", "8484680c-9521-48c6-9c11-b0720656f69e"),
    ("home", "933ac7e1-2eb4-4f13-b844-0e14e2aef915"),
    ("srv", "3b8f8425-20e0-4f3b-907f-1a25a76f98e8"),
    ("var", "4d21b016-b534-45c2-a9fb-5c16e091fd2d"),
    ("tmp", "7ec6f557-3bc5-4aca-b293-16ef5df639d1"),
    ("swap", "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"),
    ("linux", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
    ("raid", "a19d880f-05fc-4d3b-a006-743f0f84911e"),
    // Not in the specification: the GPT type of a BIOS boot partition, where grub's BIOS core
    // image goes on a GPT disk (there is no gap after the MBR to embed it in).
    ("bios-boot", "21686148-6449-6e6f-744e-656564454649"),
];

/// The type GUID for a name in [`PART_TYPES`], if it is one.
pub fn part_type_guid(name: &str) -> Option<[u8; 16]> {
    let (_, g) = PART_TYPES.iter().find(|(n, _)| *n == name)?;
    parse_guid(g).ok()
}

/// Resolves a partition `type`: a name from [`PART_TYPES`] or a raw GUID.
pub fn parse_part_type(text: &str) -> Result<[u8; 16], String> {
    if let Some(g) = part_type_guid(text) {
        return Ok(g);
    }
    if text.len() == 36 && text.contains('-') {
        return parse_guid(text);
    }
    let names: Vec<&str> = PART_TYPES.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "unknown partition type {text:?} (use one of: {}, or a type GUID)",
        names.join(", ")
    ))
}

/// GPT PARTLABEL (and preserved filesystem label): 1..=36 UTF-16 code units, no control chars.
pub fn check_label(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let units = text.encode_utf16().count();
    if units > 36 {
        return Err(format!(
            "{text:?} is {units} UTF-16 code units long; a GPT label holds at most 36"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{text:?} contains a control character"));
    }
    Ok(())
}

/// Hostname: dot-separated RFC 1123 labels of letters, digits and '-', each 1..=63 long and not
/// starting or ending with '-'; at most 64 bytes in all (the kernel's HOST_NAME_MAX).
pub fn check_hostname(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > 64 {
        return Err(format!(
            "{text:?} is {} bytes long; Linux allows at most 64",
            text.len()
        ));
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err(format!(
                "{text:?} has an empty label (two dots, or a dot at an end)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "{text:?}: label {label:?} is longer than 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(format!(
                "{text:?}: only letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{text:?}: label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// An absolute, normalized path: starts with '/', no empty, "." or ".." components, no
/// trailing '/', no whitespace or control characters (fstab and entry files are whitespace
/// separated). Used for mount points and paths inside the target.
pub fn check_absolute_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} is not absolute (it must start with '/')"));
    }
    check_path_chars(text)?;
    if text == "/" {
        return Ok(());
    }
    check_components(text, text[1..].split('/'))
}

/// A path relative to the payload directory: not absolute, normalized, never leaving it.
pub fn check_relative_path(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.starts_with('/') {
        return Err(format!(
            "{text:?} is absolute; give a path relative to the payload directory"
        ));
    }
    check_path_chars(text)?;
    check_components(text, text.split('/'))
}

fn check_path_chars(text: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{text:?} contains whitespace or a control character"
        ));
    }
    Ok(())
}

fn check_components<'a>(
    text: &str,
    mut parts: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    if parts.any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!(
            "{text:?} is not normalized (no \"..\", \".\", \"//\" or trailing '/')"
        ));
    }
    Ok(())
}

/// Mount options as written into fstab: non-empty, no whitespace or control characters.
pub fn check_mount_options(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty (omit the key for the defaults)".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{text:?} contains whitespace or a control character (separate options with ',')"
        ));
    }
    Ok(())
}

/// A string used as-is (serial, model, options line): non-empty, no control characters.
pub fn check_plain(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{text:?} contains a control character"));
    }
    Ok(())
}

/// The network address of `a/prefix`: the host bits cleared. Pure.
pub fn network_of(a: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    use std::net::IpAddr;
    match a {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix).min(32))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix).min(128))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("512MiB", 512 * MIB),
            ("1GiB", GIB),
            ("2TiB", 2 * TIB),
            ("100KiB", 100 * KIB),
            ("1G", GIB),
            ("64M", 64 * MIB),
            ("4k", 4 * KIB),
            ("3T", 3 * TIB),
            ("512 MiB", 512 * MIB),
            ("1gib", GIB),
            ("0MiB", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            (
                "12Q",
                "\"12Q\" is not a size (use KiB, MiB, GiB, TiB, e.g. \"512MiB\")",
            ),
            ("512", "has no unit"),
            ("500MB", "decimal unit"),
            ("1GB", "write GiB, e.g. \"1GiB\""),
            ("1.5GiB", "write \"1536MiB\""),
            ("0.3KiB", "fractions are not accepted"),
            ("99999999999TiB", "too large"),
            ("MiB", "is not a size"),
            ("", "is not a size"),
            ("-1GiB", "is not a size"),
            ("512B", "is not a size"),
            ("1PiB", "is not a size"),
        ];
        for (text, want) in bad {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_size_range("100GiB..200GiB"),
            Ok((Some(100 * GIB), Some(200 * GIB)))
        );
        assert_eq!(parse_size_range("..2TiB"), Ok((None, Some(2 * TIB))));
        assert_eq!(parse_size_range("100GiB.."), Ok((Some(100 * GIB), None)));
        assert_eq!(parse_size_range("1G..1G"), Ok((Some(GIB), Some(GIB))));
        for (text, want) in [
            ("100GiB", "not a size range"),
            ("..", "neither bound"),
            ("2GiB..1GiB", "lower bound is above"),
            ("..0MiB", "greater than zero"),
            ("1GB..", "decimal"),
        ] {
            let err = parse_size_range(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(GIB), "1GiB");
        assert_eq!(format_size(GIB + MIB), "1025MiB");
        assert_eq!(format_size(3 * KIB), "3KiB");
        assert_eq!(format_size(5), "5 bytes");
    }

    #[test]
    fn type_table() {
        // Byte order is the textual order: the first byte is the first two hex digits.
        let root = parse_part_type("root").unwrap();
        assert_eq!(root[..4], [0x4f, 0x68, 0xbc, 0xe3]);
        assert_eq!(root[15], 0x09);
        for (name, guid) in PART_TYPES {
            assert_eq!(parse_part_type(name), parse_guid(guid), "{name}");
        }
        let esp = parse_part_type("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").unwrap();
        assert_eq!(Some(esp), part_type_guid("esp"));
        let err = parse_part_type("roo").unwrap_err();
        assert!(
            err.contains("esp, xbootldr, root, usr, home, srv, var, tmp, swap, linux"),
            "{err}"
        );
        assert!(parse_part_type("4f68bce3-e8cd-4db1-96e7-fbcaf984b70z").is_err());
        assert!(parse_guid("00000000-0000-0000-0000-000000000000")
            .unwrap_err()
            .contains("all-zero"));
        assert!(parse_guid("4f68bce3e8cd-4db1-96e7-fbcaf984b709a").is_err());
    }

    #[test]
    fn labels_hostnames_paths() {
        assert!(check_label("root").is_ok());
        assert!(check_label(&"x".repeat(36)).is_ok());
        assert!(check_label(&"x".repeat(37))
            .unwrap_err()
            .contains("37 UTF-16"));
        // 18 characters outside the BMP take 36 UTF-16 units; 19 take 38.
        assert!(check_label(&"😀".repeat(18)).is_ok());
        assert!(check_label(&"😀".repeat(19)).is_err());
        assert!(check_label("a\tb").is_err());
        assert!(check_label("").is_err());

        for ok in ["anemos", "web-1.example.com", "A1"] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a b",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(63)),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }

        for ok in ["/", "/boot", "/boot/efi", "/srv/data-1"] {
            assert!(check_absolute_path(ok).is_ok(), "{ok}");
        }
        for bad in ["boot", "/boot/", "//boot", "/a/../b", "/a/./b", "/a b", ""] {
            assert!(check_absolute_path(bad).is_err(), "{bad}");
        }
        for ok in ["rootfs.tar.zst", "scripts/install.sh"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/x", "../x", "a/../../x", "a//b", ""] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
        assert!(check_mount_options("noatime,nodev").is_ok());
        assert!(check_mount_options("noatime, nodev").is_err());
        assert!(parse_sha256(&"ab".repeat(32)).is_ok());
        assert!(parse_sha256("abc").is_err());
    }
}
