//! Layer compression. Input is recognised by its magic bytes, never by a media type or a file
//! name (both lie); output is gzip by default because every tool reads it, zstd on request.

use crate::media_type;
use std::io::{self, BufRead, BufReader, Read, Write};

/// How the store compresses the layers it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`), what docker writes and reads.
    #[default]
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`): faster and smaller.
    Zstd,
    /// No compression (`application/vnd.oci.image.layer.v1.tar`).
    None,
}

/// gzip level: 6 is zlib's (and Go's) default, what docker and BuildKit write.
const GZIP_LEVEL: u32 = 6;
/// zstd level: zstd's default.
const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            Compression::None => media_type::OCI_LAYER,
        }
    }

    /// The compression a layer media type names (OCI's three, docker's gzip).
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            media_type::OCI_LAYER_GZIP | media_type::DOCKER_LAYER_GZIP => Some(Compression::Gzip),
            media_type::OCI_LAYER_ZSTD => Some(Compression::Zstd),
            media_type::OCI_LAYER => Some(Compression::None),
            _ => None,
        }
    }

    /// Parses `gzip`, `zstd` or `none` (`--compression`).
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" | "uncompressed" => Some(Compression::None),
            _ => None,
        }
    }

    /// Compresses everything `input` yields into `output` at the store's levels (what its own
    /// layers get) and returns `output`.
    pub fn compress<W: Write>(self, mut input: impl Read, output: W) -> io::Result<W> {
        let mut encoder = Encoder::new(self, output)?;
        io::copy(&mut input, &mut encoder)?;
        encoder.finish()
    }

    /// Sniffs the compression of a stream from its first bytes.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A stream decompressed according to its magic bytes.
pub(crate) fn decompressed<'a, R: Read + 'a>(input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(sniffed(input)?.1)
}

/// A stream decompressed according to its magic bytes, and the compression they named (for
/// `None`, what the reader yields is `input`'s bytes themselves).
pub(crate) fn sniffed<'a, R: Read + 'a>(input: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let compression = Compression::detect(input.fill_buf()?);
    let reader: Box<dyn Read + 'a> = match compression {
        // MultiGzDecoder: pigz and parallel writers emit several members; all are one stream.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    };
    Ok((compression, reader))
}

/// Threads for gzip: the machine's cores, at most 8 (the bytes do not depend on it).
fn gzip_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// A compressing writer over `W`.
pub(crate) enum Encoder<W: Write> {
    Gzip(crate::gzip::ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(crate::gzip::ParallelGzip::new(
                inner,
                GZIP_LEVEL,
                gzip_threads(),
            )?),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?)
            }
            Compression::None => Encoder::None(inner),
        })
    }

    /// Writes the trailer and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips_through_detection() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let bytes = c.compress(&data[..], Vec::new()).unwrap();
            assert_eq!(Compression::detect(&bytes), c);
            assert_eq!(Compression::from_media_type(c.media_type()), Some(c));
            let mut out = Vec::new();
            decompressed(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c:?}");
        }
        let docker = media_type::DOCKER_LAYER_GZIP;
        assert_eq!(
            Compression::from_media_type(docker),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type(media_type::OCI_CONFIG), None);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let bytes = Compression::Gzip
            .compress(&[7u8; 50_000][..], Vec::new())
            .unwrap();
        let mut out = Vec::new();
        let res = decompressed(&bytes[..bytes.len() - 10])
            .unwrap()
            .read_to_end(&mut out);
        assert!(res.is_err());
    }
}
