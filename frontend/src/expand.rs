//! Word expansion with Docker's rules: `$VAR`, `${VAR}` and its modifiers, quotes and escapes.
//!
//! Users copy Dockerfiles between engines, so a value must expand here exactly as BuildKit's
//! `shell.Lex` expands it, quirks included: an empty value counts as unset for `:-`/`:+`/`:?`,
//! `$1` and `$@` expand to nothing, `\x` outside quotes is `x`, inside double quotes only
//! `\"`, `\$` and `\\` are escapes, single quotes are literal, and `${v#p}`/`${v%p}` patterns
//! keep their backslashes so that `\*` means a literal star. The same scanner also splits a
//! word into fields (EXPOSE) the way BuildKit does: only text that came from a variable is
//! split on whitespace, quoted text never is.
//!
//! Which instructions expand, and with which variables, is decided by the caller (see
//! `instruction.rs` and `lower.rs`); this module only knows how.

use std::collections::BTreeMap;
use std::fmt;
use unicode_general_category::{GeneralCategory, get_general_category};

/// Where variable values come from during expansion.
pub trait Vars {
    /// The value of `name`, or `None` when it is not set (an empty value is set).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Vars for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<V: Vars + ?Sized> Vars for &V {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl Vars for NoVars {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandErrorKind {
    /// `${` without its `}`.
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}`.
    BadSubstitution,
    /// `${v=x}` and other modifiers Docker does not have.
    UnsupportedModifier(String),
    /// `${v/p` without the second `/`.
    MissingSlash,
    /// `${v?msg}` / `${v:?msg}` on an unset (or empty) variable.
    Required {
        /// The variable.
        name: String,
        /// The message: the user's, or Docker's default.
        message: String,
    },
    /// A quote or `${` that runs to the end of the word.
    Unterminated(&'static str),
    /// A `${v#p}`, `${v%p}` or `${v/p/r}` pattern with a bad escape.
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// The escaped character that may not be escaped.
        escaped: Option<char>,
    },
}

impl fmt::Display for ExpandErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingBrace => f.write_str("syntax error: missing '}'"),
            Self::BadSubstitution => f.write_str("syntax error: bad substitution"),
            Self::UnsupportedModifier(m) => write!(f, "unsupported modifier ({m}) in substitution"),
            Self::MissingSlash => f.write_str("syntax error: missing '/' in ${}"),
            Self::Required { name, message } => write!(f, "{name}: {message}"),
            Self::Unterminated(what) => {
                write!(
                    f,
                    "unexpected end of statement while looking for matching {what}"
                )
            }
            Self::InvalidPattern { pattern, escaped } => {
                write!(f, "invalid pattern ({pattern}) in substitution: ")?;
                match escaped {
                    Some(c) => write!(f, "invalid escape '\\{c}'"),
                    None => f.write_str("trailing escape"),
                }
            }
        }
    }
}

/// A word that could not be expanded, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What was wrong with it.
    pub kind: ExpandErrorKind,
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded text, quotes removed (unless raw quotes were asked for).
    pub value: String,
    /// The text split into fields (only text that came from variables is split on
    /// whitespace; quoted and escaped text never is).
    pub words: Vec<String>,
    /// Variables the word referred to that were set.
    pub matched: Vec<String>,
    /// Variables the word referred to that were not set.
    pub unmatched: Vec<String>,
}

/// A configured expander: the escape character and BuildKit's processing switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Lexer {
    /// An expander using `escape` (`\` or `` ` ``, from the `# escape=` directive).
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset: false,
        }
    }

    /// Keep quote characters in the output (used for progress labels).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output.
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (heredoc bodies).
    pub fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written (used for progress labels).
    pub fn skip_unset(mut self, on: bool) -> Self {
        self.skip_unset = on;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` to one string.
    pub fn expand(&self, word: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
        self.process(word, vars).map(|e| e.value)
    }

    /// Expands `word` and splits it into fields, as BuildKit's `ProcessWords`.
    pub fn expand_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
        self.process(word, vars).map(|e| e.words)
    }

    /// Expands `word`, returning the value, the fields and which variables were used.
    pub fn process(&self, word: &str, vars: &dyn Vars) -> Result<Expansion, ExpandError> {
        let mut sw = ShellWord {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            vars,
            raw_escapes: self.raw_escapes,
            matched: Vec::new(),
            unmatched: Vec::new(),
        };
        let raw = sw.raw_escapes;
        match sw.process_stop_on(None, raw) {
            Ok((value, words)) => Ok(Expansion {
                value,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(kind) => Err(ExpandError {
                word: word.to_owned(),
                kind,
            }),
        }
    }
}

/// Expands `word` with the default escape character and no special switches.
pub fn expand(word: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
    Lexer::default().expand(word, vars)
}

/// BuildKit's field builder: whitespace from variables splits, everything else is kept.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
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
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    vars: &'a dyn Vars,
    raw_escapes: bool,
    matched: Vec<String>,
    unmatched: Vec<String>,
}

type Step<T> = Result<T, ExpandErrorKind>;

impl ShellWord<'_> {
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

    fn get_var(&mut self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(v) => {
                if !self.matched.iter().any(|m| m == name) {
                    self.matched.push(name.to_owned());
                }
                Some(v.to_owned())
            }
            None => {
                if !self.unmatched.iter().any(|m| m == name) {
                    self.unmatched.push(name.to_owned());
                }
                None
            }
        }
    }

    /// Processes characters until `stop` (consumed) or the end of the word.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, fields.finish()));
            }
            let quotes = !self.lex.skip_process_quotes;
            if ch == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                fields.add_string(&value);
            } else if quotes && ch == '\'' {
                let value = self.process_single_quote()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else if quotes && ch == '"' {
                let value = self.process_double_quote()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else {
                self.pos += 1;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape makes the next character literal; a lone escape at the end
                    // of the word is dropped.
                    let Some(escaped) = self.next() else { break };
                    fields.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    fields.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(c) => Err(ExpandErrorKind::Unterminated(match c {
                '}' => "}",
                '/' => "/",
                _ => "character",
            })),
            None => Ok((result, fields.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::Unterminated("single-quote")),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::Unterminated("double-quote")),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape right before the end: the missing quote is reported.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            // Any other escape stays as written.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_var(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        match ch {
            '}' => Ok(match self.get_var(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (modifier, null_is_unset) = if ch == ':' {
                    (self.next(), true)
                } else {
                    (Some(ch), false)
                };
                let mut shown = String::from(ch);
                if ch == ':' {
                    shown.extend(modifier);
                }
                let raw = matches!(modifier, Some('#' | '%'));
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_var(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{shown}{word}}}"));
                }
                let unset = value.is_none();
                let empty = value.as_deref().is_some_and(str::is_empty);
                let absent = unset || (null_is_unset && empty);
                match modifier {
                    Some('-') => Ok(if absent {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if absent { String::new() } else { word }),
                    Some('?') => {
                        if absent {
                            let default = if unset {
                                "is not allowed to be unset"
                            } else {
                                "is not allowed to be empty"
                            };
                            let message = if word.is_empty() {
                                default.to_owned()
                            } else {
                                word
                            };
                            Err(ExpandErrorKind::Required { name, message })
                        } else {
                            Ok(value.unwrap_or_default())
                        }
                    }
                    Some(m @ ('#' | '%')) => {
                        let (greedy, pattern) = match word.strip_prefix(m) {
                            Some(rest) => (true, rest.to_owned()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        let glob = Glob::parse(&pattern)?;
                        Ok(if m == '#' {
                            glob.trim_prefix(&value, greedy)
                        } else {
                            glob.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(ExpandErrorKind::UnsupportedModifier(shown)),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingSlash),
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.get_var(&name);
                let Some(value) = value.or_else(|| (!self.lex.skip_unset).then(String::new)) else {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                };
                let glob = Glob::parse(&pattern)?;
                Ok(glob.replace(&value, &replacement, replace_all))
            }
            other => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
        }
    }

    /// A variable name: digits (`$1`), one special parameter (`$@`), or letters, digits, `_`.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_go_digit(*c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_go_letter(ch) && !is_go_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

/// Go's `unicode.IsDigit` (category Nd).
fn is_go_digit(c: char) -> bool {
    c.is_ascii_digit()
        || (!c.is_ascii() && get_general_category(c) == GeneralCategory::DecimalNumber)
}

/// Go's `unicode.IsLetter` (category L).
fn is_go_letter(c: char) -> bool {
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

/// A shell pattern of `${v#p}`, `${v%p}` and `${v/p/r}`: `*`, `?` and literals (a backslash
/// makes `*`, `?` and `\` literal; before `}` and `/` it is dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    items: Vec<GlobItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobItem {
    Star,
    Any,
    Lit(char),
}

impl Glob {
    fn parse(pattern: &str) -> Step<Self> {
        let mut items = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => items.push(GlobItem::Star),
                '?' => items.push(GlobItem::Any),
                '\\' => match it.peek().copied() {
                    // `\}` and `\/` only protect the delimiter; the escape is not part of it.
                    Some('}' | '/') => {}
                    Some(e @ ('*' | '?' | '\\')) => {
                        it.next();
                        items.push(GlobItem::Lit(e));
                    }
                    other => {
                        return Err(ExpandErrorKind::InvalidPattern {
                            pattern: pattern.to_owned(),
                            escaped: other,
                        });
                    }
                },
                c => items.push(GlobItem::Lit(c)),
            }
        }
        Ok(Self { items })
    }

    fn reversed(&self) -> Self {
        Self {
            items: self.items.iter().rev().copied().collect(),
        }
    }

    /// Where a match starting at `start` ends, with regex leftmost-first semantics: each `*`
    /// tries its longest (greedy) or shortest extent first, and the first complete match wins.
    fn match_at(&self, text: &[char], start: usize, greedy: bool) -> Option<usize> {
        let mut memo = vec![None; (self.items.len() + 1) * (text.len() + 1)];
        self.match_from(text, 0, start, greedy, &mut memo)
    }

    fn match_from(
        &self,
        text: &[char],
        item: usize,
        pos: usize,
        greedy: bool,
        memo: &mut Vec<Option<Option<usize>>>,
    ) -> Option<usize> {
        let key = item * (text.len() + 1) + pos;
        if let Some(known) = memo[key] {
            return known;
        }
        let result = match self.items.get(item) {
            None => Some(pos),
            Some(GlobItem::Lit(c)) => (text.get(pos) == Some(c))
                .then(|| self.match_from(text, item + 1, pos + 1, greedy, memo))
                .flatten(),
            Some(GlobItem::Any) => (pos < text.len())
                .then(|| self.match_from(text, item + 1, pos + 1, greedy, memo))
                .flatten(),
            Some(GlobItem::Star) => {
                let mut found = None;
                let ends: Box<dyn Iterator<Item = usize>> = if greedy {
                    Box::new((pos..=text.len()).rev())
                } else {
                    Box::new(pos..=text.len())
                };
                for end in ends {
                    if let Some(e) = self.match_from(text, item + 1, end, greedy, memo) {
                        found = Some(e);
                        break;
                    }
                }
                found
            }
        };
        memo[key] = Some(result);
        result
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        match self.match_at(&text, 0, greedy) {
            Some(end) => text[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        // The shortest or longest match at the end is the same search on both reversed.
        let text: Vec<char> = value.chars().rev().collect();
        match self.reversed().match_at(&text, 0, greedy) {
            Some(end) => text[end..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// The leftmost match at or after `from`.
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|s| self.match_at(text, s, true).map(|e| (s, e)))
    }

    /// `${v/p/r}` and `${v//p/r}`, with Go's `regexp` replacement rules (an empty match right
    /// after a match is skipped; `$0` in the replacement is the match).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((s, e)) = self.find(&text, search) else {
                break;
            };
            out.extend(&text[last_end..s]);
            if e > last_end || s == 0 {
                let matched: String = text[s..e].iter().collect();
                if all {
                    expand_go_template(&mut out, replacement, &matched);
                } else {
                    out.push_str(replacement);
                }
            }
            last_end = e;
            if !all {
                break;
            }
            search = if search + 1 > e { search + 1 } else { e };
        }
        out.extend(&text[last_end..]);
        out
    }
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0`/`${0}` the match,
/// any other `$name` nothing, and a `$` not followed by a name stays.
fn expand_go_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let is_name = |c: char| c.is_alphanumeric() || c == '_';
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(end) if end > 0 && r[..end].chars().all(is_name) => (&r[..end], &r[end + 1..]),
                _ => ("", rest),
            }
        } else {
            let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            out.push('$');
            continue;
        }
        if name.chars().all(|c| c.is_ascii_digit()) && name.parse::<u64>() == Ok(0) {
            out.push_str(matched);
        }
        rest = after;
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// BuildKit's own table (shell/envVarTest): PWD=/home SHELL=bash KOREAN=한국어 NULL=.
    #[test]
    fn buildkit_env_var_table() {
        let vars = env(&[
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ]);
        let cases: &[(&str, Option<&str>)] = &[
            ("hello", Some("hello")),
            ("he'll'o", Some("hello")),
            ("he'llo", None),
            ("he\\'llo", Some("he'llo")),
            ("he\\\\'llo", None),
            ("abc\\tdef", Some("abctdef")),
            ("\"abc\\tdef\"", Some("abc\\tdef")),
            ("\"abc\\\\tdef\"", Some("abc\\tdef")),
            ("'abc\\tdef'", Some("abc\\tdef")),
            ("hello\\", Some("hello")),
            ("hello\\\\", Some("hello\\")),
            ("\"hello", None),
            ("\"hello\\\"", None),
            ("\"hel'lo\"", Some("hel'lo")),
            ("'hello", None),
            ("'hello\\'", Some("hello\\")),
            ("'hello\\there'", Some("hello\\there")),
            ("'hello\\\\there'", Some("hello\\\\there")),
            ("\"''\"", Some("''")),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("he$.x", Some("he$.x")),
            ("he$pwd.", Some("he.")),
            ("he$PWD", Some("he/home")),
            ("he\\$PWD", Some("he$PWD")),
            ("he\\\\$PWD", Some("he\\/home")),
            ("\"he\\$PWD\"", Some("he$PWD")),
            ("\"he\\\\$PWD\"", Some("he\\/home")),
            ("\\${}", Some("${}")),
            ("\\${}aaa", Some("${}aaa")),
            ("he\\${}", Some("he${}")),
            ("he\\${}xx", Some("he${}xx")),
            ("${}", None),
            ("${}aaa", None),
            ("he${}", None),
            ("he${}xx", None),
            ("he${hi}", Some("he")),
            ("he${hi}xx", Some("hexx")),
            ("he${PWD}", Some("he/home")),
            ("he${.}", None),
            ("he${XXX:-000}xx", Some("he000xx")),
            ("he${PWD:-000}xx", Some("he/homexx")),
            ("he${XXX:-$PWD}xx", Some("he/homexx")),
            ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${XXX:YYY}", None),
            ("he${XXX?}", None),
            ("he${XXX:?}", None),
            ("he${PWD?}", Some("he/home")),
            ("he${PWD:?}", Some("he/home")),
            ("he${NULL?}", Some("he")),
            ("he${NULL:?}", None),
            ("he${XXX:+${PWD}}xx", Some("hexx")),
            ("he${PWD:+${XXX}}xx", Some("hexx")),
            ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
            ("he${XXX:+000}xx", Some("hexx")),
            ("he${PWD:+000}xx", Some("he000xx")),
            ("'he${XX}'", Some("he${XX}")),
            ("\"he${PWD}\"", Some("he/home")),
            ("\"he'$PWD'\"", Some("he'/home'")),
            ("\"$PWD\"", Some("/home")),
            ("'$PWD'", Some("$PWD")),
            ("'\\$PWD'", Some("\\$PWD")),
            ("'\"hello\"'", Some("\"hello\"")),
            ("'he\\$PWD'", Some("he\\$PWD")),
            ("he${PWD", None),
            ("he${PWD:=000}xx", None),
            ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
            ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
            ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
            ("안녕하세요", Some("안녕하세요")),
            ("안'녕'하세요", Some("안녕하세요")),
            ("안'녕하세요", None),
            ("안녕\\'하세요", Some("안녕'하세요")),
            ("안\\\\'녕하세요", None),
            ("\"안녕하세요", None),
            ("'안녕하세요\\'", Some("안녕하세요\\")),
            ("안녕$1x", Some("안녕x")),
            ("안녕$.x", Some("안녕$.x")),
            ("$KOREAN", Some("한국어")),
            ("안녕$KOREAN", Some("안녕한국어")),
            ("${{aaa}", None),
            ("${aaa}}", Some("}")),
            ("${aaa}}}", Some("}}")),
            ("${aaa:-bbb}}", Some("bbb}")),
            ("${aaa:-b}bb}}", Some("bbb}}")),
            ("$}", Some("$}")),
            ("$}}", Some("$}}")),
            ("$!", Some("")),
            ("$!x", Some("x")),
            ("$@", Some("")),
            ("$*x", Some("x")),
            ("$#", Some("")),
            ("$$", Some("")),
            ("$-", Some("")),
            ("$?", Some("")),
            ("$0", Some("")),
            ("$00", Some("")),
            ("${:}", None),
            ("${:aa}", None),
        ];
        let mut misses = Vec::new();
        for (input, want) in cases {
            let got = expand(input, &vars).ok();
            if got.as_deref() != *want {
                misses.push(format!("{input:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(misses.is_empty(), "{}", misses.join("\n"));
    }

    /// BuildKit's TestProcessWithMatches cases: modifiers and patterns.
    #[test]
    fn modifiers_and_patterns() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            ("x ${UNUSED}", &[], Some("x ")),
            (
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                &[("FOO", "xxx"), ("BAR", "")],
                Some("xxx  ccc"),
            ),
            (
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                &[("FOO", "xxx"), ("BAR", "")],
                Some("xxx bbb ccc"),
            ),
            ("${FOO:-}", &[("FOO", "xxx")], Some("xxx")),
            ("${FOO:-}", &[], Some("")),
            (
                "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
                &[("FOO", "xxx"), ("BAR", "")],
                Some("aaa bbb "),
            ),
            (
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                &[("FOO", "xxx"), ("BAR", "")],
                Some("aaa  "),
            ),
            ("${FOO?aaa}", &[("FOO", "xxx")], Some("xxx")),
            ("${BAR?bbb}", &[("BAR", "")], Some("")),
            ("${BAZ?ccc}", &[], None),
            ("${FOO:?aaa}", &[("FOO", "xxx")], Some("xxx")),
            ("${BAR:?bbb}", &[("BAR", "")], None),
            ("${BAZ:?}", &[], None),
            ("${FOO=aaa}", &[("FOO", "xxx")], None),
            ("${FOO=:aaa}", &[("FOO", "xxx")], None),
            ("${FOO=}", &[], None),
            (
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                Some("x"),
            ),
            ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y")),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
            ),
            ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
            ),
            ("${FOO%y*}", &[("FOO", "xxyy")], Some("xxy")),
            ("${FOO%%y*}", &[("FOO", "xxyy")], Some("xx")),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                Some("https://google.de"),
            ),
            (
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some("\\/tmp\\/foo.txt"),
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
            ),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
            ("${FOO//x/-}", &[("FOO", "xaxbx")], Some("-a-b-")),
            ("${FOO/x*/-}", &[("FOO", "axbxc")], Some("a-")),
            ("${FOO:#x}", &[("FOO", "xy")], Some("y")),
            ("${FOO#\\x}", &[("FOO", "xy")], None),
            (
                "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
                &[
                    ("VERSION", "v1.2.3"),
                    ("TARGETOS", "linux"),
                    ("TARGETARCH", "arm"),
                    ("TARGETVARIANT", "v7"),
                ],
                Some("something-v1.2.3.linux-arm-v7.tar.gz"),
            ),
            (
                "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
                &[
                    ("VERSION", "v1.2.3"),
                    ("TARGETOS", "linux"),
                    ("TARGETARCH", "amd64"),
                    ("TARGETVARIANT", ""),
                ],
                Some("something-v1.2.3.linux-amd64.tar.gz"),
            ),
        ];
        let mut misses = Vec::new();
        for (input, vars, want) in cases {
            let got = expand(input, &env(vars)).ok();
            if got.as_deref() != *want {
                misses.push(format!(
                    "{input:?} with {vars:?}: want {want:?}, got {got:?}"
                ));
            }
        }
        assert!(misses.is_empty(), "{}", misses.join("\n"));
    }

    #[test]
    fn messages_name_the_word_and_the_reason() {
        let vars = env(&[("VAR", ""), ("ARG", "x")]);
        let err = expand("${VAR:?message here$ARG}", &vars).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
        );
        let err = expand("${NOPE?}", &vars).unwrap_err();
        assert_eq!(err.kind.to_string(), "NOPE: is not allowed to be unset");
        let err = expand("${VAR:?}", &vars).unwrap_err();
        assert_eq!(err.kind.to_string(), "VAR: is not allowed to be empty");
        assert_eq!(
            expand("${X", &vars).unwrap_err().kind,
            ExpandErrorKind::MissingBrace
        );
        assert_eq!(
            expand("${X:=y}", &vars).unwrap_err().kind.to_string(),
            "unsupported modifier (:=) in substitution"
        );
        assert_eq!(
            expand("'a", &vars).unwrap_err().kind.to_string(),
            "unexpected end of statement while looking for matching single-quote"
        );
    }

    /// BuildKit's wordsTest: fields come only from whitespace inside variable values.
    #[test]
    fn words_split_only_expanded_whitespace() {
        let vars = env(&[("PWD", "/home"), ("SPACES", "a b  c"), ("EMPTY", "")]);
        let cases: &[(&str, &[&str])] = &[
            ("hello", &["hello"]),
            ("hello world", &["hello", "world"]),
            ("hello   world  ", &["hello", "world"]),
            ("'hello world'", &["hello world"]),
            ("\"hello world\"", &["hello world"]),
            ("hello\\ world", &["hello world"]),
            ("$SPACES", &["a", "b", "c"]),
            ("\"$SPACES\"", &["a b  c"]),
            ("x${SPACES}y", &["xa", "b", "cy"]),
            ("$EMPTY", &[]),
            ("\"\"", &[]),
            ("\"\" a", &["a"]),
            ("he$PWD x", &["he/home", "x"]),
        ];
        for (input, want) in cases {
            let got = Lexer::default().expand_words(input, &vars).unwrap();
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let vars = env(&[("A", "1")]);
        let lex = Lexer::new('`');
        assert_eq!(lex.expand("a`$A\\b", &vars).unwrap(), "a$A\\b");
        assert_eq!(lex.expand("\"`\"$A\"", &vars).unwrap(), "\"1");
    }

    #[test]
    fn label_mode_keeps_quotes_and_unset_references() {
        let vars = env(&[("X", "1")]);
        let lex = Lexer::default().raw_quotes(true).skip_unset(true);
        assert_eq!(
            lex.expand("echo \"$X\" '$Y' ${Z:-d} $Z", &vars).unwrap(),
            "echo \"1\" '$Y' ${Z:-d} $Z"
        );
    }

    #[test]
    fn heredoc_mode_ignores_quotes() {
        let vars = env(&[("WHO", "me")]);
        let lex = Lexer::default().skip_process_quotes(true);
        assert_eq!(lex.expand("'$WHO' \"x\"", &vars).unwrap(), "'me' \"x\"");
    }

    #[test]
    fn matched_and_unmatched_are_reported() {
        let vars = env(&[("A", "1")]);
        let e = Lexer::default().process("$A ${B:-x} $A", &vars).unwrap();
        assert_eq!(e.matched, ["A"]);
        assert_eq!(e.unmatched, ["B"]);
    }
}
