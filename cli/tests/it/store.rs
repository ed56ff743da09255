//! The image store end to end: import, save, load, inspect, history, tag, rmi, prune, check,
//! with external tools (skopeo, umoci, the conformance comparer) reading what we write, broken
//! archives refused without a trace, and concurrent and killed processes leaving a sound store.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::TestEnv;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds a small root filesystem from busybox-static with the modes, owners and links a real
/// one has, and returns `(dir, tarball)`. `marker` makes each rootfs (and image) distinct.
fn rootfs(env: &TestEnv, marker: &str, extra_bytes: usize) -> (PathBuf, PathBuf) {
    let dir = env.dir().join(format!("rootfs-{marker}"));
    for d in ["bin", "etc", "usr/bin", "tmp", "var/empty", "opt"] {
        fs_err::create_dir_all(dir.join(d)).unwrap();
    }
    fs_err::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/etc/motd", dir.join("opt/link-abs")).unwrap();
    fs_err::write(dir.join("etc/motd"), format!("hello {marker}\n")).unwrap();
    fs_err::hard_link(dir.join("etc/motd"), dir.join("etc/motd.hard")).unwrap();
    fs_err::write(dir.join("etc/secret"), "s3cr3t\n").unwrap();
    fs_err::write(dir.join("usr/bin/suid"), "#!/bin/sh\n").unwrap();
    // Deterministic filler that compresses poorly, for the kill test.
    let filler = crate::support::incompressible(extra_bytes);
    fs_err::write(dir.join("opt/filler"), filler).unwrap();
    let mode = |p: &str, m: u32| {
        fs_err::set_permissions(dir.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode("etc/secret", 0o600);
    mode("usr/bin/suid", 0o4755);
    mode("tmp", 0o1777);
    mode("var/empty", 0o700);
    let status = Command::new("chown")
        .args(["-h", "1000:2000"])
        .arg(dir.join("etc/secret"))
        .status()
        .unwrap();
    assert!(status.success());
    let tarball = env.dir().join(format!("rootfs-{marker}.tar"));
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "--sort=name",
            "--mtime=@1700000000",
            "-C",
        ])
        .arg(&dir)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    (dir, tarball)
}

/// What a tree holds, path by path: type, mode, owner, content or target, and which paths are
/// hardlinks of each other (mtimes are not compared).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs_err::symlink_metadata(&p).unwrap();
            let kind = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_owned()
            } else if m.is_symlink() {
                format!("symlink -> {}", fs_err::read_link(&p).unwrap().display())
            } else {
                let bytes = fs_err::read(&p).unwrap();
                let link = if m.nlink() > 1 {
                    let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                    format!(" link-group {first}")
                } else {
                    String::new()
                };
                format!("file {} bytes {:x}{link}", bytes.len(), hash(&bytes))
            };
            let mode = if m.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.insert(
                rel,
                format!("{kind} mode {mode:o} owner {}:{}", m.uid(), m.gid()),
            );
        }
    }
    out
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a comparison.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The store's durable state: the index and every blob name.
fn store_state(root: &Path) -> (String, Vec<String>) {
    let index = fs_err::read_to_string(root.join("images.json")).unwrap_or_default();
    let mut blobs: Vec<String> = fs_err::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (index, blobs)
}

/// Rewrites a tar, letting `edit` drop a member (return `None`) or change its bytes.
fn rewrite_tar(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut archive = tar::Archive::new(fs_err::File::open(src).unwrap());
    let mut out = tar::Builder::new(fs_err::File::create(dst).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut header = entry.header().clone();
        if let Some(data) = edit(&name, data) {
            header.set_size(data.len() as u64);
            header.set_cksum();
            out.append(&header, &data[..]).unwrap();
        }
    }
    out.finish().unwrap();
}

fn import(env: &TestEnv, tarball: &Path, tag: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["import".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(tarball.display().to_string());
    args.push(tag.into());
    env.ok(&args).trim().to_owned()
}

pub(crate) fn layer_of(saved: &Path) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(saved)
        .arg("manifest.json")
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m[0]["Layers"][0].as_str().unwrap().to_owned()
}

#[test]
fn round_trip_import_save_load_save_is_byte_identical() {
    for compression in ["gzip", "zstd"] {
        let env = TestEnv::new();
        let (_, tarball) = rootfs(&env, "rt", 0);
        let id = import(
            &env,
            &tarball,
            "conf-base:latest",
            &["--compression", compression],
        );
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        let first = env.dir().join("first.tar");
        env.ok(["save", "-o", first.to_str().unwrap(), "conf-base:latest"]);

        let fresh = TestEnv::new();
        let loaded = fresh.ok(["load", "-i", first.to_str().unwrap()]);
        assert_eq!(loaded, "Loaded image: conf-base:latest\n");
        let second = env.dir().join("second.tar");
        fresh.ok(["save", "-o", second.to_str().unwrap(), "conf-base"]);
        assert!(
            fs_err::read(&first).unwrap() == fs_err::read(&second).unwrap(),
            "{compression}: save → load → save changed bytes"
        );
        let inspect: serde_json::Value =
            serde_json::from_str(&fresh.ok(["inspect", "conf-base"])).unwrap();
        assert_eq!(inspect[0]["Id"], id.as_str());
        let layer = layer_of(&first);
        let blob = fs_err::read(fresh.root().join(&layer)).unwrap();
        let magic: &[u8] = if compression == "gzip" {
            &[0x1f, 0x8b]
        } else {
            &[0x28, 0xb5, 0x2f, 0xfd]
        };
        assert!(blob.starts_with(magic), "{compression} layer");
        assert_eq!(
            fresh.ok(["system", "check"]),
            "checked 1 images and 3 blobs: ok\n"
        );
    }
}

#[test]
fn shared_save_recompresses_on_request_and_keeps_the_image_id() {
    let env = TestEnv::new();
    let (dir, tarball) = rootfs(&env, "recompress", 0);
    let id = import(&env, &tarball, "rc:1", &[]);
    let zst = env.dir().join("rc-zstd.tar");
    env.ok([
        "save",
        "--compression",
        "zstd",
        "-o",
        zst.to_str().unwrap(),
        "rc:1",
    ]);
    let fresh = TestEnv::new();
    assert_eq!(
        fresh.ok(["load", "-i", zst.to_str().unwrap()]),
        "Loaded image: rc:1\n"
    );
    let v: serde_json::Value = serde_json::from_str(&fresh.ok(["inspect", "rc:1"])).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    let layer = fs_err::read(fresh.root().join(layer_of(&zst))).unwrap();
    assert!(layer.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    // Debian's umoci predates zstd layers; the conformance comparer reads them.
    let compare =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/diff/compare.py");
    let out = Command::new("python3")
        .arg(compare)
        .arg("show")
        .arg(&zst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["fs"]["/bin/busybox"]["size"],
        fs_err::metadata(dir.join("bin/busybox")).unwrap().len()
    );
    assert_eq!(
        fresh.ok(["system", "check"]),
        "checked 1 images and 3 blobs: ok\n"
    );
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    let leftovers = fs_err::read_dir(env.root().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "recompressed layers do not stay behind");
}

#[test]
fn skopeo_reads_the_archive_as_oci_and_as_docker() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "sk", 0);
    let id = import(&env, &tarball, "sk:1", &[]);
    let saved = env.dir().join("sk.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "sk:1"]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "sk:1"])).unwrap();
    let diff_id = inspect[0]["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let layer = format!(
        "sha256:{}",
        layer_of(&saved).trim_start_matches("blobs/sha256/")
    );
    for (transport, expect_layer) in [("oci-archive", &layer), ("docker-archive", &diff_id)] {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("{transport}:{}", saved.display())])
            .output()
            .expect("skopeo is installed (.ci/run)");
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], "amd64", "{transport}");
        assert_eq!(v["Os"], "linux");
        assert_eq!(
            v["Layers"][0].as_str(),
            Some(expect_layer.as_str()),
            "{transport}"
        );
        let raw = Command::new("skopeo")
            .args([
                "inspect",
                "--config",
                &format!("{transport}:{}", saved.display()),
            ])
            .output()
            .unwrap();
        let config: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0].as_str(),
            Some(diff_id.as_str())
        );
    }
    assert!(id.starts_with("sha256:"));
}

#[test]
fn umoci_unpacks_the_saved_image_to_the_input_rootfs() {
    let env = TestEnv::new();
    let (dir, tarball) = rootfs(&env, "umoci", 0);
    import(&env, &tarball, "um:latest", &[]);
    let saved = env.dir().join("um.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "um:latest"]);
    let layout = env.dir().join("layout");
    fs_err::create_dir(&layout).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let bundle = env.dir().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:latest", layout.display())])
        .arg(&bundle)
        .output()
        .expect("umoci is installed (.ci/run)");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = tree(&dir);
    let got = tree(&bundle.join("rootfs"));
    assert_eq!(got, want);
    assert!(want["usr/bin/suid"].contains("mode 4755"));
    assert!(want["etc/secret"].contains("owner 1000:2000"));
    assert!(want["etc/motd.hard"].contains("link-group"));
}

#[test]
fn shared_the_conformance_comparer_reads_the_saved_archive() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "conf", 0);
    import(
        &env,
        &tarball,
        "conf-base:latest",
        &["--change", "CMD [\"/bin/sh\"]", "--change", "ENV A=b"],
    );
    let saved = env.dir().join("out.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "conf-base:latest"]);
    let compare =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/diff/compare.py");
    let out = Command::new("python3")
        .arg(compare)
        .arg("show")
        .arg(&saved)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["config"]["Env"], serde_json::json!(["A=b"]));
    assert_eq!(v["fs"]["/usr/bin/suid"]["mode"], "4755");
    assert_eq!(v["fs"]["/bin/sh"]["target"], "busybox");
    assert_eq!(v["fs"]["/etc/secret"]["uid"], 1000);
}

/// Each broken archive is refused with a message naming the problem, and the store (which
/// already holds an image) is byte for byte what it was, and sound.
#[test]
fn broken_archives_are_refused_and_change_nothing() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "good", 0);
    import(&env, &tarball, "good:1", &[]);
    let (_, other) = rootfs(&env, "other", 0);
    let source = TestEnv::new();
    import(&source, &other, "other:1", &[]);
    let saved = env.dir().join("other.tar");
    source.ok(["save", "-o", saved.to_str().unwrap(), "other:1"]);
    let layer = layer_of(&saved);
    let before = store_state(&env.root());

    let truncated = env.dir().join("truncated.tar");
    let bytes = fs_err::read(&saved).unwrap();
    fs_err::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let corrupt = env.dir().join("corrupt.tar");
    rewrite_tar(&saved, &corrupt, |name, mut data| {
        if name == layer {
            let mid = data.len() / 2;
            data[mid] ^= 0xff;
        }
        Some(data)
    });

    let missing = env.dir().join("missing.tar");
    rewrite_tar(&saved, &missing, |name, data| {
        (name != layer).then_some(data)
    });

    for (file, expect) in [
        (&truncated, "truncated"),
        (&corrupt, "should have digest"),
        (
            &missing,
            &format!(
                "layer sha256:{} is missing",
                layer.trim_start_matches("blobs/sha256/")
            )[..],
        ),
    ] {
        let err = env.fails(["load", "-i", file.to_str().unwrap()]);
        assert!(err.starts_with("error: failed to load"), "{err}");
        assert!(err.contains(expect), "{}: {err}", file.display());
        assert_eq!(store_state(&env.root()), before, "{}", file.display());
        assert_eq!(
            env.ok(["system", "check"]),
            "checked 1 images and 3 blobs: ok\n"
        );
    }
    let err = env.fails(["import", truncated.to_str().unwrap(), "t:1"]);
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(store_state(&env.root()), before);
}

#[test]
fn system_check_reports_a_corrupt_and_a_missing_blob() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "chk", 0);
    let id = import(&env, &tarball, "chk:1", &[]);
    let saved = env.dir().join("chk.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "chk:1"]);
    let layer = env.root().join(layer_of(&saved));
    let mut bytes = fs_err::read(&layer).unwrap();
    bytes[100] ^= 1;
    fs_err::set_permissions(&layer, std::fs::Permissions::from_mode(0o644)).unwrap();
    fs_err::write(&layer, bytes).unwrap();
    let config = env
        .root()
        .join("blobs/sha256")
        .join(id.trim_start_matches("sha256:"));
    fs_err::remove_file(config).unwrap();
    let out = env.command(["system", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("content has digest"), "{text}");
    assert!(
        text.contains(&format!("config {id} is missing or corrupt")),
        "{text}"
    );
}

#[test]
fn eight_processes_import_into_one_root_at_once() {
    let env = TestEnv::new();
    let tarballs: Vec<PathBuf> = (0..8)
        .map(|i| rootfs(&env, &format!("p{i}"), 0).1)
        .collect();
    let children: Vec<_> = tarballs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            env.command(["import", t.to_str().unwrap(), &format!("par{i}:latest")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ids = env.ok(["images", "-q"]);
    assert_eq!(ids.lines().count(), 8, "{ids}");
    let repos = env.ok(["images", "--format", "json"]);
    for i in 0..8 {
        assert!(
            repos.contains(&format!("\"Repository\":\"par{i}\"")),
            "{repos}"
        );
    }
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
}

#[test]
fn sigkill_in_the_middle_of_load_leaves_a_sound_store() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "kill", 8 << 20);
    let source = TestEnv::new();
    import(&source, &tarball, "killme:1", &[]);
    let saved = env.dir().join("kill.tar");
    source.ok(["save", "-o", saved.to_str().unwrap(), "killme:1"]);
    let bytes = fs_err::read(&saved).unwrap();

    let mut child = env
        .command(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    stdin.flush().unwrap();
    // Wait until the load is visibly mid-way: a staged blob with bytes in it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let staged = || {
        fs_err::read_dir(env.root().join("tmp"))
            .ok()
            .into_iter()
            .flatten()
            .any(|d| {
                let p = d.unwrap().path();
                p.is_dir()
                    && fs_err::read_dir(&p)
                        .unwrap()
                        .any(|f| f.unwrap().metadata().unwrap().len() > 0)
            })
    };
    while !staged() {
        assert!(
            std::time::Instant::now() < deadline,
            "load never staged anything"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);

    assert_eq!(
        env.ok(["system", "check"]),
        "checked 0 images and 0 blobs: ok\n"
    );
    assert_eq!(env.ok(["images", "-q"]), "");
    let leftovers: Vec<_> = fs_err::read_dir(env.root().join("tmp")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "the dead load's staging dir was cleaned: {leftovers:?}"
    );
    assert_eq!(
        env.ok(["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: killme:1\n"
    );
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
}

#[test]
fn images_tag_rmi_and_prune_speak_docker() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "cmd", 0);
    let id = import(&env, &tarball, "app:1", &[]);
    let short = &id["sha256:".len()..][..12];
    env.ok(["tag", "app:1", "localhost:5000/team/app:2"]);
    let table = env.ok(["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{table}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("app ") && l.contains(" 1 ") && l.contains(short)),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("localhost:5000/team/app ")),
        "{table}"
    );
    let digests = env.ok(["images", "--digests"]);
    assert!(digests.lines().next().unwrap().contains("DIGEST"));
    assert!(digests.contains("sha256:"));

    // Replacing app:1 leaves the old image dangling.
    let (_, other) = rootfs(&env, "cmd2", 0);
    import(&env, &other, "app:1", &[]);
    let table = env.ok(["images"]);
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(short)),
        "still tagged as localhost:5000/team/app:2: {table}"
    );
    env.ok(["rmi", "localhost:5000/team/app:2"]);
    let table = env.ok(["images"]);
    assert!(
        !table.contains(short),
        "untagging the last tag deleted it: {table}"
    );

    let err = env.fails(["rmi", "nope:1"]);
    assert!(err.contains("no such image: nope:1"), "{err}");
    let out = env.ok(["rmi", "app:1"]);
    assert!(
        out.starts_with("Untagged: app:1\nDeleted: sha256:"),
        "{out}"
    );
    assert_eq!(env.ok(["images", "-q"]), "");
    let df = env.ok(["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(
        env.ok(["image", "prune", "-f"])
            .starts_with("Total reclaimed space: ")
    );
    let blobs = fs_err::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "nothing references any blob now");
}

#[test]
fn a_dangling_image_is_listed_as_none_and_pruned() {
    let env = TestEnv::new();
    let (_, a) = rootfs(&env, "d1", 0);
    let (_, b) = rootfs(&env, "d2", 0);
    let old = import(&env, &a, "d:1", &[]);
    import(&env, &b, "d:1", &[]);
    let short = &old["sha256:".len()..][..12];
    let table = env.ok(["images"]);
    let row = table.lines().find(|l| l.contains(short)).unwrap();
    assert!(row.starts_with("<none>       <none>"), "{table}");
    let out = env.ok(["image", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Images:\ndeleted: {old}\n")),
        "{out}"
    );
    assert!(!env.ok(["images"]).contains(short));
    assert!(env.ok(["images"]).contains("d "));
}

#[test]
fn inspect_and_history_look_like_docker() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "ins", 0);
    let gz = env.dir().join("rootfs.tar.zst");
    let status = Command::new("zstd")
        .arg("-q")
        .arg(&tarball)
        .arg("-o")
        .arg(&gz)
        .status()
        .unwrap();
    assert!(status.success());
    // From stdin, zstd-compressed, with changes.
    let out = env
        .command([
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            "-c",
            "ENV PATH=/bin",
            "-c",
            "WORKDIR /srv",
            "-c",
            "EXPOSE 8080",
            "-c",
            "LABEL a=b",
            "-c",
            "USER 1000",
            "-",
            "ins:1",
        ])
        .stdin(fs_err::File::open(&gz).unwrap().into_parts().0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let text = env.ok(["inspect", "ins:1"]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["RepoTags"], serde_json::json!(["ins:1"]));
    assert!(
        i["RepoDigests"][0]
            .as_str()
            .unwrap()
            .starts_with("ins@sha256:")
    );
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(i["Config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(i["Config"]["WorkingDir"], "/srv");
    assert_eq!(
        i["Config"]["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}})
    );
    assert_eq!(i["Config"]["Labels"]["a"], "b");
    assert_eq!(i["Config"]["User"], "1000");
    assert_eq!(
        (i["Architecture"].as_str(), i["Os"].as_str()),
        (Some("amd64"), Some("linux"))
    );
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["Comment"], "Imported from -");
    let tar_len = fs_err::metadata(&tarball).unwrap().len();
    assert_eq!(i["Size"].as_u64(), Some(tar_len));
    assert!(i["Created"].as_str().unwrap().ends_with('Z'));
    let at = |k: &str| {
        text.find(&format!("\n        \"{k}\": "))
            .unwrap_or(usize::MAX)
    };
    let order = [
        "Id",
        "RepoTags",
        "RepoDigests",
        "Created",
        "Config",
        "Architecture",
        "RootFS",
    ];
    assert!(
        order.windows(2).all(|w| at(w[0]) < at(w[1])),
        "docker's field order: {text}"
    );

    let history = env.ok(["history", "ins:1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    );
    assert!(
        lines[1].starts_with(&id["sha256:".len()..][..12]),
        "{history}"
    );
    assert!(lines[1].contains("Imported from -"), "{history}");
    let err = env.fails(["inspect", "missing:1"]);
    assert!(err.contains("no such image: missing:1"), "{err}");
}

/// A docker archive as older docker versions wrote it (uncompressed `<id>/layer.tar`, config
/// `<hex>.json`), with an empty-layer history entry: loads, and history shows 0B for it.
#[test]
fn a_legacy_docker_archive_loads_and_empty_layers_show_0b() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "legacy", 0);
    let layer = fs_err::read(&tarball).unwrap();
    let diff_id = {
        let out = Command::new("sha256sum").arg(&tarball).output().unwrap();
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        )
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Healthcheck": {"Test": ["NONE"]}, "Shell": ["/bin/ash", "-c"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": "2020-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
            {"created": "2020-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", "empty_layer": true}
        ]
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!([{
        "Config": "cfg.json", "RepoTags": ["legacy:old"], "Layers": ["abc/layer.tar"]
    }]);
    let archive = env.dir().join("legacy.tar");
    let mut b = tar::Builder::new(fs_err::File::create(&archive).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("abc/layer.tar", &layer);
    add("cfg.json", &config_bytes);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.finish().unwrap();
    drop(b);
    // gzip-wrapped, as `docker save | gzip` gives.
    let gz = env.dir().join("legacy.tar.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", archive.display(), gz.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        env.ok(["load", "-i", gz.to_str().unwrap()]),
        "Loaded image: legacy:old\n"
    );
    let history = env.ok(["history", "--no-trunc", "legacy:old"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(
        lines[1].contains("CMD [\"/bin/sh\"]") && lines[1].contains("  0B"),
        "{history}"
    );
    assert!(
        lines[2].starts_with("<missing>") && lines[2].contains("ADD file:abc"),
        "{history}"
    );
    let v: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "legacy:old"])).unwrap();
    // The config is kept byte for byte: the image ID is its digest, fields and all.
    let id = {
        let p = env.dir().join("cfg");
        fs_err::write(&p, &config_bytes).unwrap();
        let out = Command::new("sha256sum").arg(&p).output().unwrap();
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        )
    };
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Config"]["Healthcheck"]["Test"][0], "NONE");
    assert_eq!(v[0]["Config"]["Shell"][0], "/bin/ash");
}

/// SIGKILL at assorted points of `import` (compressing, committing blobs, writing the index):
/// the store stays sound every time and the next import works.
#[test]
fn sigkill_at_any_point_of_import_leaves_a_sound_store() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "killimport", 4 << 20);
    for delay_ms in [1, 5, 15, 30, 60, 100, 150, 250] {
        let mut child = env
            .command(["import", tarball.to_str().unwrap(), "victim:1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let check = env.command(["system", "check"]).output().unwrap();
        assert!(
            check.status.success(),
            "after a kill at {delay_ms} ms: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    let id = import(&env, &tarball, "victim:1", &[]);
    // Imports that finished before their kill left dangling images (each has its own
    // creation time); the tag is on the last one, and prune takes the rest.
    let v: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "victim:1"])).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    env.ok(["image", "prune", "-f"]);
    assert_eq!(env.ok(["images", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        env.ok(["system", "check"]),
        "checked 1 images and 3 blobs: ok\n"
    );
}

/// Imports, prunes and removals racing on one root: nothing tagged is lost, nothing dangles.
#[test]
fn imports_prunes_and_removals_race_without_losing_blobs() {
    let env = TestEnv::new();
    let tarballs: Vec<PathBuf> = (0..6)
        .map(|i| rootfs(&env, &format!("race{i}"), 0).1)
        .collect();
    let (_, doomed) = rootfs(&env, "doomed", 0);
    import(&env, &doomed, "doomed:1", &[]);
    let mut children = Vec::new();
    for (i, t) in tarballs.iter().enumerate() {
        children.push(env.command(["import", t.to_str().unwrap(), &format!("race{i}:1")]));
        if i % 2 == 0 {
            children.push(env.command(["image", "prune", "-f"]));
        }
    }
    children.push(env.command(["rmi", "doomed:1"]));
    let running: Vec<_> = children
        .iter_mut()
        .map(|c| {
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in running {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..6 {
        env.ok(["inspect", &format!("race{i}:1")]);
    }
    assert!(env.fails(["inspect", "doomed:1"]).contains("no such image"));
    env.ok(["image", "prune", "-f"]);
    assert_eq!(
        env.ok(["system", "check"]),
        "checked 6 images and 18 blobs: ok\n"
    );
}

/// The same image from an OCI archive and from a docker archive is one image, stored once; a
/// relative `--root` works from any directory.
#[test]
fn loading_the_same_image_twice_stores_it_once() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "twice", 0);
    import(&env, &tarball, "twice:1", &[]);
    let saved = env.dir().join("twice.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "twice:1"]);
    let docker = env.dir().join("twice-docker.tar");
    let out = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci-archive:{}", saved.display()))
        .arg(format!("docker-archive:{}:other/name:v2", docker.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(crate::support::strata_bin())
        .current_dir(env.dir())
        .args(["--root", "rel-root", "load", "-i", "twice.tar"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(crate::support::strata_bin())
        .current_dir(env.dir())
        .args(["--root", "rel-root", "load", "-i", "twice-docker.tar"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: other/name:v2\n"
    );
    let blobs = fs_err::read_dir(env.dir().join("rel-root/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3, "manifest, config and one layer, stored once");
}

#[test]
fn issue_10_import_change_goes_through_the_frontend_as_docker_import_does() {
    let env = TestEnv::new();
    let (_, tarball) = rootfs(&env, "chg", 0);
    let tarball = tarball.to_str().unwrap();
    env.ok([
        "import",
        "--change",
        "EXPOSE 8000-8002",
        "--change",
        "ENV APP=/srv/app NAME=\"my app\"",
        "--change",
        "ENV DATA=\"$APP/data\" LITERAL='$APP'",
        "--change",
        "WORKDIR $APP",
        tarball,
        "chg:1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "chg:1"])).unwrap();
    let config = &v[0]["Config"];
    assert_eq!(
        config["ExposedPorts"],
        serde_json::json!({"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}})
    );
    assert_eq!(
        config["Env"],
        serde_json::json!([
            "APP=/srv/app",
            "NAME=my app",
            "DATA=/srv/app/data",
            "LITERAL=$APP"
        ])
    );
    assert_eq!(config["WorkingDir"], "/srv/app");

    let err = env.fails(["import", "--change", "RUN rm -rf /", tarball, "chg:2"]);
    assert!(
        err.contains(
            "error: invalid --change \"RUN rm -rf /\"\ncaused by: RUN is not a valid change command"
        ),
        "{err}"
    );
    assert_eq!(
        env.ok(["images", "-q"]).lines().count(),
        1,
        "nothing imported"
    );
}
