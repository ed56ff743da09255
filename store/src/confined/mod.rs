//! A directory that nothing can escape: every path from a Dockerfile, a build context, a layer
//! or an archive is resolved through [`ConfinedRoot`] as if the directory were `/`. `..` stops
//! at the top, an absolute symlink such as `/app -> /` or `x -> ../../..` leads back inside,
//! magic links (`/proc/self/fd/N`) are refused, and at most [`MAX_SYMLINKS`] symlinks (Linux's
//! limit) are followed in one lookup. The kernel enforces it: `openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (Linux 5.6+), which also fails a lookup that a
//! concurrent rename could have raced out of the root. Only on a kernel without `openat2`
//! (`ENOSYS`) does [`walk`]'s component-by-component walk with `O_NOFOLLOW` steps stand in.
//!
//! Nothing joins strings and then opens the result: a change is made on the last component
//! only, relative to its resolved parent's fd ([`Slot`]), never through a symlink (an entry
//! in the way is removed first, owners and times are set with `AT_SYMLINK_NOFOLLOW`, modes on
//! an fd we opened). [`extract`] is the one hostile-tar extractor, built on this.
//!
//! Why not a crate: `cap-std` resolves *beneath* a directory, where a path that would leave it
//! is an error; a container root needs *in-root* resolution, where `/etc -> /usr/etc` or
//! `../../x` are clamped to the root and work, as they do inside the container. `pathrs`
//! (runc's libpathrs) has in-root resolution, but is MPL-2.0/LGPL-3.0 (we are Apache-2.0),
//! refuses to work on a root that was moved (we rename snapshot directories into place and
//! resolve in detached mounts), checks through `/proc` (not mounted in every sandbox), and has
//! no owner-setting `mkdir -p` through dangling symlinks as BuildKit does. rustix's safe
//! `openat2` gives the kernel's guarantee in a few lines, without `unsafe` in this crate.

#[cfg(test)]
mod corpus;
mod extract;
#[cfg(test)]
mod hostile;
pub mod walk;

pub use extract::{
    ArchiveKind, ExtractError, ExtractOptions, Extracted, extract, in_user_namespace, keep_xattr,
    opaque_xattr,
};
pub use walk::MAX_SYMLINKS;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The components of `path` cleaned lexically, as Go's `filepath.Clean("/" + path)` does:
/// `.` dropped, `..` removes the previous component and stops at the top.
pub fn clean(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Joins components into a relative path (`.` when empty).
pub fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// How directories created on the way are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirOpts {
    /// Their mode, whatever the umask.
    pub mode: u32,
    /// Their owner; `None` keeps ours.
    pub owner: Option<(u32, u32)>,
}

impl DirOpts {
    /// 0755, owned by us (root): what Docker creates for missing parents.
    pub const DEFAULT: DirOpts = DirOpts {
        mode: 0o755,
        owner: None,
    };
}

/// How a lookup is done; only tests choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolver {
    /// `openat2(RESOLVE_IN_ROOT)`, or the walk when the kernel lacks it.
    Kernel,
    /// Always the walk (tests of the fallback on a kernel that has `openat2`).
    #[cfg(test)]
    Walk,
}

/// A directory standing in for `/`. See the [module docs](self).
#[derive(Debug)]
pub struct ConfinedRoot {
    fd: OwnedFd,
    /// The detached mount `fd` is in, kept open: closing it dissolves the mount, and `..`
    /// lookups in a dissolved mount fail with EAGAIN forever.
    _mount: Option<OwnedFd>,
    resolver: Resolver,
}

/// A resolved parent directory and one name in it: where an entry is or goes.
#[derive(Debug)]
pub struct Slot {
    /// The parent directory, resolved inside the root.
    pub dir: OwnedFd,
    /// The last component, never followed.
    pub name: OsString,
}

impl ConfinedRoot {
    /// Opens the directory `path` as a root. `path` itself is the caller's (a build context
    /// named on the command line, a store directory), so a symlink there is followed; only
    /// what is inside is confined.
    pub fn open(path: &Path) -> io::Result<ConfinedRoot> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ConfinedRoot {
            fd,
            _mount: None,
            resolver: Resolver::Kernel,
        })
    }

    /// The root of a detached mount (from `fsmount` or `open_tree`), reopened as a plain
    /// directory; the mount stays alive as long as the returned root does.
    pub fn of_mount(mount: OwnedFd) -> io::Result<ConfinedRoot> {
        let fd = rustix::fs::openat(
            &mount,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ConfinedRoot {
            fd,
            _mount: Some(mount),
            resolver: Resolver::Kernel,
        })
    }

    /// The same root, always resolved by the fallback walk.
    #[cfg(test)]
    pub(crate) fn walking(path: &Path) -> io::Result<ConfinedRoot> {
        Ok(ConfinedRoot {
            resolver: Resolver::Walk,
            ..ConfinedRoot::open(path)?
        })
    }

    /// The root directory's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `comps` with `flags`, following every symlink inside the root (the last one
    /// too, unless `flags` has `O_NOFOLLOW`); `None` when it does not exist.
    pub fn open_at(&self, comps: &[OsString], flags: OFlags) -> io::Result<Option<OwnedFd>> {
        match self.open_path(join(comps).as_os_str().as_bytes(), flags) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the `/`-separated `path`, resolved inside the root; `flags` as for `openat2`.
    pub fn open_path(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        match self.resolver {
            Resolver::Kernel => open_in_root(self.fd(), path, flags),
            #[cfg(test)]
            Resolver::Walk => {
                let path = if path.is_empty() { b"." } else { path };
                walk::open_by_walking(self.fd(), path, flags)
            }
        }
    }

    /// The metadata of `comps` after following symlinks; `None` when missing.
    pub fn stat(&self, comps: &[OsString]) -> io::Result<Option<rustix::fs::Stat>> {
        match self.open_at(comps, OFlags::PATH)? {
            Some(fd) => Ok(Some(rustix::fs::fstat(&fd)?)),
            None => Ok(None),
        }
    }

    /// Opens the directory `comps`, creating what is missing with `opts`; the paths created
    /// (absolute, as seen inside the root) are appended to `created`. A dangling symlink on
    /// the way is followed inside the root and its target made, as BuildKit does.
    pub fn mkdir_all(
        &self,
        comps: &[OsString],
        opts: DirOpts,
        created: &mut Vec<PathBuf>,
    ) -> io::Result<OwnedFd> {
        let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY;
        // Most of the time it is all there: one lookup.
        match self.open_at(comps, dir_flags) {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let mut comps = comps.to_vec();
        for _ in 0..MAX_SYMLINKS {
            match self.mkdir_all_once(&comps, opts, created)? {
                Ok(fd) => return Ok(fd),
                Err((i, target)) => {
                    let mut next = if target.is_absolute() {
                        clean(&target)
                    } else {
                        clean(&join(&comps[..i]).join(&target))
                    };
                    next.extend(comps[i + 1..].iter().cloned());
                    comps = next;
                }
            }
        }
        Err(Errno::LOOP.into())
    }

    /// One pass of [`ConfinedRoot::mkdir_all`]: `Err((i, target))` when component `i` is a
    /// dangling symlink to `target`.
    fn mkdir_all_once(
        &self,
        comps: &[OsString],
        opts: DirOpts,
        created: &mut Vec<PathBuf>,
    ) -> io::Result<Result<OwnedFd, (usize, PathBuf)>> {
        let dir_flags = OFlags::DIRECTORY | OFlags::RDONLY;
        let mut dir = self.open_path(b".", dir_flags)?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match self.open_path(prefix.as_os_str().as_bytes(), dir_flags) {
                Ok(fd) => dir = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let name = comps[i].as_os_str();
                    match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                        Ok(()) => {}
                        Err(Errno::EXIST) => {
                            let target = rustix::fs::readlinkat(&dir, name, Vec::new())?;
                            let target = OsStr::from_bytes(target.as_bytes()).to_os_string();
                            return Ok(Err((i, PathBuf::from(target))));
                        }
                        Err(e) => return Err(e.into()),
                    }
                    let fd = open_dir_at(&dir, name)?;
                    if let Some((uid, gid)) = opts.owner {
                        chown_fd(&fd, uid, gid)?;
                    }
                    // Whatever the process umask.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(opts.mode))?;
                    created.push(Path::new("/").join(&prefix));
                    dir = fd;
                }
                Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("/{} is not a directory", prefix.display()),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(dir))
    }

    /// The parent directory of `comps` (created when missing) and the last component.
    pub fn parent_of<'a>(
        &self,
        comps: &'a [OsString],
        opts: DirOpts,
        created: &mut Vec<PathBuf>,
    ) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (name, parent) = comps.split_last().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the root itself has no parent")
        })?;
        Ok((self.mkdir_all(parent, opts, created)?, name.as_os_str()))
    }

    /// The slot of `comps`: its parent resolved (and, with `create`, made) and its last
    /// component. `None` for the root itself; `NotFound` when the parent is missing.
    pub fn slot(&self, comps: &[OsString], create: Option<DirOpts>) -> io::Result<Option<Slot>> {
        let Some((name, parent)) = comps.split_last() else {
            return Ok(None);
        };
        let dir = match create {
            Some(opts) => self.mkdir_all(parent, opts, &mut Vec::new())?,
            None => self
                .open_at(parent, OFlags::DIRECTORY | OFlags::RDONLY)?
                .ok_or_else(|| io::Error::from(Errno::NOENT))?,
        };
        Ok(Some(Slot {
            dir,
            name: name.clone(),
        }))
    }
}

/// Opens the `/`-separated `path` inside the directory `root` as if it were `/` (what
/// [`ConfinedRoot::open_path`] does, for a directory fd that is not a [`ConfinedRoot`], such as
/// a detached mount); `flags` as for `openat2`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { b"." } else { path };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match openat2(root, path, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) => walk::open_by_walking(root, path, flags),
        other => Ok(other?),
    }
}

/// `openat2`, retried when the kernel asks (EAGAIN: a rename or mount raced with a `..`
/// lookup) a bounded number of times, so a lookup that can never succeed does not spin.
fn openat2(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        let path = OsStr::from_bytes(path);
        match rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, resolve) {
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if tries < 1000 => tries += 1,
            other => return other,
        }
    }
}

/// The names in the directory `dir` (an fd already resolved inside its root), without `.`
/// and `..`, sorted by bytes (so a copy that meets hard links picks the same first path every
/// time).
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    Ok(list_inodes(dir)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// [`list`], each name with the inode number its directory entry holds (`d_ino`: no `stat`
/// of the entry).
pub fn list_inodes(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, u64)>> {
    let fd = open_no_symlinks(dir, ".", OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((OsStr::from_bytes(name).to_owned(), entry.ino()));
        }
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names)
}

/// Opens `path` below the directory `dir` only if no component is a symlink, the last one
/// included (`O_NOFOLLOW`): for a tree that must be read or written as it is (a build context
/// being walked, a directory being copied entry by entry, a file created at a resolved
/// parent), where a symlink swapped in is an error, never followed, and nothing outside `dir`
/// can be reached. `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS`; without `openat2`, one `O_NOFOLLOW` step per component, `..`
/// refused. `mode` is for `O_CREAT`.
pub fn open_no_symlinks(
    dir: BorrowedFd<'_>,
    path: impl AsRef<OsStr>,
    flags: OFlags,
    mode: u32,
) -> io::Result<OwnedFd> {
    let path = path.as_ref().as_bytes();
    let path = if path.is_empty() { b"." } else { path };
    let flags = flags | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(dir, path, flags, Mode::from_raw_mode(mode), resolve) {
        Err(Errno::NOSYS) => open_by_nofollow_steps(dir, path, flags, mode),
        other => Ok(other?),
    }
}

/// [`open_no_symlinks`] on a kernel without `openat2`.
fn open_by_nofollow_steps(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
    mode: u32,
) -> io::Result<OwnedFd> {
    let mut comps = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .peekable();
    let mut cur = walk::dup_dir(dir)?;
    while let Some(comp) = comps.next() {
        if comp == b".." {
            return Err(Errno::XDEV.into());
        }
        let name = OsStr::from_bytes(comp);
        if comps.peek().is_none() {
            return Ok(rustix::fs::openat(
                &cur,
                name,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )?);
        }
        cur = open_dir_at(&cur, name)?;
    }
    Ok(rustix::fs::openat(
        &cur,
        ".",
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// What to do with a directory in the way of a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Keep a directory (the new entry is a directory too).
    KeepDir,
    /// Remove it if it is empty; a non-empty one is an error (COPY, ADD).
    EmptyDir,
    /// Remove it and everything in it (a layer replacing an entry of a lower one).
    Tree,
}

impl Slot {
    /// The type of what is at the slot, not followed; `None` when nothing is.
    pub fn file_type(&self) -> io::Result<Option<FileType>> {
        entry_type(self.dir.as_fd(), &self.name)
    }

    /// Makes room for a new entry; see [`clear_entry`].
    pub fn clear(&self, replace: Replace) -> io::Result<bool> {
        clear_entry(self.dir.as_fd(), &self.name, replace)
    }

    /// Creates a new regular file (`O_EXCL`, never through a link) open for writing.
    pub fn create_file(&self, mode: u32) -> io::Result<std::fs::File> {
        let fd = rustix::fs::openat(
            &self.dir,
            self.name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// Creates a directory (when `mode` allows us, the caller sets the final mode on its fd).
    pub fn mkdir(&self, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &self.dir,
            self.name.as_os_str(),
            Mode::from_raw_mode(mode),
        )?)
    }

    /// Opens the directory at the slot; a symlink there is refused, not followed.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        open_dir_at(&self.dir, &self.name)
    }

    /// Creates a symlink to `target` (stored verbatim; resolved in the root when used).
    pub fn symlink(&self, target: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(
            target,
            &self.dir,
            self.name.as_os_str(),
        )?)
    }

    /// Hard-links the entry at `from` (not followed) here.
    pub fn link_from(&self, from: &Slot) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &from.dir,
            from.name.as_os_str(),
            &self.dir,
            self.name.as_os_str(),
            AtFlags::empty(),
        )?)
    }

    /// Moves the entry here to `to` (replacing a non-directory there).
    pub fn rename_to(&self, to: &Slot) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.dir,
            self.name.as_os_str(),
            &to.dir,
            to.name.as_os_str(),
        )?)
    }

    /// Creates a device node or fifo with `mode` 0600 (the caller sets the final mode).
    pub fn mknod(&self, kind: FileType, major: u32, minor: u32) -> io::Result<()> {
        Ok(rustix::fs::mknodat(
            &self.dir,
            self.name.as_os_str(),
            kind,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(major, minor),
        )?)
    }

    /// Sets the owner of the entry itself, never a symlink's target.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.dir,
            self.name.as_os_str(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Sets the mode of a special file (a device or fifo cannot be opened to `fchmod`):
    /// checked to be of `kind` first, so never a symlink's target.
    pub fn chmod_special(&self, kind: FileType, mode: u32) -> io::Result<()> {
        if self.file_type()? != Some(kind) {
            return Err(io::Error::other("entry replaced while setting its mode"));
        }
        Ok(rustix::fs::chmodat(
            &self.dir,
            self.name.as_os_str(),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )?)
    }

    /// Sets the access and modification times of the entry itself, never a symlink's target.
    pub fn set_mtime(&self, secs: i64) -> io::Result<()> {
        Ok(rustix::fs::utimensat(
            &self.dir,
            self.name.as_os_str(),
            &timestamps(secs),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Removes the entry (a whole tree for a directory); never follows links.
    pub fn remove(&self) -> io::Result<()> {
        self.clear(Replace::Tree).map(|_| ())
    }
}

fn timestamps(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the access and modification times of an open file or directory.
pub fn set_mtime_fd(fd: impl AsFd, secs: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &timestamps(secs))?)
}

fn chown_fd(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?)
}

/// What is at `name` in `dir`, without following it.
pub fn entry_type(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes room for a new entry `name` in `dir`, never following a link: removes what is there
/// and returns false, or returns true when a directory is kept ([`Replace::KeepDir`]).
pub fn clear_entry(dir: BorrowedFd<'_>, name: &OsStr, replace: Replace) -> io::Result<bool> {
    match entry_type(dir, name)? {
        None => Ok(false),
        Some(FileType::Directory) => match replace {
            Replace::KeepDir => Ok(true),
            Replace::Tree => {
                remove_tree_at(dir, name)?;
                Ok(false)
            }
            Replace::EmptyDir => match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(false),
                Err(Errno::NOTEMPTY | Errno::EXIST) => Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!(
                        "cannot replace non-empty directory {}",
                        String::from_utf8_lossy(name.as_bytes())
                    ),
                )),
                Err(e) => Err(e.into()),
            },
        },
        Some(_) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(false)
        }
    }
}

/// Opens a directory entry that must be a real directory (not a symlink to one).
pub fn open_dir_at(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes the directory `name` in `dir` and everything in it, through fds only.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let fd = open_dir_at(dir, name)?;
    let mut children = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = OsStr::from_bytes(n).to_os_string();
        let is_dir = match entry.file_type() {
            FileType::Unknown => {
                let st = rustix::fs::statat(&fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(st.st_mode) == FileType::Directory
            }
            t => t == FileType::Directory,
        };
        children.push((name, is_dir));
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree_at(fd.as_fd(), &child)?;
        } else {
            rustix::fs::unlinkat(&fd, child.as_os_str(), AtFlags::empty())?;
        }
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn c(p: &str) -> Vec<String> {
        clean(Path::new(p))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn comps(p: &str) -> Vec<OsString> {
        clean(Path::new(p))
    }

    #[test]
    fn clean_clamps_dotdot_at_the_top() {
        assert_eq!(c("/../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(c("a/./b/../c/"), ["a", "c"]);
        assert_eq!(c("../../../tmp/x"), ["tmp", "x"]);
        assert!(c("/").is_empty());
        assert!(c("").is_empty());
    }

    /// A root beside an `outside` directory, opened both ways.
    fn roots() -> (tempfile::TempDir, Vec<ConfinedRoot>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs_err::create_dir_all(root.join("etc")).unwrap();
        fs_err::create_dir_all(tmp.path().join("outside")).unwrap();
        fs_err::write(tmp.path().join("outside/secret"), "secret").unwrap();
        fs_err::write(root.join("etc/passwd"), "inside").unwrap();
        let outside = tmp.path().join("outside");
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc", root.join("magic")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        let both = vec![
            ConfinedRoot::open(&root).unwrap(),
            ConfinedRoot::walking(&root).unwrap(),
        ];
        (tmp, both)
    }

    fn read(root: &ConfinedRoot, p: &str) -> io::Result<Option<String>> {
        Ok(root
            .open_at(&comps(p), OFlags::RDONLY)?
            .map(|fd| io::read_to_string(std::fs::File::from(fd)).unwrap()))
    }

    #[test]
    fn lookups_stay_inside_with_the_kernel_and_the_fallback() {
        let (tmp, both) = roots();
        fs_err::create_dir_all(
            tmp.path()
                .join("root")
                .join(tmp.path().join("outside").strip_prefix("/").unwrap()),
        )
        .unwrap();
        for root in &both {
            let r = root.resolver;
            assert_eq!(
                read(root, "/../../etc/passwd").unwrap().unwrap(),
                "inside",
                "{r:?}"
            );
            // `abs` points at the real outside by absolute path: resolved in the root,
            // where the same path is an empty directory.
            assert_eq!(read(root, "abs/secret").unwrap(), None, "{r:?}");
            // `etc/up` climbs out: clamped at the root, where there is no `outside`.
            assert_eq!(read(root, "etc/up/secret").unwrap(), None, "{r:?}");
            let e = read(root, "loop1").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(Errno::LOOP.raw_os_error()), "{r:?}");
            let e = read(root, "etc/passwd/x").unwrap_err();
            assert_eq!(
                e.raw_os_error(),
                Some(Errno::NOTDIR.raw_os_error()),
                "{r:?}"
            );
            // O_NOFOLLOW opens the link itself.
            let fd = root
                .open_at(&comps("abs"), OFlags::PATH | OFlags::NOFOLLOW)
                .unwrap()
                .unwrap();
            let st = rustix::fs::fstat(&fd).unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        }
    }

    #[test]
    fn open_no_symlinks_refuses_any_link_with_the_kernel_and_without() {
        let (tmp, _) = roots();
        let dir = rustix::fs::open(
            tmp.path().join("root").as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        type Open = fn(BorrowedFd<'_>, &[u8], OFlags, u32) -> io::Result<OwnedFd>;
        let kernel: Open = |d, p, f, m| open_no_symlinks(d, OsStr::from_bytes(p), f, m);
        for open in [kernel, open_by_nofollow_steps as Open] {
            let open = |d, p, f| open(d, p, f, 0);
            assert!(open(dir.as_fd(), b"etc/passwd", OFlags::RDONLY).is_ok());
            assert!(open(dir.as_fd(), b"", OFlags::RDONLY | OFlags::DIRECTORY).is_ok());
            let e = open(dir.as_fd(), b"abs/secret", OFlags::RDONLY).unwrap_err();
            assert!(
                [Errno::LOOP, Errno::NOTDIR]
                    .map(|e| Some(e.raw_os_error()))
                    .contains(&e.raw_os_error()),
                "{e}"
            );
            let e = open(dir.as_fd(), b"etc/up", OFlags::RDONLY).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(Errno::LOOP.raw_os_error()));
            let e = open(dir.as_fd(), b"../outside/secret", OFlags::RDONLY).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(Errno::XDEV.raw_os_error()));
        }
    }

    #[test]
    fn slot_operations_act_on_the_entry_never_through_a_link() {
        let (tmp, both) = roots();
        let root = &both[0];
        let outside = tmp.path().join("outside");
        let slot = |p: &str| {
            root.slot(&comps(p), Some(DirOpts::DEFAULT))
                .unwrap()
                .unwrap()
        };
        // `abs` is a link to the real outside: renaming, chowning and timing it touch the link.
        slot("abs").rename_to(&slot("moved/abs")).unwrap();
        slot("moved/abs").chown(4321, 4321).unwrap();
        slot("moved/abs").set_mtime(1_000_000).unwrap();
        let link = fs_err::symlink_metadata(tmp.path().join("root/moved/abs")).unwrap();
        assert!(link.is_symlink());
        assert_eq!((link.uid(), link.mtime()), (4321, 1_000_000));
        let real = fs_err::metadata(&outside).unwrap();
        assert_ne!(real.uid(), 4321);
        assert_ne!(real.mtime(), 1_000_000);
        // A hard link of the link links the link, not the secret.
        slot("hard").link_from(&slot("moved/abs")).unwrap();
        assert!(
            fs_err::symlink_metadata(tmp.path().join("root/hard"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(fs_err::metadata(outside.join("secret")).unwrap().nlink(), 1);
        // Through `etc/up` (clamped to the root): the file lands inside.
        let mut f = slot("etc/up/made").create_file(0o600).unwrap();
        io::Write::write_all(&mut f, b"in").unwrap();
        assert!(tmp.path().join("root/outside/made").is_file());
        assert!(!outside.join("made").exists());
    }

    #[test]
    fn mkdir_all_makes_dangling_link_targets_inside_with_mode_and_owner() {
        let (tmp, both) = roots();
        let root_path = tmp.path().join("root");
        std::os::unix::fs::symlink("/made/here", root_path.join("dangling")).unwrap();
        for root in &both {
            let mut created = Vec::new();
            let opts = DirOpts {
                mode: 0o750,
                owner: Some((1234, 5678)),
            };
            root.mkdir_all(&comps("dangling/sub"), opts, &mut created)
                .unwrap();
            let m = fs_err::metadata(root_path.join("made/here/sub")).unwrap();
            assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o750, 1234, 5678));
            // Through `etc/up` (clamped): lands in the root, never in the real outside.
            root.mkdir_all(&comps("etc/up/new"), DirOpts::DEFAULT, &mut created)
                .unwrap();
            assert!(root_path.join("outside/new").is_dir());
            assert!(!tmp.path().join("outside/new").exists());
            fs_err::remove_dir_all(root_path.join("made")).unwrap();
            fs_err::remove_dir_all(root_path.join("outside")).unwrap();
        }
        let e = both[0]
            .mkdir_all(&comps("etc/passwd/x"), DirOpts::DEFAULT, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.to_string(), "/etc/passwd is not a directory");
    }

    #[test]
    fn clearing_never_follows_and_keeps_non_empty_directories_when_asked() {
        let (tmp, both) = roots();
        let root = &both[0];
        let slot = root.slot(&comps("abs"), None).unwrap().unwrap();
        assert_eq!(slot.file_type().unwrap(), Some(FileType::Symlink));
        assert!(!slot.clear(Replace::Tree).unwrap());
        assert!(tmp.path().join("outside/secret").is_file());
        let etc = root.slot(&comps("etc"), None).unwrap().unwrap();
        assert!(etc.clear(Replace::KeepDir).unwrap());
        let e = etc.clear(Replace::EmptyDir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        etc.remove().unwrap();
        assert!(!tmp.path().join("root/etc").exists());
    }
}
