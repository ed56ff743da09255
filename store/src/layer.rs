//! Layers as the worker produces them: an uncompressed tar streamed in through `Write`, hashed
//! on the way (the diff ID), compressed and hashed again (the blob digest) into a temp file,
//! and made durable as a blob by [`LayerWriter::finish`]. Memory does not grow with the layer.

use crate::compression::{Compression, Encoder};
use crate::digest::{Digest, HashingWriter, ThreadHashingWriter};
use crate::durable::EarlyWriteback;
use crate::error::StoreError;
use crate::lock::Lease;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::io::{self, BufWriter, Write};

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
enum BlobSink {
    Hashed(HashingWriter<BufWriter<fs_err::File>>),
    Counted {
        out: BufWriter<fs_err::File>,
        count: u64,
    },
}

impl BlobSink {
    /// The writer, the blob digest (`None` when counted only) and the blob size.
    fn finish(self) -> (BufWriter<fs_err::File>, Option<Digest>, u64) {
        match self {
            BlobSink::Hashed(w) => {
                let (out, digest, size) = w.finish();
                (out, Some(digest), size)
            }
            BlobSink::Counted { out, count } => (out, None, count),
        }
    }
}

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlobSink::Hashed(w) => w.write(buf),
            BlobSink::Counted { out, count } => {
                let n = out.write(buf)?;
                *count += n as u64;
                Ok(n)
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
            Compression::None => BlobSink::Counted { out, count: 0 },
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

    /// Finishes compression, makes the blob durable and returns its descriptor.
    pub fn finish(self) -> Result<LayerDescriptor, StoreError> {
        let path = self.tmp.path().to_owned();
        let (enc, diff_id, uncompressed) = match self.out {
            TarIn::Plain(w) => w.finish().map_err(StoreError::io("write", &path))?,
            TarIn::Compressed(w) => w.finish(),
        };
        let blob = enc.finish().map_err(StoreError::io("compress", &path))?;
        let (buf, digest, size) = blob.finish();
        let digest = digest.unwrap_or_else(|| diff_id.clone());
        buf.into_inner()
            .map_err(|e| StoreError::io("write", &path)(e.into_error()))?;
        self.writeback.finish();
        self.store
            .persist_blob(self.tmp.into_temp_path(), &digest)?;
        Ok(LayerDescriptor {
            media_type: self.compression.media_type().to_owned(),
            digest,
            size,
            diff_id,
            uncompressed_size: Some(uncompressed),
        })
    }
}
