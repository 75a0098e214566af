//! SSH keys for the deploy image's ssh server (pure: no files, no processes).
//!
//! - Operator public keys, as `authorized_keys` lines, checked one by one so a bad line is
//!   named before anything is sent to the server.
//! - The per-deploy host key: made by `ssh-keygen` on the workstation (OpenSSH's private key
//!   format), converted here to the format dropbear reads (dropbear 2022 refuses OpenSSH keys:
//!   "String too long"). The conversion is written here rather than taken from a crate because
//!   no crate writes dropbear's format and `dropbearconvert` is not on every workstation; it
//!   only moves bytes between two documented containers (no cryptography).
//! - The SHA256 fingerprint in OpenSSH's notation, for logs and messages.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Key types the deploy image's dropbear accepts for logins.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One public key: its type, the key blob (decoded) and the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    pub blob: Vec<u8>,
    pub comment: String,
}

impl PublicKey {
    /// The `authorized_keys` / `known_hosts` form: `TYPE BASE64 [COMMENT]`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.kind, STANDARD.encode(&self.blob));
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s
    }

    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }
}

/// Parses one public key line (`TYPE BASE64 [COMMENT]`). Lines with `authorized_keys` options
/// (`command=...`, `from=...`) are refused: the deploy image grants a plain root shell, so a
/// restriction the operator wrote would silently not apply.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    let mut it = line.split_whitespace();
    let kind = it.next().ok_or("an empty line is not a key")?;
    if !KEY_TYPES.contains(&kind) {
        return Err(if kind.contains('=') || kind.contains(',') {
            format!(
                "key options ({kind:.40}) are not supported: give plain `TYPE KEY [COMMENT]` lines"
            )
        } else {
            format!(
                "{kind:.40}: not a public key type (expected one of {})",
                KEY_TYPES.join(", ")
            )
        });
    }
    let b64 = it.next().ok_or(format!("{kind} without the key"))?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|e| format!("{kind} key: not base64 ({e})"))?;
    // The blob starts with its own type name: catches a key pasted under the wrong type.
    let mut r = Reader(&blob);
    let inner = r.string().map_err(|_| format!("{kind} key: truncated"))?;
    if inner != kind.as_bytes() {
        return Err(format!(
            "the key says {kind} but its data is a {} key",
            String::from_utf8_lossy(inner)
        ));
    }
    Ok(PublicKey {
        kind: kind.to_string(),
        blob,
        comment: it.collect::<Vec<_>>().join(" "),
    })
}

/// Parses an `authorized_keys`-style text (keys, blank lines, `#` comments). Errors name
/// `origin:line`.
pub fn parse_authorized(text: &str, origin: &str) -> Result<Vec<PublicKey>, String> {
    let mut v = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        v.push(parse_public_key(l).map_err(|e| format!("{origin}:{}: {e}", i + 1))?);
    }
    Ok(v)
}

/// A cursor over SSH wire data (RFC 4251 `string` / `uint32`).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        if self.0.len() < 4 {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(4);
        self.0 = b;
        Ok(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Converts an unencrypted ed25519 private key in OpenSSH's format (`ssh-keygen -t ed25519
/// -N ''`) to dropbear's: `string "ssh-ed25519"`, `string (32-byte seed || 32-byte public)`.
/// Returns the dropbear key and the public key.
pub fn openssh_ed25519_to_dropbear(pem: &str) -> Result<(Vec<u8>, PublicKey), String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN OPENSSH PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END OPENSSH PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return Err("not an OpenSSH private key (no BEGIN OPENSSH PRIVATE KEY block)".into());
    }
    let raw = STANDARD
        .decode(body)
        .map_err(|e| format!("OpenSSH private key: not base64 ({e})"))?;
    let magic = b"openssh-key-v1\0";
    let rest = raw
        .strip_prefix(&magic[..])
        .ok_or("OpenSSH private key: bad magic")?;
    let mut r = Reader(rest);
    let bad = |e: String| format!("OpenSSH private key: {e}");
    let cipher = r.string().map_err(bad)?;
    let _kdf = r.string().map_err(bad)?;
    let _kdfopts = r.string().map_err(bad)?;
    if cipher != b"none" {
        return Err("the host key is encrypted (made without -N '')".into());
    }
    if r.u32().map_err(bad)? != 1 {
        return Err("OpenSSH private key: expected exactly one key".into());
    }
    let pub_blob = r.string().map_err(bad)?.to_vec();
    let mut p = Reader(r.string().map_err(bad)?);
    let (c1, c2) = (p.u32().map_err(bad)?, p.u32().map_err(bad)?);
    if c1 != c2 {
        return Err("OpenSSH private key: check words differ (corrupt or encrypted)".into());
    }
    let kind = p.string().map_err(bad)?;
    if kind != b"ssh-ed25519" {
        return Err(format!(
            "host key type {}: only ssh-ed25519 is supported",
            String::from_utf8_lossy(kind)
        ));
    }
    let public = p.string().map_err(bad)?;
    let secret = p.string().map_err(bad)?;
    let comment = String::from_utf8_lossy(p.string().map_err(bad)?).into_owned();
    if public.len() != 32 || secret.len() != 64 || secret[32..] != *public {
        return Err("OpenSSH private key: malformed ed25519 key".into());
    }
    let mut out = Vec::new();
    put_string(&mut out, b"ssh-ed25519");
    put_string(&mut out, secret);
    Ok((
        out,
        PublicKey {
            kind: "ssh-ed25519".into(),
            blob: pub_blob,
            comment,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `ssh-keygen -q -t ed25519 -N '' -C test -f k` (a throwaway test key).
    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDnfHDO3rShu+caZfs3kCkAGVFEoWjn52mfE9riNJFknAAAAIhavv4uWr7+
LgAAAAtzc2gtZWQyNTUxOQAAACDnfHDO3rShu+caZfs3kCkAGVFEoWjn52mfE9riNJFknA
AAAEB9EwCDL9a09NldVvbljEeThG3hgWMy9mGwKyKmA/Cwued8cM7etKG75xpl+zeQKQAZ
UUShaOfnaZ8T2uI0kWScAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----
";
    const PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd8cM7etKG75xpl+zeQKQAZUUShaOfnaZ8T2uI0kWSc test";

    #[test]
    fn converts_an_openssh_ed25519_key_for_dropbear() {
        let (db, public) = openssh_ed25519_to_dropbear(PEM).unwrap();
        assert_eq!(public.line(), PUB);
        // string "ssh-ed25519" (4 + 11) then string of 64 bytes (4 + 64).
        assert_eq!(db.len(), 4 + 11 + 4 + 64);
        assert_eq!(&db[4..15], b"ssh-ed25519");
        assert_eq!(&db[15..19], &64u32.to_be_bytes());
        // The last 32 bytes are the public key, the same as in the public blob.
        assert_eq!(&db[51..], &public.blob[public.blob.len() - 32..]);
        assert_eq!(
            public.fingerprint(),
            parse_public_key(PUB).unwrap().fingerprint()
        );
    }

    #[test]
    fn refuses_what_it_cannot_convert() {
        assert!(openssh_ed25519_to_dropbear("hello")
            .unwrap_err()
            .contains("not an OpenSSH private key"));
        let broken = PEM.replace("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "AAAA");
        assert!(openssh_ed25519_to_dropbear(&broken).is_err());
    }

    #[test]
    fn authorized_keys_errors_name_file_and_line() {
        let text = format!("# operators\n\n{PUB}\nssh-dss AAAA x\n");
        let e = parse_authorized(&text, "ops.pub").unwrap_err();
        assert!(
            e.starts_with("ops.pub:4: ssh-dss: not a public key type"),
            "{e}"
        );
        let e = parse_authorized(&format!("command=\"ls\" {PUB}"), "k").unwrap_err();
        assert!(e.contains("key options"), "{e}");
        let e = parse_authorized("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG+S", "k").unwrap_err();
        assert!(e.contains("k:1:"), "{e}");
        let keys = parse_authorized(&format!("{PUB}\n{PUB}\n"), "k").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].comment, "test");
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // `ssh-keygen -lf k.pub` printed this for the test key.
        let fp = parse_public_key(PUB).unwrap().fingerprint();
        assert_eq!(fp, "SHA256:YwU5gXegxzdbaS81ubdRRqskxMLcCCF6TbRsEhwe/YY");
    }
}
