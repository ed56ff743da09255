//! Images: a manifest, a config and layers, named by tags. An image's ID is the digest of its
//! config blob. Config blobs are kept byte for byte: Docker and BuildKit write fields that no
//! typed model knows all of (Healthcheck, Shell, OnBuild, ArgsEscaped, ...), so the store
//! parses a lossless *view* ([`ImageConfigFile`], unknown fields kept in `extra`) and never
//! writes an existing config back through it.

use crate::digest::{Digest, chain_ids};
use crate::error::StoreError;
use crate::index::{ImageIndex, ImageRecord};
use crate::layer::LayerDescriptor;
use crate::media_type::{OCI_MANIFEST, is_manifest};
use crate::platform::Platform;
use crate::reference::{Reference, ReferenceError};
use crate::store::Store;
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The image config JSON (`application/vnd.oci.image.config.v1+json`), read losslessly: the
/// runtime part stays a JSON value and unknown top-level fields land in `extra`.
///
/// Build one for [`Store::commit_image`]; `rootfs` is filled in by the store:
/// ```
/// use strata_store::ImageConfigFile;
/// let cfg: ImageConfigFile = serde_json::from_value(serde_json::json!({
///     "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
///     "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"], "Healthcheck": { "Test": ["NONE"] } },
///     "history": [{ "created_by": "RUN make", "empty_layer": false }],
///     "moby.buildkit.buildinfo.v1": "e30="
/// }))?;
/// assert_eq!(cfg.extra.len(), 1);
/// assert_eq!(cfg.runtime()["Healthcheck"]["Test"][0], "NONE");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfigFile {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (`MAINTAINER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Architecture variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// The runtime config (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, ...), Docker's
    /// field names, kept as JSON. `strata_graph::ImageConfig` deserialises from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// The layers' diff IDs.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per build step, empty-layer steps included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Every other top-level field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfigFile {
    /// The runtime config object (`config`), or an empty object.
    pub fn runtime(&self) -> &Value {
        static EMPTY: Value = Value::Null;
        self.config.as_ref().unwrap_or(&EMPTY)
    }

    /// The platform the image is for, normalised (`x86_64` is `amd64`).
    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.os,
            &self.architecture,
            self.variant.as_deref().unwrap_or(""),
        )
    }

    /// Records `platform` as the image's os, architecture and variant.
    pub fn set_platform(&mut self, platform: &Platform) {
        self.os.clone_from(&platform.os);
        self.architecture.clone_from(&platform.arch);
        self.variant = (!platform.variant.is_empty()).then(|| platform.variant.clone());
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry of an image config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction (`RUN /bin/sh -c make # buildkit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment (`buildkit.dockerfile.v0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether the step added no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    /// Unknown fields, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An image in the store, read whole: what `inspect`, `history`, `save`, `run` and a `FROM`
/// need.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image ID: the digest of the config blob.
    pub id: Digest,
    /// The manifest blob's digest.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI or docker schema 2).
    pub manifest_media_type: String,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config blob, byte for byte.
    pub config_bytes: Vec<u8>,
    /// The config, parsed.
    pub config: ImageConfigFile,
    /// The layers, bottom first, each with its diff ID.
    pub layers: Vec<LayerDescriptor>,
    /// The references naming the image (full form), sorted.
    pub tags: Vec<Reference>,
    /// When the image got its last tag in this store.
    pub last_tag_time: Option<String>,
    /// `registry/repository@sha256:…` it was pulled as or pushed to (docker's RepoDigests).
    pub repo_digests: Vec<String>,
}

impl Image {
    /// The chain IDs of the layer stack, bottom first (snapshot keys).
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.config.rootfs.diff_ids)
    }

    /// The sum of the uncompressed layer sizes (`docker images` SIZE), or of the blob sizes
    /// for layers whose uncompressed size is unknown.
    pub fn size(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| l.uncompressed_size.unwrap_or(l.size))
            .sum()
    }
}

/// A line of `strata images`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image ID.
    pub id: Digest,
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// The references naming it (none for a dangling image).
    pub tags: Vec<Reference>,
    /// The config's `created`.
    pub created: Option<String>,
    /// Uncompressed size.
    pub size: u64,
    /// `registry/repository@sha256:…` it was pulled as or pushed to (docker's RepoDigests).
    pub repo_digests: Vec<String>,
}

/// An image [`Store::commit_image_with_manifest`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedImage {
    /// The image ID: the digest of its config.
    pub id: Digest,
    /// The digest of the manifest written for it.
    pub manifest_digest: Digest,
}

/// What [`Store::commit_image`] stores.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The config; its `rootfs` is replaced by the layers' diff IDs.
    pub config: ImageConfigFile,
    /// The layers, bottom first, all already in the store (from [`crate::LayerWriter`] or a
    /// base image).
    pub layers: Vec<LayerDescriptor>,
    /// References to point at the image (moved from any image they named before).
    pub tags: Vec<Reference>,
}

/// What `rmi` did, in order, for printing as docker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A reference was removed (`Untagged: busybox:latest`).
    Untagged(Reference),
    /// The image itself was deleted (`Deleted: sha256:…`).
    Deleted(Digest),
}

/// Parses a manifest, accepting OCI and docker schema 2 media types and refusing an index.
pub(crate) fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest, StoreError> {
    let value: Value = serde_json::from_slice(bytes).map_err(StoreError::json(what))?;
    if value.get("manifests").is_some() {
        return Err(StoreError::document(
            what,
            "has `manifests`: an index where an image manifest was expected",
        ));
    }
    if let Some(mt) = value.get("mediaType").and_then(Value::as_str)
        && !is_manifest(mt)
    {
        return Err(StoreError::document(
            what,
            format!("unsupported manifest media type {mt}"),
        ));
    }
    serde_json::from_value(value).map_err(StoreError::json(what))
}

/// Parses an image config blob into the lossless view.
pub(crate) fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfigFile, StoreError> {
    serde_json::from_slice(bytes).map_err(StoreError::json(what))
}

/// Layers of `manifest` joined with `diff_ids`.
pub(crate) fn layer_descriptors(
    manifest: &ImageManifest,
    config: &ImageConfigFile,
    sizes: &[u64],
    what: &str,
) -> Result<Vec<LayerDescriptor>, StoreError> {
    let diff_ids = &config.rootfs.diff_ids;
    if manifest.layers().len() != diff_ids.len() {
        return Err(StoreError::document(
            what,
            format!(
                "manifest lists {} layers but the config has {} diff IDs",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (l, diff_id))| {
            Ok(LayerDescriptor {
                media_type: l.media_type().to_string(),
                digest: Digest::try_from(l.digest())?,
                size: l.size(),
                diff_id: diff_id.clone(),
                uncompressed_size: sizes.get(i).copied(),
            })
        })
        .collect()
}

/// An OCI manifest for a config blob and layers, serialised deterministically.
pub(crate) fn build_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[LayerDescriptor],
) -> Result<Vec<u8>, StoreError> {
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| Descriptor::new(MediaType::from(l.media_type.as_str()), l.size, &l.digest))
        .collect();
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, config_size, config))
        .layers(layers)
        .build()
        .map_err(|e| StoreError::document("new manifest", e.to_string()))?;
    serde_json::to_vec(&manifest).map_err(StoreError::json("new manifest"))
}

impl Store {
    /// Resolves a reference (`busybox`, `name:tag`, `name@sha256:…`), a full image ID
    /// (`sha256:…`) or a unique ID prefix (`3f57d9401f8d`) to an image ID.
    ///
    /// ```no_run
    /// # let store = strata_store::Store::open("/tmp/s")?;
    /// let id = store.resolve("busybox")?; // = docker.io/library/busybox:latest
    /// let same = store.resolve(id.short())?;
    /// assert_eq!(id, same);
    /// # Ok::<(), strata_store::StoreError>(())
    /// ```
    pub fn resolve(&self, name_or_id: &str) -> Result<Digest, StoreError> {
        resolve_in(&self.read_index()?, name_or_id)
    }

    /// Reads an image whole. See [`Store::resolve`] for what `name_or_id` may be.
    pub fn image(&self, name_or_id: &str) -> Result<Image, StoreError> {
        let _lease = self.lease()?;
        let index = self.read_index()?;
        let id = resolve_in(&index, name_or_id)?;
        self.load_image(&index, &id)
    }

    pub(crate) fn load_image(&self, index: &ImageIndex, id: &Digest) -> Result<Image, StoreError> {
        let record = index
            .images
            .get(id)
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))?;
        let what = format!("manifest {}", record.manifest);
        let manifest_bytes = self.read_blob(&record.manifest)?;
        let manifest = parse_manifest(&manifest_bytes, &what)?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        if config_digest != *id {
            return Err(StoreError::document(
                what,
                format!("points at config {config_digest}, not at image {id}"),
            ));
        }
        let config_bytes = self.read_blob(id)?;
        let config = parse_config(&config_bytes, &format!("config {id}"))?;
        let layers = layer_descriptors(&manifest, &config, &record.layer_sizes, &what)?;
        let tags = index
            .tags_of(id)
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .collect();
        Ok(Image {
            id: id.clone(),
            manifest_digest: record.manifest.clone(),
            manifest_media_type: record.manifest_media_type.clone(),
            manifest,
            config_bytes,
            config,
            layers,
            tags,
            last_tag_time: record.last_tag_time.clone(),
            repo_digests: record.repo_digests.clone(),
        })
    }

    /// Every image, newest first, as `strata images` lists them.
    pub fn images(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let _lease = self.lease()?;
        let index = self.read_index()?;
        let mut out = Vec::with_capacity(index.images.len());
        for (id, record) in &index.images {
            // A broken config still lists (without a date); `system check` reports it.
            let created = self
                .read_blob(id)
                .and_then(|b| parse_config(&b, &format!("config {id}")))
                .ok()
                .and_then(|c| c.created);
            out.push(ImageSummary {
                id: id.clone(),
                manifest_digest: record.manifest.clone(),
                tags: index
                    .tags_of(id)
                    .iter()
                    .filter_map(|t| Reference::parse(t).ok())
                    .collect(),
                created,
                size: record.layer_sizes.iter().sum(),
                repo_digests: record.repo_digests.clone(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Points `target` at the image `source` names (`strata tag`).
    pub fn tag(&self, source: &str, target: &Reference) -> Result<Digest, StoreError> {
        if target.digest().is_some() {
            return Err(ReferenceError::Digested(target.to_string()).into());
        }
        let now = now_rfc3339();
        self.update_index(|index| {
            let id = resolve_in(index, source)?;
            index.tags.insert(target.to_string(), id.clone());
            if let Some(r) = index.images.get_mut(&id) {
                r.last_tag_time = Some(now);
            }
            Ok(id)
        })
    }

    /// Removes one tag; the image goes too if that was its last tag (`rmi name:tag`).
    pub fn untag(&self, reference: &Reference) -> Result<Vec<Removed>, StoreError> {
        let key = reference.to_string();
        if !self.read_index()?.tags.contains_key(&key) {
            return Err(StoreError::ImageNotFound(reference.familiar()));
        }
        self.remove_image(&key, false)
    }

    /// Removes images or tags as `docker rmi` does: a reference loses its tag and the image
    /// goes when its last tag goes; an ID removes the image, which needs `force` when several
    /// references name it. Layers other images share stay. Blobs no image needs any more are
    /// deleted right away unless another process holds a [`crate::Lease`], in which case
    /// `image prune` reclaims them later. An image a container uses is not deleted: refused
    /// ([`StoreError::ImageUsedByContainer`]), or with `force` only untagged.
    pub fn remove_image(&self, name_or_id: &str, force: bool) -> Result<Vec<Removed>, StoreError> {
        let used = self.images_used_by_containers()?;
        let removed = self.update_index(|index| {
            let id = resolve_in(index, name_or_id)?;
            let mut out = Vec::new();
            let by_reference = Reference::parse(name_or_id)
                .ok()
                .filter(|r| index.tags.get(&r.to_string()) == Some(&id));
            let tags = index.tags_of(&id);
            match by_reference {
                Some(r) => {
                    index.tags.remove(&r.to_string());
                    out.push(Removed::Untagged(r));
                }
                None => {
                    let repos: std::collections::BTreeSet<String> = tags
                        .iter()
                        .filter_map(|t| Reference::parse(t).ok())
                        .map(|r| r.name())
                        .collect();
                    if repos.len() > 1 && !force {
                        return Err(StoreError::ImageInUse {
                            id: id.short().to_owned(),
                        });
                    }
                    for t in tags {
                        index.tags.remove(&t);
                        if let Ok(r) = Reference::parse(&t) {
                            out.push(Removed::Untagged(r));
                        }
                    }
                }
            }
            if index.tags_of(&id).is_empty() {
                if let Some(container) = used.get(&id) {
                    // A container's image stays; forced, it only loses its tags (as docker).
                    if !force {
                        return Err(StoreError::ImageUsedByContainer {
                            image: name_or_id.to_owned(),
                            container: container.clone(),
                            id: id.short().to_owned(),
                        });
                    }
                } else {
                    index.images.remove(&id);
                    out.push(Removed::Deleted(id));
                }
            }
            Ok(out)
        })?;
        if removed.iter().any(|r| matches!(r, Removed::Deleted(_))) {
            self.collect_garbage(false)?;
        }
        Ok(removed)
    }

    /// Stores a new image: writes its config and manifest blobs and points `tags` at it, in one
    /// atomic index update. The layers must already be in the store. Returns the image ID.
    ///
    /// ```no_run
    /// use strata_store::{Compression, ImageConfigFile, NewImage, Reference, Store};
    /// # let store = Store::open("/tmp/s")?;
    /// # let layer = store.layer_writer(Compression::Gzip)?.finish()?;
    /// let lease = store.lease()?; // hold from the first layer until the commit
    /// let config: ImageConfigFile = serde_json::from_value(serde_json::json!({
    ///     "architecture": "amd64", "os": "linux",
    ///     "config": { "Cmd": ["sh"] },
    ///     "history": [{ "created_by": "COPY . /", "empty_layer": false }],
    /// }))?;
    /// let id = store.commit_image(NewImage {
    ///     config,
    ///     layers: vec![layer],
    ///     tags: vec![Reference::parse("app:1")?],
    /// })?;
    /// drop(lease);
    /// println!("{}", id.short());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_image(&self, image: NewImage) -> Result<Digest, StoreError> {
        Ok(self.commit_image_with_manifest(image)?.id)
    }

    /// [`Store::commit_image`], also giving the digest of the manifest it wrote: what a build
    /// reports, without reading the image back.
    pub fn commit_image_with_manifest(
        &self,
        image: NewImage,
    ) -> Result<CommittedImage, StoreError> {
        let _lease = self.lease()?;
        let NewImage {
            mut config,
            layers,
            tags,
        } = image;
        for l in &layers {
            let size = self.blob_size(&l.digest)?;
            if size != l.size {
                return Err(StoreError::SizeMismatch {
                    what: format!("layer {}", l.digest),
                    expected: l.size,
                    actual: size,
                });
            }
        }
        let non_empty = config.history.iter().filter(|h| !h.empty_layer).count();
        if !config.history.is_empty() && non_empty != layers.len() {
            return Err(StoreError::document(
                "new image config",
                format!(
                    "history has {non_empty} non-empty entries for {} layers",
                    layers.len()
                ),
            ));
        }
        config.rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        };
        let config_bytes = serde_json::to_vec(&config).map_err(StoreError::json("new config"))?;
        let mut sizes = Vec::with_capacity(layers.len());
        for l in &layers {
            sizes.push(match l.uncompressed_size {
                Some(s) => s,
                None => self.uncompressed_layer_size(l)?,
            });
        }
        self.store_image(&config_bytes, &layers, sizes, &tags)
    }

    /// Writes config + manifest blobs for layers already stored and indexes the image.
    pub(crate) fn store_image(
        &self,
        config_bytes: &[u8],
        layers: &[LayerDescriptor],
        layer_sizes: Vec<u64>,
        tags: &[Reference],
    ) -> Result<CommittedImage, StoreError> {
        // What the store would refuse to read back (`read_blob`) is never written.
        if config_bytes.len() as u64 > crate::blob::MAX_DOCUMENT {
            return Err(StoreError::document(
                "new image config",
                format!(
                    "{} bytes is over the {}-byte limit",
                    config_bytes.len(),
                    crate::blob::MAX_DOCUMENT
                ),
            ));
        }
        let config = self.put_document(None, config_bytes)?;
        let manifest_bytes = build_manifest(&config.digest, config.size, layers)?;
        let manifest = self.put_document(None, &manifest_bytes)?;
        self.index_image(
            &config.digest,
            ImageRecord {
                manifest: manifest.digest.clone(),
                manifest_media_type: OCI_MANIFEST.into(),
                layer_sizes,
                last_tag_time: Some(now_rfc3339()),
                repo_digests: Vec::new(),
            },
            tags,
        )?;
        Ok(CommittedImage {
            id: config.digest,
            manifest_digest: manifest.digest,
        })
    }

    /// Adds (or refreshes) an image record and moves `tags` to it.
    pub(crate) fn index_image(
        &self,
        id: &Digest,
        record: ImageRecord,
        tags: &[Reference],
    ) -> Result<(), StoreError> {
        self.update_index(|index| {
            let keep_existing = index.images.get(id).is_some_and(|old| {
                self.has_blob(&old.manifest) && old.layer_sizes.len() == record.layer_sizes.len()
            });
            if !keep_existing {
                let mut record = record.clone();
                if let Some(old) = index.images.get(id) {
                    let mut digests = old.repo_digests.clone();
                    merge_repo_digests(&mut digests, &record.repo_digests);
                    record.repo_digests = digests;
                }
                index.images.insert(id.clone(), record);
            } else if let Some(old) = index.images.get_mut(id) {
                old.last_tag_time.clone_from(&record.last_tag_time);
                merge_repo_digests(&mut old.repo_digests, &record.repo_digests);
            }
            for t in tags {
                index.tags.insert(t.to_string(), id.clone());
            }
            Ok(())
        })
    }

    /// Decompresses a stored layer to learn its length.
    pub(crate) fn uncompressed_layer_size(&self, l: &LayerDescriptor) -> Result<u64, StoreError> {
        let file = self.open_blob(&l.digest)?;
        let what = format!("decompress layer {}", l.digest);
        let reader =
            crate::compression::decompressed(file).map_err(StoreError::stream(what.clone()))?;
        let (_, n) = crate::digest::digest_reader(reader).map_err(StoreError::stream(what))?;
        Ok(n)
    }
}

/// Adds the repo digests of `more` to `into`; one per repository (the newest wins), sorted.
pub(crate) fn merge_repo_digests(into: &mut Vec<String>, more: &[String]) {
    for d in more {
        let name = d.split_once('@').map_or(d.as_str(), |(n, _)| n);
        into.retain(|old| old.split_once('@').map_or(old.as_str(), |(n, _)| n) != name);
        into.push(d.clone());
    }
    into.sort();
}

/// Resolves a reference, an ID or an ID prefix in `index`.
pub(crate) fn resolve_in(index: &ImageIndex, name_or_id: &str) -> Result<Digest, StoreError> {
    let not_found = || StoreError::ImageNotFound(name_or_id.to_owned());
    if let Some(hex) = name_or_id.strip_prefix("sha256:") {
        return resolve_prefix(index, hex, name_or_id)?.ok_or_else(not_found);
    }
    if let Ok(r) = Reference::parse(name_or_id)
        && let Some(id) = index.tags.get(&r.to_string())
    {
        return Ok(id.clone());
    }
    if let Ok(r) = Reference::parse(name_or_id)
        && let Some(d) = r.digest()
    {
        // name@digest: the image whose manifest has that digest, if its name matches a tag.
        if let Some((id, _)) = index.images.iter().find(|(id, rec)| {
            rec.manifest.as_str() == d
                && index
                    .tags_of(id)
                    .iter()
                    .any(|t| Reference::parse(t).is_ok_and(|t| t.name() == r.name()))
        }) {
            return Ok(id.clone());
        }
    }
    let hexish = !name_or_id.is_empty()
        && name_or_id.len() <= 64
        && name_or_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hexish {
        return resolve_prefix(index, name_or_id, name_or_id)?.ok_or_else(not_found);
    }
    Err(not_found())
}

fn resolve_prefix(
    index: &ImageIndex,
    hex: &str,
    input: &str,
) -> Result<Option<Digest>, StoreError> {
    if hex.is_empty() {
        return Ok(None);
    }
    let matches: Vec<&Digest> = index
        .images
        .keys()
        .filter(|id| id.hex().starts_with(hex))
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(StoreError::AmbiguousId {
            prefix: input.to_owned(),
            count: many.len(),
        }),
    }
}

/// Now, as RFC 3339 with nanoseconds in UTC (how docker writes `created`).
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}
