//! The payload segment: the deploy description under `/payload` plus a sha256 manifest at
//! `/payload.manifest` that the init checks before anything destructive.
//!
//! Manifest format (text, one entry per line, sorted by path):
//! ```text
//! # anemos payload manifest v1
//! <sha256 hex>  <size>  <path relative to /payload>
//! ```
//! Only regular files are hashed; directories and symlinks are recreated by the cpio itself.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::{Archive, Data, Kind, Node};

pub const PAYLOAD_DIR: &str = "payload";
pub const MANIFEST_PATH: &str = "payload.manifest";
const HEADER: &str = "# anemos payload manifest v1";

/// Payload verification failures; each names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload manifest {0}: missing (was the payload packed with `anemos pack-payload`?)")]
    NoManifest(String),
    #[error("payload manifest line {line}: {reason}")]
    BadManifest { line: usize, reason: String },
    #[error("payload file {0}: listed in the manifest but missing")]
    Missing(String),
    #[error("payload file {path}: sha256 mismatch (manifest {expected}, found {actual})")]
    Mismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("payload file {0}: present but not listed in the manifest")]
    Unlisted(String),
    #[error("payload file {path}: {reason}")]
    Io { path: String, reason: String },
}

use crate::util::hex;

/// sha256 of a reader, streaming.
pub fn sha256_reader(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// Renders a manifest from (path, sha256, size) triples.
pub fn render_manifest(files: &BTreeMap<String, (String, u64)>) -> String {
    let mut s = format!("{HEADER}\n");
    for (p, (h, n)) in files {
        s.push_str(&format!("{h}  {n}  {p}\n"));
    }
    s
}

/// Parses a manifest into path → (sha256, size).
pub fn parse_manifest(text: &str) -> Result<BTreeMap<String, (String, u64)>, PayloadError> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.trim() == HEADER => {}
        _ => {
            return Err(PayloadError::BadManifest {
                line: 1,
                reason: format!("expected header {HEADER:?}"),
            })
        }
    }
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let mut it = l.splitn(3, "  ");
        let (Some(h), Some(n), Some(p)) = (it.next(), it.next(), it.next()) else {
            return Err(PayloadError::BadManifest {
                line: i + 1,
                reason: "expected `<sha256>  <size>  <path>`".into(),
            });
        };
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PayloadError::BadManifest {
                line: i + 1,
                reason: format!("bad sha256 {h:?}"),
            });
        }
        let n: u64 = n.parse().map_err(|_| PayloadError::BadManifest {
            line: i + 1,
            reason: format!("bad size {n:?}"),
        })?;
        out.insert(p.to_string(), (h.to_string(), n));
    }
    Ok(out)
}

/// Adds the payload (a directory or a tar archive) under `/payload` plus its manifest to `a`.
/// Returns the number of files hashed.
pub fn add_payload(a: &mut Archive, src: &Path) -> Result<usize, super::sources::SourceError> {
    let origin = format!("payload {}", src.display());
    let md = fs::metadata(src).map_err(|_| super::sources::SourceError::Missing {
        origin: "payload".into(),
        path: src.display().to_string(),
    })?;
    if md.is_dir() {
        super::sources::add_host_path(a, &origin, src, PAYLOAD_DIR, false)?;
    } else {
        super::sources::add_tar(a, &origin, src, PAYLOAD_DIR, false)?;
    }
    let mut files = BTreeMap::new();
    let prefix = format!("{PAYLOAD_DIR}/");
    for (path, node) in a.iter() {
        let Some(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        if let Kind::File(d) = &node.kind {
            let (h, n) = match d {
                Data::Bytes(b) => sha256_reader(&b[..]),
                Data::Path { path: p, .. } => fs::File::open(p).and_then(sha256_reader),
            }
            .map_err(|e| super::sources::SourceError::Io {
                origin: origin.clone(),
                path: rel.into(),
                source: e,
            })?;
            // Hard-link members other than the last carry no data in cpio; they still hash
            // the same content because the kernel links them to the data-carrying member.
            files.insert(rel.to_string(), (h, n));
        }
    }
    let count = files.len();
    a.insert(
        &origin,
        MANIFEST_PATH,
        Node::file(Data::Bytes(render_manifest(&files).into_bytes()), 0o444),
    )?;
    Ok(count)
}

/// Verifies an unpacked payload: `root` holds `payload/` and `payload.manifest`.
/// Every listed file must exist with the listed hash, and no regular file may be unlisted.
pub fn verify(root: &Path) -> Result<usize, PayloadError> {
    let mpath = root.join(MANIFEST_PATH);
    let text = fs::read_to_string(&mpath)
        .map_err(|_| PayloadError::NoManifest(mpath.display().to_string()))?;
    let listed = parse_manifest(&text)?;
    let dir = root.join(PAYLOAD_DIR);
    for (rel, (want, _)) in &listed {
        let p = dir.join(rel);
        let f = fs::File::open(&p).map_err(|_| PayloadError::Missing(rel.clone()))?;
        let (got, _) = sha256_reader(f).map_err(|e| PayloadError::Io {
            path: rel.clone(),
            reason: e.to_string(),
        })?;
        if &got != want {
            return Err(PayloadError::Mismatch {
                path: rel.clone(),
                expected: want.clone(),
                actual: got,
            });
        }
    }
    let mut stack: Vec<PathBuf> = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(|e| PayloadError::Io {
            path: d.display().to_string(),
            reason: e.to_string(),
        })?;
        for e in rd.flatten() {
            let ft = match e.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(&dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                if !listed.contains_key(&rel) {
                    return Err(PayloadError::Unlisted(rel));
                }
            }
        }
    }
    Ok(listed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(a: &Archive, root: &Path) {
        for (p, n) in a.iter() {
            let t = root.join(p);
            match &n.kind {
                Kind::Dir => fs::create_dir_all(&t).unwrap(),
                Kind::File(Data::Bytes(b)) => fs::write(&t, b).unwrap(),
                Kind::File(Data::Path { path, .. }) => {
                    fs::copy(path, &t).unwrap();
                }
                _ => {}
            }
        }
    }

    #[test]
    fn manifest_round_trip_and_tamper_detection() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("anemos.toml"), b"# cfg\n").unwrap();
        fs::create_dir(src.path().join("secrets")).unwrap();
        fs::write(src.path().join("secrets/key"), b"k").unwrap();
        let mut a = Archive::new();
        assert_eq!(add_payload(&mut a, src.path()).unwrap(), 2);
        let root = tempfile::tempdir().unwrap();
        unpack(&a, root.path());
        assert_eq!(verify(root.path()), Ok(2));

        fs::write(root.path().join("payload/anemos.toml"), b"# evil\n").unwrap();
        assert!(
            matches!(verify(root.path()), Err(PayloadError::Mismatch { ref path, .. }) if path == "anemos.toml")
        );
        fs::write(root.path().join("payload/anemos.toml"), b"# cfg\n").unwrap();
        fs::write(root.path().join("payload/extra"), b"x").unwrap();
        assert_eq!(
            verify(root.path()),
            Err(PayloadError::Unlisted("extra".into()))
        );
        fs::remove_file(root.path().join("payload/extra")).unwrap();
        fs::remove_file(root.path().join("payload/secrets/key")).unwrap();
        assert_eq!(
            verify(root.path()),
            Err(PayloadError::Missing("secrets/key".into()))
        );
        fs::remove_file(root.path().join(MANIFEST_PATH)).unwrap();
        assert!(matches!(
            verify(root.path()),
            Err(PayloadError::NoManifest(_))
        ));
    }

    #[test]
    fn bad_manifest_lines_are_named() {
        let e = parse_manifest("# anemos payload manifest v1\nzz  1  a\n").unwrap_err();
        assert_eq!(
            e,
            PayloadError::BadManifest {
                line: 2,
                reason: "bad sha256 \"zz\"".into()
            }
        );
        assert!(parse_manifest("nope\n").is_err());
    }
}
