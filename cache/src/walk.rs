//! The parallel, confined walk of a tree: one `statx` per entry, nothing read.
//!
//! Every step is relative to an open directory descriptor with `O_NOFOLLOW`, so a symlink or
//! a directory swapped for one mid-walk can never lead the walk outside the root: we list
//! what is under the root, nothing else. Directories are walked in parallel on rayon's pool
//! (each directory's children are a parallel iterator, so work-stealing balances wide and deep
//! trees alike). Excluded paths are dropped before they are descended into.
//!
//! Recursion is bounded: a directory [`MAX_NEST`] levels below where a round started is not
//! descended into but queued, and later rounds reopen queued directories from the root
//! (`openat2` with `RESOLVE_BENEATH`). A context nested thousands of levels deep therefore
//! costs a few more rounds, not a stack overflow.

use crate::entry::{Entry, EntryKind};
use crate::error::ContextError;
use crate::filter::ContextFilter;
use rayon::prelude::*;
use rustix::fd::AsFd;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use std::ffi::CString;
use std::path::Path;
use std::sync::Mutex;
use strata_store::confined;

/// Directory levels one walk round descends before queueing the rest for a later round.
const MAX_NEST: usize = 64;

/// Opens the root of a tree to walk.
pub(crate) fn open_root(dir: &Path) -> Result<OwnedFd, ContextError> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ContextError::Open {
        dir: dir.to_owned(),
        source: e.into(),
    })
}

/// Lists every entry under `root` that `filter` keeps, the root itself (path `""`) first.
/// Usually in [`crate::entry::path_cmp`] order (each directory's children sorted by name,
/// each followed by its own subtree); trees deeper than [`MAX_NEST`] come out unsorted.
pub(crate) fn walk(
    dir: &Path,
    root: &OwnedFd,
    filter: &dyn ContextFilter,
) -> Result<Vec<Entry>, ContextError> {
    let st = statx(root, c"", AtFlags::EMPTY_PATH).map_err(|e| walk_error(dir, "", e))?;
    let root_entry = Entry::from_statx("".into(), &st).expect("an open directory has a type");
    let walker = Walker {
        dir,
        filter,
        queued: Mutex::new(Vec::new()),
    };
    let mut out = vec![root_entry];
    walker.dir(root, "", 0, &mut out)?;
    loop {
        let queued = std::mem::take(&mut *walker.queued.lock().expect("no walk thread panics"));
        if queued.is_empty() {
            return Ok(out);
        }
        let rounds: Vec<Vec<Entry>> = queued
            .into_par_iter()
            .map(|rel| {
                let fd = open_beneath(root, &rel, dir_flags()).map_err(|e| ContextError::Walk {
                    dir: dir.to_owned(),
                    path: rel.clone(),
                    source: e,
                })?;
                let mut below = Vec::new();
                walker.dir(&fd, &rel, 0, &mut below)?;
                Ok(below)
            })
            .collect::<Result<_, ContextError>>()?;
        for mut r in rounds {
            out.append(&mut r);
        }
    }
}

/// What one directory child contributes: nothing, itself, or itself and its subtree.
enum Child {
    Dropped,
    Leaf(Entry),
    Tree(Vec<Entry>),
}

impl Child {
    fn len(&self) -> usize {
        match self {
            Child::Dropped => 0,
            Child::Leaf(_) => 1,
            Child::Tree(t) => t.len(),
        }
    }
}

struct Walker<'a> {
    dir: &'a Path,
    filter: &'a dyn ContextFilter,
    /// Directories left for a later round (their own entries are already listed).
    queued: Mutex<Vec<String>>,
}

impl Walker<'_> {
    /// Appends everything below the directory `fd` (whose path is `rel`, `nest` levels below
    /// where this round started) to `out`.
    fn dir(
        &self,
        fd: &OwnedFd,
        rel: &str,
        nest: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), ContextError> {
        let mut names = list(fd).map_err(|e| walk_error(self.dir, rel, e))?;
        names.sort_unstable();
        let children: Vec<Child> = names
            .into_par_iter()
            .map(|name| self.child(fd, rel, nest, name))
            .collect::<Result<_, _>>()?;
        // Grow `out` once: appending subtrees one by one doubled it up to the whole context's
        // size again at every level, megabytes of fresh pages on a 20,000-file no-op build.
        out.reserve(children.iter().map(Child::len).sum());
        for c in children {
            match c {
                Child::Dropped => {}
                Child::Leaf(e) => out.push(e),
                Child::Tree(mut t) => out.append(&mut t),
            }
        }
        Ok(())
    }

    /// Stats one child of `parent` and, for a directory, walks it: the child first, then its
    /// subtree. Empty if the filter drops it.
    fn child(
        &self,
        parent: &OwnedFd,
        parent_rel: &str,
        nest: usize,
        name: CString,
    ) -> Result<Child, ContextError> {
        let display = name.to_string_lossy();
        // Exactly sized, so the entry's `Box<str>` below takes it without a reallocation.
        let mut rel = String::with_capacity(parent_rel.len() + 1 + display.len());
        if !parent_rel.is_empty() {
            rel.push_str(parent_rel);
            rel.push('/');
        }
        rel.push_str(&display);
        let st = match statx(parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Deleted between listing and stat: it is simply not part of this build.
            Err(Errno::NOENT) => return Ok(Child::Dropped),
            Err(e) => return Err(walk_error(self.dir, &rel, e)),
        };
        let kind = EntryKind::from_mode(u32::from(st.stx_mode));
        let is_dir = kind == Some(EntryKind::Dir);
        let excluded = self.filter.excluded(&rel, is_dir);
        if excluded && !(is_dir && self.filter.may_reinclude_below(&rel)) {
            return Ok(Child::Dropped);
        }
        if name.to_str().is_err() {
            return Err(ContextError::NonUtf8Name { path: rel });
        }
        let Some(mut entry) = Entry::from_statx(rel.into_boxed_str(), &st) else {
            return Ok(Child::Dropped); // a type Linux does not have
        };
        match entry.kind {
            EntryKind::Dir if nest + 1 >= MAX_NEST => {
                // Deep enough for this round. (An excluded directory queued here is kept
                // even if nothing below it is re-included: a harmless empty directory.)
                let mut queued = self.queued.lock().expect("no walk thread panics");
                queued.push(entry.path.to_string());
                Ok(Child::Leaf(entry))
            }
            EntryKind::Dir => {
                let sub = match rustix::fs::openat(parent, &name, dir_flags(), Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(Child::Dropped),
                    Err(e) => return Err(walk_error(self.dir, &entry.path, e)),
                };
                let path = entry.path.clone();
                let mut out = vec![entry];
                self.dir(&sub, &path, nest + 1, &mut out)?;
                // An excluded directory is kept only to hold re-included children.
                if excluded && out.len() == 1 {
                    return Ok(Child::Dropped);
                }
                Ok(Child::Tree(out))
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(parent, &name, Vec::new())
                    .map_err(|e| walk_error(self.dir, &entry.path, e))?;
                entry.link = Some(target.into_bytes().into_boxed_slice());
                Ok(Child::Leaf(entry))
            }
            _ => Ok(Child::Leaf(entry)),
        }
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the regular file `rel` under `root` for reading. `O_NONBLOCK` so that a fifo
/// swapped in after the walk never blocks the open; the caller checks the type before reading.
pub(crate) fn open_file_beneath(root: &OwnedFd, rel: &str) -> std::io::Result<std::fs::File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(open_beneath(root, rel, flags)?.into())
}

/// Opens `rel` under `root` without following any symlink and without leaving the root, even
/// if the tree changes under us.
fn open_beneath(root: &OwnedFd, rel: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
    confined::open_no_symlinks(root.as_fd(), rel, flags, 0)
}

fn list(fd: &OwnedFd) -> Result<Vec<CString>, Errno> {
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(fd)? {
        let item = item?;
        let name = item.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

pub(crate) fn statx(
    dirfd: impl rustix::fd::AsFd,
    name: &std::ffi::CStr,
    flags: AtFlags,
) -> Result<rustix::fs::Statx, Errno> {
    rustix::fs::statx(
        dirfd,
        name,
        flags | AtFlags::STATX_SYNC_AS_STAT,
        StatxFlags::BASIC_STATS,
    )
}

fn walk_error(dir: &Path, rel: &str, e: Errno) -> ContextError {
    ContextError::Walk {
        dir: dir.to_owned(),
        path: rel.to_owned(),
        source: e.into(),
    }
}
