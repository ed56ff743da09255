//! RUN in the sandbox: output, exit codes, users, environment, isolation, cleanup.

use crate::common::*;
use libtest_mimic::Trial;

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "run_echo_streams_stdout_and_stderr",
            run_echo_streams_stdout_and_stderr,
        ),
        trial("run_exit_code_message", run_exit_code_message),
    ]
}

fn run_echo_streams_stdout_and_stderr() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let (r, lines) = run_op(
        &env,
        sh("echo hello; echo oops >&2; printf 'no newline'"),
        vec![env.base.clone()],
        &upper,
        vec![],
    );
    r.map_err(|e| format!("{e}; output: {lines:?}"))?;
    ensure_eq(stdout(&lines), "hello\nno newline\n".to_string(), "stdout")?;
    ensure(
        lines
            .iter()
            .any(|(s, l)| *s == strata_worker::OutputStream::Stderr && l == "oops"),
        "stderr line",
    )
}

fn run_exit_code_message() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let (r, _) = run_op(&env, sh("exit 3"), vec![env.base.clone()], &upper, vec![]);
    let e = r.err().ok_or("expected failure")?;
    ensure_eq(
        e.to_string(),
        "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3".to_string(),
        "message",
    )?;
    ensure_eq(e.exit_code(), Some(3), "code")
}
