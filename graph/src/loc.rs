//! Where in the Dockerfile something came from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in a Dockerfile: 1-based line and 1-based column (in characters).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SourceLoc {
    /// 1-based physical line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl SourceLoc {
    /// A location at `line`, `column`.
    pub fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The physical lines an instruction spans, continuation lines and heredoc bodies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SourceRange {
    /// Where the instruction starts.
    pub start: SourceLoc,
    /// Its last character.
    pub end: SourceLoc,
}

impl SourceRange {
    /// A range from `start` to `end`.
    pub fn new(start: SourceLoc, end: SourceLoc) -> Self {
        Self { start, end }
    }
}
