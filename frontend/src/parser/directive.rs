//! Parser directives: `# syntax=…`, `# escape=…`, `# check=…` at the very top of the file.
//!
//! The directive area ends at the first line that is not a known directive: a blank line, an
//! ordinary comment, a `#!` shebang, an unknown directive or an instruction. After that a
//! `# escape=` is just a comment. A directive given twice is an error.

use super::error::ParseErrorKind;
use crate::rune;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag, take_while};
use nom::character::complete::satisfy;
use nom::combinator::{recognize, rest};

const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Reads directives line by line until the area ends.
#[derive(Debug, Default)]
pub(super) struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

/// A directive's lower-cased name and its value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RawDirective<'a> {
    pub(super) name: String,
    pub(super) value: &'a [u8],
}

impl DirectiveParser {
    /// Looks at the next line (line ending and leading blanks already removed).
    pub(super) fn parse_line<'a>(
        &mut self,
        line: &'a [u8],
    ) -> Result<Option<RawDirective<'a>>, ParseErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = split_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(ParseErrorKind::DuplicateDirective { name });
        }
        self.seen.push(name.clone());
        Ok(Some(RawDirective { name, value }))
    }
}

/// Go's `\s`: the blanks BuildKit's directive regular expression skips.
fn is_blank(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

type Res<'a, O> = IResult<&'a [u8], O>;

/// `#` blanks `name` blanks `=` blanks `value` blanks, as BuildKit's
/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` after the `#` and leading spaces.
fn split_directive(line: &[u8]) -> Option<(&[u8], &[u8])> {
    fn name(i: &[u8]) -> Res<'_, &[u8]> {
        recognize((
            satisfy(|c| c.is_ascii_alphabetic()),
            take_while(|b: u8| b.is_ascii_alphanumeric()),
        ))
        .parse(i)
    }
    let after_hash = tag::<_, _, nom::error::Error<&[u8]>>(&b"#"[..])
        .parse(line)
        .ok()?
        .0;
    let after_hash = rune::trim_left_space(after_hash);
    let (_, (name, _, _, after_eq)) = (name, take_while(is_blank), tag(&b"="[..]), rest)
        .parse(after_hash)
        .ok()?;
    value(after_eq).map(|v| (name, v))
}

/// `\s*(.+?)\s*$`: the value needs at least one character, so an all-blank rest gives its
/// last blank (the regular expression backtracks that far).
fn value(after_eq: &[u8]) -> Option<&[u8]> {
    let start = after_eq.iter().position(|&b| !is_blank(b));
    match start {
        None => after_eq.len().checked_sub(1).map(|last| &after_eq[last..]),
        Some(start) => {
            let end = after_eq
                .iter()
                .rposition(|&b| !is_blank(b))
                .map_or(start + 1, |i| i + 1);
            Some(&after_eq[start..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(lines: &[&str]) -> Result<Vec<(String, String)>, ParseErrorKind> {
        let mut p = DirectiveParser::default();
        let mut out = Vec::new();
        for line in lines {
            if let Some(d) = p.parse_line(line.as_bytes())? {
                out.push((d.name, String::from_utf8_lossy(d.value).into_owned()));
            }
        }
        Ok(out)
    }

    #[test]
    fn reads_directives_until_the_area_ends() {
        let got = parse_all(&[
            "# syntax=docker/dockerfile:1",
            "#  CHECK = skip=all ",
            "#escape=`",
        ]);
        assert_eq!(
            got.unwrap(),
            [
                ("syntax".into(), "docker/dockerfile:1".into()),
                ("check".into(), "skip=all".into()),
                ("escape".into(), "`".into())
            ]
        );
        assert_eq!(parse_all(&["", "# escape=`"]).unwrap(), []);
        assert_eq!(parse_all(&["# comment", "# escape=`"]).unwrap(), []);
        assert_eq!(parse_all(&["#!/bin/sh", "# escape=`"]).unwrap(), []);
        assert_eq!(parse_all(&["# foo=bar", "# escape=`"]).unwrap(), []);
        assert_eq!(parse_all(&["FROM a", "# escape=`"]).unwrap(), []);
    }

    #[test]
    fn a_repeated_directive_is_an_error() {
        assert_eq!(
            parse_all(&["# escape=\\", "# Escape=`"]),
            Err(ParseErrorKind::DuplicateDirective {
                name: "escape".into()
            })
        );
    }

    #[test]
    fn value_keeps_one_character_when_all_blank() {
        assert_eq!(value(b"  "), Some(&b" "[..]));
        assert_eq!(value(b""), None);
        assert_eq!(value(b" a b \t"), Some(&b"a b"[..]));
    }
}
