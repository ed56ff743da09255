//! Layer diffs: an overlayfs upper directory becomes an OCI layer tar.
//!
//! The upper dir already is the change set: overlay whiteouts (0/0 character devices) become
//! `.wh.<name>` entries and opaque directories (`trusted.overlay.opaque=y`, rootless `user.`) get a
//! `.wh..wh..opq` entry. Everything else is written as found: modes with
//! setuid/setgid/sticky, numeric owners (no user or group names), symlinks, hard links
//! within the layer, devices and FIFOs; sockets are skipped. Entries come in a fixed order
//! (each directory's names sorted bytewise, parents before children, like Go's
//! `filepath.Walk`), and mtimes are clamped to `SOURCE_DATE_EPOCH` when it is given, so the
//! same tree always gives the same bytes.
//!
//! Headers are USTAR with PAX records only where needed (long names, big ids or sizes,
//! xattrs), as Go's archive/tar writes them. The tar stream is written here rather than
//! with `tar::Builder` so the format is exactly this and file data is copied with a hard
//! size bound: a file growing while it is read can never shift the stream. Memory stays flat:
//! one directory listing per level and a 64 KiB copy buffer (for an incremental layer, an
//! index of the earlier tar, 56 bytes an entry; the runs of it taken as they are go to the
//! writer as ranges of the earlier blob, [`SpliceWrite`], which a layer writer keeps as
//! pieces of that blob instead of writing them again).
//!
//! A fresh COPY's layer ([`write_layer_written`]) is the same walk told by the copy what it
//! made ([`Written`]): each directory is still listed and read from the filesystem, but a
//! file or symlink the copy made is written from what it says (no `lstat`, no
//! `llistxattr`, its data read through its pinned directory), with the one header encoder
//! and the one data copy, so the bytes are those of [`write_layer`].
//!
//! The same walk writes a cache mount (a plain directory, no overlay) as a delta
//! ([`write_delta`]): against a [`Listing`] of how it was, only new or changed entries, then
//! a whiteout for each topmost path gone; it lists the directory as it is on the way.

use crate::layers::{is_opaque, is_whiteout};
use crate::written::{ToldRef, Written};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use strata_store::confined::keep_xattr;
use strata_store::{BlobReader, SpliceWrite};

/// How to write a layer.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every mtime to at most this (seconds since the epoch).
    pub source_date_epoch: Option<i64>,
}

/// What went into a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries written (whiteouts included).
    pub entries: u64,
    /// Whiteout and opaque entries among them.
    pub whiteouts: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
    /// Bytes of tar stream.
    pub tar_bytes: u64,
    /// Regular files whose entry (header and data) was copied from an [`EarlierLayer`]'s tar
    /// instead of read from the file.
    pub reused: u64,
    /// Time spent reading those entries from the earlier tar and checking them (their writes
    /// into `out` not included).
    pub reuse_time: std::time::Duration,
    /// Entries written from what the copy told ([`write_layer_written`]), not read with a
    /// `stat`.
    pub told: u64,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading the upper directory failed.
    #[error("failed to read {} for the layer", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file's name is reserved for whiteouts, so writing it would delete files in lower
    /// layers when the image is unpacked elsewhere.
    #[error("{} cannot be stored in a layer: names starting with .wh. are reserved for whiteouts", path.display())]
    ReservedName {
        /// The path inside the layer.
        path: PathBuf,
    },
    /// A file changed size while it was being read.
    #[error("{} changed while the layer was written", path.display())]
    Changed {
        /// The path.
        path: PathBuf,
    },
    /// Writing the tar stream failed.
    #[error("failed to write the layer tar")]
    Write(#[source] io::Error),
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Writes the layer for `upper` as a tar stream into `out`.
pub fn write_layer(
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffStats, DiffError> {
    walk(upper, Copying(out), opts, None, None, None, None)
}

/// [`write_layer`] for the upper of a fresh COPY, told by the copy what it wrote: the
/// files and symlinks `written` tells of are written from it instead of asked of the
/// filesystem, everything else as [`write_layer`] does. The same bytes as [`write_layer`],
/// as long as `upper` is as the copy left it.
pub fn write_layer_written(
    upper: &Path,
    out: impl Write,
    opts: &DiffOptions,
    written: &Written,
) -> Result<DiffStats, DiffError> {
    walk(upper, Copying(out), opts, None, None, None, Some(written))
}

/// [`write_layer_written`], falling back to the plain [`write_layer`] when `upper` turns out
/// not to be as the copy told (a told file now of another size or kind; nothing known
/// does that, but the layer must then still be the upper's). The fallback writes into a new
/// writer from `again`, and the first one, with its partial tar, is dropped. A failing writer
/// (the store) fails it at once, with no second try. Returns the writer that holds the layer.
pub fn write_layer_told<W: Write, E: From<DiffError>>(
    upper: &Path,
    mut out: W,
    opts: &DiffOptions,
    written: &Written,
    again: impl FnOnce() -> Result<W, E>,
) -> Result<(W, DiffStats), E> {
    match write_layer_written(upper, &mut out, opts, written) {
        Ok(stats) => Ok((out, stats)),
        Err(e @ DiffError::Write(_)) => Err(e.into()),
        Err(_) => {
            drop(out);
            let mut out = again()?;
            let stats = write_layer(upper, &mut out, opts)?;
            Ok((out, stats))
        }
    }
}

/// The same step's earlier layer, for [`write_layer_reusing`]: its snapshot directory and its
/// blob, an uncompressed tar written by [`write_layer`] from that directory.
#[derive(Debug)]
pub struct EarlierLayer {
    /// The snapshot directory the tar was written from.
    pub dir: PathBuf,
    /// The tar (a plain, uncompressed blob).
    pub tar: BlobReader,
}

/// A writer that takes the ranges of an earlier tar by copying them ([`SpliceWrite`]'s
/// default): every layer but an incremental COPY's.
struct Copying<W>(W);

impl<W: Write> Write for Copying<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> SpliceWrite for Copying<W> {}

/// [`write_layer`], with the data of unchanged regular files copied from `earlier`'s tar
/// instead of read from each file (an incremental COPY: `upper` is mostly hard links to
/// `earlier.dir`). An entry is copied only when its header bytes, as this walk makes them,
/// equal the earlier entry's at the same place in the order, and `upper`'s file is the very
/// inode of `earlier.dir`'s at that path (a snapshot never changes, so neither did its
/// bytes): the stream is byte for byte what [`write_layer`] writes. Anything else (an entry
/// added, removed, changed, or not aligned) is written as [`write_layer`] does.
pub fn write_layer_reusing(
    upper: &Path,
    out: impl SpliceWrite,
    opts: &DiffOptions,
    earlier: EarlierLayer,
) -> Result<DiffStats, DiffError> {
    // An earlier tar that cannot be read is no reason to fail: the layer is written in full.
    let reuse = Reuse::index(earlier).ok();
    walk(upper, out, opts, None, None, reuse, None)
}

/// Writes the entry `name` of the directory `dir` (a file, or a directory with all it holds)
/// as a tar stream into `out`, named `name`, `name/...` (`strata cp CONTAINER:PATH -`).
pub(crate) fn write_entry(
    dir: &Path,
    name: &OsStr,
    out: impl Write,
    opts: &DiffOptions,
) -> Result<DiffStats, DiffError> {
    walk(dir, Copying(out), opts, None, Some(name), None, None)
}

/// What a delta layer of a plain directory (a cache mount, not an overlay upper) is taken
/// against: the listing of the directory as it was, and where the listing of it as it is now
/// goes.
pub(crate) struct Delta<'a> {
    /// The directory as it was (empty: a full layer).
    pub(crate) since: &'a Listing,
    /// The directory as the walk finds it.
    pub(crate) now: Listing,
}

/// Writes the changes of the plain directory `dir` since `delta.since` as a layer: entries
/// whose [`Stamp`] differs or that are new (an unchanged directory is descended into but not
/// written), then a whiteout for each path gone (the topmost one of a gone tree). Fills
/// `delta.now`.
pub(crate) fn write_delta(
    dir: &Path,
    out: impl Write,
    opts: &DiffOptions,
    delta: &mut Delta<'_>,
) -> Result<DiffStats, DiffError> {
    walk(dir, Copying(out), opts, Some(delta), None, None, None)
}

fn walk(
    upper: &Path,
    out: impl SpliceWrite,
    opts: &DiffOptions,
    mut delta: Option<&mut Delta<'_>>,
    only: Option<&OsStr>,
    mut reuse: Option<Reuse>,
    written: Option<&Written>,
) -> Result<DiffStats, DiffError> {
    let mut w = TarWriter {
        out,
        stats: DiffStats::default(),
    };
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    // Depth-first with an explicit stack: no recursion, so a 2000-level tree is fine.
    // `only`: the walk starts at that one entry of `upper` instead of all of them.
    let first = match only {
        Some(name) => vec![name.to_owned()],
        None => sorted_names(upper)?,
    };
    let mut stack: Vec<(Vec<u8>, std::vec::IntoIter<OsString>)> =
        vec![(Vec::new(), first.into_iter())];
    let mut pinned = Pinned::open(upper)?;
    while let Some((dir, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let dir = dir.clone();
        let mut rel = dir.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        if let Some(r) = reuse.as_mut() {
            // A reserved name goes on to the check below.
            if !name.as_bytes().starts_with(WHITEOUT.as_bytes()) {
                let started = std::time::Instant::now();
                let at = pinned.at(upper, &dir)?;
                let taken = r.unchanged(at, &dir, &name, &rel, opts, &mut links);
                w.stats.reuse_time += started.elapsed();
                if let Some((old, size)) = taken {
                    r.take(old, size, &mut w)?;
                    continue;
                }
            }
            r.flush(&mut w)?;
        }
        // A reserved name goes on to the check below.
        if let Some(told) = written.and_then(|k| k.get(&dir, name.as_bytes()))
            && !name.as_bytes().starts_with(WHITEOUT.as_bytes())
        {
            let at = pinned.at(upper, &dir)?;
            write_told(&mut w, at, upper, &name, rel, told, opts)?;
            continue;
        }
        // Every access goes through the entry's parent directory, pinned: the tree may be a
        // running container's, changing while it is read (see [`Pinned`]).
        let full = pinned.entry(upper, &dir, &name)?;
        let shown = upper.join(OsStr::from_bytes(&rel));
        let meta = fs_err::symlink_metadata(&full).map_err(|source| DiffError::Read {
            path: shown.clone(),
            source,
        })?;
        let mtime = clamp(meta.mtime(), opts);
        if let Some(d) = delta.as_deref_mut() {
            let stamp = Stamp::of(&meta);
            let unchanged = d.since.get(&rel) == Some(&stamp);
            d.now.insert(rel.clone(), stamp);
            if unchanged {
                if meta.is_dir() {
                    let children = pinned.descend(upper, &dir, &name, &rel)?;
                    stack.push((rel, children.into_iter()));
                }
                continue;
            }
        } else if is_whiteout(&meta) {
            let mut wh = dir.clone();
            if !wh.is_empty() {
                wh.push(b'/');
            }
            wh.extend_from_slice(WHITEOUT.as_bytes());
            wh.extend_from_slice(name.as_bytes());
            w.marker(&wh, mtime)?;
            continue;
        }
        if name.as_bytes().starts_with(WHITEOUT.as_bytes()) {
            return Err(DiffError::ReservedName {
                path: PathBuf::from(OsStr::from_bytes(&rel)),
            });
        }
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        let xattrs = read_xattrs(&full, &meta);
        let mut h = Entry {
            name: rel.clone(),
            attrs: Attrs::of(&meta),
            mtime,
            xattrs,
            link: None,
        };
        if ft.is_dir() {
            h.name.push(b'/');
            // Directories are always written from the upper (their times move with their
            // entries); the cursor in the earlier tar follows them.
            if let Some(r) = reuse.as_mut() {
                r.align(&h.name);
            }
            w.header(&h, tar::EntryType::Directory, 0)?;
            if is_opaque(&full) {
                let mut op = rel.clone();
                op.push(b'/');
                op.extend_from_slice(OPAQUE.as_bytes());
                w.marker(&op, mtime)?;
            }
            let children = pinned.descend(upper, &dir, &name, &rel)?;
            stack.push((rel, children.into_iter()));
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.link = Some(first.clone());
                    w.header(&h, tar::EntryType::Link, 0)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            let file = crate::sys::open_read_nofollow(&full).map_err(|source| DiffError::Read {
                path: shown.clone(),
                source,
            })?;
            w.header(&h, tar::EntryType::Regular, meta.size())?;
            w.data(file, meta.size(), &shown)?;
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&full).map_err(|source| DiffError::Read {
                path: shown.clone(),
                source,
            })?;
            h.link = Some(target.as_os_str().as_bytes().to_vec());
            w.header(&h, tar::EntryType::Symlink, 0)?;
        } else if ft.is_fifo() {
            w.header(&h, tar::EntryType::Fifo, 0)?;
        } else if ft.is_char_device() {
            w.header(&h, tar::EntryType::Char, 0)?;
        } else if ft.is_block_device() {
            w.header(&h, tar::EntryType::Block, 0)?;
        }
    }
    if let Some(r) = reuse.as_mut() {
        r.flush(&mut w)?;
    }
    if let Some(d) = delta {
        for gone in d.since.gone_from(&d.now) {
            let (dir, name) = match gone.iter().rposition(|&b| b == b'/') {
                Some(i) => (&gone[..=i], &gone[i + 1..]),
                None => (&[][..], &gone[..]),
            };
            let mut wh = dir.to_vec();
            wh.extend_from_slice(WHITEOUT.as_bytes());
            wh.extend_from_slice(name);
            w.marker(&wh, 0)?;
        }
    }
    w.finish()
}

/// Writes the entry `name` of the directory `at` (`rel` its path in the layer) as the copy
/// told it: the header from `told`, a file's data read through `at`.
fn write_told<W: SpliceWrite>(
    w: &mut TarWriter<W>,
    at: BorrowedFd<'_>,
    upper: &Path,
    name: &OsStr,
    rel: Vec<u8>,
    told: ToldRef<'_>,
    opts: &DiffOptions,
) -> Result<(), DiffError> {
    let extra = told.extra;
    let h = Entry {
        name: rel,
        attrs: Attrs {
            mode: told.mode,
            uid: told.uid,
            gid: told.gid,
            rdev: 0,
        },
        mtime: clamp(told.mtime, opts),
        xattrs: extra.map(|e| e.xattrs.clone()).unwrap_or_default(),
        link: extra.and_then(|e| e.link.clone()),
    };
    w.stats.told += 1;
    if told.is_symlink() {
        return w.header(&h, tar::EntryType::Symlink, 0);
    }
    let shown = || upper.join(OsStr::from_bytes(&h.name));
    let file = strata_store::confined::open_no_symlinks(
        at,
        name,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        0,
    )
    .map_err(|source| DiffError::Read {
        path: shown(),
        source,
    })?;
    w.header(&h, tar::EntryType::Regular, told.size)?;
    w.data(crate::sys::file_from(file), told.size, &shown())
}

/// The directory the walk reads entries of, held by a descriptor, so that every path used is
/// `/proc/self/fd/<dir>/<name>`: nothing before the last component is looked up again, and
/// the last one is never followed (lstat, `O_NOFOLLOW`, `l*xattr`, readlink). A directory is
/// entered with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the walk's root, so a
/// directory swapped for a symlink to `/` by a running container while its layer is read
/// fails the walk instead of leading it out of the tree. One descriptor at a time, whatever
/// the depth.
pub(crate) struct Pinned {
    root: std::os::fd::OwnedFd,
    rel: Vec<u8>,
    dir: std::os::fd::OwnedFd,
}

impl Pinned {
    pub(crate) fn open(upper: &Path) -> Result<Pinned, DiffError> {
        let read = |source: io::Error| DiffError::Read {
            path: upper.to_owned(),
            source,
        };
        let root = rustix::fs::open(
            upper,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| read(e.into()))?;
        let dir = Pinned::open_beneath(&root, b".").map_err(read)?;
        Ok(Pinned {
            root,
            rel: Vec::new(),
            dir,
        })
    }

    fn open_beneath(root: &std::os::fd::OwnedFd, rel: &[u8]) -> io::Result<std::os::fd::OwnedFd> {
        let rel = if rel.is_empty() { b"." } else { rel };
        strata_store::confined::open_no_symlinks(
            root.as_fd(),
            OsStr::from_bytes(rel),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            0,
        )
    }

    /// The directory `dir` (relative to the root), pinned.
    fn at(&mut self, upper: &Path, dir: &[u8]) -> Result<BorrowedFd<'_>, DiffError> {
        if self.rel != dir {
            self.dir = Pinned::open_beneath(&self.root, dir).map_err(|source| DiffError::Read {
                path: upper.join(OsStr::from_bytes(dir)),
                source,
            })?;
            self.rel = dir.to_vec();
        }
        Ok(self.dir.as_fd())
    }

    /// The path of `name` in the directory `dir` (relative to the root) through its descriptor.
    pub(crate) fn entry(
        &mut self,
        upper: &Path,
        dir: &[u8],
        name: &OsStr,
    ) -> Result<PathBuf, DiffError> {
        Ok(crate::sys::fd_path(self.at(upper, dir)?).join(name))
    }

    /// Enters the directory `name` of `dir` (at `rel`); its names, sorted.
    pub(crate) fn descend(
        &mut self,
        upper: &Path,
        dir: &[u8],
        name: &OsStr,
        rel: &[u8],
    ) -> Result<Vec<OsString>, DiffError> {
        let shown = || upper.join(OsStr::from_bytes(rel));
        self.entry(upper, dir, name)?;
        let child = strata_store::confined::open_no_symlinks(
            self.dir.as_fd(),
            name,
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            0,
        )
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => DiffError::Changed { path: shown() },
            _ => DiffError::Read {
                path: shown(),
                source,
            },
        })?;
        self.dir = child;
        self.rel = rel.to_vec();
        sorted_names(&crate::sys::fd_path(self.dir.as_fd())).map_err(|e| match e {
            DiffError::Read { source, .. } => DiffError::Read {
                path: shown(),
                source,
            },
            other => other,
        })
    }
}

/// What tells a changed entry from an unchanged one: its type and mode, size, mtime (not for
/// directories, whose mtime moves with their entries) and inode (a file replaced by rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp(u32, u64, i64, i64, u64);

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        if meta.is_dir() {
            return Stamp(meta.mode(), 0, 0, 0, meta.ino());
        }
        Stamp(
            meta.mode(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino(),
        )
    }
}

/// Every path of a directory (relative, bytes) with its [`Stamp`]. Kept in memory: one
/// entry per file, some 100 bytes each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing(std::collections::BTreeMap<Vec<u8>, Stamp>);

impl Listing {
    fn get(&self, path: &[u8]) -> Option<&Stamp> {
        self.0.get(path)
    }

    fn insert(&mut self, path: Vec<u8>, stamp: Stamp) {
        self.0.insert(path, stamp);
    }

    /// The paths of `self` that `now` lacks, without those below a gone directory.
    fn gone_from(&self, now: &Listing) -> Vec<Vec<u8>> {
        let mut gone: Vec<Vec<u8>> = Vec::new();
        for path in self.0.keys().filter(|p| !now.0.contains_key(*p)) {
            let below_gone = gone
                .last()
                .is_some_and(|g| path.starts_with(g) && path.get(g.len()) == Some(&b'/'));
            if !below_gone {
                gone.push(path.clone());
            }
        }
        gone
    }

    /// The listing of the plain directory `dir`.
    pub(crate) fn of(dir: &Path) -> Result<Listing, DiffError> {
        let mut out = Listing::default();
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = stack.pop() {
            let full = dir.join(OsStr::from_bytes(&rel));
            for name in sorted_names(&full)? {
                let mut path = rel.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                let child = dir.join(OsStr::from_bytes(&path));
                let meta = fs_err::symlink_metadata(&child).map_err(|source| DiffError::Read {
                    path: child.clone(),
                    source,
                })?;
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.insert(path, Stamp::of(&meta));
            }
        }
        Ok(out)
    }
}

/// On disk, paths are hex (they are bytes, JSON keys are strings).
impl serde::Serialize for Listing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (hex::encode(k), v)))
    }
}

impl<'de> serde::Deserialize<'de> for Listing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: std::collections::BTreeMap<String, Stamp> = serde::Deserialize::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| hex::decode(k).map(|k| (k, v)))
            .collect::<Result<_, _>>()
            .map(Listing)
            .map_err(serde::de::Error::custom)
    }
}

fn clamp(mtime: i64, opts: &DiffOptions) -> i64 {
    match opts.source_date_epoch {
        Some(sde) => mtime.min(sde),
        None => mtime,
    }
}

pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let read = |source| DiffError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for e in fs_err::read_dir(dir).map_err(read)? {
        names.push(e.map_err(read)?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn read_xattrs(path: &Path, meta: &Metadata) -> Vec<(Vec<u8>, Vec<u8>)> {
    if meta.file_type().is_symlink() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Ok(names) = xattr::list(path) {
        for n in names {
            if keep_xattr(n.as_bytes())
                && let Ok(Some(v)) = xattr::get(path, &n)
            {
                out.push((n.as_bytes().to_vec(), v));
            }
        }
    }
    out.sort();
    out
}

struct Entry {
    name: Vec<u8>,
    attrs: Attrs,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    link: Option<Vec<u8>>,
}

/// What of an entry's inode its header holds besides its size, mtime and xattrs.
#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
}

impl Attrs {
    fn of(meta: &Metadata) -> Attrs {
        Attrs {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev(),
        }
    }

    fn of_stat(st: &libc::stat) -> Attrs {
        Attrs {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
        }
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut r = len.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Puts `name` into a USTAR header's name (and prefix) fields; false if it does not fit.
fn set_ustar_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let Some(u) = h.as_ustar_mut() else {
        return false;
    };
    if name.len() <= 100 {
        u.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at a '/' so that the prefix has ≤ 155 bytes and the rest ≤ 100.
    let start = name.len().saturating_sub(101);
    for i in start..name.len().min(156) {
        if name[i] == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0 {
            u.prefix[..i].copy_from_slice(&name[..i]);
            u.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            return true;
        }
    }
    false
}

const USTAR_MAX_ID: u64 = 0o7777777;
const USTAR_MAX_SIZE: u64 = 0o77777777777;

struct TarWriter<W: SpliceWrite> {
    out: W,
    stats: DiffStats,
}

impl<W: SpliceWrite> TarWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DiffError> {
        self.out.write_all(bytes).map_err(DiffError::Write)?;
        self.stats.tar_bytes += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), DiffError> {
        self.write(&[0u8; 512][..padding(len)])
    }

    /// An empty regular file with mode 0 (whiteouts and opaque markers), as containerd
    /// writes them.
    fn marker(&mut self, name: &[u8], mtime: i64) -> Result<(), DiffError> {
        let mut h = tar::Header::new_ustar();
        let mut pax = Vec::new();
        if !set_ustar_name(&mut h, name) {
            pax.extend(pax_record(b"path", name));
        }
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        set_mtime(&mut h, mtime, &mut pax);
        self.stats.whiteouts += 1;
        self.emit(h, &pax)
    }

    fn header(&mut self, e: &Entry, kind: tar::EntryType, size: u64) -> Result<(), DiffError> {
        let bytes = encode_header(e, kind, size);
        self.stats.entries += 1;
        self.write(&bytes)
    }

    fn emit(&mut self, h: tar::Header, pax: &[u8]) -> Result<(), DiffError> {
        let bytes = encode(h, pax);
        self.stats.entries += 1;
        self.write(&bytes)
    }
}

/// The header bytes of `e` (with its PAX extended header, if any): the one header encoder,
/// shared by the walk and [`Reuse`]'s comparison.
fn encode_header(e: &Entry, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let m = &e.attrs;
    let mut h = tar::Header::new_ustar();
    let mut pax = Vec::new();
    if !set_ustar_name(&mut h, &e.name) {
        pax.extend(pax_record(b"path", &e.name));
        let tail = &e.name[e.name.len().saturating_sub(100)..];
        let _ = set_ustar_name(&mut h, tail);
    }
    h.set_entry_type(kind);
    h.set_mode(m.mode & 0o7777);
    for (key, id) in [
        (&b"uid"[..], u64::from(m.uid)),
        (&b"gid"[..], u64::from(m.gid)),
    ] {
        if id > USTAR_MAX_ID {
            pax.extend(pax_record(key, id.to_string().as_bytes()));
        }
    }
    h.set_uid(u64::from(m.uid).min(USTAR_MAX_ID));
    h.set_gid(u64::from(m.gid).min(USTAR_MAX_ID));
    if size > USTAR_MAX_SIZE {
        pax.extend(pax_record(b"size", size.to_string().as_bytes()));
        h.set_size(0);
    } else {
        h.set_size(size);
    }
    set_mtime(&mut h, e.mtime, &mut pax);
    if let Some(link) = &e.link
        && (link.len() > 100 || h.set_link_name_literal(link).is_err())
    {
        pax.extend(pax_record(b"linkpath", link));
    }
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        let rdev = m.rdev;
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let _ = h.set_device_major(major as u32);
        let _ = h.set_device_minor(minor as u32);
    } else {
        let _ = h.set_device_major(0);
        let _ = h.set_device_minor(0);
    }
    for (k, v) in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        pax.extend(pax_record(&key, v));
    }
    encode(h, &pax)
}

/// A header's bytes: a PAX extended header with `pax` first if there are records, then `h`.
fn encode(mut h: tar::Header, pax: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    if !pax.is_empty() {
        let mut x = tar::Header::new_ustar();
        let _ = set_ustar_name(&mut x, b"PaxHeaders.0/entry");
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_mode(0o644);
        x.set_size(pax.len() as u64);
        x.set_mtime(0);
        x.set_cksum();
        out.extend_from_slice(x.as_bytes());
        out.extend_from_slice(pax);
        out.resize(out.len() + padding(pax.len() as u64), 0);
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out
}

/// The zeros after `len` bytes of data, up to the next 512-byte block.
fn padding(len: u64) -> usize {
    match (len % 512) as usize {
        0 => 0,
        rem => 512 - rem,
    }
}

impl<W: SpliceWrite> TarWriter<W> {
    fn data(&mut self, file: std::fs::File, size: u64, path: &Path) -> Result<(), DiffError> {
        let mut reader = file.take(size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|source| DiffError::Read {
                path: path.to_owned(),
                source,
            })?;
            if n == 0 {
                break;
            }
            self.write(&buf[..n])?;
            copied += n as u64;
        }
        if copied != size {
            return Err(DiffError::Changed {
                path: path.to_owned(),
            });
        }
        self.stats.content_bytes += size;
        self.pad(size)
    }

    fn finish(mut self) -> Result<DiffStats, DiffError> {
        self.write(&[0u8; 1024])?;
        self.out.flush().map_err(DiffError::Write)?;
        Ok(self.stats)
    }
}

fn set_mtime(h: &mut tar::Header, mtime: i64, pax: &mut Vec<u8>) {
    match u64::try_from(mtime) {
        Ok(t) if t <= USTAR_MAX_SIZE => h.set_mtime(t),
        _ => {
            pax.extend(pax_record(b"mtime", mtime.to_string().as_bytes()));
            h.set_mtime(0);
        }
    }
}

/// An entry of the earlier tar: where it starts (its PAX header, if any), where its data
/// starts and ends (padding included), a hash of its path and, for an entry without a PAX
/// header, a hash of its 512 header bytes.
#[derive(Debug, Clone, Copy)]
struct OldEntry {
    start: u64,
    data: u64,
    end: u64,
    name: u64,
    head: Option<[u8; 16]>,
}

/// The earlier layer's tar, indexed (56 bytes an entry, no names kept), a cursor in it that
/// follows the walk, the earlier snapshot's directory the walk is in (its device and its
/// entries' inode numbers, as its directory entries hold them), and the run of earlier
/// entries taken but not yet given to the writer.
struct Reuse {
    root: std::os::fd::OwnedFd,
    tar: BlobReader,
    entries: Vec<OldEntry>,
    next: usize,
    listed: Option<Listed>,
    run: Option<(u64, u64)>,
}

/// A directory of the earlier snapshot: its path, its device (`None`: it could not be read,
/// nothing in it is taken) and its names with their inode numbers, sorted.
struct Listed {
    rel: Vec<u8>,
    dev: Option<u64>,
    names: Vec<(OsString, u64)>,
}

/// How far ahead of the cursor an entry of the walk is looked for (entries of the earlier
/// layer gone since are skipped; one not found is new and leaves the cursor).
const REUSE_WINDOW: usize = 8;

fn name_hash(name: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn head_hash(head: &[u8]) -> [u8; 16] {
    use sha2::Digest as _;
    let full = sha2::Sha256::digest(head);
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A reader of `file` at a position of its own: a `pread` per read and no system call per
/// seek, where reading through `&File` costs an `lseek` for each seek: the index of an earlier
/// tar seeks past every entry's data (528 `lseek`s for ci-edit's 2.3 MB COPY layer, 20,000
/// for bigcontext's).
struct ReadAt<'a> {
    file: &'a BlobReader,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for ReadAt<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            io::SeekFrom::End(d) => self.file.len().checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

impl Reuse {
    /// Reads the headers of `earlier.tar` (seeking past the data).
    fn index(earlier: EarlierLayer) -> Result<Reuse, DiffError> {
        let read = |source: io::Error| DiffError::Read {
            path: earlier.dir.clone(),
            source,
        };
        let root = rustix::fs::open(
            &earlier.dir,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| read(e.into()))?;
        let tar = earlier.tar;
        let mut entries = Vec::new();
        {
            let mut archive = tar::Archive::new(ReadAt { file: &tar, pos: 0 });
            let mut start = 0;
            for e in archive.entries_with_seek().map_err(read)? {
                let e = e.map_err(read)?;
                let data = e.raw_file_position();
                // Checked: sizes come from the earlier tar's headers.
                let end = data
                    .checked_add(e.size())
                    .and_then(|n| n.checked_add(padding(e.size()) as u64));
                let Some(end) = end.filter(|_| data >= start) else {
                    return Err(read(io::ErrorKind::InvalidData.into()));
                };
                let head = (data - start == 512).then(|| head_hash(e.header().as_bytes()));
                entries.push(OldEntry {
                    start,
                    data,
                    end,
                    name: name_hash(&e.path_bytes()),
                    head,
                });
                start = end;
            }
        }
        Ok(Reuse {
            root,
            tar,
            entries,
            next: 0,
            listed: None,
            run: None,
        })
    }

    /// The earlier entry named `name` (as written in the tar), if it is within reach of the
    /// cursor; the cursor moves past it.
    fn align(&mut self, name: &[u8]) -> Option<OldEntry> {
        let hash = name_hash(name);
        let ahead = self.entries.get(self.next..)?;
        let i = ahead
            .iter()
            .take(REUSE_WINDOW)
            .position(|e| e.name == hash)?;
        self.next += i + 1;
        Some(ahead[i])
    }

    /// The device and inode of `name` in the earlier snapshot's directory `dir`, from its
    /// directory entry (one listing per directory, no `stat` per name).
    fn earlier_inode(&mut self, dir: &[u8], name: &OsStr) -> Option<(u64, u64)> {
        if self.listed.as_ref().is_none_or(|l| l.rel != dir) {
            let rel = if dir.is_empty() { &b"."[..] } else { dir };
            let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY;
            let opened = strata_store::confined::open_no_symlinks(
                self.root.as_fd(),
                OsStr::from_bytes(rel),
                flags,
                0,
            );
            let read = opened.and_then(|fd| {
                let dev = crate::sys::fstat(fd.as_fd())?.st_dev;
                Ok((dev, strata_store::confined::list_inodes(fd.as_fd())?))
            });
            let (dev, names) = match read {
                Ok((dev, names)) => (Some(dev), names),
                Err(_) => (None, Vec::new()),
            };
            self.listed = Some(Listed {
                rel: dir.to_vec(),
                dev,
                names,
            });
        }
        let listed = self.listed.as_ref()?;
        let i = listed
            .names
            .binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()))
            .ok()?;
        Some((listed.dev?, listed.names[i].1))
    }

    /// Whether the entry `name` of the upper's directory `dir` (held by `at`; `rel` its path)
    /// can be taken from the earlier tar, the walk writing it as it is there: a regular file that
    /// is the very inode the earlier snapshot has at that path (an incremental COPY left it
    /// as the clone's hard link: it writes a file anew, never through one, and a snapshot
    /// never changes) and whose header, made by the walk's one encoder from one `stat` of it,
    /// equals the earlier one (it would not if `SOURCE_DATE_EPOCH` changed). The earlier
    /// header has no PAX records, so the inode has no xattrs to write: none are read. Returns the
    /// earlier entry and the file's size, for [`Reuse::take`]; `None`: the walk writes it.
    fn unchanged(
        &mut self,
        at: BorrowedFd<'_>,
        dir: &[u8],
        name: &OsStr,
        rel: &[u8],
        opts: &DiffOptions,
        links: &mut HashMap<(u64, u64), Vec<u8>>,
    ) -> Option<(OldEntry, u64)> {
        let old = self.align(rel)?;
        let earlier = self.earlier_inode(dir, name)?;
        let st = crate::sys::lstat_at(at, Path::new(name)).ok()?;
        let inode = (st.st_dev, st.st_ino);
        // A second path of one inode is a hard link entry, written by the walk.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG
            || inode != earlier
            || (st.st_nlink > 1 && links.contains_key(&inode))
        {
            return None;
        }
        let size = u64::try_from(st.st_size).ok()?;
        // Only an earlier header without PAX records is taken: then the inode has no xattrs
        // an image keeps (it would have had them), and none are read.
        let earlier_head = old.head?;
        if old.end - old.data != size + padding(size) as u64 {
            return None;
        }
        let entry = Entry {
            name: rel.to_vec(),
            attrs: Attrs::of_stat(&st),
            mtime: clamp(st.st_mtime, opts),
            xattrs: Vec::new(),
            link: None,
        };
        let head = encode_header(&entry, tar::EntryType::Regular, size);
        if head.len() != 512 || head_hash(&head) != earlier_head {
            return None;
        }
        if st.st_nlink > 1 {
            links.insert(inode, rel.to_vec());
        }
        Some((old, size))
    }

    /// Adds the earlier entry `old` (a file of `size` bytes) to the run of earlier bytes to
    /// copy ([`Reuse::flush`]), counted as written.
    fn take<W: SpliceWrite>(
        &mut self,
        old: OldEntry,
        size: u64,
        w: &mut TarWriter<W>,
    ) -> Result<(), DiffError> {
        match self.run {
            Some((from, to)) if to == old.start => self.run = Some((from, old.end)),
            _ => {
                self.flush(w)?;
                self.run = Some((old.start, old.end));
            }
        }
        w.stats.entries += 1;
        w.stats.content_bytes += size;
        w.stats.reused += 1;
        Ok(())
    }

    /// Gives the run of taken entries to `w` as a range of the earlier blob: a layer writer
    /// keeps it as a piece of that blob (hashed, not written again), any other writer copies
    /// it.
    fn flush<W: SpliceWrite>(&mut self, w: &mut TarWriter<W>) -> Result<(), DiffError> {
        let Some((at, end)) = self.run.take() else {
            return Ok(());
        };
        w.out
            .write_from(&self.tar, at, end - at)
            .map_err(DiffError::Write)?;
        w.stats.tar_bytes += end - at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect()
    }

    /// A running container swaps a directory for a symlink to `/` between the walk listing
    /// its parent and entering it: the walk fails, it never reads the host's `/`; and a
    /// parent swapped the same way is not gone back through either.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path();
        fs_err::create_dir_all(upper.join("a/b")).unwrap();
        fs_err::write(upper.join("a/b/f"), "x").unwrap();
        let mut pinned = Pinned::open(upper).unwrap();
        // The walk listed the root and is about to enter `a`.
        fs_err::rename(upper.join("a"), upper.join("moved")).unwrap();
        std::os::unix::fs::symlink("/", upper.join("a")).unwrap();
        let err = pinned
            .descend(upper, b"", OsStr::new("a"), b"a")
            .unwrap_err();
        assert!(matches!(err, DiffError::Changed { .. }), "{err:?}");

        // Inside `moved/b`, then `moved` becomes a symlink: going back up to read the rest of
        // `moved` fails rather than reading `/`.
        let mut pinned = Pinned::open(upper).unwrap();
        let names = pinned
            .descend(upper, b"", OsStr::new("moved"), b"moved")
            .unwrap();
        assert_eq!(names, [OsString::from("b")]);
        pinned
            .descend(upper, b"moved", OsStr::new("b"), b"moved/b")
            .unwrap();
        fs_err::rename(upper.join("moved"), upper.join("gone")).unwrap();
        std::os::unix::fs::symlink("/", upper.join("moved")).unwrap();
        assert!(pinned.entry(upper, b"moved", OsStr::new("etc")).is_err());
        // Entries of the pinned directory still resolve in it, wherever it went.
        let f = pinned.entry(upper, b"moved/b", OsStr::new("f")).unwrap();
        assert_eq!(fs_err::read(f).unwrap(), b"x");
    }

    #[test]
    fn a_delta_holds_what_changed_and_whiteouts_for_the_topmost_gone_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["keep", "gone/deep", "grow"] {
            fs_err::create_dir_all(d.join(sub)).unwrap();
        }
        fs_err::write(d.join("keep/same"), b"1").unwrap();
        fs_err::write(d.join("gone/deep/f"), b"1").unwrap();
        fs_err::write(d.join("grow/log"), b"1").unwrap();
        fs_err::write(d.join("old"), b"1").unwrap();
        let mut full = Delta {
            since: &Listing::default(),
            now: Listing::default(),
        };
        let mut tar = Vec::new();
        write_delta(d, &mut tar, &DiffOptions::default(), &mut full).unwrap();
        assert_eq!(
            names(&tar),
            [
                "gone/",
                "gone/deep/",
                "gone/deep/f",
                "grow/",
                "grow/log",
                "keep/",
                "keep/same",
                "old"
            ]
        );
        assert_eq!(full.now, Listing::of(d).unwrap());

        fs_err::remove_dir_all(d.join("gone")).unwrap();
        fs_err::remove_file(d.join("old")).unwrap();
        fs_err::write(d.join("grow/log"), b"12").unwrap();
        fs_err::write(d.join("grow/new"), b"1").unwrap();
        let mut delta = Delta {
            since: &full.now,
            now: Listing::default(),
        };
        let mut tar = Vec::new();
        let stats = write_delta(d, &mut tar, &DiffOptions::default(), &mut delta).unwrap();
        assert_eq!(names(&tar), ["grow/log", "grow/new", ".wh.gone", ".wh.old"]);
        assert_eq!(stats.whiteouts, 2);
        // Nothing changed since: an empty layer.
        let mut again = Delta {
            since: &delta.now,
            now: Listing::default(),
        };
        let stats = write_delta(d, io::sink(), &DiffOptions::default(), &mut again).unwrap();
        assert_eq!(stats.entries, 0);
        // The listing survives its record (hex paths).
        let json = serde_json::to_vec(&again.now).unwrap();
        assert_eq!(serde_json::from_slice::<Listing>(&json).unwrap(), again.now);
    }

    /// A tree of hard links to an earlier one, some files edited, one added in the middle of
    /// the order, one removed, one with a long (PAX) name, a file replaced by a directory and
    /// a directory by a file, a hard-linked pair kept and one with a side replaced: the tar
    /// made reusing the earlier tar is byte for byte the full one, and only the untouched
    /// files were copied from it. With another `SOURCE_DATE_EPOCH`, nothing is.
    #[test]
    fn a_layer_reusing_the_earlier_tar_is_the_full_layer() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (old, new) = (t.path().join("old"), t.path().join("new"));
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let mut files: Vec<String> = (0..40).map(|i| format!("a/f{i:02}")).collect();
        files.extend((0..10).map(|i| format!("b/g{i}")));
        files.push(long.clone());
        files.extend(["b/sub/x", "b/sub/y", "c/p1", "c/q1"].map(String::from));
        for f in &files {
            let p = old.join(f);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(&p, format!("content of {f}\n").repeat(40)).unwrap();
        }
        // Two hard-linked pairs within the earlier layer.
        for (a, b) in [("c/p1", "c/p2"), ("c/q1", "c/q2")] {
            fs_err::hard_link(old.join(a), old.join(b)).unwrap();
            files.push(b.to_owned());
        }
        let opts = DiffOptions::default();
        let store = strata_store::Store::open(t.path().join("store")).unwrap();
        let mut old_tar = Vec::new();
        write_layer(&old, &mut old_tar, &opts).unwrap();
        let old_blob = store.put_blob(None, &old_tar[..]).unwrap().digest;
        // The clone an incremental COPY makes: directories anew, files hard-linked.
        for f in &files {
            let p = new.join(f);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::hard_link(old.join(f), &p).unwrap();
        }
        let replace = |rel: &str, body: &[u8]| {
            fs_err::remove_file(new.join(rel)).unwrap();
            fs_err::write(new.join(rel), body).unwrap();
        };
        replace("a/f03", &fs_err::read(old.join("a/f03")).unwrap()); // same bytes, new inode
        replace("a/f07", b"longer now\n");
        replace("a/f11", b"x");
        fs_err::write(new.join("a/f20x"), b"added in the middle\n").unwrap();
        fs_err::remove_file(new.join("a/f30")).unwrap();
        replace(&long, b"long name, new bytes");
        // A mode change alone: a new file with the mode (the old inode is the earlier's).
        replace("b/g4", &fs_err::read(old.join("b/g4")).unwrap());
        fs_err::set_permissions(new.join("b/g4"), std::fs::Permissions::from_mode(0o600)).unwrap();
        fs_err::remove_file(new.join("a/f15")).unwrap();
        fs_err::create_dir(new.join("a/f15")).unwrap();
        fs_err::write(new.join("a/f15/inner"), b"a directory now\n").unwrap();
        fs_err::remove_dir_all(new.join("b/sub")).unwrap();
        fs_err::write(new.join("b/sub"), b"a file now\n").unwrap();
        // c/p1 and c/p2 stay one inode (a tar link entry); c/q2 stays the old inode, c/q1 is
        // edited: c/q2 is a file of its own now.
        replace("c/q1", b"one side of the pair edited\n");
        // Other bytes of the same size with the same mtime: only the inode tells.
        let same = fs_err::read(old.join("a/f21")).unwrap();
        replace("a/f21", &vec![b'z'; same.len()]);
        fs_err::File::options()
            .write(true)
            .open(new.join("a/f21"))
            .unwrap()
            .set_modified(
                fs_err::metadata(old.join("a/f21"))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
            .unwrap();

        let mut full = Vec::new();
        write_layer(&new, &mut full, &opts).unwrap();
        let mut reusing = Vec::new();
        let earlier = EarlierLayer {
            dir: old.clone(),
            tar: store.open_blob(&old_blob).unwrap(),
        };
        let stats = write_layer_reusing(&new, &mut reusing, &opts, earlier).unwrap();
        assert!(full == reusing, "the reusing tar differs from the full one");
        // 57 files: 6 replaced, 1 removed, 1 now a directory, 2 in a directory now a file,
        // c/p2 a link entry, c/q1 replaced and c/q2 no longer a link entry; the added one
        // is new.
        assert_eq!(stats.reused, 57 - 6 - 1 - 1 - 2 - 3);
        let listed = names(&reusing);
        for name in ["a/f20x", "a/f15/inner", "b/sub", "c/p2", "c/q2"] {
            assert!(listed.contains(&name.to_owned()), "{name} in {listed:?}");
        }
        let kinds: HashMap<String, tar::EntryType> = tar::Archive::new(&reusing[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (name, e.header().entry_type())
            })
            .collect();
        assert_eq!(kinds["c/p2"], tar::EntryType::Link);
        assert_eq!(kinds["c/q2"], tar::EntryType::Regular);

        // Into the store's layer writer, which keeps the taken runs as pieces of the earlier
        // blob: the same diff ID, and the blob reads as the full tar.
        let earlier = EarlierLayer {
            dir: old.clone(),
            tar: store.open_blob(&old_blob).unwrap(),
        };
        let mut writer = store.layer_writer(strata_store::Compression::None).unwrap();
        write_layer_reusing(&new, &mut writer, &opts, earlier).unwrap();
        let layer = writer.finish().unwrap();
        assert_eq!(layer.diff_id, strata_store::Digest::of(&full));
        assert_eq!(layer.size, full.len() as u64);
        let mut back = Vec::new();
        store
            .open_blob(&layer.digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(
            back == full,
            "the stored layer does not read as the full tar"
        );

        // Other mtimes in the headers (an epoch before every file's): nothing taken.
        let clamped = DiffOptions {
            source_date_epoch: Some(1_000),
        };
        let mut full = Vec::new();
        write_layer(&new, &mut full, &clamped).unwrap();
        let earlier = EarlierLayer {
            dir: old.clone(),
            tar: store.open_blob(&old_blob).unwrap(),
        };
        let mut reusing = Vec::new();
        let stats = write_layer_reusing(&new, &mut reusing, &clamped, earlier).unwrap();
        assert!(full == reusing);
        assert_eq!(stats.reused, 0);
        let mut full = Vec::new();
        write_layer(&new, &mut full, &opts).unwrap();

        // An earlier tar that is not one: every file written in full, same bytes.
        let bogus = store.put_blob(None, &b"not a tar"[..]).unwrap().digest;
        let earlier = EarlierLayer {
            dir: old,
            tar: store.open_blob(&bogus).unwrap(),
        };
        let mut again = Vec::new();
        let stats = write_layer_reusing(&new, &mut again, &opts, earlier).unwrap();
        assert!(full == again);
        assert_eq!(stats.reused, 0);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        let r = pax_record(b"path", &[b'x'; 95]);
        assert_eq!(r.len(), 105);
        assert!(r.starts_with(b"105 path="));
    }

    #[test]
    fn long_names_split_at_a_slash() {
        let mut h = tar::Header::new_ustar();
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert!(set_ustar_name(&mut h, name.as_bytes()));
        assert_eq!(h.path_bytes().as_ref(), name.as_bytes());
        let mut h = tar::Header::new_ustar();
        assert!(!set_ustar_name(&mut h, "x".repeat(300).as_bytes()));
    }
}
