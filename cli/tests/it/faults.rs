//! Registry faults end to end (issue 11 §4): `strata pull` and `push` through the fault proxy
//! (`store/tests/fixture/proxy.rs`) in front of a real `docker-registry`. Each test asserts
//! what the user sees (exit code, stderr, the digest, `system check`) and what went over the
//! wire (the proxy's record of every request).

use crate::proxy::{Action, Exchange, Fault, Proxy};
use crate::registry::{Registry, digest_after};
use crate::support::TestEnv;
use sha2::Digest as _;

/// A registry behind a fault proxy, with the busybox base image pushed through the proxy (no
/// faults yet) as `PROXY/img:1`.
struct Pushed {
    proxy: Proxy,
    remote: String,
    /// The manifest digest `push` printed.
    digest: String,
    registry: Registry,
}

impl Pushed {
    /// `strata pull` into `env` succeeds with the pushed digest, and the store is sound.
    fn pulls_whole_into(&self, env: &TestEnv) {
        let pulled = env.ok(["pull", &self.remote]);
        assert!(
            pulled.contains(&format!("Digest: {}\n", self.digest)),
            "{pulled}"
        );
        env.ok(["system", "check"]);
    }
}

fn pushed() -> Pushed {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.host());
    let env = TestEnv::with_base("img");
    let remote = format!("{}/img:1", proxy.host());
    env.ok(["tag", "img", &remote]);
    let digest = digest_after(&env.ok(["push", &remote]), "1: digest: ");
    Pushed {
        proxy,
        remote,
        digest,
        registry,
    }
}

/// The `Range` header and the status of each request.
fn ranges(requests: &[Exchange]) -> Vec<(Option<String>, Option<u16>)> {
    requests
        .iter()
        .map(|e| (e.range.clone(), e.status))
        .collect()
}

/// The base image's layer is about a megabyte compressed; its config, under a kilobyte. A
/// fault on blob bodies longer than this hits the layer only.
const INTO_THE_LAYER: u64 = 100_000;

#[test]
fn issue_11_a_connection_dropped_mid_blob_resumes_with_a_range_request() {
    let p = pushed();
    let cut = Action::CutBody {
        after: INTO_THE_LAYER,
    };
    p.proxy.fault(Fault::new("GET", "/blobs/", Some(1), cut));
    let env = TestEnv::new();
    p.pulls_whole_into(&env);

    let (_, again) = p.proxy.hit_then_again(cut);
    assert_eq!(
        ranges(&again),
        [(Some(format!("bytes={INTO_THE_LAYER}-")), Some(206))]
    );

    // A connection that drops after every 100 kB: each resume brings the next 100 kB, until
    // the layer (about a megabyte) is whole.
    p.proxy.clear_faults();
    let every = Action::CutBody {
        after: INTO_THE_LAYER,
    };
    p.proxy.fault(Fault::new("GET", "/blobs/", None, every));
    let before = p.proxy.exchanges().len();
    let env = TestEnv::new();
    p.pulls_whole_into(&env);
    let seen = p.proxy.exchanges();
    let layer = seen[before..]
        .iter()
        .find(|e| e.fault == Some(every))
        .expect("the layer was cut")
        .target
        .clone();
    let asked: Vec<Option<String>> = seen[before..]
        .iter()
        .filter(|e| e.target == layer)
        .map(|e| e.range.clone())
        .collect();
    let expected: Vec<Option<String>> = (0..asked.len() as u64)
        .map(|i| (i > 0).then(|| format!("bytes={}-", i * INTO_THE_LAYER)))
        .collect();
    assert!(asked.len() > 6, "more resumes than MAX_RESUMES: {asked:?}");
    assert_eq!(asked, expected);
}

#[test]
fn issue_11_corrupted_bytes_are_fetched_again_from_scratch_and_refused_if_they_persist() {
    let p = pushed();
    let flip = Action::Corrupt { at: INTO_THE_LAYER };

    // Once: detected, thrown away, fetched whole again.
    p.proxy.fault(Fault::new("GET", "/blobs/", Some(1), flip));
    let env = TestEnv::new();
    p.pulls_whole_into(&env);
    let (corrupted, again) = p.proxy.hit_then_again(flip);
    assert_eq!(ranges(&again), [(None, Some(200))]);

    // Always: a clean failure naming the blob and the image; nothing half-pulled.
    let layer = corrupted
        .target
        .rsplit('/')
        .next()
        .expect("a blob path")
        .to_owned();
    p.proxy.fault(Fault::new("GET", "/blobs/", None, flip));
    let env = TestEnv::new();
    let err = env.fails(["pull", &p.remote]);
    assert!(
        err.starts_with(&format!(
            "error: failed to pull {}\ncaused by: failed to download blob {layer} from {}\ncaused by: blob should have digest {layer} but has sha256:",
            p.remote,
            p.proxy.host()
        )),
        "{err}"
    );
    assert_eq!(env.ok(["images", "-q"]), "");
    env.ok(["system", "check"]);
    let tries = p
        .proxy
        .exchanges()
        .iter()
        .filter(|e| e.target.ends_with(&layer) && e.fault == Some(flip))
        .count();
    assert_eq!(
        tries, 3,
        "one corrupted pull above, then a try and its one retry"
    );

    // The fault gone, the same pull completes.
    p.proxy.clear_faults();
    p.pulls_whole_into(&env);
}

/// Whether every request the proxy refused was asked again no sooner than its `Retry-After`
/// (one second) later; returns how many were.
fn retried_after_a_second(seen: &[Exchange]) -> usize {
    let mut refused = 0;
    for (i, e) in seen.iter().enumerate() {
        if !matches!(e.fault, Some(Action::Refuse { .. })) {
            continue;
        }
        refused += 1;
        let retry = seen[i + 1..]
            .iter()
            .find(|r| r.method == e.method && r.target == e.target)
            .unwrap_or_else(|| panic!("{} {} was not retried: {seen:#?}", e.method, e.target));
        let waited = retry.at.duration_since(e.at);
        assert!(
            waited >= std::time::Duration::from_secs(1),
            "{} {} retried after {waited:?}, before its Retry-After",
            e.method,
            e.target
        );
    }
    refused
}

#[test]
fn issue_11_429_and_503_with_retry_after_are_retried_no_sooner_than_asked() {
    let p = pushed();
    let busy = |status| Action::Refuse {
        status,
        retry_after: Some(1),
    };
    p.proxy
        .fault(Fault::new("GET", "/manifests/", Some(1), busy(429)));
    p.proxy
        .fault(Fault::new("GET", "/blobs/", Some(1), busy(503)));
    let env = TestEnv::new();
    p.pulls_whole_into(&env);
    let seen = p.proxy.exchanges();
    assert_eq!(retried_after_a_second(&seen), 2, "{seen:#?}");

    // Push: a 503 on the manifest PUT, retried.
    p.proxy
        .fault(Fault::new("PUT", "/manifests/", Some(1), busy(503)));
    let again = format!("{}/again:1", p.proxy.host());
    env.ok(["tag", &p.remote, &again]);
    let pushed = env.ok(["push", &again]);
    assert_eq!(digest_after(&pushed, "1: digest: "), p.digest);
    let seen = p.proxy.exchanges();
    let puts: Vec<_> = seen
        .iter()
        .filter(|e| e.method == "PUT" && e.target.ends_with("/again/manifests/1"))
        .map(|e| e.status)
        .collect();
    assert_eq!(puts, [Some(503), Some(201)], "{seen:#?}");
    // What the registry itself (not through the proxy) has under the tag.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/again:1", p.registry.host()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)));
    assert_eq!(digest, p.digest);
    assert_eq!(retried_after_a_second(&seen), 3);
}

#[test]
fn issue_11_a_registry_that_keeps_answering_503_fails_clearly_after_the_retries() {
    let p = pushed();
    let unavailable = Action::Refuse {
        status: 503,
        retry_after: Some(0),
    };
    p.proxy
        .fault(Fault::new("GET", "/manifests/", None, unavailable));
    let env = TestEnv::new();
    let out = env
        .command(["pull", &p.remote])
        .env("STRATA_REGISTRY_RETRIES", "2")
        .output()
        .expect("run strata");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: failed to pull {}\ncaused by: {} answered 503 to GET /v2/img/manifests/1: UNAVAILABLE: refused by the test proxy\n",
            p.remote,
            p.proxy.host()
        )
    );
    let tries = p
        .proxy
        .exchanges()
        .iter()
        .filter(|e| e.method == "GET" && e.target == "/v2/img/manifests/1")
        .count();
    assert_eq!(tries, 3, "one try and the two retries configured");
    assert_eq!(env.ok(["images", "-q"]), "");
    env.ok(["system", "check"]);
}

/// A one-layer image of `size` incompressible bytes, imported as `tag` and pushed through
/// the proxy as `PROXY/small:1`; returns the pushed digest. Its layer is smaller than a
/// second of a blob's slowest allowed rate.
fn small_image(env: &TestEnv, proxy: &Proxy, size: usize) -> (String, String) {
    let data = crate::support::incompressible(size);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "data.bin", &data[..])
        .expect("append to the tar");
    let file = env.dir().join("small.tar");
    fs_err::write(&file, tar.into_inner().expect("finish the tar")).expect("write small.tar");
    let remote = format!("{}/small:1", proxy.host());
    env.ok([
        std::ffi::OsStr::new("import"),
        file.as_os_str(),
        remote.as_ref(),
    ]);
    let digest = digest_after(&env.ok(["push", &remote]), "1: digest: ");
    (remote, digest)
}

#[test]
fn issue_11_a_slow_registry_completes_and_a_stalled_one_times_out_naming_it() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.host());
    let source = TestEnv::new();
    let (remote, digest) = small_image(&source, &proxy, 40_000);

    // 40 kB at 10 kB/s: four seconds in all, never a second without bytes.
    let slow = Action::Throttle {
        bytes_per_sec: 10_000,
    };
    proxy.fault(Fault::new("GET", "/blobs/", None, slow));
    let env = TestEnv::new();
    let out = env
        .command(["pull", &remote])
        .env("STRATA_REGISTRY_TIMEOUT", "1s")
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("Digest: {digest}\n")), "{stdout}");
    // Each blob in one request: a transfer that keeps moving is not cut off and resumed.
    let seen = proxy.exchanges();
    let slowed: Vec<_> = seen
        .iter()
        .filter(|e| e.fault == Some(slow))
        .map(|e| (e.target.clone(), e.range.clone()))
        .collect();
    let asked = seen
        .iter()
        .filter(|e| e.method == "GET" && e.target.contains("/blobs/"))
        .count();
    assert_eq!(slowed.len(), 2, "the config and the layer: {seen:#?}");
    assert_eq!(asked, 2, "{seen:#?}");
    env.ok(["system", "check"]);

    // A registry that accepts the request and never answers: a timeout, retried, then an
    // error naming the registry, the request and the timeout, and a hint.
    proxy.clear_faults();
    proxy.fault(Fault::new("GET", "/manifests/", None, Action::Stall));
    let env = TestEnv::new();
    let started = std::time::Instant::now();
    let out = env
        .command(["pull", &remote])
        .env("STRATA_REGISTRY_TIMEOUT", "1s")
        .env("STRATA_REGISTRY_RETRIES", "1")
        .output()
        .expect("run strata");
    assert_eq!(out.status.code(), Some(1));
    // Not the default minute per request: the configured second was used.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: failed to pull {remote}\ncaused by: {} did not answer GET /v2/small/manifests/1 within 1s\ncaused by: timeout: ",
            proxy.host()
        )),
        "{err}"
    );
    let stalled = proxy
        .exchanges()
        .iter()
        .filter(|e| e.fault == Some(Action::Stall))
        .count();
    assert!(err.contains("\nhint: the registry accepted the connection but went silent; if it is only slow, STRATA_REGISTRY_TIMEOUT=DURATION (60s by default) waits longer\n"), "{err}");
    assert_eq!(stalled, 2, "one try and the one retry configured");
    assert_eq!(env.ok(["images", "-q"]), "");
    env.ok(["system", "check"]);

    // A layer that stops midway: after a second of silence, the rest with a Range request.
    proxy.clear_faults();
    let stop = Action::StallBody { after: 10_000 };
    proxy.fault(Fault::new("GET", "/blobs/", Some(1), stop));
    let out = env
        .command(["pull", &remote])
        .env("STRATA_REGISTRY_TIMEOUT", "1s")
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, again) = proxy.hit_then_again(stop);
    assert_eq!(
        ranges(&again),
        [(Some("bytes=10000-".to_owned()), Some(206))]
    );
    env.ok(["system", "check"]);
}

#[test]
fn issue_11_a_dropped_upload_is_sent_again_and_the_registry_has_the_image_whole() {
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.host());
    let env = TestEnv::with_base("img");
    let remote = format!("{}/img:1", proxy.host());
    env.ok(["tag", "img", &remote]);
    let cut = Action::CutUpload {
        after: INTO_THE_LAYER,
    };
    proxy.fault(Fault::new("PUT", "/blobs/uploads/", Some(1), cut));
    let pushed = env.ok(["push", &remote]);
    let digest = digest_after(&pushed, "1: digest: ");

    let seen = proxy.exchanges();
    let dropped = seen
        .iter()
        .position(|e| e.fault == Some(cut))
        .expect("the proxy cut an upload");
    let layer = seen[dropped]
        .target
        .split("digest=")
        .nth(1)
        .expect("the PUT names its digest")
        .to_owned();
    let sent_again: Vec<_> = seen[dropped + 1..]
        .iter()
        .filter(|e| e.method == "PUT" && e.target.ends_with(&format!("digest={layer}")))
        .map(|e| e.status)
        .collect();
    assert_eq!(sent_again, [Some(201)], "{seen:#?}");

    // What the registry has is the image, byte for byte: pulled back, same digest and ID.
    let back = TestEnv::new();
    let pulled = back.ok(["pull", &remote]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    assert_eq!(
        crate::registry::inspect(&back, &remote)["Id"],
        crate::registry::inspect(&env, "img")["Id"]
    );
    back.ok(["system", "check"]);
}

#[test]
fn issue_11_a_pull_and_a_push_that_outlive_their_token_get_a_fresh_one() {
    let tokens = crate::token_server::TokenServer::start_expiring(
        "dave",
        "pw",
        std::time::Duration::from_secs(2),
    );
    let registry = Registry::with_token_auth(&tokens);
    let proxy = Proxy::start(&registry.host());
    let env = TestEnv::with_base("img");
    let docker_config = env.dir().join("docker");
    fs_err::create_dir_all(&docker_config).expect("mkdir");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "dave:pw");
    fs_err::write(
        docker_config.join("config.json"),
        serde_json::json!({"auths": {proxy.host(): {"auth": auth}}}).to_string(),
    )
    .expect("write config.json");
    let strata = |env: &TestEnv, args: &[&str]| {
        let out = env
            .command(args)
            .env("DOCKER_CONFIG", &docker_config)
            .output()
            .expect("run strata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    /// The requests the registry refused (401) once their token had expired, then answered.
    fn refreshed(seen: &[Exchange], method: &str, path: &str) -> bool {
        seen.iter().enumerate().any(|(i, e)| {
            e.method == method
                && e.target.contains(path)
                && e.status == Some(401)
                && seen[i + 1..].iter().any(|r| {
                    r.method == e.method
                        && r.target == e.target
                        && r.status.is_some_and(|s| s < 300)
                })
        })
    }

    // A push whose manifest PUT comes after the token expired (held three seconds).
    let remote = format!("{}/team/app:1", proxy.host());
    env.ok(["tag", "img", &remote]);
    let hold = Action::Delay { secs: 3 };
    proxy.fault(Fault::new("PUT", "/manifests/", Some(1), hold));
    let digest = digest_after(&strata(&env, &["push", &remote]), "1: digest: ");
    let seen = proxy.exchanges();
    assert!(refreshed(&seen, "PUT", "/manifests/1"), "{seen:#?}");
    let after_push = tokens.requests().len();
    assert!(after_push >= 2, "{:?}", tokens.requests());

    // A pull whose layer is asked for after the token expired (the config comes slowly).
    proxy.clear_faults();
    let slow = Action::Throttle { bytes_per_sec: 100 };
    proxy.fault(Fault::new("GET", "/blobs/", Some(1), slow));
    let fresh = TestEnv::new();
    let pulled = strata(&fresh, &["pull", &remote]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    let seen = proxy.exchanges();
    assert!(refreshed(&seen, "GET", "/blobs/"), "{seen:#?}");
    assert!(
        tokens.requests().len() >= after_push + 2,
        "a token for the pull and a fresh one: {:?}",
        tokens.requests()
    );
    fresh.ok(["system", "check"]);
}

#[test]
fn issue_11_a_connection_dropped_mid_manifest_is_retried() {
    let p = pushed();
    let cut = Action::CutBody { after: 100 };
    p.proxy
        .fault(Fault::new("GET", "/manifests/", Some(1), cut));
    let env = TestEnv::new();
    p.pulls_whole_into(&env);
    let seen = p.proxy.exchanges();
    let manifests: Vec<_> = seen
        .iter()
        .filter(|e| e.method == "GET" && e.target == "/v2/img/manifests/1")
        .map(|e| (e.status, e.fault))
        .collect();
    assert_eq!(manifests, [(Some(200), Some(cut)), (Some(200), None)]);
}
