//! Issue 11 §3: a build cache shared through a registry (`--cache-to type=registry`,
//! `--cache-from type=registry`), fetched lazily, and imported results kept as local records.
//! Requests are counted at the registry, from its own access log.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::ci_cache::{metadata, project, runner, saved_base};
use crate::docker_registry::{DockerRegistry, Logged};
use crate::support::{TestEnv, misses, ran};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const STRATA_CACHE_CONFIG: &str = "application/vnd.strata.cache.config.v1+json";

/// `GET path` straight from the registry (plain HTTP/1.0, so that the test does not lean on
/// the client under test), as JSON.
fn get_json(host: &str, path: &str) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: \
         application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..at]);
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_slice(&response[at + 4..]).unwrap()
}

/// The manifest or index at `repo:tag`.
pub(crate) fn manifest_at(host: &str, repo: &str, tag: &str) -> serde_json::Value {
    get_json(host, &format!("/v2/{repo}/manifests/{tag}"))
}

/// The blob digests a registry request log shows fetched with `GET`, counted.
fn blob_gets(requests: &[Logged]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in requests {
        if r.method == "GET" && r.path.contains("/blobs/sha256:") {
            assert_eq!(r.status, 200, "{r:?}");
            *out.entry(r.path.rsplit('/').next().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    out
}

/// The layers (digests) of the image a build's `--metadata-file` names, in `env`'s store.
fn image_layers(env: &TestEnv, meta: &Path) -> Vec<String> {
    let digest = metadata(meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(env.root().join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// `strata build --progress=rawjson ARGS` in `env`: (events, stderr), asserting success.
fn build(env: &TestEnv, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = env
        .command(["build", "--progress=rawjson"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed: {stderr}");
    let events = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (events, stderr)
}

#[test]
fn issue_11_3_four_runners_share_one_registry_cache_and_fetch_only_what_they_need() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let registry = DockerRegistry::start_logged(tempfile::tempdir().unwrap());
    let cache = format!("type=registry,ref={}/cache/app:ci", registry.host());
    let cache_to = format!("{cache},mode=max");
    let runners: Vec<(TestEnv, PathBuf)> = (0..4)
        .map(|_| {
            let env = runner(&base);
            let ctx = project(&env);
            (env, ctx)
        })
        .collect();

    // Runner 1 fills the cache: every step runs; the missing tag is an empty cache, silently.
    let (one, ctx1) = &runners[0];
    let (events, stderr) = build(
        one,
        &[
            "--cache-from",
            &cache,
            "--cache-to",
            &cache_to,
            ctx1.to_str().unwrap(),
        ],
    );
    assert_eq!(ran(&events).len(), 5, "{:?}", ran(&events));
    assert!(!stderr.contains("WARNING"), "{stderr}");
    // BuildKit's shape: an OCI index whose entries are the blobs, the strata config last.
    let index = manifest_at(&registry.host(), "cache/app", "ci");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.last().unwrap()["mediaType"], STRATA_CACHE_CONFIG);
    let config = entries.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let cached_layers: Vec<String> = entries
        .iter()
        .filter(|e| e["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd")
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    // mode=max: the build stage's layers too (WORKDIR, COPY src/, RUN; COPY --from, COPY).
    assert_eq!(cached_layers.len(), 5, "{index}");

    // Runners 2-4 at once, fresh roots: every step is a hit.
    let mark = registry.requests().len();
    let results: Vec<(Vec<serde_json::Value>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = runners[1..]
            .iter()
            .map(|(env, ctx)| {
                let cache = &cache;
                s.spawn(move || {
                    let meta = env.dir().join("meta.json");
                    let (events, stderr) = build(
                        env,
                        &[
                            "--cache-from",
                            cache,
                            "--metadata-file",
                            meta.to_str().unwrap(),
                            ctx.to_str().unwrap(),
                        ],
                    );
                    assert!(!stderr.contains("WARNING"), "{stderr}");
                    (events, image_layers(env, &meta))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (events, _)) in results.iter().enumerate() {
        assert!(
            ran(events).is_empty(),
            "runner {} ran {:?}",
            i + 2,
            ran(events)
        );
    }
    // Each runner fetched the cache config and the two layers its image adds to the base,
    // once: each of these three blobs was downloaded three times, and nothing else was, so no
    // runner downloaded a build-stage layer (nor a selection list).
    let requests = registry.requests()[mark..].to_vec();
    let image = &results[0].1;
    assert_eq!(image.len(), 3, "base, COPY --from, COPY config.txt");
    for (_, layers) in &results {
        assert_eq!(layers, image, "the runners built one image");
    }
    let mut expected = BTreeMap::new();
    for digest in std::iter::once(&config).chain(&image[1..]) {
        expected.insert(digest.clone(), 3);
    }
    assert_eq!(blob_gets(&requests), expected, "{requests:#?}");
    let build_stage: Vec<&String> = cached_layers
        .iter()
        .filter(|l| !image.contains(l))
        .collect();
    assert_eq!(
        build_stage.len(),
        3,
        "WORKDIR, COPY src/, RUN were cached but not fetched"
    );
    // Nothing was written (no --cache-to), and the manifest was read once per runner.
    assert!(requests.iter().all(|r| r.method == "GET"), "{requests:#?}");
    let manifest_gets = requests
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 3);

    // One source edit on every runner at once: each runs exactly the steps that depend on it.
    let mark = registry.requests().len();
    let ran_after_edit: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = runners
            .iter()
            .map(|(env, ctx)| {
                let cache = &cache;
                s.spawn(move || {
                    fs_err::write(ctx.join("src/a.c"), "int a = 2;\n").unwrap();
                    let (events, _) = build(env, &["--cache-from", cache, ctx.to_str().unwrap()]);
                    ran(&events)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, steps) in ran_after_edit.iter().enumerate() {
        assert_eq!(
            steps,
            &vec![
                "[build 3/4] COPY src/ ./".to_owned(),
                "[build 4/4] RUN cat a.c b.c > /app.bin".to_owned(),
                "[stage-1 2/3] COPY --from=build /app.bin /usr/local/bin/app".to_owned(),
                "[stage-1 3/3] COPY config.txt /etc/app.conf".to_owned(),
            ],
            "runner {}",
            i + 1
        );
    }
    // Runners 2-4 now needed the build stage's WORKDIR layer (the edited COPY runs on it), and
    // only that; runner 1 had everything.
    let gets = blob_gets(&registry.requests()[mark..]);
    assert_eq!(gets.len(), 1, "{gets:?}");
    let (workdir, times) = gets.into_iter().next().unwrap();
    assert!(build_stage.contains(&&workdir), "{workdir}");
    assert_eq!(times, 3);

    // Runner 2 exports the edited build: it merges with what the tag holds (the old records
    // stay) and uploads only blobs the repository lacks; nothing already listed is sent.
    let (two, ctx2) = &runners[1];
    let mark = registry.requests().len();
    build(
        two,
        &[
            "--cache-from",
            &cache,
            "--cache-to",
            &cache_to,
            ctx2.to_str().unwrap(),
        ],
    );
    let uploaded: Vec<String> = registry.requests()[mark..]
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .filter_map(|r| {
            r.path
                .split("digest=")
                .nth(1)
                .map(|d| d.replace("%3A", ":"))
        })
        .collect();
    let before: Vec<String> = entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    assert!(!uploaded.is_empty());
    for digest in &uploaded {
        assert!(!before.contains(digest), "{digest} was uploaded again");
    }
    let after = manifest_at(&registry.host(), "cache/app", "ci");
    let after: Vec<&str> = after["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd")
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    for layer in &cached_layers {
        assert!(after.contains(&layer.as_str()), "{layer} was dropped");
    }
    // The old records and the edited ones, the build stage's included (mode=max), though this
    // build hit COPY --from and did not need them: runner 2 made them in its edited build.
    let index = manifest_at(&registry.host(), "cache/app", "ci");
    let config = index["manifests"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = get_json(&registry.host(), &format!("/v2/cache/app/blobs/{config}"));
    let mut per_step: BTreeMap<&str, usize> = BTreeMap::new();
    for record in config["records"].as_object().unwrap().values() {
        *per_step
            .entry(record["step"]["description"].as_str().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_step,
        BTreeMap::from([
            ("[build 2/4] WORKDIR /src", 1),
            ("[build 3/4] COPY src/ ./", 2),
            ("[build 4/4] RUN cat a.c b.c > /app.bin", 2),
            (
                "[stage-1 2/3] COPY --from=build /app.bin /usr/local/bin/app",
                2
            ),
            ("[stage-1 3/3] COPY config.txt /etc/app.conf", 2),
        ])
    );
}

/// As BuildKit: what a `--cache-from` imported is a local record afterwards, so the runner's
/// next build hits with no `--cache-from` at all, the cache gone (the directory removed, the
/// registry stopped).
#[test]
fn issue_11_3_imported_results_become_local_records() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let dir = seed.dir().join("shared-cache");
    for use_registry in [false, true] {
        let registry =
            use_registry.then(|| DockerRegistry::start_logged(tempfile::tempdir().unwrap()));
        let (from, to) = match &registry {
            Some(r) => {
                let cache = format!("type=registry,ref={}/cache/keep:1", r.host());
                (cache.clone(), cache)
            }
            None => (
                format!("type=local,src={}", dir.display()),
                format!("type=local,dest={}", dir.display()),
            ),
        };
        let a = runner(&base);
        let ctx = project(&a);
        build(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);

        let b = runner(&base);
        let ctx = project(&b);
        let (events, _) = build(&b, &["--cache-from", &from, ctx.to_str().unwrap()]);
        assert!(ran(&events).is_empty(), "{from}: {:?}", ran(&events));
        // The cache goes away: the registry stops, the directory is removed.
        drop(registry);
        if !use_registry {
            fs_err::remove_dir_all(&dir).unwrap();
        }
        let (events, stderr) = build(&b, &[ctx.to_str().unwrap()]);
        assert!(ran(&events).is_empty(), "{from}: {:?}", ran(&events));
        assert!(!stderr.contains("WARNING"), "{stderr}");
    }
}

/// A ref that holds an image (or a BuildKit cache) is not a strata cache: `--cache-from`
/// warns and builds without it, `--cache-to` replaces it; `image-manifest=true` tags an OCI
/// manifest that a later `--cache-from` reads the same way, `--explain` included.
#[test]
fn issue_11_3_a_ref_that_is_not_a_strata_cache_is_a_warning_and_is_replaced() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let registry = DockerRegistry::start_logged(tempfile::tempdir().unwrap());
    let remote = format!("{}/cache/img:1", registry.host());
    seed.ok(["tag", "base:latest", &remote]);
    seed.ok(["push", &remote]);
    let cache = format!("type=registry,ref={remote}");

    let a = runner(&base);
    let ctx = project(&a);
    let (events, stderr) = build(
        &a,
        &[
            "--cache-from",
            &cache,
            "--cache-to",
            &format!("{cache},image-manifest=true"),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(ran(&events).len(), 5, "{:?}", ran(&events));
    assert!(
        stderr.contains(&format!(
            "WARNING: failed to import the cache from {remote}: {remote} is not a valid strata \
             cache: its config is \"application/vnd.oci.image.config.v1+json\", not a strata \
             cache config (an image?)"
        )),
        "{stderr}"
    );
    let manifest = manifest_at(&registry.host(), "cache/img", "1");
    assert_eq!(manifest["artifactType"], "application/vnd.strata.cache.v1");
    assert_eq!(manifest["config"]["mediaType"], STRATA_CACHE_CONFIG);

    let b = runner(&base);
    let ctx = project(&b);
    let (events, stderr) = build(&b, &["--cache-from", &cache, ctx.to_str().unwrap()]);
    assert!(ran(&events).is_empty(), "{:?}", ran(&events));
    assert!(!stderr.contains("WARNING"), "{stderr}");

    // A fresh runner with one file edited: --explain names it, from the file list the cache
    // carries (downloaded only now, as --explain asks for it).
    let c = runner(&base);
    let ctx = project(&c);
    fs_err::write(ctx.join("config.txt"), "debug=1\n").unwrap();
    let (events, _) = build(
        &c,
        &["--cache-from", &cache, "--explain", ctx.to_str().unwrap()],
    );
    assert_eq!(
        ran(&events),
        vec!["[stage-1 3/3] COPY config.txt /etc/app.conf"]
    );
    assert_eq!(
        misses(&events),
        vec!["source files changed: changed config.txt"]
    );
}
