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
//! first may have written there.
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

/// Clones the tree `from` into the empty directory `to`: non-directories hard-linked,
/// directories made anew with `from`'s owners, modes, every xattr (overlay ones included)
/// and times. Returns the regular files left, with their metadata.
///
/// Entries that are hard links of each other *within* `from` are left out: the COPY makes
/// them again, so that they are linked together only if their sources still are.
pub(crate) fn clone_tree(from: &Path, to: &Path) -> io::Result<Cloned> {
    let src_root = sys::open_dir(from)?;
    let dst_root = sys::open_dir(to)?;
    let root_st = sys::fstat(src_root.as_fd())?;
    copy_dir_meta(src_root.as_fd(), dst_root.as_fd(), &root_st)?;

    struct Level {
        src: OwnedFd,
        dst: OwnedFd,
        path: Arc<[u8]>,
        names: std::vec::IntoIter<std::ffi::OsString>,
        st: libc::stat,
    }
    let names = confined::list(src_root.as_fd())?;
    let mut stack = vec![Level {
        src: src_root,
        dst: dst_root,
        path: Arc::from(&b""[..]),
        names: names.into_iter(),
        st: root_st,
    }];
    let mut cloned = Cloned::default();
    // The inodes of every linked entry with other links, possibly outside `from` (a layer
    // cloned from an earlier one has nothing else): 16 bytes each, where a path each was
    // ~150 bytes (15 MB at 100,000 files). Only the ones seen twice are looked for again.
    let mut linked: Vec<(u64, u64)> = Vec::new();
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            let done = stack.pop().expect("the loop holds a level");
            sys::futimens(done.dst.as_fd(), done.st.st_mtime, done.st.st_mtime_nsec)?;
            continue;
        };
        let st = sys::lstat_at(level.src.as_fd(), Path::new(&name))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            sys::link_at(
                level.src.as_fd(),
                Path::new(&name),
                level.dst.as_fd(),
                Path::new(&name),
            )?;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                cloned.add(&level.path, &name, &st);
            }
            if st.st_nlink > 1 {
                linked.push((st.st_dev, st.st_ino));
            }
            continue;
        }
        sys::mkdir_at(level.dst.as_fd(), Path::new(&name), 0o700)?;
        let flags = OFlags::DIRECTORY | OFlags::RDONLY;
        let src = confined::open_no_symlinks(level.src.as_fd(), &name, flags, 0)?;
        let dst = confined::open_no_symlinks(level.dst.as_fd(), &name, flags, 0)?;
        copy_dir_meta(src.as_fd(), dst.as_fd(), &st)?;
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
