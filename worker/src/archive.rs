//! ADD of a local archive: detection by content; the extraction itself is
//! [`strata_store::confined::extract`] with [`ExtractOptions::add`]'s rules (names cleaned
//! below the destination, resolved inside the image's root, `.wh.` names refused, `--chown`
//! on every entry, the unpack limit).
//!
//! A file is an archive when, after undoing a gzip, bzip2, xz or zstd wrapper recognised by
//! its magic bytes, its first 512 bytes are a valid tar header (what BuildKit checks). Then
//! every later problem is an error, never a silent copy of the file.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use strata_store::confined::{self, ConfinedRoot, ExtractError, ExtractOptions, Extracted};

/// Compression of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn decompressor<'a>(c: Compression, r: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// Opens `file` as an archive: `None` when it is not one (then it is copied as a file).
pub(crate) fn detect(file: &std::fs::File) -> io::Result<Option<Compression>> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::new(f);
    let c = sniff(r.fill_buf()?);
    let mut d = match decompressor(c, r) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < 512 {
        match d.read(&mut block[got..]) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => got += n,
        }
    }
    Ok(valid_header(&block).then_some(c))
}

fn valid_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let h = tar::Header::from_byte_slice(block);
    let Ok(sum) = h.cksum() else { return false };
    let mut computed: u32 = block.iter().map(|b| u32::from(*b)).sum();
    computed -= block[148..156].iter().map(|b| u32::from(*b)).sum::<u32>();
    computed += 8 * u32::from(b' ');
    sum == computed
}

/// Extracts `file` (detected as `compression`) into `root` as `opts` says.
pub(crate) fn extract(
    file: &std::fs::File,
    compression: Compression,
    root: &ConfinedRoot,
    opts: &ExtractOptions,
) -> Result<Extracted, ExtractError> {
    let mut f = file.try_clone().map_err(ExtractError::Read)?;
    f.seek(SeekFrom::Start(0)).map_err(ExtractError::Read)?;
    let d = decompressor(compression, BufReader::new(f)).map_err(ExtractError::Read)?;
    confined::extract(root, d, opts)
}
