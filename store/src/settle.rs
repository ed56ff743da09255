//! Snapshots that a machine crash may have torn. A snapshot's files are written without an
//! fsync each (unpacking a layer, or a RUN's overlay upper dir, which the worker mounts
//! volatile): syncing every file would cost more than the step. A process dying loses nothing
//! (the page cache outlives it); only the machine going down can. So each adopted snapshot
//! leaves a marker `unsettled/<boot id>/<chain id hex>`, created before the snapshot is renamed
//! into place (a journaled filesystem commits the two in that order):
//!
//! - Opening the store after a reboot finds markers of another boot: those snapshots may hold
//!   truncated files, so they are deleted; [`Store::snapshots`] unpacks them again from their
//!   blobs, which are always written durably.
//! - Markers of this boot older than [`SETTLE_AFTER`] are settled: one `syncfs` of the store's
//!   filesystem (by then the kernel has written most of it back: cheap), then the markers
//!   listed *before* the sync are removed. A marker made meanwhile stays for the next time.

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

impl Store {
    fn unsettled_dir(&self) -> PathBuf {
        self.root().join("unsettled")
    }

    /// Marks the snapshot `chain_hex` as written in this boot and not yet synced. Called before
    /// the snapshot is renamed into place.
    pub(crate) fn mark_unsettled(&self, chain_hex: &str) -> Result<(), StoreError> {
        let dir = self.unsettled_dir().join(boot_id());
        let marker = dir.join(chain_hex);
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

    /// Another boot's markers: their snapshots may be torn. Under the exclusive GC lock, so
    /// that no other process is unpacking or using a snapshot meanwhile (every process ran
    /// this at its own open, before it used any).
    fn drop_other_boot(&self, dir: &Path) -> Result<(), StoreError> {
        let _lock = FileLock::exclusive(&self.gc_lock_path())?;
        for chain in markers(dir)? {
            if let Ok(digest) = crate::Digest::from_hex(&chain) {
                self.remove_snapshot_dir(&digest)?;
            }
            remove_marker(&dir.join(&chain))?;
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
        let listed = markers(dir)?;
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
