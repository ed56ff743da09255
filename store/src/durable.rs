//! How bytes become durable: a temp file in the same directory (same filesystem), fsync,
//! rename over the target, fsync of the directory. A crash at any point leaves either the old
//! file or the new one, never a torn one.

use crate::error::StoreError;
use std::io::Write;
use std::path::Path;

/// Atomically replaces `path` with `bytes`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("store files live in a directory");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(StoreError::io("create a temp file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(StoreError::io("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("replace", path)(e.error))?;
    sync_dir(dir)
}

/// fsyncs a directory so that a rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}
