//! Snapshots of the raw parse of `testdata/dockerfiles/<case>/Dockerfile`: BuildKit's dump,
//! then every instruction with its span, flags, arguments and heredocs and where each starts.
//! A change in splitting, quoting or locations shows up in review as a `.snap` diff.
//! A case named `error-…` may fail to parse: its snapshot is then the error with its location,
//! as the CLI prints it; any other case must parse.

use std::fmt::Write;
use strata_frontend::{Arg, Args, Dockerfile, Instruction, dump, go_quote, parse};

fn arg(out: &mut String, indent: &str, what: &str, a: &Arg) {
    let _ = writeln!(
        out,
        "{indent}{what} {} @{}",
        go_quote(a.text.as_bytes()),
        a.loc
    );
}

fn args(out: &mut String, indent: &str, args: &Args) {
    match args {
        Args::None => {
            let _ = writeln!(out, "{indent}(no arguments)");
        }
        Args::Ignored => {
            let _ = writeln!(out, "{indent}(arguments ignored: unknown keyword)");
        }
        Args::Json(items) => {
            let _ = writeln!(out, "{indent}json form:");
            items.iter().for_each(|a| arg(out, indent, "  item", a));
        }
        Args::Words(items) => items.iter().for_each(|a| arg(out, indent, "word", a)),
        Args::Text(a) => arg(out, indent, "text", a),
        Args::Pairs(pairs) => {
            for p in pairs {
                let form = if p.legacy { "legacy pair" } else { "pair" };
                let _ = writeln!(
                    out,
                    "{indent}{form} {} @{} = {} @{}",
                    go_quote(p.key.text.as_bytes()),
                    p.key.loc,
                    go_quote(p.value.text.as_bytes()),
                    p.value.loc
                );
            }
        }
        Args::Healthcheck { kind, command } => {
            arg(out, indent, "kind", kind);
            self::args(out, indent, command);
        }
        Args::Onbuild(inner) => instruction(out, &format!("{indent}  "), inner),
    }
}

fn instruction(out: &mut String, indent: &str, ins: &Instruction) {
    let _ = writeln!(
        out,
        "{indent}{} ({:?}) lines {}-{} keyword @{}",
        ins.keyword, ins.kind, ins.range.start, ins.range.end, ins.keyword_loc
    );
    for c in &ins.comments {
        let _ = writeln!(
            out,
            "{indent}  comment {} @{}",
            go_quote(c.text.as_bytes()),
            c.loc
        );
    }
    for f in &ins.flags {
        let _ = writeln!(
            out,
            "{indent}  flag {} @{}",
            go_quote(f.text.as_bytes()),
            f.loc
        );
    }
    args(out, &format!("{indent}  "), &ins.args);
    for h in &ins.heredocs {
        let _ = writeln!(
            out,
            "{indent}  heredoc {} fd={} expand={} chomp={} lines {}-{}: {}",
            h.name,
            h.fd,
            h.expand,
            h.chomp,
            h.range.start,
            h.range.end,
            go_quote(h.content.as_bytes())
        );
    }
}

fn render(df: &Dockerfile) -> String {
    let mut out = String::from("# dump\n");
    out.push_str(&dump(df));
    out.push_str("\n# syntax tree\n");
    let _ = writeln!(out, "escape {:?}", char::from(df.escape));
    for d in &df.directives {
        let _ = writeln!(
            out,
            "directive {} = {} @{}",
            d.name,
            go_quote(d.value.as_bytes()),
            d.loc
        );
    }
    for w in &df.warnings {
        let _ = writeln!(out, "warning {:?} @{}", w.kind, w.loc);
    }
    for ins in &df.instructions {
        instruction(&mut out, "", ins);
    }
    out
}

/// The case's directory name: `testdata/dockerfiles/<case>/Dockerfile`.
fn case_name(path: &std::path::Path) -> String {
    let dir = path.parent().and_then(|d| d.file_name());
    dir.expect("cases live in a directory")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn testdata_dockerfiles() {
    insta::glob!("../../testdata/dockerfiles", "*/Dockerfile", |path| {
        let bytes = fs_err::read(path).expect("read the Dockerfile");
        let case = case_name(path);
        let text = match parse(&bytes) {
            Ok(df) => render(&df),
            Err(e) => {
                assert!(
                    case.starts_with("error-"),
                    "{case}: only error-… cases may fail to parse, got {}: {e}",
                    e.loc
                );
                format!("# parse error\nDockerfile:{}: {e}\n", e.loc)
            }
        };
        insta::assert_snapshot!(text);
    });
}
