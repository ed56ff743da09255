//! strata's config file (issue 11 §1): `insecure-registries` for a registry that is not on
//! loopback and speaks plain HTTP, `registry-mirrors` for Docker Hub's images, and the errors
//! of a config that is not valid. The registries are the docker-registry fixture; the
//! "remote" one listens on this machine's own non-loopback address.

use crate::docker_registry::DockerRegistry;
use crate::registry::{Registry, digest_after, inspect, signed, test_ca};
use crate::support::TestEnv;
use std::net::{IpAddr, UdpSocket};

/// This machine's address on its default route (a UDP "connect" sends nothing; it only picks
/// the source address), which is not loopback, so strata does not exempt it from HTTPS.
fn non_loopback_address() -> IpAddr {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    socket
        .connect("192.0.2.1:9")
        .expect("this machine needs a default route (an address that is not loopback)");
    let ip = socket.local_addr().expect("the socket's address").ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[test]
fn a_plain_http_registry_off_loopback_needs_insecure_registries() {
    let registry = DockerRegistry::start_on(
        non_loopback_address(),
        tempfile::tempdir().expect("create a temp dir"),
        "",
    );
    let host = registry.host();
    let remote = format!("{host}/img:1");
    let env = TestEnv::with_base("img");
    env.ok(["tag", "img", &remote]);

    let err = env.fails(["push", &remote]);
    assert!(
        err.contains(&format!(
            "{host} speaks plain HTTP, not HTTPS: strata uses plain HTTP only for registries on this machine and those listed in insecure-registries\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: if you trust the network to this registry, list it as \"insecure-registries\""
        ),
        "{err}"
    );

    env.config(&format!(r#"{{"insecure-registries": ["{host}"]}}"#));
    let pushed = env.ok(["push", &remote]);
    let digest = digest_after(&pushed, "1: digest: ");

    // A CIDR range covers it too; the pull gets what was pushed.
    let other = TestEnv::new();
    let err = other.fails(["pull", &remote]);
    assert!(err.contains("speaks plain HTTP, not HTTPS"), "{err}");
    let ip = host.rsplit_once(':').expect("IP:PORT").0;
    other.config(&format!(
        r#"{{"insecure-registries": ["127.0.0.0/8", "{ip}/32"]}}"#
    ));
    let pulled = other.ok(["pull", &remote]);
    assert_eq!(digest_after(&pulled, "Digest: "), digest);
    assert_eq!(inspect(&other, &remote)["Id"], inspect(&env, "img")["Id"]);
}

#[test]
fn an_insecure_registry_is_https_first_without_verifying_its_certificate() {
    let env = TestEnv::with_base("img");
    let ip = non_loopback_address();
    let pki = env.dir().join("pki");
    test_ca(&pki, "/CN=strata test CA");
    signed(
        &pki,
        "srv",
        &format!("/CN={ip}"),
        &format!("subjectAltName=IP:{ip}\n"),
    );
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        pki.join("srv.crt").display(),
        pki.join("srv.key").display()
    );
    let registry =
        DockerRegistry::start_on(ip, tempfile::tempdir().expect("create a temp dir"), &tls);
    let host = registry.host();
    let remote = format!("{host}/img:1");
    env.ok(["tag", "img", &remote]);

    // Not listed: HTTPS, verified, and the test CA is no one's.
    let err = env.fails(["push", &remote]);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    // Listed: HTTPS without verification (the registry speaks nothing else).
    env.config(&format!(r#"{{"insecure-registries": ["{host}"]}}"#));
    env.ok(["push", &remote]);
    let fresh = TestEnv::new();
    fresh.config(&format!(r#"{{"insecure-registries": ["{ip}/8"]}}"#));
    fresh.ok(["pull", &remote]);
    assert_eq!(inspect(&fresh, &remote)["Id"], inspect(&env, "img")["Id"]);
}

#[test]
fn an_invalid_config_is_named_with_its_line_and_column() {
    let env = TestEnv::new();
    let path = env.config_path();
    env.config("{\n  \"insecure-registries\": [\"a\",]\n}\n");
    let err = env.fails(["pull", "127.0.0.1:1/x"]);
    assert!(
        err.starts_with(&format!(
            "error: invalid strata config {}:2:31\ncaused by: trailing comma at line 2 column 31\n",
            path.display()
        )),
        "{err}"
    );
    env.config(r#"{"insecure-registries": ["10.0.0.0/40"], "registry-mirrors": ["mirror.lan"]}"#);
    let err = env.fails(["pull", "127.0.0.1:1/x"]);
    assert!(
        err.starts_with(&format!(
            "error: invalid strata config {}\ncaused by: invalid insecure-registries entry \"10.0.0.0/40\": the prefix length",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn docker_hub_images_come_from_the_mirror_then_from_docker_io() {
    let mirror = Registry::start();
    let source = TestEnv::with_base("img");
    let on_mirror = mirror.image("library/busybox:latest");
    source.ok(["tag", "img", &on_mirror]);
    let digest = digest_after(&source.ok(["push", &on_mirror]), "latest: digest: ");
    let mirror_host = on_mirror.split('/').next().expect("a host").to_owned();
    let config = format!(r#"{{"registry-mirrors": ["http://{mirror_host}"]}}"#);

    // Offline, with the mirror: docker.io's name, the mirror's digest.
    let env = TestEnv::new();
    env.config(&config);
    let out = env.ok(["pull", "busybox"]);
    assert_eq!(digest_after(&out, "Digest: "), digest);
    assert!(
        out.ends_with(
            "Status: Downloaded newer image for busybox:latest\ndocker.io/library/busybox:latest\n"
        ),
        "{out}"
    );
    let image = inspect(&env, "busybox");
    assert_eq!(image["Id"], inspect(&source, "img")["Id"]);
    assert_eq!(
        image["RepoDigests"],
        serde_json::json!([format!("busybox@{digest}")])
    );

    // A tag the mirror lacks: on to docker.io, whose failure (offline: unreachable) follows.
    let err = env.fails(["pull", "busybox:no-such-tag"]);
    let expected = format!(
        "error: failed to pull busybox:no-such-tag\ncaused by: the mirrors failed ({mirror_host}: manifest for {mirror_host}/library/busybox:no-such-tag not found on {mirror_host}), then the origin docker.io failed\ncaused by: "
    );
    assert!(err.starts_with(&expected), "{err}");
    let origin = err[expected.len()..].lines().next().unwrap_or_default();
    assert!(origin.contains("docker.io"), "{err}");

    // A build's FROM comes through the mirror too.
    let build = TestEnv::new();
    build.config(&config);
    let ctx = build.context("ctx", &[("Dockerfile", "FROM busybox\nENV VIA=mirror\n")]);
    build.ok([
        "build",
        "-q",
        "-t",
        "app:1",
        ctx.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(inspect(&build, "busybox")["Id"], image["Id"]);

    // Pushes never use the mirror: a push to docker.io goes to docker.io.
    let err = build.fails(["push", "busybox"]);
    assert!(!err.contains(&mirror_host), "{err}");
}
