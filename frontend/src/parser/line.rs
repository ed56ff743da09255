//! Physical lines and how they join into logical lines.
//!
//! BuildKit reads the file with a line scanner that keeps line endings and fails on a line of
//! 64 KiB or more, strips `\r\n` itself, drops a BOM on the first line, and joins continued
//! lines with no separator. A logical line therefore has pieces of several physical lines;
//! [`LineMap`] remembers where each piece came from so any byte of the logical line can be
//! given its source line and column.

use super::error::{ParseError, ParseErrorKind};
use crate::rune;
use std::cell::Cell;
use strata_graph::SourceLoc;

/// The longest physical line BuildKit's scanner accepts, line ending excluded.
const MAX_LINE: usize = 65535;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One physical line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    /// The bytes, line ending (`\n`) included when there is one, BOM removed on line 1.
    pub(super) raw: &'a [u8],
    /// 1-based line number.
    pub(super) number: u32,
}

impl Line<'_> {
    /// The column just after the line's last character (at least 1).
    pub(super) fn end_column(&self) -> u32 {
        to_u32(rune::count(trim_newline(self.raw))).max(1)
    }
}

/// The physical lines of a file, read the way BuildKit's scanner reads them.
pub(super) struct Lines<'a> {
    rest: &'a [u8],
    number: u32,
}

impl<'a> Lines<'a> {
    pub(super) fn new(source: &'a [u8]) -> Self {
        Lines {
            rest: source,
            number: 0,
        }
    }

    /// The next line, or an error for a line that is too long.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'a>>, ParseError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = memchr_newline(self.rest).map_or(self.rest.len(), |i| i + 1);
        let (mut raw, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number = self.number.saturating_add(1);
        let content = raw.strip_suffix(b"\n").unwrap_or(raw);
        if content.len() > MAX_LINE {
            return Err(ParseError::new(
                SourceLoc::new(self.number, 1),
                ParseErrorKind::LineTooLong,
            ));
        }
        if self.number == 1 {
            raw = raw.strip_prefix(BOM).unwrap_or(raw);
        }
        Ok(Some(Line {
            raw,
            number: self.number,
        }))
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Go's `bytes.TrimRight(b, "\r\n")`.
pub(super) fn trim_newline(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| c != b'\r' && c != b'\n')
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// Go's `bytes.TrimLeft(b, "\t")`.
pub(super) fn trim_leading_tabs(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b'\t').unwrap_or(b.len());
    &b[start..]
}

/// BuildKit's `isComment`: the first non-blank character is `#`.
pub(super) fn is_comment(b: &[u8]) -> bool {
    rune::trim_left_space(b).first() == Some(&b'#')
}

/// Removes a line-continuation escape at the end of `line`.
///
/// Returns the line without it and `false` when the line continues, or the line unchanged and
/// `true` when it ends the instruction. A line continues when it ends with the escape
/// character and optional spaces or tabs, and either the escape is the whole line or the
/// character before it is not another escape (BuildKit's `([^\\])\\[ \t]*$|^\\[ \t]*$`).
pub(super) fn trim_continuation(line: &[u8], escape: u8) -> (&[u8], bool) {
    let end = line
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |i| i + 1);
    let trimmed = &line[..end];
    match trimmed.split_last() {
        Some((&last, before)) if last == escape => match before.last() {
            None => (before, false),
            Some(&prev) if prev != escape => (before, false),
            Some(_) => (line, true),
        },
        _ => (line, true),
    }
}

/// Where each piece of a logical line came from.
#[derive(Debug, Default)]
pub(super) struct LineMap {
    pieces: Vec<Piece>,
    /// The last answer (piece index, offset, column): locations are mostly asked for in
    /// increasing order, and counting on from the last one keeps a line with thousands of
    /// words linear instead of quadratic.
    last: Cell<Option<(usize, usize, u32)>>,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Byte offset of the piece in the logical line.
    offset: usize,
    line: u32,
    /// Column of the piece's first byte in its physical line.
    column: u32,
}

impl LineMap {
    /// Records that the logical line's bytes from `offset` on come from `line`, starting at
    /// `column`.
    pub(super) fn push(&mut self, offset: usize, line: u32, column: u32) {
        self.pieces.push(Piece {
            offset,
            line,
            column,
        });
    }

    /// Forgets every piece, keeping the allocation.
    pub(super) fn clear(&mut self) {
        self.pieces.clear();
        self.last.set(None);
    }

    /// The source location of byte `offset` of the logical line `text`.
    pub(super) fn loc(&self, text: &[u8], offset: usize) -> SourceLoc {
        let Some(idx) = self
            .pieces
            .partition_point(|p| p.offset <= offset)
            .checked_sub(1)
        else {
            return SourceLoc::new(1, 1);
        };
        let piece = self.pieces[idx];
        let end = offset.min(text.len());
        let (start, column) = match self.last.get() {
            Some((i, at, column)) if i == idx && at <= end => (at, column),
            _ => (piece.offset.min(end), piece.column),
        };
        let column = column.saturating_add(to_u32(rune::count(&text[start..end])));
        self.last.set(Some((idx, end, column)));
        SourceLoc::new(piece.line, column)
    }
}

pub(super) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"echo a \\", b"echo a ", false),
            (b"echo a\\  \t", b"echo a", false),
            (b"\\", b"", false),
            (b"\\ ", b"", false),
            (b"echo a\\\\", b"echo a\\\\", true),
            (b"echo b\\\\\\", b"echo b\\\\\\", true),
            (b"echo", b"echo", true),
            (b"", b"", true),
        ];
        for (input, want, eol) in cases {
            assert_eq!(trim_continuation(input, b'\\'), (*want, *eol), "{input:?}");
        }
        assert_eq!(trim_continuation(b"a `", b'`'), (&b"a "[..], false));
        assert_eq!(trim_continuation(b"a \\", b'`'), (&b"a \\"[..], true));
    }

    #[test]
    fn lines_keep_endings_and_drop_the_bom() {
        let mut lines = Lines::new(b"\xEF\xBB\xBFa\r\nb\n\nc");
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            got.push((line.number, line.raw.to_vec()));
        }
        assert_eq!(
            got,
            vec![
                (1, b"a\r\n".to_vec()),
                (2, b"b\n".to_vec()),
                (3, b"\n".to_vec()),
                (4, b"c".to_vec())
            ]
        );
    }

    #[test]
    fn line_length_limit_is_buildkits() {
        let ok = vec![b'a'; MAX_LINE];
        assert!(Lines::new(&ok).next_line().is_ok());
        let mut ok_lf = ok.clone();
        ok_lf.push(b'\n');
        assert!(Lines::new(&ok_lf).next_line().is_ok());
        let long = vec![b'a'; MAX_LINE + 1];
        let err = Lines::new(&long).next_line().unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::LineTooLong);
    }

    #[test]
    fn map_gives_columns_in_characters() {
        let text = "RUN é \\x  y".as_bytes();
        let mut map = LineMap::default();
        map.push(0, 3, 5);
        map.push(6, 4, 1);
        assert_eq!(map.loc(text, 4), SourceLoc::new(3, 9));
        assert_eq!(map.loc(text, 0), SourceLoc::new(3, 5));
        assert_eq!(map.loc(text, 5), SourceLoc::new(3, 10));
        assert_eq!(map.loc(text, 7), SourceLoc::new(4, 2));
        assert_eq!(map.loc(text, 6), SourceLoc::new(4, 1));
    }
}
