//! No input makes the parser panic, hang or blow its stack: arbitrary bytes, Dockerfile-shaped
//! noise (proptest), and the hostile inputs of `shared/research/hostile` (huge lines, deep
//! nesting, floods of continuations and flags).

use proptest::prelude::*;
use strata_frontend::{Args, Dockerfile, ParseErrorKind, dump, parse};

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
