//! Go's `filepath.Match` (COPY source globs and `--exclude`), plus `**` for any number of
//! directories as moby's patternmatcher adds. Hand-written because the semantics must be
//! Go's exactly (`*` never crosses `/`, `[^...]` and `[!...]` classes, `\` escapes) and the
//! glob crates differ on these points.

/// Whether `pattern` has glob metacharacters.
pub(crate) fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// A malformed pattern (`[` without `]`, a trailing `\`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// `filepath.Match(pattern, name)` for one path component (or a whole path: `*` and `?`
/// do not match `/`).
pub(crate) fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n).ok_or_else(|| BadPattern(pattern.to_owned()))
}

/// Backtracking matcher; `None` on a malformed pattern.
fn match_from(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (ok, len) = class(&p[pi..], n.get(ni).copied())?;
                    if ok {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1)?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        // Mismatch: let the last `*` eat one more character (never a '/').
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Validate the rest of the pattern so malformed patterns always error.
                validate(&p[pi.min(p.len())..])?;
                return Some(false);
            }
        }
    }
}

fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i += class(&p[i..], Some('a'))?.1,
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(())
}

/// Matches a `[...]` class at the start of `p` against `c`; returns (matched, length).
fn class(p: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            hi = if p[i + 1] == '\\' {
                i += 1;
                *p.get(i + 1)?
            } else {
                p[i + 1]
            };
            i += 2;
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    match c {
        Some(c) if c != '/' => Some((matched != negate, i)),
        _ => Some((false, i)),
    }
}

/// A path pattern as `.dockerignore` and `--exclude` use it: components matched with
/// [`matches`], `**` matching any number of components (including none).
pub(crate) fn path_matches(pattern: &str, path: &str) -> Result<bool, BadPattern> {
    let pat: Vec<&str> = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    components_match(&pat, &comps)
}

fn components_match(pat: &[&str], comps: &[&str]) -> Result<bool, BadPattern> {
    match pat.split_first() {
        None => Ok(comps.is_empty()),
        Some((&"**", rest)) => {
            for skip in 0..=comps.len() {
                if components_match(rest, &comps[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some((p, rest)) => match comps.split_first() {
            Some((c, crest)) if matches(p, c)? => components_match(rest, crest),
            _ => Ok(false),
        },
    }
}

/// Whether `path` or one of its parent directories matches one of `patterns` (a pattern
/// that excludes a directory excludes everything in it).
pub(crate) fn excluded(patterns: &[String], path: &str) -> Result<bool, BadPattern> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for p in patterns {
        for end in 1..=comps.len() {
            if path_matches(p, &comps[..end].join("/"))? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_cases() {
        // From Go's path/filepath match_test.go.
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
            ("*x", "xxx", true),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n), Ok(*want), "Match({p:?}, {n:?})");
        }
        for bad in ["[", "[^", "[^bc", "a[", "\\"] {
            assert!(matches(bad, "a").is_err(), "{bad} should be a bad pattern");
        }
    }

    #[test]
    fn double_star_and_parents() {
        assert!(path_matches("**/tmp", "tmp").unwrap());
        assert!(path_matches("**/tmp", "a/b/tmp").unwrap());
        assert!(path_matches("docs/**/*.md", "docs/x.md").unwrap());
        assert!(path_matches("docs/**/*.md", "docs/a/b/x.md").unwrap());
        assert!(!path_matches("*.log", "sub/a.log").unwrap());
        assert!(excluded(&["dir".into()], "dir/inner/file").unwrap());
        assert!(!excluded(&["dir".into()], "dirx/file").unwrap());
    }
}
