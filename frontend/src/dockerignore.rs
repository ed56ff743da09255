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
//! [`IgnoreMatcher::dir_visit`] says when it can be skipped, with the same rule as BuildKit.
//!
//! Which file applies ([`pick_ignore_file`]) is a pure decision over what exists: the
//! Dockerfile-specific `<name>.dockerignore` beside the Dockerfile wins over `.dockerignore` at
//! the context root.

use regex::Regex;

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

/// What a context walker should do with a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirVisit {
    /// Not excluded: send it and walk it.
    Include,
    /// Excluded, but an exception may re-include something below: walk it, and send it only
    /// as the parent of something that is included.
    WalkExcluded,
    /// Excluded and nothing below can come back: do not open it.
    Skip,
}

/// Per-pattern results for a directory, handed to its children (BuildKit's `MatchInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches(Vec<bool>);

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
    /// No exception has a wildcard (after a trailing `/**` or `/*`), so a prefix test tells
    /// whether one can match below a directory.
    prefix_only_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without `!`.
    text: String,
    exception: bool,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `foo/**`: everything below `foo/`.
    Prefix(String),
    /// `**/foo`: any path ending in `/foo`, or `foo`.
    Suffix(String),
    Regex(Regex),
}

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
                cleaned = go_clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if exception {
                cleaned.insert(0, '!');
            }
            lines.push((i + 1, cleaned));
        }
        Self::from_numbered(lines)
    }

    /// Builds a matcher from patterns as a `.dockerignore` holds them after reading
    /// (`!` marks an exception); also used for `COPY --exclude`.
    pub fn from_patterns<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, IgnoreError> {
        Self::from_numbered(
            patterns
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p.to_owned())),
        )
    }

    fn from_numbered(
        lines: impl IntoIterator<Item = (usize, String)>,
    ) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (line, p) in lines {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = go_clean(p);
            let exception = p.starts_with('!');
            if exception {
                if p.len() == 1 {
                    return Err(IgnoreError::LoneBang { line });
                }
                p.remove(0);
            }
            if !go_match_syntax_ok(&p) {
                return Err(IgnoreError::BadPattern { line, pattern: p });
            }
            let kind = compile(&p).map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => IgnoreError::TooComplex { line, len: p.len() },
                _ => IgnoreError::BadPattern {
                    line,
                    pattern: p.clone(),
                },
            })?;
            patterns.push(Pattern {
                text: p,
                exception,
                kind,
            });
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        let prefix_only_exceptions = patterns
            .iter()
            .filter(|p| p.exception)
            .all(|p| !without_trailing_glob(&p.text).contains(['*', '[', ']', '?', '^', '\\']));
        Ok(Self {
            patterns,
            has_exceptions,
            prefix_only_exceptions,
        })
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns in order, `!` included, as they take part in matching (for cache keys).
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exception {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern that matches it or one of its parents decides. The context root is never
    /// excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = normalise(rel_path);
        if path == "." || self.patterns.is_empty() {
            return false;
        }
        let parents = parent_prefixes(&path);
        let mut excluded = false;
        for p in &self.patterns {
            if p.exception != excluded {
                continue;
            }
            let hit = p.matches(&path) || parents.iter().any(|dir| p.matches(dir));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Like [`IgnoreMatcher::is_excluded`], reusing the results of the parent directory as a
    /// walker descends (BuildKit's `MatchesUsingParentResults`). Pass `None` for entries at
    /// the root; keep the returned [`ParentMatches`] for the entries of a directory.
    pub fn check(&self, rel_path: &str, parent: Option<&ParentMatches>) -> (bool, ParentMatches) {
        let path = normalise(rel_path);
        let parent = parent.filter(|p| p.0.len() == self.patterns.len());
        let mut results = vec![false; self.patterns.len()];
        let mut excluded = false;
        let mut parents: Option<Vec<String>> = None;
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|m| m.0[i]);
            if !hit {
                if p.exception != excluded {
                    continue;
                }
                hit = p.matches(&path);
                if !hit && parent.is_none() {
                    let dirs = parents.get_or_insert_with(|| parent_prefixes(&path));
                    hit = dirs.iter().any(|d| p.matches(d));
                }
            }
            results[i] = hit;
            if hit {
                excluded = !p.exception;
            }
        }
        (excluded, ParentMatches(results))
    }

    /// What a walker should do with the directory `rel_dir`, given whether it is excluded.
    pub fn dir_visit(&self, rel_dir: &str, excluded: bool) -> DirVisit {
        if !excluded {
            return DirVisit::Include;
        }
        if !self.has_exceptions {
            return DirVisit::Skip;
        }
        if !self.prefix_only_exceptions {
            return DirVisit::WalkExcluded;
        }
        let dir_slash = format!("{}/", normalise(rel_dir));
        let below = self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash));
        if below {
            DirVisit::WalkExcluded
        } else {
            DirVisit::Skip
        }
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }
}

fn normalise(rel_path: &str) -> String {
    let cleaned = go_clean(rel_path);
    match cleaned.strip_prefix('/') {
        Some("") => ".".to_owned(),
        Some(rest) => rest.to_owned(),
        None => cleaned,
    }
}

/// `a/b/c` → `["a", "a/b"]`.
fn parent_prefixes(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i;
        out.push(path[..end].to_owned());
        end += 1;
    }
    out
}

/// A pattern without a trailing `/**`, then without a trailing `/*`.
fn without_trailing_glob(p: &str) -> &str {
    let p = p.strip_suffix("/**").unwrap_or(p);
    p.strip_suffix("/*").unwrap_or(p)
}

/// patternmatcher's translation of a pattern into exact, prefix, suffix or regex matching.
fn compile(pattern: &str) -> Result<MatchKind, regex::Error> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
                // `**/**/` means what one `**/` means: write it once, so that a pattern of
                // thousands of them stays a small expression (the kind is what the next
                // `**/` would have made it).
                while chars.len() > i + 3 && chars[i..i + 3] == ['*', '*', '/'] {
                    i += 3;
                    kind = Kind::Regex;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    // Go's regexp takes `\<punct>` as the literal; Rust's rejects some, so
                    // write punctuation escaped its own way and keep `\d`-style classes.
                    if next.is_alphanumeric() {
                        re.push('\\');
                        re.push(next);
                    } else {
                        re.push_str(&regex::escape(&next.to_string()));
                    }
                    kind = Kind::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                kind = Kind::Regex;
            }
            _ => re.push(ch),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => MatchKind::Exact,
        Kind::Prefix => MatchKind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Kind::Suffix => MatchKind::Suffix(pattern[2..].to_owned()),
        Kind::Regex => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re)?)
        }
    })
}

/// Go's `path.Clean` on a `/`-separated path.
pub(crate) fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Whether `pattern` is valid `filepath.Match` syntax (Go checks every chunk, even after a
/// mismatch): character classes must be closed and non-empty, ranges complete, and a `\` must
/// escape something.
fn go_match_syntax_ok(pattern: &str) -> bool {
    let b: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '\\' => {
                if i + 1 >= b.len() {
                    return false;
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if b.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut nrange = 0;
                loop {
                    if b.get(i) == Some(&']') && nrange > 0 {
                        i += 1;
                        break;
                    }
                    // lo
                    let Some(next) = class_char(&b, i) else {
                        return false;
                    };
                    i = next;
                    if b.get(i) == Some(&'-') {
                        let Some(next) = class_char(&b, i + 1) else {
                            return false;
                        };
                        i = next;
                    }
                    nrange += 1;
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// One character of a class (Go's `getEsc`): not `-` or `]`, `\` escapes, and something must
/// follow. Returns the index after it.
fn class_char(b: &[char], mut i: usize) -> Option<usize> {
    match b.get(i) {
        None | Some('-' | ']') => return None,
        Some('\\') => {
            i += 1;
            b.get(i)?;
        }
        Some(_) => {}
    }
    i += 1;
    (i < b.len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["[", "a[", "[]", "[a-]", "x\\", "[^]", "[a"] {
            assert!(
                matches!(
                    IgnoreMatcher::parse(bad.as_bytes()),
                    Err(IgnoreError::BadPattern { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
        for good in ["[a]", "[^a]", "[a-z]", "\\*", "[\\]]", "a]"] {
            assert!(
                IgnoreMatcher::parse(good.as_bytes()).is_ok(),
                "{good:?} should be accepted"
            );
        }
    }

    /// patternmatcher's own table (TestMatches) plus dockerignore usage: (pattern, path, excluded).
    #[test]
    fn pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("**/**/file", "file", true),
            ("**/**/file", "a/b/file", true),
            ("**/**/file", "a/b/xfile", false),
            ("a/**/**/**/b", "a/b", true),
            ("a/**/**/**/b", "a/x/y/b", true),
            ("a/**/**/**/b", "ab", false),
            ("**/**/**", "a/b", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            // Parent directories: a match on a parent excludes everything below.
            ("docs", "docs/a/b.md", true),
            ("*.log", "sub/nested.log", false),
            ("*.log", "x.log/inner", true),
            ("secret/", "secret/key", true),
            // `[!x]` is not negation here (regex semantics): it means `!` or `x`.
            ("a[!b]c", "abc", true),
            ("a[!b]c", "a!c", true),
            ("a[!b]c", "axc", false),
            // A leading `**` without a slash is a plain suffix test.
            ("**.txt", "dir/name.txt", true),
        ];
        let mut misses = Vec::new();
        for (pattern, path, want) in cases {
            let matcher = IgnoreMatcher::from_patterns([*pattern]).unwrap();
            if matcher.is_excluded(path) != *want {
                misses.push(format!("{pattern:?} on {path:?}: want {want}"));
            }
        }
        assert!(misses.is_empty(), "{}", misses.join("\n"));
    }

    #[test]
    fn last_match_wins() {
        let matcher = m("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(matcher.is_excluded("a.md"));
        assert!(!matcher.is_excluded("README.md"));
        assert!(matcher.is_excluded("README-secret.md"));
        let matcher = m("docs\n!docs/keep.md\n");
        assert!(matcher.is_excluded("docs/x.md"));
        assert!(!matcher.is_excluded("docs/keep.md"));
        assert!(matcher.is_excluded("docs"));
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
    fn walking_with_parent_results_agrees() {
        let matcher = m("a\n!a/b/c\n**/x\n!**/x/keep\n");
        let tree = [
            "a",
            "a/b",
            "a/b/c",
            "a/b/d",
            "q",
            "q/x",
            "q/x/keep",
            "q/x/other",
            "r",
        ];
        let mut infos: std::collections::BTreeMap<String, ParentMatches> = Default::default();
        for path in tree {
            let parent = path.rsplit_once('/').map(|(p, _)| p.to_owned());
            let info = parent.as_ref().and_then(|p| infos.get(p));
            let (excluded, mine) = matcher.check(path, info);
            assert_eq!(excluded, matcher.is_excluded(path), "{path}");
            infos.insert(path.to_owned(), mine);
        }
    }

    #[test]
    fn dir_skipping_follows_exceptions() {
        let matcher = m("docs\n!docs/api/index.md\n");
        assert_eq!(matcher.dir_visit("docs", true), DirVisit::WalkExcluded);
        assert_eq!(matcher.dir_visit("docs/api", true), DirVisit::WalkExcluded);
        assert_eq!(matcher.dir_visit("docs/other", true), DirVisit::Skip);
        assert_eq!(matcher.dir_visit("src", false), DirVisit::Include);
        // An exception with a wildcard could match anywhere: nothing can be skipped.
        let matcher = m("vendor\n!**/*.go\n");
        assert_eq!(matcher.dir_visit("vendor", true), DirVisit::WalkExcluded);
        // A trailing /** does not count as a wildcard.
        let matcher = m("a\n!a/b/**\n");
        assert_eq!(matcher.dir_visit("a/c", true), DirVisit::Skip);
        assert_eq!(matcher.dir_visit("a/b", true), DirVisit::WalkExcluded);
        // No exceptions at all.
        assert_eq!(m("x").dir_visit("x", true), DirVisit::Skip);
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

    #[test]
    fn go_clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("a/b/", "a/b"),
            ("/../a", "/a"),
            ("../../a/..", "../.."),
            ("a/../..", ".."),
            ("./x/./y", "x/y"),
            ("//", "/"),
            ("a//b", "a/b"),
        ] {
            assert_eq!(go_clean(input), want, "{input:?}");
        }
    }
}
