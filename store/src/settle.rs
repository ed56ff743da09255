//! Snapshots that a machine crash may have torn. A snapshot's files are written without an
//! fsync each (unpacking a layer, or a RUN's overlay upper dir, which the worker mounts
//! volatile): syncing every file would cost more than the step. A process dying loses nothing
//! (the page cache outlives it); only the machine going down can. So each adopted snapshot
//! leaves a marker `unsettled/<boot id>/<chain id hex>`, created before the snapshot is renamed
//! into place (a journaled filesystem commits the two in that order):
//!
//! - Opening the store after a reboot finds markers of another boot: those snapshots may hold
//!   truncated files, so they are deleted; [`Store::snapshots`] unpacks them again from their
//!   blobs, durable before any image names them (below).
//! - Markers of this boot older than [`SETTLE_AFTER`] are settled: one `syncfs` of the store's
//!   filesystem (by then the kernel has written most of it back: cheap), then the markers
//!   listed *before* the sync are removed. A marker made meanwhile stays for the next time.
//!
//! Blobs a build writes are settled the same way ([`Store::deferring_sync`]): each is written
//! without an fsync, marked `unsettled/<boot id>/<digest hex>.blob` between its last byte and
//! its rename into `blobs/`, and the build's index write (the commit point) first syncs them
//! all ([`Store::sync_unsettled_blobs`]: one `syncfs`, or for big layers an fsync each) instead
//! of two fsyncs per blob as it is written; the index's own temporary file is written before
//! that sync, which then makes it durable too. After a reboot, another boot's blob marker deletes its blob (it may be torn): no image names it
//! (every index write, by any command, first syncs when this boot has a blob marker), and a
//! cache record naming it is a miss (its layer is not available), so the step is made again.
//! Every marker is made after the bytes it covers were written and before they are renamed
//! into place, so a `syncfs` started after a marker was listed covers them.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::lock::FileLock;
use crate::store::Store;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

/// How old this boot's newest marker must be before the open settles them.
pub(crate) const SETTLE_AFTER: Duration = Duration::from_secs(60);

/// This boot's ID, or `unknown-boot` where the kernel does not say (markers then never
/// expire). Read once per process: it cannot change while the process lives.
fn boot_id() -> &'static str {
    static BOOT_ID: LazyLock<String> = LazyLock::new(|| {
        fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            .unwrap_or_else(|| "unknown-boot".to_owned())
    });
    &BOOT_ID
}

/// The marker name of blob `digest` (a snapshot's is its chain ID's hex alone).
fn blob_marker(digest: &Digest) -> String {
    format!("{}{BLOB_MARKER}", digest.hex())
}

const BLOB_MARKER: &str = ".blob";

/// Up to this many bytes of unsettled blobs, [`Store::sync_unsettled_blobs`] syncs them with
/// one `syncfs`; above, with an fsync each.
pub(crate) const SYNCFS_UP_TO: u64 = 32 << 20;

impl Store {
    /// A handle on the same store whose blobs are made durable together: each is renamed into
    /// place without an fsync, and the next write of the image index syncs the filesystem
    /// once first ([`Store::sync_unsettled_blobs`]). For a build, whose dozens of layers,
    /// configs and manifests cost two fsyncs each otherwise. What a machine crash before that
    /// sync leaves is repaired at the next open (module docs).
    pub fn deferring_sync(&self) -> Store {
        Store {
            inner: self.inner.clone(),
            defer_sync: true,
        }
    }

    /// Makes every blob written without an fsync in this boot (by any process) durable and
    /// drops their markers. Runs before every write of the image index (the commit point), so
    /// an image never names a blob a crash may tear; costs one `readdir` when no blob is
    /// unsettled. Up to 32 MiB of blobs, one `syncfs` of the store's
    /// filesystem (which settles this boot's snapshot markers listed before it too); above,
    /// an fsync of each blob and one of `blobs/sha256/` and `blobs/pieces/`: `syncfs` would also write back the
    /// snapshots those layers were made from, as many bytes again (biglayer's 500 MB layer:
    /// 0.66–0.79 s of `syncfs` against 0.31–0.38 s of the blob's fsync).
    pub fn sync_unsettled_blobs(&self) -> Result<(), StoreError> {
        self.settle_unsettled_blobs().map(drop)
    }

    /// [`Store::sync_unsettled_blobs`], saying whether it synced the whole filesystem (one
    /// `syncfs`): then whatever was written on it before the call is durable too, the
    /// index's temporary file included (`index.rs`).
    pub(crate) fn settle_unsettled_blobs(&self) -> Result<bool, StoreError> {
        let dir = self.unsettled_dir().join(boot_id());
        let listed = markers(&dir)?;
        let blobs: Vec<(String, PathBuf, u64)> = listed
            .iter()
            .filter_map(|m| {
                let digest = Digest::from_hex(m.strip_suffix(BLOB_MARKER)?).ok()?;
                // Absent: collected since, or still being renamed in by its writer (whose
                // bytes this sync need not cover: no index names it yet); its marker stays.
                let (path, _) = self.blob_file(&digest)?;
                // The bytes it reads as, not its file's: a pieced layer's file is small, but
                // the snapshot it was made from, which a `syncfs` would write back too, is
                // as large as the layer (an incremental COPY's 205 MB clone: 0.96 s of
                // "image, exit" with a `syncfs` against 0.21 s with the blob's fsync).
                let size = self.blob_size(&digest).ok()?;
                Some((m.clone(), path, size))
            })
            .collect();
        if blobs.is_empty() {
            return Ok(false);
        }
        if blobs.iter().map(|(_, _, size)| size).sum::<u64>() <= SYNCFS_UP_TO {
            self.sync_and_remove(&dir, listed)?;
            return Ok(true);
        }
        for (_, path, _) in &blobs {
            fs_err::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("sync", path))?;
        }
        for kind in crate::pieces::BlobKind::ALL {
            crate::durable::sync_dir(&self.root().join(kind.dir()))?;
        }
        for (marker, _, _) in blobs {
            remove_marker(&dir.join(marker))?;
        }
        Ok(false)
    }

    /// Marks blob `digest`, written but not synced, before its rename into place (a handle
    /// from [`Store::deferring_sync`]).
    pub(crate) fn mark_blob_unsettled(&self, digest: &Digest) -> Result<(), StoreError> {
        self.mark_unsettled(&blob_marker(digest))
    }

    fn unsettled_dir(&self) -> PathBuf {
        self.root().join("unsettled")
    }

    /// Marks `name` (a snapshot's chain ID hex, or a blob's marker) as written in this boot
    /// and not yet synced. Called before the snapshot or blob is renamed into place.
    pub(crate) fn mark_unsettled(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.unsettled_dir().join(boot_id());
        let marker = dir.join(name);
        let create = || fs_err::File::create(&marker).map(drop);
        match create() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
                create().map_err(StoreError::io("create", &marker))
            }
            Err(e) => Err(StoreError::io("create", &marker)(e)),
        }
    }

    /// Deletes the snapshots of other boots' markers and settles this boot's old ones (see
    /// the module's documentation). Runs at every open; costs one `readdir` and one `stat`
    /// when there is nothing to do.
    pub(crate) fn settle_snapshots(&self) -> Result<(), StoreError> {
        let root = self.unsettled_dir();
        let boots = match fs_err::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("list", &root)(e)),
        };
        for boot in boots {
            let dir = root.join(&boot);
            if boot == boot_id() {
                self.settle_this_boot(&dir)?;
            } else {
                self.drop_other_boot(&dir)?;
            }
        }
        Ok(())
    }

    /// Another boot's markers: their snapshots and blobs may be torn. Under the exclusive GC lock, so
    /// that no other process is unpacking or using a snapshot meanwhile (every process ran
    /// this at its own open, before it used any).
    fn drop_other_boot(&self, dir: &Path) -> Result<(), StoreError> {
        let _lock = FileLock::exclusive(&self.gc_lock_path())?;
        for name in markers(dir)? {
            if let Some(blob) = name.strip_suffix(BLOB_MARKER) {
                if let Ok(digest) = Digest::from_hex(blob) {
                    // Whole or pieced: the marker does not say which was torn.
                    for path in [self.blob_path(&digest), self.pieces_path(&digest)] {
                        match fs_err::remove_file(&path) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                                return Err(StoreError::io("remove blob", &path)(e));
                            }
                            _ => {}
                        }
                    }
                }
            } else if let Ok(digest) = Digest::from_hex(&name) {
                self.remove_snapshot_dir(&digest)?;
            }
            remove_marker(&dir.join(&name))?;
        }
        match fs_err::remove_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("remove", dir)(e)),
            _ => Ok(()),
        }
    }

    fn settle_this_boot(&self, dir: &Path) -> Result<(), StoreError> {
        // The directory's mtime is the newest marker's creation.
        let newest = match fs_err::metadata(dir).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("stat", dir)(e)),
        };
        let age = SystemTime::now()
            .duration_since(newest)
            .unwrap_or(Duration::ZERO);
        if age < SETTLE_AFTER {
            return Ok(());
        }
        self.settle_now(dir)
    }

    /// Syncs the store's filesystem, then removes the markers listed before the sync.
    fn settle_now(&self, dir: &Path) -> Result<(), StoreError> {
        self.sync_and_remove(dir, markers(dir)?)
    }

    /// One `syncfs`, then the markers `listed` (in `dir`) go.
    fn sync_and_remove(&self, dir: &Path, listed: Vec<String>) -> Result<(), StoreError> {
        if listed.is_empty() {
            return Ok(());
        }
        let root = fs_err::File::open(self.root()).map_err(StoreError::io("open", self.root()))?;
        rustix::fs::syncfs(&root).map_err(|e| StoreError::io("sync", self.root())(e.into()))?;
        for chain in listed {
            remove_marker(&dir.join(chain))?;
        }
        Ok(())
    }
}

fn markers(dir: &Path) -> Result<Vec<String>, StoreError> {
    match fs_err::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("list", dir)(e)),
    }
}

fn remove_marker(path: &Path) -> Result<(), StoreError> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("remove", path)(e)),
        _ => Ok(()),
    }
}
