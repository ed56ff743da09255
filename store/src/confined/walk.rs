//! The one chroot-style path walk: components applied one at a time from the root, `..`
//! stopping at the root, a symlink met on the way replaced by its target (an absolute target
//! restarts at the root), at most [`MAX_SYMLINKS`] of them, the last component followed only
//! when asked. It is generic over the tree it walks ([`Tree`]): the directory fds of
//! [`super::ConfinedRoot`] on a kernel without `openat2`, and the in-memory listing of a
//! build context that `strata-cache` selects from. On a kernel with `openat2`, the kernel
//! walks with the same rules (`RESOLVE_IN_ROOT`), so the three agree.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Symlinks followed in one lookup before giving up with ELOOP: Linux's limit (`MAXSYMLINKS`),
/// which `openat2` applies too.
pub const MAX_SYMLINKS: usize = 40;

/// What a name in a directory of a [`Tree`] is.
#[derive(Debug)]
pub enum Child<N> {
    /// A directory the walk can enter.
    Dir(N),
    /// A symlink, and its target.
    Symlink(N, Vec<u8>),
    /// Anything else (a file, a device, ...).
    Other(N),
    /// Nothing by that name (or nothing the caller may see).
    Missing,
}

/// A tree [`resolve`] walks.
pub trait Tree {
    /// A directory or an entry of the tree.
    type Node;
    /// What looking something up can fail with.
    type Error;
    /// The root directory.
    fn root(&self) -> Result<Self::Node, Self::Error>;
    /// The parent of the directory `dir`, which is not the root.
    fn parent(&self, dir: &Self::Node) -> Result<Self::Node, Self::Error>;
    /// The entry `name` (one component) of the directory `dir`, not followed.
    fn child(&self, dir: &Self::Node, name: &[u8]) -> Result<Child<Self::Node>, Self::Error>;
}

/// Where a walk ended.
#[derive(Debug)]
pub enum Resolved<N> {
    /// At this node (a directory, or the last component when it is not one).
    Found(N),
    /// Something on the way, or the last component, does not exist.
    Missing,
    /// A component before the last is neither a directory nor a symlink.
    NotDir,
    /// More than [`MAX_SYMLINKS`] symlinks were followed.
    Loop,
}

/// Resolves the `/`-separated `path` in `tree` as if its root were `/`, following the last
/// component if `follow_last`.
pub fn resolve<T: Tree>(
    tree: &T,
    path: &[u8],
    follow_last: bool,
) -> Result<Resolved<T::Node>, T::Error> {
    // Only the current directory is held (for fds, a 2000-level path must not need 2000 of
    // them); `depth` counts how far below the root it is, so `..` can stop at the root.
    let mut cur = tree.root()?;
    let mut depth = 0usize;
    let mut todo: VecDeque<Vec<u8>> = path.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if depth > 0 {
                    cur = tree.parent(&cur)?;
                    depth -= 1;
                }
                continue;
            }
            _ => {}
        }
        let last = todo.iter().all(|c| c.is_empty() || c == b".");
        match tree.child(&cur, &c)? {
            Child::Dir(n) => {
                cur = n;
                depth += 1;
            }
            Child::Symlink(_, target) if follow_last || !last => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Ok(Resolved::Loop);
                }
                if target.starts_with(b"/") {
                    cur = tree.root()?;
                    depth = 0;
                }
                for part in target.split(|b| *b == b'/').rev() {
                    todo.push_front(part.to_vec());
                }
            }
            Child::Symlink(n, _) | Child::Other(n) if last => return Ok(Resolved::Found(n)),
            Child::Symlink(..) | Child::Other(_) => return Ok(Resolved::NotDir),
            Child::Missing => return Ok(Resolved::Missing),
        }
    }
    Ok(Resolved::Found(cur))
}

/// A directory fd, or an entry in one.
pub(super) struct FdNode {
    pub(super) dir: OwnedFd,
    pub(super) name: Option<OsString>,
}

/// The real tree under a directory fd, walked with `O_NOFOLLOW` steps: the fallback for
/// kernels without `openat2` (before 5.6). Going up through the real `..` is safe: we only
/// went down through real directories.
pub(super) struct FdTree<'a> {
    pub(super) root: std::os::fd::BorrowedFd<'a>,
}

impl Tree for FdTree<'_> {
    type Node = FdNode;
    type Error = io::Error;

    fn root(&self) -> io::Result<FdNode> {
        Ok(FdNode {
            dir: dup_dir(self.root)?,
            name: None,
        })
    }

    fn parent(&self, dir: &FdNode) -> io::Result<FdNode> {
        Ok(FdNode {
            dir: super::open_dir_at(&dir.dir, OsStr::new(".."))?,
            name: None,
        })
    }

    fn child(&self, dir: &FdNode, name: &[u8]) -> io::Result<Child<FdNode>> {
        let name = OsStr::from_bytes(name);
        let st = match rustix::fs::statat(&dir.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Child::Missing),
            Err(e) => return Err(e.into()),
        };
        let entry = || -> io::Result<FdNode> {
            Ok(FdNode {
                dir: dup_dir(dir.dir.as_fd())?,
                name: Some(name.to_os_string()),
            })
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Child::Dir(FdNode {
                dir: super::open_dir_at(&dir.dir, name)?,
                name: None,
            }),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&dir.dir, name, Vec::new())?;
                Child::Symlink(entry()?, target.into_bytes())
            }
            _ => Child::Other(entry()?),
        })
    }
}

/// Opens `path` in `root` by walking it with [`resolve`]; `flags` as for `openat2`.
pub(super) fn open_by_walking(
    root: std::os::fd::BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let follow = !flags.contains(OFlags::NOFOLLOW);
    match resolve(&FdTree { root }, path, follow)? {
        Resolved::Found(FdNode { dir, name: None }) => Ok(rustix::fs::openat(
            &dir,
            ".",
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )?),
        Resolved::Found(FdNode {
            dir,
            name: Some(name),
        }) => Ok(rustix::fs::openat(
            &dir,
            &name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?),
        Resolved::Missing => Err(Errno::NOENT.into()),
        Resolved::NotDir => Err(Errno::NOTDIR.into()),
        Resolved::Loop => Err(Errno::LOOP.into()),
    }
}

pub(super) fn dup_dir(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree in memory: path → symlink target (or `None` for a directory).
    struct Mem(BTreeMap<String, Option<String>>);

    impl Tree for Mem {
        type Node = String;
        type Error = ();
        fn root(&self) -> Result<String, ()> {
            Ok(String::new())
        }
        fn parent(&self, dir: &String) -> Result<String, ()> {
            Ok(dir
                .rsplit_once('/')
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default())
        }
        fn child(&self, dir: &String, name: &[u8]) -> Result<Child<String>, ()> {
            let name = std::str::from_utf8(name).unwrap();
            let path = if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            };
            Ok(match self.0.get(&path) {
                None => Child::Missing,
                Some(None) => Child::Dir(path),
                Some(Some(t)) if t == "FILE" => Child::Other(path),
                Some(Some(t)) => Child::Symlink(path, t.clone().into_bytes()),
            })
        }
    }

    fn mem(entries: &[(&str, Option<&str>)]) -> Mem {
        Mem(entries
            .iter()
            .map(|(p, t)| (p.to_string(), t.map(str::to_owned)))
            .collect())
    }

    fn found(r: Resolved<String>) -> String {
        match r {
            Resolved::Found(n) => n,
            other => panic!("not found: {other:?}"),
        }
    }

    #[test]
    fn dotdot_and_absolute_targets_stay_in_the_root() {
        let t = mem(&[
            ("a", None),
            ("a/b", None),
            ("up", Some("../../..")),
            ("abs", Some("/a/b")),
            ("f", Some("FILE")),
        ]);
        assert_eq!(found(resolve(&t, b"/../../a/b", true).unwrap()), "a/b");
        assert_eq!(found(resolve(&t, b"up/a", true).unwrap()), "a");
        assert_eq!(found(resolve(&t, b"a/b/../../abs/..", true).unwrap()), "a");
        assert_eq!(found(resolve(&t, b"abs", false).unwrap()), "abs");
        assert_eq!(found(resolve(&t, b"f", true).unwrap()), "f");
        assert!(matches!(
            resolve(&t, b"f/x", true).unwrap(),
            Resolved::NotDir
        ));
        assert!(matches!(
            resolve(&t, b"a/nope", true).unwrap(),
            Resolved::Missing
        ));
    }

    #[test]
    fn forty_links_resolve_and_forty_one_loop() {
        // l0 -> l1 -> ... -> lN -> a: N+1 links.
        let chain = |n: usize| {
            let mut e: Vec<(String, Option<String>)> = vec![("a".into(), None)];
            for i in 0..n {
                e.push((format!("l{i}"), Some(format!("l{}", i + 1))));
            }
            e.push((format!("l{n}"), Some("a".into())));
            Mem(e.into_iter().collect())
        };
        assert_eq!(
            found(resolve(&chain(MAX_SYMLINKS - 1), b"l0", true).unwrap()),
            "a"
        );
        assert!(matches!(
            resolve(&chain(MAX_SYMLINKS), b"l0", true).unwrap(),
            Resolved::Loop
        ));
    }
}
