//! Durable writes, the one implementation every crate uses: bytes go to a temporary file in
//! the destination's directory (same filesystem), are fsynced, renamed over the destination,
//! and the directory is fsynced so the rename survives a crash. A reader (another strata
//! process included) sees the old file or the new one, never a torn one; of two writers of one
//! path, the last rename wins.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// A step of a durable write failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {}", path.display())]
pub struct DurableError {
    /// What was being done (`create a temp file in`, `write`, `replace`, `sync directory`).
    pub action: &'static str,
    /// The path it was done on.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl From<DurableError> for io::Error {
    /// For callers whose errors hold an `io::Error`: the kind is kept, the message names the
    /// step and the path.
    fn from(e: DurableError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

fn fail(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DurableError {
    let path = path.to_owned();
    move |source| DurableError {
        action,
        path,
        source,
    }
}

/// Atomically and durably replaces `path` with `bytes`. `path`'s directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], with the content streamed by `write` (through a buffer).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DurableError> {
    persist(written_temp(path, write)?, path)
}

/// Atomically replaces `path` with `bytes`, without fsync: readers (this process or another)
/// see the old file or the new one, never a torn one, and a killed process leaves one or the
/// other; but a power loss or a kernel crash may leave the old file, the new one, or an empty
/// one. Only for files whose loss or damage is a miss, never wrong data (the build cache's
/// records: a record that does not parse is a miss, and what it names is durable or
/// deleted after a crash, a miss too). Saves the two fsyncs of [`write_atomic`], which
/// dominate a small step.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    write_atomic_unsynced_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic_unsynced`], with the content streamed by `write` (through a buffer).
pub fn write_atomic_unsynced_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DurableError> {
    written_temp(path, write)?
        .persist(path)
        .map_err(|e| fail("replace", path)(e.error))?;
    Ok(())
}

/// [`write_atomic`] for a file whose filesystem `settle` may sync as a whole: `settle` runs
/// once the temporary file holds `bytes` and before its rename, and returns whether it synced
/// the filesystem of `path` (a `syncfs` started after those bytes were written, which makes
/// the temporary file durable too), in which case the temporary file's own fsync is skipped.
/// The image index uses it to make the blobs it names and itself durable with one sync where
/// it took two (`images.json`: the blobs' `syncfs`, then its own fsync).
pub fn write_atomic_settling<E: From<DurableError>>(
    path: &Path,
    bytes: &[u8],
    settle: impl FnOnce() -> Result<bool, E>,
) -> Result<(), E> {
    let tmp = written_temp(path, |w| w.write_all(bytes))?;
    if !settle()? {
        tmp.as_file().sync_all().map_err(fail("write", path))?;
    }
    tmp.persist(path)
        .map_err(|e| fail("replace", path)(e.error))?;
    sync_dir(parent(path))?;
    Ok(())
}

/// A temporary file beside `path` holding what `write` wrote (through a buffer), not synced.
fn written_temp(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<NamedTempFile, DurableError> {
    let mut tmp = temp_file_in(parent(path))?;
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        write(&mut w)
            .and_then(|()| w.flush())
            .map_err(fail("write", path))?;
    }
    Ok(tmp)
}

/// A new temporary file in `dir`, to [`persist`] as a file of `dir` once written.
pub fn temp_file_in(dir: &Path) -> Result<NamedTempFile, DurableError> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(fail("create a temp file in", dir))
}

/// Makes a written temporary file durable as `path`: fsync, rename over `path`, fsync of the
/// directory. The temporary file must be on `path`'s filesystem ([`temp_file_in`]).
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), DurableError> {
    tmp.as_file()
        .sync_all()
        .map_err(fail("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| fail("replace", path)(e.error))?;
    sync_dir(parent(path))
}

/// fsyncs a directory so that a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("sync directory", dir))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old").unwrap();
        write_atomic_with(&path, |w| w.write_all(b"new content")).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"new content");
        let mut tmp = temp_file_in(dir.path()).unwrap();
        tmp.write_all(b"third").unwrap();
        persist(tmp, &path).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"third");
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn unsynced_writes_replace_whole_files_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic_unsynced(&path, b"old").unwrap();
        write_atomic_unsynced(&path, b"new content").unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"new content");
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
        let err = write_atomic_unsynced(&dir.path().join("no/such/f"), b"x").unwrap_err();
        assert_eq!(err.action, "create a temp file in");
        assert!(err.path.ends_with("no/such"), "{}", err.path.display());
    }

    /// Issue 15: `settle` runs once the temporary file holds the new bytes and before the
    /// rename (a `syncfs` there covers the file); its failure leaves the old file.
    #[test]
    fn a_settling_write_settles_between_the_temp_file_and_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old").unwrap();
        let seen = |synced: bool| {
            let (dir, path) = (dir.path().to_owned(), path.clone());
            move || -> Result<bool, DurableError> {
                assert_eq!(fs_err::read(&path).unwrap(), b"old");
                let temps: Vec<Vec<u8>> = fs_err::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| *p != path)
                    .map(|p| fs_err::read(p).unwrap())
                    .collect();
                assert_eq!(temps, [b"new".to_vec()]);
                Ok(synced)
            }
        };
        write_atomic_settling(&path, b"new", seen(true)).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"new");
        write_atomic(&path, b"old").unwrap();
        write_atomic_settling(&path, b"new", seen(false)).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"new");

        let err = write_atomic_settling(&path, b"newer", || {
            Err(DurableError {
                action: "sync",
                path: dir.path().to_owned(),
                source: io::Error::other("disk gone"),
            })
        })
        .unwrap_err();
        assert_eq!(err.action, "sync");
        assert_eq!(fs_err::read(&path).unwrap(), b"new");
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to write {}", path.display())
        );
        assert_eq!(fs_err::read(&path).unwrap(), b"old");
        let missing = dir.path().join("no/such/dir/f");
        let err = write_atomic(&missing, b"x").unwrap_err();
        assert_eq!(err.action, "create a temp file in");
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    }
}

/// Bytes of a file written between two early writebacks.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Bytes from which a build's blob has its writeback started when it is finished
/// ([`EarlyWriteback::finish`]).
const EARLY_TAIL: u64 = 1 << 20;

/// What an [`EarlyWriteback`]'s helper does every [`WRITEBACK_STEP`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writeback {
    /// `fdatasync`: for a file fsynced once written; the writeback is done and waited for
    /// step by step, so the final fsync has only the tail left.
    Sync,
    /// Start the writeback of the bytes written since the last step, never wait for it and
    /// never sync: for a build's blob, whose sync is left to the index write (`settle.rs`) and
    /// must stay the only one. Done with `posix_fadvise(POSIX_FADV_DONTNEED)`, which on Linux
    /// starts the range's writeback without waiting (`WB_SYNC_NONE`, no journal commit) and
    /// then drops those of its pages that are already clean: the pages just written are still
    /// dirty or under writeback, and most stay cached (468 of a 500 MB layer's did). No data
    /// is lost either way. (`sync_file_range` would say it better; neither std nor rustix has
    /// it, and libc calls belong to the worker.)
    Start,
}

/// Starts the writeback of a big file while it is still being written, so that the fsync that
/// makes it durable at the end has only the tail left: every [`WRITEBACK_STEP`] bytes, a
/// helper thread (started at the first step; small files never get one) syncs it or starts
/// its writeback ([`Writeback`]). The writer never waits for those; a step that comes while the
/// helper is still busy is folded into the next. Their errors are the final fsync's to
/// report. (A 500 MB blob downloaded over loopback ended with a 0.2–0.3 s fsync without this.)
#[derive(Debug)]
pub(crate) struct EarlyWriteback {
    file: Option<std::fs::File>,
    how: Writeback,
    written: u64,
    helper: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
}

impl EarlyWriteback {
    /// For `file` (a handle of its own is kept for the helper).
    pub(crate) fn new(file: &std::fs::File, how: Writeback) -> io::Result<Self> {
        Ok(EarlyWriteback {
            file: Some(file.try_clone()?),
            how,
            written: 0,
            helper: None,
        })
    }

    /// `n` more bytes were written (or, for a compressed file, went into its compressor).
    pub(crate) fn wrote(&mut self, n: u64) {
        let before = self.written;
        self.written += n;
        if self.written / WRITEBACK_STEP == before / WRITEBACK_STEP {
            return;
        }
        if self.helper.is_none()
            && let Some(file) = self.file.take()
        {
            let how = self.how;
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            let spawned = std::thread::Builder::new()
                .name("writeback".into())
                .spawn(move || {
                    // Where the last step's range ended (`Start`).
                    let mut started = 0;
                    while rx.recv().is_ok() {
                        match how {
                            Writeback::Sync => {
                                let _ = file.sync_data();
                            }
                            Writeback::Start => started = start_writeback(&file, started),
                        }
                    }
                });
            // Without a thread, the final fsync does it all, as it would anyway.
            self.helper = spawned.ok().map(|h| (tx, h));
        }
        if let Some((tx, _)) = &self.helper {
            let _ = tx.try_send(());
        }
    }

    /// With [`Writeback::Sync`], waits for the helper to stop (before the final fsync). With
    /// [`Writeback::Start`], starts the writeback of what no step covered (all of a file under
    /// [`WRITEBACK_STEP`], from [`EARLY_TAIL`] up) on a thread of its own (the helper's last
    /// step, or a new one), not waited for: the build's one sync comes later (`settle.rs`),
    /// and the steps that follow this blob (an edit's RUN after its COPY) run while the kernel
    /// writes it. Smaller files (a config, a manifest) are left to the sync, which is as quick
    /// for them as a start.
    pub(crate) fn finish(mut self) {
        match (self.how, self.helper.take()) {
            (Writeback::Sync, Some((tx, helper))) => {
                drop(tx);
                let _ = helper.join();
            }
            (Writeback::Start, Some((tx, _detached))) => {
                // A step already pending starts the writeback up to the end just as well.
                let _ = tx.try_send(());
            }
            (Writeback::Start, None) if self.written >= EARLY_TAIL => {
                if let Some(file) = self.file.take() {
                    // Without a thread, the sync does it all, as it would anyway.
                    let _ = std::thread::Builder::new()
                        .name("writeback".into())
                        .spawn(move || start_writeback(&file, 0));
                }
            }
            _ => {}
        }
    }
}

/// Starts the writeback of `file`'s bytes from `from` to its current end ([`Writeback::Start`]);
/// returns that end, where the next range starts.
fn start_writeback(file: &std::fs::File, from: u64) -> u64 {
    let Ok(end) = file.metadata().map(|m| m.len()) else {
        return from;
    };
    if let Some(len) = std::num::NonZeroU64::new(end.saturating_sub(from)) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
    }
    end.max(from)
}
