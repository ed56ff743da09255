//! Shared helpers for the end-to-end tests.
//!
//! The rootless pass: with `STRATA_TEST_USER=NAME` (scripts/test.sh's second pass), every
//! `strata` command of a [`TestEnv`] runs as that user (`setpriv`), with the env's scratch
//! directory, store and `HOME`/`XDG_*` its own, so strata runs rootless (docs/rootless.md).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `strata` binary cargo built for these tests.
pub(crate) fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

#[test]
fn the_binary_answers_version() {
    let out = std::process::Command::new(strata_bin())
        .arg("--version")
        .output()
        .expect("run strata");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("strata "));
}

/// The user of the rootless pass (`STRATA_TEST_USER`), from /etc/passwd.
#[derive(Debug)]
pub(crate) struct TestUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The user every `strata` command runs as, when the pass is the rootless one.
pub(crate) fn test_user() -> Option<&'static TestUser> {
    static USER: OnceLock<Option<TestUser>> = OnceLock::new();
    USER.get_or_init(|| {
        #[expect(clippy::disallowed_methods, reason = "the test pass is chosen by env")]
        let name = std::env::var("STRATA_TEST_USER")
            .ok()
            .filter(|n| !n.is_empty())?;
        let passwd = fs_err::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let fields: Vec<&str> = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name.as_str()))
            .unwrap_or_else(|| panic!("STRATA_TEST_USER={name} is not in /etc/passwd"));
        Some(TestUser {
            uid: fields[2].parse().expect("a numeric uid"),
            gid: fields[3].parse().expect("a numeric gid"),
            name,
        })
    })
    .as_ref()
}

/// The strata binary as the test user can run it: cargo's, when every directory above it
/// lets others through; else one copy per build in /tmp, shared by the pass's tests.
pub(crate) fn user_bin() -> PathBuf {
    let bin = strata_bin();
    let reachable = bin
        .ancestors()
        .skip(1)
        .all(|d| fs_err::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
        && fs_err::metadata(&bin).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    if reachable {
        return bin;
    }
    let meta = fs_err::metadata(&bin).expect("the strata binary");
    let dir = PathBuf::from(format!(
        "/tmp/strata-test-bin/{}-{}-{}",
        meta.ino(),
        meta.size(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000
    ));
    let copy = dir.join("strata");
    if !copy.exists() {
        fs_err::create_dir_all(&dir).expect("mkdir the binary's copy");
        for d in [Path::new("/tmp/strata-test-bin"), dir.as_path()] {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let tmp = tempfile::NamedTempFile::new_in(&dir).expect("a temp file");
        fs_err::copy(&bin, tmp.path()).expect("copy the strata binary");
        tmp.persist(&copy).expect("rename the copy into place");
    }
    copy
}

/// Gives `dir` (a file or a directory tree) and everything in it to `user`.
pub(crate) fn chown_tree(dir: &Path, user: &TestUser) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid)).expect("chown");
        if fs_err::symlink_metadata(&path).expect("lstat").is_dir() {
            for entry in fs_err::read_dir(&path).expect("read_dir") {
                todo.push(entry.expect("an entry").path());
            }
        }
    }
}

/// A temporary store root and scratch directory, with helpers to run `strata` against them.
pub(crate) struct TestEnv {
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub(crate) fn new() -> TestEnv {
        let tmp = tempfile::tempdir().expect("create a temp dir");
        if let Some(user) = test_user() {
            // The user's own: it holds the store, the outputs and the user's HOME.
            std::os::unix::fs::chown(tmp.path(), Some(user.uid), Some(user.gid))
                .expect("chown the scratch dir to the test user");
        }
        TestEnv { tmp }
    }

    /// `strata` with nothing set: as the test user in the rootless pass (`HOME` the scratch
    /// dir, `XDG_DATA_HOME` and `XDG_CONFIG_HOME` in it), else as this process.
    pub(crate) fn bare_command(&self) -> std::process::Command {
        let Some(user) = test_user() else {
            return std::process::Command::new(strata_bin());
        };
        let mut c = std::process::Command::new("setpriv");
        c.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--init-groups", "--"])
            .arg(user_bin())
            .env("HOME", self.dir())
            .env("USER", &user.name)
            .env("LOGNAME", &user.name)
            .env("XDG_DATA_HOME", self.dir().join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir().join("xdg-config"));
        c
    }

    /// The scratch directory (the store root is `root/` inside it).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// `strata --root <root> args...`, not yet run.
    pub(crate) fn command<I, S>(&self, args: I) -> std::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.bare_command();
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("STRATA_ROOT");
        // strata's config is the test's own (none unless it writes one), never the machine's.
        c.env("STRATA_CONFIG", self.config_path());
        c
    }

    /// strata's config file for this env's commands (see [`TestEnv::config`]).
    pub(crate) fn config_path(&self) -> PathBuf {
        self.tmp.path().join("strata-config.json")
    }

    /// Writes strata's config file (`insecure-registries`, `registry-mirrors`) for this env.
    pub(crate) fn config(&self, json: &str) {
        fs_err::write(self.config_path(), json).expect("write strata's config");
    }

    /// Runs strata and asserts it succeeded; returns stdout.
    pub(crate) fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.command(args).output().expect("run strata");
        assert!(
            out.status.success(),
            "strata failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs strata and asserts it failed with exit code 1; returns stderr.
    pub(crate) fn fails<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.command(args).output().expect("run strata");
        assert_eq!(
            out.status.code(),
            Some(1),
            "strata should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The repository's root (for `testdata/`).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// `../shared` beside the repository: the conformance corpus and the hostile generator.
pub(crate) fn shared_dir() -> PathBuf {
    let dir = repo_root().join("../shared");
    assert!(
        dir.join("conformance").is_dir(),
        "{} is missing: the team's shared material must sit beside the repository",
        dir.display()
    );
    dir
}

impl TestEnv {
    /// The busybox rootfs tarball (`testdata/mkbase.sh`), `base.tar` in the scratch dir.
    pub(crate) fn base_tarball(&self) -> PathBuf {
        let tar = self.dir().join("base.tar");
        let status = std::process::Command::new(repo_root().join("testdata/mkbase.sh"))
            .arg(&tar)
            .status()
            .expect("run testdata/mkbase.sh");
        assert!(
            status.success(),
            "mkbase.sh failed (is busybox-static installed?)"
        );
        tar
    }

    /// A TestEnv whose store has the busybox base image (`testdata/mkbase.sh`) as `tag`.
    pub(crate) fn with_base(tag: &str) -> TestEnv {
        let env = TestEnv::new();
        let tar = env.base_tarball();
        env.ok([
            std::ffi::OsStr::new("import"),
            tar.as_os_str(),
            tag.as_ref(),
        ]);
        env
    }

    /// A build context directory `name` under the scratch dir, with `files` (path, contents).
    pub(crate) fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir().join(name);
        for (path, contents) in files {
            let p = dir.join(path);
            fs_err::create_dir_all(p.parent().expect("files have a parent")).expect("mkdir");
            fs_err::write(&p, contents).expect("write a context file");
        }
        fs_err::create_dir_all(&dir).expect("mkdir");
        if let Some(user) = test_user() {
            // A user builds a context of their own (a file of mode 0600 included).
            chown_tree(&dir, user);
        }
        dir
    }

    /// `strata build --progress=rawjson ARGS`: asserts success and returns the events.
    pub(crate) fn build_events<I, S>(&self, args: I) -> Vec<serde_json::Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self
            .command(["build", "--progress=rawjson"])
            .args(args)
            .output()
            .expect("run strata build");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed: {stderr}");
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Labels of the steps that ran (not cached) in a build's events, sorted.
pub(crate) fn ran(events: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "started")
        .filter_map(|e| e["label"].as_str().map(str::to_owned))
        .filter(|l| !l.contains("FROM ") && !l.starts_with("[internal]"))
        .collect();
    out.sort();
    out
}

/// `len` bytes that compress poorly (xorshift), the same on every run.
pub(crate) fn incompressible(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 4);
    let mut x: u32 = 0x1234_5678;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The reasons `--explain` gave for the misses in a build's events, in order.
pub(crate) fn misses(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["event"] == "miss")
        .filter_map(|e| e["reason"].as_str())
        .collect()
}

/// What is in a store's `tmp/`: the staging areas of live processes, so none between
/// commands once crash leftovers were cleaned.
pub(crate) fn staging_entries(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(root.join("tmp"))
        .expect("list the store's tmp/")
        .map(|e| {
            e.expect("list the store's tmp/")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
