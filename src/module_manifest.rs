//! The module manifest: the contract between the packer, which writes the kernel modules it
//! packed into the image in load order, and the init, which loads them in that order at boot.
//!
//! Format: a header line `# anemos module manifest v1 release=<release>`, then one line per
//! module, `<name> <absolute path in the image>[ <params>]`; blank lines and `#` comments are
//! ignored. The packer writes it at `/lib/modules/<release>/`[`FILE_NAME`] and links
//! [`LINK`] to it, so the init finds it without knowing the release.

use std::path::PathBuf;

/// First words of the manifest's header line; ` release=<release>` follows.
pub const HEADER: &str = "# anemos module manifest v1";

/// File name of the manifest inside `/lib/modules/<release>/` in the image.
pub const FILE_NAME: &str = "anemos.modules";

/// Where the image links the manifest (absolute path in the image).
pub const LINK: &str = "/etc/anemos/modules";

/// One line of the module manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Module name.
    pub name: String,
    /// Absolute path of the module file in the image.
    pub path: PathBuf,
    /// Module parameters (`key=value ...`), passed to the kernel as they are.
    pub params: Option<String>,
}

/// A malformed manifest line.
#[derive(Debug, thiserror::Error)]
#[error("module manifest line {line}: {reason}")]
pub struct ManifestError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Renders the manifest: the header, then `<name> <path>[ <params>]` per module.
pub fn render(release: &str, entries: &[ManifestEntry]) -> String {
    let mut out = format!("{HEADER} release={release}\n");
    for e in entries {
        out.push_str(&format!("{} {}", e.name, e.path.display()));
        if let Some(params) = e.params.as_deref().filter(|p| !p.trim().is_empty()) {
            out.push(' ');
            out.push_str(params.trim());
        }
        out.push('\n');
    }
    out
}

/// Splits off the first whitespace-separated word.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Parses a manifest, ignoring blank lines and `#` comments. Lines are
/// `<name> <absolute path> [params...]`.
pub fn parse(text: &str) -> Result<Vec<ManifestEntry>, ManifestError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| ManifestError {
            line: i + 1,
            reason,
        };
        let (name, rest) = first_word(line);
        let (path, rest) = first_word(rest);
        if path.is_empty() {
            return Err(bad(format!("expected \"<name> <path>\", got {line:?}")));
        }
        if name.contains('/') {
            return Err(bad(format!("module name {name:?} contains '/'")));
        }
        if !path.starts_with('/') {
            return Err(bad(format!("module path {path:?} is not absolute")));
        }
        let params = Some(rest.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        entries.push(ManifestEntry {
            name: name.to_string(),
            path: PathBuf::from(path),
            params,
        });
    }
    Ok(entries)
}

/// The release named in a manifest's header line, if any.
pub fn release(text: &str) -> Option<&str> {
    let header = text.lines().find(|l| l.starts_with(HEADER))?;
    header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("release="))
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_bad_lines() {
        let entries = vec![
            ManifestEntry {
                name: "b".into(),
                path: "/lib/modules/r/kernel/b.ko".into(),
                params: None,
            },
            ManifestEntry {
                name: "m".into(),
                path: "/lib/m.ko".into(),
                params: Some("debug=1 x=y".into()),
            },
        ];
        let text = render("r", &entries);
        assert!(
            text.starts_with("# anemos module manifest v1 release=r\n"),
            "{text}"
        );
        assert_eq!(release(&text), Some("r"));
        assert_eq!(parse(&text).unwrap(), entries);

        let err = parse("# header\n\nok /lib/ok.ko\nonlyname\n").unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.to_string().starts_with("module manifest line 4: "),
            "{err}"
        );
        let err = parse("m relative/path.ko\n").unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("not absolute"),
            "{err}"
        );
        let err = parse("a/b /lib/x.ko\n").unwrap_err();
        assert!(err.to_string().contains("contains '/'"), "{err}");
    }
}
