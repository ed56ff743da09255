//! One logical line into one [`Instruction`]: keyword, flags, then the argument rule for the
//! keyword (BuildKit's `splitCommand` and its dispatch table).

use super::error::ParseErrorKind;
use super::flags;
use super::json::{self, JsonError};
use super::line::LineMap;
use super::words::{self, Word};
use crate::ast::{Arg, Args, Flag, Instruction, KeyValue, Keyword, Text};
use crate::rune;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{take_till1, take_while};
use std::sync::Arc;
use strata_graph::{SourceLoc, SourceRange};

/// The logical line being parsed and how to locate its bytes.
pub(super) struct LineCtx<'a> {
    /// The logical line; every [`Text`] that is a verbatim piece of it shares it.
    pub(super) shared: &'a Arc<[u8]>,
    pub(super) text: &'a [u8],
    pub(super) map: &'a LineMap,
    pub(super) escape: u8,
}

impl LineCtx<'_> {
    /// `bytes`, which the parser produced for the source starting at `offset`: a view into
    /// the line when they are the same bytes, a copy when quotes, escapes or decoding changed
    /// them.
    fn text_at(&self, offset: usize, bytes: &[u8]) -> Text {
        let end = offset.saturating_add(bytes.len());
        if self.text.get(offset..end) == Some(bytes) {
            Text::shared(self.shared, offset, end)
        } else {
            Text::from(bytes)
        }
    }

    /// `sub`, a sub-slice of the line, as a shared [`Text`].
    fn text_of(&self, sub: &[u8]) -> Text {
        let start = self.offset_of(sub);
        Text::shared(self.shared, start, start + sub.len())
    }

    /// The offset of `sub`, a sub-slice of the logical line.
    fn offset_of(&self, sub: &[u8]) -> usize {
        let offset = (sub.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        debug_assert!(offset <= self.text.len(), "not a sub-slice of the line");
        offset.min(self.text.len())
    }

    fn loc_at(&self, offset: usize) -> SourceLoc {
        self.map.loc(self.text, offset)
    }

    fn loc_of(&self, sub: &[u8]) -> SourceLoc {
        self.loc_at(self.offset_of(sub))
    }

    fn arg(&self, text: &[u8]) -> Arg {
        Arg {
            text: self.text_of(text),
            loc: self.loc_of(text),
        }
    }
}

type Res<'a, O> = IResult<&'a [u8], O>;

/// The keyword, and the text after the blanks that follow it (if any).
fn split_keyword(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    fn keyword(i: &[u8]) -> Res<'_, (&[u8], &[u8])> {
        (
            take_till1(rune::is_split_space),
            take_while(rune::is_split_space),
        )
            .parse(i)
    }
    match keyword(line) {
        Ok((rest, (word, blanks))) if !blanks.is_empty() => (word, Some(rest)),
        Ok((_, (word, _))) => (word, None),
        Err(_) => (line, None),
    }
}

/// How many ONBUILDs may stand in front of an instruction. BuildKit parses any number (and
/// rejects more than one later, in its instruction checks); a limit keeps the recursion, and
/// the recursive drop, dump and JSON of the nested tree, off the end of the stack.
pub(super) const MAX_ONBUILD_NESTING: usize = 16;

/// Parses `line` (a sub-slice of `ctx.text`) into an instruction whose range is `range`.
pub(super) fn parse(
    ctx: &LineCtx<'_>,
    line: &[u8],
    range: SourceRange,
) -> Result<Instruction, ParseErrorKind> {
    parse_nested(ctx, line, range, 0)
}

/// [`parse`] for an instruction inside `depth` ONBUILDs.
fn parse_nested(
    ctx: &LineCtx<'_>,
    line: &[u8],
    range: SourceRange,
    depth: usize,
) -> Result<Instruction, ParseErrorKind> {
    let trimmed = rune::trim_space(line);
    let (keyword, after) = split_keyword(trimmed);
    let kind = if keyword.is_ascii() {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_lowercase().as_bytes().eq_ignore_ascii_case(keyword))
            .unwrap_or(Keyword::Unknown)
    } else {
        // Go lower-cases by rune: `HEALTHCHEC\u{212A}` (Kelvin sign) is HEALTHCHECK.
        Keyword::from_lowercase(&rune::to_lower_go(keyword))
    };
    let (rest, flags) = match after {
        Some(after) => {
            let (rest, words) = flags::extract(after);
            let base = ctx.offset_of(after);
            let flags = words
                .into_iter()
                .map(|f| Flag {
                    text: ctx.text_at(base + f.offset, &f.text),
                    loc: ctx.loc_at(base + f.offset),
                })
                .collect();
            (rest, flags)
        }
        None => (&trimmed[trimmed.len()..], Vec::new()),
    };
    let rest = rune::trim_space(rest);
    let args = parse_args(ctx, kind, rest, range, depth)?;
    Ok(Instruction {
        keyword: ctx.text_of(keyword),
        kind,
        keyword_loc: ctx.loc_of(keyword),
        flags,
        args,
        heredocs: Vec::new(),
        original: ctx.text_of(line),
        rest: ctx.text_of(rest),
        comments: Vec::new(),
        range,
    })
}

fn parse_args(
    ctx: &LineCtx<'_>,
    kind: Keyword,
    rest: &[u8],
    range: SourceRange,
    depth: usize,
) -> Result<Args, ParseErrorKind> {
    Ok(match kind {
        Keyword::Add | Keyword::Copy | Keyword::Volume => maybe_json_to_list(ctx, rest)?,
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Run | Keyword::Shell => {
            maybe_json(ctx, rest)?
        }
        Keyword::Arg => {
            let words = words::parse_words(rest, ctx.escape);
            if words.is_empty() {
                Args::None
            } else {
                Args::Words(words.into_iter().map(|w| word_arg(ctx, rest, w)).collect())
            }
        }
        Keyword::Env | Keyword::Label => name_values(ctx, kind, rest)?,
        Keyword::Expose | Keyword::From => blank_separated(ctx, rest),
        Keyword::Healthcheck => healthcheck(ctx, rest)?,
        Keyword::Maintainer | Keyword::Stopsignal | Keyword::User | Keyword::Workdir => {
            if rest.is_empty() {
                Args::None
            } else {
                Args::Text(ctx.arg(rest))
            }
        }
        Keyword::Onbuild => {
            if rest.is_empty() {
                Args::None
            } else if depth >= MAX_ONBUILD_NESTING {
                return Err(ParseErrorKind::OnbuildTooDeep {
                    limit: MAX_ONBUILD_NESTING,
                });
            } else {
                Args::Onbuild(Box::new(parse_nested(ctx, rest, range, depth + 1)?))
            }
        }
        Keyword::Unknown => Args::Ignored,
    })
}

fn word_arg(ctx: &LineCtx<'_>, rest: &[u8], word: Word) -> Arg {
    let offset = ctx.offset_of(rest) + word.offset;
    Arg {
        loc: ctx.loc_at(offset),
        text: ctx.text_at(offset, &word.text),
    }
}

fn json_args(ctx: &LineCtx<'_>, rest: &[u8]) -> Result<Option<Args>, ParseErrorKind> {
    match json::parse_array(rest) {
        Ok(items) => {
            let base = ctx.offset_of(rest);
            Ok(Some(Args::Json(
                items
                    .into_iter()
                    .map(|item| Arg {
                        loc: ctx.loc_at(base + item.offset),
                        // The string's bytes start after its opening quote.
                        text: ctx.text_at(base + item.offset + 1, &item.value),
                    })
                    .collect(),
            )))
        }
        Err(JsonError::NotStringArray) => Err(ParseErrorKind::JsonNotStringArray),
        Err(JsonError::Invalid) => Ok(None),
    }
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or the whole text as one argument.
fn maybe_json(ctx: &LineCtx<'_>, rest: &[u8]) -> Result<Args, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Args::None);
    }
    Ok(json_args(ctx, rest)?.unwrap_or_else(|| Args::Text(ctx.arg(rest))))
}

/// ADD, COPY, VOLUME: a JSON array, or blank-separated words.
fn maybe_json_to_list(ctx: &LineCtx<'_>, rest: &[u8]) -> Result<Args, ParseErrorKind> {
    Ok(json_args(ctx, rest)?.unwrap_or_else(|| blank_separated(ctx, rest)))
}

/// FROM, EXPOSE: words between runs of blanks, no quote handling.
fn blank_separated(ctx: &LineCtx<'_>, rest: &[u8]) -> Args {
    if rest.is_empty() {
        return Args::None;
    }
    Args::Words(
        words::split_blanks(rest)
            .into_iter()
            .map(|(_, piece)| ctx.arg(piece))
            .collect(),
    )
}

/// ENV, LABEL: `key=value` words, or the legacy `KEY value` when the first word has no `=`.
fn name_values(ctx: &LineCtx<'_>, kind: Keyword, rest: &[u8]) -> Result<Args, ParseErrorKind> {
    let keyword = if kind == Keyword::Env { "ENV" } else { "LABEL" };
    let words = words::parse_words(rest, ctx.escape);
    let Some(first) = words.first() else {
        return Ok(Args::None);
    };
    if first.equals.is_none() {
        let (key, value) =
            words::split_first_blank(rest).ok_or(ParseErrorKind::MissingValue { keyword })?;
        return Ok(Args::Pairs(vec![KeyValue {
            key: ctx.arg(key),
            value: ctx.arg(value),
            legacy: true,
        }]));
    }
    let base = ctx.offset_of(rest);
    let mut pairs = Vec::with_capacity(words.len());
    for word in words {
        let Some(equals) = word.equals else {
            return Err(ParseErrorKind::MissingEquals {
                keyword,
                word: String::from_utf8_lossy(&word.text).into_owned(),
            });
        };
        let split = word
            .text
            .iter()
            .position(|&b| b == b'=')
            .expect("a word with an equals offset contains '='");
        pairs.push(KeyValue {
            key: Arg {
                text: ctx.text_at(base + word.offset, &word.text[..split]),
                loc: ctx.loc_at(base + word.offset),
            },
            value: Arg {
                text: ctx.text_at(base + equals + 1, &word.text[split + 1..]),
                loc: ctx.loc_at(base + equals + 1),
            },
            legacy: false,
        });
    }
    Ok(Args::Pairs(pairs))
}

/// HEALTHCHECK: the first word as is, then the rest as for CMD. BuildKit finds the first word
/// byte by byte, so the bytes 0x85 and 0xA0 end it too.
fn healthcheck(ctx: &LineCtx<'_>, rest: &[u8]) -> Result<Args, ParseErrorKind> {
    let sep = rest
        .iter()
        .position(|&b| rune::is_space_byte(b))
        .unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::None);
    }
    let next = rest[sep..]
        .iter()
        .position(|&b| !rune::is_space_byte(b))
        .map_or(rest.len(), |i| sep + i);
    Ok(Args::Healthcheck {
        kind: ctx.arg(&rest[..sep]),
        command: Box::new(maybe_json(ctx, &rest[next..])?),
    })
}
