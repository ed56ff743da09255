//! Finding heredoc markers (`<<EOF`, `<<-EOF`, `3<<'EOF'`) in a RUN, COPY or ADD line.
//!
//! BuildKit splits the whole logical line into words with its shell lexer (quotes, escapes
//! and `$` references kept raw, unset variables left as written), matches each word against
//! `^(\d*)<<(-?)\s*([^<]*)$`, then lexes the terminator word twice, with quotes removed and
//! with quotes kept: a word that lost quote characters was quoted, so its body is not
//! expanded. A line the lexer rejects (an unterminated quote, `${`) has no heredocs at all.
//!
//! The lexer is the expansion lexer of `expand.rs` (BuildKit uses its one `shell.Lex` for
//! both), with no variables set, so `$` references are only scanned and kept as written.

use super::error::ParseErrorKind;
use crate::expand::{Lexer, NoVars};
use crate::rune;
use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag, take_while};
use nom::character::complete::char;
use nom::combinator::opt;

/// A heredoc marker found on the line, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Marker {
    pub(super) name: Vec<u8>,
    pub(super) fd: u64,
    pub(super) expand: bool,
    pub(super) chomp: bool,
}

/// The heredoc markers of `line` (a whole logical line, keyword included).
pub(super) fn markers(line: &[u8]) -> Result<Vec<Marker>, ParseErrorKind> {
    let words = shell_words(line, true, true).unwrap_or_default();
    let mut out = Vec::new();
    for word in words {
        if let Some(marker) = marker(&word)? {
            out.push(marker);
        }
    }
    Ok(out)
}

type Res<'a, O> = IResult<&'a [u8], O>;

/// The digits, `<<`, the optional `-` and the blanks of a marker.
type MarkerParts<'a> = (&'a [u8], &'a [u8], Option<char>, &'a [u8]);

/// `^(\d*)<<(-?)\s*([^<]*)$` on one word.
fn split_marker(word: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    fn parts(i: &[u8]) -> Res<'_, MarkerParts<'_>> {
        (
            take_while(|b: u8| b.is_ascii_digit()),
            tag(&b"<<"[..]),
            opt(char('-')),
            take_while(|b| matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')),
        )
            .parse(i)
    }
    let (rest, (fd, _, dash, _)) = parts(word).ok()?;
    if rest.contains(&b'<') {
        return None;
    }
    Some((fd, dash.is_some(), rest))
}

fn marker(word: &[u8]) -> Result<Option<Marker>, ParseErrorKind> {
    let Some((fd, chomp, rest)) = split_marker(word) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let lex_error = |reason: String| ParseErrorKind::HeredocMarker {
        word: String::from_utf8_lossy(word).into_owned(),
        reason,
    };
    let words = shell_words(rest, false, false).map_err(lex_error)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = shell_words(rest, true, false).map_err(lex_error)?;
    let [raw_name] = raw.as_slice() else {
        return Err(lex_error("inconsistent results".into()));
    };
    let quotes = |w: &[u8]| w.iter().filter(|&&b| b == b'\'' || b == b'"').count();
    // Go's ParseUint: empty is 0, overflow is the largest value.
    let fd = match std::str::from_utf8(fd).map(str::parse::<u64>) {
        Ok(Ok(n)) => n,
        _ if fd.is_empty() => 0,
        _ => u64::MAX,
    };
    Ok(Some(Marker {
        name: name.clone(),
        fd,
        expand: quotes(name) == quotes(raw_name),
        chomp,
    }))
}

/// BuildKit's shell lexer word splitting with an empty environment and unset variables kept
/// (the expansion lexer, set up as BuildKit sets it up for heredocs: `\` escapes whatever the
/// file's escape character, unset references stay as written). Go reads the text as runes,
/// each invalid byte becoming U+FFFD, and skips a leading BOM. A line the lexer rejects (an
/// unterminated quote, `${` nested past its limit) is an error with the lexer's reason.
fn shell_words(text: &[u8], raw_quotes: bool, raw_escapes: bool) -> Result<Vec<Vec<u8>>, String> {
    let mut chars = rune::runes(text).map(|(_, c, _)| c.unwrap_or('\u{FFFD}'));
    let mut line = String::with_capacity(text.len());
    line.extend(chars.next().filter(|&c| c != '\u{FEFF}'));
    line.extend(chars);
    Lexer::new('\\')
        .raw_quotes(raw_quotes)
        .raw_escapes(raw_escapes)
        .skip_unset(true)
        .expand_words(&line, &NoVars)
        .map(|words| words.into_iter().map(String::into_bytes).collect())
        .map_err(|e| e.kind.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(line: &str) -> Vec<(String, u64, bool, bool)> {
        markers(line.as_bytes())
            .unwrap()
            .into_iter()
            .map(|m| (String::from_utf8(m.name).unwrap(), m.fd, m.expand, m.chomp))
            .collect()
    }

    #[test]
    fn finds_markers_like_buildkit() {
        assert_eq!(found("RUN <<EOF"), [("EOF".into(), 0, true, false)]);
        assert_eq!(found("RUN <<-EOT bash"), [("EOT".into(), 0, true, true)]);
        assert_eq!(
            found("COPY <<A <<B /dest/"),
            [("A".into(), 0, true, false), ("B".into(), 0, true, false)]
        );
        assert_eq!(
            found("RUN <<'NOEXPAND'"),
            [("NOEXPAND".into(), 0, false, false)]
        );
        assert_eq!(found(r#"COPY <<"Q" /x"#), [("Q".into(), 0, false, false)]);
        assert_eq!(found("RUN 3<<FD cat"), [("FD".into(), 3, true, false)]);
        assert_eq!(
            found("RUN cat <<EOF > /x"),
            [("EOF".into(), 0, true, false)]
        );
        assert_eq!(found("RUN <<  EOF"), [("EOF".into(), 0, true, false)]);
        assert_eq!(found("RUN <<$EOF"), [("$EOF".into(), 0, true, false)]);
        assert_eq!(found("RUN <<eo\\'f"), [("eo'f".into(), 0, true, false)]);
        assert_eq!(found("RUN <<eo'f'"), [("eof".into(), 0, false, false)]);
        assert_eq!(found("RUN <<'e'o\\'f"), [("eo'f".into(), 0, false, false)]);
        assert_eq!(
            found("RUN <<'one two'"),
            [("one two".into(), 0, false, false)]
        );
    }

    #[test]
    fn not_markers() {
        for line in [
            "RUN \"<<NOHEREDOC\"",
            "RUN echo a<<b",
            "RUN <<",
            "RUN <<<EOF",
            "RUN <<EOF 'unterminated",
            "RUN <<EOF ${",
            "RUN <<EOF ${}",
        ] {
            assert_eq!(found(line), [], "{line}");
        }
    }

    #[test]
    fn deep_substitutions_do_not_overflow() {
        let line = format!("RUN <<EOF {}x{}", "${a:-".repeat(5000), "}".repeat(5000));
        assert_eq!(found(&line), []);
        let line = format!("RUN <<EOF {}x{}", "${a:-".repeat(10), "}".repeat(10));
        assert_eq!(found(&line), [("EOF".into(), 0, true, false)]);
    }
}
