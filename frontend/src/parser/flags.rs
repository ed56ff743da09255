//! The `--name[=value]` words at the front of every instruction's arguments.
//!
//! BuildKit scans them byte by byte, for every keyword and without knowing flag names: `'`
//! and `"` quote, a backslash (always a backslash, whatever the escape directive says) makes
//! the next byte literal, and a bare `--` ends the flags. Because the scan is byte-wise, each
//! byte of a multi-byte character is re-encoded as if it were Latin-1 (`café` becomes
//! `cafÃ©`), and the bytes 0x85 and 0xA0 count as spaces. We keep those quirks: the dump
//! shows them.

use crate::rune;

/// One flag word and the offset in the scanned text where it starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FlagWord {
    pub(super) text: Vec<u8>,
    pub(super) offset: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(u8),
}

/// Splits the flags off the front of `line`; returns the rest (a sub-slice of `line`, not
/// trimmed) and the flags.
pub(super) fn extract(line: &[u8]) -> (&[u8], Vec<FlagWord>) {
    let mut flags = Vec::new();
    let mut word: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut pos = 0;
    let finish = |word: &mut Vec<u8>, start: usize, flags: &mut Vec<FlagWord>| {
        flags.push(FlagWord {
            text: std::mem::take(word),
            offset: start,
        });
    };
    loop {
        if pos == line.len() {
            if phase != Phase::Spaces && word != b"--" && (blank_ok || !word.is_empty()) {
                finish(&mut word, start, &mut flags);
            }
            return (&line[line.len()..], flags);
        }
        let ch = line[pos];
        match phase {
            Phase::Spaces => {
                if rune::is_space_byte(ch) {
                    pos += 1;
                    continue;
                }
                if ch != b'-' || line.get(pos + 1) != Some(&b'-') {
                    return (&line[pos..], flags);
                }
                phase = Phase::Word;
                start = pos;
                // The byte is handled as part of the word below.
                continue;
            }
            Phase::Word => {
                if rune::is_space_byte(ch) {
                    phase = Phase::Spaces;
                    if word == b"--" {
                        return (&line[pos..], flags);
                    }
                    if blank_ok || !word.is_empty() {
                        finish(&mut word, start, &mut flags);
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == b'\'' || ch == b'"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == b'\\' {
                    if let Some(&next) = line.get(pos + 1) {
                        pos += 1;
                        push_latin1(&mut word, next);
                    }
                } else {
                    push_latin1(&mut word, ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == b'\\' {
                    match line.get(pos + 1) {
                        Some(&next) => {
                            pos += 1;
                            push_latin1(&mut word, next);
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    push_latin1(&mut word, ch);
                }
            }
        }
        pos += 1;
    }
}

/// Go's `WriteRune(rune(b))`: the byte as a Latin-1 character, UTF-8 encoded.
fn push_latin1(out: &mut Vec<u8>, b: u8) {
    if b < 0x80 {
        out.push(b);
    } else {
        let mut buf = [0; 2];
        out.extend_from_slice(char::from(b).encode_utf8(&mut buf).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> (String, Vec<String>) {
        let (rest, flags) = extract(line.as_bytes());
        (
            String::from_utf8_lossy(rest).into_owned(),
            flags
                .into_iter()
                .map(|f| String::from_utf8(f.text).unwrap())
                .collect(),
        )
    }

    #[test]
    fn flags_end_at_the_first_other_word() {
        assert_eq!(
            texts("--from=build --link /a /b"),
            ("/a /b".into(), vec!["--from=build".into(), "--link".into()])
        );
        assert_eq!(texts("-- --literal"), (" --literal".into(), vec![]));
        assert_eq!(texts("--doit --"), ("".into(), vec!["--doit".into()]));
        assert_eq!(texts("echo --no"), ("echo --no".into(), vec![]));
        assert_eq!(texts("-x"), ("-x".into(), vec![]));
    }

    #[test]
    fn quotes_and_backslashes_are_removed() {
        assert_eq!(
            texts(r#"--label="a b" --x='it\'s' --y= --z="" --w=a\ b\"c src"#).1,
            ["--label=a b", "--x=it's", "--y=", "--z=", r#"--w=a b"c"#]
        );
        assert_eq!(texts(r#"--a="x y"z b"#).1, ["--a=x yz"]);
        assert_eq!(texts("--a=b\\").1, ["--a=b"]);
    }

    #[test]
    fn bytes_are_latin1() {
        assert_eq!(texts("--name=café x").1, ["--name=cafÃ©"]);
        // 0xA0 is the second byte of "à" and counts as a space.
        assert_eq!(texts("--n=à x"), ("x".into(), vec!["--n=Ã".into()]));
    }

    #[test]
    fn offsets_point_at_each_flag() {
        let (_, flags) = extract(b"  --a=1   --b x");
        assert_eq!(flags.iter().map(|f| f.offset).collect::<Vec<_>>(), [2, 10]);
    }
}
