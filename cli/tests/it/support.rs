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
