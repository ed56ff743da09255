//! Issue 11 §3, last point: `RUN --mount=type=cache` directories travel with the exported
//! cache (`--cache-to ...,cache-mounts=true`), as a full layer and then deltas, and are
//! restored by a runner that imports them, only when a RUN that uses them runs.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::ci_cache::{runner, saved_base};
use crate::docker_registry::DockerRegistry;
use crate::support::{TestEnv, ran};
use std::path::{Path, PathBuf};

/// The RUN records what it found (`/seen`: the log, `/ls`: the files), appends to the log,
/// makes `keep` once and replaces `last-*` by `last-N` (a deletion, for a whiteout).
const DOCKERFILE: &str = "FROM base\nCOPY n /src/n\n\
    RUN --mount=type=cache,target=/cache sh -c 'cat /cache/log 2>/dev/null > /seen; \
    ls /cache > /ls; echo run-$(cat /src/n) >> /cache/log; [ -e /cache/keep ] || echo k > /cache/keep; \
    rm -f /cache/last-*; touch /cache/last-$(cat /src/n)'\n";

/// A context whose file `n` holds `n` (an edit re-runs the RUN).
fn context(env: &TestEnv, n: &str) -> PathBuf {
    env.context("mounts", &[("Dockerfile", DOCKERFILE), ("n", n)])
}

/// `strata build` in `env` with `args`, the final filesystem written to a fresh directory:
/// (the RUN steps that ran, that directory's `/seen`, its `/ls`).
fn build(env: &TestEnv, args: &[&str], ctx: &Path) -> (Vec<String>, String, String) {
    let out_dir = tempfile::tempdir_in(env.dir()).unwrap().keep();
    let out = env
        .command(["build", "--progress=rawjson", "-o"])
        .arg(&out_dir)
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed: {stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let runs = ran(&events)
        .into_iter()
        .filter(|l| l.contains("RUN"))
        .collect();
    let read = |f: &str| fs_err::read_to_string(out_dir.join(f)).unwrap();
    (runs, read("seen"), read("ls"))
}

/// The cache directories of a runner's cache mounts.
fn mount_dirs(env: &TestEnv) -> Vec<PathBuf> {
    let base = env.root().join("worker/cache-mounts");
    let Ok(entries) = fs_err::read_dir(&base) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Where the shared cache lives, as the test reads it back.
enum Place {
    Dir(PathBuf),
    Registry(DockerRegistry),
}

impl Place {
    fn spec(&self, key: &str) -> String {
        match self {
            Place::Dir(d) => format!("type=local,{key}={}", d.display()),
            Place::Registry(r) => format!("type=registry,ref={}/cache/mounts:ci", r.host()),
        }
    }

    /// The cache's config, its blob found in the cache directory or (registry) in the store
    /// of `exporter`, the runner that last exported.
    fn config(&self, exporter: &TestEnv) -> serde_json::Value {
        let blob = |dir: &Path, digest: &str| {
            fs_err::read(dir.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
        };
        match self {
            Place::Dir(d) => {
                let index = json(&fs_err::read(d.join("index.json")).unwrap());
                let manifest = json(&blob(d, index["manifests"][0]["digest"].as_str().unwrap()));
                json(&blob(d, manifest["config"]["digest"].as_str().unwrap()))
            }
            Place::Registry(r) => {
                let index = crate::registry_cache::manifest_at(&r.host(), "cache/mounts", "ci");
                let config = index["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["mediaType"] == crate::registry_cache::STRATA_CACHE_CONFIG)
                    .unwrap();
                json(&blob(&exporter.root(), config["digest"].as_str().unwrap()))
            }
        }
    }
}

/// The names in the (zstd) layer blob `digest` of `env`'s store, as `tar -t` lists them.
fn layer_names(env: &TestEnv, digest: &str) -> Vec<String> {
    let path = env
        .root()
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..]);
    let out = std::process::Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue_11_3_cache_mounts_travel_with_the_cache_as_deltas() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    for place in [
        Place::Dir(seed.dir().join("shared")),
        Place::Registry(DockerRegistry::start_logged(tempfile::tempdir().unwrap())),
    ] {
        let (from, to) = (place.spec("src"), place.spec("dest"));
        let to = format!("{to},cache-mounts=true");

        // A: a first run, nothing to see; its mount goes out as one full layer.
        let a = runner(&base);
        let (runs, seen, _) = build(&a, &["--cache-to", &to], &context(&a, "a"));
        assert_eq!((runs.len(), seen.as_str()), (1, ""));
        let config = place.config(&a);
        let mounts = config["mounts"].as_object().unwrap();
        assert_eq!(mounts.len(), 1, "{config}");
        let (name, mount) = mounts.iter().next().unwrap();
        assert_eq!(mount["id"], "/cache");
        assert_eq!(mount["layers"].as_array().unwrap().len(), 1);
        let full = mount["layers"][0]["digest"].as_str().unwrap().to_owned();
        assert_eq!(layer_names(&a, &full), ["keep", "last-a", "log"]);

        // B, a fresh runner, edits n: its RUN sees A's log; its export is a delta on A's.
        let b = runner(&base);
        let mark = match &place {
            Place::Registry(r) => r.requests().len(),
            Place::Dir(_) => 0,
        };
        let ctx_b = context(&b, "b");
        let (runs, seen, ls) = build(&b, &["--cache-from", &from, "--cache-to", &to], &ctx_b);
        assert_eq!((runs.len(), seen.as_str()), (1, "run-a\n"));
        assert_eq!(ls, "keep\nlast-a\nlog\n");
        let config = place.config(&b);
        let layers = config["mounts"][name]["layers"].as_array().unwrap().clone();
        assert_eq!(layers.len(), 2, "{config}");
        assert_eq!(layers[0]["digest"], full.as_str());
        let delta = layers[1]["digest"].as_str().unwrap();
        // Only what B changed: not `keep`; `last-a`'s deletion is a whiteout.
        assert_eq!(layer_names(&b, delta), ["last-b", "log", ".wh.last-a"]);
        if let Place::Registry(r) = &place {
            // A's layer crossed over once (B's restore) and was not sent back.
            let requests = &r.requests()[mark..];
            let gets = |d: &str| {
                requests
                    .iter()
                    .filter(|q| q.method == "GET" && q.path.ends_with(d))
                    .count()
            };
            assert_eq!(gets(&full), 1);
            let uploaded: Vec<&str> = requests
                .iter()
                .filter(|q| q.method == "PUT" && q.path.contains("/blobs/uploads/"))
                .filter_map(|q| q.path.split("digest=").nth(1))
                .collect();
            assert!(
                !uploaded.iter().any(|d| d.ends_with(&full[7..])),
                "{uploaded:?}"
            );
            assert!(
                uploaded.iter().any(|d| d.ends_with(&delta[7..])),
                "{uploaded:?}"
            );
        }

        // C imports both layers, in order.
        let c = runner(&base);
        let (_, seen, ls) = build(&c, &["--cache-from", &from], &context(&c, "c"));
        assert_eq!(seen, "run-a\nrun-b\n");
        assert_eq!(ls, "keep\nlast-b\nlog\n");

        // D builds what B built: every step hits, so no RUN restores the mount and no layer
        // of it crosses over.
        let d = runner(&base);
        let mark = match &place {
            Place::Registry(r) => r.requests().len(),
            Place::Dir(_) => 0,
        };
        let (runs, seen, _) = build(&d, &["--cache-from", &from], &context(&d, "b"));
        assert_eq!((runs.len(), seen.as_str()), (0, "run-a\n"));
        assert!(mount_dirs(&d).is_empty(), "{:?}", mount_dirs(&d));
        if let Place::Registry(r) = &place {
            let fetched: Vec<_> = r.requests()[mark..]
                .iter()
                .filter(|q| {
                    q.method == "GET" && (q.path.ends_with(&full) || q.path.ends_with(delta))
                })
                .map(|q| q.path.clone())
                .collect();
            assert!(fetched.is_empty(), "{fetched:?}");
        }

        // A local cache mount with content is never replaced by an imported one.
        let (_, seen, _) = build(&a, &["--cache-from", &from], &context(&a, "a2"));
        assert_eq!(seen, "run-a\n");
    }
}

/// A tar holding `entries` of (name, kind, link target or contents).
fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_size(0);
            h.set_link_name(data).unwrap();
            // set_path refuses `..`: write the raw name.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Rewrites the cache directory `dir` so that its mount `name` is the one layer `tar`.
fn plant_mount_layer(dir: &Path, name: &str, tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        fs_err::write(blobs.join(&digest[7..]), bytes).unwrap();
        digest
    };
    let read = |digest: &str| json(&fs_err::read(blobs.join(&digest[7..])).unwrap());
    let mut index = json(&fs_err::read(dir.join("index.json")).unwrap());
    let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read(manifest["config"]["digest"].as_str().unwrap());
    let digest = put(tar);
    config["mounts"][name]["layers"] = serde_json::json!([{
        "media_type": "application/vnd.oci.image.layer.v1.tar",
        "digest": digest,
        "size": tar.len(),
        "diff_id": digest,
    }]);
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config).into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = put(&manifest).into();
    index["manifests"][0]["size"] = manifest.len().into();
    fs_err::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn issue_11_3_a_hostile_cache_mount_layer_writes_nothing_outside_the_mount() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let clean = seed.dir().join("clean");
    let a = runner(&base);
    let to = format!("type=local,dest={},cache-mounts=true", clean.display());
    build(&a, &["--cache-to", &to], &context(&a, "a"));
    let config = Place::Dir(clean.clone()).config(&a);
    let name = config["mounts"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();

    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_owned();
    let layers = [
        tar_of(&[("../../../escaped", tar::EntryType::Regular, "x")]),
        tar_of(&[
            ("link", tar::EntryType::Symlink, &target),
            ("link/escaped", tar::EntryType::Regular, "x"),
        ]),
    ];
    for (i, layer) in layers.iter().enumerate() {
        let dir = seed.dir().join(format!("hostile-{i}"));
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&clean)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        plant_mount_layer(&dir, &name, layer);
        let r = runner(&base);
        let from = format!("type=local,src={}", dir.display());
        let out = r
            .command(["build", "--progress=plain", "--cache-from", &from])
            .arg(context(&r, "evil"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Refused (or clamped inside the mount): nothing lands outside it.
        assert!(!outside.path().join("escaped").exists(), "{stderr}");
        let root = r.root();
        for p in [
            root.join("escaped"),
            root.join("worker/escaped"),
            root.join("worker/cache-mounts/escaped"),
            r.dir().join("escaped"),
        ] {
            assert!(!p.exists(), "{} exists: {stderr}", p.display());
        }
        if i == 0 {
            // `..` is refused: the RUN fails and says why.
            assert!(!out.status.success());
            assert!(
                stderr.contains("failed to restore cache mount /cache from the imported cache")
                    && stderr.contains("path contains `..`"),
                "{stderr}"
            );
        } else {
            // The absolute symlink is followed inside the mount: the file lands below it.
            assert!(out.status.success(), "{stderr}");
            let mounts = mount_dirs(&r);
            assert_eq!(mounts.len(), 1);
            let clamped = mounts[0]
                .join(target.trim_start_matches('/'))
                .join("escaped");
            assert_eq!(fs_err::read_to_string(&clamped).unwrap(), "x");
        }
    }
}
