//! Frontend diagnostics for people, one format for every command (`parse`, `check`, `build`):
//! the severity, the location and the message on one line, then the Dockerfile line it points
//! at with a caret under the column.
//!
//! ```text
//! error: Dockerfile:12:5: unknown instruction: RUNN (did you mean RUN?)
//! 12 | RUNN echo hi
//!    |     ^
//! warning: Dockerfile:2:1: Maintainer instruction is deprecated ... [MaintainerDeprecated]
//! 2 | MAINTAINER me
//!   | ^
//! ```

use std::fmt::Write as _;
use strata_frontend::{Diagnostic, Severity};
use strata_graph::SourceLoc;

/// Renders `d`, found in `file` whose bytes are `source`, as a few lines ending in `\n`.
pub(crate) fn render(file: &str, source: &[u8], d: &Diagnostic) -> String {
    let mut out = String::new();
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let rule = d.rule.map(|r| format!(" [{r}]")).unwrap_or_default();
    let _ = writeln!(out, "{severity}: {file}:{}: {}{rule}", d.loc, d.text());
    out.push_str(&snippet(source, d.loc));
    out
}

/// Points at `loc` in `file` without a message of its own (the place of a failed build
/// step, after its error): ` --> Dockerfile:5:1`, the line, a caret.
pub(crate) fn render_place(file: &str, source: &[u8], loc: SourceLoc) -> String {
    format!(" --> {file}:{loc}\n{}", snippet(source, loc))
}

/// The characters of a source line a snippet shows at least.
const SHOWN: usize = 200;

/// The source line of `loc` with a caret under its column (empty if the line is missing).
fn snippet(source: &[u8], loc: SourceLoc) -> String {
    let Some(line) = source_line(source, loc.line) else {
        return String::new();
    };
    // A 16 MiB line is shown as its start (and enough to reach the column), not whole.
    let keep = (loc.column as usize).saturating_add(40).max(SHOWN);
    let line = match line.char_indices().nth(keep) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    };
    // A NUL or an escape sequence in the Dockerfile is shown, not sent to the terminal.
    let line = crate::report::clip(&line).into_owned();
    let number = loc.line.to_string();
    let pad = " ".repeat(number.len());
    format!(
        "{number} | {line}\n{pad} | {}^\n",
        caret_padding(&line, loc.column)
    )
}

/// Line `n` (1-based) of `source`, without its line end; BOM and invalid UTF-8 made readable.
fn source_line(source: &[u8], n: u32) -> Option<String> {
    let text = String::from_utf8_lossy(source);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let index = usize::try_from(n).ok()?.checked_sub(1)?;
    let line = text.split('\n').nth(index)?;
    Some(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Blanks up to `column` (1-based, in characters), keeping tabs so the caret lines up.
fn caret_padding(line: &str, column: u32) -> String {
    let skip = usize::try_from(column).unwrap_or(1).saturating_sub(1);
    line.chars()
        .chain(std::iter::repeat(' '))
        .take(skip)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_column() {
        let src = b"FROM alpine\n\tRUNN echo\n";
        let d = Diagnostic::error(SourceLoc::new(2, 2), "unknown instruction: RUNN")
            .with_suggestion(Some("RUN".into()));
        assert_eq!(
            render("Dockerfile", src, &d),
            "error: Dockerfile:2:2: unknown instruction: RUNN (did you mean RUN?)\n2 | \tRUNN echo\n  | \t^\n"
        );
    }

    #[test]
    fn warnings_say_so_and_name_their_rule() {
        let d = Diagnostic::warning(
            SourceLoc::new(1, 1),
            &strata_frontend::rule::MAINTAINER_DEPRECATED,
            "deprecated",
        );
        assert_eq!(
            render("df", b"MAINTAINER me", &d),
            "warning: df:1:1: deprecated [MaintainerDeprecated]\n1 | MAINTAINER me\n  | ^\n"
        );
    }

    #[test]
    fn a_huge_line_is_shown_as_its_start() {
        let source = format!("FROM a\nRUN {}\n", "A".repeat(1 << 20));
        let d = Diagnostic::error(SourceLoc::new(2, 1), "too long");
        let out = render("Dockerfile", source.as_bytes(), &d);
        assert!(out.len() < 400, "{} bytes", out.len());
        assert!(
            out.contains(&format!("2 | RUN {}…\n", "A".repeat(SHOWN - 4))),
            "{out}"
        );
    }

    #[test]
    fn a_line_past_the_end_prints_only_the_message() {
        let d = Diagnostic::error(SourceLoc::new(9, 1), "x");
        assert_eq!(
            render("Dockerfile", b"FROM a\n", &d),
            "error: Dockerfile:9:1: x\n"
        );
    }

    #[test]
    fn bom_crlf_invalid_utf8_and_wide_line_numbers() {
        let mut src = b"\xef\xbb\xbfFROM a\r\n".to_vec();
        for _ in 0..9 {
            src.extend_from_slice(b"RUN x\r\n");
        }
        src.extend_from_slice(b"RUN \xff\xfe caf\xc3\xa9 y\r\n");
        let d = Diagnostic::error(SourceLoc::new(11, 12), "here");
        assert_eq!(
            render("Dockerfile", &src, &d),
            "error: Dockerfile:11:12: here\n11 | RUN \u{fffd}\u{fffd} caf\u{e9} y\n   |            ^\n"
        );
        let d = Diagnostic::error(SourceLoc::new(1, 1), "first");
        assert_eq!(
            render("Dockerfile", &src, &d),
            "error: Dockerfile:1:1: first\n1 | FROM a\n  | ^\n"
        );
    }
}
