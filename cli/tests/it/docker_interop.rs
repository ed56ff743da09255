//! Interop with docker both ways (issue 11 §4): what strata pushes, a dockerd of the test's
//! own pulls as the same image (ID and RepoDigests); what docker pushes, strata pulls with the
//! same digest. The registry is the docker-registry fixture on 127.0.0.1, which docker treats
//! as insecure by default.

use crate::dockerd::Dockerd;
use crate::registry::{Registry, digest_after, inspect};
use crate::support::TestEnv;

/// `docker image inspect NAME`'s one object.
fn docker_inspect(dockerd: &Dockerd, name: &str) -> serde_json::Value {
    let out = dockerd.ok(["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("docker inspect prints JSON");
    v[0].clone()
}

#[test]
fn docker_pulls_what_strata_pushes_and_strata_pulls_what_docker_pushes() {
    let registry = Registry::start();
    let env = TestEnv::with_base("img");
    let remote = registry.image("from-strata:1");
    env.ok(["tag", "img", &remote]);
    let digest = digest_after(&env.ok(["push", &remote]), "1: digest: ");
    let ours = inspect(&env, &remote);

    let dockerd = Dockerd::start();
    let pulled = dockerd.ok(["pull", &remote]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    let theirs = docker_inspect(&dockerd, &remote);
    assert_eq!(
        theirs["Id"], ours["Id"],
        "the image ID is the config digest"
    );
    assert_eq!(theirs["RepoDigests"], ours["RepoDigests"]);
    assert_eq!(
        theirs["RepoDigests"],
        serde_json::json!([format!("{}@{digest}", registry.image("from-strata"))])
    );

    // The other way: docker pushes it under another name; strata pulls that.
    let again = registry.image("from-docker:2");
    dockerd.ok(["tag", &remote, &again]);
    let pushed = dockerd.ok(["push", &again]);
    let docker_digest = digest_after(&pushed, "2: digest: ");
    let fresh = TestEnv::new();
    let out = fresh.ok(["pull", &again]);
    assert_eq!(digest_after(&out, "Digest: "), docker_digest);
    let image = inspect(&fresh, &again);
    assert_eq!(image["Id"], ours["Id"]);
    assert_eq!(
        image["RepoDigests"],
        docker_inspect(&dockerd, &again)["RepoDigests"]
            .as_array()
            .expect("a list")
            .iter()
            .filter(|d| d.as_str().is_some_and(|d| d.contains("/from-docker@")))
            .cloned()
            .collect::<serde_json::Value>()
    );
    fresh.ok(["system", "check"]);

    // A manifest list strata pushed: docker pulls the image for its platform from it.
    let base = env.base_tarball();
    let base = base.to_str().expect("utf-8 path");
    env.ok(["import", "--platform", "linux/arm64", base, "img:arm64"]);
    let list = registry.image("list:1");
    env.ok(["manifest", "create", &list, "img", "img:arm64"]);
    let list_digest = env.ok(["manifest", "push", &list]);
    let list_digest = list_digest.lines().last().expect("the digest");
    let pulled = dockerd.ok(["pull", &list]);
    assert!(
        pulled.contains(&format!("Digest: {list_digest}\n")),
        "{pulled}"
    );
    let host_image = match std::env::consts::ARCH {
        "aarch64" => inspect(&env, "img:arm64"),
        _ => ours,
    };
    assert_eq!(docker_inspect(&dockerd, &list)["Id"], host_image["Id"]);
}
