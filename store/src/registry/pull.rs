//! `pull`: a reference becomes an image in the store. The manifest (through an index, for the
//! platform asked for) is fetched and verified first; the config and the layers the store lacks
//! are downloaded a few at a time, each then decompressed and checked against its diff ID;
//! the image is indexed last, in one update, with its RepoDigest. A failure before that leaves
//! the index as it was (downloaded blobs stay for the next try, or for `image prune`).

use crate::blob::MAX_DOCUMENT;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::image::{layer_descriptors, now_rfc3339, parse_config, parse_manifest};
use crate::index::ImageRecord;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::client::{RegistryClient, Request};
use crate::registry::error::RegistryError;
use crate::registry::manifest::{descriptor_digest, select};
use crate::registry::transfer::{
    LayerEvent, LayerStatus, Progress, diff_id_of, in_parallel, pull_scope,
};
use crate::store::Store;

/// What [`RegistryClient::pull`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image ID.
    pub id: Digest,
    /// The digest of what the reference resolved to in the registry (the index, for a
    /// multi-platform image): docker's `Digest:` line.
    pub digest: Digest,
    /// Whether the store had it already under this reference (`Image is up to date`).
    pub up_to_date: bool,
    /// The image's platform, when it is not the one wanted: only when no platform was asked
    /// for (docker then warns and takes the image; an asked-for platform must match).
    pub other_platform: Option<Platform>,
}

impl RegistryClient {
    /// Pulls `reference` into `store`, reporting each layer to `progress`. From an index, the
    /// image for `platform` (this machine's if `None`) is taken; an image that is not an
    /// index must be for `platform` if one is given.
    ///
    /// A Docker Hub image is pulled from each mirror of [`RegistryOptions::mirrors`] in turn
    /// (the same repository path: `library/busybox`), then from Docker Hub: the next is tried
    /// after a connection error, a 404 or a 5xx. The image is stored under Docker Hub's name
    /// either way, its RepoDigest too, as docker does.
    ///
    /// [`RegistryOptions::mirrors`]: crate::RegistryOptions::mirrors
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: Option<&Platform>,
        progress: Progress<'_>,
    ) -> Result<Pulled, RegistryError> {
        let _lease = store.lease()?;
        if reference.registry() != "docker.io" {
            return self.pull_from(store, reference, reference, platform, progress);
        }
        let mut tried = Vec::new();
        for mirror in self.mirror_hosts() {
            let source = reference.on_registry(mirror);
            match self.pull_from(store, reference, &source, platform, progress) {
                Ok(pulled) => return Ok(pulled),
                Err(e) if falls_back(&e) => tried.push(format!("{mirror}: {e}")),
                Err(e) => return Err(e),
            }
        }
        match self.pull_from(store, reference, reference, platform, progress) {
            Err(e) if !tried.is_empty() => Err(RegistryError::Mirrors {
                tried: tried.join("; "),
                origin: reference.registry().to_owned(),
                source: Box::new(e),
            }),
            result => result,
        }
    }

    /// Pulls `reference` from where `source` says (the same, or a mirror's copy of it).
    fn pull_from(
        &self,
        store: &Store,
        reference: &Reference,
        source: &Reference,
        platform: Option<&Platform>,
        progress: Progress<'_>,
    ) -> Result<Pulled, RegistryError> {
        let host = Platform::host();
        let asked = platform;
        let platform = platform.unwrap_or(&host);
        let registry = source.registry();
        let shown = source.familiar();
        let scope = pull_scope(source);
        let by = source.digest().or(source.tag()).unwrap_or("latest");
        let top = self.fetch_manifest(source, by, &scope)?;
        let repo_digest = format!("{}@{}", reference.name(), top.digest);

        // The image manifest for our platform: the index's entry, or the document itself.
        let wanted = if top.is_index() {
            let entry = select(&top.json, platform, &shown)?;
            descriptor_digest(entry, &format!("index of {shown}"), registry)?
        } else {
            top.digest.clone()
        };
        let index = store.read_index()?;
        if let Some(id) = index.tags.get(&reference.to_string())
            && let Some(record) = index.images.get(id)
            && record.manifest == wanted
            && record.repo_digests.contains(&repo_digest)
            && store.has_blob(&record.manifest)
        {
            return Ok(Pulled {
                id: id.clone(),
                digest: top.digest,
                up_to_date: true,
                other_platform: None,
            });
        }

        let manifest = if top.is_index() {
            let manifest = self.fetch_manifest(source, wanted.as_str(), &scope)?;
            if manifest.is_index() {
                return Err(RegistryError::InvalidDocument {
                    what: format!("index of {shown}"),
                    registry: registry.to_owned(),
                    reason: format!("entry {wanted} for {platform} is an index, not an image"),
                });
            }
            manifest
        } else {
            top.clone()
        };
        let what = format!("manifest {}", manifest.digest);
        let parsed = parse_manifest(&manifest.bytes, &what)?;
        let config_digest = Digest::try_from(parsed.config().digest()).map_err(StoreError::from)?;
        let config_size = parsed.config().size();
        if config_size > MAX_DOCUMENT {
            return Err(StoreError::document(
                format!("config {config_digest}"),
                format!("{config_size} bytes is over the {MAX_DOCUMENT}-byte limit"),
            )
            .into());
        }
        if !store.has_blob(&config_digest) {
            self.download_blob(store, source, &config_digest, config_size, &|_| {})?;
        }
        let config = parse_config(
            &store.read_blob(&config_digest)?,
            &format!("config {config_digest}"),
        )?;
        let actual = config.platform();
        let other_platform =
            (!config.architecture.is_empty() && !platform.matches(&actual)).then_some(actual);
        if let (Some(asked), Some(actual)) = (asked, &other_platform) {
            return Err(RegistryError::PlatformMismatch {
                reference: shown,
                wanted: asked.to_string(),
                actual: actual.to_string(),
            });
        }
        let layers = layer_descriptors(&parsed, &config, &[], &what)?;

        let present: Vec<bool> = layers.iter().map(|l| store.has_blob(&l.digest)).collect();
        for (l, present) in layers.iter().zip(&present) {
            progress(LayerEvent {
                layer: l.digest.clone(),
                status: if *present {
                    LayerStatus::AlreadyExists
                } else {
                    LayerStatus::PullingFsLayer
                },
            });
        }
        let work: Vec<_> = layers.iter().zip(present).collect();
        let sizes = in_parallel(
            &work,
            self.options().max_concurrent_downloads,
            |(l, present)| {
                let report = |status| {
                    progress(LayerEvent {
                        layer: l.digest.clone(),
                        status,
                    })
                };
                if !present {
                    self.download_blob(store, source, &l.digest, l.size, &report)?;
                    report(LayerStatus::Extracting);
                }
                let (diff_id, size) = diff_id_of(store, &l.digest)?;
                if diff_id != l.diff_id {
                    return Err(StoreError::DiffIdMismatch {
                        layer: l.digest.clone(),
                        expected: l.diff_id.clone(),
                        actual: diff_id,
                    }
                    .into());
                }
                if !present {
                    report(LayerStatus::PullComplete);
                }
                Ok(size)
            },
        )?;

        store.put_blob(Some(&manifest.digest), &manifest.bytes[..])?;
        store.index_image(
            &config_digest,
            ImageRecord {
                manifest: manifest.digest.clone(),
                manifest_media_type: manifest.media_type.clone(),
                layer_sizes: sizes,
                last_tag_time: Some(now_rfc3339()),
                repo_digests: vec![repo_digest],
            },
            std::slice::from_ref(reference),
        )?;
        Ok(Pulled {
            id: config_digest,
            digest: top.digest,
            up_to_date: false,
            other_platform,
        })
    }

    /// The tags of the repository `reference` names (`GET /v2/NAME/tags/list`, following the
    /// `Link: <…>; rel="next"` pages), sorted.
    pub fn tags(&self, reference: &Reference) -> Result<Vec<String>, RegistryError> {
        let registry = reference.registry();
        let shown = reference.familiar_name();
        let invalid = |reason: String| RegistryError::InvalidDocument {
            what: format!("tag list of {shown}"),
            registry: registry.to_owned(),
            reason,
        };
        let mut tags = Vec::new();
        self.list_pages(
            registry,
            &pull_scope(reference),
            format!("/v2/{}/tags/list", reference.repository()),
            &invalid,
            |req, response| {
                if response.status() == ureq::http::StatusCode::NOT_FOUND {
                    return Err(RegistryError::ManifestNotFound {
                        reference: shown.clone(),
                        registry: registry.to_owned(),
                    });
                }
                self.check(req, response, &shown, "pull")
            },
            |bytes| {
                let list: oci_spec::distribution::TagList =
                    serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
                tags.extend(list.tags().iter().cloned());
                Ok(())
            },
        )?;
        tags.sort();
        tags.dedup();
        Ok(tags)
    }
}

/// Whether a mirror's failure sends the pull on to the next mirror or the origin: it could not
/// be reached, or it lacks the image, or it failed (5xx).
fn falls_back(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. }
        | RegistryError::Timeout { .. }
        | RegistryError::PlainHttp { .. }
        | RegistryError::Download { .. }
        | RegistryError::ManifestNotFound { .. }
        | RegistryError::BlobNotFound { .. } => true,
        RegistryError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// A registry lists at most this many pages of tags or repositories for us (a loop of
/// `Link`s ends here).
const MAX_PAGES: usize = 1000;

impl RegistryClient {
    /// Reads a paged list (`/v2/NAME/tags/list`, `/v2/_catalog`): `first`, then each
    /// `Link: <…>; rel="next"` target, at most [`MAX_PAGES`]; `check` turns each response
    /// into a success or an error, `page` takes each body (bounded).
    pub(crate) fn list_pages(
        &self,
        registry: &str,
        scope: &str,
        first: String,
        invalid: &dyn Fn(String) -> RegistryError,
        check: impl Fn(
            &Request<'_>,
            ureq::http::Response<ureq::Body>,
        ) -> Result<ureq::http::Response<ureq::Body>, RegistryError>,
        mut page: impl FnMut(&[u8]) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut target = Some(first);
        let mut pages = 0;
        while let Some(next) = target.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(invalid(format!("more than {MAX_PAGES} pages")));
            }
            let req = Request::new("GET", registry, scope.to_owned(), next);
            let response = self.send(&req)?;
            let mut response = check(&req, response)?;
            target = response
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let bytes = response
                .body_mut()
                .with_config()
                .limit(MAX_DOCUMENT)
                .read_to_vec()
                .map_err(|e| invalid(e.to_string()))?;
            page(&bytes)?;
        }
        Ok(())
    }
}

/// The target of a `Link: </v2/…?last=x&n=100>; rel="next"` header, if it has a next page.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryOptions;
    use crate::registry::fake::FakeServer;

    #[test]
    fn tags_follow_the_next_links() {
        let server = FakeServer::start(|req, _| {
            let (tags, link) = if req.target.contains("last=b") {
                (r#"["c"]"#, None)
            } else {
                (
                    r#"["b","a"]"#,
                    Some(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#.to_owned()),
                )
            };
            let body = format!(r#"{{"name":"app","tags":{tags}}}"#);
            (
                200,
                link.map(|l| ("Link", l)).into_iter().collect(),
                body.into_bytes(),
            )
        });
        let client = RegistryClient::new(RegistryOptions::default()).unwrap();
        let reference = Reference::parse(&format!("{}/app", server.host())).unwrap();
        assert_eq!(client.tags(&reference).unwrap(), ["a", "b", "c"]);
        let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
        assert_eq!(
            targets,
            ["/v2/app/tags/list", "/v2/app/tags/list?last=b&n=2"]
        );
    }

    #[test]
    fn a_failing_mirror_falls_back_to_the_next_and_the_image_keeps_docker_hubs_name() {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let config_digest = Digest::of(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
            crate::media_type::OCI_MANIFEST,
            crate::media_type::OCI_CONFIG,
            config.len()
        );
        let manifest_digest = Digest::of(manifest.as_bytes());
        let broken = FakeServer::start(|_, _| (503, vec![], Vec::new()));
        let good = FakeServer::start(move |req, _| {
            if req.target.contains("/blobs/") {
                (200, vec![], config.clone())
            } else {
                let content_type = crate::media_type::OCI_MANIFEST.to_owned();
                (
                    200,
                    vec![("Content-Type", content_type)],
                    manifest.clone().into_bytes(),
                )
            }
        });
        let client = RegistryClient::new(RegistryOptions {
            mirrors: vec![
                format!("http://{}", broken.host()),
                format!("http://{}/", good.host()),
            ],
            retries: 0,
            ..RegistryOptions::default()
        })
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let reference = Reference::parse("busybox").unwrap();
        let pulled = client.pull(&store, &reference, None, &|_| {}).unwrap();
        assert_eq!(
            (&pulled.id, &pulled.digest),
            (&config_digest, &manifest_digest)
        );
        let seen =
            |s: &FakeServer| -> Vec<String> { s.seen().into_iter().map(|r| r.target).collect() };
        assert_eq!(seen(&broken), ["/v2/library/busybox/manifests/latest"]);
        assert_eq!(
            seen(&good),
            [
                "/v2/library/busybox/manifests/latest".to_owned(),
                format!("/v2/library/busybox/blobs/{config_digest}")
            ]
        );
        let image = store.image("busybox:latest").unwrap();
        assert_eq!(
            image.repo_digests,
            [format!("docker.io/library/busybox@{manifest_digest}")]
        );
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
    }
}
