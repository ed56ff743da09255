//! Go's view of bytes as runes, which BuildKit's parser inherits.
//!
//! Go strings are bytes; `range` and `utf8.DecodeRune` turn each byte of an invalid sequence
//! into its own U+FFFD of width 1, `unicode.IsSpace` is the White_Space property, and
//! `strings.ToLower` maps rune by rune. Matching the dump byte for byte needs exactly these
//! rules, so they live here rather than in `str` methods, which reject invalid UTF-8.

use unicode_general_category::{GeneralCategory, get_general_category};

/// Decodes the rune at the start of `b` like Go's `utf8.DecodeRune`: `(Some(c), len)` for a
/// valid sequence, `(None, 1)` for an invalid byte. `b` must not be empty.
pub(crate) fn decode(b: &[u8]) -> (Option<char>, usize) {
    let first = b[0];
    if first < 0x80 {
        return (Some(char::from(first)), 1);
    }
    let width = match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (None, 1),
    };
    match b.get(..width).map(std::str::from_utf8) {
        Some(Ok(s)) => (s.chars().next(), width),
        _ => (None, 1),
    }
}

/// The runes of `b`, Go style: `None` for each invalid byte, with each rune's byte offset.
pub(crate) fn runes(b: &[u8]) -> impl Iterator<Item = (usize, Option<char>, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= b.len() {
            return None;
        }
        let (c, w) = decode(&b[pos..]);
        let at = pos;
        pos += w;
        Some((at, c, w))
    })
}

/// How many runes Go counts in `b` (each invalid byte is one).
pub(crate) fn count(b: &[u8]) -> usize {
    if b.is_ascii() {
        return b.len();
    }
    runes(b).count()
}

/// Go's `unicode.IsSpace`: the Unicode White_Space property (U+0085 and U+00A0 included).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `unicode.IsSpace(rune(b))` on a single byte read as Latin-1, as BuildKit's
/// byte-wise flag and HEALTHCHECK scanners do: 0x85 and 0xA0 count as spaces.
pub(crate) fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' | 0x85 | 0xA0)
}

/// The separators of BuildKit's `[\t\v\f\r ]+` regular expression.
pub(crate) fn is_split_space(b: u8) -> bool {
    matches!(b, b'\t' | 0x0B | 0x0C | b'\r' | b' ')
}

/// Go's `bytes.TrimLeftFunc(b, unicode.IsSpace)`.
pub(crate) fn trim_left_space(b: &[u8]) -> &[u8] {
    let mut pos = 0;
    while pos < b.len() {
        match decode(&b[pos..]) {
            (Some(c), w) if is_space(c) => pos += w,
            _ => break,
        }
    }
    &b[pos..]
}

/// Go's `strings.TrimRightFunc(b, unicode.IsSpace)`.
pub(crate) fn trim_right_space(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    loop {
        let tail = &b[..end];
        let Some(&last) = tail.last() else { break };
        if last < 0x80 {
            if is_space(char::from(last)) {
                end -= 1;
                continue;
            }
            break;
        }
        // A multi-byte space ends the slice only if its whole encoding does; checking each
        // possible length is what Go's DecodeLastRune amounts to for these code points.
        let found = (2..=3).find(|&w| {
            tail.len() >= w
                && std::str::from_utf8(&tail[tail.len() - w..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .is_some_and(is_space)
        });
        match found {
            Some(w) => end -= w,
            None => break,
        }
    }
    &b[..end]
}

/// Go's `strings.TrimSpace`.
pub(crate) fn trim_space(b: &[u8]) -> &[u8] {
    trim_right_space(trim_left_space(b))
}

/// Go's `unicode.ToLower` on one rune: the simple (one to one) lower-case mapping.
fn to_lower(c: char) -> char {
    if c == '\u{130}' {
        // The only code point whose full lower-case mapping is longer than one char.
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Go's `strings.ToLower`: ASCII is lower-cased in place; otherwise every rune is mapped and
/// every invalid byte becomes U+FFFD.
pub(crate) fn to_lower_go(b: &[u8]) -> Vec<u8> {
    if b.is_ascii() {
        return b.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(b.len());
    for (_, c, _) in runes(b) {
        out.push(c.map_or('\u{FFFD}', to_lower));
    }
    out.into_bytes()
}

/// Pushes rune `c` (or U+FFFD for an invalid byte) to `out`, as Go's `WriteRune` does.
pub(crate) fn push_rune(out: &mut Vec<u8>, c: Option<char>) {
    let c = c.unwrap_or('\u{FFFD}');
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Go's `unicode.IsLetter`: general category L.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Go's `unicode.IsDigit`: general category Nd.
pub(crate) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// Go's `strconv.IsPrint`: categories L, M, N, P, S and the ASCII space.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    use GeneralCategory as G;
    !matches!(
        get_general_category(c),
        G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_are_runes_of_width_one() {
        let got: Vec<_> = runes(b"a\xE2\x82b\xF0\x9F\x98\x80").collect();
        assert_eq!(
            got,
            vec![
                (0, Some('a'), 1),
                (1, None, 1),
                (2, None, 1),
                (3, Some('b'), 1),
                (4, Some('😀'), 4)
            ]
        );
        assert_eq!(count(b"\xc3\xa9\xef\xbf\xbd\xff"), 3);
    }

    #[test]
    fn surrogates_and_overlongs_are_invalid() {
        assert_eq!(decode(b"\xED\xA0\x80"), (None, 1));
        assert_eq!(decode(b"\xC0\x80"), (None, 1));
        assert_eq!(decode(b"\xF4\x90\x80\x80"), (None, 1));
    }

    #[test]
    fn trim_space_knows_unicode_spaces_but_not_invalid_bytes() {
        assert_eq!(trim_space(" \u{a0}a b\u{3000}\t".as_bytes()), b"a b");
        assert_eq!(trim_space(b"\xff a \xa0"), b"\xff a \xa0");
        assert_eq!(trim_right_space("x\u{85}".as_bytes()), b"x");
    }

    #[test]
    fn lower_case_is_go_simple_mapping() {
        assert_eq!(to_lower_go(b"RUN"), b"run");
        assert_eq!(to_lower_go("RÜN".as_bytes()), "rün".as_bytes());
        assert_eq!(to_lower_go("HEALTHCHEC\u{212A}".as_bytes()), b"healthcheck");
        assert_eq!(to_lower_go("\u{130}".as_bytes()), b"i");
        assert_eq!(to_lower_go("ΣΣ".as_bytes()), "σσ".as_bytes());
        assert_eq!(to_lower_go(b"A\xffB"), "a\u{FFFD}b".as_bytes());
    }

    #[test]
    fn printable_follows_go() {
        for c in ['a', ' ', 'é', '😀', '♥', '\u{FFFD}'] {
            assert!(is_print(c), "{c:?}");
        }
        for c in [
            '\t', '\u{7f}', '\u{a0}', '\u{ad}', '\u{200b}', '\u{2028}', '\u{feff}',
        ] {
            assert!(!is_print(c), "{c:?}");
        }
    }
}
