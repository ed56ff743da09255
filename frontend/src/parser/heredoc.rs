//! Finding heredoc markers (`<<EOF`, `<<-EOF`, `3<<'EOF'`) in a RUN, COPY or ADD line.
//!
//! BuildKit splits the whole logical line into words with its shell lexer (quotes, escapes
//! and `$` references kept raw, unset variables left as written), matches each word against
//! `^(\d*)<<(-?)\s*([^<]*)$`, then lexes the terminator word twice, with quotes removed and
//! with quotes kept: a word that lost quote characters was quoted, so its body is not
//! expanded. A line the lexer rejects (an unterminated quote, `${`) has no heredocs at all.
//!
//! The lexer here is that lexer reduced to what detection needs: no variables are ever set,
//! so `$` references only need to be scanned, not expanded. It is not the expansion lexer
//! (which the typed layer owns); it must agree with BuildKit on word boundaries only.

use super::error::ParseErrorKind;
use super::rune;
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
    let words = Lexer::words(line, true, true).unwrap_or_default();
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
    let words = Lexer::words(rest, false, false).map_err(lex_error)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer::words(rest, true, false).map_err(lex_error)?;
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

/// `${…}` nesting beyond the expansion lexer's limit makes this lexer give up too (BuildKit's
/// Go stack would grow; ours must not overflow). Giving up means "no heredocs on this line".
const MAX_NESTING: usize = crate::expand::MAX_NESTING;

/// BuildKit's shell lexer word splitting with an empty environment and unset variables kept.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    depth: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if rune::is_space(c) {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

type LexResult<T> = Result<T, String>;

impl Lexer {
    /// The words of `text`, or the lexer's complaint.
    fn words(text: &[u8], raw_quotes: bool, raw_escapes: bool) -> LexResult<Vec<Vec<u8>>> {
        // Go's text/scanner reads runes (invalid bytes become U+FFFD) and skips a leading BOM.
        let mut chars: Vec<char> = rune::runes(text)
            .map(|(_, c, _)| c.unwrap_or('\u{FFFD}'))
            .collect();
        if chars.first() == Some(&'\u{FEFF}') {
            chars.remove(0);
        }
        let mut lexer = Lexer {
            chars,
            pos: 0,
            raw_quotes,
            raw_escapes,
            depth: 0,
        };
        let (_, words) = lexer.process_stop_on(None, raw_escapes)?;
        Ok(words.into_iter().map(String::into_bytes).collect())
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.scan_until(stop);
        self.raw_escapes = saved;
        result
    }

    fn scan_until(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == '\\' {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(escaped) => {
                                words.add_raw_char(escaped);
                                ch = escaped;
                            }
                        }
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or('\u{FFFD}');
                    if ch == '\\' {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => ch = self.next().unwrap_or('\u{FFFD}'),
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> LexResult<String> {
        self.depth += 1;
        let result = if self.depth > MAX_NESTING {
            Err("substitutions nested too deeply".into())
        } else {
            self.scan_dollar()
        };
        self.depth -= 1;
        result
    }

    fn scan_dollar(&mut self) -> LexResult<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next();
        let mut modifier = String::from(ch.unwrap_or('\u{FFFD}'));
        let op = match ch {
            Some('}') => return Ok(format!("${{{name}}}")),
            Some(':') => {
                let op = self.next();
                modifier.push(op.unwrap_or('\u{FFFD}'));
                op
            }
            Some('+' | '-' | '?' | '#' | '%') => ch,
            Some('/') => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let (pattern, _) = self.stop_on_or_missing('/', true, "'/' in ${}")?;
                let (replacement, _) = self.stop_on_or_missing('}', true, "'}'")?;
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            _ => return Err(format!("unsupported modifier ({modifier}) in substitution")),
        };
        let raw = matches!(op, Some('#' | '%'));
        let (word, _) = self.stop_on_or_missing('}', raw, "'}'")?;
        Ok(format!("${{{name}{modifier}{word}}}"))
    }

    fn stop_on_or_missing(
        &mut self,
        stop: char,
        raw_escapes: bool,
        what: &str,
    ) -> LexResult<(String, Vec<String>)> {
        self.process_stop_on(Some(stop), raw_escapes).map_err(|e| {
            if self.peek().is_none() {
                format!("syntax error: missing {what}")
            } else {
                e
            }
        })
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && rune::is_digit(ch) {
                while let Some(d) = self.peek().filter(|&c| rune::is_digit(c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !rune::is_letter(ch) && !rune::is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut result = String::from("<<");
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            self.next();
            result.push(c);
        }
        result
    }
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
