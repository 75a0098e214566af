//! MAC addresses: `52:54:00:12:34:56` text to bytes and back. One parser for the config,
//! sysfs and the DHCP client.

/// Parses `aa:bb:cc:dd:ee:ff` (any case, exactly six two-digit hex groups).
pub fn parse(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Formats as lowercase `aa:bb:cc:dd:ee:ff`.
pub fn format(mac: &[u8; 6]) -> String {
    let s: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    s.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let m = [0x52, 0x54, 0, 0x12, 0x34, 0xab];
        assert_eq!(parse("52:54:00:12:34:ab"), Some(m));
        assert_eq!(parse("52:54:00:12:34:AB"), Some(m));
        assert_eq!(format(&m), "52:54:00:12:34:ab");
        assert_eq!(parse(&format(&m)), Some(m));
        assert_eq!(parse("52:54:00:12:34"), None);
        assert_eq!(parse("52:54:00:12:34:56:78"), None);
        assert_eq!(parse("52:54:00:12:34:5g"), None);
        assert_eq!(
            parse("52:54:00:12:34:+f"),
            None,
            "from_str_radix alone takes a sign"
        );
        assert_eq!(parse("52:54:00:12:34:5"), None);
        assert_eq!(parse(" 52:54:00:12:34:56"), None, "callers trim");
        assert_eq!(parse(""), None);
    }
}
