//! Shared helpers for the end-to-end tests.

use std::path::PathBuf;

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

/// A temporary store root and scratch directory, with helpers to run `strata` against them.
pub(crate) struct TestEnv {
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub(crate) fn new() -> TestEnv {
        TestEnv {
            tmp: tempfile::tempdir().expect("create a temp dir"),
        }
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
        let mut c = std::process::Command::new(strata_bin());
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("STRATA_ROOT");
        c
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
