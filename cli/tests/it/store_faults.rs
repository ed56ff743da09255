//! The store on a hostile filesystem (issue 12 §6, research fault cases X08, X09, X19): a disk
//! that fills up while a layer or the image index is written, a read-only store, and a store
//! that belongs to another user. Each fails with a message naming the store's path and the
//! reason, leaves nothing half-written that a command could reach, and the store works again
//! once the cause is gone.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::{TestEnv, staging_entries};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem mounted on a directory for the life of the guard (lazily unmounted on drop).
struct Mounted(PathBuf);

impl Mounted {
    /// A tmpfs of `size` (`32m`) on `at`, made if missing.
    fn tmpfs(at: &Path, size: &str) -> Mounted {
        fs_err::create_dir_all(at).unwrap();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0711"),
                "tmpfs",
            ],
            at,
        );
        Mounted(at.to_owned())
    }

    /// `at` bind-mounted on itself, read-only.
    fn read_only_bind(at: &Path) -> Mounted {
        mount(&["--bind"], at);
        let guard = Mounted(at.to_owned());
        let status = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "remount {} read-only", at.display());
        guard
    }
}

fn mount(args: &[&str], at: &Path) {
    let mut c = Command::new("mount");
    c.args(args);
    if args == ["--bind"] {
        c.arg(at);
    }
    let status = c.arg(at).status().unwrap();
    assert!(status.success(), "mount {args:?} {}", at.display());
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every path under `root` with its length (files) — to compare a store before and after.
fn listing(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs_err::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs_err::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            out.push((rel, if m.is_file() { m.len() } else { 0 }));
        }
    }
    out.sort();
    out
}

/// `strata images`: repository, tag and ID of each (not the time since, which moves on).
fn images(env: &TestEnv) -> Vec<String> {
    env.ok(["images"])
        .lines()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Runs strata with `args`; asserts exit code 1 and returns stderr.
fn fails_with(env: &TestEnv, args: &[&std::ffi::OsStr]) -> String {
    let out = env.command(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn issue_12_a_disk_that_fills_while_a_layer_is_written_fails_clearly_and_frees_it() {
    let env = TestEnv::new();
    let base = env.base_tarball();
    let _fs = Mounted::tmpfs(&env.root(), "32m");
    env.ok([os("import"), base.as_os_str(), os("base")]);
    // 20 MB of random bytes fit as the RUN's upper dir, but not twice: the layer (gzip
    // cannot shrink them) runs out of space while it is written.
    let ctx = env.context(
        "big",
        &[(
            "Dockerfile",
            "FROM base\nRUN head -c 20000000 /dev/urandom > /big\n",
        )],
    );
    let stderr = fails_with(&env, &[os("build"), os("-t"), os("big:1"), ctx.as_os_str()]);
    assert!(
        stderr.to_lowercase().contains("no space left on device"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&env.root().join("tmp").display().to_string()),
        "the message names the file being written: {stderr}"
    );
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    assert_eq!(staging_entries(&env.root()), Vec::<String>::new());
    assert_eq!(env.ok(["images", "-q", "big"]), "");

    // The big file gone, the next build works in the space the failed one gave back.
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM base\nRUN head -c 1000000 /dev/urandom > /big\n",
    )
    .unwrap();
    env.ok([
        os("build"),
        os("-q"),
        os("-t"),
        os("big:1"),
        ctx.as_os_str(),
    ]);
    assert_eq!(env.ok(["images", "-q", "big"]).lines().count(), 1);
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
}

#[test]
fn issue_12_a_full_disk_while_the_index_is_written_keeps_the_old_index() {
    let env = TestEnv::new();
    let base = env.base_tarball();
    let _fs = Mounted::tmpfs(&env.root(), "16m");
    env.ok([os("import"), base.as_os_str(), os("base")]);
    env.ok(["tag", "base", "old:1"]);
    let before = images(&env);
    // Fill the filesystem to the last page.
    let filler = env.root().join("filler");
    let mut f = fs_err::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&chunk[..512]).is_ok() {}
    drop(f);

    let stderr = fails_with(&env, &[os("tag"), os("base"), os("new:1")]);
    assert!(
        stderr.to_lowercase().contains("no space left on device"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&env.root().display().to_string()),
        "{stderr}"
    );
    assert_eq!(images(&env), before, "the old index is still read");
    env.ok(["inspect", "old:1"]);
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    assert_eq!(staging_entries(&env.root()), Vec::<String>::new());

    fs_err::remove_file(&filler).unwrap();
    env.ok(["tag", "base", "new:1"]);
    assert!(images(&env).iter().any(|l| l.starts_with("new 1 ")));
}

#[test]
fn issue_12_a_read_only_store_is_read_and_refuses_every_write_at_start() {
    let env = TestEnv::with_base("base");
    env.ok(["tag", "base", "app:1"]);
    let saved = env.dir().join("saved.tar");
    env.ok([os("save"), os("-o"), saved.as_os_str(), os("app:1")]);
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUN echo hi > /hi\n")]);
    let listed = images(&env);
    let _ro = Mounted::read_only_bind(&env.root());
    let before = listing(&env.root());

    // Reading needs no write.
    assert_eq!(images(&env), listed);
    env.ok(["inspect", "app:1"]);
    env.ok(["history", "app:1"]);
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    // `strata check` judges $FOO by the base image's ENV, which only the store has.
    let lint = env.context("lint", &[("Dockerfile", "FROM base\nCOPY $FOO /\n")]);
    let out = env
        .command([os("check"), lint.join("Dockerfile").as_os_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("'$FOO' [UndefinedVar]"), "{stdout}");
    let copy = env.dir().join("copy.tar");
    env.ok([os("save"), os("-o"), copy.as_os_str(), os("app:1")]);
    assert_eq!(fs_err::read(&copy).unwrap(), fs_err::read(&saved).unwrap());

    let root = env.root().display().to_string();
    for args in [
        vec![os("build"), os("-t"), os("new:1"), ctx.as_os_str()],
        vec![os("tag"), os("app:1"), os("app:2")],
        vec![os("rmi"), os("app:1")],
        vec![os("load"), os("-i"), saved.as_os_str()],
        vec![os("import"), saved.as_os_str(), os("imp:1")],
    ] {
        let stderr = fails_with(&env, &args);
        assert!(
            stderr.contains(&format!("cannot write to the store at {root}"))
                && stderr.to_lowercase().contains("read-only file system")
                && stderr.contains("hint: images, inspect, history, save and system check read"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(listing(&env.root()), before, "nothing changed");
}

#[test]
fn issue_12_root_refuses_a_store_owned_by_another_user_and_says_why() {
    let env = TestEnv::with_base("base");
    let before = images(&env);
    std::os::unix::fs::chown(env.root(), Some(65534), Some(65534)).unwrap();
    let listed = listing(&env.root());

    let stderr = env.fails(["tag", "base", "mine:1"]);
    let root = env.root().display().to_string();
    assert!(
        stderr.contains(&format!(
            "the store at {root} is owned by uid 65534, not by uid 0 that strata runs as"
        )) && stderr.contains("hint: what strata writes in a store belongs to the user"),
        "{stderr}"
    );
    // Reading it leaves nothing of ours behind.
    assert_eq!(images(&env), before);
    assert_eq!(listing(&env.root()), listed);
}

#[test]
fn issue_12_another_user_is_told_permission_denied_on_root_s_store() {
    let env = TestEnv::with_base("base");
    // The scratch dir may be traversed; the store root is strata's (0711, root's).
    fs_err::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = listing(&env.root());
    let root = env.root().display().to_string();
    let uid = a_user_who_may_run_strata();
    for args in [["tag", "base", "mine:1"], ["rmi", "base", "-f"]] {
        let out = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(crate::support::strata_bin())
            .arg("--root")
            .arg(env.root())
            .args(args)
            .env("STRATA_CONFIG", env.config_path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot write to the store at {root}"))
                && stderr.to_lowercase().contains("permission denied"),
            "{stderr}"
        );
    }
    assert_eq!(listing(&env.root()), listed);
}

/// The uid of a user with subordinate ids in /etc/subuid (which strata run by a user other
/// than root needs: it becomes root of a user namespace of its own), else nobody's.
fn a_user_who_may_run_strata() -> u32 {
    let passwd = fs_err::read_to_string("/etc/passwd").unwrap();
    fs_err::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .find_map(|name| {
            passwd
                .lines()
                .find(|p| p.split(':').next() == Some(name))
                .and_then(|p| p.split(':').nth(2))
                .and_then(|uid| uid.parse().ok())
        })
        .unwrap_or(65534)
}

/// This boot's `unsettled/<boot id>/` in `env`'s store.
fn unsettled_dir(env: &TestEnv) -> PathBuf {
    let boot = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    env.root().join("unsettled").join(boot.trim())
}

/// The blobs marked unsettled in this boot (written without an fsync, not synced yet).
fn unsettled_blobs(env: &TestEnv) -> Vec<String> {
    let mut out: Vec<String> = match fs_err::read_dir(unsettled_dir(env)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(".blob").map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// The layer diff IDs of `image`, hex only (a build's layers are plain tars: blob digest =
/// diff ID).
fn layers_of(env: &TestEnv, image: &str) -> Vec<String> {
    crate::build::layer_ids(env, image)
        .iter()
        .map(|l| l.trim_start_matches("sha256:").to_owned())
        .collect()
}

/// Replaces a (read-only) blob's bytes, as a machine crash or a bad disk would.
fn tear(blob: &Path, bytes: &[u8]) {
    fs_err::set_permissions(blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    fs_err::write(blob, bytes).unwrap();
}

/// Issue 15: a build's blobs are not fsynced one by one; the build syncs them once before its
/// image is indexed, so none is left unsettled after a build that made an image.
#[test]
fn issue_15_a_build_syncs_its_blobs_before_the_image_is_indexed() {
    let env = TestEnv::with_base("base");
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUN echo one > /one\n")]);
    env.build_events(["-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(unsettled_blobs(&env), Vec::<String>::new());
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
}

/// Issue 15: a machine crash before that sync (simulated: a build that made no image left its
/// layer unsettled; its marker becomes another boot's, the blob loses its bytes) is repaired
/// by the next command: the torn blob is deleted, never served; the cache record naming it
/// misses, so the next build runs the step again and makes the same layer.
#[test]
fn issue_15_a_layer_torn_by_a_crash_before_the_sync_is_dropped_and_made_again() {
    let env = TestEnv::with_base("base");
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM base\nRUN echo torn > /torn\n")],
    );
    let out = env.dir().join("out");
    let dest = format!("type=local,dest={}", out.display());
    // The layer's mtimes clamped to one epoch: the step run again makes the same bytes, also
    // when the two runs are seconds apart.
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    env.build_events([&epoch[..], &["--output", &dest, ctx.to_str().unwrap()]].concat());
    let unsettled = unsettled_blobs(&env);
    assert_eq!(unsettled.len(), 1, "the RUN's layer: {unsettled:?}");
    let blob = env.root().join("blobs/sha256").join(&unsettled[0]);
    let len = fs_err::metadata(&blob).unwrap().len() as usize;
    tear(&blob, &vec![0; len / 2]);
    let other_boot = env
        .root()
        .join("unsettled/00000000-dead-beef-0000-000000000000");
    fs_err::rename(unsettled_dir(&env), &other_boot).unwrap();

    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
    assert!(!blob.exists(), "the torn blob is deleted at the next open");
    assert!(!other_boot.exists());

    let events = env.build_events([&epoch[..], &["-t", "t:1", ctx.to_str().unwrap()]].concat());
    assert_eq!(
        crate::support::ran(&events),
        ["[2/2] RUN echo torn > /torn"]
    );
    assert_eq!(layers_of(&env, "t:1").last(), Some(&unsettled[0]));
    assert_eq!(fs_err::metadata(&blob).unwrap().len() as usize, len);
    assert!(env.ok(["system", "check"]).ends_with(": ok\n"));
}

/// Issue 15: `save -o` copies layers of 1 MiB and more into the archive in the kernel
/// (`copy_file_range`), verified by a second reader: the archive is the one written to stdout
/// byte for byte; a layer blob whose bytes no longer match its name (a disk's fault after the
/// sync) is reported by `system check` and refused by `save`, either way, never passed on.
#[test]
fn issue_15_save_copies_big_layers_in_the_kernel_and_refuses_a_corrupt_one() {
    let env = TestEnv::with_base("base");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN head -c 3000000 /dev/urandom > /big\n",
        )],
    );
    env.build_events(["-t", "t:1", ctx.to_str().unwrap()]);
    let saved = env.dir().join("t.tar");
    env.ok(["save", "-o", saved.to_str().unwrap(), "t:1"]);
    let streamed = env.command(["save", "t:1"]).output().unwrap();
    assert!(streamed.status.success());
    assert!(fs_err::read(&saved).unwrap() == streamed.stdout);
    fs_err::remove_file(&saved).unwrap();

    let layer = layers_of(&env, "t:1").pop().unwrap();
    let blob = env.root().join("blobs/sha256").join(&layer);
    let mut bytes = fs_err::read(&blob).unwrap();
    assert!(bytes.len() > 1 << 20);
    bytes[2_000_000] ^= 1;
    tear(&blob, &bytes);

    let out = env.command(["system", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&layer) && text.contains("content has digest"),
        "{text}"
    );
    let refused = format!("stored blob sha256:{layer} should have digest sha256:{layer}");
    let err = env.fails(["save", "-o", saved.to_str().unwrap(), "t:1"]);
    assert!(err.contains(&refused), "{err}");
    assert!(!saved.exists(), "no archive with a bad layer is left");
    let err = env.command(["save", "t:1"]).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains(&refused));
}
