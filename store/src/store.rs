//! The store handle: its root, its directories, its locks and its private staging area.
//! See `docs/STORE.md` for the layout on disk.

use crate::durable::sync_dir;
use crate::error::StoreError;
use crate::index::{self, ImageIndex};
use crate::lock::{FileLock, Lease};
use crate::pieces::BlobKind;
use crate::staging::Staging;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

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
    /// Set on a handle from [`Store::deferring_sync`]: its blobs are not fsynced one by one,
    /// the next index write syncs the filesystem once (`settle.rs`).
    pub(crate) defer_sync: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    /// `None` for a store opened with [`Store::open_read_only`]; else made on first use.
    pub(crate) staging: Option<OnceLock<Staging>>,
    /// One lock per snapshot being unpacked by this process (`snapshot.rs`): concurrent steps
    /// of one build on one base wait for its unpack instead of each unpacking it again.
    pub(crate) unpacking: crate::snapshot::UnpackLocks,
}

impl Store {
    /// Opens the store at `root` for reading and writing, creating it if needed, removes
    /// what crashed processes left in its `tmp/` directory, and drops the snapshots a machine
    /// crash may have torn (see `settle.rs`).
    ///
    /// Before anything is written, an existing root is checked (`access.rs`): one this
    /// process cannot write (a read-only filesystem: [`StoreError::NotWritable`] with
    /// `Read-only file system`; no permission: `Permission denied`) or one owned by another
    /// user than the real uid of this process ([`StoreError::ForeignOwner`]) is refused.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        if root.is_dir() {
            crate::access::check_writable(&root)?;
            crate::access::check_owner(&root, crate::access::real_uid())?;
        }
        for (dir, mode) in [
            (root.clone(), 0o711),
            (root.join("blobs"), 0o755),
            (root.join(BlobKind::Whole.dir()), 0o755),
            (root.join(BlobKind::Pieced.dir()), 0o755),
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
        crate::staging::clean_stale(&root.join("tmp"))?;
        let store = Store {
            inner: Arc::new(Inner {
                root,
                staging: Some(OnceLock::new()),
                unpacking: Default::default(),
            }),
            defer_sync: false,
        };
        store.settle_snapshots()?;
        Ok(store)
    }

    /// Opens the store at `root` for commands that only read it (`images`, `inspect`,
    /// `history`, `save`, `system check`, `strata check`): as [`Store::open`] when the store
    /// can be written and is ours (so crash leftovers are cleaned as by any command); else (a
    /// read-only filesystem, no write permission, another user's store) a handle that never
    /// writes: no staging directory, no cleaning, no lock file created (existing ones are
    /// locked through a read-only descriptor). Writing through it fails with
    /// [`StoreError::ReadOnly`].
    pub fn open_read_only(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        match crate::access::check_writable(&root) {
            Ok(()) if crate::access::check_owner(&root, crate::access::real_uid()).is_ok() => {
                return Store::open(root);
            }
            // A store not made yet is made, as by any command.
            Err(StoreError::NotWritable { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Store::open(root);
            }
            // Another user's store is read as it is: nothing of ours is left in it.
            _ => {}
        }
        index::read(&root)?;
        Ok(Store {
            inner: Arc::new(Inner {
                root,
                staging: None,
                unpacking: Default::default(),
            }),
            defer_sync: false,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Keeps garbage collection (`image prune`, `rmi`'s layer cleanup) from deleting anything
    /// until the lease is dropped. Take one before writing layers that an image will reference
    /// later (a build), and drop it after [`Store::commit_image`].
    pub fn lease(&self) -> Result<Lease, StoreError> {
        let path = self.gc_lock_path();
        Ok(Lease::new(match self.inner.staging {
            Some(_) => FileLock::shared(&path)?,
            None => FileLock::shared_if_exists(&path)?,
        }))
    }

    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.inner.root.join("gc.lock")
    }

    pub(crate) fn images_lock_path(&self) -> PathBuf {
        self.inner.root.join("images.lock")
    }

    /// The staging directory; an error on a store opened read-only, naming what needed it.
    pub(crate) fn staging(&self, action: &'static str) -> Result<&Staging, StoreError> {
        let cell = self
            .inner
            .staging
            .as_ref()
            .ok_or_else(|| StoreError::ReadOnly {
                root: self.inner.root.clone(),
                action,
            })?;
        if let Some(staging) = cell.get() {
            return Ok(staging);
        }
        let made = Staging::create(&self.inner.root.join("tmp"))?;
        // Should another thread have made one meanwhile, ours is dropped, which removes it.
        Ok(cell.get_or_init(|| made))
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
        // The index is the commit point: what it names must be durable before it is renamed
        // into place. Synced once the new index is in its temporary file, so that one
        // `syncfs` covers both (`settle.rs`).
        index::update(self.root(), &self.images_lock_path(), change, || {
            self.settle_unsettled_blobs()
        })
    }
}
