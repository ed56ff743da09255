//! Splitting argument text into words: BuildKit's two word rules.
//!
//! FROM, EXPOSE and the non-JSON ADD, COPY and VOLUME split on runs of ASCII blanks with no
//! quote handling. ENV, LABEL and ARG split with quotes: whitespace inside `'…'` or `"…"` does
//! not split, but the quotes and escapes stay in the word (they are removed later, by
//! expansion).

use crate::rune;

/// A word and where it came from in the scanned text.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: Vec<u8>,
    /// Offset of the word's first byte.
    pub(super) offset: usize,
    /// Offset of the first `=` in the word, if any.
    pub(super) equals: Option<usize>,
}

/// Go's `regexp.MustCompile("[\t\v\f\r ]+").Split(text, -1)`: the pieces between runs of
/// blanks, each with its offset (an empty first or last piece when `text` starts or ends with
/// a blank, as Go gives).
pub(super) fn split_blanks(text: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut begin = 0;
    let mut last_match = 0;
    let mut pos = 0;
    while pos < text.len() {
        if rune::is_split_space(text[pos]) {
            let run_start = pos;
            while pos < text.len() && rune::is_split_space(text[pos]) {
                pos += 1;
            }
            out.push((begin, &text[begin..run_start]));
            begin = pos;
            last_match = run_start;
        } else {
            pos += 1;
        }
    }
    if last_match != text.len() {
        out.push((begin, &text[begin..]));
    }
    out
}

/// Go's `regexp.Split(text, 2)` on blanks: the text before the first run of blanks and the
/// text after it, or `None` when there is no blank.
pub(super) fn split_first_blank(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let run_start = text.iter().position(|&b| rune::is_split_space(b))?;
    let run_end = text[run_start..]
        .iter()
        .position(|&b| !rune::is_split_space(b))
        .map_or(text.len(), |i| run_start + i);
    Some((&text[..run_start], &text[run_end..]))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// BuildKit's `parseWords` for ENV, LABEL and ARG.
///
/// Unquoted whitespace separates words; quotes stay in the word; `escape` plus the next
/// character are both kept (inside single quotes the escape is ordinary); a lone escape at the
/// very end is dropped; every invalid UTF-8 byte becomes U+FFFD.
pub(super) fn parse_words(text: &[u8], escape: u8) -> Vec<Word> {
    let escape = char::from(escape);
    let mut words = Vec::new();
    let mut word: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut equals = None;
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    while pos < text.len() {
        let (c, mut width) = rune::decode(&text[pos..]);
        let mut push = |word: &mut Vec<u8>, at: usize, c: Option<char>| {
            if c == Some('=') && equals.is_none() {
                equals = Some(at);
            }
            rune::push_rune(word, c);
        };
        match phase {
            Phase::Spaces => {
                if c.is_some_and(rune::is_space) {
                    pos += width;
                    continue;
                }
                phase = Phase::Word;
                start = pos;
                continue;
            }
            Phase::Word => {
                if c.is_some_and(rune::is_space) {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(Word {
                            text: std::mem::take(&mut word),
                            offset: start,
                            equals: equals.take(),
                        });
                    }
                    word.clear();
                    equals = None;
                    blank_ok = false;
                    pos += width;
                    continue;
                }
                if let Some(q @ ('\'' | '"')) = c {
                    phase = Phase::Quote(q);
                    blank_ok = true;
                }
                if c == Some(escape) {
                    if pos + width == text.len() {
                        pos += width;
                        continue;
                    }
                    push(&mut word, pos, c);
                    pos += width;
                    let (next, next_width) = rune::decode(&text[pos..]);
                    push(&mut word, pos, next);
                    width = next_width;
                } else {
                    push(&mut word, pos, c);
                }
            }
            Phase::Quote(quote) => {
                if c == Some(quote) {
                    phase = Phase::Word;
                }
                if c == Some(escape) && quote != '\'' {
                    if pos + width == text.len() {
                        phase = Phase::Word;
                        pos += width;
                        continue;
                    }
                    push(&mut word, pos, c);
                    pos += width;
                    let (next, next_width) = rune::decode(&text[pos..]);
                    push(&mut word, pos, next);
                    width = next_width;
                } else {
                    push(&mut word, pos, c);
                }
            }
        }
        pos += width;
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(Word {
            text: word,
            offset: start,
            equals,
        });
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: Vec<Word>) -> Vec<String> {
        words
            .into_iter()
            .map(|w| String::from_utf8(w.text).unwrap())
            .collect()
    }

    #[test]
    fn quotes_and_escapes_stay_in_words() {
        let got = texts(parse_words(br#"A B=2 "C=3 4" d=e\ f g='h i' x\"#, b'\\'));
        assert_eq!(got, ["A", "B=2", r#""C=3 4""#, r"d=e\ f", "g='h i'", "x"]);
        assert_eq!(texts(parse_words(br"a='b\' c", b'\\')), [r"a='b\'", "c"]);
        assert_eq!(texts(parse_words(br#"a="b\" c""#, b'\\')), [r#"a="b\" c""#]);
        assert_eq!(texts(parse_words(b"'' x", b'\\')), ["''", "x"]);
        assert_eq!(texts(parse_words(b"a=\xc3", b'\\')), ["a=\u{FFFD}"]);
    }

    #[test]
    fn offsets_and_equals() {
        let words = parse_words(br#"  k="v w"  x=1"#, b'\\');
        assert_eq!(
            words
                .iter()
                .map(|w| (w.offset, w.equals))
                .collect::<Vec<_>>(),
            [(2, Some(3)), (11, Some(12))]
        );
    }

    #[test]
    fn blank_split_matches_go_regexp_split() {
        let pieces = |t: &[u8]| {
            split_blanks(t)
                .into_iter()
                .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(pieces(b"a  b\tc"), ["a", "b", "c"]);
        assert_eq!(pieces(b" a "), ["", "a", ""]);
        assert_eq!(pieces(b"a"), ["a"]);
        assert_eq!(pieces(b"\"a b\" c"), ["\"a", "b\"", "c"]);
        let (k, v) = split_first_blank(b"KEY  some value").unwrap();
        assert_eq!((k, v), (&b"KEY"[..], &b"some value"[..]));
        assert!(split_first_blank(b"KEY").is_none());
    }
}
