//! Durable replacement of a whole file: what every write of this crate goes through.
//!
//! A reader (another strata process included) sees the old file or the new one, never a
//! half-written one: the bytes go to a temporary file in the destination's directory (same
//! filesystem), are fsynced, renamed over the destination, and the directory is fsynced so
//! the rename survives a crash. Two writers of one path both succeed; the last rename wins.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `dest` with `bytes`, durably and atomically. `dest`'s directory must exist.
pub(crate) fn replace(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = dest
        .parent()
        .expect("destinations are files inside a directory");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// fsyncs a directory so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}
