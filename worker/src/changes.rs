//! A container's changes as `docker diff` lists them: its overlay upper directory read
//! against the image's layer directories.
//!
//! The walk is docker's (moby's `archive.OverlayChanges`): the upper directory depth first,
//! each directory's names sorted bytewise, parents before children. A whiteout is `D`; an
//! opaque directory that hid a directory of the image is `D` too (its contents follow as
//! `A`, all new); any other entry is `A`, or `C` when the image had that path, except a
//! directory whose size, mode and mtime are the image's (overlay copied it up only to reach
//! a child). The parent of an `A` or `D` is listed as `C` once, before it, when the walk did
//! not list it already. The image's layers are looked up without following any symlink: a
//! path counts as in the image only through real directories of a layer.

use crate::diff::{DiffError, Pinned, sorted_names};
use crate::layers::{is_opaque, is_whiteout};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `C`: changed (the image had it).
    Modified,
    /// `A`: added.
    Added,
    /// `D`: deleted.
    Deleted,
}

/// One line of `docker diff`: `A /etc/new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The absolute path in the container (`/etc/new`), as bytes.
    pub path: Vec<u8>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{k} {}", String::from_utf8_lossy(&self.path))
    }
}

/// The changes in `upper` (an overlay upper directory) over `lowers` (the image's layer
/// directories, top first), in docker's order. Blocking; reads metadata only.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, DiffError> {
    let mut out = Vec::new();
    let mut listed: HashSet<Vec<u8>> = HashSet::new();
    // Depth first with an explicit stack, a directory's subtree right after it (Go's
    // `filepath.Walk`). Each frame: the directory's path in the container, its upper
    // directory, the image's layer directories that have it as a real directory (top
    // first), and its names still to visit.
    let mut stack: Vec<Frame> = vec![Frame {
        rel: Vec::new(),
        below: lowers.to_vec(),
        names: sorted_names(upper)?.into_iter(),
    }];
    // The upper directory is read through pinned descriptors, as the layer writer reads it:
    // a running container may change it meanwhile.
    let mut pinned = Pinned::open(upper)?;
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            stack.pop();
            continue;
        };
        let rel = top.rel.clone();
        // Relative to the upper directory: the path without its leading `/`.
        let in_upper = rel.get(1..).unwrap_or_default().to_vec();
        let host = pinned.entry(upper, &in_upper, &name)?;
        let meta = fs_err::symlink_metadata(&host).map_err(|source| DiffError::Read {
            path: upper.join(OsStr::from_bytes(&in_upper)).join(&name),
            source,
        })?;
        let mut path = rel.clone();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        let in_image: Vec<(PathBuf, Metadata)> = top
            .below
            .iter()
            .filter_map(|l| {
                let p = l.join(&name);
                fs_err::symlink_metadata(&p).ok().map(|m| (p, m))
            })
            .collect();
        let opaque = meta.is_dir() && is_opaque(&host);
        let kind = if is_whiteout(&meta) || (opaque && !in_image.is_empty()) {
            Some(ChangeKind::Deleted)
        } else {
            match in_image.first() {
                None => Some(ChangeKind::Added),
                Some((_, was)) if meta.is_dir() && was.is_dir() && same_dir(&meta, was) => None,
                Some(_) => Some(ChangeKind::Modified),
            }
        };
        if let Some(kind) = kind {
            if meta.is_dir() {
                listed.insert(path.clone());
            }
            if kind != ChangeKind::Modified && !rel.is_empty() && !listed.contains(&rel) {
                listed.insert(rel.clone());
                out.push(Change {
                    kind: ChangeKind::Modified,
                    path: rel,
                });
            }
            out.push(Change {
                kind,
                path: path.clone(),
            });
        }
        if meta.is_dir() {
            let below = if opaque {
                Vec::new()
            } else {
                in_image
                    .into_iter()
                    .filter(|(_, m)| m.is_dir())
                    .map(|(p, _)| p)
                    .collect()
            };
            let names = pinned
                .descend(upper, &in_upper, &name, &path[1..])?
                .into_iter();
            stack.push(Frame {
                rel: path,
                below,
                names,
            });
        }
    }
    Ok(out)
}

struct Frame {
    rel: Vec<u8>,
    below: Vec<PathBuf>,
    names: std::vec::IntoIter<std::ffi::OsString>,
}

/// Whether a directory in the upper layer looks as it did in the image (docker's test).
fn same_dir(now: &Metadata, was: &Metadata) -> bool {
    let same_time = if now.mtime_nsec() == 0 || was.mtime_nsec() == 0 {
        now.mtime() == was.mtime()
    } else {
        now.mtime() == was.mtime() && now.mtime_nsec() == was.mtime_nsec()
    };
    now.size() == was.size() && now.mode() == was.mode() && same_time
}
