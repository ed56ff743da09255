//! A directory used as `/`. Every path from a Dockerfile, a context or a tarball is resolved
//! through [`Root`], which asks the kernel to resolve it as if the directory were the root
//! (`openat2` with `RESOLVE_IN_ROOT`): `..` stops at the top and an absolute symlink such as
//! `/app -> /` or `/x -> ../../..` points back inside. Nothing here joins strings and then
//! opens the result; every change is made relative to a directory descriptor, on the last
//! component only, never through a symlink.

use crate::sys;
use nix::fcntl::OFlag;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The components of `path` cleaned lexically, as Go's `filepath.Clean("/" + path)` does:
/// `.` dropped, `..` removes the previous component and stops at the top.
pub(crate) fn clean(path: &Path) -> Vec<OsString> {
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
pub(crate) fn join(comps: &[OsString]) -> PathBuf {
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirOpts {
    pub(crate) mode: u32,
    pub(crate) owner: Option<(u32, u32)>,
}

impl DirOpts {
    /// 0755 root:root, what Docker creates for missing parents.
    pub(crate) const DEFAULT: DirOpts = DirOpts {
        mode: 0o755,
        owner: None,
    };
}

/// A directory standing in for `/`.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    /// The detached mount `fd` is in, kept open: closing it dissolves the mount, and `..`
    /// lookups in a dissolved mount fail with EAGAIN forever.
    _mount: Option<OwnedFd>,
}

fn is_errno(e: &io::Error, errno: nix::errno::Errno) -> bool {
    e.raw_os_error() == Some(errno as i32)
}

impl Root {
    /// Opens `path` as a root.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        Ok(Root {
            fd: sys::open_dir(path)?,
            _mount: None,
        })
    }

    /// The root of a detached mount (from `fsmount` or `open_tree`), reopened as a plain
    /// directory; the mount stays alive as long as the returned root does.
    pub(crate) fn of_mount(mount: OwnedFd) -> io::Result<Root> {
        Ok(Root {
            fd: sys::open_beneath(
                mount.as_fd(),
                Path::new("."),
                OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                0,
            )?,
            _mount: Some(mount),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `comps`, following every symlink inside the root; `None` when it does not exist.
    pub(crate) fn open_at(&self, comps: &[OsString], flags: OFlag) -> io::Result<Option<OwnedFd>> {
        match sys::open_in_root(self.fd(), &join(comps), flags) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The type and metadata of `comps` after following symlinks; `None` when missing.
    pub(crate) fn stat(&self, comps: &[OsString]) -> io::Result<Option<libc::stat>> {
        match self.open_at(comps, OFlag::O_PATH)? {
            Some(fd) => Ok(Some(sys::fstat(fd.as_fd())?)),
            None => Ok(None),
        }
    }

    /// Opens the directory `comps`, creating what is missing with `opts`; the paths created
    /// are appended to `created`.
    pub(crate) fn mkdir_all(
        &self,
        comps: &[OsString],
        opts: DirOpts,
        created: &mut Vec<PathBuf>,
    ) -> io::Result<OwnedFd> {
        let mut comps = comps.to_vec();
        // A dangling symlink on the way is followed (inside the root) and its target made,
        // as BuildKit does; at most 40 of them, like the kernel's limit.
        for _ in 0..40 {
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
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// One pass of [`Root::mkdir_all`]: `Err((i, target))` when component `i` is a dangling
    /// symlink to `target`.
    fn mkdir_all_once(
        &self,
        comps: &[OsString],
        opts: DirOpts,
        created: &mut Vec<PathBuf>,
    ) -> io::Result<Result<OwnedFd, (usize, PathBuf)>> {
        let mut dir = sys::open_in_root(
            self.fd(),
            Path::new("."),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        )?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match sys::open_in_root(self.fd(), &prefix, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
                Ok(fd) => dir = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let name = Path::new(&comps[i]);
                    if let Err(e) = sys::mkdir_at(dir.as_fd(), name, 0o700) {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            let target = sys::readlink_at(dir.as_fd(), name)?;
                            return Ok(Err((i, PathBuf::from(target))));
                        }
                        return Err(e);
                    }
                    let fd = sys::open_beneath(
                        dir.as_fd(),
                        name,
                        OFlag::O_DIRECTORY | OFlag::O_RDONLY,
                        0,
                    )?;
                    if let Some((uid, gid)) = opts.owner {
                        sys::fchown(fd.as_fd(), uid, gid)?;
                    }
                    sys::fchmod(fd.as_fd(), opts.mode)?;
                    created.push(Path::new("/").join(&prefix));
                    dir = fd;
                }
                Err(e) if is_errno(&e, nix::errno::Errno::ENOTDIR) => {
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
    pub(crate) fn parent_of<'a>(
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
}

/// What is at `name` in `dir`, without following it.
pub(crate) fn entry_type(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<u32>> {
    match sys::lstat_at(dir, Path::new(name)) {
        Ok(st) => Ok(Some(st.st_mode & libc::S_IFMT)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes room for a new entry `name` in `dir`: removes a non-directory there, or an empty
/// directory when `keep_dir` is false. A non-empty directory is an error.
pub(crate) fn clear_entry(dir: BorrowedFd<'_>, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
    match entry_type(dir, name)? {
        None => Ok(false),
        Some(libc::S_IFDIR) if keep_dir => Ok(true),
        Some(libc::S_IFDIR) => match sys::unlink_at(dir, Path::new(name), true) {
            Ok(()) => Ok(false),
            Err(e)
                if is_errno(&e, nix::errno::Errno::ENOTEMPTY)
                    || is_errno(&e, nix::errno::Errno::EEXIST) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!(
                        "cannot replace non-empty directory {}",
                        String::from_utf8_lossy(name.as_bytes())
                    ),
                ))
            }
            Err(e) => Err(e),
        },
        Some(_) => {
            sys::unlink_at(dir, Path::new(name), false)?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Vec<String> {
        clean(Path::new(p))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn clean_clamps_dotdot_at_the_top() {
        assert_eq!(c("/../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(c("a/./b/../c/"), ["a", "c"]);
        assert_eq!(c("../../../tmp/x"), ["tmp", "x"]);
        assert!(c("/").is_empty());
        assert!(c("").is_empty());
    }
}
