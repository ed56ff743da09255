//! `images.json`: which images the store has and which references name them. The one piece of
//! mutable metadata in the store. Every change is a read-modify-write under the exclusive
//! `images.lock`, written atomically (temp, fsync, rename, dir fsync; the temp's fsync is the
//! blobs' `syncfs` when there is one, see [`update`]); readers need no lock.
//! Blobs are always written before the index entry that references them, so a crash leaves at
//! worst unreferenced blobs (reclaimed by `image prune`), never a reference to nothing.
//!
//! A change of nothing but `last_tag_time`s (a rebuild to the image its tag already names,
//! which docker's tag refreshes too) is not written to `images.json` but beside it, to
//! `tag-times.json`, without a sync: each refresh names the time it replaces, and applies only
//! while the image's record in `images.json` still has that time. A crash may lose or tear
//! that file, which loses the refreshes and nothing else (a file that does not read is
//! ignored); the next write of `images.json` carries them over.

use crate::digest::Digest;
use crate::durable::{write_atomic_settling, write_atomic_unsynced};
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

fn tag_times_path(root: &Path) -> PathBuf {
    root.join("tag-times.json")
}

/// `tag-times.json`: image ID → a `last_tag_time` refresh not written to `images.json`.
type TagTimes = BTreeMap<Digest, Refresh>;

/// One image's refreshed `last_tag_time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Refresh {
    /// The record's `last_tag_time` in `images.json` this refresh replaces; the refresh is
    /// stale (and ignored) once the record has another.
    over: Option<String>,
    /// The refreshed time.
    at: String,
}

/// A consistent snapshot of the index of the store at `root`, with its tag time refreshes
/// (readers need no lock).
pub(crate) fn read(root: &Path) -> Result<ImageIndex, StoreError> {
    let mut index = read_committed(root)?;
    refresh(&mut index, &read_tag_times(root));
    Ok(index)
}

/// `images.json` alone.
fn read_committed(root: &Path) -> Result<ImageIndex, StoreError> {
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

/// The refreshes of `tag-times.json`; none when it is missing or does not read (a crash may
/// leave it empty or torn: that loses refreshes, nothing else).
fn read_tag_times(root: &Path) -> TagTimes {
    fs_err::read(tag_times_path(root))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Applies each refresh of `times` whose record still has the time it replaces.
fn refresh(index: &mut ImageIndex, times: &TagTimes) {
    for (id, r) in times {
        if let Some(record) = index.images.get_mut(id)
            && record.last_tag_time == r.over
        {
            record.last_tag_time = Some(r.at.clone());
        }
    }
}

/// Runs `change` on the current index of the store at `root` under the exclusive `lock` and
/// writes the result if `change` succeeds and changed something. `settle` makes what the
/// index names durable (the blobs a build left unsettled) once the new index is written to
/// its temporary file and before the rename, the commit point; when it synced the whole
/// filesystem, that sync made the temporary file durable too, and its own fsync is skipped
/// ([`write_atomic_settling`]). A change of nothing but `last_tag_time`s (a rebuild to the
/// image its tag already names) goes to `tag-times.json` instead, unsynced: losing it to a
/// crash loses those refreshes and nothing else (`docs/STORE.md`, invariant 2).
pub(crate) fn update<T>(
    root: &Path,
    lock: &Path,
    change: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    settle: impl FnOnce() -> Result<bool, StoreError>,
) -> Result<T, StoreError> {
    let _lock = FileLock::exclusive(lock)?;
    let committed = read_committed(root)?;
    let times = read_tag_times(root);
    let mut index = committed.clone();
    refresh(&mut index, &times);
    let before = serde_json::to_vec(&index).expect("the index serialises");
    let out = change(&mut index)?;
    if serde_json::to_vec(&index).expect("the index serialises") == before {
        return Ok(out);
    }
    if let Some(times) = tag_times_alone(&committed, &index) {
        let bytes = serde_json::to_vec(&times).expect("tag times serialise");
        write_atomic_unsynced(&tag_times_path(root), &bytes)?;
        return Ok(out);
    }
    let after = serde_json::to_vec_pretty(&index).expect("the index serialises");
    write_atomic_settling(&index_path(root), &after, settle)?;
    if !times.is_empty() {
        // `images.json` now has every refresh, so the file's are stale (each one's `over` is
        // gone from it): whether it is removed or not, and whether that lasts, changes
        // nothing read. A failure is not the commit's.
        let _ = fs_err::remove_file(tag_times_path(root));
    }
    Ok(out)
}

/// When `after` differs from `committed` (`images.json`) in `last_tag_time`s alone: the
/// refreshes that make `committed` read as `after`.
fn tag_times_alone(committed: &ImageIndex, after: &ImageIndex) -> Option<TagTimes> {
    let mut times = TagTimes::new();
    let mut undone = after.clone();
    for (id, record) in &mut undone.images {
        let old = committed.images.get(id)?;
        if record.last_tag_time != old.last_tag_time {
            times.insert(
                id.clone(),
                Refresh {
                    over: old.last_tag_time.clone(),
                    at: record.last_tag_time.clone()?,
                },
            );
            record.last_tag_time.clone_from(&old.last_tag_time);
        }
    }
    let same = serde_json::to_vec(&undone).ok()? == serde_json::to_vec(committed).ok()?;
    same.then_some(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str) -> ImageRecord {
        ImageRecord {
            manifest: Digest::of(b"manifest"),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            layer_sizes: vec![1],
            last_tag_time: Some(time.into()),
            repo_digests: Vec::new(),
        }
    }

    /// A store root whose `images.json` has one image `id`, tagged `t:1`, tagged at `T0`.
    fn one_image() -> (tempfile::TempDir, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let id = Digest::of(b"config");
        add(dir.path(), &id, "T0");
        (dir, id)
    }

    fn add(root: &Path, id: &Digest, time: &str) {
        update(
            root,
            &root.join("images.lock"),
            |index| {
                index.images.insert(id.clone(), record(time));
                index.tags.insert(format!("t:{time}"), id.clone());
                Ok(())
            },
            || Ok(false),
        )
        .unwrap();
    }

    fn retag(root: &Path, id: &Digest, time: &str) {
        update(
            root,
            &root.join("images.lock"),
            |index| {
                let r = index.images.get_mut(id).unwrap();
                r.last_tag_time = Some(time.into());
                Ok(())
            },
            || panic!("a tag time refresh syncs nothing"),
        )
        .unwrap();
    }

    fn time_of(root: &Path, id: &Digest) -> Option<String> {
        read(root).unwrap().images[id].last_tag_time.clone()
    }

    /// Issue 15: a rebuild's `last_tag_time` refresh leaves `images.json` as it was (its
    /// write was a temp file, an fsync and a rename on every no-op) and is read back.
    #[test]
    fn a_tag_time_refresh_is_read_back_and_leaves_images_json_alone() {
        let (dir, id) = one_image();
        let root = dir.path();
        let committed = fs_err::read(root.join("images.json")).unwrap();
        retag(root, &id, "T1");
        assert_eq!(fs_err::read(root.join("images.json")).unwrap(), committed);
        assert_eq!(time_of(root, &id).as_deref(), Some("T1"));
        retag(root, &id, "T2");
        assert_eq!(fs_err::read(root.join("images.json")).unwrap(), committed);
        assert_eq!(time_of(root, &id).as_deref(), Some("T2"));
        let names: Vec<_> = fs_err::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "images.lock")
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names, ["images.json", "tag-times.json"]);
    }

    /// What a crash may leave of the unsynced file (nothing, an empty or a torn file) loses
    /// the refresh and nothing else.
    #[test]
    fn a_lost_or_torn_refresh_leaves_the_committed_time() {
        let (dir, id) = one_image();
        let root = dir.path();
        retag(root, &id, "T1");
        let whole = fs_err::read(root.join("tag-times.json")).unwrap();
        for torn in [&b""[..], &whole[..whole.len() / 2], b"\0\0\0\0"] {
            fs_err::write(root.join("tag-times.json"), torn).unwrap();
            assert_eq!(time_of(root, &id).as_deref(), Some("T0"));
        }
        fs_err::remove_file(root.join("tag-times.json")).unwrap();
        assert_eq!(time_of(root, &id).as_deref(), Some("T0"));
        retag(root, &id, "T3");
        assert_eq!(time_of(root, &id).as_deref(), Some("T3"));
    }

    /// Any other change writes `images.json` with the refreshes in it; the refresh file is
    /// then stale, and a copy of it left behind (its removal lost) changes nothing.
    #[test]
    fn the_next_index_write_carries_the_refreshes_and_outdates_them() {
        let (dir, id) = one_image();
        let root = dir.path();
        retag(root, &id, "T1");
        let refreshes = fs_err::read(root.join("tag-times.json")).unwrap();
        let other = Digest::of(b"other config");
        add(root, &other, "T5");
        assert!(!root.join("tag-times.json").exists());
        let committed = read_committed(root).unwrap();
        assert_eq!(committed.images[&id].last_tag_time.as_deref(), Some("T1"));
        retag(root, &id, "T6");
        update(
            root,
            &root.join("images.lock"),
            |index| {
                index.images.get_mut(&id).unwrap().layer_sizes = vec![2];
                Ok(())
            },
            || Ok(false),
        )
        .unwrap();
        fs_err::write(root.join("tag-times.json"), &refreshes).unwrap();
        assert_eq!(time_of(root, &id).as_deref(), Some("T6"));
        assert_eq!(time_of(root, &other).as_deref(), Some("T5"));
    }
}
