//! `load`: images from a tarball that is an OCI image layout, a docker archive (docker save,
//! old or new), or both, optionally gzip- or zstd-wrapped. The archive is read once, in order:
//! each file member is streamed into the staging dir while being hashed (members named
//! `blobs/sha256/<hex>` must match their name). Only then are the documents parsed and every
//! manifest, config, layer digest and diff ID verified. Nothing reaches the store unless all of
//! it checks out, and the index changes in one atomic update at the end.

use crate::blob::MAX_DOCUMENT;
use crate::compression::{Compression, decompressed};
use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::error::StoreError;
use crate::image::{build_manifest, layer_descriptors, now_rfc3339, parse_config, parse_manifest};
use crate::index::ImageRecord;
use crate::layer::LayerDescriptor;
use crate::media_type::{OCI_MANIFEST, is_index, is_manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, BufWriter, Read};

/// An image `load` added: print `Loaded image: <tag>` per tag, or `Loaded image ID: <id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image ID.
    pub id: Digest,
    /// The references now naming it.
    pub tags: Vec<Reference>,
}

/// One file member of the archive, staged.
struct Member {
    digest: Digest,
    size: u64,
    /// The staged bytes (a path only: an archive with thousands of members must not hold
    /// thousands of fds).
    file: tempfile::TempPath,
}

/// An image found in the archive, verified, ready to commit.
struct Found {
    config: Digest,
    manifest: Option<(Digest, String)>,
    layers: Vec<LayerDescriptor>,
    blobs: Vec<String>,
    tags: Vec<Reference>,
    generated_manifest: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

impl Store {
    /// Loads every image of an archive read from `input` and returns them in archive order.
    /// On any error the store is unchanged.
    pub fn load(&self, input: impl Read) -> Result<Vec<LoadedImage>, StoreError> {
        let _lease = self.lease()?;
        let stream = decompressed(input).map_err(StoreError::stream("read the image archive"))?;
        let (members, links) = self.stage_members(stream)?;
        let archive = Archive { members, links };
        let found = if archive.get("index.json").is_some() {
            archive.oci_images(self)?
        } else if archive.get("manifest.json").is_some() {
            archive.docker_images(self)?
        } else {
            return Err(StoreError::archive(
                "image archive",
                "neither index.json (OCI layout) nor manifest.json (docker archive) found",
            ));
        };
        if found.is_empty() {
            return Err(StoreError::archive("image archive", "contains no image"));
        }

        // Everything verified: move blobs into place, then index all images at once.
        let mut archive = archive;
        let mut records = Vec::new();
        let existing = self.read_index()?;
        for image in &found {
            // Already here (say, loaded before from another format): keep what we have, do not
            // leave this archive's copies of its blobs behind unreferenced.
            if let Some(old) = existing.images.get(&image.config)
                && self.has_blob(&old.manifest)
            {
                records.push((image.config.clone(), old.clone(), image.tags.clone()));
                continue;
            }
            for name in &image.blobs {
                if let Some(m) = archive.take(name) {
                    self.persist_blob(m.file, &m.digest)?;
                }
            }
            let (manifest, media_type) = match (&image.manifest, &image.generated_manifest) {
                (Some(m), _) => m.clone(),
                (None, Some(bytes)) => (
                    self.put_document(None, bytes)?.digest,
                    OCI_MANIFEST.to_owned(),
                ),
                (None, None) => unreachable!("every image has a manifest or generates one"),
            };
            let sizes: Vec<u64> = image
                .layers
                .iter()
                .map(|l| l.uncompressed_size.unwrap_or(l.size))
                .collect();
            records.push((
                image.config.clone(),
                ImageRecord {
                    manifest,
                    manifest_media_type: media_type,
                    layer_sizes: sizes,
                    last_tag_time: Some(now_rfc3339()),
                    repo_digests: Vec::new(),
                },
                image.tags.clone(),
            ));
        }
        self.update_index(|index| {
            for (id, record, tags) in &records {
                let keep = index
                    .images
                    .get(id)
                    .is_some_and(|old| self.has_blob(&old.manifest));
                if !keep {
                    index.images.insert(id.clone(), record.clone());
                }
                for t in tags {
                    index.tags.insert(t.to_string(), id.clone());
                }
            }
            Ok(())
        })?;
        Ok(found
            .into_iter()
            .map(|f| LoadedImage {
                id: f.config,
                tags: f.tags,
            })
            .collect())
    }

    /// Streams every file member into the staging dir, hashing it; records links by name.
    #[expect(
        clippy::type_complexity,
        reason = "a one-off tuple of the staged members and their links"
    )]
    fn stage_members(
        &self,
        stream: impl Read,
    ) -> Result<(HashMap<String, Member>, HashMap<String, String>), StoreError> {
        let what = "image archive";
        let mut members = HashMap::new();
        let mut links = HashMap::new();
        let mut tar = tar::Archive::new(stream);
        let entries = tar
            .entries()
            .map_err(|e| StoreError::archive(what, crate::untrusted::tar_reason(&e)))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| StoreError::archive(what, crate::untrusted::tar_reason(&e)))?;
            let name = member_name(&entry.path_bytes())
                .ok_or_else(|| StoreError::archive(what, "member path leaves the archive"))?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let tmp = self.staging("load an archive")?.temp_file()?;
                    let file = tmp
                        .as_file()
                        .try_clone()
                        .map_err(StoreError::io("open", tmp.path()))?;
                    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
                    let size = entry.size();
                    let n = io::copy(&mut entry, &mut out).map_err(|e| {
                        StoreError::archive(
                            format!("{what} member {name}"),
                            crate::untrusted::tar_reason(&e),
                        )
                    })?;
                    if n != size {
                        return Err(StoreError::archive(
                            format!("{what} member {name}"),
                            format!("truncated: {n} of {size} bytes"),
                        ));
                    }
                    let (buf, digest, size) = out.finish();
                    buf.into_inner()
                        .map_err(|e| StoreError::io("write", tmp.path())(e.into_error()))?;
                    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                        let claimed = Digest::from_hex(hex)?;
                        if claimed != digest {
                            return Err(StoreError::DigestMismatch {
                                what: format!("{what} member {name}"),
                                expected: claimed,
                                actual: digest,
                            });
                        }
                    }
                    members.insert(
                        name,
                        Member {
                            digest,
                            size,
                            file: tmp.into_temp_path(),
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        name.rsplit_once('/').map_or("", |(d, _)| d).to_owned()
                    } else {
                        String::new()
                    };
                    let mut joined = base.into_bytes();
                    if !joined.is_empty() {
                        joined.push(b'/');
                    }
                    joined.extend_from_slice(&target);
                    let target = member_name(&joined).ok_or_else(|| {
                        StoreError::archive(what, format!("link {name} leaves the archive"))
                    })?;
                    links.insert(name, target);
                }
                _ => {}
            }
        }
        Ok((members, links))
    }
}

/// A member name relative to the archive root, with `..` resolved; `None` if it leaves it.
fn member_name(raw: &[u8]) -> Option<String> {
    let raw = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for p in raw.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

struct Archive {
    members: HashMap<String, Member>,
    links: HashMap<String, String>,
}

impl Archive {
    fn resolve<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut name = name;
        for _ in 0..16 {
            if self.members.contains_key(name) {
                return Some(name);
            }
            name = self.links.get(name)?;
        }
        None
    }

    fn get(&self, name: &str) -> Option<&Member> {
        self.resolve(&member_name(name.as_bytes())?)
            .and_then(|n| self.members.get(n))
    }

    fn take(&mut self, name: &str) -> Option<Member> {
        let key = self.resolve(name)?.to_owned();
        self.members.remove(&key)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let m = self
            .get(name)
            .ok_or_else(|| StoreError::archive("image archive", format!("has no member {name}")))?;
        if m.size > MAX_DOCUMENT {
            return Err(StoreError::document(
                name,
                format!("{} bytes is over the {MAX_DOCUMENT}-byte limit", m.size),
            ));
        }
        fs_err::read(&*m.file).map_err(StoreError::io("read", &*m.file))
    }

    fn blob_name(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    fn blob(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<&Member, StoreError> {
        let m = self.get(&Self::blob_name(digest)).ok_or_else(|| {
            StoreError::archive("image archive", format!("{what} {digest} is missing"))
        })?;
        if let Some(size) = size
            && size != m.size
        {
            return Err(StoreError::SizeMismatch {
                what: format!("{what} {digest}"),
                expected: size,
                actual: m.size,
            });
        }
        Ok(m)
    }

    /// Images of an OCI layout: `index.json` → manifests (through nested indexes, picking
    /// this platform) → config and layers. Indexes are read as JSON values rather than
    /// oci-spec's `ImageIndex`: we must see whether a document also has `layers` (ambiguous,
    /// CVE-2021-41190) and read docker manifest lists the same way; manifests themselves go
    /// through oci-spec.
    fn oci_images(&self, store: &Store) -> Result<Vec<Found>, StoreError> {
        let bytes = self.read("index.json")?;
        let index: Value =
            serde_json::from_slice(&bytes).map_err(StoreError::json("index.json"))?;
        let mut out = Vec::new();
        for desc in manifests_of(&index, "index.json")? {
            let tags = tags_of(desc);
            let mut desc = desc.clone();
            for _depth in 0..4 {
                let media_type = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
                if !is_index(media_type) {
                    break;
                }
                let (digest, size) = digest_size(&desc, "index.json")?;
                let nested = self.read(&Self::blob_name(&digest))?;
                let _ = self.blob(&digest, Some(size), "index")?;
                let nested: Value = serde_json::from_slice(&nested)
                    .map_err(StoreError::json(format!("index {digest}")))?;
                desc = pick_platform(manifests_of(&nested, &format!("index {digest}"))?)
                    .ok_or_else(|| {
                        StoreError::archive(
                            format!("index {digest}"),
                            format!("has no manifest for {}", Platform::host()),
                        )
                    })?
                    .clone();
            }
            let (digest, size) = digest_size(&desc, "index.json")?;
            let media_type = desc
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or(OCI_MANIFEST)
                .to_owned();
            if !is_manifest(&media_type) {
                // Attestations, artifacts: not images.
                continue;
            }
            let what = format!("manifest {digest}");
            self.blob(&digest, Some(size), "manifest")?;
            let manifest = parse_manifest(&self.read(&Self::blob_name(&digest))?, &what)?;
            let config = Digest::try_from(manifest.config().digest())?;
            self.blob(&config, Some(manifest.config().size()), "config")?;
            let config_file = parse_config(
                &self.read(&Self::blob_name(&config))?,
                &format!("config {config}"),
            )?;
            let mut layers = layer_descriptors(&manifest, &config_file, &[], &what)?;
            let mut blobs = vec![Self::blob_name(&digest), Self::blob_name(&config)];
            for l in &mut layers {
                let m = self.blob(&l.digest, Some(l.size), "layer")?;
                l.uncompressed_size = Some(verify_diff_id(m, l)?);
                blobs.push(Self::blob_name(&l.digest));
            }
            let _ = store;
            out.push(Found {
                config,
                manifest: Some((digest, media_type)),
                layers,
                blobs,
                tags,
                generated_manifest: None,
            });
        }
        Ok(out)
    }

    /// Images of a docker archive: `manifest.json` → config and layer files by path.
    fn docker_images(&self, _store: &Store) -> Result<Vec<Found>, StoreError> {
        let bytes = self.read("manifest.json")?;
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&bytes).map_err(StoreError::json("manifest.json"))?;
        let mut out = Vec::new();
        for entry in entries {
            let config_member = self.get(&entry.config).ok_or_else(|| {
                StoreError::archive(
                    "manifest.json",
                    format!("config {} is missing", entry.config),
                )
            })?;
            let config = config_member.digest.clone();
            let config_size = config_member.size;
            let config_file =
                parse_config(&self.read(&entry.config)?, &format!("config {config}"))?;
            if config_file.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(StoreError::document(
                    format!("config {config}"),
                    format!(
                        "lists {} diff IDs for {} layers",
                        config_file.rootfs.diff_ids.len(),
                        entry.layers.len()
                    ),
                ));
            }
            let mut layers = Vec::new();
            let mut blobs = vec![entry.config.clone()];
            for (path, diff_id) in entry.layers.iter().zip(&config_file.rootfs.diff_ids) {
                let m = self.get(path).ok_or_else(|| {
                    StoreError::archive("manifest.json", format!("layer {path} is missing"))
                })?;
                let compression = sniff(m)?;
                let mut l = LayerDescriptor {
                    media_type: compression.media_type().to_owned(),
                    digest: m.digest.clone(),
                    size: m.size,
                    diff_id: diff_id.clone(),
                    uncompressed_size: None,
                };
                l.uncompressed_size = Some(verify_diff_id(m, &l)?);
                layers.push(l);
                blobs.push(path.clone());
            }
            let manifest = build_manifest(&config, config_size, &layers)?;
            let tags = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse_tag(t))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Found {
                config,
                manifest: None,
                layers,
                blobs,
                tags,
                generated_manifest: Some(manifest),
            });
        }
        Ok(out)
    }
}

fn manifests_of<'a>(index: &'a Value, what: &str) -> Result<&'a Vec<Value>, StoreError> {
    if index.get("layers").is_some() {
        return Err(StoreError::document(
            what,
            "has both `manifests` and `layers`: ambiguous",
        ));
    }
    index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| StoreError::document(what, "has no `manifests` list"))
}

fn digest_size(desc: &Value, what: &str) -> Result<(Digest, u64), StoreError> {
    let digest = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError::document(what, "descriptor without a digest"))?
        .parse::<Digest>()?;
    let size = desc
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| StoreError::document(what, "descriptor without a size"))?;
    Ok((digest, size))
}

/// The references an index descriptor carries: containerd's full name, else an OCI ref name
/// that is a whole reference (`name:tag`); a bare tag (`latest`) names no repository.
fn tags_of(desc: &Value) -> Vec<Reference> {
    let ann = |k: &str| {
        desc.get("annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
    };
    if let Some(r) = ann("io.containerd.image.name").and_then(|n| Reference::parse_tag(n).ok()) {
        return vec![r];
    }
    match ann("org.opencontainers.image.ref.name") {
        Some(n) if n.contains(':') || n.contains('/') => {
            Reference::parse_tag(n).ok().into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// The manifest this machine runs best, or the only one (an index without platforms).
fn pick_platform(manifests: &[Value]) -> Option<&Value> {
    Platform::host()
        .best(manifests, |m| {
            let p = m.get("platform")?;
            let field = |k| p.get(k).and_then(Value::as_str);
            Some(Platform::new(
                field("os")?,
                field("architecture")?,
                field("variant").unwrap_or(""),
            ))
        })
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
}

fn sniff(m: &Member) -> Result<Compression, StoreError> {
    let mut magic = [0u8; 4];
    let mut f = fs_err::File::open(&*m.file).map_err(StoreError::io("read", &*m.file))?;
    let n = f
        .read(&mut magic)
        .map_err(StoreError::io("read", &*m.file))?;
    Ok(Compression::detect(&magic[..n]))
}

/// Decompresses a staged layer, checks it is a tar whose digest is the diff ID, and returns
/// its uncompressed length.
fn verify_diff_id(m: &Member, l: &LayerDescriptor) -> Result<u64, StoreError> {
    let what = format!("layer {}", l.digest);
    let file = fs_err::File::open(&*m.file).map_err(StoreError::io("read", &*m.file))?;
    let reader = decompressed(file).map_err(StoreError::stream(format!("decompress {what}")))?;
    let mut hashing = HashingReader::new(reader);
    let mut sink = io::sink();
    let mut tee = crate::import::Tee {
        inner: &mut hashing,
        out: &mut sink,
        hit_eof: false,
    };
    crate::import::validate_tar(&mut tee, &what)?;
    io::copy(&mut tee, &mut io::sink())
        .map_err(StoreError::stream(format!("decompress {what}")))?;
    let (_, actual, len) = hashing.finish();
    if actual != l.diff_id {
        return Err(StoreError::DiffIdMismatch {
            layer: l.digest.clone(),
            expected: l.diff_id.clone(),
            actual,
        });
    }
    Ok(len)
}
