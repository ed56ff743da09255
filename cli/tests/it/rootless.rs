//! Rootless strata (issue 12 §5, docs/rootless.md): run as an ordinary user with subordinate
//! ids, strata builds in a user namespace of its own. These tests need that user: they run
//! in scripts/test.sh's rootless pass (`STRATA_TEST_USER`), and are ignored in the root one.

use crate::network::{host_address, serve};
use crate::support::{TestEnv, test_user};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// A scratch env of the test user, with the busybox base imported into the user's default
/// store (no `--root`: `$XDG_DATA_HOME/strata`).
fn user_env() -> TestEnv {
    assert!(
        test_user().is_some(),
        "needs STRATA_TEST_USER, a user with subordinate ids (scripts/test.sh's rootless pass)"
    );
    let env = TestEnv::new();
    let tar = env.base_tarball();
    let out = env
        .bare_command()
        .arg("import")
        .arg(&tar)
        .arg("base")
        .output()
        .expect("run strata import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env
}

/// `strata ARGS` as the user, without `--root`; asserts success and returns stderr.
fn strata(env: &TestEnv, args: &[&str]) -> String {
    let out = env.bare_command().args(args).output().expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "strata {args:?} failed: {stderr}");
    stderr
}

/// `tar -tv` of every layer of `image` saved by the user's strata: (owner, path) per entry.
fn layer_entries(env: &TestEnv, image: &str) -> Vec<(String, String)> {
    let saved = env.dir().join("saved.tar");
    strata(env, &["save", "-o", saved.to_str().expect("utf-8"), image]);
    let dir = env.dir().join("saved");
    fs_err::create_dir_all(&dir).expect("mkdir");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&dir)
        .status()
        .expect("run tar");
    assert!(status.success());
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("manifest.json")).expect("manifest.json"))
            .expect("json");
    let mut entries = Vec::new();
    for layer in index[0]["Layers"].as_array().expect("layers") {
        let out = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(dir.join(layer.as_str().expect("a path")))
            .output()
            .expect("run tar");
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            entries.push((fields[1].to_owned(), fields[5..].join(" ")));
        }
    }
    entries
}

/// Every path under `dir` owned by the host's root.
fn owned_by_root(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs_err::read_dir(&d).expect("read a store directory") {
            let path = entry.expect("an entry").path();
            let meta = fs_err::symlink_metadata(&path).expect("lstat");
            if meta.uid() == 0 || meta.gid() == 0 {
                found.push(path.display().to_string());
            }
            if meta.is_dir() {
                todo.push(path);
            }
        }
    }
    found
}

#[test]
#[ignore = "needs STRATA_TEST_USER: run by scripts/test.sh's rootless pass"]
fn rootless_build_keeps_root_owned_files_root_in_the_layer_and_the_store_the_users() {
    let env = user_env();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN id -u > /id && echo made-by-root > /root-file && \
             mkdir /sub && echo x > /sub/x && chown -R 1000:1000 /sub\n",
        )],
    );
    strata(
        &env,
        &[
            "build",
            "--progress=plain",
            "--network=none",
            "-t",
            "t:1",
            ctx.to_str().expect("utf-8"),
        ],
    );
    let entries = layer_entries(&env, "t:1");
    let owner = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| p == path)
            .map(|(o, _)| o.as_str())
            .unwrap_or_else(|| panic!("{path} is in no layer: {entries:?}"))
    };
    assert_eq!(owner("root-file"), "0/0");
    assert_eq!(owner("id"), "0/0");
    assert_eq!(owner("sub/"), "1000/1000");
    assert_eq!(owner("sub/x"), "1000/1000");
    // `id -u` inside said 0.
    let out = env.dir().join("out");
    strata(
        &env,
        &[
            "build",
            "--progress=plain",
            "--network=none",
            "-o",
            out.to_str().expect("utf-8"),
            ctx.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(fs_err::read_to_string(out.join("id")).expect("/id"), "0\n");
    // The store is the user's default one, the user's own, with nothing of the host's root.
    let store = env.dir().join("xdg-data/strata");
    let user = test_user().expect("checked above");
    assert_eq!(
        fs_err::metadata(&store).expect("the default store").uid(),
        user.uid
    );
    assert_eq!(owned_by_root(&store), Vec::<String>::new());
}

#[test]
#[ignore = "needs STRATA_TEST_USER: run by scripts/test.sh's rootless pass"]
fn rootless_default_network_reaches_the_host_through_slirp4netns() {
    let env = user_env();
    let host = host_address();
    let port = serve(host);
    let df = format!(
        "FROM base\nRUN (sed 1,2d /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; \
         nc -w 5 {host} {port} </dev/null || echo refused) > /result\n"
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let out = env.dir().join("out");
    strata(
        &env,
        &[
            "build",
            "--progress=plain",
            "-o",
            out.to_str().expect("utf-8"),
            ctx.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        fs_err::read_to_string(out.join("result")).expect("/result"),
        "eth0\nlo\nhello-from-host\n"
    );
}

#[test]
#[ignore = "needs STRATA_TEST_USER: run by scripts/test.sh's rootless pass"]
fn rootless_resource_limits_are_refused_and_say_why() {
    let env = user_env();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUN true\n")]);
    let out = env
        .bare_command()
        .args(["build", "-m", "512m", ctx.to_str().expect("utf-8")])
        .output()
        .expect("run strata");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --memory needs a cgroup, which rootless strata cannot make: run the build as \
         root to limit its resources (see docs/rootless.md)\n"
    );
}

#[test]
fn a_user_without_subordinate_ids_is_told_what_rootless_mode_needs_and_can_still_check() {
    // `nobody` (65534) has no range in /etc/subuid on any machine we run on.
    let env = TestEnv::new();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::support::user_bin())
        .args(["--root", "/nonexistent/strata", "images"])
        .env("HOME", env.dir())
        .output()
        .expect("run strata as nobody");
    assert_eq!(out.status.code(), Some(1));
    let user = fs_err::read_to_string("/etc/passwd")
        .expect("/etc/passwd")
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').next().map(str::to_owned))
        .expect("a user 65534");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: rootless mode needs a range in /etc/subuid for {user} (see subuid(5))\n")
    );
    // Linting a Dockerfile needs no user namespace.
    let dockerfile = env.dir().join("Dockerfile");
    fs_err::write(&dockerfile, "FROM busybox\nRUN true\n").expect("write a Dockerfile");
    std::os::unix::fs::chown(env.dir(), Some(65534), Some(65534)).expect("chown");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::support::user_bin())
        .arg("check")
        .arg(&dockerfile)
        .env("HOME", env.dir())
        .output()
        .expect("run strata check as nobody");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
