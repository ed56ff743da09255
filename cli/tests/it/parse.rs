//! `strata parse`: BuildKit's dump on stdout, the JSON syntax tree, located errors.

use crate::support::strata_bin;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const DOCKERFILE: &str = "\
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
RUN --mount=type=cache,target=/root/.cache \\
    go build -o /out/app ./...
COPY <<EOF /etc/motd
hello
EOF
ENV A=1 B=\"two words\"
CMD [\"/out/app\", \"--serve\"]
";

const DUMP: &str = r#"(from ["--platform=$BUILDPLATFORM"] "golang:1.22" "AS" "build")
(run ["--mount=type=cache,target=/root/.cache"] "go build -o /out/app ./...")
(copy "<<EOF" "/etc/motd")
(env "A" "1" "=" "B" "\"two words\"" "=")
(cmd "/out/app" "--serve")
"#;

/// Runs `strata parse ARGS` in a directory holding `dockerfile` as `Dockerfile`.
fn parse_in_dir(dockerfile: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    fs_err::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    Command::new(strata_bin())
        .arg("parse")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run strata parse")
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> &str {
    std::str::from_utf8(&out.stderr).expect("stderr is UTF-8")
}

#[test]
fn parse_prints_the_buildkit_dump() {
    let out = parse_in_dir(DOCKERFILE, &["Dockerfile"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), DUMP);
    // Without an argument, ./Dockerfile is read.
    let out = parse_in_dir(DOCKERFILE, &[]);
    assert_eq!(stdout(&out), DUMP);
}

#[test]
fn parse_reads_standard_input() {
    let mut child = Command::new(strata_bin())
        .args(["parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run strata parse -");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(DOCKERFILE.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(stdout(&out), DUMP);
}

#[test]
fn parse_json_has_line_and_column_spans() {
    let out = parse_in_dir(DOCKERFILE, &["--json", "Dockerfile"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let ast: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(ast["directives"][0]["name"], "syntax");
    let run = &ast["instructions"][1];
    assert_eq!(run["kind"], "RUN");
    assert_eq!(
        run["range"]["start"],
        serde_json::json!({"line": 3, "column": 1})
    );
    assert_eq!(
        run["range"]["end"],
        serde_json::json!({"line": 4, "column": 30})
    );
    assert_eq!(
        run["flags"][0]["loc"],
        serde_json::json!({"line": 3, "column": 5})
    );
    assert_eq!(run["args"]["form"], "text");
    assert_eq!(
        run["args"]["value"]["loc"],
        serde_json::json!({"line": 4, "column": 5})
    );
    let copy = &ast["instructions"][2];
    assert_eq!(copy["heredocs"][0]["name"], "EOF");
    assert_eq!(copy["heredocs"][0]["content"], "hello\n");
    assert_eq!(copy["range"]["end"]["line"], 7);
    let cmd = &ast["instructions"][4];
    assert_eq!(cmd["args"]["form"], "json");
    assert_eq!(cmd["args"]["value"][1]["text"], "--serve");
}

#[test]
fn parse_error_names_file_line_and_column_and_exits_1() {
    let bad = "FROM alpine\n\n  ENV a=b c\n";
    let out = parse_in_dir(bad, &["Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        stderr(&out),
        "error: Dockerfile:3:3: can't find = in \"c\": ENV must be of the form name=value\n\
         3 |   ENV a=b c\n  |   ^\n"
    );
}

#[test]
fn comments_and_directive_errors_have_their_column() {
    let out = parse_in_dir("FROM a\n  # note\nRUN x\n", &["--json", "Dockerfile"]);
    let ast: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        ast["instructions"][1]["comments"][0],
        serde_json::json!({"text": "# note", "loc": {"line": 2, "column": 3}})
    );
    let out = parse_in_dir("# syntax=a/b\n  # escape=x\nFROM a\n", &["Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: Dockerfile:2:12: invalid escape token 'x' does not match ` or \\\n\
         2 |   # escape=x\n  |            ^\n"
    );
}

#[test]
fn parse_rejects_a_file_without_instructions() {
    let out = parse_in_dir("# only a comment\n", &["Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Dockerfile:1:1: file with no instructions\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn parse_reports_a_missing_file() {
    let out = parse_in_dir(DOCKERFILE, &["nope/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope/Dockerfile"), "{}", stderr(&out));
}
