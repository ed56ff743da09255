//! BuildKit's parser corpus (`../shared/conformance/parser/`): every positive case dumps
//! byte for byte as upstream's `result`, every negative case is an error, the line spans of
//! `line-info/` and the heredoc bodies of `heredocs.json` match. One test collects every miss
//! so a regression shows its whole extent at once.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unreadable corpus must fail loudly"
)]

use fs_err as fs;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use strata_frontend::{Dockerfile, Instruction, dump, parse};

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/parser");
    assert!(
        dir.join("README.md").is_file(),
        "the parser corpus is missing at {} (the repository must sit beside shared/)",
        dir.display()
    );
    dir
}

/// The case directories under `dir`, sorted.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    out.sort();
    out
}

fn name(root: &Path, case: &Path) -> String {
    case.strip_prefix(root).unwrap().display().to_string()
}

#[derive(Deserialize)]
struct HeredocCase {
    instruction_index: usize,
    instruction: String,
    start_line: u32,
    end_line: u32,
    heredocs: Vec<ExpectedHeredoc>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct ExpectedHeredoc {
    name: String,
    fd: u64,
    expand: bool,
    chomp: bool,
    content: String,
}

#[derive(Deserialize)]
struct LineInfo {
    root: Span,
    children: Vec<ChildSpan>,
}

#[derive(Deserialize)]
struct Span {
    start_line: u32,
    end_line: u32,
}

#[derive(Deserialize)]
struct ChildSpan {
    instruction: String,
    start_line: u32,
    end_line: u32,
}

fn check_positive(root: &Path, case: &Path, misses: &mut Vec<String>) {
    let name = name(root, case);
    let source = fs::read(case.join("Dockerfile")).unwrap();
    let expected = fs::read_to_string(case.join("result")).unwrap();
    let df = match parse(&source) {
        Ok(df) => df,
        Err(e) => {
            misses.push(format!("{name}: rejected at {}: {e}", e.loc));
            return;
        }
    };
    let got = dump(&df);
    if got != expected {
        misses.push(format!(
            "{name}: dump differs\n--- expected\n{expected}--- got\n{got}"
        ));
    }
    let heredocs = case.join("heredocs.json");
    if heredocs.is_file() {
        let expected: Vec<HeredocCase> =
            serde_json::from_str(&fs::read_to_string(heredocs).unwrap()).unwrap();
        check_heredocs(&name, &df, &expected, misses);
    }
}

fn check_heredocs(name: &str, df: &Dockerfile, expected: &[HeredocCase], misses: &mut Vec<String>) {
    let with_heredocs: Vec<(usize, &Instruction)> = df
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| !i.heredocs.is_empty())
        .collect();
    if with_heredocs.len() != expected.len() {
        misses.push(format!(
            "{name}: {} instructions with heredocs, expected {}",
            with_heredocs.len(),
            expected.len()
        ));
    }
    for case in expected {
        let Some(ins) = df.instructions.get(case.instruction_index) else {
            misses.push(format!("{name}: no instruction {}", case.instruction_index));
            continue;
        };
        let got: Vec<ExpectedHeredoc> = ins
            .heredocs
            .iter()
            .map(|h| ExpectedHeredoc {
                name: h.name.to_string(),
                fd: h.fd,
                expand: h.expand,
                chomp: h.chomp,
                content: h.content.to_string(),
            })
            .collect();
        let span = (ins.range.start.line, ins.range.end.line);
        if got != case.heredocs
            || span != (case.start_line, case.end_line)
            || ins.keyword != case.instruction.as_str()
        {
            misses.push(format!(
                "{name}: instruction {} ({}) lines {span:?} heredocs {got:?}, expected {} lines {:?} heredocs {:?}",
                case.instruction_index,
                ins.keyword,
                case.instruction,
                (case.start_line, case.end_line),
                case.heredocs
            ));
        }
    }
}

fn check_negative(root: &Path, case: &Path, misses: &mut Vec<String>) {
    let source = fs::read(case.join("Dockerfile")).unwrap();
    if let Ok(df) = parse(&source) {
        misses.push(format!(
            "{}: accepted, dumps as\n{}",
            name(root, case),
            dump(&df)
        ));
    }
}

fn check_line_info(root: &Path, misses: &mut Vec<String>) {
    let case = root.join("line-info/testfile-line");
    let expected: LineInfo =
        serde_json::from_str(&fs::read_to_string(case.join("expected-lines.json")).unwrap())
            .unwrap();
    let df = match parse(&fs::read(case.join("Dockerfile")).unwrap()) {
        Ok(df) => df,
        Err(e) => {
            misses.push(format!("line-info: rejected: {e}"));
            return;
        }
    };
    let root_span = (df.range.start.line, df.range.end.line);
    if root_span != (expected.root.start_line, expected.root.end_line) {
        misses.push(format!("line-info: root spans {root_span:?}"));
    }
    let got: Vec<(String, u32, u32)> = df
        .instructions
        .iter()
        .map(|i| (i.keyword.to_string(), i.range.start.line, i.range.end.line))
        .collect();
    let want: Vec<(String, u32, u32)> = expected
        .children
        .iter()
        .map(|c| (c.instruction.clone(), c.start_line, c.end_line))
        .collect();
    if got != want {
        misses.push(format!("line-info: spans {got:?}, expected {want:?}"));
    }
}

#[test]
fn shared_corpus_matches_buildkit() {
    let root = corpus();
    let mut misses = Vec::new();
    let mut counts = Vec::new();
    for dir in ["positive", "supplemental/positive"] {
        let cases = cases(&root.join(dir));
        counts.push(cases.len());
        for case in &cases {
            check_positive(&root, case, &mut misses);
        }
    }
    for dir in ["negative", "supplemental/negative"] {
        let cases = cases(&root.join(dir));
        counts.push(cases.len());
        for case in &cases {
            check_negative(&root, case, &mut misses);
        }
    }
    check_line_info(&root, &mut misses);
    // The README's table: a case that disappears must not pass silently.
    assert_eq!(counts, [33, 16, 4, 6], "corpus case counts changed");
    assert!(
        misses.is_empty(),
        "{} conformance misses:\n\n{}",
        misses.len(),
        misses.join("\n\n")
    );
}
