//! Layers as the worker produces them: an uncompressed tar streamed in through `Write`, hashed
//! on the way (the diff ID), compressed and hashed again (the blob digest) into a temp file,
//! and made durable as a blob by [`LayerWriter::finish`]. Memory does not grow with the layer.

use crate::compression::{Compression, Encoder};
use crate::digest::{Digest, HashingWriter, ThreadHashingWriter};
use crate::durable::EarlyWriteback;
use crate::error::StoreError;
use crate::lock::Lease;
use crate::pieces::{BlobKind, BlobReader, Piece, PieceSink, Source, SpliceWrite};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;

/// A layer blob in the store, as an image manifest and config refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDescriptor {
    /// The layer media type (`application/vnd.oci.image.layer.v1.tar+gzip`, or a docker one).
    pub media_type: String,
    /// The digest of the blob as stored (compressed).
    pub digest: Digest,
    /// The size of the blob as stored.
    pub size: u64,
    /// The digest of the uncompressed tar: what the image config lists in `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// The length of the uncompressed tar, if known (`docker images` shows the sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
}

type Inner = Encoder<BlobSink>;

/// The uncompressed tar on its way in, hashed for the diff ID: on a thread of its own beside
/// the writes for a plain layer (the one pass over its bytes, the blob is the tar), in place
/// for a compressed one (the compressor is the slow part, on threads of its own).
enum TarIn {
    Plain(ThreadHashingWriter<Inner>),
    Compressed(HashingWriter<Inner>),
}

/// Where the blob bytes (after compression) go. A compressed blob is hashed for its digest;
/// an uncompressed one is the tar itself, so its digest is the diff ID, already computed on
/// the way in, and it is only counted (hashing every layer twice cost ~0.3 s per 500 MB).
/// Of an uncompressed one, the ranges of stored blobs given to [`LayerWriter::write_from`]
/// are not written but kept as pieces (`pieces.rs`).
enum BlobSink {
    Hashed(HashingWriter<BufWriter<fs_err::File>>),
    Counted {
        out: BufWriter<fs_err::File>,
        pieces: PieceSink,
    },
}

impl BlobSink {
    /// The writer, the blob digest (`None` when counted only), the blob size and, for an
    /// uncompressed one, its pieces.
    fn finish(
        self,
    ) -> (
        BufWriter<fs_err::File>,
        Option<Digest>,
        u64,
        Option<PieceSink>,
    ) {
        match self {
            BlobSink::Hashed(w) => {
                let (out, digest, size) = w.finish();
                (out, Some(digest), size, None)
            }
            BlobSink::Counted { out, pieces } => {
                let size = pieces.pos;
                (out, None, size, Some(pieces))
            }
        }
    }
}

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlobSink::Hashed(w) => w.write(buf),
            BlobSink::Counted { out, pieces } => {
                pieces.pass(buf, out)?;
                Ok(buf.len())
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlobSink::Hashed(w) => w.flush(),
            BlobSink::Counted { out, .. } => out.flush(),
        }
    }
}

/// Streams one layer into the store.
///
/// ```no_run
/// use strata_store::{Compression, Store};
/// use std::io::Write;
///
/// let store = Store::open("/var/lib/strata")?;
/// let mut writer = store.layer_writer(Compression::Gzip)?;
/// let mut tar = tar::Builder::new(&mut writer);
/// // ... append the files of the layer ...
/// tar.finish()?;
/// drop(tar);
/// let layer = writer.finish()?;
/// assert_eq!(layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LayerWriter {
    store: Store,
    compression: Compression,
    out: TarIn,
    writeback: EarlyWriteback,
    tmp: tempfile::NamedTempFile,
    /// The buffer of [`LayerWriter::write_from`], kept between calls.
    splice_buf: Vec<u8>,
    _lease: Lease,
}

impl std::fmt::Debug for LayerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter")
            .field("compression", &self.compression)
            .field("tmp", &self.tmp.path())
            .finish()
    }
}

impl Store {
    /// A writer for a new layer, compressed with `compression`. It holds a [`Lease`] until
    /// finished or dropped.
    pub fn layer_writer(&self, compression: Compression) -> Result<LayerWriter, StoreError> {
        let lease = self.lease()?;
        let tmp = self.staging("write a layer")?.temp_file()?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(StoreError::io("open", tmp.path()))?;
        let writeback = self.blob_writeback(&file, tmp.path())?;
        let file = fs_err::File::from_parts(file, tmp.path());
        let out = BufWriter::with_capacity(1 << 20, file);
        let blob = match compression {
            Compression::None => BlobSink::Counted {
                out,
                pieces: PieceSink::default(),
            },
            Compression::Gzip | Compression::Zstd => BlobSink::Hashed(HashingWriter::new(out)),
        };
        let enc =
            Encoder::new(compression, blob).map_err(StoreError::io("compress", tmp.path()))?;
        let out = match compression {
            Compression::None => TarIn::Plain(ThreadHashingWriter::new(enc)),
            Compression::Gzip | Compression::Zstd => TarIn::Compressed(HashingWriter::new(enc)),
        };
        Ok(LayerWriter {
            store: self.clone(),
            compression,
            out,
            writeback,
            tmp,
            splice_buf: Vec::new(),
            _lease: lease,
        })
    }
}

impl Store {
    /// The uncompressed tar of a stored layer, whatever its compression. (Create it on the
    /// thread that reads it.)
    pub fn layer_reader(
        &self,
        layer: &LayerDescriptor,
    ) -> Result<Box<dyn std::io::Read>, StoreError> {
        let file = self.open_blob(&layer.digest)?;
        crate::compression::decompressed(file).map_err(StoreError::stream(format!(
            "decompress layer {}",
            layer.digest
        )))
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.out {
            TarIn::Plain(w) => w.write(buf)?,
            TarIn::Compressed(w) => w.write(buf)?,
        };
        self.writeback.wrote(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            TarIn::Plain(w) => w.flush(),
            TarIn::Compressed(w) => w.flush(),
        }
    }
}

impl LayerWriter {
    /// Bytes of uncompressed tar written so far.
    pub fn uncompressed_len(&self) -> u64 {
        match &self.out {
            TarIn::Plain(w) => w.count(),
            TarIn::Compressed(w) => w.count(),
        }
    }

    /// Finishes compression, makes the blob durable and returns its descriptor. A plain
    /// layer of which at least half came from [`LayerWriter::write_from`] is stored pieced
    /// (its own bytes and a table of the rest); one of less is written whole.
    pub fn finish(self) -> Result<LayerDescriptor, StoreError> {
        let path = self.tmp.path().to_owned();
        let (enc, diff_id, uncompressed) = match self.out {
            TarIn::Plain(w) => w.finish().map_err(StoreError::io("write", &path))?,
            TarIn::Compressed(w) => w.finish(),
        };
        let blob = enc.finish().map_err(StoreError::io("compress", &path))?;
        let (mut buf, digest, size, pieces) = blob.finish();
        let digest = digest.unwrap_or_else(|| diff_id.clone());
        let mut kind = BlobKind::Whole;
        let mut tmp = self.tmp.into_temp_path();
        if let Some(pieces) = pieces.filter(|p| p.spliced > 0) {
            let own = pieces.own;
            let spliced = pieces.spliced;
            let pieces = pieces.into_pieces();
            if spliced >= size - spliced {
                crate::pieces::write_table(&mut buf, own, &pieces)
                    .map_err(StoreError::io("write", &path))?;
                kind = BlobKind::Pieced;
            } else {
                buf.flush().map_err(StoreError::io("write", &path))?;
                tmp = self.store.flatten(&tmp, &pieces)?;
            }
        }
        buf.into_inner()
            .map_err(|e| StoreError::io("write", &path)(e.into_error()))?;
        self.writeback.finish();
        self.store.persist_blob_as(tmp, &digest, kind)?;
        Ok(LayerDescriptor {
            media_type: self.compression.media_type().to_owned(),
            digest,
            size,
            diff_id,
            uncompressed_size: Some(uncompressed),
        })
    }
}

impl SpliceWrite for LayerWriter {
    /// Of a plain layer, the ranges of whole blobs among these bytes are hashed (the diff ID
    /// is of every byte) but kept as pieces, not written; a pieced blob's own bytes are
    /// written. A compressed layer compresses them all.
    fn write_from(&mut self, blob: &BlobReader, offset: u64, len: u64) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > blob.len()) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let TarIn::Plain(w) = &mut self.out else {
            return crate::pieces::copy_range(blob, offset, len, self);
        };
        let mut buf = std::mem::take(&mut self.splice_buf);
        buf.resize(len.min(1 << 20) as usize, 0);
        for seg in blob.segments(offset, len) {
            let pos = w.count();
            let through_sink = match (seg.source, w.get_mut()) {
                (Some(source), Encoder::None(BlobSink::Counted { pieces, .. })) => {
                    pieces.splice(pos, seg.len, source, seg.offset);
                    true
                }
                _ => false,
            };
            let mut at = seg.offset;
            let end = seg.offset + seg.len;
            while at < end {
                let n = (end - at).min(buf.len() as u64) as usize;
                seg.file.read_exact_at(&mut buf[..n], at)?;
                w.write_all(&buf[..n])?;
                if !through_sink {
                    self.writeback.wrote(n as u64);
                }
                at += n as u64;
            }
        }
        self.splice_buf = buf;
        Ok(())
    }
}

impl Store {
    /// A whole blob's temp file with the bytes of `pieces`, whose own bytes are in `own`.
    fn flatten(
        &self,
        own: &std::path::Path,
        pieces: &[Piece],
    ) -> Result<tempfile::TempPath, StoreError> {
        let tmp = self.staging("write a layer")?.temp_file()?;
        let out = tmp.as_file();
        let mut writeback = self.blob_writeback(out, tmp.path())?;
        let own_file = fs_err::File::open(own).map_err(StoreError::io("open", own))?;
        let mut sources: Vec<(Digest, fs_err::File)> = Vec::new();
        for p in pieces {
            let (file, at) = match &p.source {
                Source::Own(at) => (&own_file, *at),
                Source::Blob(d, at) => {
                    if !sources.iter().any(|(x, _)| x == d) {
                        let path = self.blob_path(d);
                        let f = fs_err::File::open(&path)
                            .map_err(StoreError::io("open blob", &path))?;
                        sources.push((d.clone(), f));
                    }
                    let (_, f) = sources.iter().find(|(x, _)| x == d).expect("just opened");
                    (f, *at)
                }
            };
            let mut from = file.file();
            from.seek(io::SeekFrom::Start(at))
                .map_err(StoreError::io("read", file.path()))?;
            let copied = io::copy(&mut from.take(p.len), &mut &*out)
                .map_err(StoreError::io("write", tmp.path()))?;
            if copied != p.len {
                return Err(StoreError::io("read", file.path())(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            writeback.wrote(copied);
        }
        writeback.finish();
        Ok(tmp.into_temp_path())
    }
}
