//! Copying entries from a source root into a destination root, both held as directory
//! descriptors: the unit COPY, ADD and heredoc files are made of. A directory is walked
//! without following symlinks (they are copied as symlinks); regular files are copied with
//! `copy_file_range` (or `sendfile` where the two filesystems cannot); FIFOs and devices are
//! recreated, never opened; sockets are skipped. Every destination entry is created anew (an
//! old file or symlink in the way is removed first), so a write never goes through a link.
//! Owner before mode, so setuid bits survive; xattrs after the owner, since chown drops file
//! capabilities.
//!
//! Why this shape. A COPY of a big context is tens of thousands of small files, each a
//! dozen system calls that mostly wait on the kernel: the walk makes the directories in
//! order and hands regular files to helper threads (one less than the cores, at most
//! [`MAX_THREADS`] in all) through a short queue, copying a file itself whenever the queue is
//! full, so memory stays bounded and no core idles. A directory's times are set by whoever
//! lets go of it last (its walk level or the last file queued into it), once nothing more is
//! made in it. Hard-linked files, symlinks and special files stay on the walk, in order, so
//! a link always finds its first copy made. Per file, what the create already gave is not
//! set again: no chown when the owner is the process's own, no chmod when the umask leaves
//! the mode as it is, no stat before the copy (the walk's has the size).

use crate::reuse::{Before, Cloned};
use crate::sys::{self, NodeKind};
use crate::written::{self, Told, Written};
use rustix::fs::OFlags;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
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
    /// Where the directory copied into is in the layer (`/`-separated, `""` for its root),
    /// when what is made is told to the layer writer ([`Counts::written`]) or checked
    /// against an incremental COPY's clone ([`Reuse::cloned`]).
    pub(crate) record_at: Option<Arc<[u8]>>,
}

/// What an incremental COPY may leave in place: regular files whose context path
/// (`prefix/rel`) is not in `changed` and whose copy is already at its destination.
#[derive(Clone)]
pub(crate) struct Reuse {
    /// Context paths whose content changed since the layer being reused was made.
    pub(crate) changed: Rc<std::collections::HashSet<String>>,
    /// The copied directory's path in the context (`""` for its root).
    pub(crate) prefix: String,
    /// What the clone left at the destination, while every destination directory of this
    /// operation so far had a known path in the layer (`None` after one had not: the
    /// filesystem is asked).
    pub(crate) cloned: Rc<RefCell<Option<Cloned>>>,
}

impl Reuse {
    /// What the clone left at `name` in the destination directory at `dir` in the layer:
    /// asked once for every path the copy visits, so that a second visit finds nothing.
    fn before(&self, dir: Option<&Arc<[u8]>>, name: &OsStr) -> Before {
        match (self.cloned.borrow_mut().as_mut(), dir) {
            (Some(cloned), Some(dir)) => cloned.take(dir, name),
            _ => Before::Ask,
        }
    }

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

/// Copy statistics, and what was made when it is recorded.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    /// The entries made, for the layer writer: recorded when `Some` and the copy's
    /// [`CopyOpts::record_at`] is known.
    pub(crate) written: Option<Written>,
}

impl Counts {
    /// Records `name` in the layer directory `dir` (if known) as `told` says.
    fn record(&mut self, dir: Option<&Arc<[u8]>>, name: &OsStr, told: Option<Told>) {
        if let (Some(w), Some(dir)) = (self.written.as_mut(), dir) {
            w.add(dir, name.as_bytes(), told);
        }
    }
}

/// Where hard-linked sources were first copied to, to link the others to it (with that
/// directory's path in the layer, when recorded).
#[derive(Default)]
pub(crate) struct Links {
    seen: HashMap<(u64, u64), FirstCopy>,
}

/// Where a hard-linked source was first copied to: the directory, the name, and the
/// directory's path in the layer when recorded.
struct FirstCopy {
    dir: Arc<OwnedFd>,
    name: OsString,
    at: Option<Arc<[u8]>>,
}

/// Threads a directory copy uses at most, the walk's own included.
const MAX_THREADS: usize = 4;

/// Files queued for the helpers at most: beyond, the walk copies the file itself.
const QUEUE: usize = 64;

/// The most one `copy_file_range` or `sendfile` is asked for.
const CHUNK: usize = 1 << 30;

fn ftype(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn err_at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// What every file copy of one walk shares.
struct FileCtx {
    /// Who owns a file this process creates.
    ids: (u32, u32),
    /// The umask files are created under (`None`: unknown, so the mode is always set).
    umask: Option<u32>,
    /// Cleared once `copy_file_range` refuses (two filesystems that cannot): `sendfile` then.
    range: AtomicBool,
}

impl FileCtx {
    fn new() -> FileCtx {
        FileCtx {
            ids: sys::effective_ids(),
            umask: sys::current_umask(),
            range: AtomicBool::new(true),
        }
    }
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
    dst_dir: &Arc<OwnedFd>,
    name_out: &OsStr,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
) -> io::Result<()> {
    // Always copied: what the clone left there is no longer known.
    if let Some(r) = &opts.reuse {
        r.before(opts.record_at.as_ref(), name_out);
    }
    match ftype(st) {
        libc::S_IFDIR => {
            let src =
                confined::open_no_symlinks(src_dir, name, OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
            let dst = Arc::new(make_dir(dst_dir.as_fd(), name_out, st, opts, true)?);
            counts.record(opts.record_at.as_ref(), name_out, None);
            let inner = CopyOpts {
                record_at: opts
                    .record_at
                    .as_ref()
                    .map(|at| written::child(at, name_out.as_bytes())),
                ..opts.clone()
            };
            copy_dir_contents(&src, &dst, &inner, links, counts, display)?;
            finish_dir(dst.as_fd(), st)
        }
        // What the destination passes on is not known here: owner and mode are always set.
        _ => copy_leaf(
            &FileCtx::new(),
            src_dir,
            name,
            st,
            Dest {
                fd: dst_dir,
                inherits: true,
                path: opts.record_at.as_ref(),
            },
            name_out,
            opts,
            links,
            counts,
        ),
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

/// A destination directory being filled. Its walk level and every file queued into it hold
/// it; whoever lets go last sets its times, when nothing more is made in it.
struct DestDir {
    fd: Arc<OwnedFd>,
    /// The source directory's mtime; `None` for the directory copied into (its own stays).
    mtime: Option<(i64, i64)>,
    /// Whether a file made in it takes more than the process's ids and its create mode:
    /// the directory's group (set-group-ID) or its default ACL. Its owner and mode are then
    /// always set.
    inherits: bool,
    /// Its path in the layer, when what is made in it is recorded or checked against the
    /// clone.
    path: Option<Arc<[u8]>>,
}

/// Whether a file made in the directory `dir` (`mode` its mode) inherits from it (see
/// [`DestDir::inherits`]).
fn inherits(dir: BorrowedFd<'_>, mode: u32) -> bool {
    mode & libc::S_ISGID != 0 || sys::has_xattr(dir, c"system.posix_acl_default")
}

impl DestDir {
    /// Lets go of one hold on the directory; the last one sets its times.
    fn release(self: Arc<Self>) -> io::Result<()> {
        match Arc::into_inner(self) {
            Some(DestDir {
                fd,
                mtime: Some((secs, nsec)),
                ..
            }) => sys::futimens(fd.as_fd(), secs, nsec),
            _ => Ok(()),
        }
    }
}

/// One directory of a copy being walked.
struct Level {
    src: Arc<OwnedFd>,
    dst: Arc<DestDir>,
    rel: String,
    names: std::vec::IntoIter<OsString>,
}

/// A regular file for a helper thread to copy.
struct FileJob {
    src_dir: Arc<OwnedFd>,
    dst: Arc<DestDir>,
    name: OsString,
    st: libc::stat,
    owner: (u32, u32),
    mode: u32,
    /// Its path, for the error.
    shown: PathBuf,
}

/// A file a helper made, for [`Counts::written`].
struct Made {
    dir: Arc<[u8]>,
    name: OsString,
    told: Option<Told>,
}

impl FileJob {
    /// Copies the file; the bytes copied and, when its directory is recorded, the entry.
    fn run(self, ctx: &FileCtx) -> io::Result<(u64, Option<Made>)> {
        let FileJob {
            src_dir,
            dst,
            name,
            st,
            owner,
            mode,
            shown,
        } = self;
        let how = NewFile {
            dir: dst.fd.as_fd(),
            name: &name,
            owner,
            mode,
            inherits: dst.inherits,
        };
        let copied = copy_file(ctx, src_dir.as_fd(), &name, &st, &how).map_err(err_at(&shown))?;
        let bytes = copied.bytes;
        let told = dst.path.is_some().then(|| copied.told(&how, &st));
        let made = dst
            .path
            .clone()
            .zip(told)
            .map(|(dir, told)| Made { dir, name, told });
        dst.release()?;
        Ok((bytes, made))
    }
}

/// The first failure of a helper thread.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<io::Error>>,
}

impl Failure {
    fn set(&self, e: io::Error) {
        let mut first = self.first.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(e);
        self.failed.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<io::Error> {
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What the walk and its helpers share.
struct Shared {
    ctx: FileCtx,
    queue: Mutex<Receiver<FileJob>>,
    failure: Failure,
}

/// What a helper thread did: the bytes it copied and the entries it made, when recorded.
type HelperDone = (u64, Written);

/// A helper thread: copies queued files until the walk is done; after a failure it only
/// drains the queue.
fn helper(shared: &Shared) -> HelperDone {
    let (mut bytes, mut made) = (0, Written::default());
    loop {
        let next = shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(job) = next else {
            return (bytes, made);
        };
        if shared.failure.failed.load(Ordering::Acquire) {
            continue;
        }
        match job.run(&shared.ctx) {
            Ok((n, m)) => {
                bytes += n;
                if let Some(m) = m {
                    made.add(&m.dir, m.name.as_bytes(), m.told);
                }
            }
            Err(e) => shared.failure.set(e),
        }
    }
}

/// The walk's side of the helpers: queues a file, or copies it itself when the queue is
/// full (or there are no helpers). Helpers start with the first file.
struct Files<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    shared: &'env Shared,
    queue: SyncSender<FileJob>,
    helpers: Vec<std::thread::ScopedJoinHandle<'scope, HelperDone>>,
    max_helpers: usize,
}

impl Files<'_, '_> {
    /// Copies `job` or queues it; returns the bytes copied here (and records the entry).
    fn file(&mut self, job: FileJob, counts: &mut Counts) -> io::Result<u64> {
        let job = if self.max_helpers == 0 {
            job
        } else {
            if self.helpers.len() < self.max_helpers {
                let shared = self.shared;
                self.helpers.push(self.scope.spawn(move || helper(shared)));
            }
            match self.queue.try_send(job) {
                Ok(()) => return Ok(0),
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
            }
        };
        let (bytes, made) = job.run(&self.shared.ctx)?;
        if let (Some(w), Some(m)) = (counts.written.as_mut(), made) {
            w.add(&m.dir, m.name.as_bytes(), m.told);
        }
        Ok(bytes)
    }

    /// Whether a helper failed: the walk stops.
    fn stopped(&self) -> bool {
        self.shared.failure.failed.load(Ordering::Acquire)
    }

    /// Waits for the helpers; the bytes they copied and the entries they made, or the
    /// first failure.
    fn finish(self) -> io::Result<HelperDone> {
        drop(self.queue);
        let (mut bytes, mut made) = (0, Written::default());
        for h in self.helpers {
            let (b, m) = h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            bytes += b;
            made.append(m);
        }
        match self.shared.failure.take() {
            Some(e) => Err(e),
            None => Ok((bytes, made)),
        }
    }
}

/// Helper threads for a directory copy: one less than the cores, within [`MAX_THREADS`].
pub(crate) fn helper_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
        - 1
}

/// Copies what is in `src` into `dst`, walking depth first without recursion; regular
/// files are spread over helper threads (see the module).
pub(crate) fn copy_dir_contents(
    src: &OwnedFd,
    dst: &Arc<OwnedFd>,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
) -> io::Result<()> {
    copy_dir_with(src, dst, opts, links, counts, display, helper_threads())
}

/// [`copy_dir_contents`] with `helpers` helper threads (0: all on the calling thread).
fn copy_dir_with(
    src: &OwnedFd,
    dst: &Arc<OwnedFd>,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
    helpers: usize,
) -> io::Result<()> {
    let (queue, jobs) = mpsc::sync_channel(QUEUE);
    let shared = Shared {
        ctx: FileCtx::new(),
        queue: Mutex::new(jobs),
        failure: Failure::default(),
    };
    std::thread::scope(|scope| {
        let mut files = Files {
            scope,
            shared: &shared,
            queue,
            helpers: Vec::new(),
            max_helpers: helpers,
        };
        let walked = walk(src, dst, opts, links, counts, display, &mut files);
        let copied = files.finish();
        walked?;
        let (bytes, made) = copied?;
        counts.bytes += bytes;
        // After the walk's own: within one copy a path is made once.
        if let Some(w) = counts.written.as_mut() {
            w.append(made);
        }
        Ok(())
    })
}

/// The walk of [`copy_dir_contents`]: directories made in order, files to `files`.
fn walk(
    src: &OwnedFd,
    dst: &Arc<OwnedFd>,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
    display: &Path,
    files: &mut Files<'_, '_>,
) -> io::Result<()> {
    let first =
        confined::open_no_symlinks(src.as_fd(), ".", OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
    let names = confined::list(first.as_fd()).map_err(err_at(display))?;
    let top = sys::fstat(dst.as_fd()).map_err(err_at(display))?;
    let mut stack = vec![Level {
        src: Arc::new(first),
        dst: Arc::new(DestDir {
            fd: dst.clone(),
            mtime: None,
            inherits: inherits(dst.as_fd(), top.st_mode),
            path: opts.record_at.clone(),
        }),
        rel: String::new(),
        names: names.into_iter(),
    }];
    while let Some(level) = stack.last_mut() {
        if files.stopped() {
            return Ok(());
        }
        let Some(name) = level.names.next() else {
            let done = stack.pop().expect("the loop holds a level");
            done.dst.release()?;
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
        let before = opts
            .reuse
            .as_ref()
            .map(|r| r.before(level.dst.path.as_ref(), &name));
        if ftype(&st) == libc::S_IFDIR {
            let s = confined::open_no_symlinks(
                level.src.as_fd(),
                &name,
                OFlags::DIRECTORY | OFlags::RDONLY,
                0,
            )
            .map_err(err_at(&here))?;
            let names = confined::list(s.as_fd()).map_err(err_at(&here))?;
            let d =
                make_dir(level.dst.fd.as_fd(), &name, &st, opts, true).map_err(err_at(&here))?;
            let inherits = inherits(d.as_fd(), opts.mode_of(&st));
            counts.entries += 1;
            // A directory is always read from the filesystem by the layer writer.
            counts.record(level.dst.path.as_ref(), &name, None);
            let path = level
                .dst
                .path
                .as_ref()
                .map(|p| written::child(p, name.as_bytes()));
            stack.push(Level {
                src: Arc::new(s),
                dst: Arc::new(DestDir {
                    fd: Arc::new(d),
                    mtime: Some((st.st_mtime, st.st_mtime_nsec)),
                    inherits,
                    path,
                }),
                rel,
                names: names.into_iter(),
            });
            continue;
        }
        let plain = ftype(&st) == libc::S_IFREG && st.st_nlink == 1;
        if plain
            && let Some(before) = before
            && opts.reuse.as_ref().is_some_and(|r| r.unchanged(&rel))
            && crate::reuse::already_there(
                before,
                level.dst.fd.as_fd(),
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
        if plain {
            counts.entries += 1;
            let job = FileJob {
                src_dir: level.src.clone(),
                dst: level.dst.clone(),
                owner: opts.owner_of(&st),
                mode: opts.mode_of(&st),
                name,
                st,
                shown: here,
            };
            let n = files.file(job, counts)?;
            counts.bytes += n;
            continue;
        }
        copy_leaf(
            &files.shared.ctx,
            level.src.as_fd(),
            &name,
            &st,
            Dest {
                fd: &level.dst.fd,
                inherits: level.dst.inherits,
                path: level.dst.path.as_ref(),
            },
            &name,
            opts,
            links,
            counts,
        )
        .map_err(err_at(&here))?;
    }
    Ok(())
}

/// The directory a non-directory is copied into.
struct Dest<'a> {
    fd: &'a Arc<OwnedFd>,
    /// Whether files made in it inherit from it ([`DestDir::inherits`]).
    inherits: bool,
    /// Its path in the layer, when what is made in it is recorded.
    path: Option<&'a Arc<[u8]>>,
}

/// Copies a non-directory into `into`.
#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state, passed explicitly"
)]
fn copy_leaf(
    ctx: &FileCtx,
    src_dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    into: Dest<'_>,
    name_out: &OsStr,
    opts: &CopyOpts,
    links: &mut Links,
    counts: &mut Counts,
) -> io::Result<()> {
    let kind = ftype(st);
    if kind == libc::S_IFSOCK {
        return Ok(());
    }
    let dst_dir = into.fd;
    let dst = dst_dir.as_fd();
    let (uid, gid) = opts.owner_of(st);
    if kind == libc::S_IFREG {
        if st.st_nlink > 1 {
            if let Some(first) = links.seen.get(&(st.st_dev, st.st_ino)) {
                clear_entry(dst, name_out, Replace::EmptyDir)?;
                let from = Path::new(&first.name);
                sys::link_at(first.dir.as_fd(), from, dst, Path::new(name_out))?;
                counts.entries += 1;
                // Hard links are paired by the layer writer from their inodes: both asked
                // (the first may have been replaced since by a file told of).
                counts.record(into.path, name_out, None);
                counts.record(first.at.as_ref(), &first.name, None);
                return Ok(());
            }
            links.seen.insert(
                (st.st_dev, st.st_ino),
                FirstCopy {
                    dir: dst_dir.clone(),
                    name: name_out.to_owned(),
                    at: into.path.cloned(),
                },
            );
        }
        counts.entries += 1;
        let how = NewFile {
            dir: dst,
            name: name_out,
            owner: (uid, gid),
            mode: opts.mode_of(st),
            inherits: into.inherits,
        };
        let copied = copy_file(ctx, src_dir, name, st, &how)?;
        counts.bytes += copied.bytes;
        let told = (st.st_nlink == 1).then(|| copied.told(&how, st)).flatten();
        counts.record(into.path, name_out, told);
        return Ok(());
    }
    clear_entry(dst, name_out, Replace::EmptyDir)?;
    counts.entries += 1;
    let out = Path::new(name_out);
    match kind {
        libc::S_IFLNK => {
            let target = sys::readlink_at(src_dir, Path::new(name))?;
            sys::symlink_at(Path::new(&target), dst, out)?;
            sys::lchown_at(dst, out, uid, gid)?;
            sys::lutimes_at(dst, out, st.st_mtime, st.st_mtime_nsec)?;
            let told = Told::symlink(target.as_bytes(), (uid, gid), st.st_mtime);
            counts.record(into.path, name_out, Some(told));
            Ok(())
        }
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            counts.record(into.path, name_out, None);
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

/// Where a copied regular file goes and what it gets.
struct NewFile<'a> {
    dir: BorrowedFd<'a>,
    name: &'a OsStr,
    owner: (u32, u32),
    mode: u32,
    /// Whether a file made in `dir` inherits from it ([`DestDir::inherits`]).
    inherits: bool,
}

/// What [`copy_file`] did: the bytes copied and the xattrs set.
struct Copied {
    bytes: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Copied {
    /// The file as made, for the layer writer (`st` the source's metadata).
    fn told(self, to: &NewFile<'_>, st: &libc::stat) -> Option<Told> {
        Told::file(to.mode, to.owner, st.st_mtime, self.bytes, self.xattrs)
    }
}

/// Copies the regular file `name` in `src_dir` (`st` its metadata) to a new file as `to`
/// says, replacing what is in the way. The owner is set only when the process's own ids
/// would not give it; the file is created with its mode when the umask leaves that as it is
/// (no set-ID bits, no chown after, nothing inherited from the directory), else chmodded.
fn copy_file(
    ctx: &FileCtx,
    src_dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &libc::stat,
    to: &NewFile<'_>,
) -> io::Result<Copied> {
    let src = sys::file_from(confined::open_no_symlinks(
        src_dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK,
        0,
    )?);
    let chown = to.owner != ctx.ids || to.inherits;
    let exact = !chown && to.mode & 0o7000 == 0 && ctx.umask.is_some_and(|u| to.mode & u == 0);
    let dst = sys::file_from(create_file(
        to.dir,
        to.name,
        if exact { to.mode } else { 0o600 },
    )?);
    let bytes = copy_bytes(ctx, &src, &dst, st.st_size)?;
    if chown {
        sys::fchown(dst.as_fd(), to.owner.0, to.owner.1)?;
    }
    if !exact {
        sys::fchmod(dst.as_fd(), to.mode)?;
    }
    let xattrs = copy_xattrs(&src, dst.as_fd());
    sys::futimens(dst.as_fd(), st.st_mtime, st.st_mtime_nsec)?;
    Ok(Copied { bytes, xattrs })
}

/// Creates `name` in `dir` anew (`O_EXCL`: never through a link). What is in the way is
/// removed as [`clear_entry`] does, only once the create found it: a fresh tree pays one call.
fn create_file(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    match confined::open_no_symlinks(dir, name, flags, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_entry(dir, name, Replace::EmptyDir)?;
            confined::open_no_symlinks(dir, name, flags, mode)
        }
        other => other,
    }
}

/// Whether a kernel copy failed for want of support between the two files (then the next
/// way is tried), not for a fault of theirs.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EXDEV
                | libc::EINVAL
                | libc::EOPNOTSUPP
                | libc::ENOSYS
                | libc::EPERM
                | libc::EBADF
        )
    )
}

/// Copies `src` into the empty `dst`, both at offset 0: `size` bytes (the walk's stat), or
/// to the end when `size` is 0 (a file that does not say its size, as procfs's). In the
/// kernel: `copy_file_range`, else `sendfile`, else through user space.
fn copy_bytes(ctx: &FileCtx, src: &File, dst: &File, size: i64) -> io::Result<u64> {
    let size = u64::try_from(size).unwrap_or(0);
    let mut range = ctx.range.load(Ordering::Relaxed);
    let mut done = 0u64;
    while size == 0 || done < size {
        let want = usize::try_from(size - done).map_or(CHUNK, |n| n.min(CHUNK));
        let want = if size == 0 { CHUNK } else { want };
        let sent = if range {
            sys::copy_range(src.as_fd(), dst.as_fd(), want)
        } else {
            sys::send_file(src.as_fd(), dst.as_fd(), want)
        };
        match sent {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(e) if done == 0 && unsupported(&e) => {
                if range {
                    range = false;
                    ctx.range.store(false, Ordering::Relaxed);
                    continue;
                }
                let (mut r, mut w) = (src, dst);
                return io::copy(&mut r, &mut w);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Copies the xattrs an image keeps (file capabilities, `user.*`); best effort, as
/// BuildKit's copy: a filesystem without xattrs is no reason to fail a COPY. Returns those
/// set.
fn copy_xattrs(src: &File, dst: BorrowedFd<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    use xattr::FileExt;
    let mut set = Vec::new();
    let Ok(names) = src.list_xattr() else {
        return set;
    };
    for n in names {
        if keep_xattr(n.as_bytes())
            && let Ok(Some(v)) = src.get_xattr(&n)
            && sys::fsetxattr(dst, &n, &v).is_ok()
        {
            set.push((n.as_bytes().to_vec(), v));
        }
    }
    set
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn set_mtime(path: &Path, secs: i64, nsec: i64) {
        let t = nix::sys::time::TimeSpec::new(secs, nsec);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// A tree of 4 × 4 directories of 40 files each (sizes from empty to 70 kB), modes with
    /// and without set-ID bits and bits a umask strips, several owners, a set-group-ID
    /// directory, hard links within and across directories, symlinks (one dangling), a FIFO,
    /// `user.*` xattrs, and distinct times on everything.
    pub(crate) fn fixture(root: &Path) {
        let modes = [0o644, 0o755, 0o600, 0o666, 0o4755, 0o640, 0o777, 0o444];
        let mut t = 1_600_000_000i64;
        for d in 0..4 {
            for s in 0..4 {
                let dir = root.join(format!("d{d}/s{s}"));
                fs_err::create_dir_all(&dir).unwrap();
                for f in 0..40 {
                    let p = dir.join(format!("f{f:02}"));
                    let len = [0, 1, 4096, 10_000, 70_000][(f + s) % 5];
                    let body: Vec<u8> = (0..len).map(|i| (i * 7 + f + d) as u8).collect();
                    fs_err::write(&p, &body).unwrap();
                    let mode = modes[(f + d) % modes.len()];
                    std::os::unix::fs::lchown(&p, Some((f % 3) as u32 * 1000), Some(f as u32))
                        .unwrap();
                    fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                    if f % 7 == 0 {
                        xattr::set(&p, "user.note", format!("{d}{s}{f}").as_bytes()).unwrap();
                    }
                    t += 1;
                    set_mtime(&p, t, (f * 1000 + 7) as i64);
                }
            }
        }
        // A set-group-ID directory owned by another group: files made in it take its group.
        let sg = root.join("d1/setgid");
        fs_err::create_dir(&sg).unwrap();
        std::os::unix::fs::lchown(&sg, Some(5), Some(55)).unwrap();
        fs_err::set_permissions(&sg, std::fs::Permissions::from_mode(0o2775)).unwrap();
        fs_err::write(sg.join("in"), "in a setgid dir").unwrap();
        fs_err::write(sg.join("mine"), "root's").unwrap();
        std::os::unix::fs::lchown(sg.join("in"), Some(0), Some(7)).unwrap();
        fs_err::hard_link(root.join("d0/s0/f03"), root.join("d0/s0/link")).unwrap();
        fs_err::hard_link(root.join("d0/s0/f03"), root.join("d3/s2/link")).unwrap();
        fs_err::hard_link(root.join("d2/s1/f10"), root.join("d2/s1/zlink")).unwrap();
        std::os::unix::fs::symlink("../s1/f01", root.join("d0/s0/sym")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("d3/dangling")).unwrap();
        nix::unistd::mkfifo(
            &root.join("d2/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o620),
        )
        .unwrap();
        // A long name (a PAX header in a layer) and an empty directory.
        let long = root.join(format!("d3/{}/{}", "l".repeat(120), "n".repeat(90)));
        fs_err::create_dir_all(long.parent().unwrap()).unwrap();
        fs_err::write(&long, "long").unwrap();
        fs_err::create_dir(root.join("d3/empty")).unwrap();
        for (i, d) in ["d0/s0", "d1/setgid", "d2/s1", "d2", "d3", "d0"]
            .iter()
            .enumerate()
        {
            set_mtime(&root.join(d), 1_500_000_000 + i as i64, 123);
        }
    }

    /// Every entry below `root`: type, mode, owner, size, mtime, symlink target, bytes,
    /// `user.*` xattrs, and which earlier entry it is a hard link of.
    /// Asserts that one of `lines` (from [`describe`]) starts with `prefix`.
    fn assert_has_line(lines: &[String], prefix: &str) {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "{prefix}: {lines:#?}"
        );
    }

    pub(crate) fn describe(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
        let mut left = vec![PathBuf::new()];
        while let Some(rel) = left.pop() {
            let mut names: Vec<_> = fs_err::read_dir(root.join(&rel))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                let rel = rel.join(&n);
                let p = root.join(&rel);
                let m = fs_err::symlink_metadata(&p).unwrap();
                let mut line = format!(
                    "{} {:o} {}:{} {} {}.{}",
                    rel.display(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec()
                );
                if m.file_type().is_symlink() {
                    line += &format!(" -> {}", fs_err::read_link(&p).unwrap().display());
                } else if m.is_file() {
                    let body = fs_err::read(&p).unwrap();
                    line += &format!(" sum {}", body.iter().map(|&b| u64::from(b)).sum::<u64>());
                    let mut xs: Vec<String> = xattr::list(&p)
                        .unwrap()
                        .filter(|x| x.to_string_lossy().starts_with("user."))
                        .map(|x| {
                            let v = xattr::get(&p, &x).unwrap().unwrap();
                            format!("{}={}", x.to_string_lossy(), String::from_utf8_lossy(&v))
                        })
                        .collect();
                    xs.sort();
                    line += &format!(" [{}]", xs.join(","));
                    if m.nlink() > 1 {
                        let first = inodes
                            .entry((m.dev(), m.ino()))
                            .or_insert_with(|| rel.display().to_string());
                        line += &format!(" link of {first}");
                    }
                } else if m.is_dir() {
                    left.push(rel.clone());
                }
                out.push(line);
            }
        }
        out.sort();
        out
    }

    fn opts() -> CopyOpts {
        CopyOpts {
            owner: None,
            reset_owner: false,
            mode: None,
            filter: copy_everything(),
            reuse: None,
            record_at: None,
        }
    }

    fn copy_with(src: &Path, dst: &Path, opts: &CopyOpts, helpers: usize) -> io::Result<Counts> {
        let s = sys::open_dir(src).unwrap();
        let d = Arc::new(sys::open_dir(dst).unwrap());
        let mut counts = Counts::default();
        copy_dir_with(
            &s,
            &d,
            opts,
            &mut Links::default(),
            &mut counts,
            Path::new("/src"),
            helpers,
        )
        .map(|()| counts)
    }

    #[test]
    fn a_copy_on_helper_threads_is_the_copy_on_one() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(&src);
        let want = describe(&src);
        let mut got = Vec::new();
        for helpers in [0, 1, 3] {
            let dst = tmp.path().join(format!("dst{helpers}"));
            fs_err::create_dir(&dst).unwrap();
            let counts = copy_with(&src, &dst, &opts(), helpers).unwrap();
            got.push((counts.entries, counts.bytes, describe(&dst)));
        }
        // Every entry as in the source (owners kept, the FIFO recreated), on any thread count.
        assert_eq!(got[0].2, want);
        assert_eq!(got[1], got[0]);
        assert_eq!(got[2], got[0]);
        assert_eq!(got[0].0, want.len() as u64);
        // The setgid directory's group was not left on the file owned by root:7.
        assert_has_line(&want, "d1/setgid/in 100644 0:7 ");
    }

    /// The layer written from what the copy told (on any thread count, with `--chown` and
    /// `--chmod` or without, times clamped or not) is the walk's, byte for byte, and most
    /// entries were told: set-ID files, hard links, the FIFO and directories are asked.
    #[test]
    fn the_layer_from_what_the_copy_wrote_is_the_walks() {
        use crate::diff::{DiffOptions, write_layer, write_layer_written};
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(&src);
        for (i, (helpers, owner, mode)) in [
            (0, None, None),
            (1, None, None),
            (3, None, None),
            (1, Some((1000, 1001)), Some(0o751)),
            (1, Some((0, 0)), Some(0o4755)),
        ]
        .into_iter()
        .enumerate()
        {
            let dst = tmp.path().join(format!("dst{i}"));
            fs_err::create_dir(&dst).unwrap();
            let o = CopyOpts {
                owner,
                mode,
                record_at: Some(Arc::from(&b""[..])),
                ..opts()
            };
            let s = sys::open_dir(&src).unwrap();
            let d = Arc::new(sys::open_dir(&dst).unwrap());
            let mut counts = Counts {
                written: Some(Written::default()),
                ..Counts::default()
            };
            let shown = Path::new("/src");
            let mut links = Links::default();
            copy_dir_with(&s, &d, &o, &mut links, &mut counts, shown, helpers).unwrap();
            let written = counts.written.unwrap().seal();
            let told = written.told();
            // 640 files (some set-ID), 3 hard-link members, 2 symlinks, the long name.
            let want = if mode == Some(0o4755) { 2 } else { 550 };
            assert!(told >= want, "{told} told, case {i}");
            for epoch in [None, Some(1_600_000_100)] {
                let opts = DiffOptions {
                    source_date_epoch: epoch,
                };
                let (mut walked, mut from_list) = (Vec::new(), Vec::new());
                write_layer(&dst, &mut walked, &opts).unwrap();
                let stats = write_layer_written(&dst, &mut from_list, &opts, &written).unwrap();
                assert!(walked == from_list, "case {i}, epoch {epoch:?}");
                assert_eq!(stats.told, told as u64);
            }
        }
    }

    #[test]
    fn a_copy_with_chown_and_chmod_gives_every_file_the_same_metadata_on_any_thread_count() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(&src);
        let mut got = Vec::new();
        for (owner, mode) in [(Some((1000, 1001)), Some(0o751)), (Some((0, 0)), None)] {
            for helpers in [0, 1] {
                let dst = tmp.path().join(format!("dst-{owner:?}-{helpers}"));
                fs_err::create_dir(&dst).unwrap();
                let o = CopyOpts {
                    owner,
                    mode,
                    ..opts()
                };
                copy_with(&src, &dst, &o, helpers).unwrap();
                got.push(describe(&dst));
            }
        }
        assert_eq!(got[0], got[1]);
        assert_eq!(got[2], got[3]);
        assert!(
            got[0].iter().all(|l| l.contains(" 1000:1001 ")),
            "{:#?}",
            got[0]
        );
        assert_has_line(&got[0], "d0/s0/f00 100751 1000:1001 ");
        // Owned by root, modes kept: set-user-ID bits and bits a umask would strip included.
        assert_has_line(&got[2], "d0/s0/f04 104755 0:0 ");
        assert_has_line(&got[2], "d0/s0/f03 100666 0:0 ");
    }

    #[test]
    fn a_failing_file_names_its_path_on_any_thread_count() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fixture(&src);
        for helpers in [0, 1, 3] {
            let dst = tmp.path().join(format!("dst{helpers}"));
            // A non-empty directory where a file goes.
            fs_err::create_dir_all(dst.join("d2/s3/f17/keep")).unwrap();
            let e = copy_with(&src, &dst, &opts(), helpers).unwrap_err();
            assert_eq!(
                e.to_string(),
                "/src/d2/s3/f17: cannot replace non-empty directory f17",
                "{helpers} helpers"
            );
        }
    }

    /// A destination with a default ACL (`user::rwx`, nothing for group and others) would
    /// give a file created 0644 mode 0600: the mode is set after the create there.
    #[test]
    fn a_default_acl_on_the_destination_does_not_change_the_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(src.join("sub")).unwrap();
        for p in ["top", "sub/below"] {
            fs_err::write(src.join(p), p).unwrap();
            fs_err::set_permissions(src.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm) in [(0x01u16, 7u16), (0x04, 0), (0x20, 0)] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(u32::MAX.to_le_bytes());
        }
        for helpers in [0, 1] {
            let dst = tmp.path().join(format!("dst{helpers}"));
            fs_err::create_dir(&dst).unwrap();
            xattr::set(&dst, "system.posix_acl_default", &acl).unwrap();
            copy_with(&src, &dst, &opts(), helpers).unwrap();
            for p in ["top", "sub/below"] {
                let mode = fs_err::metadata(dst.join(p)).unwrap().mode();
                assert_eq!(mode, 0o100644, "{p}, {helpers} helpers");
            }
        }
    }

    #[test]
    fn a_file_in_the_way_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(src.join("a")).unwrap();
        fs_err::write(src.join("a/x"), "new").unwrap();
        fs_err::write(src.join("a/y"), "new y").unwrap();
        let dst = tmp.path().join("dst");
        fs_err::create_dir_all(dst.join("a")).unwrap();
        fs_err::write(tmp.path().join("outside"), "keep").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), dst.join("a/x")).unwrap();
        fs_err::write(dst.join("a/y"), "old, longer than the new one").unwrap();
        copy_with(&src, &dst, &opts(), 1).unwrap();
        assert_eq!(fs_err::read_to_string(dst.join("a/x")).unwrap(), "new");
        assert_eq!(fs_err::read_to_string(dst.join("a/y")).unwrap(), "new y");
        assert_eq!(
            fs_err::read_to_string(tmp.path().join("outside")).unwrap(),
            "keep"
        );
    }
}
