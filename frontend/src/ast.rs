//! The raw Dockerfile syntax tree: what BuildKit's parser produces before any instruction
//! checks or variable expansion.
//!
//! Unknown keywords, wrong argument counts and unknown flags all still parse here; the typed
//! layer rejects them later with a location. Every value that came from the file is a [`Text`],
//! raw bytes, because a Dockerfile may hold invalid UTF-8 and BuildKit passes those bytes on
//! (a `RUN` with a Latin-1 byte runs with that byte). [`Text::to_str`] and
//! [`Text::to_string_lossy`] give the typed layer its strings.

use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};
use strata_graph::{SourceLoc, SourceRange};

/// A parsed Dockerfile: its parser directives and its instructions, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The parser directives from the top of the file (`syntax`, `escape`, `check`).
    pub directives: Vec<Directive>,
    /// The escape character: `b'\\'`, or `` b'`' `` when `# escape=`` ` `` says so.
    #[serde(serialize_with = "serialize_escape")]
    pub escape: u8,
    /// The instructions, in source order.
    pub instructions: Vec<Instruction>,
    /// From the first instruction's first line to the last instruction's last line.
    pub range: SourceRange,
    /// Things BuildKit accepts but warns about.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The directive `name` (lower case: `syntax`, `escape` or `check`), if the file has it.
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }
}

fn serialize_escape<S: Serializer>(escape: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_char(char::from(*escape))
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The name, lower-cased: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed.
    pub value: Text,
    /// Where the directive's line starts.
    pub loc: SourceLoc,
}

/// A comment line, without its `#` and surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// The text after the `#`.
    pub text: Text,
    /// Where the line starts.
    pub loc: SourceLoc,
}

/// Something BuildKit's parser accepts but reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What was found.
    pub kind: WarningKind,
    /// Where.
    pub loc: SourceLoc,
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A blank line inside a continued instruction (BuildKit's `NoEmptyContinuation`).
    EmptyContinuationLine,
}

/// One instruction: a logical line (continuations joined) plus its heredoc bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The keyword as written (`Run`, `COPY`, `FOOBAR`).
    pub keyword: Text,
    /// What the keyword names, whatever its case.
    pub kind: Keyword,
    /// Where the keyword starts.
    pub keyword_loc: SourceLoc,
    /// The leading `--name[=value]` words, quotes and escapes already removed.
    pub flags: Vec<Flag>,
    /// The arguments, split by the rule for this keyword.
    pub args: Args,
    /// Heredoc bodies, in marker order (also those of an instruction wrapped in `ONBUILD`).
    pub heredocs: Vec<Heredoc>,
    /// The whole logical line, continuations joined (BuildKit's `Node.Original`).
    pub original: Text,
    /// The argument text after the keyword and its flags, trimmed: what the argument rule read.
    pub rest: Text,
    /// The comment lines directly above the instruction (BuildKit's `PrevComment`).
    pub comments: Vec<Comment>,
    /// From the first physical line (column of its first character) to the last one,
    /// continuation lines, skipped comment and blank lines, and heredoc bodies included.
    pub range: SourceRange,
}

impl Instruction {
    /// Where the instruction starts (its first physical line).
    pub fn loc(&self) -> SourceLoc {
        self.range.start
    }

    /// True when the arguments were written as a JSON array (exec form).
    pub fn is_json(&self) -> bool {
        match &self.args {
            Args::Json(_) => true,
            Args::Healthcheck { command, .. } => matches!(**command, Args::Json(_)),
            _ => false,
        }
    }

    /// The flag values for `--name` (several for repeatable flags such as `--mount`);
    /// `None` inside for a flag without `=`.
    pub fn flag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Option<&'a str>> {
        self.flags
            .iter()
            .filter(move |f| f.name() == name)
            .map(Flag::value)
    }
}

/// The instruction keywords BuildKit's parser knows, plus [`Keyword::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Keyword {
    /// `ADD`
    Add,
    /// `ARG`
    Arg,
    /// `CMD`
    Cmd,
    /// `COPY`
    Copy,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `ENV`
    Env,
    /// `EXPOSE`
    Expose,
    /// `FROM`
    From,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `LABEL`
    Label,
    /// `MAINTAINER`
    Maintainer,
    /// `ONBUILD`
    Onbuild,
    /// `RUN`
    Run,
    /// `SHELL`
    Shell,
    /// `STOPSIGNAL`
    Stopsignal,
    /// `USER`
    User,
    /// `VOLUME`
    Volume,
    /// `WORKDIR`
    Workdir,
    /// Anything else: BuildKit's parser keeps it and drops its arguments.
    Unknown,
}

impl Keyword {
    /// All known keywords, in alphabetical order.
    pub const ALL: [Keyword; 18] = [
        Keyword::Add,
        Keyword::Arg,
        Keyword::Cmd,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Env,
        Keyword::Expose,
        Keyword::From,
        Keyword::Healthcheck,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Onbuild,
        Keyword::Run,
        Keyword::Shell,
        Keyword::Stopsignal,
        Keyword::User,
        Keyword::Volume,
        Keyword::Workdir,
    ];

    /// The keyword for an already lower-cased word.
    pub fn from_lowercase(word: &[u8]) -> Keyword {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_lowercase().as_bytes() == word)
            .unwrap_or(Keyword::Unknown)
    }

    /// The keyword in lower case (`"unknown"` for [`Keyword::Unknown`]).
    pub fn as_lowercase(self) -> &'static str {
        match self {
            Keyword::Add => "add",
            Keyword::Arg => "arg",
            Keyword::Cmd => "cmd",
            Keyword::Copy => "copy",
            Keyword::Entrypoint => "entrypoint",
            Keyword::Env => "env",
            Keyword::Expose => "expose",
            Keyword::From => "from",
            Keyword::Healthcheck => "healthcheck",
            Keyword::Label => "label",
            Keyword::Maintainer => "maintainer",
            Keyword::Onbuild => "onbuild",
            Keyword::Run => "run",
            Keyword::Shell => "shell",
            Keyword::Stopsignal => "stopsignal",
            Keyword::User => "user",
            Keyword::Volume => "volume",
            Keyword::Workdir => "workdir",
            Keyword::Unknown => "unknown",
        }
    }

    /// The keyword as Dockerfiles usually write it (`"RUN"`).
    pub fn as_uppercase(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
            Keyword::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_uppercase())
    }
}

/// A `--name[=value]` flag word, after BuildKit's quote and escape removal
/// (`--label="a b"` is `--label=a b`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The whole word, `--` included.
    pub text: Text,
    /// Where the word starts.
    pub loc: SourceLoc,
}

impl Flag {
    /// The name: the text between `--` and the first `=` (`mount` for `--mount=type=cache`).
    /// Empty when the flag is not valid UTF-8.
    pub fn name(&self) -> &str {
        let word = self.text.to_str().unwrap_or("");
        let word = word.strip_prefix("--").unwrap_or(word);
        word.split_once('=').map_or(word, |(name, _)| name)
    }

    /// The value after the first `=`, or `None` for a bare `--flag`.
    pub fn value(&self) -> Option<&str> {
        let word = self.text.to_str()?;
        word.split_once('=').map(|(_, value)| value)
    }
}

/// One argument and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// The argument, as the parser left it (JSON escapes decoded, shell quotes kept).
    pub text: Text,
    /// Where it starts in the source (for a JSON element: its opening quote).
    pub loc: SourceLoc,
}

/// An instruction's arguments, split by the rule for its keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "snake_case")]
pub enum Args {
    /// No argument text at all (`RUN`, `ENV`, `HEALTHCHECK`).
    None,
    /// A JSON array of strings: exec form for RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK,
    /// the JSON form of ADD, COPY and VOLUME. `CMD []` is an empty `Json`.
    Json(Vec<Arg>),
    /// Whitespace-separated words, quotes kept: FROM, EXPOSE, ARG, and ADD, COPY and VOLUME
    /// when not JSON.
    Words(Vec<Arg>),
    /// The whole argument text as one string: shell form of RUN, CMD, ENTRYPOINT and SHELL;
    /// MAINTAINER, USER, WORKDIR, STOPSIGNAL.
    Text(Arg),
    /// ENV and LABEL: `key=value` pairs, or one legacy `KEY value` pair.
    Pairs(Vec<KeyValue>),
    /// HEALTHCHECK: the first word (`CMD`, `NONE`, anything) and the command after it,
    /// which is [`Args::None`], [`Args::Json`] or [`Args::Text`].
    Healthcheck {
        /// `CMD`, `NONE` or whatever was written.
        kind: Arg,
        /// The command.
        command: Box<Args>,
    },
    /// ONBUILD: the wrapped instruction.
    Onbuild(Box<Instruction>),
    /// An unknown keyword: BuildKit drops its arguments (the dump shows `""`).
    Ignored,
}

impl Args {
    /// The arguments as BuildKit's node chain holds them: one value per dumped string
    /// (ENV and LABEL give key, value, `=` or `""` triples; HEALTHCHECK its kind then the
    /// command; ONBUILD and ignored arguments nothing).
    pub fn values(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        self.collect_values(&mut out);
        out
    }

    fn collect_values<'a>(&'a self, out: &mut Vec<&'a [u8]>) {
        match self {
            Args::None | Args::Onbuild(_) => {}
            Args::Ignored => out.push(b""),
            Args::Json(items) | Args::Words(items) => {
                out.extend(items.iter().map(|a| a.text.as_bytes()));
            }
            Args::Text(arg) => out.push(arg.text.as_bytes()),
            Args::Pairs(pairs) => {
                for pair in pairs {
                    out.push(pair.key.text.as_bytes());
                    out.push(pair.value.text.as_bytes());
                    out.push(if pair.legacy { b"" } else { b"=" });
                }
            }
            Args::Healthcheck { kind, command } => {
                out.push(kind.text.as_bytes());
                command.collect_values(out);
            }
        }
    }
}

/// One ENV or LABEL pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, quotes kept (`"com.example.vendor"` keeps its quotes).
    pub key: Arg,
    /// The value, quotes and escapes kept as written; expansion removes them later.
    pub value: Arg,
    /// True for the legacy `ENV KEY value` form, whose value is the raw rest of the line.
    pub legacy: bool,
}

/// A heredoc body attached to RUN, COPY or ADD (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed (`EOF` for `<<'EOF'`).
    pub name: Text,
    /// The file descriptor before `<<` (`3` in `3<<EOF`), 0 when none.
    pub fd: u64,
    /// False when any part of the word was quoted: the body is then not expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs are removed from the body later (they are kept here).
    pub chomp: bool,
    /// The body lines exactly as read, line endings included, terminator excluded.
    pub content: Text,
    /// The body's lines, terminator included.
    pub range: SourceRange,
}

/// Bytes from the Dockerfile: usually UTF-8, but not always.
///
/// Cheap to clone: the parser stores each logical line once and most texts are views into it
/// (an instruction's arguments cost no allocation of their own).
#[derive(Clone)]
pub struct Text {
    buf: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl Text {
    /// The bytes `buf[start..end]`, sharing `buf`. Out-of-range bounds give an empty text.
    pub(crate) fn shared(buf: &Arc<[u8]>, start: usize, end: usize) -> Text {
        if start > end || end > buf.len() {
            return Text::default();
        }
        Text {
            buf: Arc::clone(buf),
            start,
            end,
        }
    }

    fn owned(bytes: Arc<[u8]>) -> Text {
        let end = bytes.len();
        Text {
            buf: bytes,
            start: 0,
            end,
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The text, if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    /// The text, each invalid byte sequence replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        // Nearly all Dockerfile text is valid UTF-8, and `from_utf8` checks that much faster
        // than the lossy decoder walks it.
        match std::str::from_utf8(self.as_bytes()) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(self.as_bytes()),
        }
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Default for Text {
    fn default() -> Self {
        static EMPTY: LazyLock<Arc<[u8]>> = LazyLock::new(|| Arc::from(&[][..]));
        Text::owned(Arc::clone(&EMPTY))
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl From<&[u8]> for Text {
    fn from(bytes: &[u8]) -> Self {
        Text::owned(Arc::from(bytes))
    }
}

impl From<Vec<u8>> for Text {
    fn from(bytes: Vec<u8>) -> Self {
        Text::owned(Arc::from(bytes))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::from(s.as_bytes())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::from(s.into_bytes())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "b{:?}", self.as_bytes().escape_ascii().to_string()),
        }
    }
}

/// JSON has no byte strings: valid UTF-8 is written as is, anything else lossily
/// (each invalid sequence becomes U+FFFD).
impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_lossy())
    }
}
