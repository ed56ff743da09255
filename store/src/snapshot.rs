//! Snapshots: each layer of an image unpacked into its own directory,
//! `<root>/snapshots/<chain-id hex>/`, in overlayfs format, so the worker can stack them as
//! lowerdirs without copying. Keyed by chain ID (the layer and everything below it), they are
//! shared by every image and build with the same stack. A snapshot is built in the staging dir
//! and renamed into place, so a snapshot directory that exists is complete; when two processes
//! race, the first rename wins and the loser's copy is discarded; in one process, a second
//! caller for a snapshot being unpacked waits for it ([`UnpackLocks`]). Files in a snapshot are not
//! fsynced one by one; `settle.rs` drops the ones a machine crash may have torn.

use crate::compression::Compression;
use crate::confined::{ConfinedRoot, ExtractOptions, extract};
use crate::digest::{Digest, HashingReader, chain_id};
use crate::error::StoreError;
use crate::image::Image;
use crate::layer::LayerDescriptor;
use crate::progress::ProgressReader;
use crate::staging::remove_tree;
use crate::store::Store;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The snapshots this process is unpacking, each with a lock its unpacker holds: a second
/// caller for the same chain waits on it, then finds the snapshot in place. Across processes
/// the first rename wins instead (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct UnpackLocks(Mutex<HashMap<Digest, Arc<Mutex<()>>>>);

impl UnpackLocks {
    /// The lock for `chain`, made on first use; dropped from the table by the last holder.
    fn get(&self, chain: &Digest) -> Arc<Mutex<()>> {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.entry(chain.clone()).or_default().clone()
    }

    /// Forgets `chain`'s lock once no other caller holds a reference to it.
    fn release(&self, chain: &Digest, lock: Arc<Mutex<()>>) {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Two references: the table's and `lock`; a waiter would hold a third.
        if Arc::strong_count(&lock) <= 2 {
            table.remove(chain);
        }
    }
}

/// One unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The chain ID of the layer stack this layer tops.
    pub chain_id: Digest,
    /// The directory holding the layer's files, in overlayfs format.
    pub path: PathBuf,
}

impl Store {
    /// Where the snapshot for `chain_id` lives (whether or not it exists).
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root().join("snapshots").join(chain_id.hex())
    }

    /// The snapshot for `chain_id`, if it exists.
    pub fn snapshot(&self, chain_id: &Digest) -> Option<Snapshot> {
        let path = self.snapshot_dir(chain_id);
        path.is_dir().then(|| Snapshot {
            chain_id: chain_id.clone(),
            path,
        })
    }

    /// The snapshots of an image's layers, bottom first, unpacking those that do not exist yet.
    /// overlayfs lists lowerdirs top first: reverse this list for `lowerdir=`.
    ///
    /// ```no_run
    /// # let store = strata_store::Store::open("/tmp/s")?;
    /// let image = store.image("busybox")?;
    /// let layers = store.snapshots(&image)?;
    /// let lowerdir: Vec<String> =
    ///     layers.iter().rev().map(|s| s.path.display().to_string()).collect();
    /// println!("lowerdir={}", lowerdir.join(":"));
    /// # Ok::<(), strata_store::StoreError>(())
    /// ```
    pub fn snapshots(&self, image: &Image) -> Result<Vec<Snapshot>, StoreError> {
        // Each layer unpacks into its own directory, independent of the others, so missing
        // ones are unpacked in parallel (a few at a time).
        let chains = image.chain_ids();
        let parents: Vec<Option<Digest>> = std::iter::once(None)
            .chain(chains.iter().cloned().map(Some))
            .take(chains.len())
            .collect();
        let missing: Vec<usize> = (0..chains.len())
            .filter(|&i| self.snapshot(&chains[i]).is_none())
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
            .min(missing.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = missing.get(k) else {
                                return Ok(());
                            };
                            self.unpack_layer(parents[i].as_ref(), &image.layers[i])?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for r in results {
            r?;
        }
        chains
            .iter()
            .map(|c| {
                self.snapshot(c).ok_or_else(|| {
                    StoreError::io("find snapshot", self.snapshot_dir(c))(
                        io::ErrorKind::NotFound.into(),
                    )
                })
            })
            .collect()
    }

    /// The snapshot of `layer` on top of the stack `parent` (a chain ID), unpacked from the
    /// layer blob if it does not exist yet. The uncompressed bytes are checked against the
    /// layer's diff ID; a mismatch leaves nothing behind.
    pub fn unpack_layer(
        &self,
        parent: Option<&Digest>,
        layer: &LayerDescriptor,
    ) -> Result<Snapshot, StoreError> {
        Ok(self.unpack_layer_reporting(parent, layer, &|_, _| {})?.0)
    }

    /// [`Store::unpack_layer`], calling `progress(read, size)` as the blob's bytes are read
    /// (every [`crate::progress::STEP`]); also returns the length of the uncompressed tar,
    /// when it was unpacked here (`None`: the snapshot existed).
    pub(crate) fn unpack_layer_reporting(
        &self,
        parent: Option<&Digest>,
        layer: &LayerDescriptor,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(Snapshot, Option<u64>), StoreError> {
        let chain = chain_id(parent, &layer.diff_id);
        if let Some(s) = self.snapshot(&chain) {
            return Ok((s, None));
        }
        let lock = self.inner.unpacking.get(&chain);
        let unpacked = {
            let _unpacking = lock.lock().unwrap_or_else(PoisonError::into_inner);
            match self.snapshot(&chain) {
                // Another thread of this process unpacked it while this one waited.
                Some(s) => Ok((s, None)),
                None => self.unpack_missing(parent, layer, progress),
            }
        };
        self.inner.unpacking.release(&chain, lock);
        unpacked
    }

    /// [`Store::unpack_layer_reporting`] once the snapshot is known to be missing.
    fn unpack_missing(
        &self,
        parent: Option<&Digest>,
        layer: &LayerDescriptor,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(Snapshot, Option<u64>), StoreError> {
        let _lease = self.lease()?;
        let blob = self.open_blob(&layer.digest)?;
        let size = blob.len();
        let staged = self.stage_layer(layer, blob, size, progress)?;
        let len = staged.len;
        Ok((self.adopt_staged(parent, layer, staged)?, Some(len)))
    }

    /// Unpacks `layer` from `blob`, its `size` bytes as stored (read from the store, or
    /// arriving from a registry), into a new staging directory, checked against the diff ID
    /// as [`Store::unpack_layer`] does. Nothing is in place until [`Store::adopt_staged`]; a
    /// staged snapshot dropped unadopted is deleted. Whoever streams the bytes must also
    /// verify them against `layer.digest` before adopting (the store's blob is verified).
    pub(crate) fn stage_layer(
        &self,
        layer: &LayerDescriptor,
        blob: impl io::Read,
        size: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<StagedSnapshot, StoreError> {
        let dir = self.staging("unpack a layer")?.temp_dir("snapshot-")?;
        let mut staged = StagedSnapshot {
            dir: Some(dir),
            len: 0,
        };
        let dir = staged.dir.as_deref().expect("just made");
        staged.len = self.unpack_into(dir, layer, blob, size, progress)?;
        Ok(staged)
    }

    /// Renames a staged snapshot of `layer` on top of `parent` into place.
    pub(crate) fn adopt_staged(
        &self,
        parent: Option<&Digest>,
        layer: &LayerDescriptor,
        mut staged: StagedSnapshot,
    ) -> Result<Snapshot, StoreError> {
        let dir = staged
            .dir
            .take()
            .expect("a staged snapshot has its directory");
        let adopted = self.adopt_snapshot(parent, &layer.diff_id, &dir);
        if adopted.is_err() {
            let _ = remove_tree(&dir);
        }
        adopted
    }

    /// Extracts `layer` from `blob` (`size` bytes) into `dir` in one read and returns the
    /// tar's length. A blob that is a plain tar is its own uncompressed form: its digest
    /// (verified by whoever stored or streamed it) must be the diff ID, which is checked
    /// before anything is written (no second hash). A compressed one is hashed as it is
    /// decompressed and checked at the end.
    fn unpack_into(
        &self,
        dir: &Path,
        layer: &LayerDescriptor,
        blob: impl io::Read,
        size: u64,
        progress: &dyn Fn(u64, u64),
    ) -> Result<u64, StoreError> {
        let what = format!("decompress layer {}", layer.digest);
        let tell = |read| progress(read, size);
        let blob = ProgressReader::new(blob, size, &tell);
        let (compression, tar) =
            crate::compression::sniffed(blob).map_err(StoreError::stream(what.clone()))?;
        let root = ConfinedRoot::open(dir).map_err(StoreError::io("open", dir))?;
        let unpack = |tar: &mut dyn io::Read| {
            extract(&root, tar, &ExtractOptions::layer()).map_err(|source| StoreError::Unpack {
                layer: layer.digest.clone(),
                source,
            })
        };
        if compression == Compression::None {
            if layer.digest != layer.diff_id {
                return Err(StoreError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: layer.diff_id.clone(),
                    actual: layer.digest.clone(),
                });
            }
            let mut tar = tar;
            unpack(&mut tar)?;
            progress(size, size);
            return Ok(size);
        }
        let mut tar = HashingReader::new(tar);
        unpack(&mut tar)?;
        io::copy(&mut tar, &mut io::sink()).map_err(StoreError::stream(what))?;
        let (_, actual, len) = tar.finish();
        if actual != layer.diff_id {
            return Err(StoreError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        progress(size, size);
        Ok(len)
    }

    /// A new empty directory on the store's filesystem for the worker to fill (an overlay
    /// upper dir) and later hand to [`Store::adopt_snapshot`]. It is deleted with the store
    /// handle's staging area if never adopted.
    pub fn new_snapshot_dir(&self) -> Result<PathBuf, StoreError> {
        self.staging("make a layer directory")?.temp_dir("upper-")
    }

    /// A new empty directory in this handle's private staging area (`<root>/tmp/<id>/`), which
    /// no other process cleans while the handle lives; deleted with the handle if not before.
    pub fn temp_dir(&self, prefix: &str) -> Result<PathBuf, StoreError> {
        self.staging("make a scratch directory")?.temp_dir(prefix)
    }

    /// Registers `dir`, already in overlayfs format (a RUN's upper dir), as the snapshot of
    /// the layer `diff_id` on top of `parent`, by renaming it into place: no unpacking. `dir`
    /// must be on the store's filesystem ([`Store::new_snapshot_dir`] gives one). If the
    /// snapshot already exists, `dir` is deleted and the existing one returned.
    pub fn adopt_snapshot(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
        dir: &Path,
    ) -> Result<Snapshot, StoreError> {
        let chain = chain_id(parent, diff_id);
        let path = self.snapshot_dir(&chain);
        if path.is_dir() {
            remove_tree(dir)?;
            return Ok(Snapshot {
                chain_id: chain,
                path,
            });
        }
        self.mark_unsettled(chain.hex())?;
        // No fsync of `snapshots/` after the rename (it cost ~5 ms a layer): a rename lost
        // in a machine crash leaves the snapshot absent, and an absent snapshot is unpacked
        // again from its blob (always durable) when next needed; its marker, found without a
        // snapshot after the reboot, is dropped.
        match fs_err::rename(dir, &path) {
            Ok(()) => {}
            // Someone else got there first: theirs is as good as ours.
            Err(_) if path.is_dir() => remove_tree(dir)?,
            Err(e) => return Err(StoreError::io("move snapshot into", &path)(e)),
        }
        Ok(Snapshot {
            chain_id: chain,
            path,
        })
    }

    /// Every snapshot's chain ID.
    pub(crate) fn list_snapshots(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root().join("snapshots");
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a snapshot: renamed out of `snapshots/` first, so it vanishes atomically.
    pub(crate) fn remove_snapshot_dir(&self, chain: &Digest) -> Result<u64, StoreError> {
        let dir = self.snapshot_dir(chain);
        let size = tree_size(&dir);
        let doomed = self
            .staging("remove a snapshot")?
            .dir()
            .join(format!("doomed-{}", chain.hex()));
        match fs_err::rename(&dir, &doomed) {
            Ok(()) => remove_tree(&doomed)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io("remove snapshot", &dir)(e)),
        }
        Ok(size)
    }
}

/// A layer unpacked into the staging area and not yet in place ([`Store::stage_layer`]);
/// deleted if dropped before [`Store::adopt_staged`].
#[derive(Debug)]
pub(crate) struct StagedSnapshot {
    dir: Option<PathBuf>,
    /// The length of the layer's uncompressed tar.
    pub(crate) len: u64,
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = remove_tree(&dir);
        }
    }
}

/// Bytes of regular files under `dir` (best effort: unreadable parts count 0). The one
/// directory-size walk: the build cache's cache mounts are measured with it too.
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Compression;
    use std::io::Write as _;

    #[test]
    fn threads_unpacking_one_layer_at_once_unpack_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for i in 0..200 {
            let mut h = tar::Header::new_ustar();
            h.set_path(format!("f{i}")).unwrap();
            h.set_mode(0o644);
            h.set_size(4096);
            h.set_cksum();
            tar.append(&h, &[b'x'; 4096][..]).unwrap();
        }
        let mut w = store.layer_writer(Compression::Gzip).unwrap();
        w.write_all(&tar.into_inner().unwrap()).unwrap();
        let layer = w.finish().unwrap();

        let barrier = std::sync::Barrier::new(8);
        let unpacked: Vec<Option<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        store
                            .unpack_layer_reporting(None, &layer, &|_, _| {})
                            .unwrap()
                            .1
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            unpacked.iter().filter(|u| u.is_some()).count(),
            1,
            "{unpacked:?}"
        );
        let snap = store.snapshot(&chain_id(None, &layer.diff_id)).unwrap();
        assert_eq!(fs_err::read(snap.path.join("f199")).unwrap(), [b'x'; 4096]);
        assert!(store.inner.unpacking.0.lock().unwrap().is_empty());
    }
}
