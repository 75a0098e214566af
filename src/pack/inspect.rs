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

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Longest symlink target read into memory (the kernel's `PATH_MAX`).
pub const MAX_LINK_TARGET: u64 = 4096;

/// Longest accepted newc header including its name (dracut pads names to 4 KiB blocks).
const MAX_HEADER_LEN: u64 = 110 + 64 * 1024;

/// Symlinks followed by [`cat`] before giving up.
const MAX_CAT_SYMLINKS: usize = 8;

/// Symlinks followed while resolving one extracted entry's parent directories.
const MAX_EXTRACT_SYMLINKS: usize = 40;

/// Read buffer of the image file.
const FILE_BUFFER: usize = 256 * 1024;

/// Read buffer of a decompressed stream.
const STREAM_BUFFER: usize = 128 * 1024;

/// Memory limit handed to the xz decoder (the largest xz preset needs 64 MiB).
const XZ_MEMLIMIT: u64 = 1 << 30;

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

/// How a segment is stored in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain newc cpio archive.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
    /// xz, possibly several streams.
    Xz,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        })
    }
}

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
// Listing format

fn segment_header(index: usize, segment: &Segment) -> String {
    format!(
        "segment {index}: offset 0x{:x}, {}, {} entries, {} bytes uncompressed ({} bytes in image)",
        segment.offset,
        segment.compression,
        segment.entries.len(),
        segment.uncompressed_size,
        segment.compressed_len
    )
}

fn entry_line(entry: &EntryInfo) -> String {
    let size = match entry.file_type() {
        S_IFCHR | S_IFBLK => format!("{},{:>4}", entry.rdev.0, entry.rdev.1),
        _ => entry.size.to_string(),
    };
    let mut line = format!(
        "{} {:>4} {:>4} {:>9} {}",
        mode_string(entry.mode),
        entry.uid,
        entry.gid,
        size,
        entry.path
    );
    if let Some(target) = &entry.link_target {
        line.push_str(" -> ");
        line.push_str(target);
    }
    line
}

/// `ls -l` style mode string, e.g. `drwxr-xr-x`.
fn mode_string(mode: u32) -> String {
    let kind = match mode & S_IFMT {
        S_IFREG => '-',
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFCHR => 'c',
        S_IFBLK => 'b',
        S_IFIFO => 'p',
        S_IFSOCK => 's',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        s.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn kind_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        S_IFREG => "regular file",
        S_IFDIR => "directory",
        S_IFLNK => "symlink",
        S_IFCHR => "character device",
        S_IFBLK => "block device",
        S_IFIFO => "fifo",
        S_IFSOCK => "socket",
        _ => "file of unknown type",
    }
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

// ---------------------------------------------------------------------------------------
// Byte counting

/// Position and optional read budget shared between a reader and the code driving it.
#[derive(Default)]
struct Meter {
    pos: Cell<u64>,
    budget: Cell<Option<u64>>,
}

impl Meter {
    fn pos(&self) -> u64 {
        self.pos.get()
    }

    fn advance(&self, n: usize) {
        self.pos.set(self.pos.get().saturating_add(n as u64));
    }
}

/// A reader that counts consumed bytes into a [`Meter`] and enforces its budget on `read`.
struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<'m, R> Metered<'m, R> {
    fn new(inner: R, meter: &'m Meter) -> Self {
        Metered { inner, meter }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let budget = self.meter.budget.get();
        let limit = match budget {
            Some(0) if !buf.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "entry header is too long",
                ))
            }
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..limit])?;
        self.meter.advance(n);
        if let Some(left) = budget {
            self.meter.budget.set(Some(left.saturating_sub(n as u64)));
        }
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Metered<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.meter.advance(amt);
    }
}

/// The image file, buffered and counted.
type FileSrc<'m> = Metered<'m, BufReader<File>>;

impl FileSrc<'_> {
    /// Up to `n` bytes at the current position, without consuming them.
    fn peek(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self
                .inner
                .get_ref()
                .read_at(&mut buf[got..], self.meter.pos() + got as u64)
            {
                Ok(0) => break,
                Ok(read) => got += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// Consumes zero bytes up to the next non-zero byte or the end.
fn skip_zeros<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        let all = zeros == buf.len();
        reader.consume(zeros);
        if !all {
            return Ok(());
        }
    }
}

/// An I/O error's message starting in lower case, as ours do ("Invalid magic" -> "invalid
/// magic"); acronyms such as "UTF-8" are kept.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text,
    }
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

// ---------------------------------------------------------------------------------------
// Format detection and decoders

/// What the first bytes of a segment say it is.
#[derive(Debug, PartialEq, Eq)]
enum Detected {
    Cpio,
    Compressed(Compression),
    Unsupported(&'static str),
    OldCpio,
    Unknown,
}

fn detect(head: &[u8]) -> Detected {
    const SIGNATURES: [(&[u8], Detected); 10] = [
        (b"070701", Detected::Cpio),
        (b"070702", Detected::Cpio),
        (b"070707", Detected::OldCpio),
        (&[0x1f, 0x8b], Detected::Compressed(Compression::Gzip)),
        (
            &[0x28, 0xb5, 0x2f, 0xfd],
            Detected::Compressed(Compression::Zstd),
        ),
        (
            &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
            Detected::Compressed(Compression::Xz),
        ),
        (b"BZh", Detected::Unsupported("bzip2")),
        (&[0x5d, 0x00, 0x00], Detected::Unsupported("lzma")),
        (&[0x02, 0x21, 0x4c, 0x18], Detected::Unsupported("lz4")),
        (&[0x89, b'L', b'Z', b'O'], Detected::Unsupported("lzo")),
    ];
    for (magic, detected) in SIGNATURES {
        if head.starts_with(magic) {
            return detected;
        }
    }
    Detected::Unknown
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A decoder for one gzip member, zstd frame or xz stream.
enum Decoder<R: BufRead> {
    Gzip(flate2::bufread::GzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Xz(liblzma::bufread::XzDecoder<R>),
}

impl<R: BufRead> Decoder<R> {
    fn new(compression: Compression, source: R) -> io::Result<Self> {
        match compression {
            Compression::Gzip => Ok(Decoder::Gzip(flate2::bufread::GzDecoder::new(source))),
            Compression::Zstd => Ok(Decoder::Zstd(
                zstd::stream::read::Decoder::with_buffer(source)?.single_frame(),
            )),
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                    .map_err(io::Error::other)?;
                Ok(Decoder::Xz(liblzma::bufread::XzDecoder::new_stream(
                    source, stream,
                )))
            }
            Compression::None => Err(io::Error::other("not a compressed segment")),
        }
    }

    fn into_inner(self) -> R {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Xz(d) => d.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
        }
    }
}

/// Decodes one member/frame/stream (a segment), stopping at its end.
struct Members<'a, 'm> {
    #[allow(dead_code)] // kept for error messages and debugging of the segment being read
    compression: Compression,
    active: Option<Decoder<&'a mut FileSrc<'m>>>,
}

impl Read for Members<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.active.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let Some(finished) = self.active.take() else {
                return Ok(0);
            };
            // One gzip member / zstd frame / xz stream is one segment, as in the kernel's
            // unpack_to_rootfs(), which resumes its segment loop after each decompressor
            // returns. A following member is reported as the next segment.
            let _ = finished.into_inner();
            return Ok(0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The walker

/// Where an entry handed to a [`Visitor`] comes from.
struct EntryAt {
    /// Offset of its segment in the image.
    segment_offset: u64,
    /// Index of its cpio archive, counted over the whole image.
    archive: usize,
}

/// Why a visitor stopped.
enum VisitError {
    /// Reading the entry's data failed; the walker adds the position.
    Read(io::Error),
    /// Anything else, already a complete error.
    Fail(InspectError),
}

/// Receives each entry while the image is walked. `data` yields a regular file's content and
/// nothing for other entries; what the visitor leaves unread is skipped.
trait Visitor {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError>;
}

/// A visitor that only lists.
struct ListOnly;

impl Visitor for ListOnly {
    fn visit(&mut self, _: &EntryAt, _: &EntryInfo, _: &mut dyn Read) -> Result<(), VisitError> {
        Ok(())
    }
}

/// Where a segment is, for error messages.
#[derive(Clone, Copy)]
struct Loc {
    offset: u64,
    compression: Compression,
}

/// State of one walk over an image.
struct Walker<'a> {
    image: &'a Path,
    visitor: &'a mut dyn Visitor,
    archives: usize,
}

/// Walks every segment of `image`, handing each entry to `visitor`.
fn walk(image: &Path, visitor: &mut dyn Visitor) -> Result<Vec<Segment>, InspectError> {
    let file = File::open(image).map_err(|source| InspectError::Open {
        image: image.to_path_buf(),
        source,
    })?;
    let meter = Meter::default();
    let mut src = Metered::new(BufReader::with_capacity(FILE_BUFFER, file), &meter);
    let mut walker = Walker {
        image,
        visitor,
        archives: 0,
    };
    let mut segments = Vec::new();
    loop {
        skip_zeros(&mut src).map_err(|e| walker.read_error(meter.pos(), e))?;
        let offset = meter.pos();
        let head = src.peek(8).map_err(|e| walker.read_error(offset, e))?;
        if head.is_empty() {
            break;
        }
        let segment = match detect(&head) {
            Detected::Cpio => walker.plain_segment(&mut src, offset)?,
            Detected::Compressed(compression) => {
                walker.compressed_segment(&mut src, offset, compression)?
            }
            Detected::OldCpio => {
                return Err(InspectError::OldCpio {
                    image: image.to_path_buf(),
                    offset,
                })
            }
            Detected::Unsupported(method) => {
                return Err(InspectError::UnsupportedCompression {
                    image: image.to_path_buf(),
                    offset,
                    method,
                })
            }
            Detected::Unknown => {
                return Err(InspectError::UnknownData {
                    image: image.to_path_buf(),
                    offset,
                    bytes: hex_bytes(&head),
                })
            }
        };
        segments.push(segment);
    }
    if segments.is_empty() {
        return Err(InspectError::Empty {
            image: image.to_path_buf(),
        });
    }
    Ok(segments)
}

impl Walker<'_> {
    fn read_error(&self, offset: u64, source: io::Error) -> InspectError {
        InspectError::Read {
            image: self.image.to_path_buf(),
            offset,
            source,
        }
    }

    fn corrupt(&self, loc: Loc, pos: u64, detail: String) -> InspectError {
        let position = match loc.compression {
            Compression::None => format!("offset 0x{pos:x}"),
            _ => format!("uncompressed offset 0x{pos:x}"),
        };
        InspectError::Corrupt {
            image: self.image.to_path_buf(),
            segment: loc.offset,
            compression: loc.compression,
            position,
            detail,
        }
    }

    /// Reads one uncompressed cpio archive starting at `offset`.
    fn plain_segment(
        &mut self,
        src: &mut FileSrc<'_>,
        offset: u64,
    ) -> Result<Segment, InspectError> {
        let loc = Loc {
            offset,
            compression: Compression::None,
        };
        let mut entries = Vec::new();
        self.archive(src, loc, &mut entries)?;
        let len = src.meter.pos() - offset;
        Ok(Segment {
            offset,
            compressed_len: len,
            compression: Compression::None,
            uncompressed_size: len,
            entries,
        })
    }

    /// Reads one compressed segment starting at `offset`.
    fn compressed_segment(
        &mut self,
        src: &mut FileSrc<'_>,
        offset: u64,
        compression: Compression,
    ) -> Result<Segment, InspectError> {
        let loc = Loc {
            offset,
            compression,
        };
        let stream_meter = Meter::default();
        let file_meter = src.meter;
        let entries = {
            let first = Decoder::new(compression, &mut *src).map_err(|e| {
                self.corrupt(
                    loc,
                    0,
                    format!("cannot start {compression} decoder: {}", describe(&e)),
                )
            })?;
            let members = Members {
                compression,
                active: Some(first),
            };
            let mut stream = Metered::new(
                BufReader::with_capacity(STREAM_BUFFER, members),
                &stream_meter,
            );
            self.stream(&mut stream, loc)?
        };
        Ok(Segment {
            offset,
            compressed_len: file_meter.pos() - offset,
            compression,
            uncompressed_size: stream_meter.pos(),
            entries,
        })
    }

    /// Reads the cpio archives of a decompressed stream up to its end.
    fn stream<R: BufRead>(
        &mut self,
        stream: &mut Metered<'_, R>,
        loc: Loc,
    ) -> Result<Vec<EntryInfo>, InspectError> {
        let meter = stream.meter;
        let mut entries = Vec::new();
        loop {
            skip_zeros(stream).map_err(|e| {
                self.corrupt(
                    loc,
                    meter.pos(),
                    format!("cannot decompress: {}", describe(&e)),
                )
            })?;
            let next = stream
                .fill_buf()
                .map_err(|e| {
                    self.corrupt(
                        loc,
                        meter.pos(),
                        format!("cannot decompress: {}", describe(&e)),
                    )
                })?
                .first()
                .copied();
            match next {
                None => return Ok(entries),
                Some(b'0') => self.archive(stream, loc, &mut entries)?,
                Some(byte) => {
                    return Err(self.corrupt(
                        loc,
                        meter.pos(),
                        format!("found byte 0x{byte:02x} where a cpio archive should start"),
                    ))
                }
            }
        }
    }

    /// Reads one cpio archive up to and including its trailer.
    fn archive<R: BufRead>(
        &mut self,
        src: &mut Metered<'_, R>,
        loc: Loc,
        entries: &mut Vec<EntryInfo>,
    ) -> Result<(), InspectError> {
        let archive = self.archives;
        self.archives += 1;
        while let Some(info) = self.entry(src, loc, archive)? {
            entries.push(info);
        }
        Ok(())
    }

    /// Reads one entry; `None` for the trailer.
    fn entry<R: BufRead>(
        &mut self,
        src: &mut Metered<'_, R>,
        loc: Loc,
        archive: usize,
    ) -> Result<Option<EntryInfo>, InspectError> {
        let meter = src.meter;
        let header_at = meter.pos();
        meter.budget.set(Some(MAX_HEADER_LEN));
        let parsed = cpio::newc::Reader::new(&mut *src);
        meter.budget.set(None);
        let mut reader = parsed.map_err(|e| {
            self.corrupt(
                loc,
                header_at,
                format!("bad cpio entry header: {}", describe(&e)),
            )
        })?;
        let truncated = |walker: &Self, what: &str, e: io::Error| {
            walker.corrupt(
                loc,
                meter.pos(),
                format!("cannot read {what}: {}", describe(&e)),
            )
        };
        if reader.entry().is_trailer() {
            reader
                .finish()
                .map_err(|e| truncated(self, "trailer padding", e))?;
            return Ok(None);
        }
        let mut info = entry_info(reader.entry());
        let data_at = meter.pos();
        if info.is_symlink() {
            let target = read_link_target(&mut reader, info.size)
                .map_err(|e| truncated(self, &format!("symlink target of {}", info.path), e))?;
            info.link_target = Some(target);
        }
        let at = EntryAt {
            segment_offset: loc.offset,
            archive,
        };
        let visited = if info.is_file() {
            self.visitor.visit(&at, &info, &mut reader)
        } else {
            self.visitor.visit(&at, &info, &mut io::empty())
        };
        match visited {
            Ok(()) => {}
            Err(VisitError::Read(e)) => {
                return Err(truncated(self, &format!("data of {}", info.path), e))
            }
            Err(VisitError::Fail(e)) => return Err(e),
        }
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| truncated(self, &format!("data of {}", info.path), e))?;
        reader
            .finish()
            .map_err(|e| truncated(self, &format!("data of {}", info.path), e))?;
        if meter.pos() != data_at + info.size + pad4(info.size) {
            return Err(self.corrupt(
                loc,
                meter.pos(),
                format!(
                    "data of {} ends early: the entry declares {} bytes",
                    info.path, info.size
                ),
            ));
        }
        Ok(Some(info))
    }
}

fn entry_info(entry: &cpio::newc::Entry) -> EntryInfo {
    EntryInfo {
        path: display_name(entry.name()),
        mode: entry.mode(),
        uid: entry.uid(),
        gid: entry.gid(),
        nlink: entry.nlink(),
        ino: entry.ino(),
        mtime: entry.mtime(),
        size: u64::from(entry.file_size()),
        rdev: (entry.rdev_major(), entry.rdev_minor()),
        dev: (entry.dev_major(), entry.dev_minor()),
        link_target: None,
    }
}

/// Reads a symlink's target, dropping the trailing NUL some tools store.
fn read_link_target<R: Read>(reader: &mut R, size: u64) -> io::Result<String> {
    if size > MAX_LINK_TARGET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the target is {size} bytes long, more than {MAX_LINK_TARGET}"),
        ));
    }
    let mut bytes = Vec::new();
    reader.take(size).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "unexpected end of data",
        ));
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Hard link key: the kernel links regular files with equal device and inode numbers.
fn link_key(info: &EntryInfo) -> (u32, u32, u32) {
    (info.dev.0, info.dev.1, info.ino)
}

// ---------------------------------------------------------------------------------------
// cat

/// The last entry seen for one path, with its data if it is a regular file.
struct CatHit {
    archive: usize,
    info: EntryInfo,
    data: Vec<u8>,
}

/// Remembers the last entry whose name matches `wanted`.
struct CatScan {
    wanted: String,
    hit: Option<CatHit>,
}

impl CatScan {
    fn new(wanted: &str) -> Self {
        CatScan {
            wanted: wanted.to_string(),
            hit: None,
        }
    }
}

impl Visitor for CatScan {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if canonical(&info.path) != self.wanted {
            return Ok(());
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).map_err(VisitError::Read)?;
        self.hit = Some(CatHit {
            archive: at.archive,
            info: info.clone(),
            data: content,
        });
        Ok(())
    }
}

/// Rebuilds a hard-linked file's content as the kernel does: the first link creates the file,
/// every later link's data overwrites it from the start without truncating.
struct HardlinkFold {
    archive: usize,
    key: (u32, u32, u32),
    data: Vec<u8>,
}

impl HardlinkFold {
    fn new(archive: usize, key: (u32, u32, u32)) -> Self {
        HardlinkFold {
            archive,
            key,
            data: Vec::new(),
        }
    }
}

impl Visitor for HardlinkFold {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if at.archive != self.archive || !info.is_file() || link_key(info) != self.key {
            return Ok(());
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).map_err(VisitError::Read)?;
        let overlap = content.len().min(self.data.len());
        self.data[..overlap].copy_from_slice(&content[..overlap]);
        self.data.extend_from_slice(&content[overlap..]);
        Ok(())
    }
}

/// The last entry for every canonical path.
fn latest_entries(segments: &[Segment]) -> HashMap<String, &EntryInfo> {
    let mut latest = HashMap::new();
    for entry in segments.iter().flat_map(|s| &s.entries) {
        latest.insert(canonical(&entry.path), entry);
    }
    latest
}

/// Resolves symlinks in `path` using the image's own entries; `None` on too many links.
fn resolve_in_image(latest: &HashMap<String, &EntryInfo>, path: &str) -> Option<String> {
    let mut pending: VecDeque<String> = canonical(path)
        .split('/')
        .filter(|c| *c != ".")
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut followed = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        resolved.push(part);
        let here = resolved.join("/");
        let Some(target) = latest
            .get(here.as_str())
            .and_then(|e| e.link_target.as_deref())
        else {
            continue;
        };
        followed += 1;
        if followed > MAX_CAT_SYMLINKS {
            return None;
        }
        resolved.pop();
        if target.starts_with('/') {
            resolved.clear();
        }
        for part in target
            .split('/')
            .rev()
            .filter(|c| !c.is_empty() && *c != ".")
        {
            pending.push_front(part.to_string());
        }
    }
    Some(if resolved.is_empty() {
        ".".to_string()
    } else {
        resolved.join("/")
    })
}

// ---------------------------------------------------------------------------------------
// extract

/// Metadata applied once everything is written.
struct Deferred {
    mode: u32,
    mtime: u32,
}

/// Writes entries under `dest`.
struct Extractor {
    image: PathBuf,
    dest: PathBuf,
    summary: ExtractSummary,
    archive: Option<usize>,
    links: HashMap<(u32, u32, u32), PathBuf>,
    deferred: HashMap<PathBuf, Deferred>,
    buffer: Vec<u8>,
}

/// Result of one extraction step; `Err` is a complete visitor error.
type Step<T> = Result<T, VisitError>;

impl Extractor {
    fn new(image: &Path, dest: &Path) -> Self {
        Extractor {
            image: image.to_path_buf(),
            dest: dest.to_path_buf(),
            summary: ExtractSummary::default(),
            archive: None,
            links: HashMap::new(),
            deferred: HashMap::new(),
            buffer: vec![0; 64 * 1024],
        }
    }

    fn io_error(&self, info: &EntryInfo, target: &Path, source: io::Error) -> VisitError {
        VisitError::Fail(InspectError::Extract {
            image: self.image.clone(),
            entry: info.path.clone(),
            target: target.to_path_buf(),
            source,
        })
    }

    fn refuse(&self, at: &EntryAt, info: &EntryInfo, reason: String) -> VisitError {
        VisitError::Fail(InspectError::UnsafeEntry {
            image: self.image.clone(),
            entry: info.path.clone(),
            segment: at.segment_offset,
            reason,
        })
    }

    /// Resolves `parents` to a real directory under `dest`, creating missing ones and
    /// following symlinks only while they stay inside `dest`.
    fn parent_dir(&self, at: &EntryAt, info: &EntryInfo, parents: &[String]) -> Step<PathBuf> {
        let mut pending: VecDeque<String> = parents.iter().cloned().collect();
        let mut real = self.dest.clone();
        let mut depth = 0usize;
        let mut followed = 0usize;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                if depth == 0 {
                    return Err(self.refuse(
                        at,
                        info,
                        "a symlink on its path points outside the destination".into(),
                    ));
                }
                real.pop();
                depth -= 1;
                continue;
            }
            let next = real.join(&part);
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    followed += 1;
                    if followed > MAX_EXTRACT_SYMLINKS {
                        return Err(self.refuse(
                            at,
                            info,
                            "too many levels of symbolic links".into(),
                        ));
                    }
                    let target = fs::read_link(&next).map_err(|e| self.io_error(info, &next, e))?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        real = self.dest.clone();
                        depth = 0;
                    }
                    for part in target
                        .split('/')
                        .rev()
                        .filter(|c| !c.is_empty() && *c != ".")
                    {
                        pending.push_front(part.to_string());
                    }
                    continue;
                }
                Ok(_) => {
                    let err =
                        io::Error::new(io::ErrorKind::NotADirectory, "a parent is not a directory");
                    return Err(self.io_error(info, &next, err));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&next).map_err(|e| self.io_error(info, &next, e))?;
                }
                Err(e) => return Err(self.io_error(info, &next, e)),
            }
            real = next;
            depth += 1;
        }
        Ok(real)
    }

    /// Removes whatever is at `target` so a new entry can take its place.
    fn clear(&self, info: &EntryInfo, target: &Path) -> Step<()> {
        let result = match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => fs::remove_dir(target),
            Ok(_) => fs::remove_file(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.io_error(info, target, e))
    }

    fn make_dir(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                self.clear(info, target)?;
                fs::create_dir(target).map_err(|e| self.io_error(info, target, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(target).map_err(|e| self.io_error(info, target, e))?;
            }
            Err(e) => return Err(self.io_error(info, target, e)),
        }
        self.defer(target, info);
        self.summary.dirs += 1;
        Ok(())
    }

    fn make_symlink(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        self.clear(info, target)?;
        let link = info.link_target.clone().unwrap_or_default();
        std::os::unix::fs::symlink(&link, target).map_err(|e| self.io_error(info, target, e))?;
        self.deferred.remove(target);
        self.summary.symlinks += 1;
        Ok(())
    }

    fn make_file(&mut self, info: &EntryInfo, target: &Path, data: &mut dyn Read) -> Step<()> {
        let key = link_key(info);
        let first = match self.links.get(&key) {
            Some(first) if info.nlink >= 2 && first.as_path() != target => Some(first.clone()),
            _ => None,
        };
        self.clear(info, target)?;
        let mut file = if let Some(first) = first {
            fs::hard_link(&first, target).map_err(|e| self.io_error(info, target, e))?;
            self.summary.hardlinks += 1;
            OpenOptions::new().write(true).open(target)
        } else {
            if info.nlink >= 2 {
                self.links.insert(key, target.to_path_buf());
            }
            self.summary.files += 1;
            OpenOptions::new().write(true).create_new(true).open(target)
        }
        .map_err(|e| self.io_error(info, target, e))?;
        self.copy_data(info, target, data, &mut file)?;
        self.defer(target, info);
        Ok(())
    }

    /// Copies an entry's data, telling read errors (bad image) from write errors.
    fn copy_data(
        &mut self,
        info: &EntryInfo,
        target: &Path,
        data: &mut dyn Read,
        file: &mut File,
    ) -> Step<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            let n = match data.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(VisitError::Read(e)),
            };
            if let Err(e) = file.write_all(&buffer[..n]) {
                break Err(self.io_error(info, target, e));
            }
        };
        self.buffer = buffer;
        result
    }

    /// Counts a device node, fifo or socket and removes what an earlier entry left on its path.
    fn skip_special(&mut self, info: &EntryInfo, target: &Path) -> Step<()> {
        self.clear(info, target)?;
        self.deferred.remove(target);
        self.summary.skipped_devices += 1;
        let detail = match info.file_type() {
            S_IFCHR | S_IFBLK => format!(" {},{}", info.rdev.0, info.rdev.1),
            _ => String::new(),
        };
        self.summary.warnings.push(format!(
            "skipped {}{detail}: {}",
            kind_name(info.mode),
            info.path
        ));
        Ok(())
    }

    fn defer(&mut self, target: &Path, info: &EntryInfo) {
        self.deferred.insert(
            target.to_path_buf(),
            Deferred {
                mode: info.mode,
                mtime: info.mtime,
            },
        );
    }

    /// Sets mtimes and permission bits, deepest paths first.
    fn apply_deferred(&self) -> Result<(), InspectError> {
        let mut paths: Vec<(&PathBuf, &Deferred)> = self.deferred.iter().collect();
        paths.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, deferred) in paths {
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(deferred.mtime));
            // Best effort: a file we cannot open for this keeps its extraction time.
            if let Ok(file) = File::open(path) {
                let _ = file.set_modified(mtime);
            }
            let mode = deferred.mode & 0o1777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
                InspectError::Extract {
                    image: self.image.clone(),
                    entry: path
                        .strip_prefix(&self.dest)
                        .unwrap_or(path)
                        .display()
                        .to_string(),
                    target: path.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

impl Visitor for Extractor {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError> {
        if self.archive != Some(at.archive) {
            self.archive = Some(at.archive);
            self.links.clear();
        }
        let parts = safe_components(&info.path).map_err(|reason| self.refuse(at, info, reason))?;
        let Some((name, parents)) = parts.split_last() else {
            if info.is_dir() {
                return Ok(());
            }
            return Err(self.refuse(
                at,
                info,
                "a non-directory entry names the destination itself".into(),
            ));
        };
        let parent = self.parent_dir(at, info, parents)?;
        let target = parent.join(name);
        match info.file_type() {
            S_IFDIR => self.make_dir(info, &target),
            S_IFREG => self.make_file(info, &target, data),
            S_IFLNK => self.make_symlink(info, &target),
            _ => self.skip_special(info, &target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    /// One entry for [`archive`].
    #[derive(Clone)]
    struct E {
        name: String,
        mode: u32,
        data: Vec<u8>,
        uid: u32,
        gid: u32,
        mtime: u32,
        ino: u32,
        nlink: u32,
        rdev: (u32, u32),
    }

    impl E {
        fn new(name: &str, mode: u32, data: &[u8]) -> E {
            E {
                name: name.to_string(),
                mode,
                data: data.to_vec(),
                uid: 0,
                gid: 0,
                mtime: 1_700_000_000,
                ino: 0,
                nlink: 1,
                rdev: (0, 0),
            }
        }
        fn owner(mut self, uid: u32, gid: u32) -> E {
            self.uid = uid;
            self.gid = gid;
            self
        }
        fn link(mut self, ino: u32, nlink: u32) -> E {
            self.ino = ino;
            self.nlink = nlink;
            self
        }
    }

    fn dir(name: &str) -> E {
        let mut e = E::new(name, 0o040755, b"");
        e.nlink = 2;
        e
    }
    fn file(name: &str, data: &[u8]) -> E {
        E::new(name, 0o100644, data)
    }
    fn symlink(name: &str, target: &str) -> E {
        E::new(name, 0o120777, target.as_bytes())
    }
    fn chardev(name: &str, major: u32, minor: u32) -> E {
        let mut e = E::new(name, 0o020600, b"");
        e.rdev = (major, minor);
        e
    }

    /// A newc archive of `entries` and a trailer, written with the cpio crate.
    fn archive(entries: &[E]) -> Vec<u8> {
        archive_with(entries, false)
    }

    /// Like [`archive`]; `crc` selects the 070702 format.
    fn archive_with(entries: &[E], crc: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, e) in entries.iter().enumerate() {
            let ino = if e.ino != 0 {
                e.ino
            } else {
                100 + index as u32
            };
            let builder = cpio::newc::Builder::new(&e.name)
                .ino(ino)
                .mode(e.mode)
                .uid(e.uid)
                .gid(e.gid)
                .mtime(e.mtime)
                .nlink(e.nlink)
                .rdev_major(e.rdev.0)
                .rdev_minor(e.rdev.1);
            let len = e.data.len() as u32;
            let mut writer = if crc {
                let sum = e
                    .data
                    .iter()
                    .map(|&b| u32::from(b))
                    .fold(0u32, u32::wrapping_add);
                builder.write_crc(out, len, sum)
            } else {
                builder.write(out, len)
            };
            writer.write_all(&e.data).unwrap();
            out = writer.finish().unwrap();
        }
        cpio::newc::trailer(out).unwrap()
    }

    fn pad_to(mut bytes: Vec<u8>, align: usize) -> Vec<u8> {
        while !bytes.len().is_multiple_of(align) {
            bytes.push(0);
        }
        bytes
    }

    fn zstd_of(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    fn gzip_of(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn xz_of(data: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn write_image(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn have(tool: &str) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn entry<'a>(segment: &'a Segment, path: &str) -> &'a EntryInfo {
        segment
            .entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no entry {path}"))
    }

    /// The four-segment image of the first tests and its parts.
    struct Layered {
        image: Vec<u8>,
        plain: Vec<u8>,
        zstd: Vec<u8>,
        gzip: Vec<u8>,
        xz: Vec<u8>,
        inner: [Vec<u8>; 3],
    }

    fn layered() -> Layered {
        let plain = archive(&[
            dir("."),
            dir("./etc"),
            file("./etc/hostname", b"plain\n"),
            symlink("bin", "usr/bin"),
            chardev("dev/console", 5, 1),
        ]);
        let zstd_inner = archive(&[
            dir("usr"),
            dir("usr/bin"),
            E::new("usr/bin/tool", 0o104755, b"#!/bin/sh\necho tool\n").owner(1000, 100),
            file("etc/hostname", b"zstd\n"),
        ]);
        let gzip_inner = archive(&[file("etc/gz", b"from gzip")]);
        let xz_inner = archive_with(
            &[file("etc/xz", b"from xz"), file("etc/hostname", b"xz\n")],
            true,
        );
        let (zstd, gzip, xz) = (zstd_of(&zstd_inner), gzip_of(&gzip_inner), xz_of(&xz_inner));
        let mut image = pad_to(plain.clone(), 512);
        image.extend_from_slice(&zstd);
        image.extend_from_slice(&[0, 0, 0]);
        image.extend_from_slice(&gzip);
        image.extend_from_slice(&xz);
        image.extend_from_slice(&[0; 8]);
        Layered {
            image,
            plain,
            zstd,
            gzip,
            xz,
            inner: [zstd_inner, gzip_inner, xz_inner],
        }
    }

    #[test]
    fn reads_plain_zstd_gzip_and_xz_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layered();
        let image = write_image(&tmp, "layered.img", &l.image);
        let segments = read_segments(&image).unwrap();

        let zstd_at = l.plain.len().next_multiple_of(512) as u64;
        assert_eq!(zstd_at, 1024);
        let gzip_at = zstd_at + l.zstd.len() as u64 + 3;
        let xz_at = gzip_at + l.gzip.len() as u64;
        let offsets: Vec<u64> = segments.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, [0, zstd_at, gzip_at, xz_at]);
        let kinds: Vec<Compression> = segments.iter().map(|s| s.compression).collect();
        assert_eq!(
            kinds,
            [
                Compression::None,
                Compression::Zstd,
                Compression::Gzip,
                Compression::Xz
            ]
        );
        let counts: Vec<usize> = segments.iter().map(|s| s.entries.len()).collect();
        assert_eq!(counts, [5, 4, 1, 2]);
        let lens: Vec<u64> = segments.iter().map(|s| s.compressed_len).collect();
        assert_eq!(
            lens,
            [l.plain.len(), l.zstd.len(), l.gzip.len(), l.xz.len()].map(|n| n as u64)
        );
        let sizes: Vec<u64> = segments.iter().map(|s| s.uncompressed_size).collect();
        let inner = &l.inner;
        assert_eq!(
            sizes,
            [
                l.plain.len(),
                inner[0].len(),
                inner[1].len(),
                inner[2].len()
            ]
            .map(|n| n as u64)
        );

        let root = &segments[0].entries[0];
        assert_eq!((root.path.as_str(), root.mode), (".", 0o040755));
        assert_eq!(entry(&segments[0], "etc").mode, 0o040755);
        let link = entry(&segments[0], "bin");
        assert_eq!(link.link_target.as_deref(), Some("usr/bin"));
        assert_eq!(link.size, 7);
        let console = entry(&segments[0], "dev/console");
        assert_eq!((console.mode, console.rdev), (0o020600, (5, 1)));
        let tool = entry(&segments[1], "usr/bin/tool");
        assert_eq!((tool.mode, tool.uid, tool.gid), (0o104755, 1000, 100));
        assert_eq!(
            (tool.size, tool.mtime, tool.nlink, tool.ino),
            (20, 1_700_000_000, 1, 102)
        );
        assert_eq!(tool.link_target, None);
        assert_eq!(entry(&segments[3], "etc/xz").size, 7);

        assert_eq!(cat(&image, "etc/hostname").unwrap(), b"xz\n");
        assert_eq!(
            cat(&image, "/usr/bin/tool").unwrap(),
            b"#!/bin/sh\necho tool\n"
        );
        assert_eq!(cat(&image, "./etc/gz").unwrap(), b"from gzip");
        assert_eq!(cat(&image, "etc//xz").unwrap(), b"from xz");
    }

    #[test]
    fn listing_has_segment_headers_and_ls_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layered();
        let image = write_image(&tmp, "layered.img", &l.image);
        let listing = format_listing(&read_segments(&image).unwrap());
        let lines: Vec<&str> = listing.lines().collect();
        let n = l.plain.len();
        assert_eq!(
            lines[0],
            format!("segment 0: offset 0x0, uncompressed, 5 entries, {n} bytes uncompressed ({n} bytes in image)")
        );
        assert_eq!(lines[1], "drwxr-xr-x    0    0         0 .");
        assert_eq!(lines[3], "-rw-r--r--    0    0         6 etc/hostname");
        assert_eq!(lines[4], "lrwxrwxrwx    0    0         7 bin -> usr/bin");
        assert_eq!(lines[5], "crw-------    0    0    5,   1 dev/console");
        assert_eq!(
            lines[6],
            format!(
                "segment 1: offset 0x400, zstd, 4 entries, {} bytes uncompressed ({} bytes in image)",
                l.inner[0].len(),
                l.zstd.len()
            )
        );
        assert!(
            lines.contains(&"-rwsr-xr-x 1000  100        20 usr/bin/tool"),
            "{listing}"
        );
        assert_eq!(lines.len(), 4 + 5 + 4 + 1 + 2);
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
        assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
        assert_eq!(mode_string(0o060660), "brw-rw----");
    }

    #[test]
    fn cat_follows_symlinks_and_names_missing_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let base = archive(&[
            dir("usr"),
            dir("usr/bin"),
            file("usr/bin/tool", b"tool"),
            symlink("bin", "usr/bin"),
            symlink("sh", "/bin/tool"),
            symlink("up", "usr/bin/../../bin/tool"),
            symlink("a", "b"),
            symlink("b", "a"),
            dir("etc"),
            file("later-dir", b"x"),
        ]);
        let overlay = archive(&[dir("later-dir"), symlink("sh", "bin/./tool")]);
        let mut bytes = pad_to(base, 4);
        bytes.extend_from_slice(&gzip_of(&overlay));
        let image = write_image(&tmp, "links.img", &bytes);
        assert_eq!(cat(&image, "bin/tool").unwrap(), b"tool");
        assert_eq!(cat(&image, "/sh").unwrap(), b"tool");
        assert_eq!(cat(&image, "up").unwrap(), b"tool");

        let shown = image.display().to_string();
        let missing = cat(&image, "/etc/missing").unwrap_err().to_string();
        assert_eq!(
            missing,
            format!("{shown}: no such file in image: /etc/missing")
        );
        let is_dir = cat(&image, "etc").unwrap_err().to_string();
        assert_eq!(
            is_dir,
            format!("{shown}: etc is a directory, not a regular file")
        );
        let replaced = cat(&image, "later-dir").unwrap_err().to_string();
        assert!(replaced.contains("is a directory"), "{replaced}");
        let looped = cat(&image, "a").unwrap_err().to_string();
        assert_eq!(
            looped,
            format!("{shown}: a: too many levels of symbolic links")
        );
    }

    #[test]
    fn hard_links_with_data_on_last_or_first_link() {
        let tmp = tempfile::tempdir().unwrap();
        let gnu_style = archive(&[
            file("a", b"").link(7, 2),
            file("b", b"shared").link(7, 2),
            file("solo", b"solo").link(8, 1),
        ]);
        // Inode 7 again, in another archive: not a link to "a" and "b".
        let first_style = archive(&[
            file("c", b"first").link(9, 2),
            file("d", b"").link(9, 2),
            file("e", b"own inode").link(7, 2),
        ]);
        let mut bytes = gnu_style;
        bytes.extend_from_slice(&zstd_of(&first_style));
        let image = write_image(&tmp, "hard.img", &bytes);
        for (path, want) in [
            ("a", "shared"),
            ("b", "shared"),
            ("c", "first"),
            ("d", "first"),
            ("solo", "solo"),
        ] {
            assert_eq!(cat(&image, path).unwrap(), want.as_bytes(), "{path}");
        }

        let dest = tmp.path().join("out");
        let summary = extract(&image, &dest).unwrap();
        assert_eq!((summary.files, summary.hardlinks), (4, 2));
        assert_eq!(fs::read(dest.join("e")).unwrap(), b"own inode");
        assert_eq!(cat(&image, "e").unwrap(), b"own inode");
        let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
        assert_ne!(ino("e"), ino("a"));
        for (one, other, want) in [("a", "b", "shared"), ("c", "d", "first")] {
            let (m1, m2) = (
                fs::metadata(dest.join(one)).unwrap(),
                fs::metadata(dest.join(other)).unwrap(),
            );
            assert_eq!(m1.ino(), m2.ino(), "{one} and {other} are one inode");
            assert_eq!(m1.nlink(), 2);
            assert_eq!(fs::read(dest.join(one)).unwrap(), want.as_bytes());
        }
    }

    #[test]
    fn extract_writes_tree_and_later_segments_win() {
        let tmp = tempfile::tempdir().unwrap();
        let first = archive(&[
            dir("etc"),
            file("etc/conf", b"old"),
            E::new("etc/secret", 0o100600, b"s"),
            E::new("ro", 0o040555, b""),
            file("ro/inside", b"in a read-only dir"),
            symlink("lib", "usr/lib"),
            file("becomes-dir", b"f"),
            symlink("becomes-file", "etc/conf"),
            chardev("dev/null", 1, 3),
        ]);
        let second = archive(&[
            file("etc/conf", b"new"),
            dir("becomes-dir"),
            file("becomes-file", b"now a file"),
            file("lib/libc.so", b"elf"),
        ]);
        let mut bytes = pad_to(first, 512);
        bytes.extend_from_slice(&xz_of(&second));
        let image = write_image(&tmp, "tree.img", &bytes);
        let dest = tmp.path().join("out");
        let summary = extract(&image, &dest).unwrap();
        assert_eq!(
            (
                summary.files,
                summary.dirs,
                summary.symlinks,
                summary.skipped_devices
            ),
            (7, 3, 2, 1)
        );
        assert_eq!(summary.warnings, ["skipped character device 1,3: dev/null"]);
        assert_eq!(fs::read(dest.join("etc/conf")).unwrap(), b"new");
        assert_eq!(fs::read(dest.join("becomes-file")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(dest.join("becomes-file"))
            .unwrap()
            .is_file());
        assert!(fs::metadata(dest.join("becomes-dir")).unwrap().is_dir());
        assert_eq!(fs::read(dest.join("usr/lib/libc.so")).unwrap(), b"elf");
        assert_eq!(
            fs::read_link(dest.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        let secret = fs::metadata(dest.join("etc/secret")).unwrap();
        assert_eq!(secret.mode() & 0o7777, 0o600);
        assert_eq!(secret.mtime(), 1_700_000_000);
        assert_eq!(
            fs::metadata(dest.join("ro")).unwrap().mode() & 0o7777,
            0o555
        );
        assert_eq!(
            fs::read(dest.join("ro/inside")).unwrap(),
            b"in a read-only dir"
        );
        assert!(!dest.join("dev/null").exists());
        fs::set_permissions(dest.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Every path under `root`, relative to it.
    fn tree_paths(root: &Path) -> BTreeSet<PathBuf> {
        fn visit(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
            for item in fs::read_dir(dir).unwrap() {
                let path = item.unwrap().path();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    visit(root, &path, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        visit(root, root, &mut out);
        out
    }

    #[test]
    fn extract_refuses_parent_dir_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let image = write_image(
            &tmp,
            "evil.img",
            &archive(&[file("ok", b"ok"), file("../evil", b"x")]),
        );
        let dest = tmp.path().join("dest");
        let err = extract(&image, &dest).unwrap_err().to_string();
        assert!(
            err.contains("refusing to extract entry \"../evil\""),
            "{err}"
        );
        assert!(
            err.contains("segment at offset 0x0") && err.contains("\"..\""),
            "{err}"
        );
        assert!(!tmp.path().join("evil").exists());
        assert_eq!(
            tree_paths(tmp.path()),
            BTreeSet::from(["dest".into(), "dest/ok".into(), "evil.img".into()])
        );
    }

    #[test]
    fn extract_refuses_absolute_names_and_keeps_single_slash_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        // "/abs" is stored relative to the root by the kernel and GNU cpio: it lands in dest.
        let image = write_image(&tmp, "slash.img", &archive(&[file("/abs", b"in")]));
        let dest = tmp.path().join("dest");
        extract(&image, &dest).unwrap();
        assert_eq!(fs::read(dest.join("abs")).unwrap(), b"in");
        // A name still absolute after stripping one "/" is refused.
        let name = format!("/{}/evil", outside.display());
        let image = write_image(&tmp, "abs.img", &archive(&[file(&name, b"x")]));
        let err = extract(&image, &tmp.path().join("dest2"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing") && err.contains("absolute"),
            "{err}"
        );
        assert!(!outside.exists());
    }

    #[test]
    fn extract_refuses_writing_through_escaping_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("a/dest");
        fs::create_dir_all(&dest).unwrap();
        let bytes = archive(&[symlink("up", "../../outside"), file("up/evil", b"x")]);
        let image = write_image(&tmp, "up.img", &bytes);
        let err = extract(&image, &dest).unwrap_err().to_string();
        assert!(
            err.contains("\"up/evil\"") && err.contains("outside the destination"),
            "{err}"
        );
        assert!(!tmp.path().join("outside").exists());
        assert!(!tmp.path().join("a/outside").exists());

        // An absolute target is resolved inside dest, never on the host.
        let outside = tmp.path().join("host");
        fs::create_dir(&outside).unwrap();
        let target = outside.display().to_string();
        let bytes = archive(&[
            dir("sub"),
            symlink("sub/abs", &target),
            file("sub/abs/inside", b"kept in dest"),
        ]);
        let image = write_image(&tmp, "abs.img", &bytes);
        let dest = tmp.path().join("dest2");
        extract(&image, &dest).unwrap();
        assert!(!outside.join("inside").exists());
        let landed = dest.join(target.trim_start_matches('/')).join("inside");
        assert_eq!(fs::read(landed).unwrap(), b"kept in dest");
    }

    #[test]
    fn garbage_is_reported_with_its_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = pad_to(archive(&[file("a", b"a")]), 512);
        bytes.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11]);
        let image = write_image(&tmp, "junk.img", &bytes);
        let err = read_segments(&image).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: unknown data at offset 0x200 (bytes 12 34 56 78 9a bc de f0): not cpio, gzip, zstd or xz",
                image.display()
            )
        );
        let image = write_image(&tmp, "text.img", b"hello, world");
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(
            err.contains("offset 0x0 (bytes 68 65 6c 6c 6f 2c 20 77)"),
            "{err}"
        );
        let image = write_image(&tmp, "zjunk.img", &zstd_of(b"not a cpio archive"));
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(
            err.contains("zstd segment at offset 0x0") && err.contains("uncompressed offset 0x0"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_compressions_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let head = pad_to(archive(&[file("a", b"a")]), 512);
        for (magic, name) in [
            (&b"BZh91AY&SY"[..], "bzip2"),
            (&[0x5d, 0, 0, 0x80, 0][..], "lzma"),
            (&[0x02, 0x21, 0x4c, 0x18, 0][..], "lz4"),
            (&[0x89, b'L', b'Z', b'O', 0][..], "lzo"),
        ] {
            let mut bytes = head.clone();
            bytes.extend_from_slice(magic);
            let image = write_image(&tmp, "u.img", &bytes);
            let err = read_segments(&image).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "{}: segment at offset 0x200 uses {name} compression, which anemos cannot read",
                    image.display()
                )
            );
        }
    }

    #[test]
    fn old_cpio_format_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let image = write_image(&tmp, "odc.img", b"070707000000000000000000000000");
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(
            err.contains("offset 0x0 is an old-format (odc, 070707) cpio archive"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_zero_images_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        for bytes in [&[][..], &[0u8; 1000][..]] {
            let image = write_image(&tmp, "e.img", bytes);
            let err = read_segments(&image).unwrap_err().to_string();
            assert!(err.contains("no initramfs segments"), "{err}");
        }
        let err = read_segments(&tmp.path().join("missing.img"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.img: cannot open image"), "{err}");
    }

    #[test]
    fn truncated_images_fail_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = archive(&[
            dir("d"),
            file("d/f", b"some data here"),
            symlink("l", "d/f"),
            file("g", b"12345678"),
        ]);
        for cut in 1..plain.len() {
            let image = write_image(&tmp, "cut.img", &plain[..cut]);
            let err = read_segments(&image)
                .expect_err(&format!("cut at {cut}"))
                .to_string();
            assert!(err.starts_with(&image.display().to_string()), "{err}");
            assert!(extract(&image, &tmp.path().join("x")).is_err());
        }
        for compressed in [
            zstd_of(&plain),
            gzip_of(&plain),
            xz_of(&plain),
            zstd_of(&plain[..plain.len() - 20]),
        ] {
            for cut in [
                compressed.len() / 3,
                compressed.len() / 2,
                compressed.len() - 1,
            ] {
                let image = write_image(&tmp, "cut.img", &compressed[..cut]);
                let err = read_segments(&image)
                    .expect_err(&format!("cut at {cut}"))
                    .to_string();
                assert!(err.contains("segment at offset 0x0"), "{err}");
            }
        }
        // A complete zstd stream whose cpio content is cut short is an error too.
        let short = zstd_of(&plain[..plain.len() - 20]);
        let image = write_image(&tmp, "short.img", &short);
        assert!(read_segments(&image).is_err());
    }

    #[test]
    fn bogus_sizes_and_names_fail_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = archive(&[file("f", b"data"), file("g", b"more")]);
        // c_filesize of the first entry claims 2 GiB.
        bytes[54..62].copy_from_slice(b"7fffffff");
        let image = write_image(&tmp, "size.img", &bytes);
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(err.contains("data of f"), "{err}");

        // c_namesize of 4 GiB, followed by 1 MiB of name bytes: refused, not collected.
        let mut bytes = archive(&[file("f", b"")]);
        bytes.truncate(110);
        bytes[94..102].copy_from_slice(b"ffffffff");
        bytes.extend(std::iter::repeat_n(b'a', 1 << 20));
        let image = write_image(&tmp, "name.img", &zstd_of(&bytes));
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(
            err.contains("header is too long") && err.contains("uncompressed offset 0x0"),
            "{err}"
        );

        // A name that is not UTF-8.
        let mut bytes = pad_to(archive(&[file("ok", b"")]), 512);
        let bad_at = bytes.len();
        bytes.extend_from_slice(&archive(&[file("XY", b"")]));
        bytes[bad_at + 110] = 0xff;
        let image = write_image(&tmp, "utf8.img", &bytes);
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(
            err.contains("segment at offset 0x200") && err.contains("(at offset 0x200)"),
            "{err}"
        );
        assert!(err.contains("UTF-8"), "{err}");

        // A symlink with a 1 MiB target.
        let image = write_image(
            &tmp,
            "link.img",
            &archive(&[symlink("l", &"x".repeat(1 << 20))]),
        );
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(err.contains("symlink target of l"), "{err}");
    }

    /// Removes `dir` even if extraction left unreadable or read-only directories in it.
    fn force_remove(dir: &Path) {
        fn open_up(dir: &Path) {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
            for item in fs::read_dir(dir).unwrap() {
                let path = item.unwrap().path();
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    open_up(&path);
                }
            }
        }
        if fs::symlink_metadata(dir).is_ok() {
            open_up(dir);
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = archive(&[
            dir("d"),
            file("d/f", b"some data"),
            symlink("l", "d"),
            file("l/g", b"through the link").link(5, 2),
            file("h", b"").link(5, 2),
            chardev("c", 1, 1),
        ]);
        let mut images = vec![plain.clone()];
        images.push(zstd_of(&plain));
        images.push(gzip_of(&plain));
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut failures = 0;
        for original in &images {
            for round in 0..150 {
                let mut bytes = original.clone();
                let at = (next() as usize) % bytes.len();
                bytes[at] = if round % 2 == 0 {
                    next() as u8
                } else {
                    b"0123456789abcdef"[at % 16]
                };
                let image = write_image(&tmp, "fuzz.img", &bytes);
                let listed = read_segments(&image);
                failures += usize::from(listed.is_err());
                let _ = cat(&image, "d/f");
                let dest = tmp.path().join("x");
                let _ = extract(&image, &dest);
                force_remove(&dest);
                let left: Vec<PathBuf> = tree_paths(tmp.path()).into_iter().collect();
                assert_eq!(left, [PathBuf::from("fuzz.img")], "byte {at} of {bytes:?}");
            }
        }
        assert!(failures > 0, "some corruptions must be detected");
    }

    #[test]
    fn concatenated_members_are_separate_segments() {
        // A base image and a payload of the same compression, back to back with no padding:
        // each member/frame/stream is its own segment, as the kernel unpacks them.
        let tmp = tempfile::tempdir().unwrap();
        let first = archive(&[dir("d"), file("d/one", &[7u8; 3000])]);
        let second = archive(&[file("d/two", b"two")]);
        let tail = archive(&[file("tail", b"plain after compressed")]);
        type Codec = fn(&[u8]) -> Vec<u8>;
        let codecs: [(Compression, Codec); 3] = [
            (Compression::Gzip, gzip_of),
            (Compression::Zstd, zstd_of),
            (Compression::Xz, xz_of),
        ];
        for (kind, codec) in codecs {
            let a = codec(&first);
            let b = codec(&second);
            let mut bytes = a.clone();
            bytes.extend_from_slice(&b);
            bytes.extend_from_slice(&[0; 4]);
            let tail_at = bytes.len() as u64;
            bytes.extend_from_slice(&tail);
            let image = write_image(&tmp, "members.img", &bytes);
            let segments = read_segments(&image).unwrap();
            assert_eq!(segments.len(), 3, "{kind}");
            assert_eq!(
                (segments[0].compression, segments[0].compressed_len),
                (kind, a.len() as u64)
            );
            assert_eq!(
                (segments[1].offset, segments[1].compressed_len),
                (a.len() as u64, b.len() as u64),
                "{kind}"
            );
            assert_eq!(segments[0].uncompressed_size, first.len() as u64);
            assert_eq!(
                (segments[0].entries.len(), segments[1].entries.len()),
                (2, 1)
            );
            assert_eq!(
                (segments[2].offset, segments[2].compression),
                (tail_at, Compression::None)
            );
            assert_eq!(cat(&image, "d/one").unwrap(), vec![7u8; 3000]);
            assert_eq!(cat(&image, "d/two").unwrap(), b"two");
            assert_eq!(cat(&image, "tail").unwrap(), b"plain after compressed");
        }
    }

    #[test]
    fn early_microcode_then_zstd_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let ucode: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let early = archive(&[
            dir("kernel"),
            dir("kernel/x86"),
            dir("kernel/x86/microcode"),
            file("kernel/x86/microcode/GenuineIntel.bin", &ucode),
        ]);
        let main = archive(&[
            dir("."),
            E::new("init", 0o100755, b"#!/bin/sh\nexec /sbin/init\n"),
            dir("usr"),
            symlink("bin", "usr/bin"),
        ]);
        let mut bytes = pad_to(early.clone(), 512);
        let main_at = bytes.len() as u64;
        bytes.extend_from_slice(&zstd_of(&main));
        let image = write_image(&tmp, "initrd.img", &bytes);
        let segments = read_segments(&image).unwrap();
        assert_eq!(segments.len(), 2);
        assert_eq!(
            (segments[0].offset, segments[0].compression),
            (0, Compression::None)
        );
        assert_eq!(segments[0].compressed_len, early.len() as u64);
        assert_eq!(segments[0].entries.len(), 4);
        assert_eq!(
            (segments[1].offset, segments[1].compression),
            (main_at, Compression::Zstd)
        );
        assert_eq!(segments[1].entries.len(), 4);
        assert_eq!(
            cat(&image, "kernel/x86/microcode/GenuineIntel.bin").unwrap(),
            ucode
        );
        assert_eq!(
            cat(&image, "/init").unwrap(),
            b"#!/bin/sh\nexec /sbin/init\n"
        );
        let listing = format_listing(&segments);
        assert!(
            listing.contains(&format!("segment 1: offset 0x{main_at:x}, zstd, 4 entries")),
            "{listing}"
        );
    }

    fn run_sh(dir: &Path, script: &str) -> Vec<u8> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn reads_and_extracts_gnu_cpio_archives() {
        if !have("cpio") {
            eprintln!("SKIP reads_and_extracts_gnu_cpio_archives: GNU cpio is not installed (apt-get install cpio)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/one"), b"one\n").unwrap();
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(tree.join("a/b/big"), &big).unwrap();
        fs::write(tree.join("empty"), b"").unwrap();
        fs::write(tree.join("with space"), b"spaced").unwrap();
        std::os::unix::fs::symlink("a/one", tree.join("link")).unwrap();
        fs::hard_link(tree.join("a/one"), tree.join("a/hard")).unwrap();
        fs::set_permissions(tree.join("a/b/big"), fs::Permissions::from_mode(0o750)).unwrap();

        let image = tmp.path().join("gnu.cpio");
        run_sh(
            &tree,
            &format!("find . | cpio -o -H newc --quiet > '{}'", image.display()),
        );
        let found: BTreeSet<String> = String::from_utf8(run_sh(&tree, "find ."))
            .unwrap()
            .lines()
            .map(display_name)
            .collect();
        let segments = read_segments(&image).unwrap();
        assert_eq!(segments.len(), 1);
        let listed: BTreeSet<String> = segments[0].entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(listed, found);
        assert_eq!(segments[0].entries.len(), found.len());
        assert_eq!(entry(&segments[0], "a/b/big").mode, 0o100750);
        assert_eq!(cat(&image, "a/b/big").unwrap(), big);
        assert_eq!(cat(&image, "a/hard").unwrap(), b"one\n");
        assert_eq!(cat(&image, "link").unwrap(), b"one\n");

        let dest = tmp.path().join("ours");
        let summary = extract(&image, &dest).unwrap();
        assert_eq!(summary.hardlinks, 1);
        for rel in ["a/one", "a/hard", "a/b/big", "empty", "with space"] {
            assert_eq!(
                fs::read(dest.join(rel)).unwrap(),
                fs::read(tree.join(rel)).unwrap(),
                "{rel}"
            );
        }
        let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("a/one"), ino("a/hard"));
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("a/one")
        );
        assert_eq!(
            fs::metadata(dest.join("a/b/big")).unwrap().mode() & 0o777,
            0o750
        );
    }

    #[test]
    fn gnu_cpio_extracts_our_archive_like_we_do() {
        if !have("cpio") {
            eprintln!("SKIP gnu_cpio_extracts_our_archive_like_we_do: GNU cpio is not installed (apt-get install cpio)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let files: [(&str, u32, &[u8]); 4] = [
            ("etc/hostname", 0o100644, b"anemos\n"),
            ("usr/bin/tool", 0o100755, b"\x7fELF pretend"),
            ("usr/share/empty", 0o100600, b""),
            ("root/.profile", 0o100640, b"export PS1='# '\n"),
        ];
        let mut entries = vec![
            dir("."),
            dir("etc"),
            dir("usr"),
            dir("usr/bin"),
            dir("usr/share"),
            dir("root"),
        ];
        entries.extend(files.iter().map(|(p, m, d)| E::new(p, *m, d)));
        entries.push(symlink("bin", "usr/bin"));
        let image = write_image(&tmp, "ours.cpio", &archive(&entries));

        let gnu = tmp.path().join("gnu");
        fs::create_dir(&gnu).unwrap();
        run_sh(&gnu, &format!("cpio -idm --quiet < '{}'", image.display()));
        let ours = tmp.path().join("ours");
        extract(&image, &ours).unwrap();
        assert_eq!(tree_paths(&gnu), tree_paths(&ours));
        for (path, mode, data) in files {
            for root in [&gnu, &ours] {
                let meta = fs::metadata(root.join(path)).unwrap();
                assert_eq!(
                    fs::read(root.join(path)).unwrap(),
                    data,
                    "{}",
                    root.join(path).display()
                );
                assert_eq!(meta.mode() & 0o777, mode & 0o777, "{path}");
                assert_eq!(meta.mtime(), 1_700_000_000, "{path}");
            }
        }
        assert_eq!(
            fs::read_link(gnu.join("bin")).unwrap(),
            fs::read_link(ours.join("bin")).unwrap()
        );
    }

    /// A Debian initrd on this machine: /boot/initrd.img-*, or one built with mkinitramfs
    /// for an installed kernel.
    fn debian_initrd(tmp: &Path) -> Option<PathBuf> {
        let mut boot: Vec<PathBuf> = fs::read_dir("/boot")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("initrd.img-"))
            })
            .collect();
        boot.sort();
        if let Some(found) = boot.pop() {
            return Some(found);
        }
        if !have("mkinitramfs") {
            return None;
        }
        let version = fs::read_dir("/lib/modules")
            .ok()?
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let v = e.file_name().to_string_lossy().into_owned();
                Path::new(&format!("/boot/config-{v}"))
                    .exists()
                    .then_some(v)
            })?;
        let out = tmp.join("built.img");
        let status = Command::new("mkinitramfs")
            .arg("-o")
            .arg(&out)
            .arg(version)
            .status()
            .ok()?;
        status.success().then_some(out)
    }

    #[test]
    fn debian_initrd_matches_lsinitramfs() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(initrd) = debian_initrd(tmp.path()) else {
            eprintln!("SKIP debian_initrd_matches_lsinitramfs: no /boot/initrd.img-* and no kernel for mkinitramfs");
            return;
        };
        if !have("lsinitramfs") {
            eprintln!("SKIP debian_initrd_matches_lsinitramfs: lsinitramfs missing (apt-get install initramfs-tools-core)");
            return;
        }
        let started = Instant::now();
        let segments = read_segments(&initrd).unwrap();
        let ours_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let listed = run_sh(tmp.path(), &format!("lsinitramfs '{}'", initrd.display()));
        let theirs_ms = started.elapsed().as_millis();
        let mut theirs: Vec<String> = String::from_utf8_lossy(&listed)
            .lines()
            .map(display_name)
            .collect();
        let mut ours: Vec<String> = segments
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.path.clone())
            .collect();
        theirs.sort();
        ours.sort();
        let size = fs::metadata(&initrd).unwrap().len();
        let uncompressed: u64 = segments.iter().map(|s| s.uncompressed_size).sum();
        eprintln!(
            "{}: {size} bytes, {} segments ({:?}), {} entries, {uncompressed} bytes uncompressed; \
             read_segments {ours_ms} ms, lsinitramfs {theirs_ms} ms",
            initrd.display(),
            segments.len(),
            segments.iter().map(|s| s.compression).collect::<Vec<_>>(),
            ours.len()
        );
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours, theirs);
        let last = segments.last().unwrap();
        let bytes = fs::read(&initrd).unwrap();
        let end = (last.offset + last.compressed_len) as usize;
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "only padding after the last segment"
        );

        let dest = tmp.path().join("x");
        let started = Instant::now();
        let summary = extract(&initrd, &dest).unwrap();
        eprintln!("extract: {summary} in {} ms", started.elapsed().as_millis());
        for e in segments
            .iter()
            .flat_map(|s| &s.entries)
            .filter(|e| e.is_file() && e.nlink < 2)
        {
            let on_disk = fs::symlink_metadata(dest.join(&e.path)).unwrap();
            assert_eq!(on_disk.len(), e.size, "{}", e.path);
        }
        if let Some(init) = last
            .entries
            .iter()
            .find(|e| e.path == "init" && e.is_file())
        {
            assert_eq!(cat(&initrd, "/init").unwrap().len() as u64, init.size);
        }
    }
}
