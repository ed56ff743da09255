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
//!
//! Two limits BuildKit does not have keep hostile words from taking the process down: `${`
//! nests at most [`MAX_NESTING`] deep (Go's stacks grow, ours must not overflow), and one
//! expansion adds at most [`MAX_GROWTH`] bytes to a word (`ENV A=$A$A` repeated would
//! otherwise double the memory per line). Patterns are Go regular expressions in BuildKit;
//! here they run as a small automaton with the same leftmost-first results, in time
//! proportional to value × pattern at worst and memory proportional to the pattern.

use crate::rune;
use std::collections::BTreeMap;
use std::fmt;

/// How deep `${…}` may nest inside one word (`${a:-${b:-…}}`). Real Dockerfiles use two or
/// three levels; the limit keeps the recursive scanner far from the end of any thread's stack
/// (a level takes under 1 KiB of stack in a release build, under 5 KiB in a debug build).
pub const MAX_NESTING: usize = 32;

/// How many bytes one expansion may add to a word (values, defaults and replacements).
pub const MAX_GROWTH: usize = 1 << 20;

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
    /// `${` nested more than [`MAX_NESTING`] deep.
    TooDeep {
        /// Where the `${` that went too deep starts, in characters from the word's start.
        offset: usize,
    },
    /// The expansion would add more than [`MAX_GROWTH`] bytes to the word.
    TooLong,
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
                write!(
                    f,
                    "invalid pattern ({}) in substitution: ",
                    Shortened(pattern, false)
                )?;
                match escaped {
                    Some(c) => write!(f, "invalid escape '\\{c}'"),
                    None => f.write_str("trailing escape"),
                }
            }
            Self::TooDeep { offset } => write!(
                f,
                "substitutions nested more than {MAX_NESTING} deep (the '${{' at character {offset})"
            ),
            Self::TooLong => write!(f, "expansion adds more than {MAX_GROWTH} bytes to the word"),
        }
    }
}

/// A word in a message, quoted or not: whole when short, else its start and its length, so
/// that a hostile 60 KB word does not fill the terminal.
struct Shortened<'a>(&'a str, bool);

impl fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 60;
        let Shortened(word, quoted) = *self;
        let (shown, cut) = match word.char_indices().nth(SHOWN) {
            None => (word, false),
            Some((end, _)) => (&word[..end], true),
        };
        if quoted {
            write!(f, "{shown:?}")?;
        } else {
            f.write_str(shown)?;
        }
        if cut {
            write!(f, "… ({} bytes)", word.len())?;
        }
        Ok(())
    }
}

/// A word that could not be expanded, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {}: {kind}", Shortened(word, true))]
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
        self.run(word, vars, false).map(|e| e.value)
    }

    /// Expands `word` and splits it into fields, as BuildKit's `ProcessWords`.
    pub fn expand_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
        self.run(word, vars, true).map(|e| e.words)
    }

    /// Expands `word`, returning the value, the fields and which variables were used.
    pub fn process(&self, word: &str, vars: &dyn Vars) -> Result<Expansion, ExpandError> {
        self.run(word, vars, true)
    }

    fn run(&self, word: &str, vars: &dyn Vars, want_words: bool) -> Result<Expansion, ExpandError> {
        // Most words (paths, versions, names) have nothing to expand: no `$`, no quote, no
        // escape (and, for fields, no `<<`). Such a word is its own value, and its fields are
        // its blank-separated parts.
        let quotes = !self.skip_process_quotes;
        let special = |c: char| {
            c == '$'
                || c == self.escape
                || (quotes && (c == '\'' || c == '"'))
                || (want_words && c == '<')
        };
        if !word.contains(special) {
            return Ok(Expansion {
                value: word.to_owned(),
                words: if want_words {
                    word.split_whitespace().map(str::to_owned).collect()
                } else {
                    Vec::new()
                },
                matched: Vec::new(),
                unmatched: Vec::new(),
            });
        }
        let mut sw = ShellWord {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            vars,
            raw_escapes: self.raw_escapes,
            matched: Vec::new(),
            unmatched: Vec::new(),
            depth: 0,
            max_len: word.len().saturating_add(MAX_GROWTH),
            want_words,
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

/// BuildKit's field builder: unquoted whitespace splits, everything else is kept. It does
/// nothing when the caller wants only the value. The heredoc marker scanner splits its
/// words with it too.
pub(crate) struct Fields {
    on: bool,
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    pub(crate) fn new(on: bool) -> Self {
        Self {
            on,
            word: String::new(),
            words: Vec::new(),
            in_word: false,
        }
    }

    pub(crate) fn add_char(&mut self, ch: char) {
        if !self.on {
            return;
        }
        if rune::is_space(ch) {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    pub(crate) fn add_raw_char(&mut self, ch: char) {
        if self.on {
            self.word.push(ch);
            self.in_word = true;
        }
    }

    pub(crate) fn add_string(&mut self, s: &str) {
        if self.on {
            s.chars().for_each(|c| self.add_char(c));
        }
    }

    pub(crate) fn add_raw_string(&mut self, s: &str) {
        if self.on {
            self.word.push_str(s);
            self.in_word = true;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
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
    /// How many `${` enclose the scanner's position.
    depth: usize,
    /// The longest any piece of the result may get (the word plus [`MAX_GROWTH`]).
    max_len: usize,
    /// Whether fields are wanted (`expand` needs only the value).
    want_words: bool,
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

    /// Fails once `len` bytes of result exceed what one expansion may produce.
    fn check_len(&self, len: usize) -> Step<()> {
        if len > self.max_len {
            return Err(ExpandErrorKind::TooLong);
        }
        Ok(())
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut fields = Fields::new(self.want_words);
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, fields.finish()));
            }
            let quotes = !self.lex.skip_process_quotes;
            if ch == '$' {
                let value = self.process_dollar()?;
                self.check_len(result.len() + value.len())?;
                result.push_str(&value);
                fields.add_string(&value);
            } else if ch == '<' {
                let value = self.process_possible_heredoc();
                result.push_str(&value);
                fields.add_raw_string(&value);
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

    /// `<` alone, or `<<` with the blanks after it kept in the same field (BuildKit's lexer
    /// does this everywhere so that `<< EOF` stays one heredoc word).
    fn process_possible_heredoc(&mut self) -> String {
        self.pos += 1; // the first '<'
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut result = String::from("<<");
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            self.pos += 1;
            result.push(c);
        }
        result
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
                    self.check_len(result.len() + value.len())?;
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

    /// A `$` reference; `${…}` recurses into its words, so the nesting is counted here.
    fn process_dollar(&mut self) -> Step<String> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandErrorKind::TooDeep { offset: self.pos });
        }
        self.depth += 1;
        let result = self.scan_dollar();
        self.depth -= 1;
        result
    }

    /// The recursive path (`${` → its words → `${` …) is kept to this function and
    /// [`ShellWord::sub_word`]: what a modifier does with the word happens in functions
    /// called after the recursion returns, so each level holds only small frames.
    fn scan_dollar(&mut self) -> Step<String> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.reference(&name, false));
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.next() {
            None => Err(ExpandErrorKind::MissingBrace),
            Some('}') => Ok(self.reference(&name, true)),
            Some(ch @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let modifier = if ch == ':' { self.next() } else { Some(ch) };
                let raw = matches!(modifier, Some('#' | '%'));
                let word = self.sub_word('}', raw, ExpandErrorKind::MissingBrace)?;
                self.apply_modifier(name, ch, modifier, word)
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.sub_word('/', true, ExpandErrorKind::MissingSlash)?;
                let replacement = self.sub_word('}', true, ExpandErrorKind::MissingBrace)?;
                self.apply_replace(&name, &pattern, &replacement, all)
            }
            Some(other) => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
        }
    }

    /// The word of a modifier, up to `stop`; running out of input is `missing`.
    fn sub_word(&mut self, stop: char, raw: bool, missing: ExpandErrorKind) -> Step<String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(missing),
            Err(e) => Err(e),
        }
    }

    /// `$name` or `${name}`.
    fn reference(&mut self, name: &str, braced: bool) -> String {
        match self.get_var(name) {
            Some(v) => v,
            None if self.lex.skip_unset && braced => format!("${{{name}}}"),
            None if self.lex.skip_unset => format!("${name}"),
            None => String::new(),
        }
    }

    /// `${name<ch><modifier>word}`: `-`, `+`, `?` (after `:`, an empty value counts as unset),
    /// `#`, `##`, `%`, `%%`.
    fn apply_modifier(
        &mut self,
        name: String,
        ch: char,
        modifier: Option<char>,
        word: String,
    ) -> Step<String> {
        let null_is_unset = ch == ':';
        let mut shown = String::from(ch);
        if ch == ':' {
            shown.extend(modifier);
        }
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
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let glob = Glob::parse(pattern)?;
                Ok(if m == '#' {
                    glob.trim_prefix(&value, greedy)
                } else {
                    glob.trim_suffix(&value, greedy)
                })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(shown)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn apply_replace(
        &mut self,
        name: &str,
        pattern: &str,
        replacement: &str,
        all: bool,
    ) -> Step<String> {
        let value = self.get_var(name);
        let Some(value) = value.or_else(|| (!self.lex.skip_unset).then(String::new)) else {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        };
        let glob = Glob::parse(pattern)?;
        glob.replace(&value, replacement, all, self.max_len)
    }

    /// A variable name: digits (`$1`), one special parameter (`$@`), or letters, digits, `_`.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && rune::is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| rune::is_digit(*c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !rune::is_letter(ch) && !rune::is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
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
                // `**` matches what `*` matches (for the longest and the shortest match alike).
                '*' if items.last() == Some(&GlobItem::Star) => {}
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

    /// Where the match starting at `text[0]` ends: the longest match (`greedy`) or the
    /// shortest. BuildKit compiles the pattern into a Go regexp where `*` is `.*` (or `.*?`)
    /// and `?` is `.`, so neither matches a newline; with every `*` equally greedy,
    /// leftmost-first matching picks exactly the longest (or shortest) match, which the set
    /// of live automaton states finds in one pass.
    fn anchored_end(&self, text: &[char], greedy: bool) -> Option<usize> {
        let automaton = Automaton::new(&self.items);
        let mut live = automaton.initial();
        let mut best = None;
        for (pos, &ch) in text.iter().enumerate() {
            if automaton.accepts(&live) {
                best = Some(pos);
                if !greedy {
                    return best;
                }
            }
            if live.iter().all(|&w| w == 0) {
                return best;
            }
            live = automaton.step(&live, ch);
        }
        if automaton.accepts(&live) {
            best = Some(text.len());
        }
        best
    }

    /// For each position of `text` (and its end), whether a match starts there: the reversed
    /// pattern run over the reversed text, starting afresh at every position, accepts where a
    /// match of the pattern begins.
    fn match_starts(&self, text: &[char]) -> Vec<bool> {
        let reversed = self.reversed();
        let automaton = Automaton::new(&reversed.items);
        let initial = automaton.initial();
        let mut starts = vec![false; text.len() + 1];
        let mut live = initial.clone();
        starts[text.len()] = automaton.accepts(&live);
        for (p, &ch) in text.iter().enumerate().rev() {
            live = automaton.step(&live, ch);
            for (w, i) in live.iter_mut().zip(&initial) {
                *w |= i;
            }
            starts[p] = automaton.accepts(&live);
        }
        starts
    }

    fn reversed(&self) -> Self {
        Self {
            items: self.items.iter().rev().copied().collect(),
        }
    }

    /// `${v#p}` (shortest) and `${v##p}` (longest): `value` without the matching prefix.
    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        match self.anchored_end(&text, greedy) {
            Some(end) => text[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// `${v%p}` and `${v%%p}`: the shortest or longest match at the end is the same search
    /// with the pattern and the value both reversed (BuildKit's `reversePattern`).
    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().rev().collect();
        match self.reversed().anchored_end(&text, greedy) {
            Some(end) => text[end..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// `${v/p/r}` and `${v//p/r}`, with Go's `regexp` replacement rules (an empty match right
    /// after a match is skipped; `$0` in the replacement is the match). Each match is the
    /// leftmost one from the search position with its longest end, as Go's leftmost-first
    /// search with greedy stars finds it. The result may not exceed `max_len` bytes.
    fn replace(&self, value: &str, replacement: &str, all: bool, max_len: usize) -> Step<String> {
        let text: Vec<char> = value.chars().collect();
        let starts = self.match_starts(&text);
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some(s) = (search..=text.len()).find(|&p| starts[p]) else {
                break;
            };
            let e = s + self
                .anchored_end(&text[s..], true)
                .expect("a match starts where match_starts says one does");
            out.extend(&text[last_end..s]);
            if e > last_end || s == 0 {
                if all {
                    let matched: String = text[s..e].iter().collect();
                    expand_go_template(&mut out, replacement, &matched);
                } else {
                    out.push_str(replacement);
                }
            }
            if out.len() > max_len {
                return Err(ExpandErrorKind::TooLong);
            }
            last_end = e;
            if !all {
                break;
            }
            // Go's ReplaceAll: past this match, and always at least one character on.
            search = if search + 1 > e { search + 1 } else { e };
        }
        out.extend(&text[last_end..]);
        if out.len() > max_len {
            return Err(ExpandErrorKind::TooLong);
        }
        Ok(out)
    }
}

/// A pattern as a bit-parallel automaton: state `i` means "the first `i` items matched",
/// one bit per state, so a step over a character is a few operations per 64 states
/// whatever the pattern (time value × pattern / 64 at worst, memory the pattern's size).
struct Automaton {
    /// The items (runs of `*` already collapsed by [`Glob::parse`]).
    items: usize,
    /// Per literal character: the states whose next item is that character.
    literals: std::collections::HashMap<char, Vec<u64>>,
    /// The states whose next item is `?`.
    any: Vec<u64>,
    /// The states whose next item is `*`.
    stars: Vec<u64>,
}

impl Automaton {
    fn new(items: &[GlobItem]) -> Self {
        let words = items.len() / 64 + 1;
        let mut automaton = Self {
            items: items.len(),
            literals: std::collections::HashMap::new(),
            any: vec![0; words],
            stars: vec![0; words],
        };
        for (i, item) in items.iter().enumerate() {
            let mask = match item {
                GlobItem::Star => &mut automaton.stars,
                GlobItem::Any => &mut automaton.any,
                GlobItem::Lit(c) => automaton
                    .literals
                    .entry(*c)
                    .or_insert_with(|| vec![0; words]),
            };
            mask[i / 64] |= 1 << (i % 64);
        }
        automaton
    }

    /// State 0 and what it reaches by skipping a `*`.
    fn initial(&self) -> Vec<u64> {
        let mut live = vec![0; self.any.len()];
        live[0] = 1;
        self.close(&mut live);
        live
    }

    fn accepts(&self, live: &[u64]) -> bool {
        live[self.items / 64] & (1 << (self.items % 64)) != 0
    }

    /// The states after reading `ch`: a literal or `?` moves one state on, a `*` stays
    /// (neither `?` nor `*` reads a newline, as `.` in Go), then skippable stars are skipped.
    fn step(&self, live: &[u64], ch: char) -> Vec<u64> {
        let literal = self.literals.get(&ch);
        let newline = ch == '\n';
        let mut next = vec![0; live.len()];
        let mut carry = 0;
        for (w, &bits) in live.iter().enumerate() {
            let mut moving = bits & literal.map_or(0, |m| m[w]);
            if !newline {
                moving |= bits & self.any[w];
                next[w] |= bits & self.stars[w];
            }
            next[w] |= (moving << 1) | carry;
            carry = moving >> 63;
        }
        self.close(&mut next);
        next
    }

    /// Adds the state after each live `*` (a star may match nothing). Runs of stars are one
    /// star, so one pass is enough.
    fn close(&self, live: &mut [u64]) {
        let mut carry = 0;
        for (w, bits) in live.iter_mut().enumerate() {
            let skipping = *bits & self.stars[w];
            *bits |= (skipping << 1) | carry;
            carry = skipping >> 63;
        }
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
    fn a_heredoc_marker_keeps_its_blanks_in_one_field() {
        let lex = Lexer::default();
        assert_eq!(
            lex.expand_words("cat << EOF <x a<<\tb", &NoVars).unwrap(),
            ["cat", "<< EOF", "<x", "a<<\tb"]
        );
        assert_eq!(lex.expand("a << b", &NoVars).unwrap(), "a << b");
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

    #[test]
    fn nesting_is_limited_and_the_error_says_where() {
        let nested = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
        assert_eq!(expand(&nested(MAX_NESTING), &NoVars).unwrap(), "x");
        let err = expand(&nested(MAX_NESTING + 1), &NoVars).unwrap_err();
        assert_eq!(
            err.kind,
            ExpandErrorKind::TooDeep {
                offset: 5 * MAX_NESTING
            }
        );
        // The message names the place and shows only the start of a long word.
        let err = expand(&nested(12_000), &NoVars).unwrap_err();
        let message = err.to_string();
        assert!(
            message.ends_with(&format!(
                "\"… (72001 bytes): substitutions nested more than {MAX_NESTING} deep (the '${{' at character 160)"
            )),
            "{message}"
        );
        assert!(message.len() < 200, "{message}");
        // The same limit inside double quotes and in a pattern.
        let quoted = format!("\"{}\"", nested(MAX_NESTING + 1));
        assert!(matches!(
            expand(&quoted, &NoVars).unwrap_err().kind,
            ExpandErrorKind::TooDeep { .. }
        ));
        let in_pattern = format!("${{A#{}}}", nested(MAX_NESTING));
        assert!(matches!(
            expand(&in_pattern, &NoVars).unwrap_err().kind,
            ExpandErrorKind::TooDeep { .. }
        ));
    }

    #[test]
    fn growth_is_limited() {
        // Doubling a value line after line, as `ENV A=$A$A` would, stops at the limit.
        let mut value = "x".repeat(1000);
        let mut lines = 0;
        let err = loop {
            let vars = env(&[("A", &value)]);
            match expand("$A$A", &vars) {
                Ok(v) => value = v,
                Err(e) => break e,
            }
            lines += 1;
        };
        assert_eq!(err.kind, ExpandErrorKind::TooLong);
        assert_eq!(lines, 10, "1000 bytes doubled 10 times is about 1 MiB");
        // A replacement that multiplies the value is stopped as well.
        let vars = env(&[("A", &"a".repeat(2048)), ("B", &"b".repeat(1024))]);
        assert_eq!(
            expand("${A//?/$B}", &vars).unwrap_err().kind,
            ExpandErrorKind::TooLong
        );
        assert_eq!(
            expand("${A//a/$B}x", &env(&[("A", "aa"), ("B", "b")])).unwrap(),
            "bbx"
        );
    }

    #[test]
    fn patterns_do_not_match_newlines_as_in_go() {
        let vars = env(&[("V", "a\nb\nc")]);
        assert_eq!(expand("${V#*b}", &vars).unwrap(), "a\nb\nc");
        assert_eq!(expand("${V%\n*}", &vars).unwrap(), "a\nb");
        assert_eq!(expand("${V%%\n*}", &vars).unwrap(), "a\nb");
        assert_eq!(expand("${V#?}", &vars).unwrap(), "\nb\nc");
        assert_eq!(expand("${V//?/x}", &vars).unwrap(), "x\nx\nx");
    }

    #[test]
    fn long_patterns_on_long_values_finish() {
        // Backtracking would take time (and a memo table memory) of value × pattern.
        let value = "a".repeat(100_000);
        let pattern = format!("{}b", "a*".repeat(2_000));
        let vars = env(&[("V", &value), ("P", &pattern)]);
        assert_eq!(expand("${V#$P}", &vars).unwrap(), value);
        assert_eq!(expand("${V%%$P}", &vars).unwrap(), value);
        assert_eq!(expand("${V/$P/x}", &vars).unwrap(), value);
    }

    /// The old backtracking matcher, small and obviously right, as an oracle: leftmost-first
    /// with every `*` trying its longest (greedy) or shortest extent first; `*` and `?` do not
    /// match a newline.
    fn oracle_end(items: &[GlobItem], text: &[char], pos: usize, greedy: bool) -> Option<usize> {
        match items.split_first() {
            None => Some(pos),
            Some((GlobItem::Lit(c), rest)) => (text.get(pos) == Some(c))
                .then(|| oracle_end(rest, text, pos + 1, greedy))
                .flatten(),
            Some((GlobItem::Any, rest)) => (pos < text.len() && text[pos] != '\n')
                .then(|| oracle_end(rest, text, pos + 1, greedy))
                .flatten(),
            Some((GlobItem::Star, rest)) => {
                let stop = text[pos..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(text.len(), |i| pos + i);
                let mut ends: Vec<usize> = (pos..=stop).collect();
                if greedy {
                    ends.reverse();
                }
                ends.into_iter()
                    .find_map(|end| oracle_end(rest, text, end, greedy))
            }
        }
    }

    fn oracle_expand(op: &str, pattern: &str, value: &str) -> Option<String> {
        let glob = Glob::parse(pattern).ok()?;
        let text: Vec<char> = value.chars().collect();
        let rtext: Vec<char> = text.iter().rev().copied().collect();
        let ritems: Vec<GlobItem> = glob.items.iter().rev().copied().collect();
        let prefix = |greedy| match oracle_end(&glob.items, &text, 0, greedy) {
            Some(e) => text[e..].iter().collect(),
            None => value.to_owned(),
        };
        let suffix = |greedy| match oracle_end(&ritems, &rtext, 0, greedy) {
            Some(e) => rtext[e..].iter().rev().collect(),
            None => value.to_owned(),
        };
        let replace = |all: bool| {
            let mut out = String::new();
            let (mut last_end, mut search) = (0, 0);
            while search <= text.len() {
                let found = (search..=text.len())
                    .find_map(|s| oracle_end(&glob.items, &text, s, true).map(|e| (s, e)));
                let Some((s, e)) = found else { break };
                out.extend(&text[last_end..s]);
                if e > last_end || s == 0 {
                    out.push('-');
                }
                last_end = e;
                if !all {
                    break;
                }
                search = if search + 1 > e { search + 1 } else { e };
            }
            out.extend(&text[last_end..]);
            out
        };
        Some(match op {
            "#" => prefix(false),
            "##" => prefix(true),
            "%" => suffix(false),
            "%%" => suffix(true),
            "/" => replace(false),
            _ => replace(true),
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 5000, ..proptest::prelude::ProptestConfig::default()
        })]

        /// The automaton picks the same matches as backtracking would (newlines included).
        #[test]
        fn patterns_agree_with_backtracking(
            pattern in "[ab*?é\n]{0,9}|[ab*?]{0,3}\\\\[*?][ab*]{0,3}",
            value in "[abé\n]{0,12}",
            op in proptest::sample::select(vec!["#", "##", "%", "%%", "/", "//"]),
        ) {
            let vars = env(&[("V", &value), ("P", &pattern)]);
            let word = match op {
                "/" | "//" => format!("${{V{op}$P/-}}"),
                _ => format!("${{V{op}$P}}"),
            };
            let got = expand(&word, &vars).ok();
            proptest::prop_assert_eq!(got, oracle_expand(op, &pattern, &value), "{}", word);
        }
    }
}
