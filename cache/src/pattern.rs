//! Docker's two pattern languages, matched exactly as BuildKit does.
//!
//! * COPY/ADD sources are Go `filepath.Match` globs, one path component per `*`
//!   ([`go_match`]). A Rust glob crate would differ on `[^...]`, escapes and bad-pattern
//!   errors, and a source that matches different files than Docker is a silent wrong build, so
//!   this is a transcription of Go's algorithm rather than a dependency.
//! * `COPY --exclude` patterns use moby/patternmatcher ([`ExcludeMatcher`]): `**`, `!`
//!   re-inclusion, a pattern that matches a parent excludes everything below it. Patterns
//!   become regexes the way patternmatcher builds them (the `regex` crate runs them).
//!
//! Paths here are `/`-separated and relative (`src/a.go`).

use regex::Regex;

/// A pattern Go's `filepath.Match` would reject (`ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Go's `path.Clean`: the shortest equivalent path; `..` above a rooted path is dropped.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// Whether a path component holds glob syntax (`*`, `?`, `[`), skipping `\`-escaped bytes, as
/// BuildKit decides whether a COPY source is a wildcard.
pub(crate) fn has_wildcards(s: &str) -> bool {
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

/// Go's `filepath.Match(pattern, name)` on a Unix system.
pub(crate) fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
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
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<(&'a str, bool), BadPattern> {
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
                    chunk.chars().next().ok_or(BadPattern)?
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
fn get_esc(chunk: &str) -> Result<(char, &str), BadPattern> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(BadPattern);
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
    }
    let mut it = chunk.chars();
    let r = it.next().ok_or(BadPattern)?;
    let rest = it.as_str();
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// moby/patternmatcher: ordered patterns, `!` re-includes, parents count.
#[derive(Debug)]
pub(crate) struct ExcludeMatcher {
    patterns: Vec<ExcludePattern>,
}

#[derive(Debug)]
struct ExcludePattern {
    cleaned: String,
    exclusion: bool,
    how: How,
}

#[derive(Debug)]
enum How {
    Exact,
    /// `foo/**`: everything starting with the part before `**`.
    Prefix,
    /// `**/foo`: everything ending with the part after `**`.
    Suffix,
    Regex(Regex),
}

impl ExcludeMatcher {
    /// Compiles `patterns` in order; blank ones are skipped. Errors name the bad pattern.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(raw.clone());
                }
                p.remove(0);
            }
            if go_match(&p, ".").is_err() {
                return Err(raw.clone());
            }
            let how = compile(&p).ok_or_else(|| raw.clone())?;
            out.push(ExcludePattern {
                cleaned: p,
                exclusion,
                how,
            });
        }
        Ok(ExcludeMatcher { patterns: out })
    }

    /// Whether no pattern was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` is excluded: the last pattern matching it or one of its parents wins.
    pub(crate) fn excluded(&self, path: &str) -> bool {
        let mut matched = false;
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => {
                let parent = &path[..i];
                parent
                    .match_indices('/')
                    .map(|(j, _)| &parent[..j])
                    .chain([parent])
                    .collect()
            }
            None => Vec::new(),
        };
        for p in &self.patterns {
            // An inclusion cannot change an already excluded path, nor `!` an included one.
            if p.exclusion != matched {
                continue;
            }
            let hit = p.matches(path) || parents.iter().any(|d| p.matches(d));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For an excluded directory: whether a `!pattern` names something below it, so the copy
    /// still descends (patternmatcher's plain prefix test, as Docker does).
    pub(crate) fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.cleaned).starts_with(&dir_slash))
    }
}

impl ExcludePattern {
    fn matches(&self, path: &str) -> bool {
        let p = self.cleaned.as_str();
        match &self.how {
            How::Exact => path == p,
            How::Prefix => path.starts_with(&p[..p.len() - 2]),
            How::Suffix => {
                let suffix = &p[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            How::Regex(re) => re.is_match(path),
        }
    }
}

/// patternmatcher's translation of a cleaned pattern; `None` when the regex does not compile.
fn compile(pattern: &str) -> Option<How> {
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
    while i < chars.len() {
        let ch = chars[i];
        let first = i == 0;
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
                    re.push('\\');
                    re.push(next);
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
    }
    Some(match kind {
        Kind::Exact => How::Exact,
        Kind::Prefix => How::Prefix,
        Kind::Suffix => How::Suffix,
        Kind::Regex => {
            re.push('$');
            How::Regex(Regex::new(&re).ok()?)
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
            ("a/b/../c", "a/c"),
            ("/../x", "/x"),
            ("../x", "../x"),
            ("a//b/./", "a/b"),
            ("/", "/"),
            ("./", "."),
            ("/a/..", "/"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    // Cases from Go's own filepath.Match table, plus separators.
    #[test]
    fn go_match_agrees_with_go() {
        let ok = |p: &str, n: &str| go_match(p, n).unwrap();
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
            ("*x", "xxx", true),
            ("*.go", "main.go", true),
            ("*.go", "sub/main.go", false),
            ("*/*.go", "sub/main.go", true),
            (".*", ".hidden", true),
            ("*", ".hidden", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(ok(p, n), *want, "Match({p:?}, {n:?})");
        }
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "[\\",
        ] {
            assert_eq!(
                go_match(bad, "a"),
                Err(BadPattern),
                "pattern {bad:?} should be bad"
            );
        }
        // Go reports a bad pattern only if it gets that far.
        assert_eq!(go_match("a[", "x"), Err(BadPattern));
        assert_eq!(go_match("*x[", "y"), Err(BadPattern));
    }

    #[test]
    fn wildcard_detection_skips_escapes() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain.txt"));
        assert!(!has_wildcards("a\\*b"));
    }

    fn ex(patterns: &[&str]) -> ExcludeMatcher {
        ExcludeMatcher::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exclude_patterns_follow_patternmatcher() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*.md"], "README.md", true),
            (&["*.md"], "docs/x.md", false),
            (&["**/*.md"], "docs/x.md", true),
            (&["**/*.md"], "x.md", true),
            (&["docs"], "docs/a/b.txt", true),
            (&["docs/"], "docs/a", true),
            (&["./docs"], "docs", true),
            (&["docs/**"], "docs/a/b", true),
            (&["docs/**"], "docsx", false),
            (&["**"], "anything/at/all", true),
            (&["a/**/b"], "a/b", true),
            (&["a/**/b"], "a/x/y/b", true),
            (&["a/**/b"], "a/x/y/c", false),
            (&["*.txt", "!keep.txt"], "keep.txt", false),
            (&["*.txt", "!keep.txt"], "drop.txt", true),
            (&["dir", "!dir/keep"], "dir/keep", false),
            (&["dir", "!dir/keep"], "dir/other", true),
            (&["!keep.txt"], "keep.txt", false),
            (&["a.b"], "axb", false),
            (&["te?t"], "test", true),
            (&["te?t"], "te/t", false),
            (&["[ab].c"], "b.c", true),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(
                ex(patterns).excluded(path),
                *want,
                "{patterns:?} on {path:?}"
            );
        }
        assert!(ex(&["dir", "!dir/keep"]).may_reinclude_below("dir"));
        assert!(!ex(&["dir", "!dir/keep"]).may_reinclude_below("di"));
        assert!(!ex(&["dir"]).may_reinclude_below("dir"));
        assert!(ExcludeMatcher::new(&["!".to_string()]).is_err());
        assert!(ExcludeMatcher::new(&["[".to_string()]).is_err());
        assert!(ex(&["", "  "]).is_empty());
    }
}
