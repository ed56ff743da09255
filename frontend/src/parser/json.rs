//! The JSON (exec) form: `["executable", "param"]`.
//!
//! BuildKit hands the text to Go's `encoding/json`, and what Go accepts decides between the
//! exec form, the shell-form fallback (invalid JSON is quietly treated as text) and an error
//! (valid JSON that is not an array of strings). serde_json draws those lines differently: it
//! rejects invalid UTF-8 inside strings, which Go turns into U+FFFD, and it stops at nesting
//! depth 128 where Go allows 10000. So this module validates with Go's grammar and limits
//! itself, iteratively (no recursion, so no stack overflow on deep nesting), using nom for the
//! scalar tokens.

use crate::rune;
use nom::IResult;
use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while};
use nom::character::complete::{char, digit0, digit1, one_of};
use nom::combinator::{opt, recognize};

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

/// Why the text is not a usable JSON array.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JsonError {
    /// Not JSON, or not an array: BuildKit falls back to the non-JSON rule.
    Invalid,
    /// A valid JSON array with an element that is not a string: BuildKit fails.
    NotStringArray,
}

/// One decoded string element and the offset of its opening quote in the input.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct JsonString {
    pub(super) value: Vec<u8>,
    pub(super) offset: usize,
}

#[derive(Clone, Copy)]
enum Container {
    Array,
    Object,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must come.
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// After an array element: `,` or `]`.
    ArrayNext,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    ObjectKey,
    /// After a key: `:`.
    ObjectColon,
    /// After a member value: `,` or `}`.
    ObjectNext,
    /// The top-level value is complete; only blanks may follow.
    End,
}

type Res<'a, O> = IResult<&'a [u8], O>;

fn blanks(i: &[u8]) -> Res<'_, &[u8]> {
    take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).parse(i)
}

fn number(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((
        opt(char('-')),
        alt((tag(&b"0"[..]), recognize((one_of("123456789"), digit0)))),
        opt((char('.'), digit1)),
        opt((one_of("eE"), opt(one_of("+-")), digit1)),
    ))
    .parse(i)
}

fn literal(i: &[u8]) -> Res<'_, &[u8]> {
    alt((tag(&b"true"[..]), tag(&b"false"[..]), tag(&b"null"[..]))).parse(i)
}

/// Parses `text` (leading Unicode spaces allowed) as a JSON array of strings, the way
/// BuildKit's `parseJSON` does.
pub(super) fn parse_array(text: &[u8]) -> Result<Vec<JsonString>, JsonError> {
    let trimmed = rune::trim_left_space(text);
    let base = text.len() - trimmed.len();
    if trimmed.first() != Some(&b'[') {
        return Err(JsonError::Invalid);
    }
    let mut stack: Vec<Container> = Vec::new();
    let mut state = State::Value;
    let mut items = Vec::new();
    let mut all_strings = true;
    let mut input = trimmed;
    let offset = |rest: &[u8]| base + trimmed.len() - rest.len();
    loop {
        input = blanks(input).map_err(|_| JsonError::Invalid)?.0;
        let Some(&c) = input.first() else {
            return if state == State::End {
                if all_strings {
                    Ok(items)
                } else {
                    Err(JsonError::NotStringArray)
                }
            } else {
                Err(JsonError::Invalid)
            };
        };
        state = match state {
            State::End => return Err(JsonError::Invalid),
            State::ArrayFirst | State::ArrayNext if c == b']' => {
                stack.pop();
                input = &input[1..];
                after_value(&stack)
            }
            State::ArrayNext | State::ObjectNext if c == b',' => {
                input = &input[1..];
                if state == State::ArrayNext {
                    State::Value
                } else {
                    State::ObjectKey
                }
            }
            State::ObjectFirst | State::ObjectNext if c == b'}' => {
                stack.pop();
                input = &input[1..];
                after_value(&stack)
            }
            State::ObjectFirst | State::ObjectKey if c == b'"' => {
                input = string(input, None)?;
                State::ObjectColon
            }
            State::ObjectColon if c == b':' => {
                input = &input[1..];
                State::Value
            }
            State::Value | State::ArrayFirst => {
                let top_level = stack.len() == 1;
                if top_level && c != b'"' {
                    all_strings = false;
                }
                match c {
                    b'[' | b'{' => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(JsonError::Invalid);
                        }
                        input = &input[1..];
                        if c == b'[' {
                            stack.push(Container::Array);
                            State::ArrayFirst
                        } else {
                            stack.push(Container::Object);
                            State::ObjectFirst
                        }
                    }
                    b'"' => {
                        if top_level {
                            let at = offset(input);
                            let mut value = Vec::new();
                            input = string(input, Some(&mut value))?;
                            items.push(JsonString { value, offset: at });
                        } else {
                            input = string(input, None)?;
                        }
                        after_value(&stack)
                    }
                    b'-' | b'0'..=b'9' => {
                        input = number(input).map_err(|_| JsonError::Invalid)?.0;
                        after_value(&stack)
                    }
                    _ => {
                        input = literal(input).map_err(|_| JsonError::Invalid)?.0;
                        after_value(&stack)
                    }
                }
            }
            _ => return Err(JsonError::Invalid),
        };
    }
}

fn after_value(stack: &[Container]) -> State {
    match stack.last() {
        None => State::End,
        Some(Container::Array) => State::ArrayNext,
        Some(Container::Object) => State::ObjectNext,
    }
}

/// Scans the string starting at `input[0] == b'"'`, decoding it into `out` when given, as
/// Go does: escapes decoded, lone surrogates and invalid UTF-8 bytes each become U+FFFD,
/// control characters are a syntax error. Returns the input after the closing quote.
fn string<'a>(input: &'a [u8], mut out: Option<&mut Vec<u8>>) -> Result<&'a [u8], JsonError> {
    let mut pos = 1;
    loop {
        let Some(&c) = input.get(pos) else {
            return Err(JsonError::Invalid);
        };
        match c {
            b'"' => return Ok(&input[pos + 1..]),
            0..=0x1F => return Err(JsonError::Invalid),
            b'\\' => {
                let Some(&e) = input.get(pos + 1) else {
                    return Err(JsonError::Invalid);
                };
                let simple = match e {
                    b'"' => Some(b'"'),
                    b'\\' => Some(b'\\'),
                    b'/' => Some(b'/'),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0C),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'u' => None,
                    _ => return Err(JsonError::Invalid),
                };
                if let Some(b) = simple {
                    if let Some(out) = out.as_deref_mut() {
                        out.push(b);
                    }
                    pos += 2;
                    continue;
                }
                let unit = hex4(&input[pos + 2..]).ok_or(JsonError::Invalid)?;
                pos += 6;
                let mut decoded = char::from_u32(unit);
                if (0xD800..0xE000).contains(&unit) {
                    decoded = None;
                    // A high surrogate followed by an escaped low surrogate is one character;
                    // anything else leaves U+FFFD and the next escape is read on its own.
                    if let Some(low) = input.get(pos..).filter(|r| r.starts_with(b"\\u"))
                        && let Some(low) = hex4(&low[2..])
                        && (0xD800..0xDC00).contains(&unit)
                        && (0xDC00..0xE000).contains(&low)
                    {
                        let combined = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        decoded = char::from_u32(combined);
                        pos += 6;
                    }
                }
                if let Some(out) = out.as_deref_mut() {
                    rune::push_rune(out, decoded);
                }
            }
            _ => {
                let (ch, width) = rune::decode(&input[pos..]);
                if let Some(out) = out.as_deref_mut() {
                    if c < 0x80 {
                        out.push(c);
                    } else {
                        rune::push_rune(out, ch);
                    }
                }
                pos += width;
            }
        }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(text: &str) -> Result<Vec<String>, JsonError> {
        parse_array(text.as_bytes()).map(|items| {
            items
                .into_iter()
                .map(|s| String::from_utf8(s.value).unwrap())
                .collect()
        })
    }

    #[test]
    fn string_arrays_decode() {
        assert_eq!(strings(r#"["a", "b c"]"#).unwrap(), ["a", "b c"]);
        assert_eq!(strings("[ ]").unwrap(), Vec::<String>::new());
        assert_eq!(strings(" \t[\"a\"]\n").unwrap(), ["a"]);
        assert_eq!(
            strings(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u00e9"]"#).unwrap(),
            ["\" \\ / \u{8} \u{c} \n \r \t \0 é"]
        );
        assert_eq!(strings(r#"["\ud83d\ude00"]"#).unwrap(), ["😀"]);
        assert_eq!(strings(r#"["\ud83d\u0041"]"#).unwrap(), ["\u{FFFD}A"]);
        assert_eq!(strings(r#"["\ude00"]"#).unwrap(), ["\u{FFFD}"]);
        let bad_utf8 = parse_array(b"[\"a\xffb\"]").unwrap();
        assert_eq!(bad_utf8[0].value, "a\u{FFFD}b".as_bytes());
    }

    #[test]
    fn invalid_json_falls_back() {
        for text in [
            "['a']",
            r#"["a"] x"#,
            r#"["a""#,
            r#"["a",]"#,
            r#"["a]"#,
            "[\"a\tb\"]",
            r#"["\x"]"#,
            "[01]",
            "[1.]",
            "[-]",
            "[tru]",
            r#"[{"a" 1}]"#,
            "x",
            "",
        ] {
            assert_eq!(strings(text), Err(JsonError::Invalid), "{text}");
        }
    }

    #[test]
    fn valid_json_that_is_not_all_strings_is_an_error() {
        for text in [
            r#"["a", 1]"#,
            "[null]",
            r#"[["a"]]"#,
            r#"[{"k": [1, {"x": -1.5e+3}]}, "b"]"#,
            "[true, false]",
        ] {
            assert_eq!(strings(text), Err(JsonError::NotStringArray), "{text}");
        }
    }

    #[test]
    fn nesting_is_limited_like_go_and_never_recurses() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(strings(&ok), Err(JsonError::NotStringArray));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(strings(&deep), Err(JsonError::Invalid));
    }

    #[test]
    fn offsets_point_at_opening_quotes() {
        let items = parse_array(br#" ["a",  "b"]"#).unwrap();
        assert_eq!(items.iter().map(|i| i.offset).collect::<Vec<_>>(), [2, 8]);
    }
}
