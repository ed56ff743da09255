//! Why a Dockerfile could not be parsed, and where.

use strata_graph::SourceLoc;

/// A Dockerfile that BuildKit's parser would reject, with the location to show the user.
///
/// The message does not name the file; the caller knows it and prints
/// `Dockerfile:LINE:COLUMN: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// Where the problem is (the instruction's first line for problems with an instruction).
    pub loc: SourceLoc,
    /// What the problem is.
    pub kind: ParseErrorKind,
}

/// The ways a Dockerfile fails to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// No instruction at all: empty, or only comments and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// A physical line of 65536 bytes or more (BuildKit's scanner limit).
    #[error("dockerfile line greater than max allowed size of 65535")]
    LineTooLong,
    /// The same parser directive twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The directive, lower-cased.
        name: String,
    },
    /// `# escape=` with something other than `` ` `` or `\`.
    #[error("invalid escape token '{token}' does not match ` or \\")]
    InvalidEscapeToken {
        /// The value given.
        token: String,
    },
    /// A JSON array holding something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStringArray,
    /// `ENV KEY` or `LABEL KEY`: the legacy form without a value.
    #[error("{keyword} must have two arguments")]
    MissingValue {
        /// `ENV` or `LABEL`.
        keyword: &'static str,
    },
    /// `ENV a=b c`: a word without `=` after a `key=value` word.
    #[error("can't find = in {word:?}: {keyword} must be of the form name=value")]
    MissingEquals {
        /// `ENV` or `LABEL`.
        keyword: &'static str,
        /// The word without `=`.
        word: String,
    },
    /// A heredoc whose terminator line never came.
    #[error("unterminated heredoc {name}")]
    UnterminatedHeredoc {
        /// The terminator that was looked for.
        name: String,
    },
    /// `ONBUILD ONBUILD …` more than `limit` deep (BuildKit allows only one level anyway).
    #[error("ONBUILD nested more than {limit} deep")]
    OnbuildTooDeep {
        /// The most ONBUILDs one instruction may have in front of it.
        limit: usize,
    },
    /// A heredoc marker that BuildKit's shell lexer rejects.
    #[error("invalid heredoc marker {word:?}: {reason}")]
    HeredocMarker {
        /// The marker word.
        word: String,
        /// What the lexer said.
        reason: String,
    },
}

impl ParseError {
    pub(crate) fn new(loc: SourceLoc, kind: ParseErrorKind) -> Self {
        ParseError { loc, kind }
    }
}
