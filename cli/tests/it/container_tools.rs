//! The tools on top of containers (issue 14): `diff`, `commit`, `export` (and `import` back),
//! `cp`, each checked on what a user sees: docker's A/C/D lines, the files of a committed or
//! exported image (bytes and mode), its config and history.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::TestEnv;
use serde_json::Value;
use std::io::Read as _;

/// A store with the busybox base image as `base`, whose containers are all removed (killed
/// first) when the test ends, passing or failing.
struct Env(TestEnv);

impl Env {
    fn new() -> Env {
        Env(TestEnv::with_base("base"))
    }

    /// Runs strata; returns (exit code, stdout bytes, stderr).
    fn run(&self, args: &[&str]) -> (i32, Vec<u8>, String) {
        let out = self.0.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn image_config(&self, image: &str) -> Value {
        let out = self.0.ok(["inspect", image]);
        let all: Value = serde_json::from_str(&out).unwrap();
        all[0].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(out) = self.0.command(["ps", "-aq"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm".to_owned(), "-f".to_owned()];
                args.extend(ids);
                let _ = self.0.command(&args).output();
            }
        }
    }
}

/// A shell script a container runs to change its filesystem: adds /etc/sub/f and a setuid
/// /new, changes /etc/passwd, deletes /bin/ls, replaces /tmp by a new directory (opaque).
const CHANGES: &str = "mkdir /etc/sub && printf 'sub\\n' > /etc/sub/f \
    && printf 'new bytes\\n' > /new && chmod 4750 /new \
    && echo 'x:x:9:9::/:/bin/sh' >> /etc/passwd && rm /bin/ls \
    && rm -rf /tmp && mkdir /tmp && touch /tmp/t";

/// (mode, bytes) of each regular file in a tar, by path without its leading `/` or `./`.
fn tar_files(tar: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_owned();
        let mode = e.header().mode().unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.push((path, mode, bytes));
    }
    out
}

#[test]
fn diff_lists_added_changed_and_deleted_paths_in_docker_order() {
    let env = Env::new();
    env.0
        .ok(["run", "--name", "c", "base", "sh", "-c", CHANGES]);
    let out = env.0.ok(["diff", "c"]);
    assert_eq!(
        out,
        "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nA /etc/sub\nA /etc/sub/f\nA /new\n\
         D /tmp\nA /tmp/t\n"
    );
    // A container that changed nothing lists nothing; an unknown one is docker's error.
    env.0.ok(["create", "--name", "idle", "base", "true"]);
    assert_eq!(env.0.ok(["diff", "idle"]), "");
    let err = env.0.fails(["diff", "nope"]);
    assert!(err.contains("No such container: nope"), "{err}");
}

#[test]
fn commit_makes_an_image_with_the_containers_files_config_and_history() {
    let env = Env::new();
    env.0.ok([
        "run",
        "--name",
        "c",
        "-e",
        "GREETING=hi",
        "base",
        "sh",
        "-c",
        CHANGES,
    ]);
    let id = env.0.ok([
        "commit",
        "-m",
        "add new",
        "-a",
        "Jane <jane@example.com>",
        "-c",
        "CMD [\"cat\", \"/new\"]",
        "-c",
        "LABEL stage=committed",
        "c",
        "committed:1",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    // The new image runs with the container's files: the bytes and the setuid mode.
    let out = env.0.ok(["run", "--rm", "committed:1"]);
    assert_eq!(out, "new bytes\n");
    let out = env.0.ok([
        "run",
        "--rm",
        "committed:1",
        "sh",
        "-c",
        "stat -c '%a %s' /new; cat /etc/sub/f; tail -n1 /etc/passwd; \
         test -e /bin/ls || echo no-ls; ls -A /tmp; echo $GREETING",
    ]);
    assert_eq!(out, "4750 10\nsub\nx:x:9:9::/:/bin/sh\nno-ls\nt\nhi\n");

    // Its config: -c applied over the container's; its history: docker's entry on top.
    let inspect = env.image_config("committed:1");
    assert_eq!(inspect["Id"], id);
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["cat", "/new"]));
    assert_eq!(inspect["Config"]["Labels"]["stage"], "committed");
    assert!(
        inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("GREETING=hi")),
        "{inspect}"
    );
    assert_eq!(inspect["Author"], "Jane <jane@example.com>");
    assert_eq!(inspect["Comment"], "add new");
    let base = env.image_config("base");
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().unwrap().len(),
        base["RootFS"]["Layers"].as_array().unwrap().len() + 1
    );
    let history = env.0.ok(["history", "--no-trunc", "committed:1"]);
    let top = history.lines().nth(1).unwrap();
    assert!(top.contains(&format!("sh -c {CHANGES}")), "{history}");
    assert!(top.trim_end().ends_with("add new"), "{history}");
}

#[test]
fn commit_of_an_unchanged_container_adds_an_empty_history_entry_and_no_layer() {
    let env = Env::new();
    env.0.ok(["create", "--name", "idle", "base", "true"]);
    env.0.ok(["commit", "idle", "same:1"]);
    let (base, same) = (env.image_config("base"), env.image_config("same:1"));
    assert_eq!(base["RootFS"], same["RootFS"]);
    assert_eq!(same["Config"]["Cmd"], serde_json::json!(["true"]));
    let history = env.0.ok(["history", "same:1"]);
    assert_eq!(history.lines().count(), 3, "{history}"); // header, commit, import
    let err = env.0.fails(["commit", "-c", "RUN true", "idle"]);
    assert!(err.contains("invalid --change \"RUN true\""), "{err}");
}

#[test]
fn commit_and_export_see_a_running_containers_files() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "live",
        "base",
        "sh",
        "-c",
        "printf 'live\\n' > /live && touch /ready && sleep 1000",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env.0.ok(["diff", "live"]).contains("A /ready") {
        assert!(std::time::Instant::now() < deadline, "never wrote /ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.0.ok(["commit", "live", "live:1"]);
    assert_eq!(
        env.0.ok(["run", "--rm", "live:1", "cat", "/live"]),
        "live\n"
    );
    let (code, tar, err) = env.run(&["export", "live"]);
    assert_eq!(code, 0, "{err}");
    let files = tar_files(&tar);
    assert!(files.iter().any(|(p, _, b)| p == "live" && b == b"live\n"));
}

#[test]
fn export_writes_the_merged_root_that_import_takes_back() {
    let env = Env::new();
    env.0
        .ok(["run", "--name", "c", "base", "sh", "-c", CHANGES]);
    let (code, tar, err) = env.run(&["export", "c"]);
    assert_eq!(code, 0, "{err}");
    let files = tar_files(&tar);
    let find = |path: &str| files.iter().find(|(p, _, _)| p == path);
    let (_, mode, bytes) = find("new").expect("/new in the export");
    assert_eq!(
        (mode & 0o7777, bytes.as_slice()),
        (0o4750, &b"new bytes\n"[..])
    );
    assert!(find("bin/busybox").is_some(), "the image's files too");
    assert!(find("bin/ls").is_none(), "a deleted file is not exported");
    assert!(
        !files.iter().any(|(p, _, _)| p.contains(".wh.")),
        "no whiteouts in a flat export"
    );
    // -o writes the same bytes to a file, which import takes back.
    let file = env.0.dir().join("c.tar");
    env.0.ok(["export", "-o", file.to_str().unwrap(), "c"]);
    assert_eq!(tar_files(&fs_err::read(&file).unwrap()), files);
    env.0.ok(["import", file.to_str().unwrap(), "imported:1"]);
    let out = env.0.ok([
        "run",
        "--rm",
        "imported:1",
        "sh",
        "-c",
        "stat -c %a /new; cat /new",
    ]);
    assert_eq!(out, "4750\nnew bytes\n");
    let err = env
        .0
        .fails(["export", "-o", file.to_str().unwrap(), "nope"]);
    assert!(err.contains("No such container: nope"), "{err}");
}
