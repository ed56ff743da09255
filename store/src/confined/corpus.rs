//! The shared hostile corpus (`../shared/research/hostile/make_hostile.py`) for tests: where
//! it is, running its generator, and the checks every run of it needs. Used by the unit tests
//! of the extractor (`hostile.rs` beside this file) and by `store/tests/hostile.rs` (through
//! `#[path]`), so both find and judge the corpus the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared`, beside the workspace; `None` when it is missing (CI always has it).
pub(super) fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    dir.is_dir().then_some(dir)
}

/// Runs `make_hostile.py args`, whatever its exit status.
pub(super) fn generator(args: &[&str]) -> Output {
    let generator = shared()
        .expect("../shared is there (checked first)")
        .join("research/hostile/make_hostile.py");
    Command::new("python3")
        .arg(generator)
        .args(args)
        .output()
        .expect("python3 runs the hostile generator")
}

/// Runs `make_hostile.py args`; panics with its output if it fails.
pub(super) fn python(args: &[&str]) -> Output {
    let out = generator(args);
    assert!(
        out.status.success(),
        "make_hostile.py {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every regular file under `dir` that contains `needle` (GNU grep walks deep trees by fd,
/// where a path-based walk fails with ENAMETOOLONG on the 2000-level case).
pub(super) fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", "--devices=skip", needle])
        .arg(dir)
        .output()
        .expect("grep runs");
    assert!(
        out.status.code() != Some(2),
        "grep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// An error with its causes, the way the CLI prints them.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s = format!("{s}: {c}");
        cur = c.source();
    }
    s
}
