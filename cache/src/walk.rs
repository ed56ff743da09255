//! The parallel, confined walk of a tree: one `statx` per entry, nothing read.
//!
//! Every step is relative to an open directory descriptor with `O_NOFOLLOW`, so a symlink or
//! a directory swapped for one mid-walk can never lead the walk outside the root: we list
//! what is under the root, nothing else. Directories are walked in parallel on rayon's pool
//! (each directory's children are a parallel iterator, so work-stealing balances wide and deep
//! trees alike). Excluded paths are dropped before they are descended into.

use crate::context::ContextError;
use crate::entry::{Entry, EntryKind};
use crate::filter::ContextFilter;
use rayon::prelude::*;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use std::ffi::CString;
use std::path::Path;

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

/// Lists every entry under `root` that `filter` keeps, the root itself (path `""`) first,
/// in [`crate::context::path_cmp`] order: each directory's children sorted by name, each
/// followed by its own subtree.
pub(crate) fn walk(
    dir: &Path,
    root: &OwnedFd,
    filter: &dyn ContextFilter,
) -> Result<Vec<Entry>, ContextError> {
    let st = statx(root, c"", AtFlags::EMPTY_PATH).map_err(|e| walk_error(dir, "", e))?;
    let root_entry = Entry::from_statx("".into(), &st).expect("an open directory has a type");
    let walker = Walker { dir, filter };
    let mut out = vec![root_entry];
    walker.dir(root, "", &mut out)?;
    Ok(out)
}

struct Walker<'a> {
    dir: &'a Path,
    filter: &'a dyn ContextFilter,
}

impl Walker<'_> {
    /// Appends everything below the directory `fd` (whose path is `rel`) to `out`.
    fn dir(&self, fd: &OwnedFd, rel: &str, out: &mut Vec<Entry>) -> Result<(), ContextError> {
        let mut names = list(fd).map_err(|e| walk_error(self.dir, rel, e))?;
        names.sort_unstable();
        let children: Vec<Vec<Entry>> = names
            .into_par_iter()
            .map(|name| self.child(fd, rel, name))
            .collect::<Result<_, _>>()?;
        out.reserve(children.iter().map(Vec::len).sum());
        for mut c in children {
            out.append(&mut c);
        }
        Ok(())
    }

    /// Stats one child of `parent` and, for a directory, walks it: the child first, then its
    /// subtree. Empty if the filter drops it.
    fn child(
        &self,
        parent: &OwnedFd,
        parent_rel: &str,
        name: CString,
    ) -> Result<Vec<Entry>, ContextError> {
        let display = name.to_string_lossy();
        let rel = if parent_rel.is_empty() {
            display.to_string()
        } else {
            format!("{parent_rel}/{display}")
        };
        let st = match statx(parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Deleted between listing and stat: it is simply not part of this build.
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(walk_error(self.dir, &rel, e)),
        };
        let kind = EntryKind::from_mode(u32::from(st.stx_mode));
        let is_dir = kind == Some(EntryKind::Dir);
        let excluded = self.filter.excluded(&rel, is_dir);
        if excluded && !(is_dir && self.filter.may_reinclude_below(&rel)) {
            return Ok(Vec::new());
        }
        if name.to_str().is_err() {
            return Err(ContextError::NonUtf8Name { path: rel });
        }
        let Some(mut entry) = Entry::from_statx(rel.into_boxed_str(), &st) else {
            return Ok(Vec::new()); // a type Linux does not have
        };
        match entry.kind {
            EntryKind::Dir => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let sub = match rustix::fs::openat(parent, &name, flags, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(Vec::new()),
                    Err(e) => return Err(walk_error(self.dir, &entry.path, e)),
                };
                let path = entry.path.clone();
                let mut out = vec![entry];
                self.dir(&sub, &path, &mut out)?;
                // An excluded directory is kept only to hold re-included children.
                if excluded && out.len() == 1 {
                    return Ok(Vec::new());
                }
                Ok(out)
            }
            EntryKind::Symlink => {
                let target = rustix::fs::readlinkat(parent, &name, Vec::new())
                    .map_err(|e| walk_error(self.dir, &entry.path, e))?;
                entry.link = Some(target.into_bytes().into_boxed_slice());
                Ok(vec![entry])
            }
            _ => Ok(vec![entry]),
        }
    }
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
