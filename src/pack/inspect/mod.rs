//! Reading initramfs images: the engine behind `anemos inspect IMAGE [--extract DIR] [--cat PATH]`.
//!
//! An image is read by the kernel's rules (`init/initramfs.c`): it is a sequence of
//! *segments*, and zero bytes between segments are padding. Each segment is either
//!
//! * an uncompressed newc cpio archive (magic `070701` or `070702`) that ends with a
//!   `TRAILER!!!` entry, or
//! * a compressed stream (gzip, zstd or xz) whose decompressed content is one or more
//!   concatenated cpio archives, separated and followed by optional zero padding.
//!
//! Debian's initrd, for instance, is an uncompressed early-microcode archive followed by a
//! zstd-compressed main archive. bzip2, lzma, lz4 and lzo segments are recognised and
//! reported as unsupported instead of being misread.
//!
//! Reading streams: file data is skipped as it is decompressed, never collected, so an image
//! of hundreds of megabytes is read in constant memory. Only symlink targets (at most
//! [`MAX_LINK_TARGET`] bytes) and the file asked for by [`cat`] are held in memory.
//!
//! The compressed length of a segment is exact. The decoders consume their input through a
//! `BufRead` and stop at the end of their gzip member, zstd frame or xz stream, so the image
//! offset right after it is known without guessing. Each member, frame or stream is its own
//! segment, even when another of the same kind follows with no padding (as when a payload is
//! appended to a base image of the same compression). Anything after a compressed stream (zero
//! padding, another segment, or junk) is handled by the segment loop. The kernel does the same:
//! it resumes after the bytes the decompressor consumed.

mod cat;
mod extract;
mod listing;
mod walk;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::codec::Compression;
use cat::{latest_entries, resolve_in_image, CatScan, HardlinkFold};
use extract::Extractor;
#[cfg(test)]
use listing::mode_string;
use listing::{entry_line, kind_name, segment_header};
use walk::{link_key, walk, ListOnly};

/// Longest symlink target read into memory (the kernel's `PATH_MAX`).
pub const MAX_LINK_TARGET: u64 = 4096;

/// Longest accepted newc header including its name (dracut pads names to 4 KiB blocks).
const MAX_HEADER_LEN: u64 = 110 + 64 * 1024;

/// Symlinks followed by [`cat`] before giving up.
const MAX_CAT_SYMLINKS: usize = 8;

/// Symlinks followed while resolving one extracted entry's parent directories.
const MAX_EXTRACT_SYMLINKS: usize = 40;

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

/// Metadata of one cpio entry (the `TRAILER!!!` entries are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Name as stored, with any leading `./` removed; the root entry is `.`.
    pub path: String,
    /// Full `st_mode`, file type bits included.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Link count as stored; regular files with the same `dev`/`ino` and `nlink > 1` in one
    /// archive are hard links.
    pub nlink: u32,
    /// Inode number as stored (often just an index).
    pub ino: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Size of the entry's data in bytes.
    pub size: u64,
    /// Device (major, minor) a block or character device node stands for.
    pub rdev: (u32, u32),
    /// Device (major, minor) the file lived on; part of the hard link key.
    pub dev: (u32, u32),
    /// Target of a symlink (its data), `None` for other entries.
    pub link_target: Option<String>,
}

impl EntryInfo {
    /// The file type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
}

/// One segment of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset of the segment in the image file.
    pub offset: u64,
    /// Bytes the segment occupies in the image, excluding zero padding after it. For a
    /// compressed segment this ends where the decoder stopped consuming (see the module docs).
    pub compressed_len: u64,
    /// How the segment is stored.
    pub compression: Compression,
    /// Bytes of cpio data, zero padding between archives included.
    pub uncompressed_size: u64,
    /// Entries in archive order, trailers excluded.
    pub entries: Vec<EntryInfo>,
}

/// What [`extract`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Regular files written (hard links excluded).
    pub files: u64,
    /// Directory entries.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Regular files created as hard links to an earlier entry.
    pub hardlinks: u64,
    /// Device nodes, fifos and sockets that were not created.
    pub skipped_devices: u64,
    /// One line per skipped entry.
    pub warnings: Vec<String>,
}

impl fmt::Display for ExtractSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files, {} directories, {} symlinks, {} hard links, {} device nodes skipped",
            self.files, self.dirs, self.symlinks, self.hardlinks, self.skipped_devices
        )
    }
}

/// Why an image could not be read, extracted or searched. Each message is one line that
/// names the image and, where there is one, the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The image could not be opened.
    #[error("{}: cannot open image", image.display())]
    Open {
        /// The image.
        image: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading the image file failed.
    #[error("{}: read error at offset 0x{offset:x}", image.display())]
    Read {
        /// The image.
        image: PathBuf,
        /// Where in the file.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// The image holds nothing but zero bytes.
    #[error("{}: no initramfs segments found (the file is empty or all zero bytes)", image.display())]
    Empty {
        /// The image.
        image: PathBuf,
    },
    /// A segment starts with bytes that are no known format.
    #[error(
        "{}: unknown data at offset 0x{offset:x} (bytes {bytes}): not cpio, gzip, zstd or xz",
        image.display()
    )]
    UnknownData {
        /// The image.
        image: PathBuf,
        /// Where the segment starts.
        offset: u64,
        /// Its first bytes in hex.
        bytes: String,
    },
    /// A segment uses a compression that is recognised but not supported.
    #[error(
        "{}: segment at offset 0x{offset:x} uses {method} compression, which anemos cannot read",
        image.display()
    )]
    UnsupportedCompression {
        /// The image.
        image: PathBuf,
        /// Where the segment starts.
        offset: u64,
        /// The compression's name.
        method: &'static str,
    },
    /// A segment is a cpio archive in the old portable (odc) format.
    #[error(
        "{}: segment at offset 0x{offset:x} is an old-format (odc, 070707) cpio archive; \
         initramfs images use newc",
        image.display()
    )]
    OldCpio {
        /// The image.
        image: PathBuf,
        /// Where the segment starts.
        offset: u64,
    },
    /// A segment is truncated or malformed.
    #[error("{}: {compression} segment at offset 0x{segment:x}: {detail} (at {position})", image.display())]
    Corrupt {
        /// The image.
        image: PathBuf,
        /// Where the segment starts.
        segment: u64,
        /// How the segment is stored.
        compression: Compression,
        /// Where the problem is: a file offset or an offset in the decompressed stream.
        position: String,
        /// What is wrong.
        detail: String,
    },
    /// An entry would land outside the extraction directory.
    #[error(
        "{}: refusing to extract entry {entry:?} of segment at offset 0x{segment:x}: {reason}",
        image.display()
    )]
    UnsafeEntry {
        /// The image.
        image: PathBuf,
        /// The entry's name.
        entry: String,
        /// Where its segment starts.
        segment: u64,
        /// Why it is refused.
        reason: String,
    },
    /// Writing an extracted entry failed.
    #[error("{}: cannot extract entry {entry:?} to {}", image.display(), target.display())]
    Extract {
        /// The image.
        image: PathBuf,
        /// The entry's name.
        entry: String,
        /// The path being written.
        target: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// [`cat`] found no entry with that path.
    #[error("{}: no such file in image: {path}", image.display())]
    NotFound {
        /// The image.
        image: PathBuf,
        /// The path asked for.
        path: String,
    },
    /// [`cat`] found the path, but it is not a regular file.
    #[error("{}: {path} is a {kind}, not a regular file", image.display())]
    NotRegular {
        /// The image.
        image: PathBuf,
        /// The path asked for.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// [`cat`] met more than eight symlinks resolving a path.
    #[error("{}: {path}: too many levels of symbolic links", image.display())]
    SymlinkLoop {
        /// The image.
        image: PathBuf,
        /// The path asked for.
        path: String,
    },
}

/// Reads every segment of `image` and lists its entries, streaming through compressed data.
pub fn read_segments(image: &Path) -> Result<Vec<Segment>, InspectError> {
    walk(image, &mut ListOnly)
}

/// Renders segments as a header line per segment followed by one `ls -l` style line per
/// entry: mode, uid, gid, size (or `major,minor` for device nodes), path (`-> target` for
/// symlinks).
pub fn format_listing(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (index, segment) in segments.iter().enumerate() {
        out.push_str(&segment_header(index, segment));
        out.push('\n');
        for entry in &segment.entries {
            out.push_str(&entry_line(entry));
            out.push('\n');
        }
    }
    out
}

/// Extracts all segments in order into `dest`, created if missing. Later entries replace
/// earlier ones on the same path, as the kernel does.
///
/// Refused, with an error naming the entry: names that are still absolute after stripping
/// one leading `./` or `/`, names with a `..` component, and names whose parent directories
/// go through an extracted symlink whose relative target climbs out of `dest`. An absolute
/// symlink target is resolved inside `dest`, as it would be inside the booted initramfs. The
/// operating system never follows a symlink during extraction, so nothing is written outside
/// `dest`. Entries before a refused one stay extracted.
///
/// Directories, regular files, symlinks and hard links are created. Device nodes, fifos and
/// sockets are skipped and counted. Permission bits (without setuid/setgid) and mtimes are
/// applied at the end, so read-only directories do not block their own content. Ownership is
/// not changed. Missing parent directories are created with the default mode.
pub fn extract(image: &Path, dest: &Path) -> Result<ExtractSummary, InspectError> {
    fs::create_dir_all(dest).map_err(|source| InspectError::Extract {
        image: image.to_path_buf(),
        entry: ".".to_string(),
        target: dest.to_path_buf(),
        source,
    })?;
    let mut extractor = Extractor::new(image, dest);
    walk(image, &mut extractor)?;
    extractor.apply_deferred()?;
    Ok(extractor.summary)
}

/// Returns the contents of the regular file `path` in `image`. `path` may start with `/` or
/// `./`. If several segments hold the path, the last one wins, as in the kernel. Symlinks in
/// the image are followed up to eight levels, absolute targets from the image's root. Hard
/// links get the content the kernel would give them.
pub fn cat(image: &Path, path: &str) -> Result<Vec<u8>, InspectError> {
    let wanted = canonical(path);
    let mut scan = CatScan::new(&wanted);
    let segments = walk(image, &mut scan)?;
    let latest = latest_entries(&segments);
    let resolved = resolve_in_image(&latest, &wanted).ok_or_else(|| InspectError::SymlinkLoop {
        image: image.to_path_buf(),
        path: path.to_string(),
    })?;
    let Some(entry) = latest.get(resolved.as_str()) else {
        return Err(InspectError::NotFound {
            image: image.to_path_buf(),
            path: path.to_string(),
        });
    };
    if !entry.is_file() {
        return Err(InspectError::NotRegular {
            image: image.to_path_buf(),
            path: path.to_string(),
            kind: kind_name(entry.mode),
        });
    }
    let hit = if resolved == wanted {
        scan.hit
    } else {
        let mut rescan = CatScan::new(&resolved);
        walk(image, &mut rescan)?;
        rescan.hit
    };
    let Some(hit) = hit else {
        return Err(InspectError::NotFound {
            image: image.to_path_buf(),
            path: path.to_string(),
        });
    };
    if hit.info.nlink < 2 {
        return Ok(hit.data);
    }
    let mut fold = HardlinkFold::new(hit.archive, link_key(&hit.info));
    walk(image, &mut fold)?;
    Ok(fold.data)
}

// ---------------------------------------------------------------------------------------
// Names

/// Display form of a stored name: leading `./` removed, the root shown as `.`.
fn display_name(name: &str) -> String {
    let mut rest = name;
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    if rest.is_empty() || rest == "." {
        ".".to_string()
    } else {
        rest.to_string()
    }
}

/// Lookup form of a path: no leading `/` or `./`, no empty or `.` components; root is `.`.
fn canonical(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// The components under the extraction root for an entry name, or why it is refused.
fn safe_components(path: &str) -> Result<Vec<String>, String> {
    let rest = path
        .strip_prefix("./")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path);
    if rest.starts_with('/') {
        return Err("the path is absolute".to_string());
    }
    let parts: Vec<String> = rest
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .map(str::to_string)
        .collect();
    if parts.iter().any(|part| part == "..") {
        return Err("the path contains \"..\"".to_string());
    }
    Ok(parts)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
