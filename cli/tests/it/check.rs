//! `strata check`: `docker build --check`'s summary line, then every problem printed with its
//! place and a caret, exit code 1; a clean Dockerfile exits 0. `--format json` for programs.

use crate::support::{TestEnv, strata_bin};
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

fn check_file(dockerfile: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    fs_err::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    Command::new(strata_bin())
        .arg("check")
        .args(extra)
        .current_dir(dir.path())
        // An empty store of its own: no image of the machine's store is looked up.
        .env("STRATA_ROOT", dir.path().join("root"))
        .output()
        .expect("run strata check")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn unknown_instruction_has_suggestion_line_and_caret() {
    let out = check_file("FROM alpine\n  RUNN echo hi\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "error: Dockerfile:2:3: unknown instruction: RUNN (did you mean RUN?)\n2 |   RUNN echo hi\n  |   ^\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 error, 0 warnings"));
}

#[test]
fn a_clean_dockerfile_exits_zero() {
    let out = check_file(
        "ARG BASE=alpine\nFROM ${BASE} AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /out\nCMD [\"/out\"]\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "Check complete, no warnings found.\n");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let out = check_file(
        "FROM alpine AS base\nCOPY --frm=x a /b\nRUN --network=bogus true\nARG =x\nFROM base AS 1bad\nFROM alpine AS later\nRUN true\n\nSHELL /bin/bash -c\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let firsts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("error: Dockerfile:"))
        .collect();
    assert_eq!(
        firsts,
        [
            "error: Dockerfile:2:6: unknown flag: frm (did you mean from?)",
            "error: Dockerfile:3:5: unsupported network mode \"bogus\"",
            "error: Dockerfile:4:1: ARG names can not be blank",
            "error: Dockerfile:5:1: invalid name for build stage: \"1bad\", name can't start with a number or contain symbols",
            "error: Dockerfile:9:1: SHELL requires the arguments to be in JSON form: SHELL /bin/bash -c",
        ],
        "{text}"
    );
}

#[test]
fn expansion_and_stage_errors_come_from_lowering() {
    let out = check_file(
        "FROM alpine AS base\nWORKDIR ${X:?must be set}\nCOPY --from=later /a /b\nCOPY --from=7 /a /b\nFROM alpine AS later\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "error: Dockerfile:2:1: failed to process \"${X:?must be set}\": X: must be set\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("error: Dockerfile:3:1: cannot copy from stage \"later\", it needs to be defined before current stage \"base\"\n"),
        "{text}"
    );
    assert!(
        text.contains("error: Dockerfile:4:1: invalid stage index 7\n"),
        "{text}"
    );
}

#[test]
fn build_args_and_target_are_used() {
    let df = "FROM alpine AS a\nARG NEED\nWORKDIR ${NEED:?}\nFROM alpine AS b\nRUN true\n";
    // Every stage is checked, so stage a fails without the build arg ...
    let out = check_file(df, &["--target", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("NEED: is not allowed to be unset"),
        "{}",
        stdout(&out)
    );
    // ... and passes with it.
    let out = check_file(df, &["--build-arg", "NEED=/x", "--target", "b"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = check_file(df, &["--target", "nope"]);
    assert!(
        stdout(&out).contains("target stage \"nope\" could not be found"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn warnings_fail_the_check_too() {
    let out = check_file("FROM alpine\nMAINTAINER me\nENV A b\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "Check complete, 2 warnings have been found!\n\
         warning: Dockerfile:2:1: Maintainer instruction is deprecated in favor of using label [MaintainerDeprecated]\n2 | MAINTAINER me\n  | ^\n\
         warning: Dockerfile:3:1: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format [LegacyKeyValueFormat]\n3 | ENV A b\n  | ^\n"
    );
}

#[test]
fn directives_in_the_wrong_place_are_reported_where_they_are() {
    let out = check_file(
        "# syntax=docker/dockerfile:1\n# hello\n# escape=`\nFROM alpine\n\n  # check=skip=all\n\nCMD [\"x\"]\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "Check complete, 2 warnings have been found!\n\
         warning: Dockerfile:3:1: parser directive \"escape\" is ignored here: directives must come \
         before any other line, comment or blank line [MisplacedParserDirective]\n3 | # escape=`\n  | ^\n\
         warning: Dockerfile:6:3: parser directive \"check\" is ignored here: directives must come \
         before any other line, comment or blank line [MisplacedParserDirective]\n6 |   # check=skip=all\n  |   ^\n"
    );
    // The same directives at the top are directives: no warning, and `check` applies.
    let out = check_file(
        "# escape=`\n# check=skip=all\nFROM alpine\nMAINTAINER me\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn parse_errors_are_reported_with_their_place() {
    let out = check_file("FROM alpine\nRUN <<EOF\necho never ends\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("error: Dockerfile:2:1: unterminated heredoc EOF\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn reads_standard_input() {
    let mut child = Command::new(strata_bin())
        .args(["check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strata check -");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"FROM alpine\nCOPY only-one\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with(
            "error: Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined\n"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn one_warning_is_counted_like_docker_and_json_gives_each_finding() {
    let src = "FROM alpine AS Build\nCOPY a /b\n";
    let out = check_file(src, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("Check complete, 1 warning has been found!\nwarning: Dockerfile:1:1: Stage name 'Build' should be lowercase [StageNameCasing]\n"),
        "{}",
        stdout(&out)
    );
    let out = check_file(src, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!([{
            "severity": "warning",
            "rule": "StageNameCasing",
            "description": "Stage names should be lowercase",
            "message": "Stage name 'Build' should be lowercase",
            "url": "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/",
            "file": "Dockerfile",
            "line": {"start": 1, "end": 1},
            "column": 1
        }])
    );
    let out = check_file("FROM alpine\n", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "[]\n");
}

#[test]
fn check_error_true_fails_with_buildkits_lint_violation() {
    let out = check_file("# check=error=true\nFROM alpine\nMAINTAINER me\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(
            "error: Dockerfile:1:1: lint violation found for rules: MaintainerDeprecated\n"
        ),
        "{}",
        stdout(&out)
    );
    let out = check_file(
        "FROM alpine\nMAINTAINER me\n",
        &[
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=MaintainerDeprecated",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn variables_a_base_image_may_set_are_not_called_undefined() {
    // No store has golang: $GOPATH may come from its ENV; scratch has none.
    let out = check_file(
        "FROM golang\nWORKDIR $GOPATH/src\nCOPY $FOO .\nFROM scratch\nCOPY $BAR .\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "Check complete, 1 warning has been found!\n\
         warning: Dockerfile:5:1: Usage of undefined variable '$BAR' [UndefinedVar]\n5 | COPY $BAR .\n  | ^\n"
    );
}

#[test]
fn the_contexts_dockerignore_is_read_with_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs_err::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY notes/a.txt /\n",
    )
    .unwrap();
    fs_err::write(dir.path().join(".dockerignore"), "notes\n").unwrap();
    let run = |extra: &[&str]| {
        Command::new(strata_bin())
            .arg("check")
            .args(extra)
            .current_dir(dir.path())
            .output()
            .expect("run strata check")
    };
    assert_eq!(run(&[]).status.code(), Some(0));
    let out = run(&["--context", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(
            "warning: Dockerfile:2:1: Attempting to Copy file \"notes/a.txt\" that is excluded by .dockerignore [CopyIgnoredFile]\n"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn base_images_in_the_store_are_judged_by_their_config_and_platform() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "home",
        &[("Dockerfile", "FROM base:latest\nENV HOME=/home/app\n")],
    );
    env.ok([
        "build",
        "-q",
        "-t",
        "homebase",
        ctx.to_str().expect("utf-8 path"),
    ]);
    let tar = env.base_tarball();
    env.ok([
        "import".as_ref(),
        "--platform".as_ref(),
        "linux/arm64".as_ref(),
        tar.as_os_str(),
        "armbase".as_ref(),
    ]);
    let dockerfile = env.dir().join("Dockerfile.check");
    fs_err::write(
        &dockerfile,
        "FROM homebase\nENV A=$HOME B=$NOPE\nFROM elsewhere/unknown\nENV C=$MAYBE\nFROM armbase\n",
    )
    .expect("write Dockerfile");
    let out = env
        .command(["check".as_ref(), dockerfile.as_os_str()])
        .output()
        .expect("run strata check");
    let text = stdout(&out);
    // HOME comes from homebase's config; NOPE is undefined there. An image the store lacks
    // may set MAYBE: nothing said. armbase is another platform, as a build would warn.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("Check complete, 2 warnings have been found!\n"),
        "{text}"
    );
    assert!(
        text.contains("Dockerfile.check:2:1: Usage of undefined variable '$NOPE'"),
        "{text}"
    );
    assert!(
        !text.contains("variable '$HOME'") && !text.contains("'$MAYBE'"),
        "{text}"
    );
    assert!(
        text.contains("[InvalidBaseImagePlatform]") && text.contains("linux/arm64"),
        "{text}"
    );
}
