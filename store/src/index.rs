//! `images.json`: which images the store has and which references name them. The one piece of
//! mutable metadata in the store. Every change is a read-modify-write under the exclusive
//! `images.lock`, written atomically (temp, fsync, rename, dir fsync; the temp's fsync is the
//! blobs' `syncfs` when there is one, see [`update`]); readers need no lock.
//! Blobs are always written before the index entry that references them, so a crash leaves at
//! worst unreferenced blobs (reclaimed by `image prune`), never a reference to nothing.

use crate::digest::Digest;
use crate::durable::write_atomic_settling;
use crate::error::StoreError;
use crate::lock::FileLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layout version this code reads and writes.
pub(crate) const VERSION: u32 = 1;

/// The whole index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ImageIndex {
    pub(crate) version: u32,
    /// Image ID (config digest) → what we know of it.
    #[serde(default)]
    pub(crate) images: BTreeMap<Digest, ImageRecord>,
    /// Full reference (`docker.io/library/busybox:latest`) → image ID.
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, Digest>,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// The manifest blob.
    pub(crate) manifest: Digest,
    /// Its media type (OCI or docker schema 2).
    pub(crate) manifest_media_type: String,
    /// Uncompressed size of each layer, bottom first (what `images` and `history` show).
    #[serde(default)]
    pub(crate) layer_sizes: Vec<u64>,
    /// When the image was added to this store (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_tag_time: Option<String>,
    /// `registry/repository@sha256:…` of each registry manifest (or index) this image was
    /// pulled as or pushed to (docker's RepoDigests). Absent in older stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) repo_digests: Vec<String>,
}

impl ImageIndex {
    /// The references naming `id`, sorted.
    pub(crate) fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

fn index_path(root: &Path) -> PathBuf {
    root.join("images.json")
}

/// A consistent snapshot of the index of the store at `root` (readers need no lock).
pub(crate) fn read(root: &Path) -> Result<ImageIndex, StoreError> {
    let path = index_path(root);
    match fs_err::read(&path) {
        Ok(bytes) => {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(StoreError::json(path.display().to_string()))?;
            if index.version != VERSION {
                return Err(StoreError::Version {
                    path,
                    found: index.version,
                    expected: VERSION,
                });
            }
            Ok(index)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex {
            version: VERSION,
            ..ImageIndex::default()
        }),
        Err(e) => Err(StoreError::io("read", path)(e)),
    }
}

/// Runs `change` on the current index of the store at `root` under the exclusive `lock` and
/// writes the result if `change` succeeds and changed something. `settle` makes what the
/// index names durable (the blobs a build left unsettled) once the new index is written to
/// its temporary file and before the rename, the commit point; when it synced the whole
/// filesystem, that sync made the temporary file durable too, and its own fsync is skipped
/// ([`write_atomic_settling`]). A change of nothing but `last_tag_time`s (a rebuild to the
/// image its tag already names) skips the directory's fsync: losing it to a crash leaves the
/// previous, valid index (`docs/STORE.md`, invariant 2).
pub(crate) fn update<T>(
    root: &Path,
    lock: &Path,
    change: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    settle: impl FnOnce() -> Result<bool, StoreError>,
) -> Result<T, StoreError> {
    let _lock = FileLock::exclusive(lock)?;
    let mut index = read(root)?;
    let before = serde_json::to_vec(&index).expect("the index serialises");
    let out = change(&mut index)?;
    let after = serde_json::to_vec_pretty(&index).expect("the index serialises");
    if serde_json::to_vec(&index).expect("the index serialises") == before {
        return Ok(out);
    }
    let revertible = only_tag_times_changed(&before, &index);
    write_atomic_settling(&index_path(root), &after, revertible, settle)?;
    Ok(out)
}

/// Whether `after` differs from the serialised `before` in `last_tag_time`s alone.
fn only_tag_times_changed(before: &[u8], after: &ImageIndex) -> bool {
    let Ok(before) = serde_json::from_slice::<ImageIndex>(before) else {
        return false;
    };
    let mut after = after.clone();
    for (id, record) in &mut after.images {
        if let Some(old) = before.images.get(id) {
            record.last_tag_time.clone_from(&old.last_tag_time);
        }
    }
    serde_json::to_vec(&after).ok() == serde_json::to_vec(&before).ok()
}
