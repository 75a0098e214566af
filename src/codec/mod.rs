//! Compression codecs: one [`Compression`] enum, one magic-byte detector, the encoder that
//! writes image segments and the decoders that read images, payloads, tarballs and module files.
//!
//! The kernel's initramfs unpacker reads gzip, zstd and xz (among others). For xz it uses XZ
//! Embedded, which supports only the CRC32 integrity check, so we never write liblzma's default
//! CRC64.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

/// A compression codec (or none). The packer writes segments with it, the readers detect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Stored as is.
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

/// What the first bytes of a stream say about its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// A codec we read and write.
    Known(Compression),
    /// A codec the kernel may read but we do not (bzip2, lzma, lz4, lzo), by name.
    Unsupported(&'static str),
    /// No compression magic: plain data.
    Plain,
}

/// Magic bytes of every codec we know, supported or not.
const SIGNATURES: [(&[u8], Magic); 7] = [
    (&[0x1f, 0x8b], Magic::Known(Compression::Gzip)),
    (&[0x28, 0xb5, 0x2f, 0xfd], Magic::Known(Compression::Zstd)),
    (
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        Magic::Known(Compression::Xz),
    ),
    (b"BZh", Magic::Unsupported("bzip2")),
    (&[0x5d, 0x00, 0x00], Magic::Unsupported("lzma")),
    (&[0x02, 0x21, 0x4c, 0x18], Magic::Unsupported("lz4")),
    (&[0x89, b'L', b'Z', b'O'], Magic::Unsupported("lzo")),
];

/// The one magic-byte detector: what `head` (the first bytes of a stream) starts with.
pub fn detect(head: &[u8]) -> Magic {
    SIGNATURES
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map_or(Magic::Plain, |&(_, found)| found)
}

/// File-name suffixes of compressed files (kernel modules, firmware, tarballs).
const SUFFIXES: [(&str, Compression); 3] = [
    (".xz", Compression::Xz),
    (".zst", Compression::Zstd),
    (".gz", Compression::Gzip),
];

impl Compression {
    /// Default level for each codec, chosen for pack speed at a ratio close to the best.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 9,
            Compression::Zstd => 9,
            Compression::Xz => 6,
        }
    }

    /// The codec `head` starts with; [`Compression::None`] for plain data and for codecs we
    /// cannot read (see [`detect`] to tell those apart).
    pub fn of(head: &[u8]) -> Compression {
        match detect(head) {
            Magic::Known(kind) => kind,
            Magic::Unsupported(_) | Magic::Plain => Compression::None,
        }
    }

    /// Splits a compression suffix (`.xz`, `.zst`, `.gz`) off a file name.
    pub fn strip_suffix(name: &str) -> (&str, Compression) {
        SUFFIXES
            .iter()
            .find_map(|&(suffix, kind)| name.strip_suffix(suffix).map(|stem| (stem, kind)))
            .unwrap_or((name, Compression::None))
    }
}

/// Compresses everything `fill` writes into `out` and returns `fill`'s result and `out`.
pub fn compress_with<W, T, E>(
    kind: Compression,
    level: Option<i32>,
    out: W,
    fill: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<(T, W), E>
where
    W: Write,
    E: From<io::Error>,
{
    let level = level.unwrap_or(kind.default_level());
    match kind {
        Compression::None => {
            let mut out = out;
            let t = fill(&mut out)?;
            Ok((t, out))
        }
        Compression::Gzip => {
            let lvl = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(out, lvl);
            let t = fill(&mut enc)?;
            Ok((t, enc.finish()?))
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            // The kernel does not need a content checksum; keep frames small and standard.
            enc.include_checksum(false)?;
            let t = fill(&mut enc)?;
            Ok((t, enc.finish()?))
        }
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_easy_encoder(
                level.clamp(0, 9) as u32,
                liblzma::stream::Check::Crc32,
            )
            .map_err(io::Error::other)?;
            let mut enc = liblzma::write::XzEncoder::new_stream(out, stream);
            let t = fill(&mut enc)?;
            Ok((t, enc.finish()?))
        }
    }
}

/// Decodes a whole `kind` stream, every gzip member, zstd frame or xz stream of it, until the
/// input ends (a pass-through for [`Compression::None`]).
pub fn decoder<'a, R: BufRead + 'a>(kind: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
    })
}

/// Wraps `r` in the decoder its magic bytes call for (or passes it through).
pub fn auto_decoder<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let kind = Compression::of(br.fill_buf()?);
    decoder(kind, br)
}

/// Decodes all of `data` (a copy when `kind` is [`Compression::None`]).
pub fn decode_all(kind: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    decoder(kind, data)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Memory limit handed to the xz member decoder (the largest xz preset needs 64 MiB).
const XZ_MEMLIMIT: u64 = 1 << 30;

/// A decoder for exactly one gzip member, zstd frame or xz stream: it stops where that ends,
/// so the reader it consumed from is positioned right after it (see [`Member::into_inner`]).
pub enum Member<R: BufRead> {
    /// One gzip member.
    Gzip(flate2::bufread::GzDecoder<R>),
    /// One zstd frame.
    Zstd(zstd::stream::read::Decoder<'static, R>),
    /// One xz stream.
    Xz(liblzma::bufread::XzDecoder<R>),
}

impl<R: BufRead> Member<R> {
    /// Starts decoding one `kind` member from `source`; [`Compression::None`] is an error.
    pub fn new(kind: Compression, source: R) -> io::Result<Self> {
        match kind {
            Compression::Gzip => Ok(Member::Gzip(flate2::bufread::GzDecoder::new(source))),
            Compression::Zstd => Ok(Member::Zstd(
                zstd::stream::read::Decoder::with_buffer(source)?.single_frame(),
            )),
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                    .map_err(io::Error::other)?;
                Ok(Member::Xz(liblzma::bufread::XzDecoder::new_stream(
                    source, stream,
                )))
            }
            Compression::None => Err(io::Error::other("not a compressed segment")),
        }
    }

    /// The source, positioned after what the decoder consumed.
    pub fn into_inner(self) -> R {
        match self {
            Member::Gzip(d) => d.into_inner(),
            Member::Zstd(d) => d.finish(),
            Member::Xz(d) => d.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Member<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Member::Gzip(d) => d.read(buf),
            Member::Zstd(d) => d.read(buf),
            Member::Xz(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Xz,
    ];

    fn compress(kind: Compression, data: &[u8]) -> Vec<u8> {
        compress_with::<_, _, io::Error>(kind, None, Vec::new(), |w| w.write_all(data))
            .unwrap()
            .1
    }

    #[test]
    fn every_codec_round_trips_and_is_detected() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for kind in ALL {
            let out = compress(kind, &data);
            assert_eq!(Compression::of(&out), kind, "{kind:?}");
            let mut back = Vec::new();
            auto_decoder(&out[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{kind:?}");
            assert_eq!(decode_all(kind, &out).unwrap(), data, "{kind:?}");
        }
    }

    #[test]
    fn xz_uses_crc32_check() {
        let out = compress(Compression::Xz, b"x");
        // Stream flags live in bytes 6..8 of the xz header; check type 0x01 = CRC32.
        assert_eq!(
            out[7] & 0x0f,
            0x01,
            "xz stream check must be CRC32 for the kernel"
        );
    }

    #[test]
    fn unsupported_and_plain_magic() {
        assert_eq!(detect(b"BZh91AY"), Magic::Unsupported("bzip2"));
        assert_eq!(
            detect(&[0x89, b'L', b'Z', b'O', 0]),
            Magic::Unsupported("lzo")
        );
        assert_eq!(detect(b"070701"), Magic::Plain);
        assert_eq!(Compression::of(b"BZh91AY"), Compression::None);
    }

    #[test]
    fn suffixes() {
        assert_eq!(
            Compression::strip_suffix("a.ko.xz"),
            ("a.ko", Compression::Xz)
        );
        assert_eq!(
            Compression::strip_suffix("a.ko.zst"),
            ("a.ko", Compression::Zstd)
        );
        assert_eq!(
            Compression::strip_suffix("a.ko.gz"),
            ("a.ko", Compression::Gzip)
        );
        assert_eq!(
            Compression::strip_suffix("a.ko"),
            ("a.ko", Compression::None)
        );
    }

    #[test]
    fn a_member_decoder_stops_at_its_member() {
        for kind in &ALL[1..] {
            let mut two = compress(*kind, b"first");
            let first_len = two.len();
            two.extend(compress(*kind, b"second"));
            let mut src = &two[..];
            let mut member = Member::new(*kind, &mut src).unwrap();
            let mut out = Vec::new();
            member.read_to_end(&mut out).unwrap();
            assert_eq!(out, b"first", "{kind}");
            let rest = member.into_inner();
            assert_eq!(rest.len(), two.len() - first_len, "{kind}");
        }
    }
}
