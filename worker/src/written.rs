//! What a fresh COPY wrote: for each regular file and symlink it made, the metadata it gave
//! it (owner, mode, size, mtime, the xattrs it set, the link target), so that the layer
//! writer ([`crate::diff`]) takes them from here instead of asking the filesystem again (an
//! `lstat` and an `llistxattr` per file, through `/proc/self/fd`: most of a 20,000-file
//! COPY's layer walk).
//!
//! Only what the copy is sure of is told. Everything else is marked *ask*, and the layer
//! walk reads it as it reads a RUN's upper: directories (their times move with their
//! entries, the overlay may have copied them up or made them opaque), hard-link members
//! (the walk pairs them by inode), special files, set-ID modes (the kernel may drop a bit
//! on `fchmod`) and files with a file capability (a user namespace rewrites it). The walk
//! still lists every directory, so an entry the copy did not make (an overlay whiteout, a
//! parent copied up) is read from the filesystem whatever this says. A later entry for a
//! path replaces an earlier one; an operation that writes without telling (an archive, a
//! download, a git checkout, a `mkdir`) drops the whole list, as does a destination the
//! copy cannot name (a symlink on its way).

use std::collections::HashMap;
use std::sync::Arc;

/// The entries a file operation made, by directory (its path in the layer, bytes, `""` for
/// the root) and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    dirs: HashMap<Arc<[u8]>, Vec<Made>>,
}

/// One entry the copy made, as it made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Made {
    name: Box<[u8]>,
    /// `None`: the layer writer asks the filesystem.
    told: Option<Told>,
}

/// A [`Made`] with the path of its directory.
pub(crate) type InDir = (Arc<[u8]>, Made);

impl Made {
    /// `name` made as `told` says (`None`: ask the filesystem).
    pub(crate) fn new(name: &[u8], told: Option<Told>) -> Made {
        Made {
            name: name.into(),
            told,
        }
    }
}

/// What the copy gave an entry (a regular file or a symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Told {
    /// The full `st_mode` (type and permission bits).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    /// A file's size in bytes (0 for a symlink).
    pub(crate) size: u64,
    /// A file's xattrs an image keeps, sorted; a symlink's target.
    pub(crate) extra: Option<Box<Extra>>,
}

/// The rarely present parts of [`Told`], apart to keep the common entry small (some 80
/// bytes with its name: 8 MB at 100,000 files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Extra {
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) link: Option<Vec<u8>>,
}

impl Told {
    /// A regular file: `mode` its permission bits, `xattrs` those set on it (any order).
    /// `None` when the filesystem has to be asked (see the module).
    pub(crate) fn file(
        mode: u32,
        (uid, gid): (u32, u32),
        mtime: i64,
        size: u64,
        mut xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Option<Told> {
        if mode & 0o6000 != 0 || xattrs.iter().any(|(k, _)| k == b"security.capability") {
            return None;
        }
        xattrs.sort();
        Some(Told {
            mode: libc::S_IFREG | (mode & 0o7777),
            uid,
            gid,
            mtime,
            size,
            extra: (!xattrs.is_empty()).then(|| Box::new(Extra { xattrs, link: None })),
        })
    }

    /// A symlink to `target` (its mode is always 0777).
    pub(crate) fn symlink(target: &[u8], (uid, gid): (u32, u32), mtime: i64) -> Told {
        Told {
            mode: libc::S_IFLNK | 0o777,
            uid,
            gid,
            mtime,
            size: 0,
            extra: Some(Box::new(Extra {
                xattrs: Vec::new(),
                link: Some(target.to_vec()),
            })),
        }
    }

    /// Whether this is a symlink.
    pub(crate) fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

impl Written {
    /// Records that `name` in the directory `dir` was made as `told` says (`None`: ask the
    /// filesystem), replacing what was recorded for that path before.
    pub(crate) fn add(&mut self, dir: &Arc<[u8]>, name: &[u8], told: Option<Told>) {
        let made = Made::new(name, told);
        match self.dirs.get_mut(&dir[..]) {
            Some(v) => v.push(made),
            None => {
                self.dirs.insert(dir.clone(), vec![made]);
            }
        }
    }

    /// Appends `entries` (directory and entry) after those recorded so far: they replace
    /// those for the same paths.
    pub(crate) fn append(&mut self, entries: Vec<InDir>) {
        for (dir, made) in entries {
            self.dirs.entry(dir).or_default().push(made);
        }
    }

    /// Sorts each directory's entries by name, the last one recorded for a name kept: ready
    /// for [`Written::get`].
    pub(crate) fn seal(mut self) -> Written {
        for v in self.dirs.values_mut() {
            // Stable: for one name, the last recorded stays last.
            v.sort_by(|a, b| a.name.cmp(&b.name));
            let mut kept: Vec<Made> = Vec::with_capacity(v.len());
            for m in v.drain(..) {
                match kept.last_mut() {
                    Some(last) if last.name == m.name => *last = m,
                    _ => kept.push(m),
                }
            }
            *v = kept;
        }
        self
    }

    /// What the copy told of `name` in `dir` (paths in the layer, bytes); `None`: the
    /// filesystem has to be asked. Only on a sealed list.
    pub(crate) fn get(&self, dir: &[u8], name: &[u8]) -> Option<&Told> {
        let v = self.dirs.get(dir)?;
        let i = v.binary_search_by(|m| (*m.name).cmp(name)).ok()?;
        v[i].told.as_ref()
    }

    /// How many entries are told (not asked).
    pub fn told(&self) -> usize {
        self.dirs
            .values()
            .flatten()
            .filter(|m| m.told.is_some())
            .count()
    }
}

/// A path in the layer: `dir/name` (`name` alone in the root).
pub(crate) fn child(dir: &[u8], name: &[u8]) -> Arc<[u8]> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_entry_for_a_path_wins_and_asked_ones_are_not_told() {
        let mut w = Written::default();
        let d: Arc<[u8]> = b"app".as_slice().into();
        let f = |size| Told::file(0o644, (0, 0), 1, size, Vec::new());
        w.add(&d, b"b", f(1));
        w.add(&d, b"a", f(2));
        w.append(vec![(d.clone(), Made::new(b"b", f(3)))]);
        w.add(&d, b"a", None);
        let w = w.seal();
        assert_eq!(w.get(b"app", b"b").map(|t| t.size), Some(3));
        assert!(w.get(b"app", b"a").is_none());
        assert!(w.get(b"", b"b").is_none());
        assert_eq!(w.told(), 1);
        // Set-ID modes and file capabilities are always asked.
        assert!(Told::file(0o4755, (0, 0), 1, 1, Vec::new()).is_none());
        let cap = vec![(b"security.capability".to_vec(), vec![1])];
        assert!(Told::file(0o755, (0, 0), 1, 1, cap).is_none());
    }
}
