//! What a CI pipeline relies on: exporters other tools accept, a cache shared between
//! runners through a directory, reproducible digests, and `--explain`.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::{TestEnv, misses, ran};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// A base image saved once, so that several roots load the very same image (as CI runners
/// pulling one digest do).
pub(crate) fn saved_base(env: &TestEnv) -> std::path::PathBuf {
    let out = env.dir().join("base-saved.tar");
    env.ok([
        "save".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "base:latest".as_ref(),
    ]);
    out
}

/// A fresh runner: an empty root with the base image loaded.
pub(crate) fn runner(base: &Path) -> TestEnv {
    let env = TestEnv::new();
    env.ok(["load".as_ref(), "-i".as_ref(), base.as_os_str()]);
    env
}

pub(crate) fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap()
}

/// path → (mode, uid, gid, bytes or link target) of a directory tree.
fn tree(root: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs_err::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs_err::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let data = if m.is_symlink() {
                fs_err::read_link(&p)
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes()
            } else if m.is_file() {
                fs_err::read(&p).unwrap()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(rel, (m.mode(), m.uid(), m.gid(), data));
        }
    }
    out
}

pub(crate) fn project(env: &TestEnv) -> std::path::PathBuf {
    let ctx = env.context(
        "project",
        &[
            (
                "Dockerfile",
                "FROM base AS build\nWORKDIR /src\nCOPY src/ ./\nRUN cat a.c b.c > /app.bin\n\n\
                 FROM base\nCOPY --from=build /app.bin /usr/local/bin/app\nCOPY config.txt /etc/app.conf\n\
                 CMD [\"cat\", \"/usr/local/bin/app\"]\n",
            ),
            ("src/a.c", "int a;\n"),
            ("src/b.c", "int b;\n"),
            ("config.txt", "debug=0\n"),
        ],
    );
    fs_err::set_permissions(
        ctx.join("config.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    ctx
}

#[test]
fn every_exporter_writes_what_its_tool_reads() {
    let env = TestEnv::with_base("base:latest");
    let ctx = project(&env);
    let c = ctx.to_str().unwrap();
    let d = env.dir();
    let (oci, docker, fs_tar, local, meta) = (
        d.join("oci.tar"),
        d.join("docker.tar"),
        d.join("fs.tar"),
        d.join("rootfs"),
        d.join("meta.json"),
    );
    env.ok([
        "build",
        "-q",
        "-t",
        "app:1",
        "--output",
        &format!("type=oci,dest={}", oci.display()),
        "--output",
        &format!("type=docker,dest={}", docker.display()),
        "--output",
        &format!("type=tar,dest={}", fs_tar.display()),
        "-o",
        local.to_str().unwrap(),
        "--metadata-file",
        meta.to_str().unwrap(),
        c,
    ]);

    // The metadata names the image the store holds.
    let meta = metadata(&meta);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "app:1"])).unwrap();
    assert_eq!(meta["containerimage.config.digest"], inspect[0]["Id"]);
    assert_eq!(meta["image.name"], "docker.io/library/app:1");
    assert_eq!(meta["strata.cache"]["executed"], 5);

    // skopeo reads the OCI layout and the docker archive, and sees that same manifest.
    for (transport, file) in [("oci-archive", &oci), ("docker-archive", &docker)] {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", &format!("{transport}:{}", file.display())])
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // base, COPY --from=build, COPY config.txt
        assert_eq!(v["Layers"].as_array().unwrap().len(), 3, "{transport}: {v}");
        if transport == "oci-archive" {
            assert_eq!(v["Digest"], meta["containerimage.digest"]);
        }
    }

    // type=local: the final filesystem, file by file.
    let files = tree(&local);
    assert_eq!(files["usr/local/bin/app"].3, b"int a;\nint b;\n");
    let conf = &files["etc/app.conf"];
    assert_eq!(
        (conf.0 & 0o7777, conf.1, conf.2, conf.3.as_slice()),
        (0o640, 0, 0, &b"debug=0\n"[..])
    );
    assert_eq!(files["bin/sh"].3, b"busybox");
    assert!(
        !files.contains_key("src"),
        "the build stage leaked into the image"
    );

    // type=tar: the same tree as type=local.
    let unpacked = d.join("from-tar");
    fs_err::create_dir(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .args([
            "-xpf",
            fs_tar.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
            "--numeric-owner",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(tree(&unpacked), files);
}

#[test]
fn two_clean_builds_with_source_date_epoch_give_one_digest() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let mut digests = Vec::new();
    for _ in 0..2 {
        let env = runner(&base);
        let ctx = project(&env);
        let meta = env.dir().join("meta.json");
        let out = env
            .command([
                "build",
                "-q",
                "--metadata-file",
                meta.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        digests.push(metadata(&meta)["containerimage.digest"].clone());
        // Different mtimes on the next runner's context must not matter.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1]);
    assert!(digests[0].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn a_second_runner_reuses_the_first_runner_s_cache_and_explains_a_change() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let cache = seed.dir().join("shared-cache");
    let cache_to = format!("type=local,dest={}", cache.display());
    let cache_from = format!("type=local,src={}", cache.display());

    // Runner A: cold build, exports its cache (min: the final image's steps).
    let a = runner(&base);
    let ctx = project(&a);
    let a_meta = a.dir().join("meta.json");
    a.ok([
        "build",
        "-q",
        "--cache-to",
        &cache_to,
        "--metadata-file",
        a_meta.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let a_meta = metadata(&a_meta);

    // The cache is an OCI layout any OCI tool reads.
    let out = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci:{}:strata-cache", cache.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.strata.cache.v1");

    // Runner B: a fresh root, the same sources elsewhere. Every step the image needs is a
    // hit; the build stage is not built at all, and its layers never reach B's store.
    let b = runner(&base);
    let ctx_b = project(&b);
    let b_meta = b.dir().join("meta.json");
    let events = b.build_events([
        "--cache-from",
        &cache_from,
        "--explain",
        "--metadata-file",
        b_meta.to_str().unwrap(),
        ctx_b.to_str().unwrap(),
    ]);
    assert!(ran(&events).is_empty(), "runner B ran {:?}", ran(&events));
    let b_meta = metadata(&b_meta);
    // The same image (ID = config digest); its layers came through the cache zstd-compressed,
    // so B's manifest names other blobs than A's uncompressed ones.
    assert_eq!(
        b_meta["containerimage.config.digest"],
        a_meta["containerimage.config.digest"]
    );
    assert_eq!(b_meta["strata.cache"]["cached"], 2);
    let blobs = fs_err::read_dir(b.root().join("blobs/sha256"))
        .unwrap()
        .count();
    // The base (layer, config, manifest), the two new layers, the new config and manifest.
    assert_eq!(blobs, 7, "runner B fetched more than the image needs");

    // One source file changes on B: exactly the steps that read it run, and --explain says
    // which file.
    fs_err::write(ctx_b.join("config.txt"), "debug=1\n").unwrap();
    let events = b.build_events([
        "--cache-from",
        &cache_from,
        "--explain",
        ctx_b.to_str().unwrap(),
    ]);
    assert_eq!(
        ran(&events),
        vec!["[stage-1 3/3] COPY config.txt /etc/app.conf"]
    );
    assert_eq!(
        misses(&events),
        vec!["source files changed: changed config.txt"]
    );
}

#[test]
fn two_runners_export_into_one_cache_dir_at_once_and_both_are_kept() {
    let seed = TestEnv::with_base("base:latest");
    let base = saved_base(&seed);
    let cache = seed.dir().join("shared-cache");
    let cache_to = format!("type=local,dest={},mode=max", cache.display());
    let runners: Vec<(TestEnv, std::path::PathBuf)> = ["x", "y"]
        .iter()
        .map(|n| {
            let env = runner(&base);
            let ctx = env.context(
                n,
                &[("Dockerfile", &format!("FROM base\nRUN echo {n} > /{n}\n"))],
            );
            (env, ctx)
        })
        .collect();
    let children: Vec<_> = runners
        .iter()
        .map(|(env, ctx)| {
            env.command([
                "build",
                "-q",
                "--cache-to",
                &cache_to,
                ctx.to_str().unwrap(),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // A third runner hits both builds from the merged directory.
    let z = runner(&base);
    for (_, ctx) in &runners {
        let name = ctx.file_name().unwrap().to_str().unwrap();
        let copy = z.context(
            name,
            &[(
                "Dockerfile",
                &fs_err::read_to_string(ctx.join("Dockerfile")).unwrap(),
            )],
        );
        let events = z.build_events([
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
            copy.to_str().unwrap(),
        ]);
        assert!(ran(&events).is_empty(), "{name}: {:?}", ran(&events));
    }
}
