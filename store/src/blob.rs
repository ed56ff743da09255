//! Content-addressed blobs under `<root>/blobs/sha256/<hex>`. A blob appears only by rename
//! from the staging dir after its bytes were hashed and fsynced, so a blob's name is always
//! the verified digest of its content; a blob that does not match what the caller expected is
//! deleted and never becomes visible.

use crate::digest::{Digest, HashingWriter};
use crate::durable::{EarlyWriteback, Writeback, sync_dir};
use crate::error::StoreError;
use crate::lock::Lease;
use crate::pieces::{BlobKind, BlobReader};
use crate::store::Store;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A blob in the store: its digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The sha256 of its bytes.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// Manifests, configs and indexes larger than this are refused: they are JSON documents of a
/// few KiB, and an attacker's 100 MiB manifest should not be parsed (containerd's limit is 4 MiB).
pub(crate) const MAX_DOCUMENT: u64 = 4 << 20;

impl Store {
    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join(crate::pieces::BlobKind::Whole.dir())
            .join(digest.hex())
    }

    /// Whether the store has the blob (whole or pieced).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_file(digest).is_some()
    }

    /// The size of a blob: the length of the bytes it reads as.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        match fs_err::metadata(self.blob_path(digest)) {
            Ok(m) => return Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("inspect blob", self.blob_path(digest))(e)),
        }
        let pieced = self.pieces_path(digest);
        if !pieced.is_file() {
            return Err(StoreError::BlobNotFound(digest.clone()));
        }
        crate::pieces::len_of(&pieced)
    }

    /// Opens a blob for reading, as its bytes whether it is stored whole or pieced.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        self.open_blob_reader(digest)
    }

    /// Reads a small blob (a manifest, a config) whole; refuses blobs over 4 MiB.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let size = self.blob_size(digest)?;
        if size > MAX_DOCUMENT {
            return Err(StoreError::document(
                format!("document {digest}"),
                format!("{size} bytes is over the {MAX_DOCUMENT}-byte limit"),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(StoreError::io("read blob", self.blob_path(digest)))?;
        Ok(buf)
    }

    /// Streams `body` into the store and returns once the blob is durable. With `expected`,
    /// a body whose digest differs is rejected and leaves nothing behind.
    ///
    /// ```no_run
    /// # let store = strata_store::Store::open("/tmp/s")?;
    /// let blob = store.put_blob(None, &b"{}"[..])?;
    /// assert_eq!(blob.size, 2);
    /// assert!(store.has_blob(&blob.digest));
    /// # Ok::<(), strata_store::StoreError>(())
    /// ```
    pub fn put_blob(
        &self,
        expected: Option<&Digest>,
        mut body: impl Read,
    ) -> Result<BlobInfo, StoreError> {
        let mut w = self.blob_writer()?;
        io::copy(&mut body, &mut w).map_err(StoreError::stream("read blob content"))?;
        w.commit(expected)
    }

    /// Stores a small document held whole in memory (a config, a manifest): hashed first, so
    /// one the store already has is neither staged nor synced again (a no-op rebuild's config
    /// and manifest). With `expected`, bytes of another digest are rejected as by
    /// [`Store::put_blob`].
    pub fn put_document(
        &self,
        expected: Option<&Digest>,
        bytes: &[u8],
    ) -> Result<BlobInfo, StoreError> {
        let digest = Digest::of(bytes);
        if expected.is_none_or(|e| *e == digest) && self.has_blob(&digest) {
            return Ok(BlobInfo {
                digest,
                size: bytes.len() as u64,
            });
        }
        self.put_blob(expected, bytes)
    }

    /// A writer for a new blob; [`BlobWriter::commit`] makes it visible.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let lease = self.lease()?;
        let tmp = self.staging("write a blob")?.temp_file()?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(StoreError::io("open", tmp.path()))?;
        let writeback = self.blob_writeback(&file, tmp.path())?;
        let file = fs_err::File::from_parts(file, tmp.path());
        Ok(BlobWriter {
            store: self.clone(),
            out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, file)),
            writeback,
            tmp,
            _lease: lease,
        })
    }

    /// The [`EarlyWriteback`] of a blob being written to `file` (the temp file at `path`):
    /// synced step by step, or through a handle from [`Store::deferring_sync`] only started,
    /// since its one sync is the index write's.
    pub(crate) fn blob_writeback(
        &self,
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> Result<EarlyWriteback, StoreError> {
        let how = if self.defer_sync {
            Writeback::Start
        } else {
            Writeback::Sync
        };
        EarlyWriteback::new(file, how).map_err(StoreError::io("open", path))
    }

    /// Moves a fully written temp file into place as blob `digest` (computed by the caller
    /// from the bytes written): fsync, read-only, rename, dir fsync. An existing blob with that
    /// digest is kept and the temp file dropped. Through a handle from
    /// [`Store::deferring_sync`], the two fsyncs are left to the one `syncfs` before the next
    /// index write, and the blob is marked unsettled before its rename (`settle.rs`).
    pub(crate) fn persist_blob(
        &self,
        tmp: tempfile::TempPath,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.persist_blob_as(tmp, digest, BlobKind::Whole)
    }

    /// [`Store::persist_blob`] for a blob stored as `kind` (a pieced blob's file is its
    /// table: `pieces.rs`). A blob stored either way already is kept.
    pub(crate) fn persist_blob_as(
        &self,
        tmp: tempfile::TempPath,
        digest: &Digest,
        kind: BlobKind,
    ) -> Result<(), StoreError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let path = match kind {
            BlobKind::Whole => self.blob_path(digest),
            BlobKind::Pieced => self.pieces_path(digest),
        };
        if !self.defer_sync {
            fs_err::File::open(&*tmp)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("sync", &*tmp))?;
        }
        fs_err::set_permissions(&*tmp, std::fs::Permissions::from_mode(0o444))
            .map_err(StoreError::io("set permissions of", &*tmp))?;
        if self.defer_sync {
            self.mark_blob_unsettled(digest)?;
            // Never over another writer's copy: the sync of another process may have fsynced
            // that inode and dropped the marker already, and ours would then be unsynced.
            return match tmp.persist_noclobber(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(StoreError::io("write blob", &path)(e.error)),
            };
        }
        tmp.persist(&path)
            .map_err(|e| StoreError::io("write blob", &path)(e.error))?;
        Ok(sync_dir(path.parent().expect("blob paths have a parent"))?)
    }
}

/// A blob being written: `Write` into it, then [`BlobWriter::commit`]. Dropping it without
/// committing discards the bytes.
pub struct BlobWriter {
    store: Store,
    out: HashingWriter<BufWriter<fs_err::File>>,
    writeback: EarlyWriteback,
    tmp: tempfile::NamedTempFile,
    _lease: Lease,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("tmp", &self.tmp.path())
            .finish()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.writeback.wrote(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Verifies the bytes against `expected` (if given) and makes the blob durable and visible.
    pub fn commit(self, expected: Option<&Digest>) -> Result<BlobInfo, StoreError> {
        let (buf, digest, size) = self.out.finish();
        buf.into_inner()
            .map_err(|e| StoreError::io("write", self.tmp.path())(e.into_error()))?;
        self.writeback.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                what: "blob".into(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        self.store
            .persist_blob(self.tmp.into_temp_path(), &digest)?;
        Ok(BlobInfo { digest, size })
    }
}
