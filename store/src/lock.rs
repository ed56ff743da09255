//! Inter-process locks. strata is a CLI, not a daemon: several processes share one store, so
//! in-process mutexes are not enough. We use `flock(2)` on lock files in the store root:
//!
//! - `gc.lock`: every operation that reads or writes blobs holds it *shared* (a [`Lease`]);
//!   garbage collection takes it *exclusive*, so it never deletes a blob that a running import,
//!   load or build has written but not yet referenced, nor one a reader is about to open.
//! - `images.lock`: held exclusive around each read-modify-write of `images.json`. Readers do
//!   not take it: the file is replaced atomically, so they see the old or the new index.
//!
//! A flock belongs to an open file description: two opens in one process conflict like two
//! processes do, so a thread holding a [`Lease`] must not run a blocking garbage collection.

use crate::error::StoreError;
use rustix::fs::FlockOperation;
use std::path::Path;

/// A held flock; released on drop (closing the file).
#[derive(Debug)]
pub(crate) struct FileLock {
    /// `None`: [`FileLock::shared_if_exists`] found no lock file.
    _file: Option<fs_err::File>,
}

impl FileLock {
    fn open(path: &Path) -> Result<fs_err::File, StoreError> {
        fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(StoreError::io("open lock file", path))
    }

    /// Waits for a shared lock on `path`.
    pub(crate) fn shared(path: &Path) -> Result<FileLock, StoreError> {
        let file = Self::open(path)?;
        rustix::fs::flock(&file, FlockOperation::LockShared)
            .map_err(|e| StoreError::io("lock", path)(e.into()))?;
        Ok(FileLock { _file: Some(file) })
    }

    /// Waits for a shared lock on `path` without creating or writing anything, for a store
    /// opened with `Store::open_read_only`: the lock file is opened for reading (flock needs
    /// no more), and if it does not exist no lock is taken (no writer of that store has
    /// started yet).
    pub(crate) fn shared_if_exists(path: &Path) -> Result<FileLock, StoreError> {
        let file = match fs_err::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileLock { _file: None });
            }
            Err(e) => return Err(StoreError::io("open lock file", path)(e)),
        };
        rustix::fs::flock(&file, FlockOperation::LockShared)
            .map_err(|e| StoreError::io("lock", path)(e.into()))?;
        Ok(FileLock { _file: Some(file) })
    }

    /// Waits for an exclusive lock on `path`.
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock, StoreError> {
        let file = Self::open(path)?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io("lock", path)(e.into()))?;
        Ok(FileLock { _file: Some(file) })
    }

    /// An exclusive lock on `path` if nobody holds any lock on it now.
    pub(crate) fn try_exclusive(path: &Path) -> Result<Option<FileLock>, StoreError> {
        let file = Self::open(path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { _file: Some(file) })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io("lock", path)(e.into())),
        }
    }

    /// Takes an exclusive lock on an already open file (a staging dir's owner lock).
    pub(crate) fn exclusive_on(file: fs_err::File) -> Result<FileLock, StoreError> {
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io("lock", file.path())(e.into()))?;
        Ok(FileLock { _file: Some(file) })
    }
}

/// Keeps garbage collection away while held: blobs written or read under a lease cannot be
/// collected until it is dropped. [`crate::LayerWriter`] holds one; a build should hold one from
/// its first layer to [`crate::Store::commit_image`] so that a concurrent `image prune` cannot
/// remove layers that no image references yet.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

impl Lease {
    pub(crate) fn new(lock: FileLock) -> Lease {
        Lease { _lock: lock }
    }
}
