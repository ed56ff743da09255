//! `pull`: a reference becomes an image in the store. The manifest (through an index, for the
//! platform asked for) is fetched and verified first; the config and the layers the store lacks
//! are downloaded a few at a time, each unpacked into its snapshot as it arrives and checked
//! against its diff ID in the same pass (as `docker pull` extracts), the snapshots put in
//! place in layer order once their blobs are verified; the image is indexed last, in one
//! update, with its RepoDigest. A failure before that leaves the index as it was (downloaded
//! blobs and finished snapshots stay for the next try, or for `image prune`).

use crate::blob::MAX_DOCUMENT;
use crate::compression::Compression;
use crate::digest::Digest;
use crate::digest::chain_ids;
use crate::error::StoreError;
use crate::image::{layer_descriptors, now_rfc3339, parse_config, parse_manifest};
use crate::index::ImageRecord;
use crate::layer::LayerDescriptor;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::client::{RegistryClient, Request};
use crate::registry::error::RegistryError;
use crate::registry::manifest::{descriptor_digest, select};
use crate::registry::transfer::{
    LayerEvent, LayerStatus, Progress, TeeReader, diff_id_of, in_parallel_until, pull_scope,
};
use crate::snapshot::StagedSnapshot;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

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

        let sizes = self.fetch_layers(store, source, &layers, progress)?;

        store.put_document(Some(&manifest.digest), &manifest.bytes)?;
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

/// What a pull has to do for one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Blob and snapshot are there (`Already exists`).
    Nothing,
    /// The blob is there, its snapshot is not: unpack it.
    Unpack,
    /// Download the blob (and unpack it if its snapshot is missing).
    Download,
}

/// Where each layer's download stands: the unpacking thread waits on it, layer by layer.
struct Arrivals {
    state: Mutex<Vec<Arrival>>,
    changed: Condvar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Pending,
    Stored,
    /// Failed, or never started because something else failed.
    Lost,
}

impl Arrivals {
    fn new(needs: &[Need]) -> Self {
        let state = needs
            .iter()
            .map(|n| match n {
                Need::Download => Arrival::Pending,
                _ => Arrival::Stored,
            })
            .collect();
        Arrivals {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arrival>> {
        self.state
            .lock()
            .expect("no thread panics holding the lock")
    }

    fn set(&self, i: usize, arrival: Arrival) {
        self.lock()[i] = arrival;
        self.changed.notify_all();
    }

    /// Every download still pending will not happen (the downloaders are done).
    fn close(&self) {
        for a in self.lock().iter_mut().filter(|a| **a == Arrival::Pending) {
            *a = Arrival::Lost;
        }
        self.changed.notify_all();
    }

    /// Waits until layer `i`'s blob is stored (`true`) or will not be (`false`).
    fn wait(&self, i: usize) -> bool {
        let state = self
            .changed
            .wait_while(self.lock(), |s| s[i] == Arrival::Pending)
            .expect("no thread panics holding the lock");
        state[i] == Arrival::Stored
    }
}

impl RegistryClient {
    /// Brings every layer into the store, blob and snapshot, and returns their uncompressed
    /// lengths. A pipeline: the missing blobs download `max_concurrent_downloads` at a time
    /// (the rest report `Waiting`), each unpacked into a staging directory as its bytes arrive
    /// (so a big layer's unpacking overlaps its own download, not only the next layer's);
    /// this thread puts the snapshots in place in layer order, each once its blob is verified
    /// and stored, and unpacks there what was not unpacked on the way (a blob the store had,
    /// a download that needed a second try). The first failure stops new downloads and is
    /// returned; snapshots in place before it stay (complete and verified; `image prune`
    /// reclaims them), the failing layer leaves none.
    fn fetch_layers(
        &self,
        store: &Store,
        reference: &Reference,
        layers: &[LayerDescriptor],
        progress: Progress<'_>,
    ) -> Result<Vec<u64>, RegistryError> {
        let chains = chain_ids(&layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
        let needs: Vec<Need> = layers
            .iter()
            .zip(&chains)
            .map(|(l, chain)| {
                if !store.has_blob(&l.digest) {
                    Need::Download
                } else if store.snapshot(chain).is_none() {
                    Need::Unpack
                } else {
                    Need::Nothing
                }
            })
            .collect();
        let report = |i: usize, status| {
            progress(LayerEvent {
                layer: layers[i].digest.clone(),
                status,
            })
        };
        let jobs = self.options().max_concurrent_downloads.max(1);
        let downloads: Vec<usize> = (0..layers.len())
            .filter(|&i| needs[i] == Need::Download)
            .collect();
        for (i, need) in needs.iter().enumerate() {
            report(
                i,
                match need {
                    Need::Nothing => LayerStatus::AlreadyExists,
                    Need::Unpack => LayerStatus::DownloadComplete,
                    Need::Download => LayerStatus::PullingFsLayer,
                },
            );
        }
        for &i in downloads.iter().skip(jobs) {
            report(i, LayerStatus::Waiting);
        }

        let arrivals = Arrivals::new(&needs);
        let staged: Mutex<Vec<Option<StagedSnapshot>>> =
            Mutex::new(layers.iter().map(|_| None).collect());
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let downloading = scope.spawn(|| {
                let result = in_parallel_until(&downloads, jobs, &failed, |&i| {
                    let l = &layers[i];
                    let report = |s| report(i, s);
                    let result = if store.snapshot(&chains[i]).is_none() {
                        self.download_unpacking(store, reference, l, &report)
                            .map(|s| {
                                staged.lock().expect("no thread panics holding the lock")[i] = s
                            })
                    } else {
                        self.download_blob(store, reference, &l.digest, l.size, &report)
                    };
                    arrivals.set(
                        i,
                        if result.is_ok() {
                            Arrival::Stored
                        } else {
                            Arrival::Lost
                        },
                    );
                    result
                });
                arrivals.close();
                result
            });
            let unpacked =
                unpack_in_order(store, layers, &chains, &needs, &arrivals, &staged, &report);
            if unpacked.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            let downloaded = downloading
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // A download's error explains a layer the unpacking stopped at.
            downloaded?;
            unpacked
        })
    }
}

/// The consumer side of [`RegistryClient::fetch_layers`]: puts each layer's snapshot in place
/// in order once its blob is stored (adopting the one unpacked while it downloaded, else
/// unpacking the blob); returns the uncompressed lengths, or `Ok` of a short list when a
/// download failed (the downloader returns that error).
fn unpack_in_order(
    store: &Store,
    layers: &[LayerDescriptor],
    chains: &[Digest],
    needs: &[Need],
    arrivals: &Arrivals,
    staged: &Mutex<Vec<Option<StagedSnapshot>>>,
    report: &(dyn Fn(usize, LayerStatus) + Sync),
) -> Result<Vec<u64>, RegistryError> {
    let mut sizes = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        if !arrivals.wait(i) {
            return Ok(sizes);
        }
        let parent = i.checked_sub(1).map(|p| &chains[p]);
        let unpacked = staged.lock().expect("no thread panics holding the lock")[i].take();
        let size = if needs[i] == Need::Nothing {
            known_layer_size(store, l)?
        } else if let Some(unpacked) = unpacked {
            // Unpacked while it downloaded: put in place, in order.
            report(
                i,
                LayerStatus::Extracting {
                    current: l.size,
                    total: l.size,
                },
            );
            let len = unpacked.len;
            store.adopt_staged(parent, l, unpacked)?;
            report(i, LayerStatus::PullComplete);
            len
        } else {
            report(
                i,
                LayerStatus::Extracting {
                    current: 0,
                    total: l.size,
                },
            );
            let (_, len) = store.unpack_layer_reporting(parent, l, &|current, total| {
                report(i, LayerStatus::Extracting { current, total })
            })?;
            let size = match len {
                Some(len) => len,
                // The snapshot was there (another pull or build made it meanwhile):
                // this blob has not been read yet.
                None => known_layer_size(store, l)?,
            };
            report(i, LayerStatus::PullComplete);
            size
        };
        sizes.push(size);
    }
    Ok(sizes)
}

impl RegistryClient {
    /// Downloads `layer` and unpacks it as its bytes arrive (a [`TeeReader`] into
    /// [`Store::stage_layer`]), so that the unpacking overlaps the download rather than
    /// following it. The staged snapshot counts only if the download is verified; a download
    /// that fails is tried once more without the unpacking (the layer is then unpacked from
    /// the store: `None`).
    fn download_unpacking(
        &self,
        store: &Store,
        reference: &Reference,
        layer: &LayerDescriptor,
        report: &dyn Fn(LayerStatus),
    ) -> Result<Option<StagedSnapshot>, RegistryError> {
        let (tee, chunks) = std::sync::mpsc::sync_channel(TEE_CHUNKS);
        let (downloaded, unpacked) = std::thread::scope(|scope| {
            let unpacking = scope
                .spawn(|| store.stage_layer(layer, TeeReader::new(chunks), layer.size, &|_, _| {}));
            let downloaded = self.download_once(
                store,
                reference,
                &layer.digest,
                layer.size,
                report,
                Some(tee),
            );
            let unpacked = unpacking
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (downloaded, unpacked)
        });
        match downloaded {
            Ok(()) => Ok(Some(unpacked?)),
            Err(RegistryError::Download { .. }) => {
                drop(unpacked);
                self.download_once(store, reference, &layer.digest, layer.size, report, None)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Chunks (of up to 256 KiB) in flight between a download and the unpacking of its layer.
const TEE_CHUNKS: usize = 16;

/// The uncompressed length of a stored layer whose snapshot exists, its diff ID checked on
/// the way: a plain tar is its own blob (its digest must be the diff ID; no read), a
/// compressed blob is read through its decompressor.
fn known_layer_size(store: &Store, layer: &LayerDescriptor) -> Result<u64, StoreError> {
    let mut magic = [0; 4];
    let n = std::io::Read::read(&mut store.open_blob(&layer.digest)?, &mut magic)
        .map_err(StoreError::io("read blob", store.blob_path(&layer.digest)))?;
    let (diff_id, size) = if Compression::detect(&magic[..n]) == Compression::None {
        (layer.digest.clone(), store.blob_size(&layer.digest)?)
    } else {
        diff_id_of(store, &layer.digest)?
    };
    if diff_id != layer.diff_id {
        return Err(StoreError::DiffIdMismatch {
            layer: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual: diff_id,
        });
    }
    Ok(size)
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

    /// A tar holding one file `name` with `data`.
    fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
        tar.into_inner().unwrap()
    }

    /// A registry serving `app:1`: one layer per `(blob, media type)`, the config listing
    /// `diff_ids`.
    fn serve(layers: Vec<(Vec<u8>, &'static str)>, diff_ids: &[Digest]) -> FakeServer {
        serve_corrupting(layers, diff_ids, false)
    }

    /// [`serve`], with the first answer for each layer blob's bytes reversed if `corrupt`.
    fn serve_corrupting(
        layers: Vec<(Vec<u8>, &'static str)>,
        diff_ids: &[Digest],
        corrupt: bool,
    ) -> FakeServer {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": Platform::host().arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media_type::OCI_MANIFEST,
            "config": {"mediaType": crate::media_type::OCI_CONFIG,
                       "digest": Digest::of(&config), "size": config.len()},
            "layers": layers.iter().map(|(b, t)| serde_json::json!({
                "mediaType": t, "digest": Digest::of(b), "size": b.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut blobs: Vec<(Digest, Vec<u8>)> = vec![(Digest::of(&config), config)];
        blobs.extend(layers.into_iter().map(|(b, _)| (Digest::of(&b), b)));
        FakeServer::start(move |req, before| {
            if req.target.ends_with("/manifests/1") {
                let media_type = crate::media_type::OCI_MANIFEST.to_owned();
                return (200, vec![("Content-Type", media_type)], manifest.clone());
            }
            match blobs
                .iter()
                .enumerate()
                .find(|(_, (d, _))| req.target.ends_with(d.as_str()))
            {
                Some((k, (_, b))) => {
                    let first = !before.iter().any(|s| s.target == req.target);
                    let mut b = b.clone();
                    if corrupt && k > 0 && first {
                        b.reverse();
                    }
                    (200, vec![], b)
                }
                None => (404, vec![], Vec::new()),
            }
        })
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        Compression::Gzip.compress(bytes, Vec::new()).unwrap()
    }

    fn pull_events(store: &Store, server: &FakeServer) -> Result<Vec<LayerEvent>, RegistryError> {
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let events = Mutex::new(Vec::new());
        let client = RegistryClient::new(RegistryOptions {
            max_concurrent_downloads: 1,
            ..RegistryOptions::default()
        })
        .unwrap();
        client.pull(store, &reference, None, &|e| events.lock().unwrap().push(e))?;
        Ok(events.into_inner().unwrap())
    }

    /// The statuses one layer went through, `Downloading`/`Extracting` counted once each.
    fn statuses(events: &[LayerEvent], layer: &Digest) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in events.iter().filter(|e| &e.layer == layer) {
            let word = match e.status {
                LayerStatus::Downloading { .. } => "Downloading".to_owned(),
                LayerStatus::Extracting { .. } => "Extracting".to_owned(),
                ref s => format!("{s:?}"),
            };
            if out.last() != Some(&word) {
                out.push(word);
            }
        }
        out
    }

    #[test]
    fn a_pull_unpacks_every_layer_into_its_snapshot_in_docker_order_of_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let plain = tar_of("plain.txt", b"plain layer");
        let zipped_tar = tar_of("zipped.txt", b"gzip layer");
        let zipped = gzip(&zipped_tar);
        let diff_ids = [Digest::of(&plain), Digest::of(&zipped_tar)];
        let server = serve(
            vec![
                (plain.clone(), crate::media_type::OCI_LAYER),
                (zipped.clone(), crate::media_type::OCI_LAYER_GZIP),
            ],
            &diff_ids,
        );
        let events = pull_events(&store, &server).unwrap();
        // One download at a time: the second layer waits.
        assert_eq!(
            statuses(&events, &Digest::of(&plain)),
            [
                "PullingFsLayer",
                "Downloading",
                "VerifyingChecksum",
                "DownloadComplete",
                "Extracting",
                "PullComplete"
            ]
        );
        assert_eq!(
            statuses(&events, &Digest::of(&zipped)),
            [
                "PullingFsLayer",
                "Waiting",
                "Downloading",
                "VerifyingChecksum",
                "DownloadComplete",
                "Extracting",
                "PullComplete"
            ]
        );
        let chains = chain_ids(&diff_ids);
        let file = |i: usize, name: &str| {
            fs_err::read(store.snapshot(&chains[i]).unwrap().path.join(name)).unwrap()
        };
        assert_eq!(file(0, "plain.txt"), b"plain layer");
        assert_eq!(file(1, "zipped.txt"), b"gzip layer");
        // What a build or `run` asks for is what the pull unpacked.
        let image = store.image(&format!("{}/app:1", server.host())).unwrap();
        let snapshots = store.snapshots(&image).unwrap();
        assert_eq!(
            snapshots.iter().map(|s| &s.chain_id).collect::<Vec<_>>(),
            chains.iter().collect::<Vec<_>>()
        );
        let sizes = &store.read_index().unwrap().images[&image.id].layer_sizes;
        assert_eq!(sizes, &[plain.len() as u64, zipped_tar.len() as u64]);

        // The blob of a layer without its snapshot is unpacked, not downloaded again.
        store.remove_snapshot_dir(&chains[1]).unwrap();
        store
            .update_index(|i| {
                i.tags.clear();
                Ok(())
            })
            .unwrap();
        let requests = server.seen().len();
        let events = pull_events(&store, &server).unwrap();
        assert_eq!(statuses(&events, &Digest::of(&plain)), ["AlreadyExists"]);
        assert_eq!(
            statuses(&events, &Digest::of(&zipped)),
            ["DownloadComplete", "Extracting", "PullComplete"]
        );
        assert_eq!(file(1, "zipped.txt"), b"gzip layer");
        let blob_requests = server.seen()[requests..]
            .iter()
            .filter(|s| s.target.contains("/blobs/"))
            .count();
        assert_eq!(blob_requests, 0);
        assert!(store.check().unwrap().is_clean());
    }

    #[test]
    fn a_layer_whose_first_download_is_corrupt_is_fetched_again_and_unpacked_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let plain = tar_of("a.txt", b"plain");
        let zipped_tar = tar_of("b.txt", b"zipped");
        let zipped = gzip(&zipped_tar);
        let diff_ids = [Digest::of(&plain), Digest::of(&zipped_tar)];
        let server = serve_corrupting(
            vec![
                (plain.clone(), crate::media_type::OCI_LAYER),
                (zipped.clone(), crate::media_type::OCI_LAYER_GZIP),
            ],
            &diff_ids,
            true,
        );
        let events = pull_events(&store, &server).unwrap();
        for (layer, name, data) in [(&plain, "a.txt", "plain"), (&zipped, "b.txt", "zipped")] {
            let statuses = statuses(&events, &Digest::of(layer));
            assert_eq!(statuses.last().map(String::as_str), Some("PullComplete"));
            let gets = server
                .seen()
                .iter()
                .filter(|s| s.target.ends_with(Digest::of(layer).as_str()))
                .count();
            assert_eq!(gets, 2, "{name}");
            let i = usize::from(name == "b.txt");
            let snapshot = store.snapshot(&chain_ids(&diff_ids)[i]).unwrap();
            assert_eq!(
                fs_err::read(snapshot.path.join(name)).unwrap(),
                data.as_bytes()
            );
        }
        assert!(store.check().unwrap().is_clean());
        // Nothing staged is left over.
        let staging = fs_err::read_dir(store.staging("list").unwrap().dir())
            .unwrap()
            .count();
        assert_eq!(staging, 0);
    }

    #[test]
    fn a_diff_id_mismatch_fails_naming_the_layer_and_leaves_no_snapshot_and_no_image() {
        for compressed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().join("root")).unwrap();
            let tar = tar_of("a.txt", b"a");
            let (blob, media_type) = if compressed {
                (gzip(&tar), crate::media_type::OCI_LAYER_GZIP)
            } else {
                (tar.clone(), crate::media_type::OCI_LAYER)
            };
            let wrong = Digest::of(b"another tar");
            let server = serve(
                vec![(blob.clone(), media_type)],
                std::slice::from_ref(&wrong),
            );
            let err = pull_events(&store, &server).unwrap_err();
            assert!(
                matches!(
                    &err,
                    RegistryError::Store(e) if matches!(&**e,
                        StoreError::DiffIdMismatch { layer, expected, actual }
                            if *layer == Digest::of(&blob) && *expected == wrong
                                && *actual == Digest::of(&tar))
                ),
                "{err:?}"
            );
            assert!(store.snapshot(&wrong).is_none());
            assert_eq!(store.list_snapshots().unwrap(), []);
            assert!(store.images().unwrap().is_empty());
        }
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
