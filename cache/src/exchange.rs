//! Cache exchange: build cache records and their layers in a directory that CI runners share
//! (`--cache-to type=local,dest=DIR`, `--cache-from type=local,src=DIR`).
//!
//! The directory is an OCI image layout, so any OCI tool can store, copy or push it:
//! `oci-layout`, `index.json` naming one manifest (`org.opencontainers.image.ref.name` =
//! `strata-cache`), whose config blob (`application/vnd.strata.cache.config.v1+json`) lists
//! the [`Record`]s by key and whose layers are every layer a record hands out. Blobs are
//! content-addressed and written once (temp file, fsync, rename); `index.json` is replaced
//! atomically under an exclusive lock, and an export merges its records with those already
//! there, so two runners exporting at once both keep theirs. Importing verifies the manifest
//! and config digests; layer blobs are verified when they are copied into a store, which
//! happens only for the layers a build actually needs.

use crate::checksum::Checksum;
use crate::key::CacheKey;
use crate::record::{CacheDb, Record};
use crate::selection::SelectionSum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use strata_store::durable::{self, DurableError};
use strata_store::media_type::{
    OCI_INDEX, OCI_MANIFEST, STRATA_CACHE_ARTIFACT, STRATA_CACHE_CONFIG,
};
use strata_store::{Compression, Digest, HashingWriter, LayerDescriptor, Store};

/// The name `index.json` gives the cache manifest.
pub const CACHE_REF_NAME: &str = "strata-cache";
/// Manifests, configs and indexes larger than this are refused (hostile directories).
const MAX_DOCUMENT: u64 = 64 << 20;

/// What went wrong with a cache directory.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reading or writing the directory failed.
    #[error("failed to {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The directory holds something that is not a strata cache, or is damaged.
    #[error("{} is not a valid strata cache: {reason}", dir.display())]
    Invalid {
        /// The cache directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store failed while a layer was read from or written to it.
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
}

impl From<DurableError> for ExchangeError {
    fn from(e: DurableError) -> ExchangeError {
        ExchangeError::Io {
            what: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExchangeError {
    let path = path.to_owned();
    move |source| ExchangeError::Io { what, path, source }
}

/// The config blob: every record, by key, and the file lists of their COPY selections (as
/// blobs of the directory) so that `--explain` on another runner can name changed files.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheConfig {
    records: BTreeMap<CacheKey, Record>,
    #[serde(default)]
    selections: BTreeMap<Checksum, String>,
}

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// The compression of layer blobs in the directory.
    pub compression: Compression,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            compression: Compression::Zstd,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records in the directory afterwards.
    pub records: usize,
    /// Layer blobs written by this export (others were there already).
    pub layers_written: usize,
    /// Bytes of layer blobs written by this export.
    pub bytes_written: u64,
}

/// A cache directory opened for import: its records, and where its blobs are.
#[derive(Debug, Clone)]
pub struct ImportedCache {
    dir: PathBuf,
    records: BTreeMap<CacheKey, Record>,
    selections: BTreeMap<Checksum, String>,
}

impl ImportedCache {
    /// Reads the cache in `dir`. A directory without `index.json` is an empty cache (the first
    /// CI run); anything else that is not a strata cache is an error.
    pub fn open(dir: &Path) -> Result<ImportedCache, ExchangeError> {
        let config = read_config(dir)?;
        Ok(ImportedCache {
            dir: dir.to_owned(),
            records: config.records,
            selections: config.selections,
        })
    }

    /// The newest record made for the step `step` (see [`crate::StepRef`]), with its key.
    pub fn last_for_step(&self, step: &Checksum) -> Option<(CacheKey, &Record)> {
        self.records
            .iter()
            .filter(|(_, r)| r.step.as_ref().is_some_and(|s| &s.id == step))
            .max_by_key(|(_, r)| r.created)
            .map(|(k, r)| (*k, r))
    }

    /// The file list of the selection `checksum`, if the directory carries it intact.
    pub fn selection(&self, checksum: &Checksum) -> Option<SelectionSum> {
        let digest = self.selections.get(checksum)?;
        let bytes = read_blob_verified(&self.dir, digest).ok()?;
        SelectionSum::from_bytes(&bytes, checksum)
    }

    /// The record under `key`, if the directory has one.
    pub fn get(&self, key: &CacheKey) -> Option<&Record> {
        self.records.get(key)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the directory holds the blob `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        blob_path(&self.dir, digest).is_file()
    }

    /// Copies the blob `digest` into `store`, verifying it. Returns false when the directory
    /// does not have it.
    pub fn fetch_into(&self, store: &Store, digest: &Digest) -> Result<bool, ExchangeError> {
        let path = blob_path(&self.dir, digest);
        let file = match fs_err::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        store.put_blob(Some(digest), file)?;
        Ok(true)
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

fn read_limited(path: &Path, dir: &Path) -> Result<Vec<u8>, ExchangeError> {
    let file = fs_err::File::open(path).map_err(io_err("open", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(invalid(dir, format!("{} is too large", path.display())));
    }
    Ok(bytes)
}

fn invalid(dir: &Path, reason: impl Into<String>) -> ExchangeError {
    ExchangeError::Invalid {
        dir: dir.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a document blob and checks it against its digest.
fn read_blob_verified(dir: &Path, digest: &str) -> Result<Vec<u8>, ExchangeError> {
    let digest: Digest = digest
        .parse()
        .map_err(|_| invalid(dir, format!("bad digest {digest:?}")))?;
    let bytes = read_limited(&blob_path(dir, &digest), dir)?;
    if Digest::of(&bytes) != digest {
        return Err(invalid(
            dir,
            format!("blob {digest} does not match its digest"),
        ));
    }
    Ok(bytes)
}

fn read_config(dir: &Path) -> Result<CacheConfig, ExchangeError> {
    let index_path = dir.join("index.json");
    if !index_path.exists() {
        return Ok(CacheConfig::default());
    }
    let index: serde_json::Value = serde_json::from_slice(&read_limited(&index_path, dir)?)
        .map_err(|e| invalid(dir, format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| invalid(dir, "index.json has no manifests"))?;
    let Some(entry) = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == CACHE_REF_NAME)
    else {
        return Err(invalid(dir, "index.json names no strata-cache manifest"));
    };
    let manifest_digest = entry["digest"]
        .as_str()
        .ok_or_else(|| invalid(dir, "the manifest entry has no digest"))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_blob_verified(dir, manifest_digest)?)
            .map_err(|e| invalid(dir, format!("manifest: {e}")))?;
    if manifest["config"]["mediaType"] != STRATA_CACHE_CONFIG {
        return Err(invalid(
            dir,
            "the manifest's config is not a strata cache config",
        ));
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| invalid(dir, "the manifest's config has no digest"))?;
    serde_json::from_slice(&read_blob_verified(dir, config_digest)?)
        .map_err(|e| invalid(dir, format!("cache config: {e}")))
}

/// Writes `bytes` as a blob of `dir` (if it is not there yet) and returns its digest.
fn put_document(dir: &Path, bytes: &[u8]) -> Result<Digest, ExchangeError> {
    let digest = Digest::of(bytes);
    let path = blob_path(dir, &digest);
    if !path.exists() {
        durable::write_atomic_with(&path, |w| w.write_all(bytes))?;
    }
    Ok(digest)
}

/// Copies (recompressing when needed) `layer` from `store` into `dir`; returns the descriptor
/// of the blob in the directory.
fn export_layer(
    dir: &Path,
    store: &Store,
    layer: &LayerDescriptor,
    compression: Compression,
) -> Result<(LayerDescriptor, u64), ExchangeError> {
    let blobs = dir.join("blobs/sha256");
    if layer.media_type == compression.media_type() {
        let path = blob_path(dir, &layer.digest);
        if path.exists() {
            return Ok((layer.clone(), 0));
        }
        let mut src = store.open_blob(&layer.digest)?;
        durable::write_atomic_with(&path, |w| io::copy(&mut src, w).map(|_| ()))?;
        return Ok((layer.clone(), layer.size));
    }
    let mut tmp = durable::temp_file_in(&blobs)?;
    let mut reader = store.layer_reader(layer)?;
    let (digest, size) = {
        let mut out = HashingWriter::new(io::BufWriter::new(tmp.as_file_mut()));
        compression
            .compress(&mut reader, &mut out)
            .and_then(|out| out.flush())
            .map_err(io_err("write a layer into", dir))?;
        let (_, digest, size) = out.finish();
        (digest, size)
    };
    durable::persist(tmp, &blob_path(dir, &digest))?;
    Ok((
        LayerDescriptor {
            media_type: compression.media_type().to_owned(),
            digest,
            size,
            diff_id: layer.diff_id.clone(),
            uncompressed_size: layer.uncompressed_size,
        },
        size,
    ))
}

/// Exports `records` (whose layers are all in `store`) into the cache directory `dir`,
/// merging with what is there, with the file lists `db` keeps for their selections. Safe
/// against another process exporting into `dir` at once.
pub fn export(
    dir: &Path,
    store: &Store,
    db: &CacheDb,
    records: &[(CacheKey, Record)],
    options: &ExportOptions,
) -> Result<ExportReport, ExchangeError> {
    let blobs = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
    let lock_path = dir.join(".strata-cache.lock");
    let lock = fs_err::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err("lock", &lock_path)(e.into()))?;

    let mut config = read_config(dir)?;
    // Layers already exported in the wanted compression, by diff ID.
    let mut exported: BTreeMap<Digest, LayerDescriptor> = config
        .records
        .values()
        .filter_map(|r| r.layer.as_ref())
        .filter(|l| l.media_type == options.compression.media_type())
        .filter(|l| blob_path(dir, &l.digest).is_file())
        .map(|l| (l.diff_id.clone(), l.clone()))
        .collect();
    let mut report = ExportReport::default();
    for (key, record) in records {
        let mut record = record.clone();
        if let Some(layer) = record.layer.clone() {
            let out = match exported.get(&layer.diff_id) {
                Some(done) => done.clone(),
                None => {
                    let (out, bytes) = export_layer(dir, store, &layer, options.compression)?;
                    if bytes > 0 {
                        report.layers_written += 1;
                        report.bytes_written += bytes;
                    }
                    exported.insert(out.diff_id.clone(), out.clone());
                    out
                }
            };
            record.layer = Some(out);
        }
        for sum in &record.parts.contents {
            if config.selections.contains_key(sum) {
                continue;
            }
            if let Ok(Some(list)) = db.selection(sum) {
                let digest = put_document(dir, &list.to_bytes())?;
                config.selections.insert(*sum, digest.to_string());
            }
        }
        config.records.insert(*key, record);
    }

    let config_bytes = serde_json::to_vec(&config).expect("records are plain JSON data");
    let config_digest = put_document(dir, &config_bytes)?;
    let mut layers: BTreeMap<Digest, LayerDescriptor> = BTreeMap::new();
    for l in config.records.values().filter_map(|r| r.layer.as_ref()) {
        layers.entry(l.digest.clone()).or_insert_with(|| l.clone());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": STRATA_CACHE_ARTIFACT,
        "config": {
            "mediaType": STRATA_CACHE_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.values().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest is plain JSON");
    let manifest_digest = put_document(dir, &manifest_bytes)?;
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        durable::write_atomic_with(&layout, |w| {
            w.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#)
        })?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "artifactType": STRATA_CACHE_ARTIFACT,
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": CACHE_REF_NAME },
        }],
    });
    let index_bytes = serde_json::to_vec(&index).expect("an index is plain JSON");
    durable::write_atomic_with(&dir.join("index.json"), |w| w.write_all(&index_bytes))?;
    report.records = config.records.len();
    drop(lock);
    Ok(report)
}
