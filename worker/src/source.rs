//! The directory a COPY reads from (a build context, a stage's filesystem), as the one
//! source resolver ([`strata_graph::resolver`]) walks it: so the copy writes exactly the
//! entries the cache key covers. Lookups go through the store's one chroot-style walk
//! ([`confined::walk::resolve`]) over real paths; the context's `.dockerignore` hides what
//! it skips and marks the directories it keeps only as parents.

use crate::sys;
use rustix::fs::OFlags;
use std::borrow::Cow;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use strata_graph::pattern::DirVisit;
use strata_graph::resolver::{Children, Kind, Lookup, SourceTree};
use strata_store::confined::{self, ConfinedRoot, walk};

/// Says what a build context's `.dockerignore` does with a path (relative to the context
/// root, `/`-separated; the flag says whether it is a directory): [`DirVisit::Include`] it,
/// [`DirVisit::Skip`] it (a directory with everything below), or, for an excluded directory
/// that a `!` pattern may reach into, [`DirVisit::WalkExcluded`]: it is there only as the
/// parent of what below it is included.
pub type ExcludeFn = Arc<dyn Fn(&Path, bool) -> DirVisit + Send + Sync>;

/// An entry of a [`Dir`]: its real path (no symlink on the way), relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) path: String,
    kind: Kind,
    only_parent: bool,
}

/// A directory, with the `.dockerignore` of a build context.
pub(crate) struct Dir<'a> {
    pub(crate) root: &'a ConfinedRoot,
    pub(crate) ignore: Option<&'a ExcludeFn>,
}

fn comps(path: &str) -> Vec<OsString> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(OsString::from)
        .collect()
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

impl Dir<'_> {
    fn open(&self, path: &str) -> io::Result<Option<OwnedFd>> {
        self.root
            .open_at(&comps(path), OFlags::DIRECTORY | OFlags::RDONLY)
    }

    /// The entry `name` of the open directory `dir` (at `base`), `None` if missing or
    /// skipped by `.dockerignore`; with its link target if it is a symlink.
    fn entry(
        &self,
        dir: &OwnedFd,
        base: &str,
        name: &str,
    ) -> io::Result<Option<(Node, Option<Vec<u8>>)>> {
        let st = match sys::lstat_at(dir.as_fd(), Path::new(name)) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        let path = join(base, name);
        let visit = self.ignore.map_or(DirVisit::Include, |ignore| {
            ignore(Path::new(&path), kind == Kind::Dir)
        });
        if visit == DirVisit::Skip {
            return Ok(None);
        }
        let link = if kind == Kind::Symlink {
            use std::os::unix::ffi::OsStringExt;
            Some(sys::readlink_at(dir.as_fd(), Path::new(name))?.into_vec())
        } else {
            None
        };
        let only_parent = visit == DirVisit::WalkExcluded;
        Ok(Some((
            Node {
                path,
                kind,
                only_parent,
            },
            link,
        )))
    }
}

/// The walk over real paths (the store's [`walk::resolve`] does the following).
impl walk::Tree for Dir<'_> {
    type Node = String;
    type Error = io::Error;

    fn root(&self) -> io::Result<String> {
        Ok(String::new())
    }

    fn parent(&self, dir: &String) -> io::Result<String> {
        Ok(dir.rsplit_once('/').map_or("", |(p, _)| p).to_owned())
    }

    fn child(&self, dir: &String, name: &[u8]) -> io::Result<walk::Child<String>> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(walk::Child::Missing);
        };
        let Some(fd) = self.open(dir)? else {
            return Ok(walk::Child::Missing);
        };
        Ok(match self.entry(&fd, dir, name)? {
            None => walk::Child::Missing,
            Some((n, _)) if n.kind == Kind::Dir => walk::Child::Dir(n.path),
            Some((n, Some(target))) => walk::Child::Symlink(n.path, target),
            Some((n, _)) => walk::Child::Other(n.path),
        })
    }
}

impl SourceTree for Dir<'_> {
    type Node = Node;
    type Error = io::Error;

    fn lookup(&self, path: &str, follow_last: bool) -> io::Result<Lookup<Node>> {
        let real = match walk::resolve(self, path.as_bytes(), follow_last)? {
            walk::Resolved::Found(p) => p,
            walk::Resolved::Missing | walk::Resolved::NotDir => return Ok(Lookup::Missing),
            walk::Resolved::Loop => return Ok(Lookup::Loop),
        };
        let (base, name) = real.rsplit_once('/').unwrap_or(("", &real));
        if name.is_empty() {
            return Ok(Lookup::Found(Node {
                path: String::new(),
                kind: Kind::Dir,
                only_parent: false,
            }));
        }
        let Some(fd) = self.open(base)? else {
            return Ok(Lookup::Missing);
        };
        Ok(match self.entry(&fd, base, name)? {
            Some((n, _)) => Lookup::Found(n),
            None => Lookup::Missing,
        })
    }

    fn kind(&self, node: &Node) -> Kind {
        node.kind
    }

    fn children(&self, dir: &Node) -> io::Result<Children<'_, Node>> {
        let Some(fd) = self.open(&dir.path)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for name in confined::list(fd.as_fd())? {
            // A name that is not UTF-8 cannot be named by a Dockerfile; lossily named, it is
            // not found by the stat and so left out (a build context refuses such names).
            let name = name
                .into_string()
                .unwrap_or_else(|n| n.to_string_lossy().into_owned());
            if let Some((n, _)) = self.entry(&fd, &dir.path, &name)? {
                out.push((Cow::Owned(name), n));
            }
        }
        Ok(out)
    }

    fn only_parent(&self, node: &Node) -> bool {
        node.only_parent
    }
}
