//! The store handle: its root, its directories, its locks and its private staging area.
//! See `docs/STORE.md` for the layout on disk.

use crate::durable::sync_dir;
use crate::error::StoreError;
use crate::index::{self, ImageIndex};
use crate::lock::{FileLock, Lease};
use crate::staging::Staging;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A local image store rooted at one directory. Cheap to clone; every clone shares one staging
/// directory. Safe to use from several threads and several processes at once.
///
/// ```no_run
/// use strata_store::{Compression, Store};
/// use std::io::Write;
///
/// let store = Store::open("/var/lib/strata")?;
/// // A layer streamed in as an uncompressed tar, stored gzip-compressed.
/// let mut layer = store.layer_writer(Compression::Gzip)?;
/// layer.write_all(&std::fs::read("rootfs.tar")?)?;
/// let layer = layer.finish()?;
/// println!("{} (diff ID {})", layer.digest, layer.diff_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) staging: Staging,
}

impl Store {
    /// Opens the store at `root`, creating it if needed, removes what crashed processes
    /// left in its `tmp/` directory, and drops the snapshots a machine crash may have torn
    /// (see `settle.rs`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for (dir, mode) in [
            (root.clone(), 0o711),
            (root.join("blobs"), 0o755),
            (root.join("blobs/sha256"), 0o755),
            (root.join("tmp"), 0o700),
            (root.join("pins"), 0o700),
            // Snapshots hold setuid binaries and devices from images: root only.
            (root.join("snapshots"), 0o700),
        ] {
            if !dir.is_dir() {
                fs_err::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
                fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                    .map_err(StoreError::io("set permissions of", &dir))?;
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
                sync_dir(parent.unwrap_or(Path::new(".")))?;
            }
        }
        // Refuse a store written by an incompatible version before writing anything.
        index::read(&root)?;
        let staging = Staging::create(&root.join("tmp"))?;
        let store = Store {
            inner: Arc::new(Inner { root, staging }),
        };
        store.settle_snapshots()?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Keeps garbage collection (`image prune`, `rmi`'s layer cleanup) from deleting anything
    /// until the lease is dropped. Take one before writing layers that an image will reference
    /// later (a build), and drop it after [`Store::commit_image`].
    pub fn lease(&self) -> Result<Lease, StoreError> {
        Ok(Lease::new(FileLock::shared(&self.gc_lock_path())?))
    }

    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.inner.root.join("gc.lock")
    }

    pub(crate) fn images_lock_path(&self) -> PathBuf {
        self.inner.root.join("images.lock")
    }

    pub(crate) fn staging(&self) -> &Staging {
        &self.inner.staging
    }

    /// A consistent snapshot of the image index.
    pub(crate) fn read_index(&self) -> Result<ImageIndex, StoreError> {
        index::read(self.root())
    }

    /// Runs `change` on the image index under its lock and writes the result (see
    /// `index.rs`).
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        index::update(self.root(), &self.images_lock_path(), change)
    }
}
