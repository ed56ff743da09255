//! Go's `strconv.Quote`, which BuildKit's dump uses for every argument and flag.
//!
//! Rust's `{:?}` differs in many places (`\u{a0}` against `\u00a0`, `\0` against `\x00`,
//! invalid bytes), and the dump must match byte for byte, so the rules are written out here.

use crate::rune;

/// Appends `s` quoted exactly as Go's `strconv.Quote` would to `out`.
pub(crate) fn quote_into(out: &mut String, s: &[u8]) {
    out.push('"');
    let mut pos = 0;
    while pos < s.len() {
        let (c, width) = rune::decode(&s[pos..]);
        match c {
            None => push_hex(out, 'x', u32::from(s[pos]), 2),
            Some(c) => push_char(out, c),
        }
        pos += width;
    }
    out.push('"');
}

/// `s` quoted as Go's `strconv.Quote` would.
pub fn go_quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if rune::is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if c < ' ' || c == '\u{7f}' => push_hex(out, 'x', u32::from(c), 2),
        c if u32::from(c) < 0x10000 => push_hex(out, 'u', u32::from(c), 4),
        c => push_hex(out, 'U', u32::from(c), 8),
    }
}

fn push_hex(out: &mut String, letter: char, value: u32, digits: usize) {
    use std::fmt::Write;
    out.push('\\');
    out.push(letter);
    let _ = write!(out, "{value:0digits$x}");
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", r#""plain""#),
            (br#"a"b\c"#, r#""a\"b\\c""#),
            (
                b"\x00\x01\x07\x08\x0b\x0c\x1b\x7f",
                r#""\x00\x01\a\b\v\f\x1b\x7f""#,
            ),
            (b"tab\there\nnl\rcr", r#""tab\there\nnl\rcr""#),
            ("é😀♥ ".as_bytes(), "\"é😀♥ \""),
            (
                "\u{a0}\u{85}\u{200b}\u{2028}\u{feff}".as_bytes(),
                r#""\u00a0\u0085\u200b\u2028\ufeff""#,
            ),
            ("\u{e0001}".as_bytes(), r#""\U000e0001""#),
            (b"\xff\xfe bytes", r#""\xff\xfe bytes""#),
            (b"\xe2\x82", r#""\xe2\x82""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "{input:?}");
        }
    }
}
