//! Build cache records: cache key → what the solver needs to reuse a step without running it.
//!
//! One JSON file per key under `<root>/cache-v1/records/`, replaced atomically but not fsynced
//! ([`strata_store::durable::write_atomic_unsynced`]; a power loss can only lose it or leave
//! it empty, a miss; the layers it names are durable, or marked unsettled until the build's
//! one `syncfs` and deleted after a crash, so the record then misses too (docs/STORE.md); the
//! four fsyncs per step were a quarter of a small step's time on a journaled filesystem):
//! readers, in this process or another, see a whole record or none;
//! two builds writing the same key both succeed and the last one wins (they describe the same
//! result). A file that does not parse, or that names another key, is a miss, never an error
//! and never a panic; prune deletes it. "Last used" is the record file's mtime, bumped by
//! [`CacheDb::get`], so a hit costs no rewrite.
//!
//! Beside records, for issue 6 (export/import, `--explain`): `selections/` holds the file
//! lists of COPY selections by checksum, and `steps/` points a stable step identity (chosen by
//! the solver: Dockerfile, stage, instruction) at the key it last had, so a miss can be
//! compared with that step's previous record.

use crate::checksum::Checksum;
use crate::key::{CacheKey, KeyParts};
use crate::selection::{SelectionDiff, SelectionParts, SelectionSum, StreamedDiff};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_store::{Digest, LayerDescriptor, durable};

const RECORD_VERSION: u32 = 1;
/// A temporary file older than this is a crash leftover.
const TEMP_GRACE: Duration = Duration::from_secs(3600);
/// Selection lists younger than this are kept even if no record names them yet (a build may
/// be between `put_selection` and `put`).
const SELECTION_GRACE: Duration = Duration::from_secs(600);

/// Errors of the record database. Reading a damaged record is not one: it is a miss.
#[derive(Debug, thiserror::Error)]
pub enum CacheDbError {
    /// A directory of the database could not be created.
    #[error("failed to create cache directory {}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read (other than not existing).
    #[error("failed to read cache file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("failed to write cache file {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be removed during prune.
    #[error("failed to remove cache file {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A stable identity of a step across builds (not its key), with how to name it to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// Chosen by the solver, e.g. blake3 of (context dir, Dockerfile path, stage, index).
    pub id: Checksum,
    /// `[build 2/4] RUN make`.
    pub description: String,
}

/// What the solver needs to reuse a step, and what `--explain` needs to say why it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The layer the step added; `None` for a step with an empty diff.
    pub layer: Option<LayerDescriptor>,
    /// The chain ID of the filesystem after this step, if it has layers.
    pub chain_id: Option<Digest>,
    /// The diff IDs of every layer of that filesystem, base first.
    pub diff_ids: Vec<Digest>,
    /// When the step ran.
    #[serde(with = "unix_nanos")]
    pub created: SystemTime,
    /// What the key was made of.
    pub parts: KeyParts,
    /// The step this record was made for, when the solver names one.
    pub step: Option<StepRef>,
    /// The op's definition as the solver chose to keep it (opaque here), so `--explain` can
    /// say which argument, env var or build arg changed.
    #[serde(default)]
    pub definition: Option<serde_json::Value>,
    /// How long the step ran, in milliseconds (what a later hit saves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Which records [`CacheDb::prune`] removes. A record goes if any set condition holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Remove every record.
    pub all: bool,
    /// Remove records created before this time.
    pub created_before: Option<SystemTime>,
    /// Remove records not used (hit or written) since this time.
    pub unused_since: Option<SystemTime>,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Records removed (damaged ones included).
    pub records: usize,
    /// Bytes of cache files removed (records, selection lists, leftovers).
    pub bytes: u64,
    /// Layers that removed records used and no remaining record uses: the store may delete
    /// their blobs unless an image holds them.
    pub released_layers: Vec<LayerDescriptor>,
    /// The intact records removed, with the size of the layer each held (0 for none).
    pub removed: Vec<(CacheKey, u64)>,
    /// The layers the remaining records use: the pins to keep.
    pub kept_layers: BTreeSet<Digest>,
}

/// How much the build cache holds, for `strata system df`-style reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Number of records.
    pub records: usize,
    /// Bytes of record files.
    pub record_bytes: u64,
    /// Number of stored selection lists.
    pub selections: usize,
    /// Bytes of selection lists.
    pub selection_bytes: u64,
    /// Bytes of context stat caches.
    pub stat_cache_bytes: u64,
    /// Distinct layers the records use.
    pub layers: usize,
    /// Their total blob size (the blobs live in the store).
    pub layer_bytes: u64,
}

/// One record as listed by [`CacheDb::records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its key.
    pub key: CacheKey,
    /// The record.
    pub record: Record,
    /// When it was last hit or written.
    pub last_used: SystemTime,
    /// Size of its file.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    key: CacheKey,
    record: Record,
}

/// The build cache database under `<root>/cache-v1/`.
#[derive(Debug, Clone)]
pub struct CacheDb {
    dir: PathBuf,
}

impl CacheDb {
    /// Opens (creating if needed) the database under `root` (strata's `--root`).
    pub fn open(root: &Path) -> Result<Self, CacheDbError> {
        let dir = root.join("cache-v1");
        for sub in ["records", "steps", "selections", "context"] {
            let path = dir.join(sub);
            fs_err::create_dir_all(&path)
                .map_err(|source| CacheDbError::Create { path, source })?;
        }
        Ok(CacheDb { dir })
    }

    /// Where the stat cache of the context directory `context_dir` lives: one file per
    /// directory, named by the blake3 of its absolute path.
    pub fn stat_cache_path(&self, context_dir: &Path) -> PathBuf {
        let h = blake3::hash(context_dir.as_os_str().as_encoded_bytes());
        self.dir
            .join("context")
            .join(format!("{}.stat", h.to_hex()))
    }

    /// The record for `key`, if there is an intact one; marks it used.
    pub fn get(&self, key: &CacheKey) -> Result<Option<Record>, CacheDbError> {
        let path = self.record_path(key);
        let Some((envelope, file)) = read_record(&path)? else {
            return Ok(None);
        };
        if envelope.key != *key {
            return Ok(None);
        }
        // Best effort: a failure to bump "last used" only makes prune see it older.
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(envelope.record))
    }

    /// Stores `record` under `key`, replacing any previous one atomically, and points its
    /// step (if any) at `key`. Neither is fsynced (see the module's doc): a crash of the
    /// machine may lose them, a miss.
    pub fn put(&self, key: &CacheKey, record: &Record) -> Result<(), CacheDbError> {
        let path = self.record_path(key);
        let envelope = Envelope {
            version: RECORD_VERSION,
            key: *key,
            record: record.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&envelope).expect("records serialise");
        write_file_with(&path, &bytes, durable::write_atomic_unsynced)?;
        if let Some(step) = &record.step {
            write_file_with(
                &self.step_path(&step.id),
                format!("{}\n", key.to_hex()).as_bytes(),
                durable::write_atomic_unsynced,
            )?;
        }
        Ok(())
    }

    /// The latest record written for `step`, with its key.
    pub fn last_for_step(
        &self,
        step: &Checksum,
    ) -> Result<Option<(CacheKey, Record)>, CacheDbError> {
        let path = self.step_path(step);
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => {
                return Ok(None);
            }
            Err(source) => return Err(CacheDbError::Read { path, source }),
        };
        let Some(key) = CacheKey::from_hex(text.trim()) else {
            return Ok(None);
        };
        Ok(self.peek(&key)?.map(|r| (key, r)))
    }

    /// [`Self::put_selection`] of a list not made yet: written as a stream from its parts.
    pub fn put_selection_parts(&self, parts: &SelectionParts) -> Result<(), CacheDbError> {
        if self.has_selection(&parts.checksum()) {
            return Ok(());
        }
        let path = self.selection_path(&parts.checksum());
        make_parent(&path)?;
        durable::write_atomic_unsynced_with(&path, |w| parts.write_list(w)).map_err(|e| {
            CacheDbError::Write {
                path: path.clone(),
                source: e.into(),
            }
        })
    }

    /// Keeps the file list of `sum` (once per checksum), for `--explain`. Not fsynced, as
    /// records: a list a machine crash empties or tears fails its checksum when read (a miss)
    /// and an empty one is written again.
    pub fn put_selection(&self, sum: &SelectionSum) -> Result<(), CacheDbError> {
        if self.has_selection(&sum.checksum) {
            return Ok(());
        }
        let path = self.selection_path(&sum.checksum);
        write_file_with(&path, &sum.to_bytes(), durable::write_atomic_unsynced)
    }

    /// Whether a file list is stored for `checksum` (not read: an empty one, what a machine
    /// crash may leave of an unsynced list, is not, and is made again).
    pub fn has_selection(&self, checksum: &Checksum) -> bool {
        fs_err::metadata(self.selection_path(checksum)).is_ok_and(|m| m.len() > 0)
    }

    /// The file list stored for `checksum`, if it is there and intact.
    pub fn selection(&self, checksum: &Checksum) -> Result<Option<SelectionSum>, CacheDbError> {
        Ok(self
            .selection_bytes(checksum)?
            .and_then(|bytes| SelectionSum::from_bytes(&bytes, checksum)))
    }

    /// The stored file list of `checksum` as written, unchecked; `None` if there is none.
    fn selection_bytes(&self, checksum: &Checksum) -> Result<Option<Vec<u8>>, CacheDbError> {
        let path = self.selection_path(checksum);
        match fs_err::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheDbError::Read { path, source }),
        }
    }

    /// What changed from the stored file list `older` to the stored `newer`
    /// ([`SelectionSum::diff`]), read in place; `None` if either is missing or damaged.
    pub fn selection_diff(
        &self,
        newer: &Checksum,
        older: &Checksum,
    ) -> Result<Option<SelectionDiff>, CacheDbError> {
        let open = |checksum: &Checksum| {
            let path = self.selection_path(checksum);
            match fs_err::File::open(&path) {
                Ok(f) => Ok(Some(std::io::BufReader::with_capacity(64 * 1024, f))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(source) => Err(CacheDbError::Read { path, source }),
            }
        };
        let (Some(new_file), Some(old_file)) = (open(newer)?, open(older)?) else {
            return Ok(None);
        };
        match SelectionSum::diff_streams((new_file, newer), (old_file, older)) {
            StreamedDiff::Diff(d) => return Ok(Some(d)),
            StreamedDiff::Damaged => return Ok(None),
            // Not in path order (not written by a COPY of ours): read both whole.
            StreamedDiff::Unsorted => {}
        }
        let (Some(new_bytes), Some(old_bytes)) =
            (self.selection_bytes(newer)?, self.selection_bytes(older)?)
        else {
            return Ok(None);
        };
        Ok(SelectionSum::diff_stored(
            (&new_bytes, newer),
            (&old_bytes, older),
        ))
    }

    /// Every intact record, for export and reports (damaged ones are skipped).
    pub fn records(&self) -> Result<Vec<StoredRecord>, CacheDbError> {
        let mut out = Vec::new();
        for path in self.files("records")? {
            let Some(key) = key_of(&path) else { continue };
            if let Some((envelope, file)) = read_record(&path)?
                && envelope.key == key
            {
                let meta = file.metadata().map_err(|source| CacheDbError::Read {
                    path: path.clone(),
                    source,
                })?;
                out.push(StoredRecord {
                    key,
                    record: envelope.record,
                    last_used: meta.modified().unwrap_or(UNIX_EPOCH),
                    size: meta.len(),
                });
            }
        }
        out.sort_by_key(|r| r.key);
        Ok(out)
    }

    /// Counts and sizes, for the CLI.
    pub fn usage(&self) -> Result<CacheUsage, CacheDbError> {
        let mut u = CacheUsage::default();
        let mut layers = BTreeMap::new();
        for r in self.records()? {
            u.records += 1;
            u.record_bytes += r.size;
            if let Some(l) = r.record.layer {
                layers.insert(l.digest.clone(), l.size);
            }
        }
        u.layers = layers.len();
        u.layer_bytes = layers.values().sum();
        for path in self.files("selections")? {
            u.selections += 1;
            u.selection_bytes += file_size(&path);
        }
        for path in self.files("context")? {
            u.stat_cache_bytes += file_size(&path);
        }
        Ok(u)
    }

    /// Removes the records `filter` selects, damaged records, step pointers and selection
    /// lists no record uses any more, and crash leftovers.
    pub fn prune(&self, filter: &PruneFilter) -> Result<PruneReport, CacheDbError> {
        self.prune_by(|_, record, last_used| {
            filter.all
                || filter.created_before.is_some_and(|t| record.created < t)
                || filter.unused_since.is_some_and(|t| last_used < t)
        })
    }

    /// Removes the records whose keys are in `keys` (a plan made from [`CacheDb::records`],
    /// e.g. least recently used first), and the rest as [`CacheDb::prune`] does.
    pub fn prune_keys(&self, keys: &BTreeSet<CacheKey>) -> Result<PruneReport, CacheDbError> {
        self.prune_by(|key, _, _| keys.contains(key))
    }

    /// The layers the intact records use now.
    pub fn used_layers(&self) -> Result<BTreeSet<Digest>, CacheDbError> {
        Ok(self
            .records()?
            .into_iter()
            .filter_map(|r| r.record.layer.map(|l| l.digest))
            .collect())
    }

    fn prune_by(
        &self,
        goes: impl Fn(&CacheKey, &Record, SystemTime) -> bool,
    ) -> Result<PruneReport, CacheDbError> {
        let now = SystemTime::now();
        let mut report = PruneReport::default();
        let mut kept_layers = BTreeSet::new();
        let mut released = BTreeMap::new();
        let mut kept_selections = BTreeSet::new();
        let mut kept_keys = BTreeSet::new();
        for path in self.files("records")? {
            let size = file_size(&path);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with(".tmp-") {
                if is_older_than(&path, now, TEMP_GRACE) {
                    remove(&path)?;
                    report.bytes += size;
                }
                continue;
            }
            let parsed = match key_of(&path) {
                Some(key) => read_record(&path)?.filter(|(e, _)| e.key == key),
                None => None,
            };
            let Some((envelope, file)) = parsed else {
                remove(&path)?;
                report.records += 1;
                report.bytes += size;
                continue;
            };
            let last_used = file
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            let record = envelope.record;
            if goes(&envelope.key, &record, last_used) {
                remove(&path)?;
                report.records += 1;
                report.bytes += size;
                let layer_size = record.layer.as_ref().map_or(0, |l| l.size);
                report.removed.push((envelope.key, layer_size));
                if let Some(l) = record.layer {
                    released.insert(l.digest.clone(), l);
                }
            } else {
                if let Some(l) = &record.layer {
                    kept_layers.insert(l.digest.clone());
                }
                kept_selections.extend(record.parts.contents.iter().copied());
                kept_keys.insert(envelope.key);
            }
        }
        for path in self.files("steps")? {
            let target = fs_err::read_to_string(&path)
                .ok()
                .and_then(|t| CacheKey::from_hex(t.trim()));
            let stale = target.is_none_or(|k| !kept_keys.contains(&k));
            if stale && is_older_than(&path, now, SELECTION_GRACE) {
                report.bytes += file_size(&path);
                remove(&path)?;
            }
        }
        for path in self.files("selections")? {
            let used = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Checksum::from_hex)
                .is_some_and(|c| kept_selections.contains(&c));
            if !used && is_older_than(&path, now, SELECTION_GRACE) {
                report.bytes += file_size(&path);
                remove(&path)?;
            }
        }
        report.released_layers = released
            .into_values()
            .filter(|l| !kept_layers.contains(&l.digest))
            .collect();
        report.kept_layers = kept_layers;
        Ok(report)
    }

    /// Reads a record without marking it used.
    fn peek(&self, key: &CacheKey) -> Result<Option<Record>, CacheDbError> {
        Ok(read_record(&self.record_path(key))?
            .filter(|(e, _)| e.key == *key)
            .map(|(e, _)| e.record))
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        sharded(&self.dir.join("records"), &key.to_hex(), ".json")
    }

    fn step_path(&self, step: &Checksum) -> PathBuf {
        sharded(&self.dir.join("steps"), &step.to_hex(), "")
    }

    fn selection_path(&self, checksum: &Checksum) -> PathBuf {
        sharded(&self.dir.join("selections"), &checksum.to_hex(), "")
    }

    /// Every file in the (sharded) directory `sub`.
    fn files(&self, sub: &str) -> Result<Vec<PathBuf>, CacheDbError> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir.join(sub)];
        while let Some(dir) = dirs.pop() {
            let read = match fs_err::read_dir(&dir) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => return Err(CacheDbError::Read { path: dir, source }),
            };
            for item in read {
                let item = item.map_err(|source| CacheDbError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = item.path();
                match item.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(path),
                    Ok(_) => out.push(path),
                    Err(source) => return Err(CacheDbError::Read { path, source }),
                }
            }
        }
        Ok(out)
    }
}

/// `<base>/<first two hex>/<hex><suffix>`: keeps directories small.
fn sharded(base: &Path, hex: &str, suffix: &str) -> PathBuf {
    base.join(&hex[..2]).join(format!("{hex}{suffix}"))
}

fn key_of(path: &Path) -> Option<CacheKey> {
    let name = path.file_name()?.to_str()?;
    CacheKey::from_hex(name.strip_suffix(".json")?)
}

/// The parsed record at `path` with its open file; `None` if missing or damaged.
fn read_record(path: &Path) -> Result<Option<(Envelope, fs_err::File)>, CacheDbError> {
    let mut file = match fs_err::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheDbError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut bytes = Vec::new();
    if let Err(source) = std::io::Read::read_to_end(&mut file, &mut bytes) {
        return Err(CacheDbError::Read {
            path: path.to_owned(),
            source,
        });
    }
    match serde_json::from_slice::<Envelope>(&bytes) {
        Ok(e) if e.version == RECORD_VERSION => Ok(Some((e, file))),
        _ => Ok(None),
    }
}

/// Makes the shard directory of the cache file `path`.
fn make_parent(path: &Path) -> Result<(), CacheDbError> {
    let parent = path
        .parent()
        .expect("cache files live in a shard directory");
    fs_err::create_dir_all(parent).map_err(|source| CacheDbError::Create {
        path: parent.to_owned(),
        source,
    })
}

/// Writes `bytes` at `path` with `write` (durable or not), making its shard directory first.
fn write_file_with(
    path: &Path,
    bytes: &[u8],
    write: fn(&Path, &[u8]) -> Result<(), durable::DurableError>,
) -> Result<(), CacheDbError> {
    make_parent(path)?;
    write(path, bytes).map_err(|e| CacheDbError::Write {
        path: path.to_owned(),
        source: e.into(),
    })
}

fn remove(path: &Path) -> Result<(), CacheDbError> {
    match fs_err::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CacheDbError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

fn file_size(path: &Path) -> u64 {
    fs_err::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn is_older_than(path: &Path, now: SystemTime, age: Duration) -> bool {
    fs_err::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age))
}

mod unix_nanos {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let nanos = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_nanos(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryKind;
    use crate::selection::SelectedEntry;
    use strata_graph::NodeHash;
    use strata_store::media_type::OCI_LAYER_ZSTD;

    fn layer(n: u8) -> LayerDescriptor {
        LayerDescriptor {
            digest: Digest::of(&[n]),
            diff_id: Digest::of(&[n + 100]),
            size: 1000 * u64::from(n),
            media_type: OCI_LAYER_ZSTD.into(),
            uncompressed_size: Some(2000 * u64::from(n)),
        }
    }

    fn record(n: u8, created: SystemTime) -> (CacheKey, Record) {
        let parts = KeyParts {
            node: NodeHash([n; 32]),
            inputs: vec![CacheKey([n.wrapping_add(1); 32])],
            contents: vec![],
        };
        let record = Record {
            layer: Some(layer(n)),
            chain_id: Some(Digest::of(&[n])),
            diff_ids: vec![layer(n).diff_id],
            created,
            parts: parts.clone(),
            step: None,
            definition: Some(serde_json::json!({"exec": {"args": ["make"]}})),
            duration_ms: Some(1500),
        };
        (parts.key(), record)
    }

    fn db() -> (tempfile::TempDir, CacheDb) {
        let root = tempfile::tempdir().unwrap();
        let db = CacheDb::open(root.path()).unwrap();
        (root, db)
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        fs_err::File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn records_round_trip_and_misses_are_none() {
        let (_root, db) = db();
        let (key, rec) = record(1, SystemTime::now());
        assert_eq!(db.get(&key).unwrap(), None);
        db.put(&key, &rec).unwrap();
        assert_eq!(db.get(&key).unwrap(), Some(rec.clone()));
        // Overwriting is fine; the last write wins.
        let mut newer = rec.clone();
        newer.layer = None;
        db.put(&key, &newer).unwrap();
        assert_eq!(db.get(&key).unwrap(), Some(newer));
        assert_eq!(db.records().unwrap().len(), 1);
        // The file names its key in hex and is readable JSON.
        let text = fs_err::read_to_string(db.record_path(&key)).unwrap();
        assert!(text.contains(&key.to_hex()));
    }

    #[test]
    fn damaged_records_are_misses_and_prune_removes_them() {
        let (_root, db) = db();
        let (key, rec) = record(2, SystemTime::now());
        db.put(&key, &rec).unwrap();
        let path = db.record_path(&key);
        let good = fs_err::read(&path).unwrap();
        // A digest that is not `sha256:<64 lowercase hex>` (it would become a blob path).
        let text = String::from_utf8(good.clone()).unwrap();
        let chain = rec.chain_id.as_ref().unwrap().to_string();
        assert!(text.contains(&chain));
        let bad_digest = text.replace(&chain, "sha256:../../etc/passwd");
        for bad in [
            &good[..good.len() / 2],
            b"",
            b"\xff\xfe not json",
            b"{\"version\":99}",
            bad_digest.as_bytes(),
        ] {
            fs_err::write(&path, bad).unwrap();
            assert_eq!(db.get(&key).unwrap(), None);
        }
        // A record filed under another key is not trusted either.
        let (other, _) = record(3, SystemTime::now());
        fs_err::create_dir_all(db.record_path(&other).parent().unwrap()).unwrap();
        fs_err::write(db.record_path(&other), &good).unwrap();
        assert_eq!(db.get(&other).unwrap(), None);
        let report = db.prune(&PruneFilter::default()).unwrap();
        assert_eq!(report.records, 2);
        assert!(!path.exists() && !db.record_path(&other).exists());
    }

    #[test]
    fn prune_by_age_use_or_all_and_release_only_unused_layers() {
        let (_root, db) = db();
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        let (k_old, r_old) = record(1, now - 10 * day);
        let (k_idle, r_idle) = record(2, now - day);
        let (k_new, mut r_new) = record(3, now);
        // r_new shares r_old's layer: pruning r_old must not release it.
        r_new.layer = Some(layer(1));
        for (k, r) in [(&k_old, &r_old), (&k_idle, &r_idle), (&k_new, &r_new)] {
            db.put(k, r).unwrap();
        }
        set_mtime(&db.record_path(&k_idle), now - 3 * day);
        set_mtime(&db.record_path(&k_old), now - 3 * day);
        assert!(db.get(&k_old).unwrap().is_some(), "a hit marks it used");

        let usage = db.usage().unwrap();
        assert_eq!(
            (usage.records, usage.layers, usage.layer_bytes),
            (3, 2, 3000)
        );

        let unused = db.prune(&PruneFilter {
            unused_since: Some(now - day),
            ..Default::default()
        });
        let unused = unused.unwrap();
        assert_eq!(unused.records, 1);
        assert_eq!(unused.released_layers, [layer(2)]);
        assert!(unused.bytes > 0);
        assert!(db.get(&k_idle).unwrap().is_none());

        let aged = db.prune(&PruneFilter {
            created_before: Some(now - 5 * day),
            ..Default::default()
        });
        let aged = aged.unwrap();
        assert_eq!(aged.records, 1);
        assert!(
            aged.released_layers.is_empty(),
            "layer 1 is still used by the newest record"
        );

        let all = db
            .prune(&PruneFilter {
                all: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.records, 1);
        assert_eq!(all.released_layers, [layer(1)]);
        assert_eq!(db.usage().unwrap(), CacheUsage::default());
    }

    #[test]
    fn prune_keys_removes_exactly_those_and_names_the_layers_still_used() {
        let (_root, db) = db();
        let now = SystemTime::now();
        let (k1, r1) = record(1, now);
        let (k2, mut r2) = record(2, now);
        let (k3, r3) = record(3, now);
        r2.layer = Some(layer(1)); // shares r1's layer
        for (k, r) in [(&k1, &r1), (&k2, &r2), (&k3, &r3)] {
            db.put(k, r).unwrap();
        }
        let report = db.prune_keys(&BTreeSet::from([k1, k3])).unwrap();
        let mut removed = report.removed.clone();
        removed.sort();
        let mut expected = vec![(k1, 1000), (k3, 3000)];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(report.released_layers, [layer(3)], "layer 1 is r2's too");
        assert_eq!(report.kept_layers, BTreeSet::from([layer(1).digest]));
        assert_eq!(db.used_layers().unwrap(), report.kept_layers);
        assert!(db.get(&k2).unwrap().is_some() && db.get(&k1).unwrap().is_none());
    }

    #[test]
    fn steps_point_at_their_latest_record_and_selections_are_kept_for_explain() {
        let (_root, db) = db();
        let step = StepRef {
            id: Checksum([7; 32]),
            description: "[build 2/4] COPY src /src".into(),
        };
        let list = |digest: u8| {
            SelectionSum::new(vec![SelectedEntry {
                path: "src/main.rs".into(),
                kind: EntryKind::File,
                digest: Checksum([digest; 32]),
            }])
        };
        let (old_sel, new_sel) = (list(1), list(2));
        db.put_selection(&old_sel).unwrap();
        db.put_selection(&old_sel).unwrap(); // idempotent
        let (k1, mut r1) = record(1, SystemTime::now());
        r1.parts.contents = vec![old_sel.checksum];
        r1.step = Some(step.clone());
        db.put(&k1, &r1).unwrap();
        assert_eq!(db.last_for_step(&step.id).unwrap(), Some((k1, r1.clone())));

        // The next build of that step misses: explain finds the old record and its files.
        db.put_selection(&new_sel).unwrap();
        let (prev_key, prev) = db.last_for_step(&step.id).unwrap().unwrap();
        assert_eq!(prev_key, k1);
        let old_files = db.selection(&prev.parts.contents[0]).unwrap().unwrap();
        assert_eq!(new_sel.diff(&old_files).changed, ["src/main.rs"]);

        let (k2, mut r2) = record(2, SystemTime::now());
        r2.step = Some(step.clone());
        r2.parts.contents = vec![new_sel.checksum];
        db.put(&k2, &r2).unwrap();
        assert_eq!(
            db.last_for_step(&step.id).unwrap().map(|(k, _)| k),
            Some(k2)
        );
        assert_eq!(db.last_for_step(&Checksum([8; 32])).unwrap(), None);

        // A damaged list is not returned.
        let path = db.selection_path(&new_sel.checksum);
        fs_err::write(&path, b"strata-selection-v1\ngarbage").unwrap();
        assert_eq!(db.selection(&new_sel.checksum).unwrap(), None);

        // Prune keeps lists records use; an unused one goes once it is old enough.
        fs_err::remove_file(&path).unwrap();
        db.put(&k1, &r1).unwrap();
        db.prune(&PruneFilter {
            all: false,
            ..Default::default()
        })
        .unwrap();
        assert!(db.selection(&old_sel.checksum).unwrap().is_some());
        db.prune(&PruneFilter {
            all: true,
            ..Default::default()
        })
        .unwrap();
        let old_path = db.selection_path(&old_sel.checksum);
        assert!(
            old_path.exists(),
            "a young list survives (a build may be writing its record)"
        );
        set_mtime(&old_path, SystemTime::now() - 2 * SELECTION_GRACE);
        db.prune(&PruneFilter::default()).unwrap();
        assert!(!old_path.exists());
    }

    #[test]
    fn concurrent_threads_never_see_a_torn_record() {
        let (_root, db) = db();
        let keys: Vec<CacheKey> = (0..4).map(|n| record(n, UNIX_EPOCH).0).collect();
        std::thread::scope(|s| {
            for w in 0..6u8 {
                let (db, keys) = (&db, &keys);
                s.spawn(move || {
                    for i in 0..40u8 {
                        let key = keys[usize::from(i % 4)];
                        let (_, mut rec) = record(i % 4, UNIX_EPOCH);
                        rec.diff_ids =
                            vec![Digest::of(format!("writer {w} round {i}").as_bytes()); 50];
                        db.put(&key, &rec).unwrap();
                        let got = db.get(&keys[usize::from((i + w) % 4)]).unwrap();
                        if let Some(got) = got {
                            assert_eq!(got.diff_ids.len(), 50, "whole records only");
                        }
                    }
                });
            }
        });
        assert_eq!(db.records().unwrap().len(), 4);
        let leftovers = db.files("records").unwrap().into_iter().filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tmp-"))
        });
        assert_eq!(leftovers.count(), 0);
    }

    const CHILD_ROOT: &str = "STRATA_CACHE_TEST_CHILD_ROOT";

    /// Run by `concurrent_processes_share_one_database` in child processes.
    #[test]
    #[ignore = "child process of concurrent_processes_share_one_database"]
    fn child_writer() {
        #[expect(clippy::disallowed_methods, reason = "the parent test passes the root")]
        let root = std::env::var(CHILD_ROOT).expect("run by the parent test");
        let db = CacheDb::open(Path::new(&root)).unwrap();
        for i in 0..30u8 {
            let (key, rec) = record(i, UNIX_EPOCH + Duration::from_secs(u64::from(i)));
            db.put(&key, &rec).unwrap();
            for j in 0..30u8 {
                let (k, expected) = record(j, UNIX_EPOCH + Duration::from_secs(u64::from(j)));
                if let Some(got) = db.get(&k).unwrap() {
                    assert_eq!(got, expected);
                }
            }
        }
    }

    #[test]
    fn concurrent_processes_share_one_database() {
        let (root, db) = db();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "record::tests::child_writer",
                        "--ignored",
                        "--quiet",
                    ])
                    .env(CHILD_ROOT, root.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "a writer process failed");
        }
        let records = db.records().unwrap();
        assert_eq!(records.len(), 30);
        for r in records {
            let n = r.record.parts.node.0[0];
            assert_eq!(
                r.record,
                record(n, UNIX_EPOCH + Duration::from_secs(u64::from(n))).1
            );
        }
    }
}
