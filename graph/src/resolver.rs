//! The one resolver of COPY/ADD sources: which entries of a tree a COPY reads, and where
//! each one lands below the destination.
//!
//! Why one. The cache key of a COPY must cover exactly what the copy writes. When the key
//! (over the build context's stat index) and the copy (over the real directory) each
//! resolved sources with their own rules, they disagreed: a wildcard matching nothing gave a
//! key while the copy failed, and `--parents --exclude` matched excludes against different
//! paths. So both call [`resolve`], generic over the tree it walks ([`SourceTree`]): the
//! context's index for the key, a directory for the copy. The key hashes the returned list;
//! the copy writes exactly the returned list.
//!
//! It lives in `graph` because it is pure: it needs [`crate::pattern`] (Go's `path.Clean`,
//! `filepath.Match`, moby/patternmatcher) and nothing of the disk; each tree brings its own
//! symlink walk (both use `strata_store::confined::walk`, which `graph` cannot reach).
//!
//! The rules, as BuildKit ≥ 0.13 applies them (`dockerfile2llb/convert_copy.go`, then the
//! file backend's `docopy` and fsutil's copier):
//!
//! * a source is cleaned as Go does (`../x` is `/x`: nothing escapes the root);
//! * symlinks in the middle of a source are followed inside the root; the last component too
//!   when `follow_links` is set (COPY and ADD), so `COPY link /` copies the target's bytes
//!   under the link's name;
//! * a source with `*`, `?` or `[` is a Go `filepath.Match` glob, one component at a time,
//!   below its last plain component; it never walks through a symlink. A wildcard matching
//!   nothing selects nothing and is no error (`AllowEmptyWildcard`, also when every source of
//!   the COPY matches nothing); a plain source that does not exist is
//!   [`ResolveError::NotFound`];
//! * a directory source (named or matched) brings its subtree, symlinks inside kept as links;
//!   its contents land in the destination, never the directory itself;
//! * `--exclude` patterns (with `!` exceptions) are matched relative to each directory source
//!   against what is below it, never against a file source (moby/buildkit#5489); an excluded
//!   directory an exception may reach into is walked and kept only as the parent of
//!   something kept;
//! * `--parents`: the part of a source after a `/./` (all of it without one) is kept below
//!   the destination, and `--exclude` patterns are matched relative to that pivot (BuildKit
//!   copies the pivot directory with the rest as an include pattern);
//! * a tree may hide entries (the context's `.dockerignore`) or mark a directory as present
//!   only as a parent ([`SourceTree::only_parent`]).

use crate::pattern::{self, DirVisit, ParentMatches, PatternError, PatternMatcher};
use std::borrow::Cow;

/// What an entry of a [`SourceTree`] is, not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else: a file, a FIFO, a device, a socket.
    Other,
}

/// Where looking a path up in a [`SourceTree`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<N> {
    /// At this entry.
    Found(N),
    /// Nothing there (or nothing visible).
    Missing,
    /// Too many symlinks on the way.
    Loop,
}

/// A tree COPY sources are resolved in.
pub trait SourceTree {
    /// An entry of the tree.
    type Node: Clone;
    /// What reading the tree can fail with.
    type Error;
    /// Looks up the `/`-separated, cleaned, relative `path` (`""` is the root) as a chroot
    /// would: symlinks on the way followed inside the root, the last one if `follow_last`.
    fn lookup(&self, path: &str, follow_last: bool) -> Result<Lookup<Self::Node>, Self::Error>;
    /// What `node` is.
    fn kind(&self, node: &Self::Node) -> Kind;
    /// The visible entries of the directory `dir` with their names, sorted by name bytes.
    /// A tree that keeps its names hands them out borrowed: a walk over a large tree then
    /// allocates only the paths it lists.
    fn children(&self, dir: &Self::Node) -> Result<Children<'_, Self::Node>, Self::Error>;
    /// Whether the directory `node` is there only to hold entries below it (excluded by the
    /// context's `.dockerignore`, with an exception reaching inside): it is kept only as the
    /// parent of something kept.
    fn only_parent(&self, _node: &Self::Node) -> bool {
        false
    }
}

/// The entries of a directory of a [`SourceTree`] with their names, borrowed from the tree
/// where it keeps them.
pub type Children<'t, N> = Vec<(Cow<'t, str>, N)>;

/// The sources of one COPY/ADD as the graph gives them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Paths or globs relative to the tree's root, in order.
    pub sources: &'a [String],
    /// `--exclude` patterns.
    pub excludes: &'a [String],
    /// Follow a symlink named (or matched) by a source.
    pub follow_links: bool,
    /// `--parents`.
    pub parents: bool,
    /// List what is below a directory source. A copy that excludes nothing needs only the
    /// sources (it copies each directory whole): `false` then saves a list of every file.
    /// Ignored (everything is listed) when there are exclude patterns.
    pub below: bool,
}

/// One entry a COPY reads, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry<N> {
    /// The entry (for a followed symlink, its target).
    pub node: N,
    /// Its path as the COPY names it, relative to the tree's root (`""` for the root); for a
    /// followed symlink, the link's path.
    pub path: String,
    /// Where [`Self::dest`] starts in `path`: where an entry lands is always a suffix of
    /// its path (a base name, what follows the `--parents` pivot, what is below a directory
    /// source), so it is not stored twice.
    dest_start: usize,
    /// What it is, not followed (a followed symlink is its target's kind).
    pub kind: Kind,
    /// Named or matched by a source (the others are below a directory source). A directory
    /// source is not copied itself, only its contents.
    pub source: bool,
}

impl<N> SourceEntry<N> {
    /// Where it lands, relative to the COPY's destination taken as a directory (`""` is the
    /// destination itself). A lone file source onto a destination that is not a directory
    /// is written as the destination: the caller decides that, as only it sees the
    /// destination.
    pub fn dest(&self) -> &str {
        &self.path[self.dest_start..]
    }
}

/// Why sources could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E: std::error::Error + 'static> {
    /// A plain source (or a matched symlink's target) that does not exist.
    #[error("\"/{path}\": not found")]
    NotFound {
        /// The source as resolved, relative to the root.
        path: String,
    },
    /// Too many symlinks on the way.
    #[error("too many levels of symbolic links resolving \"/{path}\"")]
    Loop {
        /// The source, relative to the root.
        path: String,
    },
    /// A source glob Go's `filepath.Match` rejects.
    #[error("invalid source pattern {pattern:?}")]
    BadPattern {
        /// The source as written.
        pattern: String,
    },
    /// An `--exclude` pattern that does not compile.
    #[error("invalid exclude pattern {pattern:?}")]
    BadExclude {
        /// The pattern as written.
        pattern: String,
        /// Why.
        #[source]
        source: PatternError,
    },
    /// The tree could not be read.
    #[error(transparent)]
    Tree(E),
}

/// Resolves the sources of `req` in `tree`: every entry the COPY reads, in copy order.
pub fn resolve<T>(
    tree: &T,
    req: &Request<'_>,
) -> Result<Vec<SourceEntry<T::Node>>, ResolveError<T::Error>>
where
    T: SourceTree,
    T::Error: std::error::Error + 'static,
{
    let excludes =
        PatternMatcher::new(req.excludes).map_err(|source| ResolveError::BadExclude {
            pattern: req.excludes[source.number() - 1].clone(),
            source,
        })?;
    let r = Resolver {
        tree,
        below: req.below || !excludes.is_empty(),
        excludes,
        follow: req.follow_links,
    };
    let mut out = Vec::new();
    for source in req.sources {
        r.source(source, req.parents, &mut out)?;
    }
    Ok(out)
}

/// Entries with their names as the COPY names them.
type Named<N> = Vec<(String, N)>;

struct Resolver<'t, T> {
    tree: &'t T,
    excludes: PatternMatcher,
    follow: bool,
    /// List entries below directory sources ([`Request::below`]).
    below: bool,
}

/// Cleans a source to a relative path (`""` for the root).
fn relative(source: &str) -> String {
    pattern::clean(&format!("/{source}"))
        .trim_start_matches('/')
        .to_owned()
}

/// `base/name`, allocated once at its exact size (this runs for every entry listed).
fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        return name.to_owned();
    }
    if name.is_empty() {
        return base.to_owned();
    }
    let mut path = String::with_capacity(base.len() + 1 + name.len());
    path.push_str(base);
    path.push('/');
    path.push_str(name);
    path
}

fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

impl<'t, T> Resolver<'t, T>
where
    T: SourceTree,
    T::Error: std::error::Error + 'static,
{
    fn lookup(&self, path: &str, follow: bool) -> Result<Option<T::Node>, ResolveError<T::Error>> {
        match self.tree.lookup(path, follow).map_err(ResolveError::Tree)? {
            Lookup::Found(n) => Ok(Some(n)),
            Lookup::Missing => Ok(None),
            Lookup::Loop => Err(ResolveError::Loop {
                path: path.to_owned(),
            }),
        }
    }

    fn source(
        &self,
        source: &str,
        parents: bool,
        out: &mut Vec<SourceEntry<T::Node>>,
    ) -> Result<(), ResolveError<T::Error>> {
        // `--parents`: what follows the pivot is kept, the pivot being `/./` or the root.
        let pivot = match source.split_once("/./") {
            Some((before, _)) if parents => relative(before),
            _ => String::new(),
        };
        let rel = relative(&source.replacen("/./", "/", usize::from(parents)));
        for (name, node) in self.matches(source, &rel)? {
            let kind = self.tree.kind(&node);
            // Where it lands is a suffix of its name.
            let (dest_len, scope) = if parents {
                let kept = name
                    .strip_prefix(&pivot)
                    .map_or(name.as_str(), |k| k.trim_start_matches('/'));
                (kept.len(), Some(kept.to_owned()))
            } else if kind == Kind::Dir {
                (0, None)
            } else {
                (base_name(&name).len(), None)
            };
            let dest_start = name.len() - dest_len;
            self.add(name, node, kind, dest_start, scope, out)?;
        }
        Ok(())
    }

    /// The entries a source names: itself if plain (followed as asked), else what its glob
    /// matches. Each with its name as the COPY names it.
    fn matches(&self, source: &str, rel: &str) -> Result<Named<T::Node>, ResolveError<T::Error>> {
        let comps: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let Some(wild) = comps.iter().position(|c| pattern::has_wildcards(c)) else {
            let node = self
                .lookup(rel, self.follow)?
                .ok_or_else(|| ResolveError::NotFound {
                    path: rel.to_owned(),
                })?;
            return Ok(vec![(rel.to_owned(), node)]);
        };
        let bad = || ResolveError::BadPattern {
            pattern: source.to_owned(),
        };
        let prefix = comps[..wild].join("/");
        let mut found = match self.lookup(&prefix, true)? {
            Some(n) if self.tree.kind(&n) == Kind::Dir => vec![(prefix, n)],
            _ => return Ok(Vec::new()),
        };
        for (i, glob) in comps.iter().enumerate().skip(wild) {
            pattern::go_match(glob, "").map_err(|_| bad())?;
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for (base, dir) in &found {
                for (name, node) in self.tree.children(dir).map_err(ResolveError::Tree)? {
                    if !pattern::go_match(glob, &name).map_err(|_| bad())? {
                        continue;
                    }
                    let kind = self.tree.kind(&node);
                    if !last && kind != Kind::Dir {
                        continue;
                    }
                    next.push((join(base, &name), node));
                }
            }
            found = next;
        }
        let mut out = Vec::with_capacity(found.len());
        for (name, node) in found {
            let node = if self.follow && self.tree.kind(&node) == Kind::Symlink {
                self.lookup(&name, true)?
                    .ok_or_else(|| ResolveError::NotFound { path: name.clone() })?
            } else {
                node
            };
            out.push((name, node));
        }
        Ok(out)
    }

    /// Adds a source's entry named `name`, landing at `name[dest_start..]`; a directory
    /// brings its subtree minus excludes, matched below the directory, or below the pivot
    /// (`scope` is the entry's path there) with `--parents`.
    fn add(
        &self,
        name: String,
        node: T::Node,
        kind: Kind,
        dest_start: usize,
        scope: Option<String>,
        out: &mut Vec<SourceEntry<T::Node>>,
    ) -> Result<(), ResolveError<T::Error>> {
        // With `--parents` the source itself is matched too (it is below the pivot).
        let mut matches = None;
        if let Some(s) = scope.as_deref().filter(|s| !s.is_empty())
            && !self.excludes.is_empty()
        {
            let (excluded, m) = self.excludes.check(s, None);
            if excluded && (kind != Kind::Dir || self.excludes.dir_visit(s, true) == DirVisit::Skip)
            {
                return Ok(());
            }
            matches = Some(m);
        }
        if kind != Kind::Dir {
            out.push(SourceEntry {
                node,
                path: name,
                dest_start,
                kind,
                source: true,
            });
            return Ok(());
        }
        out.push(SourceEntry {
            node: node.clone(),
            path: name.clone(),
            dest_start,
            kind,
            source: true,
        });
        if !self.below && !self.tree.only_parent(&node) {
            return Ok(());
        }
        let mark = out.len();
        self.walk(&node, name, dest_start, scope.as_deref(), matches, out)?;
        // A directory source that is only a parent, or excluded, stands only if it holds
        // something.
        let excluded_top = matches_excluded(&self.excludes, scope.as_deref());
        if (self.tree.only_parent(&node) || excluded_top) && out.len() == mark {
            out.pop();
        }
        Ok(())
    }

    /// Adds what is below the directory `dir` (named `name`, landing at `name[dest_start..]`),
    /// depth first in name order, without recursion. Each entry listed costs one allocation,
    /// its path: names are borrowed from the tree, where it lands is a suffix of its path,
    /// and its path below the source is only spelled out when there are excludes to match.
    fn walk(
        &self,
        dir: &T::Node,
        name: String,
        dest_start: usize,
        scope: Option<&str>,
        matches: Option<ParentMatches>,
        out: &mut Vec<SourceEntry<T::Node>>,
    ) -> Result<(), ResolveError<T::Error>> {
        struct Level<'t, N> {
            children: std::vec::IntoIter<(Cow<'t, str>, N)>,
            /// Its path below the directory source (or the pivot); empty without excludes.
            rel: String,
            name: String,
            /// Where it lands is `name[dest_start..]`.
            dest_start: usize,
            matches: Option<ParentMatches>,
            /// Not added yet: added once something below it is.
            pending: Option<SourceEntry<N>>,
        }
        let excludes = !self.excludes.is_empty();
        let children = self.tree.children(dir).map_err(ResolveError::Tree)?;
        let mut stack = vec![Level {
            children: children.into_iter(),
            rel: if excludes {
                scope.unwrap_or_default().to_owned()
            } else {
                String::new()
            },
            name,
            dest_start,
            matches,
            pending: None,
        }];
        while let Some(level) = stack.last_mut() {
            let Some((child, node)) = level.children.next() else {
                stack.pop();
                continue;
            };
            let kind = self.tree.kind(&node);
            let is_dir = kind == Kind::Dir;
            let (rel, excluded, matches) = if excludes {
                let rel = join(&level.rel, &child);
                let (excluded, matches) = self.excludes.check(&rel, level.matches.as_ref());
                (rel, excluded, matches)
            } else {
                (String::new(), false, ParentMatches::default())
            };
            let pending = if excluded {
                if !is_dir || self.excludes.dir_visit(&rel, true) == DirVisit::Skip {
                    continue;
                }
                true
            } else {
                is_dir && self.tree.only_parent(&node)
            };
            let path = join(&level.name, &child);
            // Below a destination landing at `dest`, the child lands at `dest/child`, the
            // same suffix of its path; below the destination itself, at `child`.
            let dest_start = if level.dest_start == level.name.len() {
                path.len() - child.len()
            } else {
                level.dest_start
            };
            if !pending {
                out.extend(stack.iter_mut().filter_map(|l| l.pending.take()));
            }
            if !is_dir {
                out.push(SourceEntry {
                    node,
                    path,
                    dest_start,
                    kind,
                    source: false,
                });
                continue;
            }
            let children = self.tree.children(&node).map_err(ResolveError::Tree)?;
            let name = path.clone();
            let entry = SourceEntry {
                node,
                path,
                dest_start,
                kind,
                source: false,
            };
            let pending = if pending {
                Some(entry)
            } else {
                out.push(entry);
                None
            };
            stack.push(Level {
                children: children.into_iter(),
                rel,
                name,
                dest_start,
                matches: Some(matches),
                pending,
            });
        }
        Ok(())
    }
}

/// Whether a `--parents` source at `scope` below the pivot is itself excluded.
fn matches_excluded(excludes: &PatternMatcher, scope: Option<&str>) -> bool {
    scope
        .filter(|s| !s.is_empty() && !excludes.is_empty())
        .is_some_and(|s| excludes.check(s, None).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory tree: paths to kinds (and link targets), `ignored` directories kept only
    /// as parents.
    #[derive(Default)]
    struct Mem {
        entries: BTreeMap<String, (Kind, String)>,
        only_parent: Vec<String>,
    }

    impl Mem {
        fn new(files: &[&str], links: &[(&str, &str)]) -> Mem {
            let mut m = Mem::default();
            m.entries.insert(String::new(), (Kind::Dir, String::new()));
            for f in files {
                let (dir, kind) = match f.strip_suffix('/') {
                    Some(d) => (d, Kind::Dir),
                    None => (*f, Kind::Other),
                };
                m.add_parents(dir);
                m.entries.insert(dir.to_owned(), (kind, String::new()));
            }
            for (l, t) in links {
                m.add_parents(l);
                m.entries
                    .insert((*l).to_owned(), (Kind::Symlink, (*t).to_owned()));
            }
            m
        }

        fn add_parents(&mut self, path: &str) {
            let mut p = path;
            while let Some((parent, _)) = p.rsplit_once('/') {
                self.entries
                    .insert(parent.to_owned(), (Kind::Dir, String::new()));
                p = parent;
            }
        }
    }

    impl SourceTree for Mem {
        type Node = String;
        type Error = std::io::Error;

        fn lookup(&self, path: &str, follow_last: bool) -> Result<Lookup<String>, Self::Error> {
            // Enough for the tests: links in the last component only, relative to the root.
            let mut p = path.to_owned();
            for _ in 0..8 {
                match self.entries.get(&p) {
                    None => return Ok(Lookup::Missing),
                    Some((Kind::Symlink, t)) if follow_last => p = t.clone(),
                    Some(_) => return Ok(Lookup::Found(p)),
                }
            }
            Ok(Lookup::Loop)
        }

        fn kind(&self, node: &String) -> Kind {
            self.entries[node].0
        }

        fn children(&self, dir: &String) -> Result<Children<'_, String>, Self::Error> {
            Ok(self
                .entries
                .keys()
                .filter_map(|p| {
                    let name = if dir.is_empty() {
                        p.as_str()
                    } else {
                        p.strip_prefix(dir.as_str())?.strip_prefix('/')?
                    };
                    (!name.is_empty() && !name.contains('/')).then(|| (name.into(), p.clone()))
                })
                .collect())
        }

        fn only_parent(&self, node: &String) -> bool {
            self.only_parent.contains(node)
        }
    }

    fn run(
        tree: &Mem,
        sources: &[&str],
        excludes: &[&str],
        parents: bool,
    ) -> Result<Vec<(String, String)>, ResolveError<std::io::Error>> {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        let req = Request {
            sources: &sources,
            excludes: &excludes,
            follow_links: true,
            parents,
            below: true,
        };
        Ok(resolve(tree, &req)?
            .into_iter()
            .map(|e| (e.path.clone(), e.dest().to_owned()))
            .collect())
    }

    /// Sources, excludes, and the (path, dest) pairs expected in order.
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(p, d)| ((*p).to_owned(), (*d).to_owned()))
            .collect()
    }

    fn tree() -> Mem {
        Mem::new(
            &[
                "a.txt",
                "x/a/keep.txt",
                "x/a/drop.log",
                "x/a/sub/deep.txt",
                "x/b/other.txt",
                "empty/",
            ],
            &[("link", "a.txt")],
        )
    }

    #[test]
    fn sources_list_what_lands_where() {
        let t = tree();
        let cases: &[Case] = &[
            (&["a.txt"], &[], &[("a.txt", "a.txt")]),
            (
                &["../x/b"],
                &[],
                &[("x/b", ""), ("x/b/other.txt", "other.txt")],
            ),
            (&["link"], &[], &[("link", "link")]),
            (&["x/*/other.txt"], &[], &[("x/b/other.txt", "other.txt")]),
            (
                &["x/a"],
                &["sub", "*.log"],
                &[("x/a", ""), ("x/a/keep.txt", "keep.txt")],
            ),
            // An excluded directory an exception reaches into stands only as a parent.
            (
                &["x/a"],
                &["sub", "!sub/deep.txt", "*.txt", "*.log"],
                &[
                    ("x/a", ""),
                    ("x/a/sub", "sub"),
                    ("x/a/sub/deep.txt", "sub/deep.txt"),
                ],
            ),
            (
                &["x/a"],
                &["sub", "!sub/nothing", "*.txt", "*.log"],
                &[("x/a", "")],
            ),
            // A file source is never matched against excludes.
            (&["a.txt"], &["a.txt"], &[("a.txt", "a.txt")]),
        ];
        for (sources, excludes, want) in cases {
            let got = run(&t, sources, excludes, false).unwrap();
            assert_eq!(got, pairs(want), "{sources:?} {excludes:?}");
        }
    }

    #[test]
    fn a_wildcard_matching_nothing_lists_nothing_and_a_missing_path_is_not_found() {
        let t = tree();
        assert_eq!(run(&t, &["nomatch*"], &[], false).unwrap(), vec![]);
        assert_eq!(
            run(&t, &["nomatch*", "a.txt", "x/zz*/q"], &[], false).unwrap(),
            pairs(&[("a.txt", "a.txt")])
        );
        let err = run(&t, &["missing.txt"], &[], false).unwrap_err();
        assert_eq!(err.to_string(), "\"/missing.txt\": not found");
        let err = run(&t, &["x/["], &[], false).unwrap_err();
        assert_eq!(err.to_string(), "invalid source pattern \"x/[\"");
    }

    #[test]
    fn parents_keep_and_exclude_below_the_pivot() {
        let t = tree();
        let cases: &[Case] = &[
            (
                &["x/./a"],
                &["a/*.log", "a/sub"],
                &[("x/a", "a"), ("x/a/keep.txt", "a/keep.txt")],
            ),
            (
                &["x/./*"],
                &["*/sub", "b"],
                &[
                    ("x/a", "a"),
                    ("x/a/drop.log", "a/drop.log"),
                    ("x/a/keep.txt", "a/keep.txt"),
                ],
            ),
            // The matched file itself is below the pivot, so excludes see it.
            (
                &["x/./a/keep.txt", "x/./a/drop.log"],
                &["**/*.log"],
                &[("x/a/keep.txt", "a/keep.txt")],
            ),
            (&["x/a/keep.txt"], &[], &[("x/a/keep.txt", "x/a/keep.txt")]),
            // A kept directory is made even when all it holds is excluded.
            (&["x/./b/"], &["b/other.txt"], &[("x/b", "b")]),
        ];
        for (sources, excludes, want) in cases {
            let got = run(&t, sources, excludes, true).unwrap();
            assert_eq!(got, pairs(want), "{sources:?} {excludes:?}");
        }
    }

    #[test]
    fn a_directory_only_a_parent_stands_only_with_what_it_holds() {
        let mut t = tree();
        t.only_parent = vec!["x/a/sub".into(), "empty".into()];
        assert_eq!(
            run(&t, &["x/a"], &["*.log", "**/*.txt"], false).unwrap(),
            pairs(&[("x/a", "")])
        );
        assert_eq!(
            run(&t, &["x/a"], &["*.log", "keep.txt"], false).unwrap(),
            pairs(&[
                ("x/a", ""),
                ("x/a/sub", "sub"),
                ("x/a/sub/deep.txt", "sub/deep.txt")
            ])
        );
        assert_eq!(run(&t, &["empty"], &[], false).unwrap(), vec![]);
    }
}
