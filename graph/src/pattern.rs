//! Docker's path pattern languages, written once for every crate that matches paths: the
//! frontend (`.dockerignore`), the cache (what a COPY reads, for its key) and the worker (what
//! the COPY then writes). If two of them matched differently, a cache key would cover other
//! files than the copy copies; so there is one implementation, here in the leaf.
//!
//! * [`go_match`] is Go's `filepath.Match`: COPY/ADD source globs and the syntax check of every
//!   ignore pattern. `*` and `?` never match `/`; `[^...]` negates; `\` escapes; a malformed
//!   pattern is an error even when the name already failed to match.
//! * [`PatternMatcher`] is moby/patternmatcher, used for `.dockerignore` and `COPY --exclude`:
//!   patterns are cleaned, apply in order, the last one that matches a path (or one of its
//!   parents) decides, and `!` re-includes. Each pattern becomes an exact, prefix or suffix
//!   test or a regular expression (run by the `regex` crate, in linear time), the way
//!   patternmatcher translates it.
//! * [`clean`] is Go's `path.Clean`; [`has_wildcards`] is how BuildKit decides that a source
//!   is a glob.
//!
//! Hand-written rather than a glob crate because the semantics must be Go's to the letter:
//! the glob crates differ on `[^...]` and `[!...]`, on escapes, on `**`, and on which patterns
//! are errors, and a pattern that matches other files than Docker's is a silently wrong build.
//! Paths are `/`-separated and relative (`src/main.rs`).

use regex::Regex;

/// A pattern Go's `filepath.Match` rejects (`ErrBadPattern`): an unclosed or empty `[...]`,
/// an incomplete range, a trailing `\`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {pattern:?}")]
pub struct BadPattern {
    /// The pattern as given.
    pub pattern: String,
}

/// Go's `path.Clean` on a `/`-separated path: the shortest equivalent path; `..` above a
/// rooted path is dropped; the empty path is `.`.
pub fn clean(path: &str) -> String {
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

/// Whether `s` holds glob syntax (`*`, `?`, `[`), skipping `\`-escaped bytes: how BuildKit
/// decides that a COPY source (or one of its components) is a wildcard.
pub fn has_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Go's `filepath.Match(pattern, name)` on Unix: whether `name` matches the whole shell
/// pattern. Go's own algorithm, chunk by chunk; like Go, the rest of the pattern is checked
/// before a mismatch is reported, so a malformed pattern is an error whatever the name.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    match_go(pattern, name).map_err(|Malformed| BadPattern {
        pattern: pattern.to_owned(),
    })
}

/// The pattern is malformed; [`go_match`] names it.
struct Malformed;

fn match_go(pattern: &str, name: &str) -> Result<bool, Malformed> {
    let mut pattern = pattern;
    let mut name = name;
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a separator.
            return Ok(!name.contains('/'));
        }
        // Look for a match at the current position.
        let (t, ok) = match_chunk(chunk, name)?;
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            // Look for a match skipping i+1 bytes; a `*` never crosses a separator.
            let bytes = name.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'/' {
                if let Some(tail) = name.get(i + 1..) {
                    let (t, ok) = match_chunk(chunk, tail)?;
                    if ok {
                        // A last chunk must consume the whole name.
                        if pattern.is_empty() && !t.is_empty() {
                            i += 1;
                            continue;
                        }
                        name = t;
                        continue 'pattern;
                    }
                }
                i += 1;
            }
        }
        // Before saying no, check that the rest of the pattern is well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, "")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next unbracketed star.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let b = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Matches one star-free chunk at the start of `s`; returns the rest of `s` on success.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<(&'a str, bool), Malformed> {
    let mut chunk = chunk;
    let mut s = s;
    // Once the name is exhausted we keep scanning only to report a bad pattern.
    let mut failed = false;
    while let Some(c) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    let mut it = s.chars();
                    r = it.next().expect("s is not empty when not failed");
                    s = it.as_str();
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if nrange > 0 && chunk.starts_with(']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        let (h, rest) = get_esc(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let mut it = s.chars();
                    if it.next() == Some('/') {
                        failed = true;
                    }
                    s = it.as_str();
                }
                chunk = &chunk[1..];
            }
            _ => {
                let lit = if c == '\\' {
                    chunk = &chunk[1..];
                    chunk.chars().next().ok_or(Malformed)?
                } else {
                    c
                };
                if !failed {
                    let mut it = s.chars();
                    if it.next() != Some(lit) {
                        failed = true;
                    }
                    s = it.as_str();
                }
                chunk = &chunk[lit.len_utf8()..];
            }
        }
    }
    if failed {
        Ok(("", false))
    } else {
        Ok((s, true))
    }
}

/// One possibly escaped character of a `[...]` class; the class must go on after it.
fn get_esc(chunk: &str) -> Result<(char, &str), Malformed> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(Malformed);
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
    }
    let mut it = chunk.chars();
    let r = it.next().ok_or(Malformed)?;
    let rest = it.as_str();
    if rest.is_empty() {
        return Err(Malformed);
    }
    Ok((r, rest))
}

/// Patterns a [`PatternMatcher`] cannot be built from. `number` is the pattern's number as
/// the caller counts (a `.dockerignore` line, the position of a `--exclude`), 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A pattern is `!` alone.
    #[error("pattern {number}: illegal exclusion pattern: \"!\"")]
    LoneBang {
        /// The pattern's number.
        number: usize,
    },
    /// A pattern is not valid `filepath.Match` syntax.
    #[error("pattern {number} is not valid")]
    Bad {
        /// The pattern's number.
        number: usize,
        /// The pattern after cleaning, without its `!`.
        #[source]
        source: BadPattern,
    },
    /// A pattern whose regular expression would be larger than the matcher allows (thousands
    /// of wildcards).
    #[error("pattern {number} of {len} bytes is too complex")]
    TooComplex {
        /// The pattern's number.
        number: usize,
        /// The pattern's length.
        len: usize,
    },
}

impl PatternError {
    /// The number of the pattern that failed.
    pub fn number(&self) -> usize {
        match self {
            PatternError::LoneBang { number }
            | PatternError::Bad { number, .. }
            | PatternError::TooComplex { number, .. } => *number,
        }
    }
}

/// What a walker should do with a directory (BuildKit's context sender and copier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirVisit {
    /// Not excluded: take it and walk it.
    Include,
    /// Excluded, but an exception may re-include something below: walk it, and take it only
    /// as the parent of something that is included.
    WalkExcluded,
    /// Excluded and nothing below can come back: do not open it.
    Skip,
}

/// Per-pattern results for a directory, handed to its entries as a walker descends
/// (patternmatcher's `MatchInfo`). The default is "no results": everything is matched anew.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches(Vec<bool>);

/// moby/patternmatcher: ordered patterns, `!` exceptions, a pattern that matches a directory
/// matches everything below it.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
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

impl PatternMatcher {
    /// Builds a matcher from patterns in order (`!` marks an exception), numbered from 1 in
    /// errors. Blank patterns are skipped (they keep their number).
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Self, PatternError> {
        Self::numbered(patterns.into_iter().enumerate().map(|(i, p)| (i + 1, p)))
    }

    /// Builds a matcher from patterns with the numbers errors should name (`.dockerignore`
    /// line numbers). Each pattern is trimmed and cleaned, then checked with
    /// [`go_match`]`(pattern, ".")` as patternmatcher does.
    pub fn numbered<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = (usize, S)>,
    ) -> Result<Self, PatternError> {
        let mut compiled = Vec::new();
        for (number, p) in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exception = p.starts_with('!');
            if exception {
                if p.len() == 1 {
                    return Err(PatternError::LoneBang { number });
                }
                p.remove(0);
            }
            if let Err(source) = go_match(&p, ".") {
                return Err(PatternError::Bad { number, source });
            }
            let kind = compile(&p).map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => PatternError::TooComplex {
                    number,
                    len: p.len(),
                },
                _ => PatternError::Bad {
                    number,
                    source: BadPattern { pattern: p.clone() },
                },
            })?;
            compiled.push(Pattern {
                text: p,
                exception,
                kind,
            });
        }
        let has_exceptions = compiled.iter().any(|p| p.exception);
        let prefix_only_exceptions = compiled
            .iter()
            .filter(|p| p.exception)
            .all(|p| !without_trailing_glob(&p.text).contains(['*', '[', ']', '?', '^', '\\']));
        Ok(Self {
            patterns: compiled,
            has_exceptions,
            prefix_only_exceptions,
        })
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a `!` pattern can re-include something.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
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

    /// Whether `rel_path` (relative to the root the patterns apply to) is excluded: the last
    /// pattern that matches it or one of its parents decides. The root itself is never
    /// excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        // No patterns (no `.dockerignore`): asked once per context entry by the walk, so
        // answered before cleaning the path (4% of a 20,000-file no-op's walk).
        if self.patterns.is_empty() {
            return false;
        }
        let path = normalise(rel_path);
        if path == "." {
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

    /// Like [`PatternMatcher::is_excluded`], reusing the results of the parent directory as a
    /// walker descends (patternmatcher's `MatchesUsingParentResults`, what BuildKit's context
    /// sender and copier use). Pass `None` for entries at the root; keep the returned
    /// [`ParentMatches`] for the entries of a directory.
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

    /// What a walker should do with the directory `rel_dir`, given whether it is excluded:
    /// BuildKit's rule, under which an excluded directory is skipped unless an exception has
    /// a wildcard or names a path below it.
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
    let cleaned = clean(rel_path);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_path_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("a//b/./", "a/b"),
            ("./x/./y", "x/y"),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("/../x", "/x"),
            ("/a/..", "/"),
            ("../x", "../x"),
            ("../../a/..", "../.."),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    /// Go's path/filepath match_test.go, plus separators and Unicode.
    #[test]
    fn go_match_agrees_with_go() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
            ("*.go", "main.go", true),
            ("*.go", "sub/main.go", false),
            ("*/*.go", "sub/main.go", true),
            (".*", ".hidden", true),
            ("*", ".hidden", true),
            // `[!...]` is not negation in Go: `!` is a member of the class.
            ("a[!b]c", "a!c", true),
            ("a[!b]c", "axc", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(go_match(p, n), Ok(*want), "Match({p:?}, {n:?})");
        }
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "[\\", "[a-",
        ] {
            assert_eq!(
                go_match(bad, "a"),
                Err(BadPattern {
                    pattern: bad.to_owned()
                }),
                "pattern {bad:?} should be bad"
            );
        }
        // Go checks the rest of the pattern before it says no.
        assert!(go_match("a[", "x").is_err());
        assert!(go_match("*x[", "y").is_err());
        assert!(go_match("x*[", "y").is_err());
        assert_eq!(
            go_match("a[", "x").unwrap_err().to_string(),
            "syntax error in pattern \"a[\""
        );
    }

    #[test]
    fn wildcard_detection_skips_escapes() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(has_wildcards("a\\\\*"), "an escaped backslash, then a star");
        assert!(!has_wildcards("plain.txt"));
        assert!(!has_wildcards("a\\*b"));
        assert!(!has_wildcards("a\\?\\["));
        // A backslash alone is not a wildcard (BuildKit's containsWildcards).
        assert!(!has_wildcards("a\\b"));
        assert!(!has_wildcards("]"));
    }

    fn matcher(patterns: &[&str]) -> PatternMatcher {
        PatternMatcher::new(patterns).unwrap()
    }

    #[test]
    fn building_reports_the_pattern_and_its_number() {
        assert_eq!(
            PatternMatcher::new(["a", "!"]).unwrap_err(),
            PatternError::LoneBang { number: 2 }
        );
        assert_eq!(
            PatternMatcher::numbered([(7, "x"), (9, "  !  ")]).unwrap_err(),
            PatternError::LoneBang { number: 9 }
        );
        // Blank patterns are skipped but keep their number; `!` is stripped before checking.
        let err = PatternMatcher::new(["", "ok", "!./a["]).unwrap_err();
        assert_eq!(
            err,
            PatternError::Bad {
                number: 3,
                source: BadPattern {
                    pattern: "./a[".into()
                }
            }
        );
        assert_eq!(err.number(), 3);
        assert_eq!(err.to_string(), "pattern 3 is not valid");
        for bad in ["[", "a[", "[]", "[a-]", "x\\", "[^]", "[a", "a/[b-/c"] {
            assert!(
                matches!(PatternMatcher::new([bad]), Err(PatternError::Bad { .. })),
                "{bad:?} should be rejected"
            );
        }
        for good in ["[a]", "[^a]", "[a-z]", "\\*", "[\\]]", "a]", "**", "a\\d"] {
            assert!(
                PatternMatcher::new([good]).is_ok(),
                "{good:?} should be accepted"
            );
        }
        let stars = "*/".repeat(10_000);
        assert_eq!(
            PatternMatcher::new([stars.as_str()]).unwrap_err(),
            PatternError::TooComplex {
                number: 1,
                len: 19_999
            }
        );
        let blank = PatternMatcher::new(["", "  "]).unwrap();
        assert!(blank.is_empty() && !blank.has_exceptions());
        assert!(!blank.is_excluded("anything"));
    }

    #[test]
    fn patterns_are_cleaned() {
        let m = matcher(&["./a//b/", "!/c/../d", "x/"]);
        assert_eq!(m.patterns().collect::<Vec<_>>(), ["a/b", "!/d", "x"]);
        assert!(m.has_exceptions());
    }

    /// patternmatcher's own table (TestMatches), the cache's and the worker's cases, and
    /// dockerignore usage: (pattern, path, excluded).
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
            ("**", "anything/at/all", true),
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
            ("docs/**", "docsx", false),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**/tmp", "tmp", true),
            ("**/tmp", "a/b/tmp", true),
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
            ("**/*.md", "docs/x.md", true),
            ("**/*.md", "x.md", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("docs/**/*.md", "docs/x.md", true),
            ("docs/**/*.md", "docs/a/b/x.md", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            ("[ab].c", "b.c", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("te?t", "test", true),
            ("te?t", "te/t", false),
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
            // Patterns and paths are cleaned.
            ("./docs", "docs", true),
            ("docs/", "docs/a", true),
            ("docs", "./docs/", true),
            // Parent directories: a match on a parent excludes everything below.
            ("docs", "docs/a/b.md", true),
            ("dir", "dir/inner/file", true),
            ("dir", "dirx/file", false),
            ("*.log", "sub/nested.log", false),
            ("*.md", "README.md", true),
            ("*.log", "x.log/inner", true),
            ("secret/", "secret/key", true),
            // `[!x]` is not negation here (regex semantics): it means `!` or `x`.
            ("a[!b]c", "abc", true),
            ("a[!b]c", "a!c", true),
            ("a[!b]c", "axc", false),
            // A leading `**` without a slash is a plain suffix test.
            ("**.txt", "dir/name.txt", true),
            // `\d` keeps its regular-expression meaning, as in patternmatcher.
            ("a\\d", "a7", true),
            ("a\\d", "ad", false),
        ];
        let mut misses = Vec::new();
        for (pattern, path, want) in cases {
            if matcher(&[pattern]).is_excluded(path) != *want {
                misses.push(format!("{pattern:?} on {path:?}: want {want}"));
            }
        }
        assert!(misses.is_empty(), "{}", misses.join("\n"));
    }

    #[test]
    fn last_match_wins() {
        let m = matcher(&["*.md", "!README*.md", "README-secret.md"]);
        assert!(m.is_excluded("a.md"));
        assert!(!m.is_excluded("README.md"));
        assert!(m.is_excluded("README-secret.md"));
        let m = matcher(&["docs", "!docs/keep.md"]);
        assert!(m.is_excluded("docs/x.md"));
        assert!(!m.is_excluded("docs/keep.md"));
        assert!(m.is_excluded("docs"));
        let m = matcher(&["*.txt", "!keep.txt"]);
        assert!(!m.is_excluded("keep.txt"));
        assert!(m.is_excluded("drop.txt"));
        // An exception alone excludes nothing.
        assert!(!matcher(&["!keep.txt"]).is_excluded("keep.txt"));
        assert!(!matcher(&["**"]).is_excluded("."), "the root never is");
    }

    #[test]
    fn walking_with_parent_results_agrees() {
        let m = matcher(&["a", "!a/b/c", "**/x", "!**/x/keep", "*.log", "!keep.log"]);
        let tree = [
            "a",
            "a/b",
            "a/b/c",
            "a/b/c/d",
            "a/b/d",
            "q",
            "q/x",
            "q/x/keep",
            "q/x/keep/inner",
            "q/x/other",
            "r",
            "r/keep.log",
            "r.log",
            "keep.log",
        ];
        let mut infos: std::collections::BTreeMap<String, ParentMatches> = Default::default();
        for path in tree {
            let parent = path.rsplit_once('/').map(|(p, _)| p.to_owned());
            let info = parent.as_ref().and_then(|p| infos.get(p));
            let (excluded, mine) = m.check(path, info);
            assert_eq!(excluded, m.is_excluded(path), "{path}");
            // Without the parent's results the answer is the same.
            assert_eq!(m.check(path, None).0, excluded, "{path} alone");
            infos.insert(path.to_owned(), mine);
        }
        assert!(!m.is_excluded("a/b/c/d") && m.is_excluded("a/b/d"));
        assert!(!m.is_excluded("q/x/keep/inner") && m.is_excluded("q/x/other"));
        assert!(m.is_excluded("r.log") && !m.is_excluded("keep.log"));
        // Results of another matcher (another length) are not used.
        let (excluded, _) = m.check("a/z", Some(&ParentMatches(vec![false])));
        assert!(excluded);
    }

    #[test]
    fn dir_skipping_follows_exceptions() {
        let m = matcher(&["docs", "!docs/api/index.md"]);
        assert_eq!(m.dir_visit("docs", true), DirVisit::WalkExcluded);
        assert_eq!(m.dir_visit("docs/api", true), DirVisit::WalkExcluded);
        assert_eq!(m.dir_visit("docs/other", true), DirVisit::Skip);
        assert_eq!(
            m.dir_visit("doc", true),
            DirVisit::Skip,
            "a prefix, not a parent"
        );
        assert_eq!(m.dir_visit("src", false), DirVisit::Include);
        // An exception with a wildcard could match anywhere: nothing can be skipped.
        let m = matcher(&["vendor", "!**/*.go"]);
        assert_eq!(m.dir_visit("vendor", true), DirVisit::WalkExcluded);
        // A trailing /** does not count as a wildcard.
        let m = matcher(&["a", "!a/b/**"]);
        assert_eq!(m.dir_visit("a/c", true), DirVisit::Skip);
        assert_eq!(m.dir_visit("a/b", true), DirVisit::WalkExcluded);
        // No exceptions at all.
        assert_eq!(matcher(&["x"]).dir_visit("x", true), DirVisit::Skip);
    }
}
