//! The checks of a rootfs archive before anything is unpacked from it: the deploy image's
//! `check` stage runs them over the whole archive before the first disk write, a streamed
//! download on each entry just before it is unpacked, and `anemos pack-payload` on the
//! workstation (the same rules, so a hostile or broken archive is refused there first).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Most entries a rootfs archive may have. A full Debian desktop has about 400,000; the bound
/// stops an archive of millions of empty entries from running the check (and the inode
/// tables) for hours.
pub const MAX_TAR_ENTRIES: u64 = 2_000_000;

/// The checks of a rootfs archive's entries, one header at a time, with what they must
/// remember between entries. The `check` stage runs it over the whole archive before the
/// first write; a streamed download runs it on each entry just before unpacking it. Pure: it
/// sees headers, never the disk.
///
/// Refused: a path or hard-link target that is absolute or has ".."; an entry written through
/// a symlink the archive made earlier (`etc -> /` then `etc/passwd`: GNU tar defers such
/// links for the same reason, so real archives never need it); a hard link to anything but an
/// earlier entry; a character or block device outside `dev/`; more than [`MAX_TAR_ENTRIES`]
/// entries; file sizes adding up to more than the planned partitions hold.
#[derive(Debug, Default)]
pub struct TarAudit {
    /// The archive's symlinks so far (path → target), normalized paths.
    symlinks: std::collections::HashMap<PathBuf, PathBuf>,
    /// Hashes of the paths of every entry so far that is not a directory (hard-link targets).
    /// A hash, not the path: 8 bytes an entry; a collision can only let a dangling hard link
    /// through to the install, which then fails on it.
    seen: std::collections::HashSet<u64>,
    pub entries: u64,
    pub bytes: u64,
    /// Bytes the target can hold (the planned partitions), when known.
    capacity: Option<u64>,
}

/// `path` without "." components or a trailing "/", for comparing entry names.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

fn path_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

impl TarAudit {
    /// An audit refusing archives whose files add up to more than `capacity` bytes.
    pub fn new(capacity: Option<u64>) -> TarAudit {
        TarAudit {
            capacity,
            ..Default::default()
        }
    }

    /// Checks one entry: its type, path, hard- or symlink target and size. The error says
    /// why the entry is refused; the caller adds the archive's name and the outcome.
    pub fn entry(
        &mut self,
        kind: tar::EntryType,
        path: &Path,
        link: Option<&Path>,
        size: u64,
        dev: Option<(u32, u32)>,
    ) -> std::result::Result<(), String> {
        use tar::EntryType as T;
        if !crate::pack::sources::tar_path_ok(path) {
            return Err(format!(
                "entry {path:?} escapes the target root (absolute path or \"..\")"
            ));
        }
        self.entries += 1;
        if self.entries > MAX_TAR_ENTRIES {
            return Err(format!(
                "more than {MAX_TAR_ENTRIES} entries (the most a rootfs archive may have)"
            ));
        }
        let norm = normalize(path);
        if let Some((dir, to)) = self.through_symlink(&norm) {
            return Err(format!(
                "entry {path:?} is written through the symlink {dir:?} -> {to:?} the archive made before it"
            ));
        }
        match kind {
            T::Link => {
                let Some(l) = link else {
                    return Err(format!("hard link {path:?} has no target"));
                };
                if !crate::pack::sources::tar_path_ok(l) {
                    return Err(format!(
                        "hard link {path:?} -> {l:?} escapes the target root"
                    ));
                }
                let ln = normalize(l);
                if !self.seen.contains(&path_hash(&ln)) || self.through_symlink(&ln).is_some() {
                    return Err(format!(
                        "hard link {path:?} -> {l:?}: the target is not an earlier entry of the archive"
                    ));
                }
                // A hard link to a symlink is that symlink under a second name.
                if let Some(to) = self.symlinks.get(&ln).cloned() {
                    self.symlinks.insert(norm.clone(), to);
                }
            }
            T::Symlink => {
                let to = link.map(Path::to_path_buf).unwrap_or_default();
                self.symlinks.insert(norm.clone(), to);
            }
            T::Char | T::Block if !norm.starts_with("dev") => {
                let (major, minor) = dev.unwrap_or_default();
                let what = if kind == T::Char {
                    "character"
                } else {
                    "block"
                };
                return Err(format!(
                    "{what} device {path:?} ({major}:{minor}) outside dev/ (device nodes are accepted only under dev/)"
                ));
            }
            _ => {}
        }
        if kind != T::Directory {
            self.seen.insert(path_hash(&norm));
        }
        self.bytes = self.bytes.saturating_add(size);
        if let Some(cap) = self.capacity.filter(|&c| self.bytes > c) {
            return Err(format!(
                "its files add up to more than the {} MiB the planned partitions hold (at entry {path:?}, {} MiB)",
                cap >> 20,
                size >> 20
            ));
        }
        Ok(())
    }

    /// Whether the archive has a non-directory entry at `path` (checked so far).
    pub fn has(&self, path: &Path) -> bool {
        self.seen.contains(&path_hash(&normalize(path)))
    }

    /// The archive's symlink that is a proper ancestor of `norm`, with its target.
    fn through_symlink(&self, norm: &Path) -> Option<(PathBuf, PathBuf)> {
        if self.symlinks.is_empty() {
            return None;
        }
        norm.ancestors()
            .skip(1)
            .find_map(|a| self.symlinks.get(a).map(|t| (a.to_path_buf(), t.clone())))
    }

    /// [`TarAudit::entry`] on a tar crate entry.
    pub fn check<R: Read>(
        &mut self,
        e: &tar::Entry<R>,
        p: &Path,
    ) -> std::result::Result<(), String> {
        let h = e.header();
        let link = e.link_name().ok().flatten();
        let dev = match (h.device_major(), h.device_minor()) {
            (Ok(Some(a)), Ok(Some(b))) => Some((a, b)),
            _ => None,
        };
        self.entry(h.entry_type(), p, link.as_deref(), e.size(), dev)
    }
}

/// Checks every entry of a tar archive without writing anything ([`TarAudit`]) and reads the
/// compressed stream to its very end, so a damaged trailer or checksum is found too. Returns
/// the audit: entry count, uncompressed bytes, which paths it has.
pub fn check_tar(path: &Path, capacity: Option<u64>) -> Result<TarAudit> {
    check_tar_seeing(path, capacity, &mut |_| {})
}

/// [`check_tar`], showing every entry's path (as stored) to `seen`, e.g. to look for the
/// tools a later stage will run in the target.
pub fn check_tar_seeing(
    path: &Path,
    capacity: Option<u64>,
    seen: &mut dyn FnMut(&Path),
) -> Result<TarAudit> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ar = tar::Archive::new(crate::codec::auto_decoder(f)?);
    let mut audit = TarAudit::new(capacity);
    for e in ar
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let e = e.with_context(|| format!("reading {}", path.display()))?;
        let p = e
            .path()
            .with_context(|| format!("{}: bad entry name", path.display()))?
            .into_owned();
        if let Err(why) = audit.check(&e, &p) {
            bail!("{}: {why}", path.display());
        }
        seen(&p);
    }
    // The tar reader stops at the end-of-archive blocks; what follows in the compressed stream
    // (gzip's CRC, xz's check, zstd's checksum) is read here.
    io::copy(&mut ar.into_inner(), &mut io::sink())
        .with_context(|| format!("reading {} to its end", path.display()))?;
    Ok(audit)
}
