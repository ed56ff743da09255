//! Cache exchange: build cache records and their layers in a place that CI runners share, a
//! directory (`--cache-to type=local,dest=DIR`) or a registry tag (`--cache-to
//! type=registry,ref=HOST/REPO:TAG`). Both hold one artifact, written and read by one code
//! path:
//!
//! - the config blob (`application/vnd.strata.cache.config.v1+json`) lists the [`Record`]s by
//!   key and the digests of the file lists of their COPY selections;
//! - the layers every record hands out, and the selection file lists, are ordinary blobs;
//!   with `cache-mounts=true` the config also names each exported `RUN --mount=type=cache`
//!   directory's chain of layers ([`CacheMountChain`]), blobs like the others;
//! - an OCI image manifest (`artifactType` `application/vnd.strata.cache.v1`) names the config
//!   and the blobs. A directory is an OCI image layout whose `index.json` names that manifest
//!   (`org.opencontainers.image.ref.name` = `strata-cache`). At a registry the tag names that
//!   manifest with `image-manifest=true`, else (the default, as BuildKit) an OCI index whose
//!   `manifests` are the blobs, the config last.
//!
//! Blobs are content-addressed and written once. An export merges its records with those
//! already there: a directory's `index.json` is replaced atomically under an exclusive lock,
//! so two runners exporting at once both keep theirs; a registry has no locks, so of two
//! runners exporting at once the last tag write wins, each having merged what it saw.
//! Importing verifies the manifest and config digests; a layer blob crosses over (and is
//! verified) only when a build needs it.

use crate::checksum::Checksum;
use crate::key::CacheKey;
use crate::record::{CacheDb, Record};
use crate::selection::SelectionSum;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_store::durable::{self, DurableError};
use strata_store::media_type::{
    BUILDKIT_CACHE_CONFIG, OCI_INDEX, OCI_MANIFEST, STRATA_CACHE_ARTIFACT, STRATA_CACHE_CONFIG,
    STRATA_CACHE_SELECTION,
};
use strata_store::{
    Compression, Digest, HashingWriter, LayerDescriptor, Reference, RegistryClient, RegistryError,
    Store,
};

/// The name `index.json` gives the cache manifest.
pub const CACHE_REF_NAME: &str = "strata-cache";
/// Manifests, configs and indexes larger than this are refused (hostile directories).
const MAX_DOCUMENT: u64 = 64 << 20;

/// Where a cache lives.
#[derive(Debug, Clone)]
pub enum CacheLocation {
    /// A directory: an OCI image layout.
    Dir(PathBuf),
    /// A tag of a registry repository, reached through `client`.
    Registry {
        /// The client (credentials, TLS, retries) to reach the registry with.
        client: Arc<RegistryClient>,
        /// `HOST/REPO:TAG`.
        reference: Reference,
    },
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Dir(dir) => write!(f, "{}", dir.display()),
            CacheLocation::Registry { reference, .. } => write!(f, "{reference}"),
        }
    }
}

/// What went wrong with a cache directory or registry tag.
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
    /// The place holds something that is not a strata cache, or is damaged.
    #[error("{location} is not a valid strata cache: {reason}")]
    Invalid {
        /// The cache directory or registry reference.
        location: String,
        /// Why.
        reason: String,
    },
    /// A request to the registry failed.
    #[error("failed to {action} the cache at {reference}")]
    Registry {
        /// What was being done (`read`, `push`, `download a blob of`).
        action: &'static str,
        /// The cache's reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
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

fn registry_err(
    action: &'static str,
    reference: &Reference,
) -> impl FnOnce(RegistryError) -> ExchangeError {
    let reference = reference.to_string();
    move |source| ExchangeError::Registry {
        action,
        reference,
        source: Box::new(source),
    }
}

/// The config blob: every record, by key, and the file lists of their COPY selections (as
/// blobs of the cache) so that `--explain` on another runner can name changed files.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheConfig {
    records: BTreeMap<CacheKey, Record>,
    #[serde(default)]
    selections: BTreeMap<Checksum, String>,
    /// `cache-mounts=true`: RUN cache mounts by their directory name (the worker's hash of
    /// the id), each a chain of layers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    mounts: BTreeMap<String, CacheMountChain>,
}

/// A `RUN --mount=type=cache` directory in a cache: its id (for people) and its content as
/// layers, bottom first: a full layer, then deltas (whiteouts for deleted files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMountChain {
    /// The mount's `id=` (its target when it has none).
    pub id: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerDescriptor>,
}

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// The compression of layer blobs in the cache.
    pub compression: Compression,
    /// At a registry, tag an OCI image manifest (BuildKit's `image-manifest=true`) instead of
    /// an OCI index. A directory always has the manifest.
    pub image_manifest: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            compression: Compression::Zstd,
            image_manifest: false,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records in the cache afterwards.
    pub records: usize,
    /// Layer blobs written by this export (others were there already).
    pub layers_written: usize,
    /// Bytes of layer blobs written by this export.
    pub bytes_written: u64,
    /// Cache mount layers written by this export (others were there already).
    pub mount_layers_written: usize,
    /// Bytes of them.
    pub mount_bytes_written: u64,
    /// Why what was at the registry tag was replaced instead of merged with (it was not a
    /// strata cache), if it was.
    pub replaced: Option<String>,
}

/// Where an imported cache's blobs are.
#[derive(Debug, Clone)]
enum Blobs {
    /// Files of a directory.
    Dir(PathBuf),
    /// Blobs of a registry repository: those its manifest lists, with their sizes.
    Registry {
        client: Arc<RegistryClient>,
        reference: Reference,
        listed: BTreeMap<Digest, u64>,
    },
}

/// A cache opened for import: its records, and where its blobs are.
#[derive(Debug, Clone)]
pub struct ImportedCache {
    blobs: Blobs,
    records: BTreeMap<CacheKey, Record>,
    selections: BTreeMap<Checksum, String>,
    mounts: BTreeMap<String, CacheMountChain>,
}

impl ImportedCache {
    /// Reads the cache in `dir`. A directory without `index.json` is an empty cache (the first
    /// CI run); anything else that is not a strata cache is an error.
    pub fn open(dir: &Path) -> Result<ImportedCache, ExchangeError> {
        let config = read_dir_config(dir)?;
        Ok(ImportedCache {
            blobs: Blobs::Dir(dir.to_owned()),
            records: config.records,
            selections: config.selections,
            mounts: config.mounts,
        })
    }

    /// Reads the cache at `location`. For a registry, the manifest (or index) and the config
    /// are fetched now, the config through `store` (verified); layers are fetched later, one
    /// by one, by [`ImportedCache::fetch_into`]. A tag or repository that does not exist is
    /// an empty cache (the first CI run); anything else that is not a strata cache (a BuildKit
    /// cache, an image) is an error the caller may treat as a warning.
    pub fn open_at(
        location: &CacheLocation,
        store: &Store,
    ) -> Result<ImportedCache, ExchangeError> {
        let (client, reference) = match location {
            CacheLocation::Dir(dir) => return ImportedCache::open(dir),
            CacheLocation::Registry { client, reference } => (client, reference),
        };
        let (config, listed) = match read_registry(client, reference, store)? {
            Some((config, listing)) => (config, listing.blobs),
            None => (CacheConfig::default(), BTreeMap::new()),
        };
        Ok(ImportedCache {
            blobs: Blobs::Registry {
                client: client.clone(),
                reference: reference.clone(),
                listed,
            },
            records: config.records,
            selections: config.selections,
            mounts: config.mounts,
        })
    }

    /// The cache mount named `name` (its directory name), if the cache carries it. Its
    /// layers cross over with [`ImportedCache::fetch_into`], like records' layers.
    pub fn cache_mount(&self, name: &str) -> Option<&CacheMountChain> {
        self.mounts.get(name)
    }

    /// The newest record made for the step `step` (see [`crate::StepRef`]), with its key.
    pub fn last_for_step(&self, step: &Checksum) -> Option<(CacheKey, &Record)> {
        self.records
            .iter()
            .filter(|(_, r)| r.step.as_ref().is_some_and(|s| &s.id == step))
            .max_by_key(|(_, r)| r.created)
            .map(|(k, r)| (*k, r))
    }

    /// The file list of the selection `checksum`, if the cache carries it intact. At a
    /// registry this downloads the list (only `--explain` asks) into `store`.
    pub fn selection(&self, checksum: &Checksum, store: &Store) -> Option<SelectionSum> {
        let digest = self.selections.get(checksum)?;
        let bytes = match &self.blobs {
            Blobs::Dir(dir) => read_blob_verified(dir, digest).ok()?,
            Blobs::Registry { .. } => {
                let digest: Digest = digest.parse().ok()?;
                if !store.has_blob(&digest) && !self.fetch_into(store, &digest).ok()? {
                    return None;
                }
                store.read_blob(&digest).ok()?
            }
        };
        SelectionSum::from_bytes(&bytes, checksum)
    }

    /// The record under `key`, if the cache has one.
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

    /// Whether the cache holds the blob `digest` (at a registry: whether its manifest lists
    /// it; nothing is asked).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        match &self.blobs {
            Blobs::Dir(dir) => blob_path(dir, digest).is_file(),
            Blobs::Registry { listed, .. } => listed.contains_key(digest),
        }
    }

    /// Copies (or downloads) the blob `digest` into `store`, verifying it. Returns false when
    /// the cache does not have it.
    pub fn fetch_into(&self, store: &Store, digest: &Digest) -> Result<bool, ExchangeError> {
        match &self.blobs {
            Blobs::Dir(dir) => {
                let path = blob_path(dir, digest);
                let file = match fs_err::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(io_err("open", &path)(e)),
                };
                store.put_blob(Some(digest), file)?;
            }
            Blobs::Registry {
                client,
                reference,
                listed,
            } => {
                let Some(size) = listed.get(digest) else {
                    return Ok(false);
                };
                client
                    .fetch_blob_into(store, reference, digest, *size)
                    .map_err(registry_err("download a blob of", reference))?;
            }
        }
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
        return Err(invalid(
            dir.display(),
            format!("{} is too large", path.display()),
        ));
    }
    Ok(bytes)
}

fn invalid(location: impl std::fmt::Display, reason: impl Into<String>) -> ExchangeError {
    ExchangeError::Invalid {
        location: location.to_string(),
        reason: reason.into(),
    }
}

/// Reads a document blob of a directory and checks it against its digest.
fn read_blob_verified(dir: &Path, digest: &str) -> Result<Vec<u8>, ExchangeError> {
    let digest: Digest = digest
        .parse()
        .map_err(|_| invalid(dir.display(), format!("bad digest {digest:?}")))?;
    let bytes = read_limited(&blob_path(dir, &digest), dir)?;
    if Digest::of(&bytes) != digest {
        return Err(invalid(
            dir.display(),
            format!("blob {digest} does not match its digest"),
        ));
    }
    Ok(bytes)
}

/// What a cache manifest or index names: the config blob and the other blobs, with sizes.
#[derive(Debug)]
struct Listing {
    config: (Digest, u64),
    blobs: BTreeMap<Digest, u64>,
}

fn descriptor(value: &Value) -> Result<(Digest, u64), String> {
    let digest = value["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or("a descriptor has no valid sha256 digest")?;
    let size = value["size"]
        .as_u64()
        .ok_or("a descriptor has no valid size")?;
    Ok((digest, size))
}

/// Reads a cache's manifest (its `config` is the strata config) or index (one of its
/// `manifests` is), and says what else it is when it is not a strata cache.
fn listing(doc: &Value) -> Result<Listing, String> {
    let (config, others): (&Value, Vec<&Value>) = if let Some(config) = doc.get("config") {
        let layers = doc["layers"]
            .as_array()
            .ok_or("the manifest has no layers")?;
        (config, layers.iter().collect())
    } else if let Some(entries) = doc["manifests"].as_array() {
        let is_config = |e: &&Value| {
            e["mediaType"] == STRATA_CACHE_CONFIG || e["mediaType"] == BUILDKIT_CACHE_CONFIG
        };
        let config = entries
            .iter()
            .find(is_config)
            .ok_or("it is an index that names no cache config (an image index, not a cache)")?;
        (config, entries.iter().filter(|e| !is_config(e)).collect())
    } else {
        return Err("it is neither an OCI manifest nor an index".into());
    };
    match config["mediaType"].as_str() {
        Some(STRATA_CACHE_CONFIG) => {}
        Some(BUILDKIT_CACHE_CONFIG) => {
            return Err(
                "it holds a BuildKit cache, whose records use BuildKit's cache keys, not strata's"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "its config is {:?}, not a strata cache config (an image?)",
                other.unwrap_or_default()
            ));
        }
    }
    let config = descriptor(config)?;
    if config.1 > MAX_DOCUMENT {
        return Err(format!("its config is over the {MAX_DOCUMENT}-byte limit"));
    }
    let blobs = others
        .into_iter()
        .map(descriptor)
        .collect::<Result<_, _>>()?;
    Ok(Listing { config, blobs })
}

fn read_dir_config(dir: &Path) -> Result<CacheConfig, ExchangeError> {
    let index_path = dir.join("index.json");
    if !index_path.exists() {
        return Ok(CacheConfig::default());
    }
    let bad = |reason: String| invalid(dir.display(), reason);
    let index: Value = serde_json::from_slice(&read_limited(&index_path, dir)?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no manifests".into()))?;
    let Some(entry) = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == CACHE_REF_NAME)
    else {
        return Err(bad("index.json names no strata-cache manifest".into()));
    };
    let manifest_digest = entry["digest"]
        .as_str()
        .ok_or_else(|| bad("the manifest entry has no digest".into()))?;
    let manifest: Value = serde_json::from_slice(&read_blob_verified(dir, manifest_digest)?)
        .map_err(|e| bad(format!("manifest: {e}")))?;
    let listing = listing(&manifest).map_err(bad)?;
    serde_json::from_slice(&read_blob_verified(dir, &listing.config.0.to_string())?)
        .map_err(|e| bad(format!("cache config: {e}")))
}

/// Fetches the cache at `reference`: `None` when the tag (or the repository) does not exist.
fn read_registry(
    client: &RegistryClient,
    reference: &Reference,
    store: &Store,
) -> Result<Option<(CacheConfig, Listing)>, ExchangeError> {
    let raw = match client.raw_manifest(reference) {
        Ok(raw) => raw,
        Err(RegistryError::ManifestNotFound { .. }) => return Ok(None),
        Err(e) => return Err(registry_err("read", reference)(e)),
    };
    let bad = |reason: String| invalid(reference, reason);
    let doc: Value = serde_json::from_slice(&raw.bytes).map_err(|e| bad(e.to_string()))?;
    let listing = listing(&doc).map_err(bad)?;
    let (digest, size) = &listing.config;
    if !store.has_blob(digest) {
        client
            .fetch_blob_into(store, reference, digest, *size)
            .map_err(registry_err("download the config of", reference))?;
    }
    let config = serde_json::from_slice(&store.read_blob(digest)?)
        .map_err(|e| bad(format!("cache config: {e}")))?;
    Ok(Some((config, listing)))
}

/// Where an export writes blobs: the one merge ([`merge`]) over a directory or a registry.
trait Sink {
    /// Whether the cache has blob `digest` (from before or written by this export).
    fn has(&self, digest: &Digest) -> bool;
    /// The size of blob `digest` of the cache, if it has it.
    fn size_of(&self, digest: &Digest) -> Option<u64>;
    /// Writes `layer` of `store` in `compression`; returns its descriptor there and the bytes
    /// written (0 if it was there).
    fn put_layer(
        &mut self,
        store: &Store,
        layer: &LayerDescriptor,
        compression: Compression,
    ) -> Result<(LayerDescriptor, u64), ExchangeError>;
    /// Writes a small document; returns its digest.
    fn put_document(&mut self, bytes: &[u8]) -> Result<Digest, ExchangeError>;
}

/// What an export adds: the records with the database of their selection lists, and the
/// cache mounts.
type Exported<'a> = (
    &'a CacheDb,
    &'a [(CacheKey, Record)],
    &'a BTreeMap<String, CacheMountChain>,
);

/// Adds `records` (whose layers are all in `store`) to `config`, writing their layers and
/// selection lists (from `db`) to `sink` unless it has them in the wanted compression, and
/// the cache `mounts` (see [`merge_mounts`]).
fn merge(
    config: &mut CacheConfig,
    sink: &mut impl Sink,
    store: &Store,
    (db, records, mounts): Exported<'_>,
    compression: Compression,
    report: &mut ExportReport,
) -> Result<(), ExchangeError> {
    merge_mounts(config, sink, store, mounts, compression, report)?;
    // Layers already exported in the wanted compression, by diff ID.
    let mut exported: BTreeMap<Digest, LayerDescriptor> = config
        .records
        .values()
        .filter_map(|r| r.layer.as_ref())
        .filter(|l| l.media_type == compression.media_type() && sink.has(&l.digest))
        .map(|l| (l.diff_id.clone(), l.clone()))
        .collect();
    for (key, record) in records {
        let mut record = record.clone();
        if let Some(layer) = record.layer.clone() {
            let out = match exported.get(&layer.diff_id) {
                Some(done) => done.clone(),
                None => {
                    let (out, bytes) = sink.put_layer(store, &layer, compression)?;
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
                let digest = sink.put_document(&list.to_bytes())?;
                config.selections.insert(*sum, digest.to_string());
            }
        }
        config.records.insert(*key, record);
    }
    report.records = config.records.len();
    Ok(())
}

/// Adds the cache `mounts` (whose layers are in `store`, or in `sink` already) to `config`,
/// replacing the chains of the same names, writing only the layers `sink` lacks.
fn merge_mounts(
    config: &mut CacheConfig,
    sink: &mut impl Sink,
    store: &Store,
    mounts: &BTreeMap<String, CacheMountChain>,
    compression: Compression,
    report: &mut ExportReport,
) -> Result<(), ExchangeError> {
    for (name, chain) in mounts {
        let mut layers = Vec::with_capacity(chain.layers.len());
        for layer in &chain.layers {
            if sink.has(&layer.digest) {
                layers.push(layer.clone());
                continue;
            }
            let (out, bytes) = sink.put_layer(store, layer, compression)?;
            if bytes > 0 {
                report.mount_layers_written += 1;
                report.mount_bytes_written += bytes;
            }
            layers.push(out);
        }
        config.mounts.insert(
            name.clone(),
            CacheMountChain {
                id: chain.id.clone(),
                layers,
            },
        );
    }
    Ok(())
}

/// The blobs a cache lists besides its config: every record's layer, then the selection
/// lists, as descriptors.
fn blob_descriptors(config: &CacheConfig, sink: &impl Sink) -> Vec<Value> {
    let mut layers: BTreeMap<&Digest, &LayerDescriptor> = BTreeMap::new();
    let mount_layers = config.mounts.values().flat_map(|m| &m.layers);
    for l in config
        .records
        .values()
        .filter_map(|r| r.layer.as_ref())
        .chain(mount_layers)
    {
        layers.entry(&l.digest).or_insert(l);
    }
    let mut out: Vec<Value> = layers
        .values()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let mut selections: Vec<(Digest, u64)> = config
        .selections
        .values()
        .filter_map(|d| d.parse::<Digest>().ok())
        .filter_map(|d| sink.size_of(&d).map(|size| (d, size)))
        .collect();
    selections.sort();
    selections.dedup();
    out.extend(selections.into_iter().map(|(digest, size)| {
        serde_json::json!({"mediaType": STRATA_CACHE_SELECTION, "digest": digest, "size": size})
    }));
    out
}

/// Writes the cache config through `sink` and returns its descriptor.
fn put_config(sink: &mut impl Sink, config: &CacheConfig) -> Result<Value, ExchangeError> {
    let bytes = serde_json::to_vec(config).expect("records are plain JSON data");
    let digest = sink.put_document(&bytes)?;
    Ok(serde_json::json!({"mediaType": STRATA_CACHE_CONFIG, "digest": digest, "size": bytes.len()}))
}

/// The cache's OCI image manifest.
fn manifest_bytes(config: &Value, blobs: Vec<Value>) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": STRATA_CACHE_ARTIFACT,
        "config": config,
        "layers": blobs,
    });
    serde_json::to_vec(&manifest).expect("a manifest is plain JSON")
}

/// A directory as a [`Sink`].
struct DirSink<'a> {
    dir: &'a Path,
}

impl Sink for DirSink<'_> {
    fn has(&self, digest: &Digest) -> bool {
        blob_path(self.dir, digest).is_file()
    }

    fn size_of(&self, digest: &Digest) -> Option<u64> {
        fs_err::metadata(blob_path(self.dir, digest))
            .ok()
            .map(|m| m.len())
    }

    /// Copies (recompressing when needed) `layer` from `store` into the directory.
    fn put_layer(
        &mut self,
        store: &Store,
        layer: &LayerDescriptor,
        compression: Compression,
    ) -> Result<(LayerDescriptor, u64), ExchangeError> {
        let dir = self.dir;
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
        Ok((recompressed(layer, compression, digest.clone(), size), size))
    }

    fn put_document(&mut self, bytes: &[u8]) -> Result<Digest, ExchangeError> {
        let digest = Digest::of(bytes);
        let path = blob_path(self.dir, &digest);
        if !path.exists() {
            durable::write_atomic_with(&path, |w| w.write_all(bytes))?;
        }
        Ok(digest)
    }
}

fn recompressed(
    layer: &LayerDescriptor,
    compression: Compression,
    digest: Digest,
    size: u64,
) -> LayerDescriptor {
    LayerDescriptor {
        media_type: compression.media_type().to_owned(),
        digest,
        size,
        diff_id: layer.diff_id.clone(),
        uncompressed_size: layer.uncompressed_size,
    }
}

/// A registry repository as a [`Sink`]: blobs to send are staged in the store (a recompressed
/// layer is written there), then pushed by [`RegistryClient::push_blobs`] (HEAD first).
struct RegistrySink<'a> {
    store: &'a Store,
    /// Blobs the tag's manifest listed before this export.
    listed: BTreeMap<Digest, u64>,
    /// Blobs to push.
    staged: BTreeMap<Digest, u64>,
}

impl Sink for RegistrySink<'_> {
    fn has(&self, digest: &Digest) -> bool {
        self.size_of(digest).is_some()
    }

    fn size_of(&self, digest: &Digest) -> Option<u64> {
        self.listed
            .get(digest)
            .or_else(|| self.staged.get(digest))
            .copied()
    }

    fn put_layer(
        &mut self,
        store: &Store,
        layer: &LayerDescriptor,
        compression: Compression,
    ) -> Result<(LayerDescriptor, u64), ExchangeError> {
        if layer.media_type == compression.media_type() {
            self.staged.insert(layer.digest.clone(), layer.size);
            return Ok((layer.clone(), layer.size));
        }
        let mut reader = store.layer_reader(layer)?;
        let mut writer = self.store.blob_writer()?;
        compression
            .compress(&mut reader, &mut writer)
            .and_then(|w| w.flush())
            .map_err(io_err(
                "recompress a layer into the store",
                self.store.root(),
            ))?;
        let blob = writer.commit(None)?;
        self.staged.insert(blob.digest.clone(), blob.size);
        Ok((
            recompressed(layer, compression, blob.digest, blob.size),
            blob.size,
        ))
    }

    fn put_document(&mut self, bytes: &[u8]) -> Result<Digest, ExchangeError> {
        let blob = self.store.put_document(None, bytes)?;
        self.staged.insert(blob.digest.clone(), blob.size);
        Ok(blob.digest)
    }
}

/// Exports `records` (whose layers are all in `store`) to the cache at `location`, merging
/// with what is there, with the file lists `db` keeps for their selections.
pub fn export_to(
    location: &CacheLocation,
    store: &Store,
    db: &CacheDb,
    records: &[(CacheKey, Record)],
    mounts: &BTreeMap<String, CacheMountChain>,
    options: &ExportOptions,
) -> Result<ExportReport, ExchangeError> {
    match location {
        CacheLocation::Dir(dir) => export(dir, store, db, records, mounts, options),
        CacheLocation::Registry { client, reference } => {
            export_registry(client, reference, store, db, records, mounts, options)
        }
    }
}

fn export_registry(
    client: &RegistryClient,
    reference: &Reference,
    store: &Store,
    db: &CacheDb,
    records: &[(CacheKey, Record)],
    mounts: &BTreeMap<String, CacheMountChain>,
    options: &ExportOptions,
) -> Result<ExportReport, ExchangeError> {
    let _lease = store.lease()?;
    let mut report = ExportReport::default();
    let (mut config, listed) = match read_registry(client, reference, store) {
        Ok(Some((config, listing))) => (config, listing.blobs),
        Ok(None) => (CacheConfig::default(), BTreeMap::new()),
        // Not a strata cache (or a damaged one): replaced, as BuildKit replaces what is there.
        Err(e @ ExchangeError::Invalid { .. }) => {
            report.replaced = Some(e.to_string());
            (CacheConfig::default(), BTreeMap::new())
        }
        Err(e) => return Err(e),
    };
    let mut sink = RegistrySink {
        store,
        listed,
        staged: BTreeMap::new(),
    };
    merge(
        &mut config,
        &mut sink,
        store,
        (db, records, mounts),
        options.compression,
        &mut report,
    )?;
    let config_desc = put_config(&mut sink, &config)?;
    let blobs = blob_descriptors(&config, &sink);
    let staged: Vec<Digest> = sink.staged.keys().cloned().collect();
    let sent = client
        .push_blobs(store, reference, &staged)
        .map_err(registry_err("push", reference))?;
    let layer_digests: std::collections::BTreeSet<&Digest> = config
        .records
        .values()
        .filter_map(|r| r.layer.as_ref().map(|l| &l.digest))
        .collect();
    // How many of the blobs sent are in `set`, and their bytes.
    let written = |set: &dyn Fn(&Digest) -> bool| {
        let sent: Vec<&Digest> = sent.iter().filter(|d| set(d)).collect();
        let bytes = sent.iter().filter_map(|d| sink.staged.get(*d)).sum();
        (sent.len(), bytes)
    };
    (report.layers_written, report.bytes_written) = written(&|d| layer_digests.contains(d));
    let mount_digests: std::collections::BTreeSet<&Digest> = config
        .mounts
        .values()
        .flat_map(|m| m.layers.iter().map(|l| &l.digest))
        .filter(|d| !layer_digests.contains(d))
        .collect();
    (report.mount_layers_written, report.mount_bytes_written) =
        written(&|d| mount_digests.contains(d));
    let (media_type, top) = if options.image_manifest {
        (OCI_MANIFEST, manifest_bytes(&config_desc, blobs))
    } else {
        // BuildKit's default shape: an index whose entries are the blobs, the config last.
        let mut entries = blobs;
        entries.push(config_desc);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        (
            OCI_INDEX,
            serde_json::to_vec(&index).expect("an index is plain JSON"),
        )
    };
    client
        .push_manifest(reference, media_type, &top)
        .map_err(registry_err("push", reference))?;
    Ok(report)
}

/// Exports `records` (whose layers are all in `store`) into the cache directory `dir`,
/// merging with what is there, with the file lists `db` keeps for their selections. Safe
/// against another process exporting into `dir` at once.
pub fn export(
    dir: &Path,
    store: &Store,
    db: &CacheDb,
    records: &[(CacheKey, Record)],
    mounts: &BTreeMap<String, CacheMountChain>,
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

    let mut config = read_dir_config(dir)?;
    let mut report = ExportReport::default();
    let mut sink = DirSink { dir };
    merge(
        &mut config,
        &mut sink,
        store,
        (db, records, mounts),
        options.compression,
        &mut report,
    )?;
    let config_desc = put_config(&mut sink, &config)?;
    let manifest = manifest_bytes(&config_desc, blob_descriptors(&config, &sink));
    let manifest_digest = sink.put_document(&manifest)?;
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
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": CACHE_REF_NAME },
        }],
    });
    let index_bytes = serde_json::to_vec(&index).expect("an index is plain JSON");
    durable::write_atomic_with(&dir.join("index.json"), |w| w.write_all(&index_bytes))?;
    drop(lock);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn reads_both_shapes_of_a_strata_cache() {
        let manifest = json!({
            "config": {"mediaType": STRATA_CACHE_CONFIG, "digest": D1, "size": 10},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": D2, "size": 5}],
        });
        let index = json!({"manifests": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": D2, "size": 5},
            {"mediaType": STRATA_CACHE_CONFIG, "digest": D1, "size": 10},
        ]});
        for doc in [manifest, index] {
            let l = listing(&doc).unwrap();
            assert_eq!(l.config, (D1.parse().unwrap(), 10));
            assert_eq!(
                l.blobs.into_iter().collect::<Vec<_>>(),
                [(D2.parse().unwrap(), 5)]
            );
        }
    }

    #[test]
    fn says_what_a_ref_holds_when_it_is_not_a_strata_cache() {
        let buildkit = json!({"manifests": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 5},
            {"mediaType": BUILDKIT_CACHE_CONFIG, "digest": D1, "size": 10},
        ]});
        assert_eq!(
            listing(&buildkit).unwrap_err(),
            "it holds a BuildKit cache, whose records use BuildKit's cache keys, not strata's"
        );
        let image = json!({
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 10},
            "layers": [],
        });
        assert!(listing(&image).unwrap_err().contains("an image?"));
        let platforms = json!({"manifests": [
            {"mediaType": OCI_MANIFEST, "digest": D1, "size": 10, "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        assert!(
            listing(&platforms)
                .unwrap_err()
                .contains("names no cache config")
        );
        // Hostile or damaged documents are errors, never panics.
        for doc in [
            json!(null),
            json!([]),
            json!({"config": 1}),
            json!({"config": {"mediaType": STRATA_CACHE_CONFIG, "digest": "sha256:zz", "size": 1}, "layers": []}),
            json!({"config": {"mediaType": STRATA_CACHE_CONFIG, "digest": D1, "size": -1}, "layers": []}),
            json!({"config": {"mediaType": STRATA_CACHE_CONFIG, "digest": D1, "size": 1u64 << 40}, "layers": []}),
            json!({"manifests": [{"mediaType": STRATA_CACHE_CONFIG, "digest": D1, "size": 1}, {"digest": 3}]}),
        ] {
            assert!(listing(&doc).is_err(), "{doc}");
        }
    }
}
