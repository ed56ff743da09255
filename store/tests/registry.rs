//! The registry client against a real registry: Debian's `docker-registry` on a free
//! 127.0.0.1 port (the CLI's tests cover the commands; these, what only the API can set).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use strata_store::{
    Compression, ImageConfigFile, NewImage, Platform, Reference, RegistryClient, RegistryOptions,
    Store,
};

/// `docker-registry` on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            fs_err::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry (Debian's docker-registry package)");
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && matches!(child.try_wait(), Ok(None))
                {
                    return Registry {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(dir.path().join("a")).unwrap();
    let reference = Reference::parse(&format!("127.0.0.1:{}/chunked:1", registry.port)).unwrap();
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
