//! Arbitrary `.dockerignore` bytes, then paths taken from the same input: no panic, no hang,
//! no stack overflow (patterns become regular expressions; thousands of `**` included), both
//! for matching a path alone and for walking down to it with parent results; and each line
//! as a Go `filepath.Match` glob (a COPY source) against each path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::IgnoreMatcher;

fuzz_target!(|data: &[u8]| {
    // The input is `patterns \0 path \0 path ...`.
    let mut parts = data.split(|&b| b == 0);
    let patterns = parts.next().unwrap_or_default();
    let globs = String::from_utf8_lossy(patterns);
    let Ok(matcher) = IgnoreMatcher::parse(patterns) else {
        return;
    };
    for path in parts.take(16) {
        let path = String::from_utf8_lossy(path);
        for glob in globs.lines().take(16) {
            let _ = strata_graph::pattern::go_match(glob, &path);
        }
        let alone = matcher.is_excluded(&path);
        let _ = matcher.dir_visit(&path, alone);
        // Walk down to the path, handing each directory's results to its children, as the
        // context sender does (BuildKit's MatchesUsingParentResults).
        let mut parent = None;
        let mut prefix = String::new();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let (_, matches) = matcher.check(&prefix, parent.as_ref());
            parent = Some(matches);
        }
    }
});
