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
//! Why links are safe: layer directories are immutable once adopted (they are overlay
//! lowers, and the overlay copies a file up before changing it); the COPY replaces a
//! destination entry by unlinking it and creating a new one ([`crate::copy`]), never by
//! writing through it; a skipped file is not touched at all. The layer writer pairs hard
//! links only within the walk of one layer, so a linked file is still written out in full.

use crate::sys;
use rustix::fs::OFlags;
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
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

/// Clones the tree `from` into the empty directory `to`: non-directories hard-linked,
/// directories made anew with `from`'s owners, modes, every xattr (overlay ones included)
/// and times. Returns the number of links left.
///
/// Entries that are hard links of each other *within* `from` are left out: the COPY makes
/// them again, so that they are linked together only if their sources still are.
pub(crate) fn clone_tree(from: &Path, to: &Path) -> io::Result<u64> {
    let src_root = sys::open_dir(from)?;
    let dst_root = sys::open_dir(to)?;
    let root_st = sys::fstat(src_root.as_fd())?;
    copy_dir_meta(src_root.as_fd(), dst_root.as_fd(), &root_st)?;

    struct Level {
        src: OwnedFd,
        dst: OwnedFd,
        names: std::vec::IntoIter<std::ffi::OsString>,
        st: libc::stat,
    }
    let names = confined::list(src_root.as_fd())?;
    let mut stack = vec![Level {
        src: src_root,
        dst: dst_root,
        names: names.into_iter(),
        st: root_st,
    }];
    let mut links = 0;
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
            links += 1;
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
        stack.push(Level {
            src,
            dst,
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
        links -= unlink_inodes(sys::open_dir(to)?, &twice)?;
    }
    Ok(links)
}

/// Unlinks every non-directory under `dir` whose (device, inode) is in `inodes`; returns how
/// many.
fn unlink_inodes(root: OwnedFd, inodes: &HashSet<(u64, u64)>) -> io::Result<u64> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    let mut gone = 0;
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
                gone += 1;
            }
        }
    }
    Ok(gone)
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
/// `st` would make, given the owner and mode the copy gives it.
pub(crate) fn already_there(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    st: &libc::stat,
    owner: (u32, u32),
    mode: u32,
) -> io::Result<bool> {
    let d = match sys::lstat_at(dir, Path::new(name)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(d.st_mode & libc::S_IFMT == libc::S_IFREG
        && d.st_size == st.st_size
        && d.st_mtime == st.st_mtime
        && d.st_mtime_nsec == st.st_mtime_nsec
        && d.st_mode & 0o7777 == mode
        && (d.st_uid, d.st_gid) == owner)
}
