//! Incremental COPY from a build context. When a COPY runs again because some context files
//! changed, and nothing else did (same definition, same parent, the same set of paths), its
//! earlier result is most of the new one. The new layer then starts as a clone of the earlier
//! layer directory: every non-directory *hard-linked*, every directory recreated with its
//! owner, mode, xattrs and times. The COPY then runs as always, except that a regular file
//! whose context path is not among the changed ones, and whose copy already sits at its
//! destination with the size, mtime, mode and owner this copy would give it, is left alone.
//! The result is the same tree a full copy makes (the layer's bytes are the same), made with
//! links instead of writes.
//!
//! What the destination holds is known from the clone, not asked of it again: the clone
//! `lstat`s each entry of the earlier layer anyway, and keeps what a regular file's check
//! needs ([`Cloned`]), so the COPY's walk compares each context file with that instead of an
//! `lstat` through the freshly mounted overlay (a lookup the overlay has not cached: 4× an
//! `lstat` of the layer itself). Each entry is given out once: a second visit of a path in
//! the same COPY (two sources onto one destination) finds nothing and copies, since the
//! first may have written there; once a destination is reached through a symlink (where the
//! copy writes, no layer path says), the filesystem is asked for the rest of the operation.
//!
//! Why links are safe: layer directories are immutable once adopted (they are overlay
//! lowers, and the overlay copies a file up before changing it); the COPY replaces a
//! destination entry by unlinking it and creating a new one ([`crate::copy`]), never by
//! writing through it; a skipped file is not touched at all. The layer writer pairs hard
//! links only within the walk of one layer, so a linked file is still written out in full.

use crate::sys;
use crate::written;
use rustix::fs::OFlags;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use strata_store::confined;

/// The same step's earlier result, for an incremental COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Its layer directory (a snapshot, in overlayfs format).
    pub layer: PathBuf,
    /// Context paths (relative to the context root, `/`-separated) whose content differs
    /// from what made it. Every other selected path has the same bytes, type and mode.
    pub changed: HashSet<String>,
}

/// The regular files a clone left in the new layer, each with the metadata it has there (the
/// earlier layer's), by directory (its path in the layer, as [`written::child`] makes it)
/// and name. Some 40 bytes a file and its name (4 MB at 100,000 files).
#[derive(Debug, Default)]
pub(crate) struct Cloned {
    dirs: HashMap<Arc<[u8]>, ClonedDir>,
}

/// The regular files cloned into one directory, sorted by name.
#[derive(Debug, Default)]
struct ClonedDir {
    /// Every entry's name, one after the other.
    names: Vec<u8>,
    entries: Vec<ClonedFile>,
}

#[derive(Debug)]
struct ClonedFile {
    /// Its name: `names[name..name + len]`.
    name: u32,
    len: u32,
    /// Given out already (or unlinked): no longer known.
    gone: bool,
    meta: FileMeta,
}

/// What decides whether a regular file already is a copy's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileMeta {
    /// The full `st_mode`.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_nsec: i64,
    mtime: i64,
    size: i64,
}

impl FileMeta {
    pub(crate) fn of(st: &libc::stat) -> FileMeta {
        FileMeta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime_nsec: st.st_mtime_nsec,
            mtime: st.st_mtime,
            size: st.st_size,
        }
    }

    /// Whether this entry is what copying a source with metadata `st` makes, given the
    /// owner and mode the copy gives it.
    fn is_copy_of(&self, st: &libc::stat, owner: (u32, u32), mode: u32) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
            && self.size == st.st_size
            && self.mtime == st.st_mtime
            && self.mtime_nsec == st.st_mtime_nsec
            && self.mode & 0o7777 == mode
            && (self.uid, self.gid) == owner
    }
}

/// What the destination held at a path before the copy wrote there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    /// Not known: ask the filesystem.
    Ask,
    /// Not a regular file from the clone (nothing, something else, or a path already
    /// visited).
    Nothing,
    /// This regular file, as cloned.
    File(FileMeta),
}

impl Cloned {
    /// Adds the regular file `name` of the directory `dir` (names added in sorted order).
    fn add(&mut self, dir: &Arc<[u8]>, name: &OsStr, st: &libc::stat) {
        let d = self.dirs.entry(dir.clone()).or_default();
        let name = name.as_bytes();
        // Both fit: `names` holds a directory's names (each at most 255 bytes).
        let at = u32::try_from(d.names.len()).unwrap_or(u32::MAX);
        d.names.extend_from_slice(name);
        d.entries.push(ClonedFile {
            name: at,
            len: u32::try_from(name.len()).unwrap_or(u32::MAX),
            gone: false,
            meta: FileMeta::of(st),
        });
    }

    /// What the clone left at `name` in `dir`, given out once: the path is forgotten.
    pub(crate) fn take(&mut self, dir: &[u8], name: &OsStr) -> Before {
        let Some(d) = self.dirs.get_mut(dir) else {
            return Before::Nothing;
        };
        let name = name.as_bytes();
        let names = &d.names;
        let at = d.entries.binary_search_by(|e| {
            let (from, len) = (e.name as usize, e.len as usize);
            names.get(from..from + len).unwrap_or_default().cmp(name)
        });
        match at.ok().and_then(|i| d.entries.get_mut(i)) {
            Some(e) if !e.gone => {
                e.gone = true;
                Before::File(e.meta)
            }
            _ => Before::Nothing,
        }
    }
}

/// Subtrees the clone hands out per thread, when the tree has that many: enough that one
/// big subtree does not leave the other threads idle for long.
const SUBTREES_PER_THREAD: usize = 4;

/// Clones the tree `from` into the empty directory `to`: non-directories hard-linked,
/// directories made anew with `from`'s owners, modes, every xattr (overlay ones included)
/// and times. Returns the regular files left, with their metadata.
///
/// Entries that are hard links of each other *within* `from` are left out: the COPY makes
/// them again, so that they are linked together only if their sources still are.
///
/// On both cores (as the COPY's files, [`crate::copy`]): the top of the tree is cloned
/// breadth first until there are a few subtrees per thread, then the threads take the
/// subtrees one at a time, each depth first. A directory's times are set once its own
/// entries are made (what is made further down does not move them).
pub(crate) fn clone_tree(from: &Path, to: &Path) -> io::Result<Cloned> {
    clone_tree_on(from, to, crate::copy::helper_threads() + 1)
}

/// What one thread of a clone found.
#[derive(Default)]
struct Found {
    cloned: Cloned,
    /// The inodes of every linked entry with other links, possibly outside `from` (a layer
    /// cloned from an earlier one has nothing else): 16 bytes each, where a path each was
    /// ~150 bytes (15 MB at 100,000 files). Only the ones seen twice are looked for again.
    linked: Vec<(u64, u64)>,
}

/// A directory made, its entries not yet: its path in the layer (below both roots) and the
/// metadata of its source.
struct Sub {
    path: Arc<[u8]>,
    st: libc::stat,
}

/// Both roots of a clone.
struct Roots {
    src: OwnedFd,
    dst: OwnedFd,
}

impl Roots {
    /// The directory at `path` in both trees.
    fn open(&self, path: &[u8]) -> io::Result<(OwnedFd, OwnedFd)> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY;
        let path = OsStr::from_bytes(path);
        Ok((
            confined::open_no_symlinks(self.src.as_fd(), path, flags, 0)?,
            confined::open_no_symlinks(self.dst.as_fd(), path, flags, 0)?,
        ))
    }
}

/// [`clone_tree`] on `threads` threads.
fn clone_tree_on(from: &Path, to: &Path, threads: usize) -> io::Result<Cloned> {
    let roots = Roots {
        src: sys::open_dir(from)?,
        dst: sys::open_dir(to)?,
    };
    let root_st = sys::fstat(roots.src.as_fd())?;
    copy_dir_meta(roots.src.as_fd(), roots.dst.as_fd(), &root_st)?;
    let mut found = Found::default();
    let mut subs = vec![Sub {
        path: Arc::from(&b""[..]),
        st: root_st,
    }];
    while threads > 1 && !subs.is_empty() && subs.len() < threads * SUBTREES_PER_THREAD {
        let mut below = Vec::new();
        for sub in std::mem::take(&mut subs) {
            let (src, dst) = roots.open(&sub.path)?;
            for name in confined::list(src.as_fd())? {
                if let Some((st, _)) = clone_entry(&src, &dst, &sub.path, &name, &mut found)? {
                    below.push(Sub {
                        path: written::child(&sub.path, name.as_bytes()),
                        st,
                    });
                }
            }
            sys::futimens(dst.as_fd(), sub.st.st_mtime, sub.st.st_mtime_nsec)?;
        }
        subs = below;
    }
    if threads <= 1 || subs.len() <= 1 {
        for sub in &subs {
            clone_subtree(&roots, sub, &mut found)?;
        }
    } else {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let run = || -> io::Result<Found> {
            let mut mine = Found::default();
            while let Some(sub) = subs.get(next.fetch_add(1, Ordering::Relaxed)) {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = clone_subtree(&roots, sub, &mut mine) {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(mine)
        };
        let done: Vec<io::Result<Found>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(run)).collect();
            let mut done = vec![run()];
            for h in helpers {
                done.push(
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            done
        });
        for d in done {
            let d = d?;
            found.cloned.dirs.extend(d.cloned.dirs);
            found.linked.extend(d.linked);
        }
    }
    let Found {
        mut cloned,
        mut linked,
    } = found;
    // Unlinked only now: the directories' times were set as `from` has them, and the COPY
    // that follows changes them where it creates entries, as a full copy would.
    linked.sort_unstable();
    let twice: HashSet<(u64, u64)> = linked
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    drop(linked);
    if !twice.is_empty() {
        // The clone's entries are the same inodes as `from`'s.
        unlink_inodes(sys::open_dir(to)?, &twice, &mut cloned)?;
    }
    Ok(cloned)
}

/// Clones the entry `name` of the directory at `path` (`src` in the earlier tree, `dst` in
/// the new one): a non-directory linked, a directory made with its owner, mode and xattrs
/// and returned with both of it opened.
fn clone_entry(
    src: &OwnedFd,
    dst: &OwnedFd,
    path: &Arc<[u8]>,
    name: &OsStr,
    found: &mut Found,
) -> io::Result<Option<(libc::stat, (OwnedFd, OwnedFd))>> {
    let st = sys::lstat_at(src.as_fd(), Path::new(name))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        sys::link_at(src.as_fd(), Path::new(name), dst.as_fd(), Path::new(name))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            found.cloned.add(path, name, &st);
        }
        if st.st_nlink > 1 {
            found.linked.push((st.st_dev, st.st_ino));
        }
        return Ok(None);
    }
    sys::mkdir_at(dst.as_fd(), Path::new(name), 0o700)?;
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    let s = confined::open_no_symlinks(src.as_fd(), name, flags, 0)?;
    let d = confined::open_no_symlinks(dst.as_fd(), name, flags, 0)?;
    copy_dir_meta(s.as_fd(), d.as_fd(), &st)?;
    Ok(Some((st, (s, d))))
}

/// Clones what is in the directory `sub` (made already), depth first.
fn clone_subtree(roots: &Roots, sub: &Sub, found: &mut Found) -> io::Result<()> {
    struct Level {
        src: OwnedFd,
        dst: OwnedFd,
        path: Arc<[u8]>,
        names: std::vec::IntoIter<std::ffi::OsString>,
        st: libc::stat,
    }
    let (src, dst) = roots.open(&sub.path)?;
    let names = confined::list(src.as_fd())?;
    let mut stack = vec![Level {
        src,
        dst,
        path: sub.path.clone(),
        names: names.into_iter(),
        st: sub.st,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            let done = stack.pop().expect("the loop holds a level");
            sys::futimens(done.dst.as_fd(), done.st.st_mtime, done.st.st_mtime_nsec)?;
            continue;
        };
        let Some((st, (src, dst))) =
            clone_entry(&level.src, &level.dst, &level.path, &name, found)?
        else {
            continue;
        };
        let names = confined::list(src.as_fd())?;
        let path = written::child(&level.path, name.as_bytes());
        stack.push(Level {
            src,
            dst,
            path,
            names: names.into_iter(),
            st,
        });
    }
    Ok(())
}

/// Unlinks every non-directory under `dir` whose (device, inode) is in `inodes`, and
/// forgets it in `cloned`.
fn unlink_inodes(
    root: OwnedFd,
    inodes: &HashSet<(u64, u64)>,
    cloned: &mut Cloned,
) -> io::Result<()> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    // Paths, not descriptors, of the directories left: a wide tree would hold too many open.
    let mut left = vec![PathBuf::new()];
    while let Some(rel) = left.pop() {
        let at = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        let dir = confined::open_no_symlinks(root.as_fd(), at, flags, 0)?;
        for name in confined::list(dir.as_fd())? {
            let st = sys::lstat_at(dir.as_fd(), Path::new(&name))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                left.push(rel.join(&name));
            } else if inodes.contains(&(st.st_dev, st.st_ino)) {
                sys::unlink_at(dir.as_fd(), Path::new(&name), false)?;
                cloned.take(rel.as_os_str().as_bytes(), &name);
            }
        }
    }
    Ok(())
}

/// Owner, mode and every xattr of a directory (times are set once its entries are in).
fn copy_dir_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &libc::stat) -> io::Result<()> {
    sys::fchown(dst, st.st_uid, st.st_gid)?;
    sys::fchmod(dst, st.st_mode & 0o7777)?;
    use xattr::FileExt;
    let file = sys::file_from(src.try_clone_to_owned()?);
    for name in file.list_xattr()? {
        if let Some(value) = file.get_xattr(&name)? {
            sys::fsetxattr(dst, &name, &value)?;
        }
    }
    Ok(())
}

/// Whether the regular file `name` in `dir` already is what copying a source with metadata
/// `st` would make, given the owner and mode the copy gives it; `before` is what the clone
/// says is there ([`Cloned::take`]), the filesystem asked only when it does not know.
pub(crate) fn already_there(
    before: Before,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    owner: (u32, u32),
    mode: u32,
) -> io::Result<bool> {
    let found = match before {
        Before::File(meta) => meta,
        Before::Nothing => return Ok(false),
        Before::Ask => match sys::lstat_at(dir, Path::new(name)) {
            Ok(d) => FileMeta::of(&d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        },
    };
    Ok(found.is_copy_of(st, owner, mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::tests::{describe, fixture};
    use std::os::unix::fs::MetadataExt;

    /// The clone on several threads is the clone on one: every directory with its mode,
    /// owner and times, every file a link of the earlier one (those linked within the tree
    /// left out), and the same account of the regular files for the COPY.
    #[test]
    fn a_clone_on_threads_is_the_clone_on_one() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(&src);
        // Directories (mode 4xxxx), less those the within-tree links are unlinked from
        // (their times move, as the module says).
        let dirs = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter(|l| {
                    let mut f = l.split(' ');
                    let (path, mode) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
                    mode.len() == 5
                        && mode.starts_with('4')
                        && !["d0/s0", "d2/s1", "d3/s2"].contains(&path)
                })
                .cloned()
                .collect()
        };
        let want = dirs(&describe(&src));
        assert_eq!(want.len(), 20, "{want:#?}");
        let mut got = Vec::new();
        for threads in [1, 2, 4] {
            let dst = tmp.path().join(format!("dst{threads}"));
            fs_err::create_dir(&dst).unwrap();
            let mut cloned = clone_tree_on(&src, &dst, threads).unwrap();
            let lines = describe(&dst);
            assert_eq!(dirs(&lines), want, "{threads} threads");
            assert_eq!(lines.len(), 667, "{threads} threads");
            // The files linked within the tree are left out, the rest are links.
            assert!(!lines.iter().any(|l| l.starts_with("d0/s0/link ")));
            assert!(!lines.iter().any(|l| l.starts_with("d2/s1/zlink ")));
            let f = "d1/s2/f05";
            assert_eq!(
                fs_err::metadata(dst.join(f)).unwrap().ino(),
                fs_err::metadata(src.join(f)).unwrap().ino(),
            );
            let st = sys::lstat_at(
                sys::open_dir(&src.join("d1/s2")).unwrap().as_fd(),
                Path::new("f05"),
            )
            .unwrap();
            assert_eq!(
                cloned.take(b"d1/s2", OsStr::new("f05")),
                Before::File(FileMeta::of(&st))
            );
            assert_eq!(
                cloned.take(b"d1/s2", OsStr::new("f05")),
                Before::Nothing,
                "given out once"
            );
            assert_eq!(
                cloned.take(b"d0/s0", OsStr::new("link")),
                Before::Nothing,
                "unlinked"
            );
            assert_eq!(
                cloned.take(b"d0/s0", OsStr::new("sym")),
                Before::Nothing,
                "not a file"
            );
            // The rest, files included, as on one thread.
            got.push(
                lines
                    .into_iter()
                    .filter(|l| {
                        !["d0/s0 ", "d2/s1 ", "d3/s2 "]
                            .iter()
                            .any(|d| l.starts_with(d))
                    })
                    .collect::<Vec<_>>(),
            );
        }
        assert!(got[1] == got[0] && got[2] == got[0]);
    }
}
