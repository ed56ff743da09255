//! BuildKit's raw Dockerfile parse, reproduced exactly.
//!
//! Users run Dockerfiles written for BuildKit, so its parser's behaviour is the
//! specification, quirks included (`../shared/conformance/parser/README.md` lists them and
//! the conformance test holds us to them byte for byte). The pipeline per instruction:
//! physical lines ([`line`]) join into a logical line, the keyword and flags are split off
//! ([`instruction`], [`flags`]), the keyword's argument rule runs ([`words`], [`json`]), and
//! RUN, COPY and ADD lines are searched for heredoc markers whose bodies follow
//! ([`heredoc`]). Directives are read at the top ([`directive`]). Byte-level work follows Go's
//! rune rules ([`rune`]), since Go strings are bytes and BuildKit passes invalid UTF-8 on.
//!
//! Nothing here panics on any input, and nothing allocates per character: the tests include
//! a property test and the `fuzz/` target runs the parser on arbitrary bytes.

mod directive;
mod error;
mod flags;
mod heredoc;
mod instruction;
mod json;
mod line;
mod words;

pub use error::{ParseError, ParseErrorKind};

use crate::ast::{
    Args, Comment, Directive, Dockerfile, Heredoc, Instruction, Keyword, Text, Warning, WarningKind,
};
use crate::rune;
use directive::DirectiveParser;
use instruction::LineCtx;
use line::{Line, LineMap, Lines};
use std::sync::Arc;
use strata_graph::{SourceLoc, SourceRange};

/// Parses a Dockerfile's bytes into its raw syntax tree, as BuildKit's parser would.
///
/// ```
/// let df = strata_frontend::parse(b"FROM alpine\nRUN echo hi\n").unwrap();
/// assert_eq!(df.instructions.len(), 2);
/// assert_eq!(strata_frontend::dump(&df), "(from \"alpine\")\n(run \"echo hi\")\n");
/// ```
pub fn parse(source: &[u8]) -> Result<Dockerfile, ParseError> {
    Parser {
        lines: Lines::new(source),
        directive_parser: DirectiveParser::default(),
        escape: b'\\',
        directives: Vec::new(),
        comments: Vec::new(),
        instructions: Vec::new(),
        warnings: Vec::new(),
        last_line: 0,
        text: Vec::new(),
        map: LineMap::default(),
    }
    .run()
}

struct Parser<'a> {
    lines: Lines<'a>,
    directive_parser: DirectiveParser,
    escape: u8,
    directives: Vec<Directive>,
    comments: Vec<Comment>,
    instructions: Vec<Instruction>,
    warnings: Vec<Warning>,
    last_line: u32,
    /// The logical line being built, and where its pieces came from: reused from one
    /// instruction to the next so a long file does not allocate them again each time.
    text: Vec<u8>,
    map: LineMap,
}

impl<'a> Parser<'a> {
    fn run(mut self) -> Result<Dockerfile, ParseError> {
        while let Some(first) = self.lines.next_line()? {
            self.last_line = first.number;
            self.instruction_from(first)?;
        }
        let (Some(first), Some(last)) = (self.instructions.first(), self.instructions.last())
        else {
            return Err(ParseError::new(
                SourceLoc::new(self.last_line.max(1), 1),
                ParseErrorKind::NoInstructions,
            ));
        };
        let range = SourceRange::new(first.range.start, last.range.end);
        Ok(Dockerfile {
            directives: self.directives,
            escape: self.escape,
            instructions: self.instructions,
            range,
            warnings: self.warnings,
        })
    }

    /// Handles one physical line at the top level: a directive, a comment, a blank line, or
    /// the first line of an instruction, which is then read to its end.
    fn instruction_from(&mut self, first: Line<'a>) -> Result<(), ParseError> {
        let raw = first.raw;
        let token = line::trim_newline(raw);
        let stripped = rune::trim_left_space(token);
        let indent = token.len() - stripped.len();
        // The column of byte `at` of this line.
        let column = |at: usize| line::to_u32(rune::count(&token[..at.min(token.len())])) + 1;
        let at_line = |kind| ParseError::new(SourceLoc::new(first.number, column(indent)), kind);
        if line::is_comment(raw) {
            // BuildKit's own quirk: it drops the first byte, `#` or not.
            let comment = rune::trim_space(raw.get(1..).unwrap_or_default());
            if comment.is_empty() {
                self.comments.clear();
            } else {
                self.comments.push(Comment {
                    text: Text::from(comment),
                    loc: SourceLoc::new(first.number, column(indent)),
                });
            }
        }
        if let Some(d) = self
            .directive_parser
            .parse_line(stripped)
            .map_err(at_line)?
        {
            if d.name == "escape" {
                self.escape = match d.value {
                    b"\\" => b'\\',
                    b"`" => b'`',
                    _ => {
                        // Point at the value: `d.value` is a slice of this line.
                        let at = (d.value.as_ptr() as usize).wrapping_sub(token.as_ptr() as usize);
                        return Err(ParseError::new(
                            SourceLoc::new(first.number, column(at)),
                            ParseErrorKind::InvalidEscapeToken {
                                token: String::from_utf8_lossy(d.value).into_owned(),
                            },
                        ));
                    }
                };
            }
            self.directives.push(Directive {
                name: d.name,
                value: Text::from(d.value),
                loc: SourceLoc::new(first.number, column(indent)),
            });
            self.comments.pop();
        }
        let processed = if line::is_comment(stripped) {
            &stripped[..0]
        } else {
            stripped
        };
        let (piece, mut ended) = line::trim_continuation(processed, self.escape);
        if ended && piece.is_empty() {
            return Ok(());
        }

        let start = SourceLoc::new(
            first.number,
            line::to_u32(rune::count(&token[..indent])) + 1,
        );
        let mut text = std::mem::take(&mut self.text);
        let mut map = std::mem::take(&mut self.map);
        text.clear();
        map.clear();
        text.extend_from_slice(piece);
        map.push(0, start.line, start.column);
        let mut last = first;
        let mut empty_line = None;
        while !ended {
            let Some(next) = self.lines.next_line()? else {
                break;
            };
            last = next;
            if line::is_comment(next.raw) {
                continue;
            }
            let token = line::trim_newline(next.raw);
            if rune::trim_left_space(token).is_empty() {
                empty_line.get_or_insert(next.number);
                continue;
            }
            let (piece, end) = line::trim_continuation(token, self.escape);
            ended = end;
            map.push(text.len(), next.number, 1);
            text.extend_from_slice(piece);
        }
        if let Some(line) = empty_line {
            self.warnings.push(Warning {
                kind: WarningKind::EmptyContinuationLine,
                loc: SourceLoc::new(line, 1),
            });
        }

        let shared: Arc<[u8]> = Arc::from(&text[..]);
        let ctx = LineCtx {
            shared: &shared,
            text: &shared,
            map: &map,
            escape: self.escape,
        };
        let range = SourceRange::new(start, SourceLoc::new(last.number, last.end_column()));
        let at_start = |kind| ParseError::new(start, kind);
        let mut instruction = instruction::parse(&ctx, &shared, range).map_err(at_start)?;
        if can_contain_heredoc(&instruction) && shared.windows(2).any(|w| w == b"<<") {
            for marker in heredoc::markers(&shared).map_err(at_start)? {
                let body = self.heredoc_body(&marker, start, &mut last)?;
                instruction.heredocs.push(body);
            }
            let end = SourceLoc::new(last.number, last.end_column());
            instruction.range.end = end;
            if let Args::Onbuild(inner) = &mut instruction.args {
                inner.range.end = end;
            }
        }
        instruction.comments = std::mem::take(&mut self.comments);
        self.last_line = last.number;
        self.instructions.push(instruction);
        self.text = text;
        self.map = map;
        Ok(())
    }

    /// Reads a heredoc body up to its terminator line.
    fn heredoc_body(
        &mut self,
        marker: &heredoc::Marker,
        start: SourceLoc,
        last: &mut Line<'a>,
    ) -> Result<Heredoc, ParseError> {
        let body_start = last.number.saturating_add(1);
        let mut content = Vec::new();
        loop {
            let Some(next) = self.lines.next_line()? else {
                return Err(ParseError::new(
                    start,
                    ParseErrorKind::UnterminatedHeredoc {
                        name: String::from_utf8_lossy(&marker.name).into_owned(),
                    },
                ));
            };
            *last = next;
            let mut candidate = line::trim_newline(next.raw);
            if marker.chomp {
                candidate = line::trim_leading_tabs(candidate);
            }
            if candidate == marker.name.as_slice() {
                break;
            }
            content.extend_from_slice(next.raw);
        }
        Ok(Heredoc {
            name: Text::from(marker.name.clone()),
            fd: marker.fd,
            expand: marker.expand,
            chomp: marker.chomp,
            content: Text::from(content),
            range: SourceRange::new(
                SourceLoc::new(body_start, 1),
                SourceLoc::new(last.number, last.end_column()),
            ),
        })
    }
}

/// RUN, COPY and ADD not in JSON form, also inside ONBUILD (BuildKit's `canContainHeredoc`).
fn can_contain_heredoc(instruction: &Instruction) -> bool {
    let target = match &instruction.args {
        Args::Onbuild(inner) => inner,
        _ => instruction,
    };
    matches!(target.kind, Keyword::Run | Keyword::Copy | Keyword::Add) && !target.is_json()
}
