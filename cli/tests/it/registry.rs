//! `pull`, `push`, `login` and `logout` against a real registry: Debian's `docker-registry`
//! (distribution 2.8), started by each test on a free 127.0.0.1 port with its own storage,
//! plain HTTP, optionally with htpasswd basic auth; skopeo checks what strata pushes and
//! pushes what strata pulls.

use crate::support::TestEnv;
use crate::token_server::{TOKEN_ISSUER, TOKEN_SERVICE, TokenServer};
use base64::Engine as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A `docker-registry` on 127.0.0.1 (the store's fixture), killed on drop.
pub(crate) struct Registry(crate::docker_registry::DockerRegistry);

impl Registry {
    /// A registry anyone may use.
    pub(crate) fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that wants `user`'s `password` (htpasswd, bcrypt).
    fn with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(basic: Option<(&str, &str)>) -> Registry {
        Registry::start_full(basic, None)
    }

    /// A registry over HTTPS with `cert` and `key` (PEM files), and with `client_ca`, one
    /// that wants a client certificate that CA signed.
    fn with_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Registry {
        Registry::start_full(None, Some((cert, key, client_ca)))
    }

    /// A registry that wants bearer tokens from `tokens` (docker's token auth).
    pub(crate) fn with_token_auth(tokens: &TokenServer) -> Registry {
        Registry::start_config(None, None, Some(tokens))
    }

    fn start_full(
        basic: Option<(&str, &str)>,
        tls: Option<(&Path, &Path, Option<&Path>)>,
    ) -> Registry {
        Registry::start_config(basic, tls, None)
    }

    fn start_config(
        basic: Option<(&str, &str)>,
        tls: Option<(&Path, &Path, Option<&Path>)>,
        tokens: Option<&TokenServer>,
    ) -> Registry {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut auth = String::new();
        if let Some(tokens) = tokens {
            auth.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                tokens.port,
                tokens.cert.display()
            ));
        }
        if let Some((cert, key, client_ca)) = tls {
            auth.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            if let Some(ca) = client_ca {
                auth.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
            }
        }
        if let Some((user, password)) = basic {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            fs_err::write(&file, &out.stdout).expect("write htpasswd");
            auth.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                file.display()
            ));
        }
        Registry(crate::docker_registry::DockerRegistry::start(dir, &auth))
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        self.0.host()
    }

    /// `127.0.0.1:PORT/name`.
    pub(crate) fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }
}

/// The `sha256:…` after `prefix` on a line of `out`.
pub(crate) fn digest_after(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
        .to_owned()
}

/// `strata inspect NAME`'s one object.
pub(crate) fn inspect(env: &TestEnv, name: &str) -> serde_json::Value {
    let out = env.ok(["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

/// Runs skopeo and asserts it succeeded.
pub(crate) fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn walkthrough_tag_push_rmi_pull_gives_the_same_digest() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let remote = registry.image("img");
    let id = inspect(&env, "img")["Id"].clone();
    env.ok(["tag", "img", &remote]);

    let pushed = env.ok(["push", &remote]);
    assert!(pushed.starts_with(&format!(
        "Using default tag: latest\nThe push refers to repository [{remote}]\n"
    )));
    assert!(pushed.contains(": Preparing\n"), "{pushed}");
    assert!(pushed.contains(": Pushed\n"), "{pushed}");
    let digest = digest_after(&pushed, "latest: digest: ");
    let size = pushed
        .lines()
        .last()
        .and_then(|l| l.rsplit_once(" size: "))
        .map(|(_, n)| n.to_owned())
        .expect("a size");
    assert!(size.parse::<u64>().expect("a number") > 0);
    let repo_digest = format!("{remote}@{digest}");
    assert_eq!(
        inspect(&env, &remote)["RepoDigests"],
        serde_json::json!([repo_digest])
    );

    // Pushed twice: the registry has every layer.
    let again = env.ok(["push", &remote]);
    assert!(again.contains(": Layer already exists\n"), "{again}");
    assert!(!again.contains(": Pushed\n"), "{again}");
    assert_eq!(digest_after(&again, "latest: digest: "), digest);

    env.ok(["rmi", &remote, "img"]);
    assert!(env.fails(["inspect", &remote]).contains("no such image"));

    let pulled = env.ok(["pull", &remote]);
    assert!(
        pulled.starts_with("Using default tag: latest\nlatest: Pulling from img\n"),
        "{pulled}"
    );
    for line in [
        ": Pulling fs layer\n",
        ": Download complete\n",
        ": Pull complete\n",
    ] {
        assert!(pulled.contains(line), "{line:?} in {pulled}");
    }
    assert!(pulled.ends_with(&format!(
        "Digest: {digest}\nStatus: Downloaded newer image for {remote}:latest\n{remote}:latest\n"
    )));
    let image = inspect(&env, &remote);
    assert_eq!(image["Id"], id);
    assert_eq!(image["RepoDigests"], serde_json::json!([repo_digest]));
    let images = env.ok(["images", "--digests"]);
    assert!(images.contains(&digest), "{images}");

    // Again: nothing to do.
    let up_to_date = env.ok(["pull", &format!("{remote}:latest")]);
    assert_eq!(
        up_to_date,
        format!(
            "latest: Pulling from img\nDigest: {digest}\nStatus: Image is up to date for {remote}:latest\n{remote}:latest\n"
        )
    );
    // By digest too.
    let by_digest = env.ok(["pull", "-q", &repo_digest]);
    assert_eq!(by_digest, format!("{repo_digest}\n"));
    env.ok(["system", "check"]);
}

/// Each layer's `ID: Status` lines of a plain (not a terminal) pull, in order per layer, the
/// layers in the order they first appear; and the other lines.
fn per_layer(out: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut layers: Vec<(String, Vec<String>)> = Vec::new();
    let mut rest = Vec::new();
    for line in out.lines() {
        match line.split_once(": ") {
            Some((id, status)) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                match layers.iter_mut().find(|(i, _)| i == id) {
                    Some((_, s)) => s.push(status.to_owned()),
                    None => layers.push((id.to_owned(), vec![status.to_owned()])),
                }
            }
            _ => rest.push(line.to_owned()),
        }
    }
    (layers, rest)
}

#[test]
fn a_pull_of_layers_the_store_has_downloads_nothing() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let remote = registry.image("copy:1");
    env.ok(["tag", "img", &remote]);
    env.ok(["push", &remote]);
    env.ok(["rmi", &remote]); // the image stays: `img` names it
    let pulled = env.ok(["pull", &remote]);
    // `import` stored the blob, not its snapshot: no download, one unpack.
    let (layers, _) = per_layer(&pulled);
    let statuses: Vec<&[String]> = layers.iter().map(|(_, s)| &s[..]).collect();
    assert_eq!(
        statuses,
        [["Download complete", "Pull complete"]],
        "{pulled}"
    );
    assert!(pulled.contains(&format!("Status: Downloaded newer image for {remote}\n")));
    // Now blob and snapshot are there.
    env.ok(["rmi", &remote]);
    let (layers, _) = per_layer(&env.ok(["pull", &remote]));
    assert_eq!(layers[0].1, ["Already exists"]);
}

#[test]
fn a_pull_unpacks_what_it_downloads_in_dockers_lines_and_a_run_uses_those_snapshots() {
    let registry = Registry::start();
    let source = TestEnv::with_base("img");
    let ctx = source.context(
        "two",
        &[
            ("Dockerfile", "FROM img\nCOPY hello.txt /hello.txt\n"),
            ("hello.txt", "hello from the second layer\n"),
        ],
    );
    source.ok([
        "build",
        "-q",
        "-t",
        "two",
        ctx.to_str().expect("a UTF-8 path"),
    ]);
    let base = registry.image("base:1");
    let two = registry.image("two:1");
    source.ok(["tag", "img", &base]);
    source.ok(["tag", "two", &two]);
    source.ok(["push", &base]);
    source.ok(["push", &two]);

    let env = TestEnv::new();
    env.ok(["pull", "-q", &base]);
    let pulled = env.ok(["pull", "--max-concurrent-downloads", "1", &two]);
    let (layers, rest) = per_layer(&pulled);
    let statuses: Vec<Vec<&str>> = layers
        .iter()
        .map(|(_, s)| s.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        statuses,
        [
            vec!["Already exists"],
            vec![
                "Pulling fs layer",
                "Verifying Checksum",
                "Download complete",
                "Pull complete"
            ],
        ],
        "{pulled}"
    );
    let digest = digest_after(&pulled, "Digest: ");
    assert_eq!(
        rest,
        [
            "1: Pulling from two".to_owned(),
            format!("Digest: {digest}"),
            format!("Status: Downloaded newer image for {two}"),
            two.clone(),
        ]
    );

    // Both layers were unpacked by the pull; `run` stacks those, unpacking nothing more.
    let snapshots = env.root().join("snapshots");
    let listed = || {
        let mut names: Vec<(String, u64)> = fs_err::read_dir(&snapshots)
            .expect("list snapshots")
            .map(|e| {
                let e = e.expect("a snapshot");
                let ino = std::os::unix::fs::MetadataExt::ino(&e.metadata().expect("stat"));
                (e.file_name().to_string_lossy().into_owned(), ino)
            })
            .collect();
        names.sort();
        names
    };
    let after_pull = listed();
    assert_eq!(after_pull.len(), 2, "{after_pull:?}");
    let ran = env.ok(["run", "--rm", &two, "cat", "/hello.txt"]);
    assert_eq!(ran, "hello from the second layer\n");
    assert_eq!(listed(), after_pull);

    // -q: the reference alone.
    env.ok(["rmi", &two]);
    assert_eq!(env.ok(["pull", "-q", &two]), format!("{two}\n"));
    env.ok(["system", "check"]);
}

#[test]
fn pull_all_tags_gets_every_tag_of_the_repository() {
    let registry = Registry::start();
    let source = TestEnv::with_base("img");
    let repo = registry.image("three");
    for tag in ["a", "b", "c"] {
        source.ok(["tag", "img", &format!("{repo}:{tag}")]);
    }
    let pushed = source.ok(["push", "--all-tags", &repo]);
    for tag in ["a", "b", "c"] {
        assert!(
            pushed.contains(&format!("{tag}: digest: sha256:")),
            "{pushed}"
        );
    }

    let env = TestEnv::new();
    let out = env.ok(["pull", "-a", &repo]);
    let digest = digest_after(&pushed, "a: digest: ");
    for tag in ["a", "b", "c"] {
        // Each tag: its lines, then its digest (docker's order).
        let from = out
            .find(&format!("{tag}: Pulling from three\n"))
            .unwrap_or_else(|| panic!("no {tag} in {out}"));
        assert!(
            out[from..].contains(&format!("\nDigest: {digest}\n")),
            "{out}"
        );
    }
    assert!(out.ends_with(&format!(
        "Status: Downloaded newer image for {repo}\n{repo}\n"
    )));
    let images = env.ok(["images", "--format", "json"]);
    let tags: Vec<String> = images
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|v| v["Tag"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(tags.len(), 3, "{images}");
    for tag in ["a", "b", "c"] {
        assert!(tags.iter().any(|t| t == tag), "{images}");
    }
}

#[test]
fn skopeo_reads_what_strata_pushes() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let remote = registry.image("for-skopeo:v1");
    env.ok(["tag", "img", &remote]);
    let digest = digest_after(&env.ok(["push", &remote]), "v1: digest: ");
    let oci = env.dir().join("oci");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{remote}"),
        &format!("oci:{}:v1", oci.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(oci.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
}

/// Writes `bytes` as a blob of the OCI layout `dir`; returns its descriptor.
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    let path = dir.join("blobs/sha256").join(&hex);
    fs_err::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs_err::write(&path, bytes).expect("write a blob");
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// An OCI layout with one multi-platform index, `multi`: a one-layer image for each of
/// linux/amd64 and linux/arm64, whose one file `/arch` says which.
fn multi_platform_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("multi-layout");
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(arch.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "arch", arch.as_bytes())
            .expect("append to the tar");
        let layer = tar.into_inner().expect("finish the tar");
        let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer)));
        let layer = put_blob(&layout, "application/vnd.oci.image.layer.v1.tar", &layer);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/arch"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let config = put_blob(
            &layout,
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).expect("json"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer],
        });
        let mut desc = put_blob(
            &layout,
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        manifests.push(desc);
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut desc = put_blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).expect("json"),
    );
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multi"});
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    fs_err::write(layout.join("index.json"), top.to_string()).expect("write index.json");
    fs_err::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    layout
}

#[test]
fn a_multi_platform_index_pushed_by_skopeo_pulls_as_the_platform_asked_for() {
    let registry = Registry::start();
    let env = TestEnv::new();
    let layout = multi_platform_layout(env.dir());
    let remote = registry.image("multi:1");
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{remote}"),
    ]);

    let out = env.ok(["pull", &remote]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let amd64 = inspect(&env, &remote);
    assert_eq!(amd64["Architecture"], "amd64");
    // The repo digest is the index's, as docker shows it; the image is the amd64 manifest.
    let index_digest = digest_after(&out, "Digest: ");
    assert_eq!(
        amd64["RepoDigests"],
        serde_json::json!([format!("{}@{index_digest}", registry.image("multi"))])
    );
    let images = env.ok(["images", "--digests", "--format", "json"]);
    assert!(
        images.contains(&format!("\"Digest\":\"{index_digest}\"")),
        "{images}"
    );

    let arm = TestEnv::new();
    arm.ok(["pull", "--platform", "linux/arm64", &remote]);
    assert_eq!(inspect(&arm, &remote)["Architecture"], "arm64");

    // An image that is not an index must be for the platform asked for.
    let single = registry.image("single:1");
    arm.ok(["tag", &remote, &single]);
    arm.ok(["push", &single]);
    let err = env.fails(["pull", "--platform", "linux/amd64", &single]);
    assert!(
        err.contains(&format!(
            "image with reference {single} was found but does not match the specified platform: wanted linux/amd64, actual: linux/arm64"
        )),
        "{err}"
    );
    let out = env
        .command(["pull", "-q", &single])
        .output()
        .expect("run strata");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "WARNING: The requested image's platform (linux/arm64) does not match the detected host platform"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let none = arm.fails(["pull", "--platform", "linux/s390x", &remote]);
    assert!(
        none.contains(&format!(
            "{remote} has no image for linux/s390x (it has: linux/amd64, linux/arm64)"
        )),
        "{none}"
    );
}

#[test]
fn a_missing_image_fails_clearly_and_leaves_the_store_as_it_was() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    // Each image without `CreatedSince` ("Less than a second ago"), which moves on by itself.
    let listing = || {
        env.ok(["images", "--digests", "--no-trunc", "--format", "json"])
            .lines()
            .map(|l| {
                let mut image: serde_json::Value = serde_json::from_str(l).expect("json");
                image["CreatedSince"].take();
                image
            })
            .collect::<Vec<_>>()
    };
    let before = listing();
    let missing = registry.image("nothing:here");
    let err = env.fails(["pull", &missing]);
    assert!(
        err.starts_with(&format!(
            "error: failed to pull {missing}\ncaused by: manifest for {missing} not found on {}\n",
            registry.host()
        )),
        "{err}"
    );
    assert_eq!(listing(), before);
    env.ok(["system", "check"]);

    let err = env.fails(["push", &registry.image("not-in-the-store")]);
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {}",
            registry.image("not-in-the-store")
        )),
        "{err}"
    );
}

#[test]
fn basic_auth_needs_a_login_and_login_writes_dockers_config() {
    let registry = Registry::with_basic_auth("alice", "s3cret");
    let env = TestEnv::with_base("img");
    let docker_config = env.dir().join("docker");
    let remote = registry.image("private:1");
    env.ok(["tag", "img", &remote]);
    let strata = |args: &[&str]| {
        let mut c = env.command(args);
        c.env("DOCKER_CONFIG", &docker_config);
        c
    };

    let out = strata(&["push", &remote]).output().expect("run strata");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "caused by: {} refused to let us push {remote}: authentication required",
            registry.host()
        )),
        "{err}"
    );

    let login = |password: &str| {
        let mut c = strata(&["login", &registry.host(), "-u", "alice", "--password-stdin"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run strata login");
        std::io::Write::write_all(
            child.stdin.as_mut().expect("stdin"),
            format!("{password}\n").as_bytes(),
        )
        .expect("write the password");
        child.wait_with_output().expect("wait for strata login")
    };
    let wrong = login("wrong");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(!docker_config.join("config.json").exists());

    let right = login("s3cret");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&right.stdout), "Login Succeeded\n");
    let config_file = docker_config.join("config.json");
    let mode = fs_err::metadata(&config_file)
        .expect("config.json")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let out = strata(&["push", &remote]).output().expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = TestEnv::new();
    let mut pull = fresh.command(["pull", "-q", &remote]);
    let out = pull
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = strata(&["logout", &registry.host()])
        .output()
        .expect("run strata");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {}\n", registry.host())
    );
    let out = strata(&["logout", &registry.host()])
        .output()
        .expect("run strata");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Not logged in to {}\n", registry.host())
    );
}

#[test]
fn build_pulls_a_from_image_the_store_lacks() {
    let registry = Registry::start();
    let source = TestEnv::with_base("img");
    let remote = registry.image("base:1");
    source.ok(["tag", "img", &remote]);
    source.ok(["push", &remote]);

    let env = TestEnv::new();
    let dockerfile = format!("FROM {remote}\nENV FROM_REGISTRY=yes\n");
    let ctx = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    env.ok([
        "build",
        "-q",
        "-t",
        "app:1",
        ctx.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(
        inspect(&env, &remote)["Id"],
        inspect(&source, &remote)["Id"]
    );
    let env_list = inspect(&env, "app:1")["Config"]["Env"].clone();
    assert!(
        env_list
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "FROM_REGISTRY=yes")),
        "{env_list}"
    );
}

#[test]
fn build_pull_takes_the_newer_image_the_registry_has_and_without_it_the_stores() {
    let registry = Registry::start();
    let source = TestEnv::with_base("img");
    let remote = registry.image("base:1");
    let publish = |marker: &str| {
        let ctx = source.context(
            &format!("base-{marker}"),
            &[("Dockerfile", &format!("FROM img\nENV BASE={marker}\n"))],
        );
        source.ok([
            "build",
            "-q",
            "-t",
            &remote,
            ctx.to_str().expect("utf-8 path"),
        ]);
        source.ok(["push", &remote]);
        inspect(&source, &remote)["Id"].clone()
    };
    let base_env = |env: &TestEnv| inspect(env, "app:1")["Config"]["Env"].to_string();
    let old = publish("old");

    let env = TestEnv::new();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM {remote}\nENV APP=1\n"))],
    );
    let ctx = ctx.to_str().expect("utf-8 path");
    env.ok(["build", "-q", "-t", "app:1", ctx]);
    assert_eq!(inspect(&env, &remote)["Id"], old);

    let new = publish("new");
    assert_ne!(new, old);
    // Without --pull the store's image is used, as docker does.
    env.ok(["build", "-q", "-t", "app:1", ctx]);
    assert!(base_env(&env).contains("BASE=old"), "{}", base_env(&env));
    // With --pull the registry's newer one.
    env.ok(["build", "-q", "--pull", "-t", "app:1", ctx]);
    assert_eq!(inspect(&env, &remote)["Id"], new);
    assert!(base_env(&env).contains("BASE=new"), "{}", base_env(&env));
}

#[test]
fn a_layer_in_another_repository_of_the_registry_is_mounted_not_sent() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let first = registry.image("first:1");
    let second = registry.image("team/second:1");
    env.ok(["tag", "img", &first]);
    env.ok(["tag", "img", &second]);
    let pushed = env.ok(["push", &first]);
    assert!(pushed.contains(": Pushed\n"), "{pushed}");
    let mounted = env.ok(["push", &second]);
    assert!(mounted.contains(": Mounted from first\n"), "{mounted}");
    assert!(!mounted.contains(": Pushed\n"), "{mounted}");
    assert_eq!(
        digest_after(&mounted, "1: digest: "),
        digest_after(&pushed, "1: digest: ")
    );
    // The mounted repository serves the image whole.
    let fresh = TestEnv::new();
    fresh.ok(["pull", "-q", &second]);
    fresh.ok(["system", "check"]);
}

/// A `docker-credential-fake` in `dir/bin` that keeps one login in `dir/creds` (docker's
/// helper protocol: `get` prints it, `store` writes it, `erase` removes it) and logs each call
/// and its input to `dir/calls`.
fn fake_credential_helper(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs_err::create_dir_all(&bin).expect("mkdir");
    let script = format!(
        "#!/bin/sh\nd={dir}\ninput=$(cat)\necho \"$1 $input\" >> \"$d/calls\"\ncase \"$1\" in\n  get) if [ -f \"$d/creds\" ]; then cat \"$d/creds\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  store) printf '%s' \"$input\" > \"$d/creds\" ;;\n  erase) rm -f \"$d/creds\" ;;\nesac\n",
        dir = dir.display()
    );
    let helper = bin.join("docker-credential-fake");
    fs_err::write(&helper, script).expect("write the helper");
    fs_err::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the helper");
    bin
}

#[test]
fn a_credential_helper_keeps_the_login_when_dockers_config_names_one() {
    let registry = Registry::with_basic_auth("bob", "hunter2");
    let env = TestEnv::with_base("img");
    let docker_config = env.dir().join("docker");
    fs_err::create_dir_all(&docker_config).expect("mkdir");
    fs_err::write(
        docker_config.join("config.json"),
        r#"{"credsStore":"fake"}"#,
    )
    .expect("write config.json");
    let helper_dir = env.dir().join("helper");
    let bin = fake_credential_helper(&helper_dir);
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let remote = registry.image("kept:1");
    env.ok(["tag", "img", &remote]);
    let strata = |args: &[&str], stdin: &str| {
        let mut c = env.command(args);
        c.env("DOCKER_CONFIG", &docker_config)
            .env("PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run strata");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for strata")
    };

    let login = strata(
        &["login", &registry.host(), "-u", "bob", "--password-stdin"],
        "hunter2\n",
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    // The helper has the password; the file only lists the login.
    let stored: serde_json::Value =
        serde_json::from_slice(&fs_err::read(helper_dir.join("creds")).expect("creds"))
            .expect("json");
    assert_eq!(
        stored,
        serde_json::json!({"ServerURL": registry.host(), "Username": "bob", "Secret": "hunter2"})
    );
    let config: serde_json::Value = serde_json::from_slice(
        &fs_err::read(docker_config.join("config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(
        config,
        serde_json::json!({"credsStore": "fake", "auths": {registry.host(): {}}})
    );

    let push = strata(&["push", &remote], "");
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let calls = fs_err::read_to_string(helper_dir.join("calls")).expect("calls");
    assert!(
        calls.contains(&format!("get {}\n", registry.host())),
        "{calls}"
    );

    let logout = strata(&["logout", &registry.host()], "");
    assert_eq!(
        String::from_utf8_lossy(&logout.stdout),
        format!("Removing login credentials for {}\n", registry.host())
    );
    assert!(!helper_dir.join("creds").exists());
    let push = strata(&["push", &remote], "");
    assert_eq!(push.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&push.stderr).contains("authentication required"),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
}

/// Runs openssl and asserts it succeeded.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The key options of every test key: a P-256 EC key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A test CA named `cn` in `pki` (`ca.crt`, `ca.key`), valid for two days.
pub(crate) fn test_ca(pki: &Path, cn: &str) {
    fs_err::create_dir_all(pki).expect("mkdir");
    openssl(
        pki,
        &[
            &["req", "-x509"][..],
            &EC_KEY,
            &[
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", cn,
            ],
        ]
        .concat(),
    );
}

/// `NAME.crt` and `NAME.key` in `pki`, for subject `cn` with the extensions `ext`, signed by
/// the [`test_ca`] there.
pub(crate) fn signed(pki: &Path, name: &str, cn: &str, ext: &str) {
    openssl(
        pki,
        &[
            &["req"][..],
            &EC_KEY,
            &[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                cn,
            ],
        ]
        .concat(),
    );
    fs_err::write(pki.join(format!("{name}.ext")), ext).expect("write ext");
    openssl(
        pki,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[test]
fn a_registry_with_a_certs_d_directory_is_spoken_to_over_tls_with_its_ca() {
    let env = TestEnv::with_base("img");
    let pki = env.dir().join("pki");
    test_ca(&pki, "/CN=strata test CA");
    signed(
        &pki,
        "srv",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\n",
    );
    let registry = Registry::with_tls(&pki.join("srv.crt"), &pki.join("srv.key"), None);
    let remote = registry.image("tls:1");
    env.ok(["tag", "img", &remote]);

    // Without a certs.d directory a loopback registry is plain HTTP: this one refuses that.
    let empty = env.dir().join("no-certs.d");
    fs_err::create_dir_all(&empty).expect("mkdir");
    let out = env
        .command(["push", &remote])
        .env("STRATA_CERTS_D", &empty)
        .output()
        .expect("run strata");
    assert_eq!(out.status.code(), Some(1));

    // With its CA in certs.d/127.0.0.1:PORT/ca.crt: HTTPS, verified.
    let certs_d = env.dir().join("certs.d");
    let dir = certs_d.join(registry.host());
    fs_err::create_dir_all(&dir).expect("mkdir");
    fs_err::copy(pki.join("ca.crt"), dir.join("ca.crt")).expect("copy ca.crt");
    let out = env
        .command(["push", &remote])
        .env("STRATA_CERTS_D", &certs_d)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = TestEnv::new();
    let out = fresh
        .command(["pull", "-q", &remote])
        .env("STRATA_CERTS_D", &certs_d)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another CA: the certificate is refused.
    let other = pki.join("other");
    test_ca(&other, "/CN=other CA");
    fs_err::copy(other.join("ca.crt"), dir.join("ca.crt")).expect("copy the other CA");
    let out = TestEnv::new()
        .command(["pull", &remote])
        .env("STRATA_CERTS_D", &certs_d)
        .output()
        .expect("run strata");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("failed to reach {}", registry.host()))
            && err.contains("invalid peer certificate: UnknownIssuer")
            && err.contains("hint: to trust a registry's own CA, put it in /etc/docker/certs.d/"),
        "{err}"
    );
}

#[test]
fn a_client_certificate_in_certs_d_is_presented_to_a_registry_that_wants_one() {
    let env = TestEnv::with_base("img");
    let pki = env.dir().join("pki");
    test_ca(&pki, "/CN=strata test CA");
    signed(
        &pki,
        "srv",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\n",
    );
    signed(
        &pki,
        "client",
        "/CN=strata",
        "extendedKeyUsage=clientAuth\n",
    );
    let registry = Registry::with_tls(
        &pki.join("srv.crt"),
        &pki.join("srv.key"),
        Some(&pki.join("ca.crt")),
    );
    let remote = registry.image("mtls:1");
    env.ok(["tag", "img", &remote]);
    let certs_d = env.dir().join("certs.d");
    let dir = certs_d.join(registry.host());
    fs_err::create_dir_all(&dir).expect("mkdir");
    fs_err::copy(pki.join("ca.crt"), dir.join("ca.crt")).expect("copy ca.crt");
    let push = || {
        env.command(["push", &remote])
            .env("STRATA_CERTS_D", &certs_d)
            .output()
            .expect("run strata")
    };
    // The CA alone is not enough: the registry wants a client certificate.
    assert_eq!(push().status.code(), Some(1));
    fs_err::copy(pki.join("client.crt"), dir.join("client.cert")).expect("copy client.cert");
    fs_err::copy(pki.join("client.key"), dir.join("client.key")).expect("copy client.key");
    let out = push();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn token_auth_gets_a_bearer_token_per_repository_with_the_users_credentials() {
    let tokens = TokenServer::start("carol", "t0ken-pw");
    let registry = Registry::with_token_auth(&tokens);
    let env = TestEnv::with_base("img");
    let docker_config = env.dir().join("docker");
    let remote = registry.image("team/app:1");
    env.ok(["tag", "img", &remote]);
    let strata = |args: &[&str]| {
        env.command(args)
            .env("DOCKER_CONFIG", &docker_config)
            .output()
            .expect("run strata")
    };

    // Anonymous: the token server grants nothing, the registry refuses the token.
    let out = strata(&["push", &remote]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} refused to let us push {remote}: authentication required",
            registry.host()
        )),
        "{err}"
    );

    // docker's config.json with the user's login: a token for this repository, pull and push.
    fs_err::create_dir_all(&docker_config).expect("mkdir");
    let auth = base64::engine::general_purpose::STANDARD.encode("carol:t0ken-pw");
    fs_err::write(
        docker_config.join("config.json"),
        serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .expect("write config.json");
    let out = strata(&["push", &remote]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tokens.requests().iter().any(
            |r| r.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
                && r.ends_with("authorized=true")
        ),
        "{:?}",
        tokens.requests()
    );
    let before = tokens.requests().len();
    let fresh = TestEnv::new();
    let out = fresh
        .command(["pull", &remote])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One pull: one token, reused for the manifest, the config and the layer.
    assert_eq!(
        tokens.requests().len(),
        before + 1,
        "{:?}",
        tokens.requests()
    );
}

/// An image with a 200 MB layer of random bytes: big enough that a push or pull of it over
/// loopback is still running 100 ms after it starts.
fn big_image(env: &TestEnv, tag: &str) {
    let ctx = env.context(
        "big",
        &[(
            "Dockerfile",
            "FROM img\nRUN dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null\n",
        )],
    );
    env.ok([
        "build",
        "-q",
        "-t",
        tag,
        ctx.to_str().expect("a UTF-8 path"),
    ]);
}

/// Starts `strata ARGS` and kills it with SIGKILL 100 ms later, asserting it was still running.
fn kill_midway(env: &TestEnv, args: &[&str]) {
    let mut child = env
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "strata {args:?} ended before it could be killed"
    );
    child.kill().expect("SIGKILL strata");
    child.wait().expect("reap strata");
}

#[test]
fn issue_11_kill_9_mid_pull_and_mid_push_leaves_a_sound_store_and_the_command_completes() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    big_image(&env, "big:1");
    let remote = registry.image("big:1");
    env.ok(["tag", "big:1", &remote]);

    // Mid-push: the registry has part of it at most; the store is untouched; pushing again
    // finishes the job.
    kill_midway(&env, &["push", &remote]);
    env.ok(["system", "check"]);
    let pushed = env.ok(["push", &remote]);
    let digest = digest_after(&pushed, "1: digest: ");

    // Mid-pull into a fresh store: nothing half-written is reachable, and the same pull then
    // gives the image with the digest the push printed.
    let other = TestEnv::new();
    kill_midway(&other, &["pull", &remote]);
    other.ok(["system", "check"]);
    assert!(other.fails(["inspect", &remote]).contains("no such image"));
    let pulled = other.ok(["pull", &remote]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    assert_eq!(inspect(&other, &remote)["Id"], inspect(&env, "big:1")["Id"]);
    other.ok(["system", "check"]);
}

/// `strata ARGS` on a pseudo-terminal of 120 columns (script(1), util-linux): what it drew.
fn on_a_terminal(env: &TestEnv, args: &[&str]) -> String {
    let mut line = format!(
        "stty cols 120 rows 40; exec {} --root {}",
        crate::support::strata_bin().display(),
        env.root().display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env_remove("STRATA_ROOT")
        .output()
        .expect("run script (util-linux)");
    let drawn = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{drawn}");
    drawn
}

#[test]
fn on_a_terminal_pull_redraws_one_line_per_layer_and_ends_with_dockers_lines() {
    let registry = Registry::start();
    let source = TestEnv::with_base("img");
    let remote = registry.image("tty:1");
    source.ok(["tag", "img", &remote]);
    source.ok(["push", &remote]);
    let env = TestEnv::new();
    let drawn = on_a_terminal(&env, &["pull", &remote]);
    // Lines are redrawn in place (cursor movement), not appended.
    assert!(drawn.contains("\u{1b}["), "{drawn:?}");
    // What stays on the screen: each line's last state, then docker's summary lines.
    // A line as long as the terminal is wide wraps (indicatif pads lines to the width).
    let text = ansi_to_lines(&drawn);
    let chars: Vec<Vec<char>> = text
        .split(['\r', '\n'])
        .map(|l| l.chars().collect())
        .collect();
    let rows: Vec<String> = chars
        .iter()
        .flat_map(|l| l.chunks(120).map(|row| row.iter().collect::<String>()))
        .collect();
    let screen: Vec<&str> = rows
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let digest = digest_after(&screen.join("\n"), "Digest: ");
    let tail = &screen[screen.len() - 4..];
    let (id, status) = tail[0].split_once(": ").expect("an ID: status line");
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{drawn:?}"
    );
    assert_eq!(
        (status, &tail[1..]),
        (
            "Pull complete",
            &[
                format!("Digest: {digest}").as_str(),
                format!("Status: Downloaded newer image for {remote}").as_str(),
                remote.as_str(),
            ][..]
        ),
        "{drawn:?}"
    );
}

/// `text` with each terminal control sequence (`ESC [ ... letter`, `ESC letter`) made a line
/// break (a redraw moves the cursor to a line's start).
fn ansi_to_lines(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        out.push('\n');
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Issue 15: a one-file edit's incremental COPY stores its layer pieced (the earlier layer's
/// unchanged entries as ranges of its blob, docs/STORE.md invariant 8). That image checks,
/// saves (the kernel copy of a layer of over 1 MiB, and streamed), pushes and pulls back with
/// the same digests, and keeps doing so once the image it came from is gone and every prune
/// has run: the earlier blob is kept for it.
#[test]
fn issue_15_a_pieced_layer_checks_saves_pushes_and_outlives_the_image_it_came_from() {
    let env = TestEnv::with_base("base:latest");
    let mut files = vec![(
        "Dockerfile".to_owned(),
        "FROM base\nCOPY . /app\n".to_owned(),
    )];
    for i in 0..300 {
        files.push((
            format!("src/f{i:03}.txt"),
            format!("file {i:03}\n").repeat(800),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = env.context("ctx", &refs);
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    fs_err::write(ctx.join("src/f150.txt"), "FILE 150\n".repeat(800)).unwrap();
    env.build_events(["-t", "t:2", c]);

    let hex = |l: &String| l.trim_start_matches("sha256:").to_owned();
    let first = hex(crate::build::layer_ids(&env, "t:1").last().unwrap());
    let layer = hex(crate::build::layer_ids(&env, "t:2").last().unwrap());
    assert_ne!(first, layer);
    let pieced = env.root().join("blobs/pieces").join(&layer);
    assert!(pieced.is_file(), "the edit's layer is stored pieced");
    assert!(!env.root().join("blobs/sha256").join(&layer).exists());
    // Its own bytes are about one entry's, not the 2.4 MB layer's.
    assert!(fs_err::metadata(&pieced).unwrap().len() < 64 << 10);
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));

    let saved = env.dir().join("before.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "t:2"]);
    let streamed = env.command(["save", "t:2"]).output().unwrap();
    assert!(streamed.status.success());
    let before = fs_err::read(&saved).unwrap();
    assert!(
        before == streamed.stdout,
        "save -o and save to stdout differ"
    );
    let member = saved_member(&before, &format!("blobs/sha256/{layer}"));
    assert_eq!(hex::encode(sha2::Sha256::digest(&member)), layer);

    // The image it came from is removed and every prune runs: the earlier blob stays, as
    // the pieced one reads from it.
    env.ok(["rmi", "t:1"]);
    env.ok(["builder", "prune", "-a", "-f"]);
    env.ok(["image", "prune", "-f"]);
    let id = inspect(&env, "t:2")["Id"].clone();
    assert!(pieced.is_file());
    assert!(env.root().join("blobs/sha256").join(&first).is_file());
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    let after = env.dir().join("after.tar");
    env.ok(["save", "-o", after.to_str().unwrap(), "t:2"]);
    assert!(
        fs_err::read(&after).unwrap() == before,
        "the save after the prunes differs"
    );

    // Pushed and pulled back into an empty store: the same image.
    let registry = Registry::start();
    let remote = registry.image("pieced");
    env.ok(["tag", "t:2", &remote]);
    let pushed = env.ok(["push", &remote]);
    let digest = digest_after(&pushed, "latest: digest: ");
    let other = TestEnv::new();
    let pulled = other.ok(["pull", &remote]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    assert_eq!(inspect(&other, &remote)["Id"], id);
    assert!(other.ok(["system", "check"]).ends_with(": ok\n"));
}

/// The bytes of the member `name` of the tar `archive`.
#[expect(clippy::unwrap_used, reason = "a test fails by panicking")]
fn saved_member(archive: &[u8], name: &str) -> Vec<u8> {
    use std::io::Read as _;
    let mut tar = tar::Archive::new(archive);
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("{name} is not in the archive");
}
