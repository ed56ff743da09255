//! Garbage collection and disk usage: mark every blob and snapshot that an image in the index
//! needs, sweep the rest. Runs under the exclusive `gc.lock`, so nothing written under a
//! [`crate::Lease`] (a running import, load or build) can be swept before it is indexed.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::index::ImageIndex;
use crate::lock::FileLock;
use crate::pieces::BlobKind;
use crate::store::Store;
use std::collections::BTreeSet;

/// Size of the filesystem holding `root` (a store's root), in bytes, without opening the
/// store: a no-op build's GC check needs only this.
pub fn filesystem_size(root: &std::path::Path) -> Result<u64, StoreError> {
    let st = rustix::fs::statvfs(root)
        .map_err(|e| StoreError::io("inspect the filesystem of", root)(e.into()))?;
    Ok(st.f_blocks.saturating_mul(st.f_frsize))
}

/// What one garbage collection removed (see [`Store::collect_garbage_with_pins`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Pins removed because their layer was not among those to keep.
    pub unpinned: usize,
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshot directories deleted.
    pub snapshots: usize,
    /// Bytes of blobs and snapshots deleted.
    pub reclaimed: u64,
}

/// What `image prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// What happened to images, in order.
    pub removed: Vec<crate::Removed>,
    /// Bytes of blobs and snapshots deleted.
    pub reclaimed: u64,
}

/// What `system df` shows.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Images in the index.
    pub images: usize,
    /// Images with at least one tag.
    pub tagged_images: usize,
    /// Bytes of all blobs.
    pub blob_bytes: u64,
    /// Number of blobs.
    pub blobs: usize,
    /// Bytes of blobs that only dangling images or nothing at all reference.
    pub reclaimable_blob_bytes: u64,
    /// Number of snapshot directories.
    pub snapshots: usize,
    /// Bytes in snapshot directories.
    pub snapshot_bytes: u64,
    /// Bytes of snapshots no image's chain uses.
    pub reclaimable_snapshot_bytes: u64,
}

impl Store {
    /// Removes dangling images (all images with `all`) that no container uses, then every blob and snapshot no
    /// remaining image needs. Waits for running writers (their [`crate::Lease`]s).
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        let used = self.images_used_by_containers()?;
        let mut removed = Vec::new();
        self.update_index(|index| {
            let ids: Vec<Digest> = index.images.keys().cloned().collect();
            for id in ids {
                // A container's image stays, tags and all.
                if used.contains_key(&id) {
                    continue;
                }
                let tags = index.tags_of(&id);
                if !tags.is_empty() && !all {
                    continue;
                }
                for t in tags {
                    index.tags.remove(&t);
                    if let Ok(r) = crate::Reference::parse(&t) {
                        removed.push(crate::Removed::Untagged(r));
                    }
                }
                index.images.remove(&id);
                removed.push(crate::Removed::Deleted(id));
            }
            Ok(())
        })?;
        let reclaimed = self.collect_garbage(true)?.unwrap_or(0);
        Ok(PruneReport { removed, reclaimed })
    }

    /// Deletes unreferenced blobs and snapshots. With `wait`, waits for the exclusive lock;
    /// without, returns `None` at once if another process holds a lease.
    pub(crate) fn collect_garbage(&self, wait: bool) -> Result<Option<u64>, StoreError> {
        let report = self.collect_garbage_with_pins(wait, || Ok::<_, StoreError>(None))?;
        Ok(report.map(|r| r.reclaimed))
    }

    /// Garbage collection for the build cache's prune: under the exclusive `gc.lock` (so no
    /// build is running: each holds a [`crate::Lease`] from its first cache lookup to its
    /// image commit), asks `keep_pins` which pinned layers are still wanted, removes every
    /// other pin, then deletes every blob and snapshot that no image and no remaining pin
    /// needs. `keep_pins` returning `None` keeps every pin. With `wait`, waits for running
    /// builds to end; without, returns `None` at once if anything holds a lease.
    ///
    /// Asking under the lock is the point: a build cannot add a record (and its pin) between
    /// the answer and the sweep.
    pub fn collect_garbage_with_pins<E: From<StoreError>>(
        &self,
        wait: bool,
        keep_pins: impl FnOnce() -> Result<Option<BTreeSet<Digest>>, E>,
    ) -> Result<Option<GcReport>, E> {
        let path = self.gc_lock_path();
        let _lock = if wait {
            FileLock::exclusive(&path)?
        } else {
            match FileLock::try_exclusive(&path)? {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        let mut report = GcReport::default();
        if let Some(keep) = keep_pins()? {
            report.unpinned = self.unpin_all_but(&keep)?;
        }
        let index = self.read_index()?;
        let (blobs, snapshots) = self.live_set(&index, |_| true);
        for (digest, size, kind) in self.list_blobs()? {
            if !blobs.contains(&digest) {
                let path = match kind {
                    BlobKind::Whole => self.blob_path(&digest),
                    BlobKind::Pieced => self.pieces_path(&digest),
                };
                fs_err::remove_file(&path).map_err(StoreError::io("remove blob", &path))?;
                report.blobs += 1;
                report.reclaimed += size;
            }
        }
        for chain in self.list_snapshots()? {
            if !snapshots.contains(&chain) {
                report.snapshots += 1;
                report.reclaimed += self.remove_snapshot(&chain)?;
            }
        }
        for kind in BlobKind::ALL {
            crate::durable::sync_dir(&self.root().join(kind.dir())).map_err(StoreError::from)?;
        }
        Ok(Some(report))
    }

    /// The layer blobs the images in the index use (tagged or not): what the build cache
    /// calls "shared". Pins do not count.
    pub fn image_layers(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let index = self.read_index()?;
        let mut layers = BTreeSet::new();
        for id in index.images.keys() {
            if let Ok(image) = self.load_image(&index, id) {
                layers.extend(image.layers.iter().map(|l| l.digest.clone()));
            }
        }
        Ok(layers)
    }

    /// Size of the filesystem holding the store, in bytes (for a share-of-disk GC limit).
    pub fn filesystem_size(&self) -> Result<u64, StoreError> {
        filesystem_size(self.root())
    }

    /// Blobs and snapshots needed by the images `keep` selects. Unreadable manifests keep
    /// whatever of them can be named (garbage collection must never delete more because
    /// something is broken).
    fn live_set(
        &self,
        index: &ImageIndex,
        keep: impl Fn(&Digest) -> bool,
    ) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
        let mut blobs = BTreeSet::new();
        let mut snapshots = BTreeSet::new();
        for (id, record) in &index.images {
            if !keep(id) {
                continue;
            }
            blobs.insert(id.clone());
            blobs.insert(record.manifest.clone());
            if let Ok(image) = self.load_image(index, id) {
                blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
                snapshots.extend(image.chain_ids());
            }
        }
        for (layer, chain) in self.pins() {
            blobs.insert(layer);
            snapshots.insert(chain);
        }
        // The whole blobs a needed pieced blob reads from are needed (never pieced
        // themselves: no chains to follow).
        let sources: Vec<Digest> = blobs
            .iter()
            .filter(|d| !self.blob_path(d).is_file())
            .flat_map(|d| self.pieced_sources(d))
            .collect();
        blobs.extend(sources);
        (blobs, snapshots)
    }

    /// Every blob file with its size on disk and its kind (a blob both whole and pieced,
    /// which two racing writers can leave, is listed twice). Files whose names are not
    /// digests are skipped here and reported by `system check`.
    pub(crate) fn list_blobs(&self) -> Result<Vec<(Digest, u64, BlobKind)>, StoreError> {
        let mut out = Vec::new();
        for (kind, entry) in self.blob_files()? {
            let name = entry.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) {
                let size = entry
                    .metadata()
                    .map_err(StoreError::io("inspect", entry.path()))?
                    .len();
                out.push((d, size, kind));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let _lease = self.lease()?;
        let index = self.read_index()?;
        let (all_blobs, all_snapshots) = self.live_set(&index, |_| true);
        let (tagged_blobs, tagged_snapshots) =
            self.live_set(&index, |id| !index.tags_of(id).is_empty());
        let mut du = DiskUsage {
            images: index.images.len(),
            tagged_images: index
                .images
                .keys()
                .filter(|id| !index.tags_of(id).is_empty())
                .count(),
            ..DiskUsage::default()
        };
        // A pieced blob counts the bytes of its own file, what it takes on disk.
        for (d, size, _) in self.list_blobs()? {
            du.blobs += 1;
            du.blob_bytes += size;
            if !tagged_blobs.contains(&d) || !all_blobs.contains(&d) {
                du.reclaimable_blob_bytes += size;
            }
        }
        for chain in self.list_snapshots()? {
            let size = crate::snapshot::tree_size(&self.snapshot_dir(&chain));
            du.snapshots += 1;
            du.snapshot_bytes += size;
            if !tagged_snapshots.contains(&chain) || !all_snapshots.contains(&chain) {
                du.reclaimable_snapshot_bytes += size;
            }
        }
        Ok(du)
    }

    fn remove_snapshot(&self, chain: &Digest) -> Result<u64, StoreError> {
        self.remove_snapshot_dir(chain)
    }
}
