//! Manifest lists being put together (`strata manifest create`, `push`, `rm`): a name (the
//! reference the list will be pushed as) and, for each platform, an image of this store. Each
//! is one JSON file, `<root>/manifests/<sha256 of the name>.json`, replaced atomically; the
//! images are named by ID, so a list survives retagging, and an image removed since is an
//! error at push time. The index document itself is made at push time ([`ManifestList::index`]).

use crate::digest::Digest;
use crate::durable::write_atomic;
use crate::error::StoreError;
use crate::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A manifest list kept in the store until it is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestList {
    /// The reference it will be pushed as (full form: `docker.io/library/app:1`).
    pub name: String,
    /// One image per platform, in the order they were added.
    pub entries: Vec<ListEntry>,
}

/// One image of a [`ManifestList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// The image ID (its config digest).
    pub image: Digest,
    /// Its manifest's digest, media type and size: the index's descriptor.
    pub manifest: Digest,
    /// `mediaType` of the manifest.
    pub media_type: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// `os`.
    pub os: String,
    /// `architecture`.
    pub architecture: String,
    /// `variant`, empty for none.
    #[serde(default)]
    pub variant: String,
}

impl ListEntry {
    /// The platform the entry is for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, &self.variant)
    }
}

impl ManifestList {
    /// The index to push: a Docker manifest list when every image is a Docker schema 2
    /// manifest (as docker makes it), else an OCI image index. Keys in serde_json's order.
    pub fn index(&self) -> (String, Vec<u8>) {
        let media_type = if self.entries.iter().all(|e| e.media_type == DOCKER_MANIFEST) {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let manifests: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut platform = serde_json::json!({"os": e.os, "architecture": e.architecture});
                if !e.variant.is_empty() {
                    platform["variant"] = serde_json::Value::String(e.variant.clone());
                }
                serde_json::json!({
                    "mediaType": e.media_type,
                    "digest": e.manifest,
                    "size": e.size,
                    "platform": platform,
                })
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).expect("a JSON value always serialises");
        (media_type.to_owned(), bytes)
    }
}

impl Store {
    fn manifest_list_path(&self, name: &Reference) -> PathBuf {
        let key = Digest::of(name.to_string().as_bytes());
        self.root()
            .join("manifests")
            .join(format!("{}.json", key.hex()))
    }

    /// Makes (or with `amend`, extends) the list `name` of `images` (names or IDs of this
    /// store's images), one per platform: an image for a platform the list has replaces it.
    /// Without `amend`, an existing list is an error, as in docker.
    pub fn create_manifest_list(
        &self,
        name: &Reference,
        images: &[String],
        amend: bool,
    ) -> Result<ManifestList, StoreError> {
        let _lease = self.lease()?;
        let mut list = match self.manifest_list(name) {
            Ok(list) if amend => list,
            Ok(_) => return Err(StoreError::ManifestListExists(name.familiar())),
            Err(StoreError::ManifestListNotFound(_)) => ManifestList {
                name: name.to_string(),
                entries: Vec::new(),
            },
            Err(e) => return Err(e),
        };
        for image in images {
            let image = self.image(image)?;
            let platform = image.config.platform();
            let size = self.read_blob(&image.manifest_digest)?.len() as u64;
            let entry = ListEntry {
                image: image.id.clone(),
                manifest: image.manifest_digest.clone(),
                media_type: image.manifest_media_type.clone(),
                size,
                os: platform.os.clone(),
                architecture: platform.arch.clone(),
                variant: platform.variant.clone(),
            };
            match list.entries.iter_mut().find(|e| e.platform() == platform) {
                Some(same) => *same = entry,
                None => list.entries.push(entry),
            }
        }
        let path = self.manifest_list_path(name);
        let dir = path.parent().expect("list paths have a parent");
        fs_err::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        let bytes = serde_json::to_vec_pretty(&list).expect("a list always serialises");
        write_atomic(&path, &bytes)?;
        Ok(list)
    }

    /// The list `name`, as `create_manifest_list` left it.
    pub fn manifest_list(&self, name: &Reference) -> Result<ManifestList, StoreError> {
        let path = self.manifest_list_path(name);
        let bytes = match fs_err::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::ManifestListNotFound(name.familiar()));
            }
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("manifest list {}", path.display()),
            source,
        })
    }

    /// Forgets the list `name` (not its images).
    pub fn remove_manifest_list(&self, name: &Reference) -> Result<(), StoreError> {
        let path = self.manifest_list_path(name);
        match fs_err::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::ManifestListNotFound(name.familiar()))
            }
            Err(e) => Err(StoreError::io("remove", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_a_docker_list_only_when_every_image_is_docker() {
        let entry = |arch: &str, media_type: &str| ListEntry {
            image: Digest::of(arch.as_bytes()),
            manifest: Digest::of(media_type.as_bytes()),
            media_type: media_type.to_owned(),
            size: 7,
            os: "linux".into(),
            architecture: arch.into(),
            variant: if arch == "arm" {
                "v7".into()
            } else {
                String::new()
            },
        };
        let mut list = ManifestList {
            name: "docker.io/library/app:1".into(),
            entries: vec![
                entry("amd64", DOCKER_MANIFEST),
                entry("arm", DOCKER_MANIFEST),
            ],
        };
        let (media_type, bytes) = list.index();
        assert_eq!(media_type, DOCKER_MANIFEST_LIST);
        let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(index["mediaType"], DOCKER_MANIFEST_LIST);
        assert_eq!(
            index["manifests"][1]["platform"],
            serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"})
        );
        assert_eq!(index["manifests"][0]["size"], 7);
        list.entries
            .push(entry("arm64", crate::media_type::OCI_MANIFEST));
        assert_eq!(list.index().0, OCI_INDEX);
    }
}
