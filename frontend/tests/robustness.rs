//! No input makes the parser panic, hang or blow its stack: arbitrary bytes, Dockerfile-shaped
//! noise (proptest), and the hostile inputs of `shared/research/hostile` (huge lines, deep
//! nesting, floods of continuations and flags).

use proptest::prelude::*;
use strata_frontend::{
    Args, BuildOptions, Dockerfile, ExpandErrorKind, IgnoreMatcher, ImageResolver, Lexer,
    MAX_NESTING, NoVars, ParseErrorKind, Platform, ResolvedImage, dump, parse,
};
use strata_graph::ImageConfig;

/// Everything a successful parse promises, checked on any input.
fn check_invariants(source: &[u8], df: &Dockerfile) {
    let lines = u32::try_from(source.split(|&b| b == b'\n').count()).expect("fewer than 4G lines");
    let dumped = dump(df);
    assert_eq!(dumped.lines().count(), df.instructions.len());
    for ins in &df.instructions {
        assert!(ins.range.start <= ins.range.end, "{:?}", ins.range);
        assert!(ins.range.start.line >= 1 && ins.range.end.line <= lines);
        assert!(ins.keyword_loc.line >= ins.range.start.line);
        assert!(ins.keyword_loc.column >= 1);
        for h in &ins.heredocs {
            assert!(h.range.end.line <= ins.range.end.line);
        }
        if let Args::Onbuild(inner) = &ins.args {
            assert!(!matches!(inner.args, Args::Onbuild(_)) || inner.heredocs.is_empty());
        }
    }
    serde_json::to_string(df).expect("the AST serializes");
}

fn parse_and_check(source: &[u8]) {
    if let Ok(df) = parse(source) {
        check_invariants(source, &df);
    }
}

/// Pieces that exercise the parser's branches: keywords, flags, quotes, escapes, heredoc
/// markers, JSON, directives, odd whitespace and bytes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"FROM ",
        b"RUN ",
        b"COPY ",
        b"ADD ",
        b"ENV ",
        b"LABEL ",
        b"ARG ",
        b"CMD ",
        b"ENTRYPOINT ",
        b"HEALTHCHECK ",
        b"ONBUILD ",
        b"SHELL ",
        b"VOLUME ",
        b"EXPOSE ",
        b"USER ",
        b"WORKDIR ",
        b"MAINTAINER ",
        b"STOPSIGNAL ",
        b"foo ",
        b"run",
        b"--mount=type=cache,target=/x ",
        b"--from=a ",
        b"-- ",
        b"--",
        b"--x=\"a b\" ",
        b"\n",
        b"\r\n",
        b"\r",
        b"\\\n",
        b"\\",
        b"`",
        b"`\n",
        b" ",
        b"\t",
        b"\x0b",
        b"\x0c",
        b"\"",
        b"'",
        b"=",
        b"a=b ",
        b"k v",
        b"#",
        b"# escape=`\n",
        b"# syntax=x\n",
        b"# check=skip=all\n",
        b"#!/bin/sh\n",
        b"<<EOF",
        b"<<-EOF",
        b"<<'EOF'",
        b"3<<E",
        b"<< EOF",
        b"EOF\n",
        b"\tEOF\n",
        b"E\n",
        b"[",
        b"]",
        b"[\"a\", \"b\"]",
        b"[1]",
        b"[\"\\u00e9\\ud83d\\ude00\"]",
        b"{",
        b"}",
        b",",
        b"$",
        b"${",
        b"${a:-b}",
        b"${a/b/c}",
        b"\xef\xbb\xbf",
        b"\xc2\xa0",
        b"\xc2\x85",
        b"\xe2\x80\xa8",
        b"\xff",
        b"\xc3",
        b"\x00",
        b"caf\xc3\xa9",
        b"NONE",
        b"CMD",
        b"AS",
        b"x",
    ];
    prop::sample::select(pieces).prop_map(<[u8]>::to_vec)
}

fn dockerfile_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_bytes(source in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_and_check(&source);
    }

    #[test]
    fn parse_never_panics_on_dockerfile_like_input(source in dockerfile_like()) {
        parse_and_check(&source);
    }

    /// A Dockerfile that parses still parses, with the same dump, when a BOM is added and its
    /// line endings become CRLF (BuildKit strips both).
    #[test]
    fn crlf_and_bom_do_not_change_the_dump(source in dockerfile_like()) {
        if source.contains(&b'\r') || source.starts_with(b"\xef\xbb\xbf") {
            return Ok(());
        }
        let Ok(df) = parse(&source) else { return Ok(()) };
        if df.instructions.iter().any(|i| !i.heredocs.is_empty()) {
            return Ok(()); // heredoc bodies keep their line endings
        }
        let mut crlf = b"\xef\xbb\xbf".to_vec();
        for (i, line) in source.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                crlf.extend_from_slice(b"\r\n");
            }
            crlf.extend_from_slice(line);
        }
        let again = parse(&crlf).expect("CRLF version parses");
        prop_assert_eq!(dump(&again), dump(&df));
    }
}

const BASE: &[u8] = b"ARG BASE=busybox:local\nFROM ${BASE}\n";

fn with_base(rest: &[u8]) -> Vec<u8> {
    [BASE, rest].concat()
}

#[test]
fn hostile_inputs_end_in_an_error_or_a_sane_parse() {
    let huge_line = with_base(&[b"RUN echo ".as_slice(), &vec![b'A'; 16 << 20], b"\n"].concat());
    let err = parse(&huge_line).unwrap_err();
    assert_eq!((err.kind, err.loc.line), (ParseErrorKind::LineTooLong, 3));

    let continuations = with_base(
        &[
            b"RUN echo \\\n".as_slice(),
            &b"x \\\n".repeat(200_000),
            b"end\n",
        ]
        .concat(),
    );
    let df = parse(&continuations).unwrap();
    assert_eq!(df.instructions[2].range.end.line, 200_004);

    let deep_vars = with_base(
        &[
            b"ENV X=".as_slice(),
            &b"${A:-".repeat(5000),
            b"v",
            &b"}".repeat(5000),
            b"\n",
        ]
        .concat(),
    );
    parse_and_check(&deep_vars);

    let deep_heredoc_vars = with_base(
        &[
            b"RUN <<EOF ".as_slice(),
            &b"${A:-".repeat(5000),
            b"}\nx\nEOF\n",
        ]
        .concat(),
    );
    parse_and_check(&deep_heredoc_vars);

    let deep_json = with_base(
        &[
            b"RUN ".as_slice(),
            &b"[".repeat(30_000),
            &b"]".repeat(30_000),
            b"\n",
        ]
        .concat(),
    );
    let df = parse(&deep_json).unwrap();
    assert!(
        matches!(df.instructions[2].args, Args::Text(_)),
        "over Go's depth limit: not JSON"
    );

    let unterminated =
        with_base(&[b"RUN <<EOF\n".as_slice(), &b"echo x\n".repeat(50_000)].concat());
    let err = parse(&unterminated).unwrap_err();
    assert_eq!(err.loc.line, 3);
    assert!(matches!(
        err.kind,
        ParseErrorKind::UnterminatedHeredoc { .. }
    ));

    let stages: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("FROM scratch AS s{i}\n").into_bytes())
        .collect();
    assert_eq!(parse(&stages).unwrap().instructions.len(), 20_000);

    let flags = with_base(
        &[
            b"COPY ".as_slice(),
            &b"--from=0 \\\n".repeat(50_000),
            b"Dockerfile /x\n",
        ]
        .concat(),
    );
    let df = parse(&flags).unwrap();
    assert_eq!(df.instructions[2].flags.len(), 50_000);
    assert_eq!(df.instructions[2].flags[49_999].loc.line, 50_002);

    let words = with_base(&[b"ARG".as_slice(), &b" a=b".repeat(16_000), b"\n"].concat());
    let df = parse(&words).unwrap();
    let Args::Words(args) = &df.instructions[2].args else {
        panic!("ARG words")
    };
    assert_eq!(args[15_999].loc.column, 4 + 4 * 15_999 + 1);

    for source in [
        with_base(b"RUN echo a\0b\nLABEL x=\0\n"),
        with_base(b"RUN echo \xff\xfe\xc3\x28\nLABEL k\xff=v\n"),
        [
            b"\xef\xbb\xbf".as_slice(),
            &BASE
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        b"\r\n".to_vec()
                    } else {
                        vec![b]
                    }
                })
                .collect::<Vec<_>>(),
            b"RUN echo a\rRUN echo b\r\n",
        ]
        .concat(),
        with_base(b"FROOM busybox\nRUN\nCOPY\nONBUILD ONBUILD RUN x\nONBUILD FROM x\n"),
        with_base(b"HEALTHCHECK --interval=-1s --timeout=99999999999h CMD true\n"),
        b"# escape=x\nFROM a\n".to_vec(),
        b"".to_vec(),
        b"# c\n#\n   \n\t\n".to_vec(),
    ] {
        parse_and_check(&source);
    }
}

/// Runs `f` on a thread with a 256 KiB stack: a 32nd of a main thread's 8 MiB, so a nesting
/// limit that holds here holds with room to spare wherever the frontend runs. A stack overflow
/// aborts the test process, which fails the test.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .expect("a test thread starts")
        .join()
        .expect("no panic on the small stack")
}

/// `text` cut into physical lines of at most `width` bytes joined by `\` continuations, so
/// that a logical line longer than BuildKit's 64 KiB physical-line limit still parses.
fn continued(text: &str, width: usize) -> String {
    let bytes = text.as_bytes();
    let lines: Vec<&str> = bytes
        .chunks(width)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    lines.join("\\\n")
}

/// Every problem `strata check` would print, as `LINE:COL: message`.
fn check_messages(source: &[u8]) -> Vec<String> {
    strata_frontend::check(source, &BuildOptions::default(), &AnyImage)
        .iter()
        .map(|d| format!("{}: {}", d.loc, d.text()))
        .collect()
}

/// Every base image exists, with an empty config (as `strata check` assumes).
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: format!("sha256:{reference}"),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }
}

/// 12,000 nested `${A:-` (72 KB) blew the stack of the expansion scanner; now the scanner stops
/// at its nesting limit with an error, directly and through `strata check`, on a small stack.
#[test]
fn deep_substitutions_are_an_error_not_a_stack_overflow() {
    let word = format!("{}x{}", "${A:-".repeat(12_000), "}".repeat(12_000));
    let direct = word.clone();
    let err = on_small_stack(move || Lexer::default().expand(&direct, &NoVars)).unwrap_err();
    assert_eq!(
        err.kind,
        ExpandErrorKind::TooDeep {
            offset: 5 * MAX_NESTING
        }
    );

    let dockerfile = format!("FROM scratch\nENV X={}\nRUN true\n", continued(&word, 4096));
    let messages = on_small_stack(move || check_messages(dockerfile.as_bytes()));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("2:1: failed to process \"${A:-${A:-")
            && messages[0].ends_with(&format!(
                "(72001 bytes): substitutions nested more than {MAX_NESTING} deep (the '${{' at character 160)"
            )),
        "{messages:?}"
    );

    // In a heredoc line, the marker scanner gives up on the line (no heredoc) instead.
    let heredoc = format!("FROM scratch\nRUN <<EOF {}\nEOF\n", continued(&word, 4096));
    let df = on_small_stack(move || parse(heredoc.as_bytes()).map(|df| dump(&df))).unwrap();
    assert!(
        df.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("(run \"<<EOF"))
    );
}

/// `ENV A=$A$A` line after line doubled the memory each time; an expansion now stops growing
/// at 1 MiB with an error on the line that went over.
#[test]
fn doubling_values_stop_at_the_growth_limit() {
    let mut dockerfile = String::from("FROM scratch\nENV A=0123456789abcdef\n");
    for _ in 0..40 {
        dockerfile.push_str("ENV A=$A$A\n");
    }
    dockerfile.push_str("RUN echo \"$A\"\n");
    let messages = check_messages(dockerfile.as_bytes());
    // 16 bytes doubled 16 times is 1 MiB: line 19 is the first to add more than that. Lines
    // after it fail too, each on its own, and the RUN still lowers.
    assert_eq!(messages.len(), 40 - 16, "{messages:?}");
    assert!(
        messages[0].starts_with(
            "19:1: failed to process \"$A$A\": expansion adds more than 1048576 bytes"
        ),
        "{messages:?}"
    );
}

/// `ONBUILD ONBUILD …` nested the parser (and the tree's drop, dump and JSON) as deep as the
/// line was long; it now stops at a limit with an error at the instruction.
#[test]
fn deep_onbuild_is_an_error_not_a_stack_overflow() {
    let line = format!("{}RUN x", "ONBUILD ".repeat(10_000));
    let source = format!("FROM scratch\n{}\n", continued(&line, 4096));
    let (err, messages) = on_small_stack(move || {
        (
            parse(source.as_bytes()).unwrap_err(),
            check_messages(source.as_bytes()),
        )
    });
    assert_eq!(
        (err.loc.line, err.loc.column, err.kind),
        (2, 1, ParseErrorKind::OnbuildTooDeep { limit: 16 })
    );
    assert_eq!(messages, ["2:1: ONBUILD nested more than 16 deep"]);

    // At the limit, the raw parse, its dump and its JSON work; the instruction check rejects
    // the chain as BuildKit does.
    let source = format!("FROM scratch\n{}RUN x\n", "ONBUILD ".repeat(16));
    let (dumped, json, messages) = on_small_stack(move || {
        let df = parse(source.as_bytes()).unwrap();
        let json = serde_json::to_string(&df).unwrap();
        (dump(&df), json, check_messages(source.as_bytes()))
    });
    assert_eq!(
        dumped.lines().nth(1).unwrap(),
        format!("{}(run \"x\"){}", "(onbuild ".repeat(16), ")".repeat(16))
    );
    assert_eq!(json.matches("\"form\":\"onbuild\"").count(), 16);
    assert_eq!(
        messages,
        ["2:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"]
    );
}

/// JSON nesting is scanned without recursion (Go's limit of 10,000 decides what is JSON).
#[test]
fn deep_json_on_a_small_stack() {
    let source = format!(
        "FROM scratch\nRUN {}{}\n",
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let messages = on_small_stack(move || {
        let df = parse(source.as_bytes()).unwrap();
        assert!(matches!(df.instructions[1].args, Args::Text(_)));
        check_messages(source.as_bytes())
    });
    // Not JSON, so a shell-form RUN: it checks clean.
    assert_eq!(messages, Vec::<String>::new());
}

/// `FROM a` → `FROM b` → … 20,000 stages deep: stage resolution, platforms, reachability and
/// lowering walk the chain without recursion and without copying each stage's state.
#[test]
fn long_stage_chains_lower_on_a_small_stack() {
    let mut source = String::from("FROM scratch AS s0\nENV V0=0\n");
    for i in 1..20_000 {
        source.push_str(&format!("FROM s{} AS s{i}\nENV V{i}=$V{}\n", i - 1, i - 1));
    }
    source.push_str("RUN echo \"$V19999\"\n");
    let (lowered, env) = on_small_stack(move || {
        let df = parse(source.as_bytes()).unwrap();
        let opts = BuildOptions::default();
        let lowered = strata_frontend::lower(&df, &opts, &AnyImage).unwrap();
        let target = &lowered.graph.targets[0];
        let run = lowered.graph.node(target.node);
        let env = match &run.op {
            strata_graph::Op::Exec(exec) => exec.env.clone(),
            other => panic!("the target ends in the RUN, not {other:?}"),
        };
        (lowered.stages.len(), env)
    });
    assert_eq!(lowered, 20_000);
    assert_eq!(env.len(), 20_001, "PATH and every V");
    assert_eq!(env.last().map(String::as_str), Some("V19999=0"));
}

/// `.dockerignore` patterns become regular expressions for the `regex` crate, which matches
/// in linear time without recursion. Thousands of `**/` in a row mean one; thousands of `*/`
/// make an expression too large, which is an error naming the line, not a crash.
#[test]
fn dockerignore_with_many_wildcards() {
    let patterns = format!("{}x\n!{}y\n", "**/".repeat(10_000), "d/".repeat(10_000));
    let (deep, shallow, back) = on_small_stack(move || {
        let m = IgnoreMatcher::parse(patterns.as_bytes()).expect("the patterns compile");
        let deep = format!("{}x", "d/".repeat(5_000));
        let back = format!("{}y", "d/".repeat(10_000));
        (
            m.is_excluded(&deep),
            m.is_excluded("x"),
            m.is_excluded(&back),
        )
    });
    assert!(deep && shallow && !back);

    let stars = format!("ok\n{}x\n", "*/".repeat(10_000));
    let err = IgnoreMatcher::parse(stars.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".dockerignore line 2: pattern of 20001 bytes is too complex"
    );

    let many: String = (0..2_000).map(|i| format!("**/a{i}/**/b*\n")).collect();
    let m = on_small_stack(move || IgnoreMatcher::parse(many.as_bytes()));
    let m = m.expect("2,000 patterns compile");
    assert!(m.is_excluded("q/a1999/r/s/bz"));
    assert!(!m.is_excluded("q/a2000/r/bz"));
}

/// "Did you mean" compares a name with every stage name; a 60 KB name against 5,000 stages
/// took a Levenshtein table of 60 KB × each name; lengths now rule such pairs out first.
#[test]
fn suggestions_for_huge_names_stay_cheap() {
    let mut source = String::new();
    for i in 0..5_000 {
        source.push_str(&format!("FROM scratch AS stage{i}\n"));
    }
    source.push_str(&format!(
        "COPY --from={} /a /b\n",
        continued(&"Stage0!".repeat(8_000), 4096)
    ));
    let messages = check_messages(source.as_bytes());
    assert_eq!(messages.len(), 1, "{:?}", messages.first());
    assert!(
        messages[0].starts_with("5001:1: \"Stage0!Stage0!")
            && messages[0].contains("is neither a stage nor a valid image reference"),
        "{}",
        &messages[0][..200]
    );
}
