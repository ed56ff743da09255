//! `search`, `manifest inspect` and `build --push` against `docker-registry` (the fixture of
//! `registry.rs`), and a stub registry without a catalog.

use crate::registry::{Registry, digest_after, inspect};
use crate::support::TestEnv;
use sha2::Digest as _;
use std::io::{Read, Write};
use std::net::TcpListener;

/// Runs strata, asserts success, returns (stdout, stderr).
fn run_ok(env: &TestEnv, args: &[&str]) -> (String, String) {
    let out = env.command(args).output().expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "strata {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8"), stderr)
}

/// JSON without the whitespace between tokens (undoes the indenting of a compact document).
fn compact(json: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn search_lists_the_catalog_filtered_limited_and_formatted() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    for name in ["app/one:1", "app/two:1", "other:1"] {
        let remote = registry.image(name);
        env.ok(["tag", "img", &remote]);
        env.ok(["push", "-q", &remote]);
    }
    let one = registry.image("app/one");
    let two = registry.image("app/two");
    let term = registry.image("app");

    let table = env.ok(["search", &term]);
    let w = one.len() + 3;
    assert_eq!(
        table,
        format!(
            "{:<w$}{:<14}{:<10}OFFICIAL\n{one:<w$}{:<14}0\n{two:<w$}{:<14}0\n",
            "NAME", "DESCRIPTION", "STARS", "", ""
        )
    );
    let limited = env.ok(["search", "--limit", "1", "--format", "{{.Name}}", &term]);
    assert_eq!(limited, format!("{one}\n"));
    let formatted = env.ok([
        "search",
        "--format",
        "{{.Name}}: {{.StarCount}} [{{.IsOfficial}}]",
        &registry.image("OTHER"),
    ]);
    assert_eq!(formatted, format!("{}: 0 []\n", registry.image("other")));
    let named = env.ok(["search", "--format", "table {{.Name}}", &term]);
    assert_eq!(named, format!("NAME\n{one}\n{two}\n"));

    assert!(
        env.fails(["search", "--limit", "0", &term])
            .contains("error: limit 0 is outside the range of [1, 100]")
    );
    assert!(
        env.fails(["search", "--format", "{{.Stars}}", &term])
            .contains("invalid --format placeholder {{.Stars}}")
    );
}

/// A registry on 127.0.0.1 that answers 404 to everything, as one without a catalog does.
fn stub_without_catalog() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn search_says_when_a_registry_has_no_catalog_and_that_docker_hub_is_not_searched() {
    let port = stub_without_catalog();
    let env = TestEnv::new();
    let err = env.fails(["search", &format!("127.0.0.1:{port}/app")]);
    assert!(
        err.contains(&format!(
            "error: 127.0.0.1:{port} offers no repository catalog to search: it answered 404 to GET /v2/_catalog"
        )),
        "{err}"
    );
    let hub = env.fails(["search", "busybox"]);
    assert!(
        hub.contains("error: docker.io offers no repository catalog to search: Docker Hub is searched through its own search API"),
        "{hub}"
    );
}

#[test]
fn manifest_inspect_prints_the_pushed_manifest_indented_as_docker_does() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let remote = registry.image("img:1");
    env.ok(["tag", "img", &remote]);
    let pushed = env.ok(["push", &remote]);
    let digest = digest_after(&pushed, "1: digest: ");

    let printed = env.ok(["manifest", "inspect", &remote]);
    assert!(printed.starts_with("{\n\t\""), "{printed}");
    assert_eq!(sha256(compact(&printed).as_bytes()), digest);
    let manifest: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["config"]["digest"], inspect(&env, "img")["Id"]);
    // By digest: the same document.
    let by_digest = env.ok([
        "manifest",
        "inspect",
        &format!("{}@{digest}", registry.image("img")),
    ]);
    assert_eq!(by_digest, printed);

    let missing = env.fails(["manifest", "inspect", &registry.image("img:nope")]);
    assert!(missing.contains("error: manifest for"), "{missing}");
}

#[test]
fn build_push_leaves_the_image_pullable_with_the_same_digest() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM img\nCOPY hello.txt /hello.txt\n"),
            ("hello.txt", "pushed by build\n"),
        ],
    );
    let ctx = ctx.to_str().expect("utf-8 path");
    let remote = registry.image("built:1");
    let (_, stderr) = run_ok(
        &env,
        &["build", "--progress", "plain", "-t", &remote, "--push", ctx],
    );
    assert!(
        stderr.contains(&format!(
            "The push refers to repository [{}]\n",
            registry.image("built")
        )),
        "{stderr}"
    );
    assert!(stderr.contains(": Pushed\n"), "{stderr}");
    let digest = digest_after(&stderr, "1: digest: ");
    let id = inspect(&env, &remote)["Id"].clone();
    assert_eq!(
        inspect(&env, &remote)["RepoDigests"],
        serde_json::json!([format!("{}@{digest}", registry.image("built"))])
    );
    let images = env.ok(["images", "--digests"]);
    assert!(images.contains(&digest), "{images}");

    // --output type=registry and type=image,push=true push the names they give.
    let other = registry.image("other:2");
    let third = registry.image("third:3");
    let meta = env.dir().join("meta.json");
    run_ok(
        &env,
        &[
            "build",
            "-q",
            "--metadata-file",
            meta.to_str().expect("utf-8 path"),
            "--output",
            &format!("type=registry,name={other}"),
            "--output",
            &format!("type=image,name={third},push=true"),
            ctx,
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&meta).expect("read the metadata"))
            .expect("JSON");
    let second = meta["containerimage.digest"]
        .as_str()
        .expect("a digest")
        .to_owned();

    let fresh = TestEnv::new();
    for (name, digest) in [(&remote, &digest), (&other, &second), (&third, &second)] {
        let pulled = fresh.ok(["pull", name]);
        assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    }
    assert_eq!(inspect(&fresh, &remote)["Id"], id);
    assert_eq!(
        inspect(&fresh, &other)["Id"],
        meta["containerimage.config.digest"]
    );
    fresh.ok(["system", "check"]);

    let unnamed = env.fails(["build", "-q", "--push", ctx]);
    assert!(
        unnamed.contains("error: tag is needed when pushing to registry"),
        "{unnamed}"
    );
}
