//! Multi-platform images made by strata (issue 11 §1, "an index for multi-platform images"):
//! two imports of one rootfs for linux/amd64 and linux/arm64, `manifest create`, `manifest
//! push` to the registry fixture; skopeo reads the index, strata pulls each platform from it.

use crate::registry::{Registry, inspect, skopeo};
use crate::support::TestEnv;

/// A store with the busybox rootfs imported as `img:amd64` and `img:arm64`.
fn two_platforms() -> TestEnv {
    let env = TestEnv::new();
    let tar = env.base_tarball();
    let tar = tar.to_str().expect("utf-8 path");
    for arch in ["amd64", "arm64"] {
        let platform = format!("linux/{arch}");
        env.ok([
            "import",
            "--platform",
            &platform,
            tar,
            &format!("img:{arch}"),
        ]);
        assert_eq!(inspect(&env, &format!("img:{arch}"))["Architecture"], arch);
    }
    env
}

#[test]
fn a_manifest_list_of_two_platforms_is_pushed_as_an_index_and_pulled_per_platform() {
    let registry = Registry::start();
    let env = two_platforms();
    let list = registry.image("multi:1");
    assert_eq!(
        env.ok(["manifest", "create", &list, "img:amd64", "img:arm64"]),
        format!("Created manifest list {list}\n")
    );
    let again = env.fails(["manifest", "create", &list, "img:amd64"]);
    assert!(
        again.contains("refusing to amend an existing manifest list with no --amend flag"),
        "{again}"
    );
    let out = env.ok(["manifest", "push", "--purge", &list]);
    let digest = out.lines().last().expect("the digest line").to_owned();
    assert!(digest.starts_with("sha256:"), "{out}");

    // The registry serves an index with both platforms, whose bytes have that digest.
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{list}"))
        .output()
        .expect("run skopeo");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    use sha2::Digest as _;
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw.stdout))),
        digest
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("JSON");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or_default(),
                m["platform"]["architecture"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // Pulled from fresh stores: the platform asked for, else this machine's.
    let arm = TestEnv::new();
    arm.ok(["pull", "--platform", "linux/arm64", &list]);
    assert_eq!(inspect(&arm, &list)["Id"], inspect(&env, "img:arm64")["Id"]);
    let default = TestEnv::new();
    let pulled = default.ok(["pull", &list]);
    assert!(pulled.contains(&format!("Digest: {digest}\n")), "{pulled}");
    let host = match std::env::consts::ARCH {
        "aarch64" => "img:arm64",
        _ => "img:amd64",
    };
    assert_eq!(inspect(&default, &list)["Id"], inspect(&env, host)["Id"]);

    // skopeo copies the whole list.
    let layout = env.dir().join("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{list}"),
        &format!("oci:{}:multi", layout.display()),
    ]);
    for m in index["manifests"].as_array().expect("manifests") {
        let hex = m["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .expect("a digest");
        assert!(layout.join("blobs/sha256").join(hex).is_file(), "{hex}");
    }

    // --purge forgot the list; rm of one that is not there says so.
    let err = env.fails(["manifest", "push", &list]);
    assert!(
        err.contains(&format!("no such manifest list: {list}")),
        "{err}"
    );
    env.ok(["manifest", "create", &list, "img:amd64"]);
    env.ok(["manifest", "rm", &list]);
    let err = env.fails(["manifest", "rm", &list]);
    assert!(
        err.contains(&format!("no such manifest list: {list}")),
        "{err}"
    );
}
