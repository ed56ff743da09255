//! How failures reach people: one format (`error:`, `caused by:`, the Dockerfile line,
//! `hint:`), and no error at all for a reader that stopped reading.

use crate::support::TestEnv;
use std::process::Stdio;

#[test]
fn a_closed_pipe_is_not_an_error() {
    let env = TestEnv::with_base("base:1");
    for tag in ["a:1", "b:1", "c:1"] {
        env.ok(["tag", "base:1", tag]);
    }
    // `strata images | head -0`: the reader is gone before strata writes a byte.
    let mut child = env
        .command(["images"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_missing_image_gets_a_hint_on_how_to_bring_one_in() {
    let env = TestEnv::new();
    let out = env.dir().join("out.tar");
    let stderr = env.fails(["save", "-o", out.to_str().unwrap(), "nosuch:1"]);
    assert!(
        stderr.starts_with("error: no such image: nosuch:1\n"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("hint: ")
                && l.contains("strata load -i FILE")
                && l.contains("strata import FILE NAME")),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written for a failed save");
}

#[test]
fn a_step_that_fails_in_the_engine_shows_its_chain_and_its_line() {
    let env = TestEnv::with_base("base:1");
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM base:1\nRUN true\nCOPY missing /x\n")],
    );
    let stderr = env.fails(["build", "--progress=plain", ctx.to_str().unwrap()]);
    assert!(
        stderr.contains(
            "error: [3/3] COPY missing /x failed\ncaused by: failed to compute cache key\n\
             caused by: \"/missing\": not found\n --> Dockerfile:3:1\n3 | COPY missing /x\n  | ^\n"
        ),
        "{stderr}"
    );
}
