//! What a COPY/ADD reads from a tree, and the checksum of exactly that.
//!
//! A step's cache key must change when, and only when, what it copies changes. So the
//! selection is resolved by the one resolver the copy runs too ([`resolver::resolve`], over
//! this index: cleaning, wildcards, symlinks, directory subtrees, `--exclude`, `--parents`;
//! its module lists the rules), and the checksum covers each listed entry's path, type,
//! mode, (owner,) link target and bytes. A directory a source names counts only as "a
//! directory": COPY copies its contents, never the directory itself. `.dockerignore` was
//! applied when the index was scanned.
//!
//! The result lists every selected entry with its digest, so that two builds' selections can
//! be compared file by file (`--explain`) with [`SelectionSum::diff`].

use crate::checksum::Checksum;
use crate::context::ContextIndex;
use crate::entry::{EntryKind, path_cmp, source_dir_digest};
use crate::error::ContextError;
use rayon::prelude::*;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::io::{Read, Write};
use strata_graph::resolver::{self, Lookup, ResolveError, SourceEntry};
use strata_store::confined::walk;

const SELECTION_DOMAIN: &[u8] = b"strata-selection-v1\0";
const LIST_MAGIC: &[u8] = b"strata-selection-v1\n";

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
    /// `COPY --parents`: excludes are matched relative to each source's `/./` pivot.
    pub parents: bool,
}

impl Selection {
    /// A COPY/ADD of `sources`: symlink sources followed, no excludes.
    pub fn copy<S: Into<String>>(sources: impl IntoIterator<Item = S>) -> Self {
        Selection {
            sources: sources.into_iter().map(Into::into).collect(),
            excludes: Vec::new(),
            follow_links: true,
            parents: false,
        }
    }

    /// The same selection with `--exclude` patterns.
    pub fn excluding<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.excludes = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// The same selection as `COPY --parents` reads it.
    pub fn with_parents(mut self, parents: bool) -> Self {
        self.parents = parents;
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

/// One entry a selection reads and where the COPY writes it
/// ([`ContextIndex::placements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// As in [`SelectedEntry::path`].
    pub path: String,
    /// Where it lands, relative to the COPY's destination taken as a directory (`""`: the
    /// destination itself); a lone file onto a destination that is not a directory is
    /// written as the destination.
    pub dest: String,
    /// What it is (a followed symlink: its target's kind).
    pub kind: EntryKind,
    /// Named or matched by a source; a directory source is not copied itself, only what is
    /// in it.
    pub source: bool,
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
            checksum: list_checksum(
                entries
                    .iter()
                    .map(|e| (e.path.as_str(), e.kind, &e.digest.0)),
            ),
            entries,
        }
    }

    /// What changed from `older` to `self`, each list sorted by path.
    pub fn diff(&self, older: &SelectionSum) -> SelectionDiff {
        fn view(s: &SelectionSum) -> Vec<(&str, &[u8; 32])> {
            s.entries
                .iter()
                .map(|e| (e.path.as_str(), &e.digest.0))
                .collect()
        }
        diff_views(view(self), view(older))
    }

    /// The stored form: a small header, then each entry; its integrity is the checksum itself.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LIST_MAGIC.len() + 8 + self.entries.len() * 80);
        let entries = self
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, &e.digest.0));
        write_list(&mut out, entries).expect("writing to memory does not fail");
        out
    }

    /// Parses [`Self::to_bytes`]; `None` unless it is intact and its checksum is `expected`.
    pub(crate) fn from_bytes(bytes: &[u8], expected: &Checksum) -> Option<Self> {
        let entries: Vec<SelectedEntry> = stored_views(bytes, expected)?
            .into_iter()
            .map(|v| SelectedEntry {
                path: v.path.to_owned(),
                kind: v.kind,
                digest: Checksum(*v.digest),
            })
            .collect();
        Some(SelectionSum {
            checksum: *expected,
            entries,
        })
    }

    /// [`Self::diff`] of two stored lists ([`Self::to_bytes`]) read in place: what changed
    /// from `older` to `newer`, or `None` unless both are intact with their checksums. A
    /// 100,000-entry list costs its bytes and a 24-byte view per entry here, where decoding
    /// both and diffing them held about 25 MB more (bench/scaling/README.md).
    pub(crate) fn diff_stored(
        newer: (&[u8], &Checksum),
        older: (&[u8], &Checksum),
    ) -> Option<SelectionDiff> {
        let view = |(bytes, sum)| -> Option<Vec<(&str, &[u8; 32])>> {
            Some(
                stored_views(bytes, sum)?
                    .into_iter()
                    .map(|v| (v.path, v.digest))
                    .collect(),
            )
        };
        Some(diff_views(view(newer)?, view(older)?))
    }
}

/// A selection's checksum and what its list is made of ([`ContextIndex::checksum_parts`]).
#[derive(Debug)]
pub struct SelectionParts {
    checksum: Checksum,
    picks: Vec<SourceEntry<usize>>,
    kinds: Vec<EntryKind>,
    digests: Vec<Checksum>,
}

impl SelectionParts {
    /// The selection's checksum ([`SelectionSum::checksum`]).
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// Writes the list as [`SelectionSum`]'s stored form, without making it first.
    pub fn write_list(&self, w: &mut dyn Write) -> std::io::Result<()> {
        write_list(w, self.views())
    }

    /// The list itself.
    pub fn into_sum(self) -> SelectionSum {
        let entries = self
            .picks
            .into_iter()
            .zip(self.kinds)
            .zip(self.digests)
            .map(|((p, kind), digest)| SelectedEntry {
                path: p.path,
                kind,
                digest,
            })
            .collect();
        SelectionSum {
            checksum: self.checksum,
            entries,
        }
    }

    /// The index entries the list is made of.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.picks.iter().map(|p| p.node)
    }

    fn views(&self) -> impl ExactSizeIterator<Item = (&str, EntryKind, &[u8; 32])> {
        self.picks
            .iter()
            .zip(&self.kinds)
            .zip(&self.digests)
            .map(|((p, kind), d)| (p.path.as_str(), *kind, &d.0))
    }
}

/// What [`SelectionSum::diff_streams`] found.
#[derive(Debug)]
pub(crate) enum StreamedDiff {
    /// Both lists were intact.
    Diff(SelectionDiff),
    /// A list is not in path order: use [`SelectionSum::diff_stored`].
    Unsorted,
    /// A list is damaged or is not the one its checksum names.
    Damaged,
}

impl SelectionSum {
    /// [`Self::diff`] of two stored lists read as streams side by side, in constant memory:
    /// a list a COPY stored is in the resolver's path order ([`path_cmp`]), so one merge pass
    /// compares them (a one-file edit of 100,000 files held both lists, ~10 MB, to diff them).
    pub(crate) fn diff_streams(
        newer: (impl Read, &Checksum),
        older: (impl Read, &Checksum),
    ) -> StreamedDiff {
        let (Some(mut n), Some(mut o)) = (ListStream::new(newer.0), ListStream::new(older.0))
        else {
            return StreamedDiff::Damaged;
        };
        let mut d = SelectionDiff::default();
        let (mut has_n, mut has_o) = (n.advance(), o.advance());
        loop {
            if n.unsorted || o.unsorted {
                return StreamedDiff::Unsorted;
            }
            let order = match (has_n, has_o) {
                (true, true) => path_cmp(&n.path, &o.path),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => break,
            };
            match order {
                Ordering::Less => {
                    d.added.push(n.path.clone());
                    has_n = n.advance();
                }
                Ordering::Greater => {
                    d.removed.push(o.path.clone());
                    has_o = o.advance();
                }
                Ordering::Equal => {
                    if n.digest != o.digest {
                        d.changed.push(n.path.clone());
                    }
                    has_n = n.advance();
                    has_o = o.advance();
                }
            }
        }
        if !n.finish(newer.1) || !o.finish(older.1) {
            return StreamedDiff::Damaged;
        }
        // Path order to `diff`'s plain string order.
        d.added.sort_unstable();
        d.removed.sort_unstable();
        d.changed.sort_unstable();
        StreamedDiff::Diff(d)
    }
}

/// A stored list read one entry at a time, its checksum computed on the way.
struct ListStream<R> {
    reader: R,
    left: u64,
    hasher: blake3::Hasher,
    /// The current entry.
    path: String,
    digest: [u8; 32],
    /// The previous entry's path, to check the order.
    previous: String,
    /// Whether an entry was read.
    started: bool,
    damaged: bool,
    unsorted: bool,
}

impl<R: Read> ListStream<R> {
    fn new(mut reader: R) -> Option<Self> {
        let mut magic = [0u8; LIST_MAGIC.len()];
        reader.read_exact(&mut magic).ok()?;
        if magic != LIST_MAGIC {
            return None;
        }
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).ok()?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(SELECTION_DOMAIN);
        hasher.update(&count);
        Some(ListStream {
            reader,
            left: u64::from_le_bytes(count),
            hasher,
            path: String::new(),
            digest: [0; 32],
            previous: String::new(),
            started: false,
            damaged: false,
            unsorted: false,
        })
    }

    /// Moves to the next entry; false at the end of the list or at a damaged entry.
    fn advance(&mut self) -> bool {
        if self.left == 0 || self.damaged {
            return false;
        }
        match self.read_entry() {
            Some(()) => {
                self.left -= 1;
                true
            }
            None => {
                self.damaged = true;
                false
            }
        }
    }

    fn read_entry(&mut self) -> Option<()> {
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len).ok()?;
        let len = u64::from(u32::from_le_bytes(len));
        std::mem::swap(&mut self.previous, &mut self.path);
        let mut bytes = std::mem::take(&mut self.path).into_bytes();
        bytes.clear();
        (&mut self.reader).take(len).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 != len {
            return None;
        }
        self.path = String::from_utf8(bytes).ok()?;
        let mut tail = [0u8; 33];
        self.reader.read_exact(&mut tail).ok()?;
        let kind = kind_from_code(tail[0])?;
        self.digest.copy_from_slice(&tail[1..]);
        self.hasher.update(&len.to_le_bytes());
        self.hasher.update(self.path.as_bytes());
        self.hasher.update(&[kind_code(kind)]);
        self.hasher.update(&self.digest);
        // Strictly increasing (first entry aside); a path listed twice is out of order too.
        if self.started && !path_cmp(&self.previous, &self.path).is_lt() {
            self.unsorted = true;
        }
        self.started = true;
        Some(())
    }

    /// Whether the whole list was read, intact, and its checksum is `expected`.
    fn finish(mut self, expected: &Checksum) -> bool {
        !self.damaged
            && self.left == 0
            && self.reader.read(&mut [0u8; 1]).is_ok_and(|n| n == 0)
            && Checksum::from(self.hasher.finalize()) == *expected
    }
}

/// One entry of a stored list, borrowed from its bytes.
struct StoredView<'a> {
    path: &'a str,
    kind: EntryKind,
    digest: &'a [u8; 32],
}

/// The entries of a stored list, in order, if it is intact and its checksum is `expected`.
fn stored_views<'a>(bytes: &'a [u8], expected: &Checksum) -> Option<Vec<StoredView<'a>>> {
    let mut rest = bytes.strip_prefix(LIST_MAGIC)?;
    let mut take = |n: usize| -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    let mut views = Vec::with_capacity(count.min(bytes.len() / 37));
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let path = std::str::from_utf8(take(len)?).ok()?;
        let kind = kind_from_code(take(1)?[0])?;
        let digest = take(32)?.try_into().ok()?;
        views.push(StoredView { path, kind, digest });
    }
    if !rest.is_empty() {
        return None;
    }
    let sum = list_checksum(views.iter().map(|v| (v.path, v.kind, v.digest)));
    (sum == *expected).then_some(views)
}

/// What changed from `older` to `newer` (each `(path, digest)` in copy order; a path listed
/// twice counts with its last digest), each list sorted by path. Sorts the views and merges
/// them: no map of either side.
fn diff_views(
    mut newer: Vec<(&str, &[u8; 32])>,
    mut older: Vec<(&str, &[u8; 32])>,
) -> SelectionDiff {
    let by_path = |v: &mut Vec<(&str, &[u8; 32])>| {
        // Stable, so the last of equal paths is the one listed last; keep it.
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.reverse();
        v.dedup_by(|later, kept| later.0 == kept.0);
        v.reverse();
    };
    by_path(&mut newer);
    by_path(&mut older);
    let mut d = SelectionDiff::default();
    let (mut n, mut o) = (newer.iter().peekable(), older.iter().peekable());
    loop {
        match (n.peek(), o.peek()) {
            (Some(a), Some(b)) => match a.0.cmp(b.0) {
                std::cmp::Ordering::Less => {
                    d.added.push(a.0.to_owned());
                    n.next();
                }
                std::cmp::Ordering::Greater => {
                    d.removed.push(b.0.to_owned());
                    o.next();
                }
                std::cmp::Ordering::Equal => {
                    if a.1 != b.1 {
                        d.changed.push(a.0.to_owned());
                    }
                    n.next();
                    o.next();
                }
            },
            (Some(a), None) => {
                d.added.push(a.0.to_owned());
                n.next();
            }
            (None, Some(b)) => {
                d.removed.push(b.0.to_owned());
                o.next();
            }
            (None, None) => return d,
        }
    }
}

/// Writes the stored form of a list ([`SelectionSum::to_bytes`]) to `w`.
fn write_list<'a>(
    w: &mut dyn Write,
    entries: impl ExactSizeIterator<Item = (&'a str, EntryKind, &'a [u8; 32])>,
) -> std::io::Result<()> {
    w.write_all(LIST_MAGIC)?;
    w.write_all(&(entries.len() as u64).to_le_bytes())?;
    for (path, kind, digest) in entries {
        w.write_all(&(path.len() as u32).to_le_bytes())?;
        w.write_all(path.as_bytes())?;
        w.write_all(&[kind_code(kind)])?;
        w.write_all(digest)?;
    }
    Ok(())
}

fn list_checksum<'a>(
    entries: impl ExactSizeIterator<Item = (&'a str, EntryKind, &'a [u8; 32])>,
) -> Checksum {
    let mut h = blake3::Hasher::new();
    h.update(SELECTION_DOMAIN);
    h.update(&(entries.len() as u64).to_le_bytes());
    for (path, kind, digest) in entries {
        h.update(&(path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update(&[kind_code(kind)]);
        h.update(digest);
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

impl ContextIndex {
    /// The checksum of what a COPY/ADD with `selection` reads from this tree, with the list
    /// of entries it covers: the entries [`resolver::resolve`] lists, the one resolver the
    /// copy runs too. Reads (in parallel) only the selected files whose digests the stat
    /// cache did not have.
    pub fn checksum(&self, selection: &Selection) -> Result<SelectionSum, ContextError> {
        Ok(self.checksum_parts(selection)?.into_sum())
    }

    /// [`Self::checksum`] without making its list: the checksum, and what the list is made
    /// of, to write it as a stream ([`SelectionParts::write_list`]) or not at all (a no-op
    /// build, whose list is stored already). At 100,000 files the list is 6.4 MB more.
    pub fn checksum_parts(&self, selection: &Selection) -> Result<SelectionParts, ContextError> {
        let picks = self.resolve(selection)?;
        // The directory a source names stands for "a directory", nothing more: its contents
        // are copied, never itself.
        let source_dir = |p: &SourceEntry<usize>| p.source && p.kind == resolver::Kind::Dir;
        let mut files: Vec<usize> = picks
            .iter()
            .filter(|p| !source_dir(p))
            .map(|p| p.node)
            .collect();
        files.sort_unstable();
        files.dedup();
        self.ensure_contents(&files)?;
        drop(files);
        let digests: Vec<Checksum> = picks
            .par_iter()
            .map(|p| {
                if source_dir(p) {
                    source_dir_digest()
                } else {
                    let e = &self.entries[p.node];
                    e.digest(self.content(p.node).map(|c| &c.hash), self.ownership)
                }
            })
            .collect();
        let kinds: Vec<EntryKind> = picks.iter().map(|p| self.entries[p.node].kind).collect();
        let mut parts = SelectionParts {
            checksum: Checksum([0; 32]),
            picks,
            kinds,
            digests,
        };
        parts.checksum = list_checksum(parts.views());
        Ok(parts)
    }

    /// The entries [`Self::checksum`] covers, with where the COPY writes each one: the list
    /// the copy executes, to compare what is keyed with what is written.
    pub fn placements(&self, selection: &Selection) -> Result<Vec<Placement>, ContextError> {
        Ok(self
            .resolve(selection)?
            .into_iter()
            .map(|p| Placement {
                kind: self.entries[p.node].kind,
                dest: p.dest().to_owned(),
                path: p.path,
                source: p.source,
            })
            .collect())
    }

    fn resolve(&self, selection: &Selection) -> Result<Vec<SourceEntry<usize>>, ContextError> {
        let req = resolver::Request {
            sources: &selection.sources,
            excludes: &selection.excludes,
            follow_links: selection.follow_links,
            parents: selection.parents,
            below: true,
        };
        resolver::resolve(&Listing(self), &req).map_err(|e| match e {
            ResolveError::NotFound { path } => ContextError::NotFound { path },
            ResolveError::Loop { path } => ContextError::SymlinkLoop { path },
            ResolveError::BadPattern { pattern } => ContextError::BadPattern { pattern },
            ResolveError::BadExclude { pattern, source } => {
                ContextError::BadExclude { pattern, source }
            }
            ResolveError::Tree(never) => match never {},
        })
    }
}

/// The listing of a tree, as [`walk::resolve`] walks it: a node is an entry's index.
struct Listing<'a>(&'a ContextIndex);

impl walk::Tree for Listing<'_> {
    type Node = usize;
    type Error = std::convert::Infallible;

    fn root(&self) -> Result<usize, Self::Error> {
        Ok(self.0.lookup("").expect("a listing has its root"))
    }

    fn parent(&self, dir: &usize) -> Result<usize, Self::Error> {
        let path = &*self.0.entries[*dir].path;
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        Ok(self
            .0
            .lookup(parent)
            .expect("a walked-through parent exists"))
    }

    fn child(&self, dir: &usize, name: &[u8]) -> Result<walk::Child<usize>, Self::Error> {
        // Context names are UTF-8 (the walk refuses others), so no entry has this one.
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(walk::Child::Missing);
        };
        let base = &*self.0.entries[*dir].path;
        let path = if base.is_empty() {
            name.to_owned()
        } else {
            format!("{base}/{name}")
        };
        let Some(i) = self.0.lookup(&path) else {
            return Ok(walk::Child::Missing);
        };
        let entry = &self.0.entries[i];
        Ok(match entry.kind {
            EntryKind::Dir => walk::Child::Dir(i),
            EntryKind::Symlink => {
                walk::Child::Symlink(i, entry.link.as_deref().unwrap_or_default().to_vec())
            }
            _ => walk::Child::Other(i),
        })
    }
}

impl resolver::SourceTree for Listing<'_> {
    type Node = usize;
    type Error = std::convert::Infallible;

    fn lookup(&self, path: &str, follow_last: bool) -> Result<Lookup<usize>, Self::Error> {
        Ok(match walk::resolve(self, path.as_bytes(), follow_last)? {
            walk::Resolved::Found(i) => Lookup::Found(i),
            walk::Resolved::Missing | walk::Resolved::NotDir => Lookup::Missing,
            walk::Resolved::Loop => Lookup::Loop,
        })
    }

    fn kind(&self, node: &usize) -> resolver::Kind {
        match self.0.entries[*node].kind {
            EntryKind::Dir => resolver::Kind::Dir,
            EntryKind::Symlink => resolver::Kind::Symlink,
            _ => resolver::Kind::Other,
        }
    }

    fn children(&self, dir: &usize) -> Result<resolver::Children<'_, usize>, Self::Error> {
        // Where a child's name starts in its path (the root has no `/` to skip).
        let skip = match self.0.entries[*dir].path.len() {
            0 => 0,
            n => n + 1,
        };
        let end = self.0.subtree(*dir).end;
        // The children in index order: each directory's subtree is skipped in one step.
        let first = Some(*dir + 1).filter(|&i| i < end);
        let indices = std::iter::successors(first, |&i| {
            let next = if self.0.entries[i].kind == EntryKind::Dir {
                self.0.subtree(i).end
            } else {
                i + 1
            };
            (next < end).then_some(next)
        });
        // Counted first, so that the list is allocated once at its size.
        let mut out = Vec::with_capacity(indices.clone().count());
        out.extend(indices.map(|i| (Cow::Borrowed(&self.0.entries[i].path[skip..]), i)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ScanOptions;
    use crate::entry::Ownership;
    use crate::filter::ContextFilter;
    use crate::fixture::Tree;
    use EntryKind::{Dir, Fifo, File, Symlink};

    fn sum_of(entries: &[(&str, u8)]) -> SelectionSum {
        SelectionSum::new(
            entries
                .iter()
                .map(|(path, d)| SelectedEntry {
                    path: path.to_string(),
                    kind: File,
                    digest: Checksum([*d; 32]),
                })
                .collect(),
        )
    }

    /// The stored lists diffed as streams, or read whole, say what the in-memory diff says:
    /// `/` sorts first in a COPY's order (`a/b` < `a-b`), the diff's lists in string order.
    #[test]
    fn stored_lists_diff_as_the_decoded_ones_do() {
        let old = sum_of(&[("a", 1), ("a/b", 2), ("a/c", 3), ("a-b", 4), ("b", 5)]);
        let new = sum_of(&[("a", 1), ("a/b", 9), ("a/bb", 3), ("a-b", 4), ("c", 6)]);
        let want = SelectionDiff {
            added: vec!["a/bb".into(), "c".into()],
            removed: vec!["a/c".into(), "b".into()],
            changed: vec!["a/b".into()],
        };
        assert_eq!(new.diff(&old), want);
        let (nb, ob) = (new.to_bytes(), old.to_bytes());
        let streamed =
            SelectionSum::diff_streams((&nb[..], &new.checksum), (&ob[..], &old.checksum));
        assert!(
            matches!(&streamed, StreamedDiff::Diff(d) if *d == want),
            "{streamed:?}"
        );
        let whole = SelectionSum::diff_stored((&nb, &new.checksum), (&ob, &old.checksum));
        assert_eq!(whole, Some(want));
        assert!(new.diff(&new).is_empty());
        // A list not in path order (a path twice, the last one counting) is read whole.
        let twice = sum_of(&[("b", 1), ("a", 1), ("b", 5)]);
        let tb = twice.to_bytes();
        let streamed =
            SelectionSum::diff_streams((&tb[..], &twice.checksum), (&ob[..], &old.checksum));
        assert!(matches!(streamed, StreamedDiff::Unsorted), "{streamed:?}");
        let whole = SelectionSum::diff_stored((&tb, &twice.checksum), (&ob, &old.checksum));
        assert_eq!(whole, Some(twice.diff(&old)));
        assert_eq!(whole.unwrap().removed, ["a-b", "a/b", "a/c"]);
    }

    /// Any flipped byte or cut, on either side, is damage: never a diff.
    #[test]
    fn a_damaged_stored_list_gives_no_diff() {
        let old = sum_of(&[("a", 1), ("a/b", 2), ("c", 3)]);
        let new = sum_of(&[("a", 1), ("a/b", 7), ("c", 3)]);
        let (nb, ob) = (new.to_bytes(), old.to_bytes());
        for i in 0..nb.len() {
            let mut bad = nb.clone();
            bad[i] ^= 0x40;
            for bytes in [&bad[..], &nb[..i]] {
                let streamed =
                    SelectionSum::diff_streams((bytes, &new.checksum), (&ob[..], &old.checksum));
                assert!(
                    !matches!(streamed, StreamedDiff::Diff(_)),
                    "damage at {i} not seen"
                );
                let whole = SelectionSum::diff_stored((bytes, &new.checksum), (&ob, &old.checksum));
                assert_eq!(whole, None, "damage at {i} not seen");
            }
        }
        // The right bytes under another list's checksum are damage too.
        let swapped =
            SelectionSum::diff_streams((&ob[..], &new.checksum), (&ob[..], &old.checksum));
        assert!(matches!(swapped, StreamedDiff::Damaged));
    }

    /// The tree every selection case runs against.
    fn tree() -> Tree {
        let t = Tree::new();
        t.file("a.txt", "A", 0o644)
            .file("b.txt", "B", 0o644)
            .file("src/main.rs", "fn main() {}", 0o644)
            .file("src/lib.rs", "pub fn f() {}", 0o644)
            .file("src/sub/x.rs", "x", 0o644)
            .file("docs/readme.md", "# hi", 0o644)
            .file("run.sh", "#!/bin/sh\n", 0o4755)
            .symlink("link_a", "a.txt")
            .symlink("link_src", "src")
            .symlink("abs_link", "/a.txt")
            .symlink("out_link", "../../../../etc/passwd")
            .symlink("dangling", "nope")
            .symlink("loop1", "loop2")
            .symlink("loop2", "loop1")
            .symlink("src/up", "../b.txt")
            .fifo("pipe");
        t
    }

    fn listing(sum: &SelectionSum) -> Vec<(String, EntryKind)> {
        sum.entries
            .iter()
            .map(|e| (e.path.clone(), e.kind))
            .collect()
    }

    fn owned(expected: &[(&str, EntryKind)]) -> Vec<(String, EntryKind)> {
        expected
            .iter()
            .map(|(p, k)| ((*p).to_owned(), *k))
            .collect()
    }

    /// Sources, excludes, follow_links, and the entries expected in order.
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        bool,
        &'static [(&'static str, EntryKind)],
    );

    const SRC_TREE: &[(&str, EntryKind)] = &[
        ("src", Dir),
        ("src/lib.rs", File),
        ("src/main.rs", File),
        ("src/sub", Dir),
        ("src/sub/x.rs", File),
        ("src/up", Symlink),
    ];

    #[test]
    fn sources_select_what_docker_copies() {
        let t = tree();
        let index = t.scan();
        let cases: &[Case] = &[
            (&["a.txt"], &[], true, &[("a.txt", File)]),
            (&["/a.txt"], &[], true, &[("a.txt", File)]),
            (&["./src/../a.txt"], &[], true, &[("a.txt", File)]),
            (&["../../a.txt"], &[], true, &[("a.txt", File)]),
            (&["a.txt/"], &[], true, &[("a.txt", File)]),
            (&["src"], &[], true, SRC_TREE),
            (&["src/"], &[], true, SRC_TREE),
            (
                &["src/sub"],
                &[],
                true,
                &[("src/sub", Dir), ("src/sub/x.rs", File)],
            ),
            (&["*.txt"], &[], true, &[("a.txt", File), ("b.txt", File)]),
            (
                &["src/*.rs"],
                &[],
                true,
                &[("src/lib.rs", File), ("src/main.rs", File)],
            ),
            // `*` never crosses a `/`; a symlinked directory is not searched by a glob.
            (
                &["*/*.rs"],
                &[],
                true,
                &[("src/lib.rs", File), ("src/main.rs", File)],
            ),
            (
                &["src/s?b"],
                &[],
                true,
                &[("src/sub", Dir), ("src/sub/x.rs", File)],
            ),
            (
                &["[ab].txt"],
                &[],
                true,
                &[("a.txt", File), ("b.txt", File)],
            ),
            (&["[^a].txt"], &[], true, &[("b.txt", File)]),
            // A glob matching nothing copies nothing, as Docker does.
            (&["nomatch*"], &[], true, &[]),
            (&["missing/*.rs"], &[], true, &[]),
            // Sources keep their order.
            (
                &["b.txt", "a.txt"],
                &[],
                true,
                &[("b.txt", File), ("a.txt", File)],
            ),
            // A followed symlink copies its target's bytes under the link's name...
            (&["link_a"], &[], true, &[("link_a", File)]),
            (&["abs_link"], &[], true, &[("abs_link", File)]),
            (
                &["link_*"],
                &[],
                true,
                &[
                    ("link_a", File),
                    ("link_src", Dir),
                    ("link_src/lib.rs", File),
                    ("link_src/main.rs", File),
                    ("link_src/sub", Dir),
                    ("link_src/sub/x.rs", File),
                    ("link_src/up", Symlink),
                ],
            ),
            // ...unless links are not followed; then it is the link itself.
            (&["link_a"], &[], false, &[("link_a", Symlink)]),
            // Symlinks in the middle are always followed, inside the root.
            (
                &["link_src/main.rs"],
                &[],
                false,
                &[("link_src/main.rs", File)],
            ),
            (&["link_src/up"], &[], true, &[("link_src/up", File)]),
            // Special files are recorded, never read.
            (&["pipe"], &[], true, &[("pipe", Fifo)]),
            // Excludes are relative to the source and work like .dockerignore.
            (
                &["src"],
                &["*.rs"],
                true,
                &[
                    ("src", Dir),
                    ("src/sub", Dir),
                    ("src/sub/x.rs", File),
                    ("src/up", Symlink),
                ],
            ),
            (
                &["src"],
                &["sub"],
                true,
                &[
                    ("src", Dir),
                    ("src/lib.rs", File),
                    ("src/main.rs", File),
                    ("src/up", Symlink),
                ],
            ),
            (
                &["src"],
                &["**/*.rs", "!main.rs"],
                true,
                &[
                    ("src", Dir),
                    ("src/main.rs", File),
                    ("src/sub", Dir),
                    ("src/up", Symlink),
                ],
            ),
            (&["src"], &["sub", "!sub/x.rs"], true, SRC_TREE),
            // A matched symlink is followed like a named one.
            (
                &["src/*"],
                &["x.rs"],
                true,
                &[
                    ("src/lib.rs", File),
                    ("src/main.rs", File),
                    ("src/sub", Dir),
                    ("src/up", File),
                ],
            ),
        ];
        for (sources, excludes, follow, want) in cases {
            let sel = Selection {
                sources: sources.iter().map(|s| s.to_string()).collect(),
                excludes: excludes.iter().map(|s| s.to_string()).collect(),
                follow_links: *follow,
                parents: false,
            };
            let sum = index
                .checksum(&sel)
                .unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            assert_eq!(listing(&sum), owned(want), "{sel:?}");
        }
        // Only selected files are read (not docs/readme.md, run.sh), each once.
        assert_eq!(index.stats().content_reads, 5);
    }

    /// `COPY --exclude` with `!` exceptions, as BuildKit's copier applies them: patterns are
    /// relative to the source, the last match wins, an excluded directory is walked when an
    /// exception may reach inside and is selected only as the parent of something selected.
    /// `worker/tests/sandbox/files.rs` (`copy_exclude_exceptions_copy_what_the_cache_counts`)
    /// copies the same tree with the same patterns and must write exactly these paths.
    #[test]
    fn exclude_exceptions_select_what_the_copy_writes() {
        let t = Tree::new();
        for f in [
            "app/main.c",
            "app/a.log",
            "app/keep.log",
            "app/sub/b.log",
            "app/sub/keep.log",
            "app/tmp/x.txt",
            "app/cache/keep.log",
            "app/cache/junk.bin",
        ] {
            t.file(f, f, 0o644);
        }
        let sel = Selection::copy(["app"]).excluding([
            "**/*.log",
            "!**/keep.log",
            "tmp",
            "!tmp/none",
            "cache",
            "!cache/keep.log",
        ]);
        let sum = t.scan().checksum(&sel).unwrap();
        assert_eq!(
            listing(&sum),
            owned(&[
                ("app", Dir),
                ("app/cache", Dir),
                ("app/cache/keep.log", File),
                ("app/keep.log", File),
                ("app/main.c", File),
                ("app/sub", Dir),
                ("app/sub/keep.log", File),
            ])
        );
        // The same without the exceptions: every log is gone, and so are both directories.
        let sel = Selection::copy(["app"]).excluding(["**/*.log", "tmp", "cache"]);
        assert_eq!(
            listing(&t.scan().checksum(&sel).unwrap()),
            owned(&[("app", Dir), ("app/main.c", File), ("app/sub", Dir)])
        );
    }

    /// An excluded directory that an exception could reach into but does not is not selected
    /// (it was, as an empty directory, before the copy and the cache shared one matcher).
    #[test]
    fn an_excluded_directory_comes_only_with_what_it_brings_back() {
        let t = tree();
        let index = t.scan();
        let sel = Selection::copy(["src"]).excluding(["sub", "!sub/none.rs"]);
        assert_eq!(
            listing(&index.checksum(&sel).unwrap()),
            owned(&[
                ("src", Dir),
                ("src/lib.rs", File),
                ("src/main.rs", File),
                ("src/up", Symlink),
            ])
        );
        // Deeper: the exception brings back a file two excluded directories down.
        t.file("src/sub/deep/y.rs", "y", 0o644)
            .file("src/sub/deep/z.rs", "z", 0o644);
        let sel = Selection::copy(["src"]).excluding(["sub", "!sub/deep/y.rs"]);
        let got = listing(&t.scan().checksum(&sel).unwrap());
        assert_eq!(
            got[3..6],
            owned(&[
                ("src/sub", Dir),
                ("src/sub/deep", Dir),
                ("src/sub/deep/y.rs", File)
            ])[..]
        );
        assert_eq!(got.len(), 7, "{got:?}");
    }

    /// BuildKit never matches `--exclude` against a source itself, only against what is below
    /// a directory source (moby/buildkit#5489: `COPY --exclude=a * .` copies `a`).
    #[test]
    fn excludes_never_drop_a_source_itself() {
        let t = tree();
        let index = t.scan();
        let sel = Selection::copy(["*.txt"]).excluding(["a.txt", "*.txt"]);
        assert_eq!(
            listing(&index.checksum(&sel).unwrap()),
            owned(&[("a.txt", File), ("b.txt", File)])
        );
    }

    #[test]
    fn the_root_as_source_is_the_whole_tree() {
        let t = Tree::new();
        t.file("a", "1", 0o644)
            .file("d/b", "2", 0o600)
            .symlink("l", "a");
        let sum = t.scan().checksum(&Selection::copy(["."])).unwrap();
        assert_eq!(
            listing(&sum),
            owned(&[
                ("", Dir),
                ("a", File),
                ("d", Dir),
                ("d/b", File),
                ("l", Symlink)
            ])
        );
    }

    #[test]
    fn nested_directory_modes_count_the_source_directory_does_not() {
        let t = Tree::new();
        t.dir("d/empty", 0o755).file("d/f", "x", 0o644);
        let sel = Selection::copy(["d"]);
        let first = t.scan().checksum(&sel).unwrap();
        assert_eq!(
            listing(&first),
            owned(&[("d", Dir), ("d/empty", Dir), ("d/f", File)])
        );
        t.chmod("d", 0o700);
        assert_eq!(t.scan().checksum(&sel).unwrap().checksum, first.checksum);
        t.chmod("d/empty", 0o700);
        let second = t.scan().checksum(&sel).unwrap();
        assert_eq!(second.diff(&first).changed, ["d/empty"]);
    }

    #[test]
    fn bad_sources_fail_like_docker() {
        let t = tree();
        let index = t.scan();
        let err = |sources: &[&str], excludes: &[&str]| {
            let sel = Selection::copy(sources.iter().copied()).excluding(excludes.iter().copied());
            index.checksum(&sel).expect_err("should fail").to_string()
        };
        assert_eq!(err(&["missing"], &[]), "\"/missing\": not found");
        assert_eq!(err(&["src/nope.rs"], &[]), "\"/src/nope.rs\": not found");
        // A file is not a directory.
        assert_eq!(err(&["a.txt/x"], &[]), "\"/a.txt/x\": not found");
        assert_eq!(err(&["dangling"], &[]), "\"/dangling\": not found");
        // Links never leave the context: ../../etc/passwd is /etc/passwd *inside* it.
        assert_eq!(err(&["out_link"], &[]), "\"/out_link\": not found");
        assert!(err(&["loop1"], &[]).starts_with("too many levels of symbolic links"));
        assert_eq!(err(&["src/[",], &[]), "invalid source pattern \"src/[\"");
        assert_eq!(
            err(&["a.txt"], &["ok", "["]),
            "invalid exclude pattern \"[\""
        );
        assert_eq!(err(&["a.txt"], &["!"]), "invalid exclude pattern \"!\"");
        // A dangling link that is not followed is fine: it is copied as a link.
        let sel = Selection {
            follow_links: false,
            ..Selection::copy(["dangling"])
        };
        assert_eq!(
            listing(&index.checksum(&sel).unwrap()),
            owned(&[("dangling", Symlink)])
        );
    }

    #[test]
    fn links_inside_a_copied_directory_are_not_followed() {
        let t = Tree::new();
        t.file("target.txt", "one", 0o644)
            .symlink("d/link", "../target.txt");
        let before = t.scan().checksum(&Selection::copy(["d"])).unwrap();
        t.file("target.txt", "two", 0o644);
        let after = t.scan().checksum(&Selection::copy(["d"])).unwrap();
        assert_eq!(
            before.checksum, after.checksum,
            "the link's target is not part of d"
        );
        t.symlink("d/link2", "../target.txt");
        fs_err::remove_file(t.path("d/link")).unwrap();
        t.symlink("d/link", "elsewhere");
        let retargeted = t.scan().checksum(&Selection::copy(["d"])).unwrap();
        assert_ne!(
            retargeted.checksum, after.checksum,
            "the link's target text is"
        );
    }

    #[test]
    fn touching_is_free_editing_invalidates_only_what_reads_it() {
        let t = tree();
        let sels = [
            Selection::copy(["a.txt"]),
            Selection::copy(["src"]),
            Selection::copy(["."]),
            Selection::copy(["*.rs"]),
        ];
        let sums = |index: &ContextIndex| -> Vec<Checksum> {
            sels.iter()
                .map(|s| index.checksum(s).unwrap().checksum)
                .collect()
        };
        let first = sums(&t.scan());
        t.touch("a.txt").touch("src/main.rs").touch("src");
        assert_eq!(sums(&t.scan()), first, "mtimes never count");

        t.file("src/main.rs", "fn main() { changed() }", 0o644);
        let second = sums(&t.scan());
        assert_eq!(second[0], first[0], "COPY a.txt does not read src/main.rs");
        assert_ne!(second[1], first[1]);
        assert_ne!(second[2], first[2]);
        assert_eq!(second[3], first[3], "*.rs matches nothing at the root");

        t.chmod("a.txt", 0o755);
        let third = sums(&t.scan());
        assert_ne!(third[0], second[0], "chmod changes the checksum");
        assert_eq!(third[1], second[1]);
        t.chmod("a.txt", 0o4755);
        assert_ne!(sums(&t.scan())[0], third[0], "so does the setuid bit");
    }

    #[test]
    fn diff_names_changed_added_and_removed_files() {
        let t = tree();
        let old = t.scan().checksum(&Selection::copy(["src"])).unwrap();
        t.file("src/main.rs", "fn main() { 2 }", 0o644)
            .file("src/new.rs", "", 0o644);
        fs_err::remove_file(t.path("src/lib.rs")).unwrap();
        t.chmod("src/sub/x.rs", 0o600);
        let new = t.scan().checksum(&Selection::copy(["src"])).unwrap();
        let diff = new.diff(&old);
        assert_eq!(diff.changed, ["src/main.rs", "src/sub/x.rs"]);
        assert_eq!(diff.added, ["src/new.rs"]);
        assert_eq!(diff.removed, ["src/lib.rs"]);
        assert!(new.diff(&new).is_empty());
    }

    #[test]
    fn stored_lists_round_trip_and_reject_damage() {
        let t = tree();
        let sum = t.scan().checksum(&Selection::copy(["."])).unwrap();
        let bytes = sum.to_bytes();
        assert_eq!(
            SelectionSum::from_bytes(&bytes, &sum.checksum),
            Some(sum.clone())
        );
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(
                SelectionSum::from_bytes(&bad, &sum.checksum),
                None,
                "flip at {i}"
            );
        }
        assert_eq!(
            SelectionSum::from_bytes(&bytes[..bytes.len() - 1], &sum.checksum),
            None
        );
        assert_eq!(SelectionSum::from_bytes(&bytes, &Checksum([0; 32])), None);
    }

    struct Ignore(&'static [&'static str], &'static [&'static str]);

    impl ContextFilter for Ignore {
        fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
            self.0
                .iter()
                .any(|p| rel == *p || rel.starts_with(&format!("{p}/")))
                && !self.1.contains(&rel)
        }
        fn may_reinclude_below(&self, rel_dir: &str) -> bool {
            self.1.iter().any(|k| k.starts_with(&format!("{rel_dir}/")))
        }
    }

    #[test]
    fn ignored_files_never_count_and_cannot_be_copied() {
        let t = tree();
        t.file("secret.env", "TOKEN=1", 0o600)
            .file("node_modules/x/y.js", "y", 0o644);
        t.file("docs/keep.md", "keep", 0o644)
            .symlink("alias", "secret.env");
        t.symlink("alias_dir", "node_modules");
        let filter = Ignore(&["secret.env", "node_modules", "docs"], &["docs/keep.md"]);
        let opts = ScanOptions {
            filter: &filter,
            ..ScanOptions::default()
        };
        let index = t.scan_with(&opts);
        let all = index.checksum(&Selection::copy(["."])).unwrap();
        let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
        assert!(
            !paths
                .iter()
                .any(|p| p.starts_with("secret") || p.starts_with("node_modules"))
        );
        assert!(paths.contains(&"docs") && paths.contains(&"docs/keep.md"));
        assert!(!paths.contains(&"docs/readme.md"));
        assert_eq!(
            index
                .checksum(&Selection::copy(["secret.env"]))
                .unwrap_err()
                .to_string(),
            "\"/secret.env\": not found"
        );
        t.file("secret.env", "TOKEN=2", 0o644)
            .file("node_modules/x/z.js", "z", 0o644);
        t.file("docs/readme.md", "changed", 0o644);
        let again = t
            .scan_with(&opts)
            .checksum(&Selection::copy(["."]))
            .unwrap();
        assert_eq!(again.checksum, all.checksum);
    }

    #[test]
    fn owners_count_only_when_kept() {
        let t = Tree::new();
        t.file("f", "x", 0o644);
        let keep = ScanOptions {
            ownership: Ownership::Keep,
            ..ScanOptions::default()
        };
        let sel = Selection::copy(["f"]);
        let ignored = t.scan().checksum(&sel).unwrap().checksum;
        let kept = t.scan_with(&keep).checksum(&sel).unwrap().checksum;
        std::os::unix::fs::chown(t.path("f"), Some(1234), Some(5678)).expect("tests run as root");
        assert_eq!(
            t.scan().checksum(&sel).unwrap().checksum,
            ignored,
            "context: 0:0 anyway"
        );
        assert_ne!(
            t.scan_with(&keep).checksum(&sel).unwrap().checksum,
            kept,
            "stage output"
        );
    }
}
