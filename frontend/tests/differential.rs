//! Differential test against the `dockerfile-parser` crate (0.9): for every corpus case that
//! crate parses, instruction names and arguments must agree with ours.
//!
//! The two parsers model different things: that crate unquotes ENV, LABEL and ARG values at
//! parse time (BuildKit keeps the quotes until expansion), keeps only ARG's first name, and
//! types only FROM, ARG, LABEL, RUN, ENTRYPOINT, CMD, COPY and ENV (everything else is raw
//! text). Both sides are brought to that common shape below. Where the crate is the one that
//! is wrong, the difference is listed in [`KNOWN_DIFFERENCES`] with the reason; the test fails
//! on any unlisted difference and on any listed one that no longer happens, so the list stays
//! reviewed. Cases the crate rejects outright are listed in [`CRATE_REJECTS`] the same way.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unreadable corpus must fail loudly"
)]

use dockerfile_parser as dp;
use fs_err as fs;
use std::path::{Path, PathBuf};
use strata_frontend::{Args, Instruction, Keyword, parse};

/// (case, 1-based line of the instruction, why the crate is wrong there).
const KNOWN_DIFFERENCES: &[(&str, u32, &str)] = &[
    (
        "parser/continue-at-eof",
        3,
        "keeps a line-continuation backslash at end of file; BuildKit drops it",
    ),
    (
        "parser/flags",
        6,
        "keeps the bare `--` that ends COPY flags as a source path; BuildKit drops it",
    ),
    (
        "parser/flags",
        7,
        "keeps the bare `--` that ends COPY flags as a source path; BuildKit drops it",
    ),
    (
        "parser/flags",
        8,
        "reads no flags for CMD (shell text `--doit [ … ]`); BuildKit splits flags off every instruction",
    ),
    (
        "parser/flags",
        9,
        "reads no flags for CMD (shell text `--doit=true -- [ … ]`); BuildKit splits flags off every instruction",
    ),
    (
        "parser/flags",
        10,
        "reads no flags for CMD (shell text `--doit -- [ ]`); BuildKit splits flags off every instruction",
    ),
    (
        "parser/jeztah-invalid-json-single-quotes",
        1,
        "accepts single-quoted strings as exec form; BuildKit's JSON rejects them and uses the shell form",
    ),
    (
        "testdata/run-mounts",
        4,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "testdata/run-mounts",
        7,
        "reads no RUN flags: `--mount=…`, `--network`, `--security` stay in the shell command",
    ),
    (
        "testdata/run-mounts",
        15,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "diff/mount-cache",
        3,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "diff/mount-cache",
        5,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "diff/mount-cache",
        7,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "testdata/node-app",
        5,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "testdata/node-app",
        8,
        "reads no RUN flags: `--mount=…` stays in the shell command",
    ),
    (
        "testdata/run-mounts",
        4,
        "reads no RUN flags: `--mount=…`, `--network`, `--security` stay in the shell command",
    ),
    (
        "testdata/run-mounts",
        7,
        "reads no RUN flags: `--mount=…`, `--network`, `--security` stay in the shell command",
    ),
    (
        "testdata/run-mounts",
        15,
        "reads no RUN flags: `--mount=…`, `--network`, `--security` stay in the shell command",
    ),
    (
        "testdata/windows-escape",
        5,
        "ignores `# escape=`: a backtick does not continue the line",
    ),
    (
        "testdata/windows-escape",
        6,
        "ignores `# escape=`: the continuation line becomes an instruction `Set-Location`",
    ),
    (
        "testdata/windows-escape",
        7,
        "ignores `# escape=`: the continuation line becomes an instruction `Write-Host`",
    ),
    (
        "testdata/windows-escape",
        8,
        "ignores `# escape=`: a trailing backslash continues the COPY line into the ENV below",
    ),
    (
        "testdata/windows-escape",
        9,
        "ignores `# escape=`: the ENV line was swallowed by the COPY above",
    ),
    (
        "testdata/error-flag-not-for-instruction",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-mount-bad-sharing",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-mount-option-wrong-type",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-mount-secret-from",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-mount-unknown-option",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-mount-unknown-type",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/error-network-value",
        2,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        6,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        7,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        8,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        9,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        10,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-bind",
        11,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        7,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        8,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        9,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        10,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        11,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        12,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        13,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-cache",
        14,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        5,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        6,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        7,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        8,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        9,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        10,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        11,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-secret",
        12,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-ssh",
        4,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-ssh",
        5,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-ssh",
        6,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-tmpfs",
        4,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-tmpfs",
        5,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-tmpfs",
        6,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/mount-tmpfs",
        7,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        3,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        4,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        5,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        6,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        7,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
    (
        "testdata/run-network-security",
        8,
        "reads no RUN flags: `--mount`, `--network`, `--security`, `--chown` stay in the shell command",
    ),
];

/// (case, why the crate cannot parse it although BuildKit does).
const CRATE_REJECTS: &[(&str, &str)] = &[
    (
        "testdata/copy-add-forms",
        "no JSON form for COPY: it splits `[\"file one.txt\", …]` on spaces and cannot unquote the pieces",
    ),
    (
        "testdata/heredocs",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "diff/arg-defaults-buildargs",
        "ARG with an empty default (`ARG EMPTYDEF=`)",
    ),
    (
        "diff/copy-multi-source",
        "no JSON form for COPY: it splits `[\"file one.txt\", …]` on spaces and cannot unquote the pieces",
    ),
    (
        "diff/env-expansion",
        "ENV with an empty value (`ENV EMPTY=`)",
    ),
    (
        "diff/heredoc-copy",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "diff/labels",
        "an escaped space in an unquoted LABEL value (`g=esc\\ aped`)",
    ),
    (
        "diff/line-continuation-comments",
        "a blank line inside a continuation",
    ),
    (
        "parser/ADD-COPY-with-JSON",
        "legacy `LABEL key value with spaces`",
    ),
    ("parser/args", "several names on one ARG line"),
    (
        "parser/brimstone-consuldock",
        "a blank line inside a continuation",
    ),
    (
        "parser/brimstone-docker-consul",
        "a blank line inside a continuation",
    ),
    (
        "parser/continueIndent",
        "a lone backslash line inside a continuation",
    ),
    ("parser/docker", "legacy `LABEL key value with spaces`"),
    (
        "parser/env",
        "an escaped space in an unquoted ENV value (`name=value\\ value2`)",
    ),
    (
        "parser/escape",
        "the escape directive (a backtick continues the line)",
    ),
    (
        "parser/escape-nonewline",
        "the escape directive (a backtick continues the line)",
    ),
    (
        "parser/escape-with-syntax",
        "the escape directive (a backtick continues the line)",
    ),
    ("parser/escapes", "legacy `LABEL key value with spaces`"),
    ("parser/health", "HEALTHCHECK without arguments"),
    ("parser/json", "the JSON escapes `\\/` and `\\u0000`"),
    (
        "parser/kartar-entrypoint-oddities",
        "legacy `LABEL key value with spaces`",
    ),
    (
        "parser/lk4d4-the-edge-case-generator",
        "legacy `LABEL key value with spaces`",
    ),
    ("parser/nginx", "legacy `LABEL key value with spaces`"),
    (
        "parser/supplemental/continuation-edges",
        "a blank line inside a continuation",
    ),
    (
        "parser/supplemental/crlf-and-bom",
        "a UTF-8 byte order mark",
    ),
    (
        "parser/supplemental/directive-after-blank-line",
        "an instruction without arguments (`b`)",
    ),
    (
        "parser/supplemental/directive-leading-whitespace",
        "the escape directive (a backtick continues the line)",
    ),
    (
        "parser/supplemental/directives-all",
        "the escape directive (a backtick continues the line)",
    ),
    (
        "parser/supplemental/env-label-arg-forms",
        "ARG without arguments",
    ),
    (
        "parser/supplemental/flags-quoting",
        "quoted flag values (`--label=\"a b\"`)",
    ),
    (
        "parser/supplemental/go-quote-escapes",
        "JSON surrogate-pair escapes (`\\ud83d\\ude00`)",
    ),
    (
        "parser/supplemental/heredoc-basic",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "parser/supplemental/heredoc-not-applicable",
        "an instruction without arguments (`INVALID`)",
    ),
    (
        "parser/supplemental/heredoc-terminator",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "parser/supplemental/inline-hash",
        "`#` after FROM's image (`FROM alpine # trailing`)",
    ),
    ("parser/supplemental/misc-edges", "FROM without arguments"),
    (
        "parser/supplemental/shebang-disables-directives",
        "an instruction without arguments (`b`)",
    ),
    (
        "parser/supplemental/unknown-and-case",
        "an instruction without arguments (`FOOBAR`)",
    ),
    (
        "parser/trailing-backslash",
        "a lone backslash line inside a continuation",
    ),
    ("parser/znc", "legacy `LABEL key value with spaces`"),
    (
        "testdata/all-flags",
        "no JSON form for COPY: it cannot unquote the pieces of `[\"/etc/os-release\", …]`",
    ),
    (
        "testdata/copy-add-forms",
        "no JSON form for COPY: it splits `[\"file one.txt\", …]` on spaces and cannot unquote the pieces",
    ),
    (
        "testdata/go-multistage-heredoc",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredocs",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/onbuild-legacy-forms",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/continuation-comments-empty-lines",
        "an empty line inside a continuation: it stops at it, BuildKit skips it (and warns)",
    ),
    (
        "testdata/escape-backtick",
        "ignores `# escape=`: a backtick does not continue the line",
    ),
    (
        "testdata/expansion-forms",
        "`ARG EMPTY=` with an empty default",
    ),
    (
        "testdata/heredoc-chomp-tabs",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredoc-copy-to-file",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredoc-quoted-delimiter",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredoc-run-basic",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredoc-several-on-one-line",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/heredoc-shebang",
        "no heredocs: the body lines are read as instructions",
    ),
    (
        "testdata/json-vs-shell",
        "an unterminated JSON array: it fails to unescape it, BuildKit reads it as shell form",
    ),
];

/// One instruction in the shape both parsers can produce.
#[derive(Debug, PartialEq, Eq)]
struct Norm {
    line: u32,
    name: String,
    args: Vec<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every Dockerfile both parsers are run on: BuildKit's parser corpus (positive cases), the
/// build conformance cases and our testdata, each named relative to its collection.
fn cases() -> Vec<(String, PathBuf)> {
    let shared = repo_root().join("../shared/conformance");
    assert!(
        shared.join("parser/README.md").is_file(),
        "the conformance corpus is missing at {}",
        shared.display()
    );
    let collections = [
        ("parser/", shared.join("parser/positive")),
        (
            "parser/supplemental/",
            shared.join("parser/supplemental/positive"),
        ),
        ("diff/", shared.join("diff/cases")),
        ("testdata/", repo_root().join("testdata/dockerfiles")),
    ];
    let mut out = Vec::new();
    for (prefix, dir) in collections {
        for entry in fs::read_dir(&dir).unwrap() {
            let case = entry.unwrap().path();
            let path = case.join("Dockerfile");
            if path.is_file() {
                let name = case.file_name().unwrap().to_string_lossy();
                out.push((format!("{prefix}{name}"), path));
            }
        }
    }
    out.push((
        "testdata/demo".into(),
        repo_root().join("testdata/demo/Dockerfile"),
    ));
    out.sort();
    out
}

/// Undoes the quoting the crate removes (`"a b"` → `a b`, `\"` → `"`), for values that are
/// one quoted string; anything else is left as BuildKit's raw parse has it.
fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    let quoted = bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0];
    if !quoted {
        return value.to_string();
    }
    let inner = &value[1..value.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('"' | '\'' | '\\')) => out.push(e),
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ours(ins: &Instruction) -> Norm {
    let flags = ins.flags.iter().map(|f| f.text.to_string());
    let texts = |items: &[strata_frontend::Arg]| -> Vec<String> {
        items.iter().map(|a| a.text.to_string()).collect()
    };
    let args: Vec<String> = match (&ins.kind, &ins.args) {
        (Keyword::From, Args::Words(words)) => {
            let mut out: Vec<String> = flags.collect();
            out.push(words[0].text.to_string());
            if words.len() == 3 && words[1].text.to_string().eq_ignore_ascii_case("as") {
                out.push(words[2].text.to_string());
            } else {
                out.extend(texts(&words[1..]));
            }
            out
        }
        (Keyword::Arg, Args::Words(words)) => words
            .iter()
            .flat_map(|w| {
                let w = w.text.to_string();
                match w.split_once('=') {
                    Some((k, v)) => vec![k.to_string(), unquote(v)],
                    None => vec![w],
                }
            })
            .collect(),
        (Keyword::Env | Keyword::Label, Args::Pairs(pairs)) => pairs
            .iter()
            .flat_map(|p| {
                let value = p.value.text.to_string();
                let value = if p.legacy { value } else { unquote(&value) };
                [unquote(&p.key.text.to_string()), value]
            })
            .collect(),
        (Keyword::Run | Keyword::Cmd | Keyword::Entrypoint, Args::Json(items)) => texts(items),
        (Keyword::Run | Keyword::Cmd | Keyword::Entrypoint, Args::Text(text)) => {
            vec![text.text.to_string()]
        }
        (Keyword::Copy, Args::Words(items) | Args::Json(items)) => {
            flags.chain(texts(items)).collect()
        }
        (
            Keyword::From
            | Keyword::Arg
            | Keyword::Env
            | Keyword::Label
            | Keyword::Run
            | Keyword::Cmd
            | Keyword::Entrypoint
            | Keyword::Copy,
            _,
        ) => ins
            .args
            .values()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        _ => {
            // The crate keeps everything after the keyword as raw text.
            let original = ins.original.to_string();
            let after = original.trim_start()[ins.keyword.len()..]
                .trim()
                .to_string();
            vec![after]
        }
    };
    Norm {
        line: ins.range.start.line,
        name: ins.keyword.to_string().to_lowercase(),
        args,
    }
}

fn line_of(content: &str, offset: usize) -> u32 {
    u32::try_from(content[..offset.min(content.len())].matches('\n').count() + 1).unwrap()
}

fn theirs(content: &str, ins: &dp::Instruction) -> Norm {
    use dp::Instruction as I;
    let shell_or_exec = |e: &dp::ShellOrExecExpr| match e {
        dp::ShellOrExecExpr::Shell(s) => vec![s.to_string()],
        dp::ShellOrExecExpr::Exec(a) => a.elements.iter().map(|s| s.content.clone()).collect(),
    };
    let (span, name, args) = match ins {
        I::From(f) => {
            let mut args: Vec<String> = f
                .flags
                .iter()
                .map(|fl| format!("--{}={}", fl.name.content, fl.value.content))
                .collect();
            args.push(f.image.content.clone());
            args.extend(f.alias.iter().map(|a| a.content.clone()));
            (&f.span, "from".to_string(), args)
        }
        I::Arg(a) => {
            let mut args = vec![a.name.content.clone()];
            args.extend(a.value.iter().map(|v| v.content.clone()));
            (&a.span, "arg".into(), args)
        }
        I::Label(l) => (
            &l.span,
            "label".into(),
            l.labels
                .iter()
                .flat_map(|l| [l.name.content.clone(), l.value.content.clone()])
                .collect(),
        ),
        I::Run(r) => (&r.span, "run".into(), shell_or_exec(&r.expr)),
        I::Cmd(c) => (&c.span, "cmd".into(), shell_or_exec(&c.expr)),
        I::Entrypoint(e) => (&e.span, "entrypoint".into(), shell_or_exec(&e.expr)),
        I::Copy(c) => {
            let mut args: Vec<String> = c
                .flags
                .iter()
                .map(|fl| format!("--{}={}", fl.name.content, fl.value.content))
                .collect();
            args.extend(c.sources.iter().map(|s| s.content.clone()));
            args.push(c.destination.content.clone());
            (&c.span, "copy".into(), args)
        }
        I::Env(e) => (
            &e.span,
            "env".into(),
            e.vars
                .iter()
                .flat_map(|v| [v.key.content.clone(), v.value.to_string()])
                .collect(),
        ),
        I::Misc(m) => (
            &m.span,
            m.instruction.content.to_lowercase(),
            vec![m.arguments.to_string().trim().to_string()],
        ),
    };
    Norm {
        line: line_of(content, span.start),
        name,
        args,
    }
}

#[test]
fn shared_instructions_agree_with_dockerfile_parser_crate() {
    let mut differences = Vec::new();
    let mut rejects = Vec::new();
    let mut compared = 0;
    for (name, path) in cases() {
        let bytes = fs::read(&path).unwrap();
        let Ok(ours_df) = parse(&bytes) else {
            // Our own error cases are rejected by BuildKit too; snapshots.rs pins the error.
            assert!(
                name.starts_with("testdata/error-"),
                "{name}: we reject a Dockerfile BuildKit parses"
            );
            continue;
        };
        let Ok(content) = String::from_utf8(bytes) else {
            continue; // the crate takes &str only
        };
        let theirs_df = match dp::Dockerfile::parse(&content) {
            Ok(df) => df,
            Err(e) => {
                rejects.push((name.clone(), e.to_string()));
                continue;
            }
        };
        let ours: Vec<Norm> = ours_df.instructions.iter().map(ours).collect();
        let theirs: Vec<Norm> = theirs_df
            .instructions
            .iter()
            .map(|i| theirs(&content, i))
            .collect();
        compared += 1;
        for our in &ours {
            let their = theirs.iter().find(|t| t.line == our.line);
            if their != Some(our) {
                differences.push((
                    name.clone(),
                    our.line,
                    format!("ours {our:?}\ntheirs {their:?}"),
                ));
            }
        }
        for their in &theirs {
            if !ours.iter().any(|o| o.line == their.line) {
                differences.push((name.clone(), their.line, format!("theirs only {their:?}")));
            }
        }
    }
    let mut failures = Vec::new();
    for (case, line, detail) in &differences {
        if !KNOWN_DIFFERENCES
            .iter()
            .any(|(c, l, _)| c == case && l == line)
        {
            failures.push(format!("{case}:{line}: unlisted difference\n{detail}"));
        }
    }
    for (case, line, reason) in KNOWN_DIFFERENCES {
        if !differences.iter().any(|(c, l, _)| c == case && l == line) {
            failures.push(format!(
                "{case}:{line}: listed ({reason}) but no longer differs"
            ));
        }
    }
    for (case, error) in &rejects {
        if !CRATE_REJECTS.iter().any(|(c, _)| c == case) {
            failures.push(format!("{case}: the crate rejects it, unlisted: {error}"));
        }
    }
    for (case, reason) in CRATE_REJECTS {
        if !rejects.iter().any(|(c, _)| c == case) {
            failures.push(format!(
                "{case}: listed as rejected ({reason}) but the crate parses it"
            ));
        }
    }
    assert!(compared > 0, "the crate parsed no case at all");
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

mod generated {
    //! Both parsers on generated Dockerfiles from the syntax they share (no escapes, quotes,
    //! heredocs or RUN flags, which the crate does not model): they must agree everywhere.
    use super::{Norm, dp, ours, theirs};
    use proptest::prelude::*;
    use strata_frontend::parse;

    fn word() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9._/]{0,7}"
    }

    /// ENV and ARG names as the crate accepts them.
    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9_]{0,7}"
    }

    fn words(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(word(), n)
    }

    fn json(items: Vec<String>) -> String {
        let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn instruction() -> impl Strategy<Value = String> {
        let keyword = prop::sample::select(vec!["RUN", "CMD", "ENTRYPOINT", "run", "Cmd"]);
        prop_oneof![
            (
                word(),
                prop::option::of("[a-z][a-z0-9_-]{0,7}"),
                prop::option::of(word())
            )
                .prop_map(|(image, alias, platform)| {
                    let platform = platform
                        .map(|p| format!("--platform={p} "))
                        .unwrap_or_default();
                    match alias {
                        Some(alias) => format!("FROM {platform}{image} AS {alias}"),
                        None => format!("FROM {platform}{image}"),
                    }
                }),
            (keyword.clone(), words(1..5)).prop_map(|(k, w)| format!("{k} {}", w.join(" "))),
            (keyword.clone(), words(1..4), words(1..3)).prop_map(|(k, a, b)| format!(
                "{k} {} \\\n    {}",
                a.join(" "),
                b.join(" ")
            )),
            (keyword, words(0..4)).prop_map(|(k, w)| format!("{k} {}", json(w))),
            (
                prop::option::of(word()),
                prop::option::of(word()),
                words(2..5)
            )
                .prop_map(|(from, chown, paths)| {
                    let mut line = String::from("COPY");
                    if let Some(from) = from {
                        line.push_str(&format!(" --from={from}"));
                    }
                    if let Some(chown) = chown {
                        line.push_str(&format!(" --chown={chown}"));
                    }
                    format!("{line} {}", paths.join(" "))
                }),
            (
                prop::sample::select(vec!["ENV", "LABEL"]),
                prop::collection::vec((name(), word()), 1..4)
            )
                .prop_map(|(k, pairs)| {
                    let pairs: Vec<String> =
                        pairs.iter().map(|(a, b)| format!("{a}={b}")).collect();
                    format!("{k} {}", pairs.join(" "))
                }),
            (name(), word()).prop_map(|(k, v)| format!("ENV {k} {v}")),
            (name(), prop::option::of(word())).prop_map(|(name, value)| match value {
                Some(v) => format!("ARG {name}={v}"),
                None => format!("ARG {name}"),
            }),
            (
                prop::sample::select(vec!["WORKDIR", "USER", "EXPOSE", "STOPSIGNAL", "ADD"]),
                words(1..3)
            )
                .prop_map(|(k, w)| format!("{k} {}", w.join(" "))),
        ]
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => instruction(),
            1 => Just(String::new()),
            1 => word().prop_map(|w| format!("# {w}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn generated_dockerfiles_agree(lines in prop::collection::vec(line(), 1..12)) {
            let mut source = String::from("FROM base\n");
            for line in &lines {
                source.push_str(line);
                source.push('\n');
            }
            let ours_df = parse(source.as_bytes()).expect("we parse it");
            let theirs_df = dp::Dockerfile::parse(&source).expect("the crate parses it");
            let ours: Vec<Norm> = ours_df.instructions.iter().map(ours).collect();
            let theirs: Vec<Norm> = theirs_df.instructions.iter().map(|i| theirs(&source, i)).collect();
            prop_assert_eq!(ours, theirs, "{}", source);
        }
    }
}
