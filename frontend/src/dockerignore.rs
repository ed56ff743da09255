//! `.dockerignore`: which context paths a build may read.
//!
//! A user who moves from `docker build` expects the same files to be excluded, so this follows
//! Docker's implementation (moby/patternmatcher and BuildKit's context sender) rather than
//! gitignore: a pattern is cleaned like Go's `filepath.Clean` and loses one leading `/`; it is
//! checked with Go's `filepath.Match` syntax and then matched as a regular expression where `*`
//! and `?` stop at `/`, `**` crosses directories and `[...]`/`\` keep their regex meaning;
//! patterns apply in order and the last one that matches decides (`!` re-includes); a pattern
//! that matches a parent directory matches everything below it. A directory that is excluded
//! may still have to be walked, because an exception could re-include something inside it;
//! [`PatternMatcher::dir_visit`] says when it can be skipped, with the same rule as BuildKit.
//! The matching itself is [`strata_graph::pattern`], shared with `COPY --exclude`; this module
//! reads the file.
//!
//! Which file applies ([`pick_ignore_file`]) is a pure decision over what exists: the
//! Dockerfile-specific `<name>.dockerignore` beside the Dockerfile wins over `.dockerignore` at
//! the context root.

use strata_graph::pattern::{PatternError, PatternMatcher, clean};

/// A `.dockerignore` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line is `!` alone.
    #[error(".dockerignore line {line}: illegal exclusion pattern: \"!\"")]
    LoneBang {
        /// 1-based line number.
        line: usize,
    },
    /// A pattern whose regular expression would be larger than the matcher allows (thousands
    /// of wildcards).
    #[error(".dockerignore line {line}: pattern of {len} bytes is too complex")]
    TooComplex {
        /// 1-based line number.
        line: usize,
        /// The pattern's length.
        len: usize,
    },
    /// A pattern is not valid `filepath.Match` syntax (an unclosed `[`, a trailing `\`).
    #[error(".dockerignore line {line}: syntax error in pattern {pattern:?}")]
    BadPattern {
        /// 1-based line number.
        line: usize,
        /// The pattern after cleaning.
        pattern: String,
    },
}

/// Which ignore file a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreFileSource {
    /// `<Dockerfile name>.dockerignore`, in the Dockerfile's directory.
    BesideDockerfile,
    /// `.dockerignore` at the root of the context.
    ContextRoot,
}

/// The file name of the Dockerfile-specific ignore file for a Dockerfile named `dockerfile`
/// (its last path component is used: `build/Dockerfile` → `Dockerfile.dockerignore`).
pub fn dockerfile_ignore_name(dockerfile: &str) -> String {
    let base = dockerfile.rsplit('/').next().unwrap_or(dockerfile);
    format!("{base}.dockerignore")
}

/// Picks the ignore file from the candidates that exist: the one beside the Dockerfile wins
/// (even when empty), else the context root's; `None` when neither exists. No I/O: the caller
/// reads `<dir of Dockerfile>/<dockerfile_ignore_name>` and `<context>/.dockerignore`.
pub fn pick_ignore_file<'a>(
    beside_dockerfile: Option<&'a [u8]>,
    context_root: Option<&'a [u8]>,
) -> Option<(IgnoreFileSource, &'a [u8])> {
    match (beside_dockerfile, context_root) {
        (Some(bytes), _) => Some((IgnoreFileSource::BesideDockerfile, bytes)),
        (None, Some(bytes)) => Some((IgnoreFileSource::ContextRoot, bytes)),
        (None, None) => None,
    }
}

/// A parsed `.dockerignore`: a [`PatternMatcher`] (which it derefs to) built from the file's
/// lines, numbered by line in errors.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher(PatternMatcher);

impl IgnoreMatcher {
    /// Parses the bytes of a `.dockerignore` (BOM, comments, blank lines, `!`, cleaning).
    pub fn parse(bytes: &[u8]) -> Result<Self, IgnoreError> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if exception {
                cleaned.insert(0, '!');
            }
            lines.push((i + 1, cleaned));
        }
        let matcher = PatternMatcher::numbered(lines).map_err(|e| match e {
            PatternError::LoneBang { number } => IgnoreError::LoneBang { line: number },
            PatternError::Bad { number, source } => IgnoreError::BadPattern {
                line: number,
                pattern: source.pattern,
            },
            PatternError::TooComplex { number, len } => {
                IgnoreError::TooComplex { line: number, len }
            }
        })?;
        Ok(Self(matcher))
    }

    /// Whether it has no pattern: nothing is ignored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The matcher, for a caller that keeps it.
    pub fn into_matcher(self) -> PatternMatcher {
        self.0
    }
}

impl std::ops::Deref for IgnoreMatcher {
    type Target = PatternMatcher;

    fn deref(&self) -> &PatternMatcher {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::pattern::DirVisit;

    fn m(text: &str) -> IgnoreMatcher {
        IgnoreMatcher::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn cleaning_and_reading() {
        let got: Vec<String> = m(
            "\u{feff}# comment\n  *.log  \r\n\n!keep.log\n/abs/../x/\n ! spaced \n#x\n ./a//b/ \n",
        )
        .patterns()
        .collect();
        assert_eq!(got, ["*.log", "!keep.log", "x", "!spaced", "a/b"]);
        assert_eq!(m("/").patterns().collect::<Vec<_>>(), ["/"]);
        // A comment is only a comment at the very start of the line.
        assert_eq!(
            m("  #not-a-comment").patterns().collect::<Vec<_>>(),
            ["#not-a-comment"]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            IgnoreMatcher::parse(b"a\n!\n").unwrap_err(),
            IgnoreError::LoneBang { line: 2 }
        );
        assert_eq!(
            IgnoreMatcher::parse(b"a\n  !  \n").unwrap_err(),
            IgnoreError::LoneBang { line: 2 }
        );
        // Line numbers count comments and blank lines; the pattern is shown cleaned.
        assert_eq!(
            IgnoreMatcher::parse(b"# c\n\nok\n!./a[\n").unwrap_err(),
            IgnoreError::BadPattern {
                line: 4,
                pattern: "a[".into()
            }
        );
        assert_eq!(
            IgnoreMatcher::parse(b"/x[").unwrap_err().to_string(),
            ".dockerignore line 1: syntax error in pattern \"x[\""
        );
    }

    /// The conformance case `dockerignore-patterns`: what BuildKit sent for `COPY . /ctx/`.
    #[test]
    fn conformance_dockerignore_patterns() {
        let matcher = m(
            "# comment line\n*.log\n!keep.log\n**/tmp\nbuild\ndocs/**/*.md\n!docs/a.md\nsecret/\nnode_modules\nREADME*\n!README.md\n",
        );
        let files = [
            (".dockerignore", true),
            ("README.md", true),
            ("README.txt", false),
            ("app.py", true),
            ("build/out.bin", false),
            ("debug.log", false),
            ("docs/a.md", true),
            ("docs/sub/b.md", false),
            ("docs/sub/c.txt", true),
            ("docs/sub/deeper/d.md", false),
            ("keep.log", true),
            ("node_modules/pkg/index.js", false),
            ("secret/key", false),
            ("src/deep/tmp/y.o", false),
            ("src/main.c", true),
            ("src/tmp/x.o", false),
            ("sub/nested.log", true),
            ("tmp/z", false),
        ];
        for (path, sent) in files {
            assert_eq!(!matcher.is_excluded(path), sent, "{path}");
        }
        // Directories that stay (possibly emptied) and those skipped whole.
        for dir in [
            "docs",
            "docs/sub",
            "docs/sub/deeper",
            "src",
            "src/deep",
            "sub",
        ] {
            assert!(!matcher.is_excluded(dir), "{dir}");
        }
        for dir in [
            "build",
            "node_modules",
            "secret",
            "tmp",
            "src/tmp",
            "src/deep/tmp",
        ] {
            assert!(matcher.is_excluded(dir), "{dir}");
            assert_eq!(matcher.dir_visit(dir, true), DirVisit::Skip, "{dir}");
        }
    }

    #[test]
    fn the_dockerfile_specific_file_wins() {
        assert_eq!(
            dockerfile_ignore_name("build/Dockerfile.dev"),
            "Dockerfile.dev.dockerignore"
        );
        let beside: &[u8] = b"";
        let root: &[u8] = b"*";
        assert_eq!(
            pick_ignore_file(Some(beside), Some(root)),
            Some((IgnoreFileSource::BesideDockerfile, beside))
        );
        assert_eq!(
            pick_ignore_file(None, Some(root)),
            Some((IgnoreFileSource::ContextRoot, root))
        );
        assert_eq!(pick_ignore_file(None, None), None);
    }
}
