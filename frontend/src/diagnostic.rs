//! Problems found in a Dockerfile, each with the place it was found.
//!
//! The frontend does not stop at the first problem: `strata check` wants every one, so each
//! stage of the pipeline (typed instructions, stage resolution, expansion, lowering) records
//! [`Diagnostic`]s and goes on where it safely can. Errors make the build impossible; warnings
//! are BuildKit's lint findings (a directive in the wrong place, legacy `ENV k v`, ...).

use crate::rule::Rule;
use std::fmt;
use strata_graph::SourceLoc;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The Dockerfile cannot be built.
    Error,
    /// BuildKit would build it but warns (lint rules).
    Warning,
}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where: 1-based line and column.
    pub loc: SourceLoc,
    /// What is wrong, lowercase, without the location (`unknown instruction: RUNN`).
    pub message: String,
    /// A suggestion, shown as `(did you mean RUN?)` after the message.
    pub suggestion: Option<String>,
    /// The build-check rule of a warning (or of an error that was a warning before
    /// `# check=error=true`).
    pub rule: Option<&'static Rule>,
}

impl Diagnostic {
    /// An error at `loc`.
    pub fn error(loc: SourceLoc, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            loc,
            message: message.into(),
            suggestion: None,
            rule: None,
        }
    }

    /// A finding of `rule` at `loc`.
    pub fn warning(loc: SourceLoc, rule: &'static Rule, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            loc,
            message: message.into(),
            suggestion: None,
            rule: Some(rule),
        }
    }

    /// Adds a "did you mean" suggestion.
    pub fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }

    /// The message with its suggestion, without the location.
    pub fn text(&self) -> String {
        match &self.suggestion {
            Some(s) => format!("{} (did you mean {s}?)", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dockerfile:{}: {}", self.loc, self.text())
    }
}

/// Every problem found, in source order, errors and warnings mixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Records an error at `loc`.
    pub fn error(&mut self, loc: SourceLoc, message: impl Into<String>) {
        self.push(Diagnostic::error(loc, message));
    }

    /// Whether any error (not just warnings) was found.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    /// All problems.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by position, keeping the order of problems found at the same place.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.loc.line, d.loc.column));
    }

    /// Drops repeats of the same problem at the same place (keeping the first).
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0
            .retain(|d| seen.insert((d.loc, d.severity, d.message.clone())));
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut errors = self.errors();
        match errors.next() {
            Some(first) => {
                write!(f, "{first}")?;
                let more = errors.count();
                if more > 0 {
                    write!(
                        f,
                        " (and {more} more error{})",
                        if more == 1 { "" } else { "s" }
                    )?;
                }
                Ok(())
            }
            None => f.write_str("no errors"),
        }
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// BuildKit's "did you mean": the closest option by Levenshtein distance when it is below 3,
/// in the case the user wrote (`runn` → `run`, `RUNN` → `RUN`).
pub(crate) fn suggest<'a>(
    value: &str,
    options: impl IntoIterator<Item = &'a str>,
    case_sensitive: bool,
) -> Option<String> {
    let val = if case_sensitive {
        value.to_owned()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut min = 3;
    let val_len = val.chars().count();
    for opt in options {
        let o = if case_sensitive {
            opt.to_owned()
        } else {
            opt.to_lowercase()
        };
        if o == val {
            return None;
        }
        // The lengths alone rule most options out (the distance is at least their
        // difference), which keeps a 60 KB word against thousands of stage names cheap.
        if val_len.abs_diff(o.chars().count()) >= min {
            continue;
        }
        let d = strsim::levenshtein(&val, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if value == value.to_lowercase() {
                o.to_lowercase()
            } else if value == value.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_and_suggestion() {
        let d = Diagnostic::error(SourceLoc::new(12, 5), "unknown instruction: RUNN")
            .with_suggestion(Some("RUN".into()));
        assert_eq!(
            d.to_string(),
            "Dockerfile:12:5: unknown instruction: RUNN (did you mean RUN?)"
        );
    }

    #[test]
    fn suggestions_keep_the_users_case() {
        let names = ["RUN", "COPY", "ENTRYPOINT"];
        assert_eq!(suggest("RUNN", names, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", names, false).as_deref(), Some("run"));
        assert_eq!(suggest("Cpy", names, false).as_deref(), Some("copy"));
        assert_eq!(
            suggest("ENTRYPIONT", names, false).as_deref(),
            Some("ENTRYPOINT")
        );
        assert_eq!(suggest("FOOBAR", names, false), None);
        assert_eq!(suggest("run", names, false), None);
    }
}
