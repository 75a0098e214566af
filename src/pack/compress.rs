//! Compression of image segments and detection/decoding of compressed inputs.
//!
//! The kernel's initramfs unpacker reads gzip, zstd and xz (among others). For xz it uses XZ
//! Embedded, which supports only the CRC32 integrity check, so we never write liblzma's default
//! CRC64.

use std::io::{self, BufRead, BufReader, Read, Write};

/// Segment compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

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

/// Detects the compression of a stream from its first bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// Wraps `r` in the decoder its magic bytes call for (or passes it through).
pub fn auto_decoder<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br.fill_buf()?.to_vec();
    Ok(match detect(&head) {
        Compression::None => Box::new(br),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(br)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_is_detected() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for kind in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
        ] {
            let ((), out) =
                compress_with::<_, _, io::Error>(kind, None, Vec::new(), |w| w.write_all(&data))
                    .unwrap();
            assert_eq!(detect(&out), kind, "{kind:?}");
            let mut back = Vec::new();
            auto_decoder(&out[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{kind:?}");
        }
    }

    #[test]
    fn xz_uses_crc32_check() {
        let ((), out) = compress_with::<_, _, io::Error>(Compression::Xz, None, Vec::new(), |w| {
            w.write_all(b"x")
        })
        .unwrap();
        // Stream flags live in bytes 6..8 of the xz header; check type 0x01 = CRC32.
        assert_eq!(
            out[7] & 0x0f,
            0x01,
            "xz stream check must be CRC32 for the kernel"
        );
    }
}
