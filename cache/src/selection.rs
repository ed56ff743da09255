//! What a COPY/ADD reads from a tree, and the checksum of exactly that.
//!
//! A step's cache key must change when, and only when, what it copies changes. So a
//! selection is resolved the way BuildKit's copy resolves it, and the checksum covers each
//! selected entry's path, type, mode, (owner,) link target and bytes:
//!
//! * a source is cleaned as Go does (`../x` is `/x`: nothing escapes the root);
//! * symlinks in the middle of a source are followed inside the root (an absolute target is
//!   relative to the root, `..` stops at it); the last component is followed too when
//!   `follow_links` is set (COPY and ADD do), so `COPY link /` copies the target's bytes;
//! * a directory source selects its whole subtree, minus `--exclude` matches (relative to the
//!   source), symlinks inside copied as links, never followed. Its own mode does not count:
//!   COPY copies a directory's contents, never the directory;
//! * a source with `*`, `?` or `[` is a Go `filepath.Match` glob over the path below its last
//!   plain component; a matching directory brings its subtree. A glob matching nothing
//!   selects nothing (Docker then copies nothing, no error); a plain source that does not
//!   exist is [`ContextError::NotFound`], Docker's `"/x": not found`.
//!
//! The result lists every selected entry with its digest, so that two builds' selections can
//! be compared file by file (`--explain`) with [`SelectionSum::diff`].

use crate::checksum::Checksum;
use crate::context::{ContextError, ContextIndex};
use crate::entry::{EntryKind, source_dir_digest};
use crate::pattern::{self, ExcludeMatcher};
use std::collections::BTreeMap;

const SELECTION_DOMAIN: &[u8] = b"strata-selection-v1\0";
const LIST_MAGIC: &[u8] = b"strata-selection-v1\n";
/// Symlinks followed while resolving one source before giving up (Go's securejoin uses 255).
const MAX_LINKS: usize = 255;

/// The sources of one COPY/ADD, as the Dockerfile gives them (variables expanded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Paths or Go `filepath.Match` globs relative to the tree's root (a leading `/` is the
    /// root too), in order.
    pub sources: Vec<String>,
    /// `COPY --exclude` patterns (`.dockerignore` syntax), relative to each source.
    pub excludes: Vec<String>,
    /// Follow a symlink named by a source (or matched by a glob) to its target. COPY and ADD
    /// do; symlinks *inside* a selected directory are never followed.
    pub follow_links: bool,
}

impl Selection {
    /// A COPY/ADD of `sources`: symlink sources followed, no excludes.
    pub fn copy<S: Into<String>>(sources: impl IntoIterator<Item = S>) -> Self {
        Selection {
            sources: sources.into_iter().map(Into::into).collect(),
            excludes: Vec::new(),
            follow_links: true,
        }
    }

    /// The same selection with `--exclude` patterns.
    pub fn excluding<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.excludes = patterns.into_iter().map(Into::into).collect();
        self
    }
}

/// One entry of a selection: where it lands relative to the tree (the name the COPY gives it,
/// which for a followed symlink is the link's name) and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedEntry {
    /// Relative to the tree root, `/`-separated; `""` stands for the root as a source.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its entry digest (type, mode, owner if kept, link target, bytes; never times).
    pub digest: Checksum,
}

/// The checksum of a selection and the entries it covers, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionSum {
    /// blake3 over the entries' paths and digests: the selection's part of a cache key, and
    /// the name under which [`crate::CacheDb::put_selection`] keeps the list.
    pub checksum: Checksum,
    /// Every selected entry.
    pub entries: Vec<SelectedEntry>,
}

/// How a selection changed between two builds, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionDiff {
    /// In the newer selection only.
    pub added: Vec<String>,
    /// In the older selection only.
    pub removed: Vec<String>,
    /// In both, with a different digest (bytes, mode, type or link target changed).
    pub changed: Vec<String>,
}

impl SelectionDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl SelectionSum {
    /// Computes the checksum of `entries`.
    pub fn new(entries: Vec<SelectedEntry>) -> Self {
        SelectionSum {
            checksum: list_checksum(&entries),
            entries,
        }
    }

    /// What changed from `older` to `self`, each list sorted by path.
    pub fn diff(&self, older: &SelectionSum) -> SelectionDiff {
        let new: BTreeMap<&str, Checksum> = self
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.digest))
            .collect();
        let old: BTreeMap<&str, Checksum> = older
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.digest))
            .collect();
        let mut d = SelectionDiff::default();
        for (path, digest) in &new {
            match old.get(path) {
                None => d.added.push((*path).to_owned()),
                Some(o) if o != digest => d.changed.push((*path).to_owned()),
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|p| !new.contains_key(*p))
            .map(|p| (*p).to_owned())
            .collect();
        d
    }

    /// The stored form: a small header, then each entry; its integrity is the checksum itself.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LIST_MAGIC.len() + 8 + self.entries.len() * 80);
        out.extend_from_slice(LIST_MAGIC);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
            out.extend_from_slice(e.path.as_bytes());
            out.push(kind_code(e.kind));
            out.extend_from_slice(&e.digest.0);
        }
        out
    }

    /// Parses [`Self::to_bytes`]; `None` unless it is intact and its checksum is `expected`.
    pub(crate) fn from_bytes(bytes: &[u8], expected: &Checksum) -> Option<Self> {
        let mut rest = bytes.strip_prefix(LIST_MAGIC)?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let count = usize::try_from(count).ok()?;
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 37));
        for _ in 0..count {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let path = std::str::from_utf8(take(len)?).ok()?.to_owned();
            let kind = kind_from_code(take(1)?[0])?;
            let digest = Checksum(take(32)?.try_into().ok()?);
            entries.push(SelectedEntry { path, kind, digest });
        }
        if !rest.is_empty() {
            return None;
        }
        let sum = SelectionSum::new(entries);
        (sum.checksum == *expected).then_some(sum)
    }
}

fn list_checksum(entries: &[SelectedEntry]) -> Checksum {
    let mut h = blake3::Hasher::new();
    h.update(SELECTION_DOMAIN);
    h.update(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        h.update(&(e.path.len() as u64).to_le_bytes());
        h.update(e.path.as_bytes());
        h.update(&e.digest.0);
    }
    h.finalize().into()
}

fn kind_code(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Fifo => 3,
        EntryKind::Socket => 4,
        EntryKind::CharDevice => 5,
        EntryKind::BlockDevice => 6,
    }
}

fn kind_from_code(code: u8) -> Option<EntryKind> {
    Some(match code {
        0 => EntryKind::File,
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Fifo,
        4 => EntryKind::Socket,
        5 => EntryKind::CharDevice,
        6 => EntryKind::BlockDevice,
        _ => return None,
    })
}

/// One selected entry before digests: its name and the index entry it reads.
struct Pick {
    name: String,
    index: usize,
    /// The top directory of a directory source (stands for "a directory", nothing more).
    source_dir: bool,
}

impl ContextIndex {
    /// The checksum of what a COPY/ADD with `selection` reads from this tree, with the list
    /// of entries it covers. Reads (in parallel) only the selected files whose digests the
    /// stat cache did not have.
    pub fn checksum(&self, selection: &Selection) -> Result<SelectionSum, ContextError> {
        let excludes = ExcludeMatcher::new(&selection.excludes)
            .map_err(|pattern| ContextError::BadExclude { pattern })?;
        let mut picks = Vec::new();
        for source in &selection.sources {
            self.select(source, selection.follow_links, &excludes, &mut picks)?;
        }
        let mut files: Vec<usize> = picks
            .iter()
            .filter(|p| !p.source_dir)
            .map(|p| p.index)
            .collect();
        files.sort_unstable();
        files.dedup();
        self.ensure_contents(&files)?;
        let entries = picks
            .into_iter()
            .map(|p| {
                let e = &self.entries[p.index];
                let digest = if p.source_dir {
                    source_dir_digest()
                } else {
                    e.digest(self.content(p.index).map(|c| &c.hash), self.ownership)
                };
                SelectedEntry {
                    path: p.name,
                    kind: e.kind,
                    digest,
                }
            })
            .collect();
        Ok(SelectionSum::new(entries))
    }

    fn select(
        &self,
        source: &str,
        follow: bool,
        excludes: &ExcludeMatcher,
        picks: &mut Vec<Pick>,
    ) -> Result<(), ContextError> {
        let cleaned = pattern::clean(&format!("/{source}"));
        let rel = cleaned.trim_start_matches('/');
        let comps: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let Some(wild) = comps.iter().position(|c| pattern::has_wildcards(c)) else {
            let index = self
                .resolve(rel, follow)?
                .ok_or_else(|| ContextError::NotFound {
                    path: rel.to_owned(),
                })?;
            self.add(rel.to_owned(), index, excludes, picks);
            return Ok(());
        };
        let prefix = comps[..wild].join("/");
        let glob = comps[wild..].join("/");
        if pattern::go_match(&glob, "").is_err() {
            return Err(ContextError::BadPattern {
                pattern: source.to_owned(),
            });
        }
        let base = match self.resolve(&prefix, true)? {
            Some(i) if self.entries[i].kind == EntryKind::Dir => i,
            _ => return Ok(()),
        };
        let base_len = self.entries[base].path.len();
        let range = self.subtree(base);
        let mut i = range.start;
        while i < range.end {
            let path = &self.entries[i].path;
            let below = if base_len == 0 {
                &path[..]
            } else {
                &path[base_len + 1..]
            };
            let hit = pattern::go_match(&glob, below).map_err(|_| ContextError::BadPattern {
                pattern: source.to_owned(),
            })?;
            if !hit {
                i += 1;
                continue;
            }
            let name = if prefix.is_empty() {
                below.to_owned()
            } else {
                format!("{prefix}/{below}")
            };
            let index = if follow && self.entries[i].kind == EntryKind::Symlink {
                self.resolve(&name, true)?
                    .ok_or(ContextError::NotFound { path: name.clone() })?
            } else {
                i
            };
            self.add(name, index, excludes, picks);
            // A matched directory comes whole; nothing inside it is matched again.
            i = if self.entries[i].kind == EntryKind::Dir {
                self.subtree(i).end
            } else {
                i + 1
            };
        }
        Ok(())
    }

    /// Adds the entry at `index` under `name`; a directory brings its subtree minus excludes.
    fn add(&self, name: String, index: usize, excludes: &ExcludeMatcher, picks: &mut Vec<Pick>) {
        if self.entries[index].kind != EntryKind::Dir {
            picks.push(Pick {
                name,
                index,
                source_dir: false,
            });
            return;
        }
        let base_len = self.entries[index].path.len();
        let range = self.subtree(index);
        picks.push(Pick {
            name: name.clone(),
            index,
            source_dir: true,
        });
        let mut i = range.start;
        while i < range.end {
            let e = &self.entries[i];
            let below = if base_len == 0 {
                &e.path[..]
            } else {
                &e.path[base_len + 1..]
            };
            if !excludes.is_empty() && excludes.excluded(below) {
                // An excluded directory is skipped whole unless a `!` pattern reaches inside,
                // in which case the copy keeps it and judges its children one by one.
                let descend = e.kind == EntryKind::Dir && excludes.may_reinclude_below(below);
                if !descend {
                    i = if e.kind == EntryKind::Dir {
                        self.subtree(i).end
                    } else {
                        i + 1
                    };
                    continue;
                }
            }
            let child = if name.is_empty() {
                below.to_owned()
            } else {
                format!("{name}/{below}")
            };
            picks.push(Pick {
                name: child,
                index: i,
                source_dir: false,
            });
            i += 1;
        }
    }

    /// Resolves `rel` inside the tree like a chroot would: symlinks in the middle are always
    /// followed, the last one if `follow_last`; absolute targets start at the root; `..` stops
    /// at the root. `None` if something on the way does not exist (or is excluded).
    pub(crate) fn resolve(
        &self,
        rel: &str,
        follow_last: bool,
    ) -> Result<Option<usize>, ContextError> {
        let mut stack: Vec<String> = Vec::new();
        let mut todo: Vec<String> = rel.split('/').rev().map(str::to_owned).collect();
        let mut current = 0; // the root
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    stack.pop();
                    current = self
                        .lookup(&stack.join("/"))
                        .expect("a walked-through parent exists");
                    continue;
                }
                _ => {}
            }
            if self.entries[current].kind != EntryKind::Dir {
                return Ok(None);
            }
            stack.push(comp);
            let Some(i) = self.lookup(&stack.join("/")) else {
                return Ok(None);
            };
            let last = todo.iter().all(|c| c.is_empty() || c == ".");
            let entry = &self.entries[i];
            if entry.kind == EntryKind::Symlink && (follow_last || !last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ContextError::SymlinkLoop {
                        path: rel.to_owned(),
                    });
                }
                stack.pop();
                let target = entry.link_str().unwrap_or_default();
                if target.starts_with('/') {
                    stack.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
                current = self
                    .lookup(&stack.join("/"))
                    .expect("a walked-through parent exists");
                continue;
            }
            current = i;
        }
        Ok(Some(current))
    }
}
