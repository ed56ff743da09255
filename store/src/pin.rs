//! Pins: layers the store must keep although no image names them.
//!
//! The build cache records steps whose layers live here as blobs, with their snapshots; an
//! `rmi` or `image prune` must not sweep them while a cache record can still hand them out.
//! A pin is an empty file `pins/<layer hex>-<chain hex>`: its name is the whole record, so
//! creating and removing one is a single atomic filesystem operation and two processes never
//! contend over a shared file. Garbage collection treats every pin as a root.

use crate::digest::Digest;
use crate::durable::sync_dir;
use crate::error::StoreError;
use crate::store::Store;

impl Store {
    /// Keeps the layer blob `layer` and the snapshot `chain` (the layer on its parents) alive
    /// until [`Store::unpin_layer`]. Idempotent.
    pub fn pin_layer(&self, layer: &Digest, chain: &Digest) -> Result<(), StoreError> {
        let dir = self.root().join("pins");
        let path = dir.join(format!("{}-{}", layer.hex(), chain.hex()));
        if path.exists() {
            return Ok(());
        }
        fs_err::File::create(&path).map_err(StoreError::io("create pin", &path))?;
        // A build's pins (a handle from `deferring_sync`) are synced with its blobs before its
        // image is indexed; one lost to a machine crash before that only lets a prune sweep a
        // layer whose cache record then misses.
        if self.defer_sync {
            return Ok(());
        }
        Ok(sync_dir(&dir)?)
    }

    /// Removes every pin of the layer blob `layer` (whatever snapshots it was pinned with).
    pub fn unpin_layer(&self, layer: &Digest) -> Result<(), StoreError> {
        let dir = self.root().join("pins");
        let prefix = format!("{}-", layer.hex());
        for entry in fs_err::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let path = entry.path();
                fs_err::remove_file(&path).map_err(StoreError::io("remove pin", &path))?;
            }
        }
        Ok(sync_dir(&dir)?)
    }

    /// Removes every pin whose layer is not in `keep`; returns how many went.
    pub(crate) fn unpin_all_but(
        &self,
        keep: &std::collections::BTreeSet<Digest>,
    ) -> Result<usize, StoreError> {
        let dir = self.root().join("pins");
        let mut removed = 0;
        for (layer, chain) in self.pins() {
            if !keep.contains(&layer) {
                let path = dir.join(format!("{}-{}", layer.hex(), chain.hex()));
                match fs_err::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove pin", &path)(e)),
                }
            }
        }
        sync_dir(&dir)?;
        Ok(removed)
    }

    /// Every pin, as (layer blob, snapshot chain). Files with other names are ignored.
    pub(crate) fn pins(&self) -> Vec<(Digest, Digest)> {
        let dir = self.root().join("pins");
        let Ok(entries) = fs_err::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let (layer, chain) = name.to_str()?.split_once('-')?;
                Some((Digest::from_hex(layer).ok()?, Digest::from_hex(chain).ok()?))
            })
            .collect()
    }
}
