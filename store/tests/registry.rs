//! The registry client against a real registry: Debian's `docker-registry` on a free
//! 127.0.0.1 port (the CLI's tests cover the commands; these, what only the API can set).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use strata_store::{
    Compression, ImageConfigFile, LayerStatus, NewImage, Platform, Reference, RegistryClient,
    RegistryOptions, Store,
};

#[path = "fixture/docker_registry.rs"]
mod docker_registry;
use docker_registry::DockerRegistry as Registry;
#[path = "fixture/proxy.rs"]
#[expect(
    dead_code,
    reason = "the fault proxy serves the CLI's tests too, which use the faults these do not"
)]
mod proxy;
use proxy::{Action, Fault, Proxy};

/// A registry anyone may use.
fn start() -> Registry {
    Registry::start(tempfile::tempdir().unwrap(), "")
}

/// A one-layer image of `size` pseudo-random bytes (incompressible), tagged `tag`.
fn image(store: &Store, size: usize, tag: &Reference) -> strata_store::Digest {
    let mut data = Vec::with_capacity(size);
    let mut x: u32 = 2_463_534_242;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "data.bin", &data[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut w = store.layer_writer(Compression::Gzip).unwrap();
    std::io::Write::write_all(&mut w, &tar).unwrap();
    let layer = w.finish().unwrap();
    let config: ImageConfigFile = serde_json::from_value(serde_json::json!({
        "architecture": Platform::host().arch, "os": "linux",
    }))
    .unwrap();
    store
        .commit_image(NewImage {
            config,
            layers: vec![layer],
            tags: vec![tag.clone()],
        })
        .unwrap()
}

/// A client that uploads in 64 KiB `PATCH`es.
fn chunked() -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        upload_chunk_size: Some(64 * 1024),
        ..RegistryOptions::default()
    })
    .unwrap()
}

/// Pulls `reference` into a new store in `dir`, asserts that store is sound, and returns what
/// the pull said.
fn pull_back(dir: &std::path::Path, reference: &Reference) -> strata_store::Pulled {
    let target = Store::open(dir.join("b")).unwrap();
    let pulled = RegistryClient::new(RegistryOptions::default())
        .unwrap()
        .pull(&target, reference, None, &|_| {})
        .unwrap();
    assert!(target.check().unwrap().is_clean());
    pulled
}

#[test]
fn a_chunked_upload_is_the_same_image_to_the_registry() {
    let registry = start();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("{}/chunked:1", registry.host())).unwrap();
    let id = image(&source, 300_000, &reference);
    let pushed = chunked().push(&source, &reference, &|_| {}).unwrap();

    let pulled = pull_back(dir.path(), &reference);
    assert_eq!((pulled.id, pulled.digest), (id, pushed.digest));
}

#[test]
fn a_chunked_upload_broken_midway_is_sent_again_in_a_new_session() {
    let registry = start();
    let proxy = Proxy::start(&registry.host());
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("{}/chunked:1", proxy.host())).unwrap();
    let id = image(&source, 300_000, &reference);
    let cut = Action::CutUpload { after: 1000 };
    proxy.fault(Fault::new("PATCH", "/blobs/uploads/", Some(1), cut));
    let pushed = chunked().push(&source, &reference, &|_| {}).unwrap();

    // The broken session is dropped, not PATCHed again: a new one carries the whole blob.
    let seen = proxy.exchanges();
    let broken = seen.iter().position(|e| e.fault == Some(cut)).unwrap();
    let session = seen[broken].target.split('?').next().unwrap().to_owned();
    assert_eq!(
        seen.iter()
            .filter(|e| e.target.starts_with(&session))
            .count(),
        1,
        "{seen:#?}"
    );
    let next = &seen[broken + 1..];
    assert!(
        next.iter().any(|e| e.method == "POST"),
        "a new session: {seen:#?}"
    );
    let layer_put = next
        .iter()
        .filter(|e| e.method == "PUT" && e.target.contains("digest="))
        .filter_map(|e| e.status)
        .collect::<Vec<_>>();
    assert!(
        !layer_put.is_empty() && layer_put.iter().all(|s| *s == 201),
        "{seen:#?}"
    );

    let pulled = pull_back(dir.path(), &reference);
    assert_eq!((pulled.id, pulled.digest), (id, pushed.digest));
}

/// The artifact API the build cache uses: blobs go up only when the repository lacks them
/// (HEAD first), the manifest goes under the tag, and a blob comes down verified, counted at
/// the registry's own access log.
#[test]
fn push_blobs_sends_only_what_the_repository_lacks() {
    let registry = Registry::start_logged(tempfile::tempdir().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("{}/cache/app:ci", registry.host())).unwrap();
    let one = store.put_blob(None, &b"one"[..]).unwrap().digest;
    let two = store.put_blob(None, &b"two"[..]).unwrap().digest;
    let client = RegistryClient::new(RegistryOptions::default()).unwrap();

    assert_eq!(
        client
            .push_blobs(&store, &reference, std::slice::from_ref(&one))
            .unwrap(),
        vec![one.clone()]
    );
    let mut sent = client
        .push_blobs(&store, &reference, &[one.clone(), two.clone()])
        .unwrap();
    sent.sort();
    assert_eq!(sent, vec![two.clone()], "`one` was there already");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/octet-stream", "digest": one, "size": 3},
            {"mediaType": "application/octet-stream", "digest": two, "size": 3},
        ],
    }))
    .unwrap();
    let digest = client
        .push_manifest(
            &reference,
            "application/vnd.oci.image.index.v1+json",
            &manifest,
        )
        .unwrap();
    let raw = client.raw_manifest(&reference).unwrap();
    assert_eq!((raw.digest, raw.bytes), (digest, manifest));

    let other = Store::open(dir.path().join("b")).unwrap();
    client.fetch_blob_into(&other, &reference, &two, 3).unwrap();
    assert_eq!(other.read_blob(&two).unwrap(), b"two");
    // A wrong size is refused, and nothing half-fetched stays.
    assert!(client.fetch_blob_into(&other, &reference, &one, 4).is_err());
    assert!(!other.has_blob(&one));

    // The uploads run in parallel: the order is not asserted.
    let mut blob_requests: Vec<(String, String, u16)> = registry
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .map(|r| {
            let blob = r.path.rsplit('/').next().unwrap().to_owned();
            let blob = if blob.starts_with("uploads") || blob.contains('?') {
                "upload".to_owned()
            } else if blob == one.to_string() {
                "one".to_owned()
            } else {
                "two".to_owned()
            };
            (r.method, blob, r.status)
        })
        .filter(|(m, _, _)| m == "HEAD" || m == "GET")
        .collect();
    blob_requests.sort();
    // HEAD one (404, sent), HEAD one (200, skipped), HEAD two (404, sent); GET two; GET one
    // twice (the wrong size, retried once from scratch).
    assert_eq!(
        blob_requests,
        [
            ("GET".to_owned(), "one".to_owned(), 200),
            ("GET".to_owned(), "one".to_owned(), 200),
            ("GET".to_owned(), "two".to_owned(), 200),
            ("HEAD".to_owned(), "one".to_owned(), 200),
            ("HEAD".to_owned(), "one".to_owned(), 404),
            ("HEAD".to_owned(), "two".to_owned(), 404),
        ]
    );
}

#[test]
fn a_push_reports_the_bytes_sent_of_each_layer_up_to_its_size() {
    let registry = start();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("{}/progress:1", registry.host())).unwrap();
    let id = image(&source, 3_000_000, &reference);
    let layer = source.image(&reference.to_string()).unwrap().layers[0].clone();
    let events = std::sync::Mutex::new(Vec::new());
    let client = RegistryClient::new(RegistryOptions::default()).unwrap();
    let pushed = client
        .push(&source, &reference, &|e| events.lock().unwrap().push(e))
        .unwrap();
    let statuses: Vec<LayerStatus> = events
        .into_inner()
        .unwrap()
        .into_iter()
        .filter(|e| e.layer == layer.digest)
        .map(|e| e.status)
        .collect();
    let sent: Vec<u64> = statuses
        .iter()
        .filter_map(|s| match s {
            LayerStatus::Pushing { current, total } => {
                assert_eq!(*total, layer.size);
                Some(*current)
            }
            _ => None,
        })
        .collect();
    // From 0, a step per MiB, to the whole layer; then Pushed.
    assert_eq!(sent.first(), Some(&0));
    assert_eq!(sent.last(), Some(&layer.size));
    assert!(sent.len() >= 3, "{sent:?}");
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "{sent:?}");
    assert_eq!(statuses.first(), Some(&LayerStatus::Preparing));
    assert_eq!(statuses.last(), Some(&LayerStatus::Pushed));

    // The registry has the bytes (a length-delimited body, not chunked).
    let target = Store::open(dir.path().join("b")).unwrap();
    let pulled = client.pull(&target, &reference, None, &|_| {}).unwrap();
    assert_eq!((pulled.id, pulled.digest), (id, pushed.digest));
}
