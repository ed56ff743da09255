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

#[test]
fn a_chunked_upload_is_the_same_image_to_the_registry() {
    let registry = start();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("{}/chunked:1", registry.host())).unwrap();
    let id = image(&source, 300_000, &reference);
    let client = RegistryClient::new(RegistryOptions {
        upload_chunk_size: Some(64 * 1024),
        ..RegistryOptions::default()
    })
    .unwrap();
    let pushed = client.push(&source, &reference, &|_| {}).unwrap();

    let target = Store::open(dir.path().join("b")).unwrap();
    let pulled = RegistryClient::new(RegistryOptions::default())
        .unwrap()
        .pull(&target, &reference, None, &|_| {})
        .unwrap();
    assert_eq!((pulled.id, pulled.digest), (id, pushed.digest));
    assert!(target.check().unwrap().is_clean());
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
