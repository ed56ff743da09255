//! The tools on top of containers (issue 14): `diff`, `commit`, `export` (and `import` back),
//! `cp`, each checked on what a user sees: docker's A/C/D lines, the files of a committed or
//! exported image (bytes and mode), its config and history.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::containers::Env;
use serde_json::Value;
use std::io::Read as _;

/// The media types of `image`'s layers in the OCI archive `strata save` writes of it.
fn saved_layer_media_types(env: &Env, image: &str) -> Vec<String> {
    let archive = env.0.dir().join("saved.tar");
    env.0.ok(["save", "-o", archive.to_str().unwrap(), image]);
    let mut files = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(fs_err::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(path, bytes);
    }
    let json = |path: &str| -> Value { serde_json::from_slice(&files[path]).unwrap() };
    let index = json("index.json");
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = json(&format!("blobs/sha256/{}", &digest["sha256:".len()..]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
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

/// Polls `diff` of `container` until it lists `line` (a hang guard far above what any machine
/// needs, not a timing assertion).
fn wait_for_change(env: &Env, container: &str, line: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env.0.ok(["diff", container]).lines().any(|l| l == line) {
        assert!(
            std::time::Instant::now() < deadline,
            "{container} never showed {line}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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
    // The new layer is a plain tar, as a build's and as docker's commit keeps it.
    let media_types = saved_layer_media_types(&env, "committed:1");
    assert_eq!(
        media_types.last().map(String::as_str),
        Some("application/vnd.oci.image.layer.v1.tar"),
        "{media_types:?}"
    );

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
    let inspect = env.inspect("committed:1");
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
    let base = env.inspect("base");
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
    let (base, same) = (env.inspect("base"), env.inspect("same:1"));
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
    wait_for_change(&env, "live", "A /ready");
    // Frozen while its layer is read (docker's default --pause), running again after.
    env.0.ok(["commit", "live", "live:1"]);
    let ps = env.0.ok(["ps"]);
    assert!(ps.contains(" Up ") && !ps.contains("(Paused)"), "{ps}");
    env.0.ok(["exec", "live", "true"]);
    assert_eq!(
        env.0.ok(["run", "--rm", "live:1", "cat", "/live"]),
        "live\n"
    );
    let (code, tar, err) = env.run_bytes(&["export", "live"]);
    assert_eq!(code, 0, "{err}");
    let files = tar_files(&tar);
    assert!(files.iter().any(|(p, _, b)| p == "live" && b == b"live\n"));
}

#[test]
fn export_writes_the_merged_root_that_import_takes_back() {
    let env = Env::new();
    env.0
        .ok(["run", "--name", "c", "base", "sh", "-c", CHANGES]);
    let (code, tar, err) = env.run_bytes(&["export", "c"]);
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

/// The uid a file the copy makes on the host belongs to: the calling user's.
fn own_uid() -> u32 {
    crate::support::test_user().map_or(0, |u| u.uid)
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    fs_err::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn cp_copies_both_ways_with_bytes_and_mode_by_dockers_path_rules() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let env = Env::new();
    let host = env.0.dir().join("host");
    fs_err::create_dir_all(host.join("d/sub")).unwrap();
    fs_err::write(host.join("f"), "host file\n").unwrap();
    fs_err::set_permissions(host.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    fs_err::write(host.join("d/sub/x"), "x\n").unwrap();
    fs_err::set_permissions(host.join("d/sub/x"), std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(u) = crate::support::test_user() {
        for p in ["", "f", "d", "d/sub", "d/sub/x"] {
            std::os::unix::fs::chown(host.join(p), Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    let h = |p: &str| host.join(p).to_str().unwrap().to_owned();
    env.0.ok([
        "create",
        "--name",
        "c",
        "base",
        "sh",
        "-c",
        "stat -c '%n %a %u' /f /d/sub/x /etc/d/sub/x /contents/sub/x; cat /f",
    ]);
    env.0.ok(["cp", &h("f"), "c:/f"]); // a new file
    env.0.ok(["cp", &h("d"), "c:/"]); // a directory into a directory: under its name
    env.0.ok(["cp", &h("d"), "c:/etc/"]);
    env.0.ok(["cp", &h("d/."), "c:/contents"]); // `/.`: the contents, into a new directory
    assert_eq!(
        env.0.ok(["diff", "c"]),
        "A /contents\nA /contents/sub\nA /contents/sub/x\nA /d\nA /d/sub\nA /d/sub/x\nC /etc\n\
         A /etc/d\nA /etc/d/sub\nA /etc/d/sub/x\nA /f\n"
    );
    // The container sees them with their modes, owned by its root (no -a).
    let out = env.0.ok(["start", "-a", "c"]);
    assert_eq!(
        out,
        "/f 640 0\n/d/sub/x 755 0\n/etc/d/sub/x 755 0\n/contents/sub/x 755 0\nhost file\n"
    );

    // Back to the host: into a directory, to a new name, a directory's contents.
    let back = env.0.dir().join("back");
    fs_err::create_dir(&back).unwrap();
    if let Some(u) = crate::support::test_user() {
        std::os::unix::fs::chown(&back, Some(u.uid), Some(u.gid)).unwrap();
    }
    let b = |p: &str| back.join(p).to_str().unwrap().to_owned();
    env.0.ok(["cp", "c:/f", &format!("{}/", b(""))]);
    env.0.ok(["cp", "c:/etc/d", &b("newd")]);
    env.0.ok(["cp", "c:/d/sub/.", &b("")]);
    assert_eq!(
        fs_err::read_to_string(back.join("f")).unwrap(),
        "host file\n"
    );
    assert_eq!(mode_of(&back.join("f")), 0o640);
    assert_eq!(fs_err::metadata(back.join("f")).unwrap().uid(), own_uid());
    assert_eq!(fs_err::read(back.join("newd/sub/x")).unwrap(), b"x\n");
    assert_eq!(mode_of(&back.join("newd/sub/x")), 0o755);
    assert_eq!(fs_err::read(back.join("x")).unwrap(), b"x\n");

    // docker's refusals.
    let err = env.0.fails(["cp", "c:/nope", &b("")]);
    assert!(err.contains("could not find the file /nope"), "{err}");
    let err = env.0.fails(["cp", "c:/f", &b("missing/")]);
    assert!(
        err.contains("destination directory") && err.contains("does not exist"),
        "{err}"
    );
    let err = env.0.fails(["cp", "c:/d", &b("f")]);
    assert!(err.contains("cannot copy a directory to a file"), "{err}");
    let err = env.0.fails(["cp", "c:/f/", &b("")]);
    assert!(err.contains("/f/ is not a directory"), "{err}");
    let err = env.0.fails(["cp", &h("f"), &b("f")]);
    assert!(err.contains("must specify at least one container"), "{err}");
    let err = env.0.fails(["cp", "nope:/f", &b("")]);
    assert!(err.contains("No such container: nope"), "{err}");
}

#[test]
fn cp_as_tar_streams_both_ways() {
    let env = Env::new();
    env.0
        .ok(["create", "--name", "c", "base", "cat", "/in/streamed"]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(9);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "in/streamed", &b"streamed\n"[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut cp = env.0.command(["cp", "-", "c:/"]);
    cp.stdin(std::process::Stdio::piped());
    let mut child = cp.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(env.0.ok(["start", "-a", "c"]), "streamed\n");

    // Out: the entry under its own name, a directory with what it holds.
    let (code, out, err) = env.run_bytes(&["cp", "c:/in", "-"]);
    assert_eq!(code, 0, "{err}");
    let files = tar_files(&out);
    let names: Vec<&str> = files.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(names, ["in/", "in/streamed"]);
    assert_eq!(
        (files[1].1 & 0o7777, files[1].2.as_slice()),
        (0o600, &b"streamed\n"[..])
    );
    let (code, out, err) = env.run_bytes(&["cp", "c:/in/streamed", "-"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tar_files(&out)[0].0, "streamed");
    // Into something that is not a directory: refused.
    let mut cp = env.0.command(["cp", "-", "c:/in/streamed"]);
    cp.stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cp.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/in/streamed is not a directory"));
}

#[test]
fn cp_stays_in_the_container_through_a_symlink_to_the_hosts_root() {
    let env = Env::new();
    // A secret on the host, and containers whose symlinks name it and the host's root.
    let secret = env.0.dir().join("secret");
    fs_err::write(&secret, "host secret\n").unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    let links = format!("ln -s / /hostroot && ln -s {secret} /leak");
    env.0
        .ok(["run", "--name", "stopped", "base", "sh", "-c", &links]);
    env.0.ok([
        "run",
        "-d",
        "--name",
        "running",
        "base",
        "sh",
        "-c",
        &format!("{links} && while [ ! -e /go ]; do sleep 0.05; done; cat /hostroot/go"),
    ]);
    let planted = env.0.dir().join("planted");
    let host_file = env.0.dir().join("f");
    fs_err::write(&host_file, "from the host\n").unwrap();
    let host_file = host_file.to_str().unwrap().to_owned();
    let out_dir = env.0.dir().join("out");
    fs_err::create_dir(&out_dir).unwrap();
    if let Some(u) = crate::support::test_user() {
        std::os::unix::fs::chown(&out_dir, Some(u.uid), Some(u.gid)).unwrap();
    }
    for c in ["stopped", "running"] {
        // Reading through a link to the host's file or root finds the container's (nothing).
        let err = env
            .0
            .fails(["cp", "-L", &format!("{c}:/leak"), out_dir.to_str().unwrap()]);
        assert!(err.contains("could not find the file /leak"), "{c}: {err}");
        let err = env.0.fails([
            "cp",
            &format!("{c}:/hostroot{secret}"),
            out_dir.to_str().unwrap(),
        ]);
        assert!(err.contains("could not find the file"), "{c}: {err}");
        // Writing through /hostroot lands in the container's root, not the host's.
        let target = format!("{c}:/hostroot{}", planted.to_str().unwrap());
        let err = env.0.fails(["cp", &host_file, &target]);
        assert!(err.contains("does not exist"), "{c}: {err}");
        env.0
            .ok(["cp", &host_file, &format!("{c}:/hostroot/tmp/planted")]);
        assert!(!std::path::Path::new("/tmp/planted").exists());
        let (code, tar, err) = env.run_bytes(&["cp", &format!("{c}:/tmp/planted"), "-"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(tar_files(&tar)[0].2, b"from the host\n");
    }
    assert!(!planted.exists());
    // The running container sees what cp wrote, at once.
    env.0.ok(["cp", &host_file, "running:/go"]);
    assert_eq!(env.0.ok(["wait", "running"]), "0\n");
    assert_eq!(env.0.ok(["logs", "running"]), "from the host\n");
}

#[test]
fn walkthrough_exec_writes_a_file_that_diff_commit_and_export_carry() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "shell",
        "base",
        "sh",
        "-c",
        "sleep 1000",
    ]);
    // exec into it and write a file (and delete one, change one).
    env.0.ok([
        "exec",
        "shell",
        "sh",
        "-c",
        "printf 'written by exec\\n' > /root/made && chmod 600 /root/made \
         && rm /etc/group && echo changed >> /etc/passwd",
    ]);
    assert_eq!(
        env.0.ok(["diff", "shell"]),
        "C /etc\nD /etc/group\nC /etc/passwd\nC /root\nA /root/made\n"
    );
    // commit it to a new image; the new image has the file, bytes and mode.
    env.0.ok(["commit", "shell", "walk:1"]);
    let out = env.0.ok([
        "run",
        "--rm",
        "walk:1",
        "sh",
        "-c",
        "stat -c %a /root/made; cat /root/made; test -e /etc/group || echo no-group",
    ]);
    assert_eq!(out, "600\nwritten by exec\nno-group\n");
    // export and import it: the same file.
    let file = env.0.dir().join("walk.tar");
    env.0.ok(["export", "-o", file.to_str().unwrap(), "shell"]);
    env.0
        .ok(["import", file.to_str().unwrap(), "walk:imported"]);
    let out = env.0.ok([
        "run",
        "--rm",
        "walk:imported",
        "sh",
        "-c",
        "stat -c %a /root/made; cat /root/made",
    ]);
    assert_eq!(out, "600\nwritten by exec\n");
}

#[test]
fn exec_runs_in_the_containers_namespaces_with_dockers_options_and_exit_codes() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "c",
        "-e",
        "FROM_RUN=1",
        "--hostname",
        "box",
        "base",
        "sh",
        "-c",
        "echo $$ > /pid-of-init-child; sleep 1000",
    ]);
    wait_for_change(&env, "c", "A /pid-of-init-child");
    // Its PID namespace (the container's command is pid 2, after strata's init), its
    // hostname, its environment with -e over it, -w, -u, and the command's exit code.
    let (code, out, err) = env.run_bytes(&[
        "exec",
        "-e",
        "EXTRA=2",
        "-w",
        "/etc",
        "-u",
        "1000:1000",
        "c",
        "sh",
        "-c",
        "cat /pid-of-init-child; hostname; echo $FROM_RUN $EXTRA; pwd; id -u; id -g; exit 7",
    ]);
    assert_eq!(code, 7, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "2\nbox\n1 2\n/etc\n1000\n1000\n"
    );
    // The same seccomp filter and capabilities as the container's command.
    let status = |pid: &str| {
        env.0.ok([
            "exec",
            "c",
            "sh",
            "-c",
            &format!("grep -E '^(CapEff|CapBnd|Seccomp):' /proc/{pid}/status"),
        ])
    };
    assert_eq!(status("self"), status("2"));
    assert!(status("self").contains("Seccomp:\t2"), "{}", status("self"));
    // -i: stdin reaches the command; without it, it reads nothing.
    let mut cmd = env.0.command(["exec", "-i", "c", "cat"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"piped in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"piped in\n"[..])
    );
    assert_eq!(env.0.ok(["exec", "c", "cat"]), "");
    // -d returns at once, the command goes on in the container.
    env.0.ok([
        "exec",
        "-d",
        "c",
        "sh",
        "-c",
        "sleep 0.1; echo later > /detached",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env.0.ok(["diff", "c"]).contains("A /detached") {
        assert!(
            std::time::Instant::now() < deadline,
            "the detached exec never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // docker's codes: 127 not found, 126 not executable, 1 for a container not running.
    let (code, _, err) = env.run_bytes(&["exec", "c", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    let (code, _, err) = env.run_bytes(&["exec", "c", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    env.0.ok(["stop", "-t", "1", "c"]);
    let (code, _, err) = env.run_bytes(&["exec", "c", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("container c is not running"), "{err}");
    let (code, _, err) = env.run_bytes(&["exec", "nope", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No such container: nope"), "{err}");
}

#[test]
fn top_lists_the_containers_processes_and_only_them() {
    let env = Env::new();
    let out = env
        .0
        .ok(["run", "-d", "--name", "c", "base", "sleep", "1001"]);
    assert_eq!(out.trim().len(), 64, "{out}");
    env.0.ok(["exec", "-d", "c", "sleep", "1002"]);
    let top = env.0.ok(["top", "c"]);
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    // strata's init (PID 1 inside, as docker's with --init), the command, the exec'd one,
    // adopted by the init; nothing of the host's.
    assert_eq!(rows.len(), 3, "{top}");
    let pid = |row: &str| row.split_whitespace().nth(1).unwrap().to_owned();
    let ppid = |row: &str| row.split_whitespace().nth(2).unwrap().to_owned();
    let init = rows.iter().find(|r| r.ends_with("__sandbox")).expect(&top);
    for cmd in ["sleep 1001", "sleep 1002"] {
        let row = rows.iter().find(|r| r.ends_with(cmd)).expect(&top);
        assert_eq!(ppid(row), pid(init), "{top}");
    }
    // ps options, as docker's.
    let top = env.0.ok(["top", "c", "-o", "pid,args"]);
    assert_eq!(top.lines().count(), 4, "{top}");
    assert!(top.contains("sleep 1002"), "{top}");
    env.0.ok(["stop", "-t", "1", "c"]);
    let err = env.0.fails(["top", "c"]);
    assert!(err.contains("container c is not running"), "{err}");
}

/// `cmd` as one `sh` command line (its environment changes as `env K=V`), for `script -c`.
pub(crate) fn shell_line(cmd: &std::process::Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    // env's options (-u) before its assignments.
    let mut words = vec!["env".to_owned()];
    let mut sets = Vec::new();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sets.push(quote(&std::ffi::OsString::from(format!(
                "{}={}",
                k.to_string_lossy(),
                v.to_string_lossy()
            )))),
            None => words.push(format!("-u {}", quote(k))),
        }
    }
    words.extend(sets);
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

#[test]
fn exec_t_gives_the_command_a_terminal_and_relays_it_under_script() {
    let env = Env::new();
    env.0
        .ok(["run", "-d", "--name", "c", "base", "sleep", "1000"]);
    // -t: stdin and stdout are a terminal (output through it: lines end in CR LF).
    let (code, out, err) = env.run_bytes(&[
        "exec",
        "-t",
        "c",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo on-a-tty; exit 5",
    ]);
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (5, "on-a-tty\r\n"),
        "{err}"
    );
    // -it under script (a real terminal on the caller's side): an interactive shell reads
    // what is typed and exits with its code.
    let exec = env.0.command(["exec", "-it", "c", "sh"]);
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &shell_line(&exec), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = script.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"echo typed-$((6 * 7))\nexit 3\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("typed-42"), "{text}");
}

#[test]
fn docker_imports_an_export_and_loads_a_saved_commit_with_the_same_files() {
    let env = Env::new();
    env.0.ok([
        "run",
        "--name",
        "c",
        "base",
        "sh",
        "-c",
        "printf 'for docker\\n' > /made && chmod 640 /made && rm /etc/group",
    ]);
    let export = env.0.dir().join("export.tar");
    env.0.ok(["export", "-o", export.to_str().unwrap(), "c"]);
    env.0.ok([
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "c",
        "committed:1",
    ]);
    let saved = env.0.dir().join("saved.tar");
    env.0
        .ok(["save", "-o", saved.to_str().unwrap(), "committed:1"]);

    let dockerd = crate::dockerd::Dockerd::start();
    dockerd.ok(["import", export.to_str().unwrap(), "from-export:1"]);
    let loaded = dockerd.ok(["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("committed:1"), "{loaded}");
    // docker's own reading of each image's files: a created container's, copied out.
    for image in ["from-export:1", "committed:1"] {
        let id = dockerd.ok(["create", image, "true"]);
        let out = dockerd
            .docker(["cp", &format!("{}:/made", id.trim()), "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = tar_files(&out.stdout);
        assert_eq!(files.len(), 1, "{image}");
        assert_eq!(
            (files[0].1 & 0o7777, files[0].2.as_slice()),
            (0o640, &b"for docker\n"[..]),
            "{image}"
        );
        let gone = dockerd
            .docker(["cp", &format!("{}:/etc/group", id.trim()), "-"])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "{image}: /etc/group was deleted");
    }
    let config = dockerd.ok([
        "image",
        "inspect",
        "-f",
        "{{json .Config.Cmd}}",
        "committed:1",
    ]);
    assert_eq!(config.trim(), "[\"cat\",\"/made\"]");
}

/// Whether the kernel says the freezer cgroup `pause` made for container `id` is frozen;
/// `None` when there is no such cgroup.
fn kernel_frozen(id: &str) -> Option<bool> {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let events = format!("/sys/fs/cgroup/strata-paused/{id}/cgroup.events");
        let text = fs_err::read_to_string(events).ok()?;
        Some(text.lines().any(|l| l == "frozen 1"))
    } else {
        let state = format!("/sys/fs/cgroup/freezer/strata-paused/{id}/freezer.state");
        Some(fs_err::read_to_string(state).ok()?.trim() == "FROZEN")
    }
}

#[test]
fn pause_freezes_a_container_that_ps_shows_paused_and_stop_still_ends() {
    let env = Env::new();
    let id = env.0.ok([
        "run",
        "-d",
        "--name",
        "c",
        "base",
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done",
    ]);
    let id = id.trim().to_owned();
    if crate::support::test_user().is_some() {
        // Rootless strata makes no cgroup, so there is no freezer to use.
        let err = env.0.fails(["pause", "c"]);
        assert!(err.contains("rootless strata cannot use"), "{err}");
        return;
    }
    assert_eq!(env.0.ok(["pause", "c"]), "c\n");
    assert_eq!(kernel_frozen(&id), Some(true));
    let ps = env.0.ok(["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    let state = &env.inspect("c")["State"];
    assert_eq!(
        (&state["Status"], &state["Paused"]),
        (&Value::from("paused"), &Value::from(true))
    );
    let err = env.0.fails(["pause", "c"]);
    assert!(err.contains("container c is already paused"), "{err}");
    let err = env.0.fails(["exec", "c", "true"]);
    assert!(
        err.contains("container c is paused, unpause the container before exec"),
        "{err}"
    );

    assert_eq!(env.0.ok(["unpause", "c"]), "c\n");
    assert_ne!(kernel_frozen(&id), Some(true));
    let ps = env.0.ok(["ps"]);
    assert!(ps.contains(" Up ") && !ps.contains("(Paused)"), "{ps}");
    let state = &env.inspect("c")["State"];
    assert_eq!(
        (&state["Status"], &state["Paused"]),
        (&Value::from("running"), &Value::from(false))
    );
    let err = env.0.fails(["unpause", "c"]);
    assert!(err.contains("container c is not paused"), "{err}");
    env.0.ok(["exec", "c", "true"]);

    // Paused again, stop's signal reaches it once thawed: its trap runs.
    env.0.ok(["pause", "c"]);
    env.0.ok(["stop", "-t", "10", "c"]);
    assert_eq!(env.0.ok(["wait", "c"]), "7\n");
    assert_eq!(env.0.ok(["logs", "c"]), "got-term\n");
    assert_ne!(kernel_frozen(&id), Some(true));
    let err = env.0.fails(["pause", "c"]);
    assert!(err.contains("container c is not running"), "{err}");
}
