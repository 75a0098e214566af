//! The access bundle: the per-deploy ssh access `anemos deploy` makes on the workstation and
//! `anemos kexec --access FILE` appends to the deploy image as one more (uncompressed) cpio
//! segment. It holds the operators' public keys and the per-deploy host key, nothing else: the
//! private host key never goes on the kernel command line and never into the payload (whose
//! sha256 would then change at every deploy).

use anyhow::{bail, Context, Result};

use super::keys::PublicKey;

/// Where the bundle's files land in the deploy image.
pub const DIR: &str = "/etc/anemos/access";
pub const AUTHORIZED: &str = "/etc/anemos/access/authorized_keys";
/// The host key in dropbear's format.
pub const HOST_KEY: &str = "/etc/anemos/access/host_key";
/// Its public half, `TYPE BASE64 COMMENT`, for the log.
pub const HOST_PUB: &str = "/etc/anemos/access/host_key.pub";

/// The cpio segment carrying the bundle.
pub fn segment(authorized: &[PublicKey], host_key: &[u8], host_pub: &PublicKey) -> Result<Vec<u8>> {
    use crate::pack::archive::{Archive, Data, Node};
    if authorized.is_empty() {
        bail!("no operator key: the deploy image's ssh server would let nobody in");
    }
    let mut a = Archive::new();
    let o = "access bundle";
    a.mkdir_p(o, DIR.trim_start_matches('/'))?;
    let keys: String = authorized.iter().map(|k| k.line() + "\n").collect();
    for (path, data, perm) in [
        (AUTHORIZED, keys.into_bytes(), 0o600),
        (HOST_KEY, host_key.to_vec(), 0o600),
        (HOST_PUB, (host_pub.line() + "\n").into_bytes(), 0o644),
    ] {
        a.insert(
            o,
            path.trim_start_matches('/'),
            Node::file(Data::Bytes(data), perm),
        )?;
    }
    let (_, out) =
        crate::pack::write_segment(&a, crate::codec::Compression::None, None, 0, Vec::new())?;
    Ok(out)
}

/// Checks a file given to `anemos kexec --access`: an uncompressed newc cpio whose entries
/// are the bundle's directories and files only (so it cannot replace anything else in the
/// deploy image), with at least one valid operator key.
pub fn check_segment(bytes: &[u8]) -> Result<()> {
    let allowed = |n: &str| {
        matches!(n, "etc" | "etc/anemos")
            || n == DIR.trim_start_matches('/')
            || [AUTHORIZED, HOST_KEY, HOST_PUB]
                .iter()
                .any(|p| n == p.trim_start_matches('/'))
    };
    let mut cur = std::io::Cursor::new(bytes);
    let mut keys = None;
    let mut have_host = false;
    loop {
        let r = cpio::newc::Reader::new(&mut cur).context("not an uncompressed newc cpio")?;
        let e = r.entry();
        if e.is_trailer() {
            break;
        }
        let name = e.name().trim_start_matches("./").to_string();
        if !allowed(&name) {
            bail!("{name:?} is not part of an access bundle (only {DIR}/...)");
        }
        let mut data = Vec::new();
        let mut r = r;
        std::io::Read::read_to_end(&mut r, &mut data)?;
        r.finish()?;
        if name == AUTHORIZED.trim_start_matches('/') {
            let text = String::from_utf8_lossy(&data);
            keys = Some(
                super::keys::parse_authorized(&text, "authorized_keys")
                    .map_err(|e| anyhow::anyhow!(e))?
                    .len(),
            );
        }
        have_host |= name == HOST_KEY.trim_start_matches('/') && !data.is_empty();
    }
    match keys {
        None | Some(0) => bail!("no operator key in it"),
        Some(_) if !have_host => bail!("no host key in it"),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::keys::parse_public_key;

    const PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd8cM7etKG75xpl+zeQKQAZUUShaOfnaZ8T2uI0kWSc test";

    #[test]
    fn a_bundle_passes_its_own_check_and_nothing_else_does() {
        let k = parse_public_key(PUB).unwrap();
        let seg = segment(std::slice::from_ref(&k), b"key", &k).unwrap();
        check_segment(&seg).unwrap();
        assert!(segment(&[], b"key", &k)
            .unwrap_err()
            .to_string()
            .contains("no operator key"));
        // A segment that also carries /init is refused, naming the entry.
        use crate::pack::archive::{Archive, Data, Node};
        let mut a = Archive::new();
        a.insert("t", "init", Node::file(Data::Bytes(b"x".to_vec()), 0o755))
            .unwrap();
        let (_, bad) =
            crate::pack::write_segment(&a, crate::codec::Compression::None, None, 0, Vec::new())
                .unwrap();
        let e = check_segment(&bad).unwrap_err().to_string();
        assert!(
            e.contains("\"init\" is not part of an access bundle"),
            "{e}"
        );
        assert!(check_segment(b"\x28\xb5\x2f\xfd garbage").is_err());
    }
}
