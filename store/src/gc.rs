//! Garbage collection and disk usage: mark every blob and snapshot that an image in the index
//! needs, sweep the rest. Runs under the exclusive `gc.lock`, so nothing written under a
//! [`crate::Lease`] (a running import, load or build) can be swept before it is indexed.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::index::ImageIndex;
use crate::lock::FileLock;
use crate::store::Store;
use std::collections::BTreeSet;

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
    /// Removes dangling images (all images with `all`), then every blob and snapshot no
    /// remaining image needs. Waits for running writers (their [`crate::Lease`]s).
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        let mut removed = Vec::new();
        self.update_index(|index| {
            let ids: Vec<Digest> = index.images.keys().cloned().collect();
            for id in ids {
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
        let path = self.gc_lock_path();
        let _lock = if wait {
            FileLock::exclusive(&path)?
        } else {
            match FileLock::try_exclusive(&path)? {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        let index = self.read_index()?;
        let (blobs, snapshots) = self.live_set(&index, |_| true);
        let mut reclaimed = 0;
        for (digest, size) in self.list_blobs()? {
            if !blobs.contains(&digest) {
                let path = self.blob_path(&digest);
                fs_err::remove_file(&path).map_err(StoreError::io("remove blob", &path))?;
                reclaimed += size;
            }
        }
        for chain in self.list_snapshots()? {
            if !snapshots.contains(&chain) {
                reclaimed += self.remove_snapshot(&chain)?;
            }
        }
        crate::durable::sync_dir(&self.root().join("blobs/sha256"))?;
        Ok(Some(reclaimed))
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
        (blobs, snapshots)
    }

    /// Every blob file with its size. Files whose names are not digests are skipped here and
    /// reported by `system check`.
    pub(crate) fn list_blobs(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let dir = self.root().join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            let name = entry.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) {
                let size = entry
                    .metadata()
                    .map_err(StoreError::io("inspect", entry.path()))?
                    .len();
                out.push((d, size));
            }
        }
        out.sort();
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
        for (d, size) in self.list_blobs()? {
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
