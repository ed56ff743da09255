//! Copying entries from a source root into a destination root, both held as directory
//! descriptors: the unit COPY, ADD and heredoc files are made of. A directory is walked
//! without following symlinks (they are copied as symlinks); regular files are copied with
//! `copy_file_range` through `std::io::copy`; FIFOs and devices are recreated, never opened;
//! sockets are skipped. Every destination entry is created anew (an old file or symlink in
//! the way is removed first), so a write never goes through a link. Owner before mode, so
//! setuid bits survive; xattrs after the owner, since chown drops file capabilities.

use crate::sys::{self, NodeKind};
use rustix::fs::OFlags;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use strata_store::confined::{self, Replace, clear_entry, keep_xattr};

/// Whether a directory copy copies the entry at this path (relative to the copied
/// directory; a directory left out goes with everything inside). COPY passes the list the
/// source resolver made (`strata_graph::resolver`), so the walk decides nothing itself.
pub(crate) type FilterFn = Rc<dyn Fn(&str) -> bool>;

/// The filter that copies everything.
pub(crate) fn copy_everything() -> FilterFn {
    Rc::new(|_: &str| true)
}

/// How copied entries get their metadata.
#[derive(Clone)]
pub(crate) struct CopyOpts {
    /// Owner for every entry; `None` keeps the source's (or 0:0, see `reset_owner`).
    pub(crate) owner: Option<(u32, u32)>,
    /// Context files belong to root unless `--chown` says otherwise.
    pub(crate) reset_owner: bool,
    /// `--chmod` for files and directories.
    pub(crate) mode: Option<u32>,
    /// What to leave out of a copied directory.
    pub(crate) filter: FilterFn,
    /// An incremental COPY (`reuse.rs`): which files may be left as they are.
    pub(crate) reuse: Option<Reuse>,
}

/// What an incremental COPY may leave in place: regular files whose context path
/// (`prefix/rel`) is not in `changed` and whose copy is already at its destination.
#[derive(Clone)]
pub(crate) struct Reuse {
    /// Context paths whose content changed since the layer being reused was made.
    pub(crate) changed: Rc<std::collections::HashSet<String>>,
    /// The copied directory's path in the context (`""` for its root).
    pub(crate) prefix: String,
}

impl Reuse {
    fn unchanged(&self, rel: &str) -> bool {
        if self.prefix.is_empty() || self.prefix == "." {
            !self.changed.contains(rel)
        } else {
            !self.changed.contains(&format!("{}/{rel}", self.prefix))
        }
    }
}

impl CopyOpts {
    fn owner_of(&self, st: &libc::stat) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.reset_owner => (0, 0),
            None => (st.st_uid, st.st_gid),
        }
    }

    fn mode_of(&self, st: &libc::stat) -> u32 {
        self.mode.unwrap_or(st.st_mode & 0o7777)
    }
}

/// Copy statistics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// Where hard-linked sources were first copied to, to link the others to it.
#[derive(Default)]
pub(crate) struct Links {
    seen: HashMap<(u64, u64), (Rc<OwnedFd>, OsString)>,
}

fn ftype(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn err_at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Copies the entry `src` (already opened, `st` its metadata, `name` its name in `src_dir`)
/// to `name_out` in `dst_dir`. Directories are copied with their contents.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state, passed explicitly"
)]
pub(crate) fn copy_entry(
    src_dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    dst_dir: &Rc<OwnedFd>,
    name_out: &OsStr,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
) -> io::Result<()> {
    match ftype(st) {
        libc::S_IFDIR => {
            let src =
                confined::open_no_symlinks(src_dir, name, OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
            let dst = Rc::new(make_dir(dst_dir.as_fd(), name_out, st, opts, true)?);
            copy_dir_contents(&src, &dst, opts, links, counts, display)?;
            finish_dir(dst.as_fd(), st)
        }
        _ => copy_leaf(src_dir, name, st, dst_dir, name_out, opts, links, counts),
    }
}

/// Creates (or reuses, when `set_meta` is false and it exists) directory `name` in `dir`.
fn make_dir(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    opts: &CopyOpts,
    set_meta: bool,
) -> io::Result<OwnedFd> {
    let existed = clear_entry(dir, name, Replace::KeepDir)?;
    if !existed {
        sys::mkdir_at(dir, Path::new(name), 0o700)?;
    }
    let fd = confined::open_no_symlinks(dir, name, OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
    if set_meta || !existed {
        let (uid, gid) = opts.owner_of(st);
        sys::fchown(fd.as_fd(), uid, gid)?;
        sys::fchmod(fd.as_fd(), opts.mode_of(st))?;
    }
    Ok(fd)
}

fn finish_dir(dst: BorrowedFd<'_>, st: &libc::stat) -> io::Result<()> {
    sys::futimens(dst, st.st_mtime, st.st_mtime_nsec)
}

/// One directory of a copy being walked.
struct Level {
    src: OwnedFd,
    dst: Rc<OwnedFd>,
    rel: String,
    names: std::vec::IntoIter<OsString>,
    /// Its metadata (`None` for the copied directory itself, whose metadata is not copied).
    st: Option<libc::stat>,
}

/// Copies what is in `src` into `dst`, walking depth first without recursion.
pub(crate) fn copy_dir_contents(
    src: &OwnedFd,
    dst: &Rc<OwnedFd>,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
) -> io::Result<()> {
    let first =
        confined::open_no_symlinks(src.as_fd(), ".", OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
    let names = confined::list(first.as_fd()).map_err(err_at(display))?;
    let mut stack = vec![Level {
        src: first,
        dst: dst.clone(),
        rel: String::new(),
        names: names.into_iter(),
        st: None,
    }];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            let done = stack.pop().expect("the loop holds a level");
            if let Some(st) = done.st {
                finish_dir(done.dst.as_fd(), &st)?;
            }
            continue;
        };
        let rel = if level.rel.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{}/{}", level.rel, name.to_string_lossy())
        };
        if !(opts.filter)(&rel) {
            continue;
        }
        let here = display.join(&rel);
        let st = sys::lstat_at(level.src.as_fd(), Path::new(&name)).map_err(err_at(&here))?;
        if ftype(&st) == libc::S_IFDIR {
            let s = confined::open_no_symlinks(
                level.src.as_fd(),
                &name,
                OFlags::DIRECTORY | OFlags::RDONLY,
                0,
            )
            .map_err(err_at(&here))?;
            let names = confined::list(s.as_fd()).map_err(err_at(&here))?;
            let d = make_dir(level.dst.as_fd(), &name, &st, opts, true).map_err(err_at(&here))?;
            counts.entries += 1;
            stack.push(Level {
                src: s,
                dst: Rc::new(d),
                rel,
                names: names.into_iter(),
                st: Some(st),
            });
            continue;
        }
        let d = level.dst.clone();
        if ftype(&st) == libc::S_IFREG
            && st.st_nlink == 1
            && opts.reuse.as_ref().is_some_and(|r| r.unchanged(&rel))
            && crate::reuse::already_there(
                d.as_fd(),
                &name,
                &st,
                opts.owner_of(&st),
                opts.mode_of(&st),
            )
            .map_err(err_at(&here))?
        {
            counts.entries += 1;
            continue;
        }
        copy_leaf(
            level.src.as_fd(),
            &name,
            &st,
            &d,
            &name,
            opts,
            links,
            counts,
        )
        .map_err(err_at(&here))?;
    }
    Ok(())
}

/// Copies a non-directory.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state, passed explicitly"
)]
fn copy_leaf(
    src_dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    dst_dir: &Rc<OwnedFd>,
    name_out: &OsStr,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
) -> io::Result<()> {
    let kind = ftype(st);
    if kind == libc::S_IFSOCK {
        return Ok(());
    }
    let dst = dst_dir.as_fd();
    clear_entry(dst, name_out, Replace::EmptyDir)?;
    let (uid, gid) = opts.owner_of(st);
    if kind == libc::S_IFREG && st.st_nlink > 1 {
        if let Some((dir, first)) = links.seen.get(&(st.st_dev, st.st_ino)) {
            sys::link_at(dir.as_fd(), Path::new(first), dst, Path::new(name_out))?;
            counts.entries += 1;
            return Ok(());
        }
        links.seen.insert(
            (st.st_dev, st.st_ino),
            (dst_dir.clone(), name_out.to_owned()),
        );
    }
    counts.entries += 1;
    let out = Path::new(name_out);
    match kind {
        libc::S_IFREG => {
            let src =
                confined::open_no_symlinks(src_dir, name, OFlags::RDONLY | OFlags::NONBLOCK, 0)?;
            let fd = confined::open_no_symlinks(
                dst,
                out,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o600,
            )?;
            let (mut r, mut w) = (sys::file_from(src), sys::file_from(fd));
            counts.bytes += io::copy(&mut r, &mut w)?;
            sys::fchown(w.as_fd(), uid, gid)?;
            sys::fchmod(w.as_fd(), opts.mode_of(st))?;
            copy_xattrs(&r, w.as_fd());
            sys::futimens(w.as_fd(), st.st_mtime, st.st_mtime_nsec)
        }
        libc::S_IFLNK => {
            let target = sys::readlink_at(src_dir, Path::new(name))?;
            sys::symlink_at(Path::new(&target), dst, out)?;
            sys::lchown_at(dst, out, uid, gid)?;
            sys::lutimes_at(dst, out, st.st_mtime, st.st_mtime_nsec)
        }
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            let node = match kind {
                libc::S_IFIFO => NodeKind::Fifo,
                libc::S_IFCHR => NodeKind::Char,
                _ => NodeKind::Block,
            };
            let rdev = st.st_rdev;
            sys::mknod_at(
                dst,
                out,
                node,
                0o600,
                nix::sys::stat::major(rdev),
                nix::sys::stat::minor(rdev),
            )?;
            sys::lchown_at(dst, out, uid, gid)?;
            sys::lchmod_at(dst, out, opts.mode_of(st))?;
            sys::lutimes_at(dst, out, st.st_mtime, st.st_mtime_nsec)
        }
        _ => Ok(()),
    }
}

/// Copies the xattrs an image keeps (file capabilities, `user.*`); best effort, as
/// BuildKit's copy: a filesystem without xattrs is no reason to fail a COPY.
fn copy_xattrs(src: &std::fs::File, dst: BorrowedFd<'_>) {
    use xattr::FileExt;
    let Ok(names) = src.list_xattr() else { return };
    for n in names {
        if keep_xattr(n.as_bytes())
            && let Ok(Some(v)) = src.get_xattr(&n)
        {
            let _ = sys::fsetxattr(dst, &n, &v);
        }
    }
}
