//! `push`: an image of the store goes to the registry its reference names. Each blob (the
//! layers, then the config) is first asked for with `HEAD` and skipped if the repository has
//! it; the missing ones are uploaded a few at a time; the manifest goes last, byte for byte as
//! the store has it, so its digest is the one `pull` and `inspect` show.
//!
//! A manifest list ([`RegistryClient::push_list`]) goes the same way: each image's blobs and
//! its manifest by digest first, the index (under the tag) last, so that the registry never
//! serves an index whose images it lacks.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::merge_repo_digests;
use crate::image::{Image, parse_manifest};
use crate::manifest_list::ManifestList;
use crate::reference::Reference;
use crate::registry::client::{Body, RegistryClient, Request};
use crate::registry::error::RegistryError;
use crate::registry::transfer::{
    LayerEvent, LayerStatus, Progress, Uploaded, in_parallel, push_scope,
};
use crate::store::Store;
use std::collections::HashMap;

/// What [`RegistryClient::push`] did: docker's `TAG: digest: sha256:… size: N` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The tag pushed.
    pub tag: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

impl RegistryClient {
    /// Pushes the image `reference` names in `store` to `reference`'s registry and repository,
    /// reporting each layer to `progress`.
    pub fn push(
        &self,
        store: &Store,
        reference: &Reference,
        progress: Progress<'_>,
    ) -> Result<Pushed, RegistryError> {
        let _lease = store.lease()?;
        let image = store.image(&reference.to_string())?;
        let tag = reference.tag().unwrap_or("latest").to_owned();
        let size = self.push_image(store, &image, reference, &tag, progress)?;
        let repo_digest = format!("{}@{}", reference.name(), image.manifest_digest);
        store.update_index(|index| {
            if let Some(record) = index.images.get_mut(&image.id) {
                merge_repo_digests(&mut record.repo_digests, &[repo_digest]);
            }
            Ok(())
        })?;
        Ok(Pushed {
            tag,
            digest: image.manifest_digest,
            size,
        })
    }

    /// Pushes `list`'s images (blobs, then each manifest by digest) to `reference`'s
    /// repository, then the index under `reference`'s tag. Progress is reported per layer as
    /// for [`RegistryClient::push`].
    pub fn push_list(
        &self,
        store: &Store,
        list: &ManifestList,
        reference: &Reference,
        progress: Progress<'_>,
    ) -> Result<Pushed, RegistryError> {
        let _lease = store.lease()?;
        for entry in &list.entries {
            let image = store.image(entry.image.as_str())?;
            if image.manifest_digest != entry.manifest {
                return Err(StoreError::document(
                    format!("manifest list {}", reference.familiar()),
                    format!(
                        "image {} has manifest {} now, not {}: create the list again",
                        entry.image, image.manifest_digest, entry.manifest
                    ),
                )
                .into());
            }
            self.push_image(
                store,
                &image,
                reference,
                image.manifest_digest.as_str(),
                progress,
            )?;
        }
        let tag = reference.tag().unwrap_or("latest").to_owned();
        let (media_type, index) = list.index();
        self.put_manifest(reference, &tag, &media_type, &index)?;
        Ok(Pushed {
            tag,
            digest: Digest::of(&index),
            size: index.len() as u64,
        })
    }

    /// `PUT /v2/NAME/manifests/TARGET` (a tag or a digest).
    pub(crate) fn put_manifest(
        &self,
        reference: &Reference,
        target: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let mut req = Request::new(
            "PUT",
            reference.registry(),
            push_scope(reference),
            format!("/v2/{}/manifests/{target}", reference.repository()),
        );
        req.headers.push(("Content-Type", media_type.to_owned()));
        req.body = Body::Bytes(bytes);
        let response = self.send(&req)?;
        self.check(&req, response, &reference.familiar(), "push")?;
        Ok(())
    }

    /// Pushes `image`'s blobs that the repository lacks, then its manifest as `target` (a tag
    /// or its digest); returns the manifest's size.
    fn push_image(
        &self,
        store: &Store,
        image: &Image,
        reference: &Reference,
        target: &str,
        progress: Progress<'_>,
    ) -> Result<u64, RegistryError> {
        let manifest = store.read_blob(&image.manifest_digest)?;
        let mut blobs: Vec<(Digest, u64, bool)> = image
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size, true))
            .collect();
        blobs.push((image.id.clone(), image.config_bytes.len() as u64, false));
        for (digest, _, _) in blobs.iter().filter(|b| b.2) {
            progress(LayerEvent {
                layer: digest.clone(),
                status: LayerStatus::Preparing,
            });
        }
        let jobs = self.options().max_concurrent_uploads.max(1);
        for (digest, _, _) in blobs.iter().filter(|b| b.2).skip(jobs) {
            progress(LayerEvent {
                layer: digest.clone(),
                status: LayerStatus::Waiting,
            });
        }
        let sources = mount_sources(store, reference)?;
        in_parallel(&blobs, jobs, |(digest, size, is_layer)| {
            let report = |status| {
                if *is_layer {
                    progress(LayerEvent {
                        layer: digest.clone(),
                        status,
                    });
                }
            };
            if self.blob_exists(reference, digest)? {
                report(LayerStatus::LayerAlreadyExists);
                return Ok(());
            }
            let from = sources.get(digest).map(String::as_str);
            if from.is_none() {
                report(LayerStatus::Pushing {
                    current: 0,
                    total: *size,
                });
            }
            let sent = |current| {
                report(LayerStatus::Pushing {
                    current,
                    total: *size,
                })
            };
            match self.upload_blob(store, reference, digest, from, &sent)? {
                Uploaded::Mounted => report(LayerStatus::MountedFrom(
                    from.expect("only a mount source mounts").to_owned(),
                )),
                Uploaded::Sent => report(LayerStatus::Pushed),
            }
            Ok(())
        })?;

        self.put_manifest(reference, target, &image.manifest_media_type, &manifest)?;
        Ok(manifest.len() as u64)
    }
}

/// Blob → another repository of `reference`'s registry that has it, as far as the store knows:
/// the repositories its images were pulled from or pushed to there (their RepoDigests).
fn mount_sources(
    store: &Store,
    reference: &Reference,
) -> Result<HashMap<Digest, String>, StoreError> {
    let index = store.read_index()?;
    let mut sources = HashMap::new();
    for record in index.images.values() {
        for repo_digest in &record.repo_digests {
            let Ok(source) = Reference::parse(repo_digest) else {
                continue;
            };
            if source.registry() != reference.registry()
                || source.repository() == reference.repository()
                || !store.has_blob(&record.manifest)
            {
                continue;
            }
            let what = format!("manifest {}", record.manifest);
            let Ok(manifest) = parse_manifest(&store.read_blob(&record.manifest)?, &what) else {
                continue;
            };
            let digests = manifest
                .layers()
                .iter()
                .chain(std::iter::once(manifest.config()))
                .filter_map(|d| Digest::try_from(d.digest()).ok());
            for d in digests {
                sources
                    .entry(d)
                    .or_insert_with(|| source.repository().to_owned());
            }
        }
    }
    Ok(sources)
}
