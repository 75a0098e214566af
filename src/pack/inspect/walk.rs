//! The walker: reads an image segment by segment and entry by entry, streaming through
//! compressed data, and hands each entry to a [`Visitor`].

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{display_name, EntryInfo, InspectError, Segment, MAX_HEADER_LEN, MAX_LINK_TARGET};
use crate::codec::{self, Compression, Magic, Member};

/// Read buffer of the image file.
const FILE_BUFFER: usize = 256 * 1024;

/// Read buffer of a decompressed stream.
const STREAM_BUFFER: usize = 128 * 1024;

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

/// What the first bytes of a segment say it is.
#[derive(Debug, PartialEq, Eq)]
enum Detected {
    Cpio,
    Compressed(Compression),
    Unsupported(&'static str),
    OldCpio,
    Unknown,
}

/// The cpio magic first (newc `070701`/`070702`, old `070707`), then the codec's.
fn detect(head: &[u8]) -> Detected {
    if head.starts_with(b"070701") || head.starts_with(b"070702") {
        return Detected::Cpio;
    }
    if head.starts_with(b"070707") {
        return Detected::OldCpio;
    }
    match codec::detect(head) {
        Magic::Known(compression) => Detected::Compressed(compression),
        Magic::Unsupported(method) => Detected::Unsupported(method),
        Magic::Plain => Detected::Unknown,
    }
}

/// Decodes one member/frame/stream (a segment), stopping at its end.
struct Members<'a, 'm> {
    #[allow(dead_code)] // kept for error messages and debugging of the segment being read
    compression: Compression,
    active: Option<Member<&'a mut FileSrc<'m>>>,
}

impl Read for Members<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(decoder) = self.active.as_mut() else {
            return Ok(0);
        };
        let n = decoder.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        // One gzip member / zstd frame / xz stream is one segment, as in the kernel's
        // unpack_to_rootfs(), which resumes its segment loop after each decompressor
        // returns. A following member is reported as the next segment.
        if let Some(finished) = self.active.take() {
            let _ = finished.into_inner();
        }
        Ok(0)
    }
}

/// Where an entry handed to a [`Visitor`] comes from.
pub(super) struct EntryAt {
    /// Offset of its segment in the image.
    pub(super) segment_offset: u64,
    /// Index of its cpio archive, counted over the whole image.
    pub(super) archive: usize,
}

/// Why a visitor stopped.
pub(super) enum VisitError {
    /// Reading the entry's data failed; the walker adds the position.
    Read(io::Error),
    /// Anything else, already a complete error.
    Fail(InspectError),
}

/// Receives each entry while the image is walked. `data` yields a regular file's content and
/// nothing for other entries; what the visitor leaves unread is skipped.
pub(super) trait Visitor {
    fn visit(
        &mut self,
        at: &EntryAt,
        info: &EntryInfo,
        data: &mut dyn Read,
    ) -> Result<(), VisitError>;
}

/// A visitor that only lists.
pub(super) struct ListOnly;

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
pub(super) fn walk(image: &Path, visitor: &mut dyn Visitor) -> Result<Vec<Segment>, InspectError> {
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
                    bytes: crate::util::hex_spaced(&head),
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
            let first = Member::new(compression, &mut *src).map_err(|e| {
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
pub(super) fn link_key(info: &EntryInfo) -> (u32, u32, u32) {
    (info.dev.0, info.dev.1, info.ino)
}
