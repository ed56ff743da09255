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
/// the root) and name. Some 40 bytes an entry and its name (4 MB at 100,000 files): a
/// directory's names in one buffer, the rare xattrs and link targets apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    dirs: HashMap<Arc<[u8]>, Dir>,
}

/// The entries made in one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dir {
    /// Every entry's name, one after the other.
    names: Vec<u8>,
    /// In the order recorded; sorted by name (the last one recorded for a name kept) once
    /// sealed.
    entries: Vec<Rec>,
    extras: Vec<Extra>,
}

/// One entry the copy made, as it made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    /// Its name: `names[name..name + len]`.
    name: u32,
    len: u16,
    /// `false`: the layer writer asks the filesystem (the rest is unused).
    told: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Index in `extras`, or [`NO_EXTRA`].
    extra: u32,
    mtime: i64,
    size: u64,
}

const NO_EXTRA: u32 = u32::MAX;

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
    pub(crate) extra: Option<Extra>,
}

/// The rarely present parts of [`Told`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Extra {
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) link: Option<Vec<u8>>,
}

/// A [`Told`] as [`Written::get`] gives it back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToldRef<'a> {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    pub(crate) size: u64,
    pub(crate) extra: Option<&'a Extra>,
}

impl ToldRef<'_> {
    /// Whether this is a symlink.
    pub(crate) fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
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
            extra: (!xattrs.is_empty()).then_some(Extra { xattrs, link: None }),
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
            extra: Some(Extra {
                xattrs: Vec::new(),
                link: Some(target.to_vec()),
            }),
        }
    }
}

impl Dir {
    fn name(&self, r: &Rec) -> &[u8] {
        let start = r.name as usize;
        &self.names[start..start + usize::from(r.len)]
    }
}

impl Written {
    /// Records that `name` in the directory `dir` was made as `told` says (`None`: ask the
    /// filesystem), replacing what was recorded for that path before. A name longer than
    /// a directory entry can be is not recorded (nothing could have been made by it).
    pub(crate) fn add(&mut self, dir: &Arc<[u8]>, name: &[u8], told: Option<Told>) {
        let Ok(len) = u16::try_from(name.len()) else {
            return;
        };
        let d = match self.dirs.get_mut(&dir[..]) {
            Some(d) => d,
            None => self.dirs.entry(dir.clone()).or_default(),
        };
        let Ok(at) = u32::try_from(d.names.len()) else {
            // Some 4 GB of names in one directory: this one is asked.
            return;
        };
        d.names.extend_from_slice(name);
        let mut r = Rec {
            name: at,
            len,
            told: false,
            mode: 0,
            uid: 0,
            gid: 0,
            extra: NO_EXTRA,
            mtime: 0,
            size: 0,
        };
        if let Some(t) = told {
            r.told = true;
            (r.mode, r.uid, r.gid, r.mtime, r.size) = (t.mode, t.uid, t.gid, t.mtime, t.size);
            if let Some(e) = t.extra {
                r.extra = u32::try_from(d.extras.len()).unwrap_or(NO_EXTRA);
                if r.extra == NO_EXTRA {
                    r.told = false;
                } else {
                    d.extras.push(e);
                }
            }
        }
        d.entries.push(r);
    }

    /// Appends what `other` recorded after what this one did: its entries replace those
    /// for the same paths.
    pub(crate) fn append(&mut self, other: Written) {
        for (dir, od) in other.dirs {
            let d = self.dirs.entry(dir).or_default();
            let (Ok(base), Ok(ebase)) =
                (u32::try_from(d.names.len()), u32::try_from(d.extras.len()))
            else {
                // Out of room for offsets: the whole directory is asked.
                for r in &mut d.entries {
                    r.told = false;
                }
                continue;
            };
            d.names.extend_from_slice(&od.names);
            d.extras.extend(od.extras);
            for mut r in od.entries {
                r.name = r.name.saturating_add(base);
                if r.extra != NO_EXTRA {
                    r.extra = r.extra.saturating_add(ebase);
                }
                d.entries.push(r);
            }
        }
    }

    /// Sorts each directory's entries by name, the last one recorded for a name kept: ready
    /// for [`Written::get`].
    pub(crate) fn seal(mut self) -> Written {
        for d in self.dirs.values_mut() {
            let mut entries = std::mem::take(&mut d.entries);
            // Stable: for one name, the last recorded stays last.
            entries.sort_by(|a, b| d.name(a).cmp(d.name(b)));
            let mut kept: Vec<Rec> = Vec::with_capacity(entries.len());
            for r in entries {
                match kept.last_mut() {
                    Some(last) if d.name(last) == d.name(&r) => *last = r,
                    _ => kept.push(r),
                }
            }
            d.entries = kept;
            d.names.shrink_to_fit();
        }
        self
    }

    /// What the copy told of `name` in `dir` (paths in the layer, bytes); `None`: the
    /// filesystem has to be asked. Only on a sealed list.
    pub(crate) fn get(&self, dir: &[u8], name: &[u8]) -> Option<ToldRef<'_>> {
        let d = self.dirs.get(dir)?;
        let i = d.entries.binary_search_by(|r| d.name(r).cmp(name)).ok()?;
        let r = &d.entries[i];
        if !r.told {
            return None;
        }
        let extra = match r.extra {
            NO_EXTRA => None,
            e => Some(d.extras.get(e as usize)?),
        };
        Some(ToldRef {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            mtime: r.mtime,
            size: r.size,
            extra,
        })
    }

    /// How many entries are told (not asked).
    pub fn told(&self) -> usize {
        self.dirs
            .values()
            .map(|d| d.entries.iter().filter(|r| r.told).count())
            .sum()
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
        let mut later = Written::default();
        later.add(&d, b"b", f(3));
        let x = vec![(b"user.x".to_vec(), b"1".to_vec())];
        later.add(&d, b"c", Told::file(0o600, (1, 2), 5, 4, x.clone()));
        later.add(&d, b"l", Some(Told::symlink(b"../t", (0, 0), 9)));
        w.append(later);
        w.add(&d, b"a", None);
        let w = w.seal();
        assert_eq!(w.get(b"app", b"b").map(|t| t.size), Some(3));
        assert!(w.get(b"app", b"a").is_none());
        assert!(w.get(b"", b"b").is_none());
        let c = w.get(b"app", b"c").expect("c is told");
        assert_eq!((c.mode, c.uid, c.gid, c.mtime), (0o100600, 1, 2, 5));
        assert_eq!(c.extra.map(|e| e.xattrs.clone()), Some(x));
        let l = w.get(b"app", b"l").expect("l is told");
        assert!(l.is_symlink());
        assert_eq!(l.extra.and_then(|e| e.link.clone()), Some(b"../t".to_vec()));
        assert_eq!(w.told(), 3);
        // Set-ID modes and file capabilities are always asked.
        assert!(Told::file(0o4755, (0, 0), 1, 1, Vec::new()).is_none());
        let cap = vec![(b"security.capability".to_vec(), vec![1])];
        assert!(Told::file(0o755, (0, 0), 1, 1, cap).is_none());
    }
}
