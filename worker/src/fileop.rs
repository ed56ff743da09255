//! COPY, ADD, heredoc files and WORKDIR's mkdir: a [`FileOp`] applied onto a parent
//! filesystem, producing a new layer.
//!
//! The parent's layers and the new upper are mounted as one overlay, source stages as
//! read-only overlays, all of them *detached* (`fsmount`, never attached to a path): such a
//! mount is in no mount namespace, so no other process can see or reach it, and it is
//! dissolved when the last descriptor into it is closed, at the end of the operation or when
//! the process dies. Everything is then resolved relative to the mount's root descriptor.
//! This costs no thread, no `unshare` and no mount-point directories; in process, the
//! context's exclude callback and the destination's errors stay plain Rust.
//!
//! Semantics follow BuildKit (≥ 0.13; `ADD --chown` on archives as in ≥ 0.23): see the
//! functions below for each rule.

use crate::archive;
use crate::copy::{self, CopyOpts, Counts, Links, Reuse};
use crate::download;
use crate::git;
use crate::reuse::{self, Cloned, Previous};
use crate::source::{self, ExcludeFn};
use crate::sys::{self, MountAttrs};
use crate::user::{self, UserError};
use crate::worker::Worker;
use crate::written::{self, Written};
use rustix::fs::OFlags;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use strata_graph::pattern::{self, PatternError};
use strata_graph::resolver::{self, ResolveError};
use strata_graph::{Chown, FileAction, FileOp};
use strata_store::confined::{self, ConfinedRoot, DirOpts, ExtractOptions, Replace, clear_entry};

/// A filesystem COPY or ADD reads from.
#[derive(Clone)]
pub enum FileSource {
    /// A build context, read in place.
    Context {
        /// Its directory on the host.
        dir: PathBuf,
        /// Paths to leave out (`.dockerignore`).
        exclude: Option<ExcludeFn>,
    },
    /// Another stage or an image: layer directories, top first.
    Layers(Vec<PathBuf>),
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileSource::Context { dir, exclude } => f
                .debug_struct("Context")
                .field("dir", dir)
                .field("exclude", &exclude.is_some())
                .finish(),
            FileSource::Layers(l) => f.debug_tuple("Layers").field(l).finish(),
        }
    }
}

/// One file operation.
#[derive(Debug, Clone)]
pub struct FileRequest {
    /// The actions.
    pub op: FileOp,
    /// The parent filesystem (`inputs[0]`): layer directories, top first.
    pub lowers: Vec<PathBuf>,
    /// An empty directory that becomes the new layer (its parent must be writable, same
    /// filesystem).
    pub upper: PathBuf,
    /// The node's inputs by index, for `FileAction::Copy::from`; index 0 (the parent) may
    /// be `None`.
    pub inputs: Vec<Option<FileSource>>,
    /// The same step's earlier result, when only the content of some context files changed
    /// since: an incremental COPY (`reuse.rs`). Used only for an op made of plain COPYs
    /// from a context (no archive, no `--link`) onto a parent; ignored otherwise.
    pub previous: Option<Previous>,
    /// Credentials for the remotes of the op's git ADDs, by remote (from the build's
    /// secrets); a remote without an entry is fetched without.
    pub git_auth: BTreeMap<String, git::GitAuth>,
}

/// What a file operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Entries created.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// What it wrote into the upper, for [`crate::write_layer_written`]: for an op made of
    /// COPYs only (no archive unpacked, not incremental); `None` otherwise.
    pub written: Option<Written>,
}

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A source path does not exist (or is excluded).
    #[error("{path}: not found in {source_name}")]
    NotFound {
        /// The path as written.
        path: String,
        /// Where it was looked for (`the build context`, `the source stage`).
        source_name: String,
    },
    /// Several sources need a directory destination.
    #[error(
        "when copying more than one source the destination must be a directory and end with a /: {0}"
    )]
    DestNotDir(String),
    /// `--chmod` is not an octal mode.
    #[error("invalid --chmod value {0:?}: must be an octal mode such as 0755")]
    BadChmod(String),
    /// A bad wildcard.
    #[error(transparent)]
    Pattern(#[from] pattern::BadPattern),
    /// A `--exclude` pattern that cannot be used.
    #[error("invalid --exclude pattern {pattern:?}")]
    BadExclude {
        /// The pattern as written.
        pattern: String,
        /// Why.
        #[source]
        source: PatternError,
    },
    /// A `--chown` user or group.
    #[error("invalid --chown")]
    Chown(#[source] UserError),
    /// An archive could not be extracted.
    #[error("failed to extract {}", path)]
    Archive {
        /// The archive's source path.
        path: String,
        /// What went wrong.
        #[source]
        source: confined::ExtractError,
    },
    /// ADD of a URL failed.
    #[error(transparent)]
    Download(#[from] download::DownloadError),
    /// ADD of a git repository failed.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// The operation refers to an input it was not given.
    #[error("input {0} of the file operation was not provided")]
    MissingInput(usize),
    /// Mounting the filesystems failed.
    #[error("failed to mount the filesystems for the file operation")]
    Mount(#[source] io::Error),
    /// A filesystem error on a path.
    #[error("failed to {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path (inside the image, or the source).
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_at(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> FileError {
    let path = path.into();
    move |source| FileError::Io { what, path, source }
}

/// A mounted source.
struct Src {
    root: ConfinedRoot,
    context: bool,
    exclude: Option<ExcludeFn>,
    name: &'static str,
}

impl Worker {
    /// Applies `req.op` onto `req.lowers`, writing the changes into `req.upper`. Blocking:
    /// call it from `spawn_blocking` in async code. Every mount it makes is gone when it
    /// returns; its scratch directory, if it needed one, is deleted right after, in the
    /// background.
    pub fn apply_file_op(&self, req: FileRequest) -> Result<FileStats, FileError> {
        // An ending RUN sandbox's overlay may hold one of the layers as its upper.
        self.teardowns.wait();
        let parent = req.upper.parent().unwrap_or(Path::new("/")).to_owned();
        let mut scratch = Scratch { parent, dir: None };
        let result = apply(
            &req,
            &mut scratch,
            self.config.max_unpack_bytes,
            self.config.download_timeout,
        );
        if let Some(dir) = scratch.dir {
            self.janitor.delete(dir);
        }
        result
    }
}

/// A scratch directory beside the new layer (same filesystem: the overlay's work dir and
/// downloads), made only when needed.
struct Scratch {
    parent: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    fn path(&mut self) -> Result<&Path, FileError> {
        if self.dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix(".strata-file-")
                .tempdir_in(&self.parent)
                .map_err(io_at("create a scratch directory in", &self.parent))?;
            self.dir = Some(dir);
        }
        Ok(self.dir.as_ref().expect("made just above").path())
    }
}

/// A detached overlay of `lowers` (top first), over `upper` with its work dir or read-only.
/// Volatile (never syncs the upper's filesystem), like the RUN sandbox's root.
pub(crate) fn mount_layers(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<ConfinedRoot, FileError> {
    let lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let attrs = MountAttrs {
        nodev: true,
        ..MountAttrs::NONE
    };
    let mount = sys::overlay_mount(&lowers, upper, true, attrs).map_err(FileError::Mount)?;
    ConfinedRoot::of_mount(mount).map_err(FileError::Mount)
}

/// An empty read-only directory (a source stage with no layers).
fn empty_root() -> Result<ConfinedRoot, FileError> {
    let attrs = MountAttrs {
        readonly: true,
        ..MountAttrs::SAFE
    };
    let mount = sys::fs_mount("tmpfs", &[("size".into(), Some("0".into()))], attrs)
        .map_err(FileError::Mount)?;
    ConfinedRoot::of_mount(mount).map_err(FileError::Mount)
}

fn apply(
    req: &FileRequest,
    scratch: &mut Scratch,
    limit: u64,
    download_timeout: std::time::Duration,
) -> Result<FileStats, FileError> {
    let any_link = req
        .op
        .actions
        .iter()
        .any(|a| matches!(a, FileAction::Copy { link: true, .. }));
    // Before the upper is mounted: an incremental COPY fills it with the earlier result.
    let reuse = reuse_previous(req);
    // The destination: the parent's layers with the new upper on top (or the upper alone
    // for FROM scratch and for COPY --link, which never sees its parent).
    let dest = if req.lowers.is_empty() || any_link {
        ConfinedRoot::open(&req.upper).map_err(FileError::Mount)?
    } else {
        // The scratch dir itself is the overlay's work dir (it makes `work/` inside).
        let work = scratch.path()?.to_owned();
        mount_layers(&req.lowers, Some((&req.upper, &work)))?
    };
    // COPY --link still resolves --chown names in the parent's /etc/passwd.
    let parent_names = match req.lowers.as_slice() {
        _ if !any_link => None,
        [] => None,
        [one] => Some(ConfinedRoot::open(one).map_err(FileError::Mount)?),
        many => Some(mount_layers(many, None)?),
    };
    let names = parent_names.as_ref().unwrap_or(&dest);
    let mut sources: Vec<Option<Src>> = Vec::new();
    for input in &req.inputs {
        sources.push(match input {
            None => None,
            Some(FileSource::Context { dir, exclude }) => Some(Src {
                root: ConfinedRoot::open(dir).map_err(io_at("open the build context", dir))?,
                context: true,
                exclude: exclude.clone(),
                name: "the build context",
            }),
            Some(FileSource::Layers(layers)) => {
                let root = match layers.as_slice() {
                    [one] => ConfinedRoot::open(one).map_err(FileError::Mount)?,
                    [] => empty_root()?,
                    many => mount_layers(many, None)?,
                };
                Some(Src {
                    root,
                    context: false,
                    exclude: None,
                    name: "the source stage",
                })
            }
        });
    }
    let mut stats = FileStats::default();
    // Only a fresh copy's entries are all known to it (an incremental one leaves some).
    let mut written = reuse.is_none().then(Written::default);
    for action in &req.op.actions {
        if !matches!(action, FileAction::Copy { .. }) {
            written = None;
        }
        match action {
            FileAction::Mkdir { path, mode, chown } => {
                let owner = owner(names, chown.as_ref())?;
                let comps = confined::clean(Path::new(path));
                let mut created = Vec::new();
                dest.mkdir_all(&comps, DirOpts { mode: *mode, owner }, &mut created)
                    .map_err(io_at("create directory", path))?;
                stats.entries += created.len() as u64;
            }
            FileAction::MkFile {
                path,
                contents,
                mode,
                chown,
            } => {
                let owner = owner(names, chown.as_ref())?;
                let comps = confined::clean(Path::new(path));
                let (dir, name) = dest
                    .parent_of(&comps, DirOpts { mode: 0o755, owner }, &mut Vec::new())
                    .map_err(io_at("create", path))?;
                write_file(
                    dir.as_fd(),
                    name,
                    &mut contents.as_bytes(),
                    *mode,
                    owner.unwrap_or((0, 0)),
                    None,
                )
                .map_err(io_at("write", path))?;
                stats.entries += 1;
                stats.bytes += contents.len() as u64;
            }
            FileAction::Copy {
                from,
                sources: srcs,
                dest: d,
                dest_is_dir,
                chown,
                chmod,
                parents,
                exclude,
                unpack,
                ..
            } => {
                let src = sources
                    .get(*from)
                    .and_then(Option::as_ref)
                    .ok_or(FileError::MissingInput(*from))?;
                let spec = CopySpec {
                    dest: d,
                    dest_is_dir: *dest_is_dir,
                    owner: owner(names, chown.as_ref())?,
                    mode: chmod.as_deref().map(parse_chmod).transpose()?,
                    parents: *parents,
                    excludes: exclude,
                    unpack: *unpack,
                };
                let c = copy_sources(&dest, src, srcs, &spec, limit, reuse.as_ref(), &mut written)?;
                stats.entries += c.entries;
                stats.bytes += c.bytes;
            }
            FileAction::Download {
                url,
                dest: d,
                dest_is_dir,
                checksum,
                chown,
                chmod,
                unpack,
            } => {
                let owner = owner(names, chown.as_ref())?;
                let mode = chmod.as_deref().map(parse_chmod).transpose()?;
                let fetched = download::fetch(
                    url,
                    checksum.as_deref(),
                    &scratch.path()?.join("download"),
                    limit,
                    download_timeout,
                )?;
                if *unpack {
                    // `--unpack=true`: an archive goes into the destination directory, through
                    // the one confined extractor with ADD's rules, as a local archive does.
                    let file = fs_err::File::open(&fetched.path)
                        .map_err(io_at("read the download of", url))?;
                    if let Some(c) =
                        archive::detect(file.file()).map_err(io_at("read the download of", url))?
                    {
                        let opts = ExtractOptions::add(confined::clean(Path::new(d)), owner, limit);
                        let done =
                            archive::extract(file.file(), c, &dest, &opts).map_err(|source| {
                                FileError::Archive {
                                    path: url.clone(),
                                    source,
                                }
                            })?;
                        stats.entries += done.entries;
                        stats.bytes += done.bytes;
                        continue;
                    }
                }
                let mut comps = confined::clean(Path::new(d));
                let into_dir = *dest_is_dir
                    || dest
                        .stat(&comps)
                        .map_err(io_at("resolve", d))?
                        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                if into_dir {
                    comps.push(OsString::from(&fetched.filename));
                }
                let (dir, name) = dest
                    .parent_of(&comps, DirOpts { mode: 0o755, owner }, &mut Vec::new())
                    .map_err(io_at("create", d))?;
                let mut f = fs_err::File::open(&fetched.path)
                    .map_err(io_at("read the download of", url))?;
                write_file(
                    dir.as_fd(),
                    name,
                    &mut f,
                    mode.unwrap_or(0o600),
                    owner.unwrap_or((0, 0)),
                    fetched.mtime,
                )
                .map_err(io_at("write", d))?;
                stats.entries += 1;
                stats.bytes += fetched.size;
            }
            FileAction::Git {
                remote,
                reference,
                subdir,
                keep_git_dir,
                checksum,
                commit_mtime,
                dest: d,
                chown,
                chmod,
            } => {
                let c = add_git(
                    &dest,
                    scratch,
                    GitAdd {
                        remote,
                        reference: reference.as_deref(),
                        subdir: subdir.as_deref(),
                        keep_git_dir: *keep_git_dir,
                        checksum: checksum.as_deref(),
                        commit_mtime: *commit_mtime,
                        auth: req.git_auth.get(remote.as_str()),
                    },
                    &CopySpec {
                        dest: d,
                        dest_is_dir: true,
                        owner: owner(names, chown.as_ref())?,
                        mode: chmod.as_deref().map(parse_chmod).transpose()?,
                        parents: false,
                        excludes: &[],
                        unpack: false,
                    },
                    limit,
                )?;
                stats.entries += c.entries;
                stats.bytes += c.bytes;
            }
        }
    }
    stats.written = written.map(Written::seal);
    Ok(stats)
}

/// Sets the mtime of everything below `comps` in `root`, and of `comps` itself, to `secs`
/// (never following a symlink).
fn set_mtimes(root: &ConfinedRoot, comps: &mut Vec<OsString>, secs: i64) -> io::Result<()> {
    let Some(dir) = root.open_at(comps, OFlags::DIRECTORY | OFlags::RDONLY)? else {
        return Ok(());
    };
    for name in confined::list(dir.as_fd())? {
        let st = sys::lstat_at(dir.as_fd(), Path::new(&name))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            comps.push(name.clone());
            set_mtimes(root, comps, secs)?;
            comps.pop();
        } else {
            sys::lutimes_at(dir.as_fd(), Path::new(&name), secs, 0)?;
        }
    }
    sys::futimens(dir.as_fd(), secs, 0)
}

/// What [`add_git`] checks out.
struct GitAdd<'a> {
    remote: &'a str,
    reference: Option<&'a str>,
    subdir: Option<&'a str>,
    keep_git_dir: bool,
    checksum: Option<&'a str>,
    commit_mtime: bool,
    auth: Option<&'a git::GitAuth>,
}

/// ADD of a git repository: the commit checked out in the scratch directory, then its tree
/// (or `subdir`, resolved inside the checkout) copied by the confined copy COPY uses, so a
/// symlink or `..` in the repository cannot reach outside either root. The `.git` comes
/// along only with `keep_git_dir` and no subdir, as BuildKit. The solver has already put the
/// resolved commit in `reference`; an id is not resolved again.
fn add_git(
    dest: &ConfinedRoot,
    scratch: &mut Scratch,
    g: GitAdd<'_>,
    spec: &CopySpec<'_>,
    limit: u64,
) -> Result<Counts, FileError> {
    let commit = git::resolve(g.remote, g.reference, g.checksum, g.auth)?;
    let subdir = g
        .subdir
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty() && *s != ".");
    let keep = g.keep_git_dir && subdir.is_none();
    let base = scratch.path()?.to_owned();
    let (tree, git_dir) = (base.join("git-tree"), base.join("git-dir"));
    fs_err::create_dir(&tree).map_err(io_at("create", &tree))?;
    let time = git::checkout(g.remote, &commit, &tree, &git_dir, keep, g.auth)?;
    let root = ConfinedRoot::open(&tree).map_err(io_at("open the checkout of", g.remote))?;
    if g.commit_mtime {
        set_mtimes(&root, &mut Vec::new(), time).map_err(io_at("set the mtimes of", &tree))?;
    }
    let src = Src {
        root,
        context: false,
        exclude: None,
        name: "the git repository",
    };
    let source = format!("/{}", subdir.unwrap_or(""));
    copy_sources(dest, &src, &[source], spec, limit, None, &mut None).map_err(|e| match e {
        FileError::NotFound { path, .. } => FileError::Git(git::GitError::NoSubdir {
            remote: git::redact(g.remote),
            commit: commit.clone(),
            subdir: path,
        }),
        e => e,
    })
}

/// What an incremental COPY starts from: the changed context paths, and what the clone of
/// the earlier layer left in the upper dir.
#[derive(Clone)]
struct Incremental {
    changed: Rc<HashSet<String>>,
    cloned: Rc<RefCell<Option<Cloned>>>,
}

/// Starts an incremental COPY when `req.previous` allows one: clones the earlier layer into
/// the upper dir (still empty and not mounted yet) and returns what it starts from.
/// Only for an op made of plain COPYs from a context (an archive or a download may write
/// into existing files; `--link` is left alone). A clone that fails (the earlier layer
/// pruned meanwhile) is undone and the COPY runs in full.
fn reuse_previous(req: &FileRequest) -> Option<Incremental> {
    let previous = req.previous.as_ref()?;
    let eligible = req.op.actions.iter().all(|a| match a {
        FileAction::Copy {
            from,
            unpack: false,
            link: false,
            ..
        } => matches!(
            req.inputs.get(*from),
            Some(Some(FileSource::Context { .. }))
        ),
        _ => false,
    });
    if !eligible {
        return None;
    }
    match reuse::clone_tree(&previous.layer, &req.upper) {
        Ok(cloned) => Some(Incremental {
            changed: Rc::new(previous.changed.clone()),
            cloned: Rc::new(RefCell::new(Some(cloned))),
        }),
        Err(_) => {
            empty_dir(&req.upper).ok()?;
            None
        }
    }
}

/// Deletes what is in `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        if fs_err::symlink_metadata(&path)?.is_dir() {
            fs_err::remove_dir_all(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A named volume's first mount, docker's copy-up: fills `dest`, a new empty host
/// directory, as a cache mount's `from=` seed is made, from the directory `target` of the
/// container's root filesystem (`layers`: its writable layer, then the image's, top first).
/// `Ok(false)`, `dest` left empty, when that filesystem has no directory there. Blocking.
pub fn copy_up_volume(layers: &[PathBuf], target: &str, dest: &Path) -> Result<bool, FileError> {
    match seed_dir(layers, target, dest) {
        Ok(()) => Ok(true),
        Err(FileError::NotFound { .. }) => Ok(false),
        Err(FileError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTDIR) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Fills `dest`, a new empty host directory, with the contents of the directory `source`
/// of the filesystem made of `layers` (top first): what a cache mount with `from=` starts
/// with. `source` is resolved inside that filesystem (its symlinks cannot lead out of it);
/// owners, modes, links, xattrs and times are kept, and `dest` takes the source directory's
/// owner, mode and times. Blocking.
pub(crate) fn seed_dir(layers: &[PathBuf], source: &str, dest: &Path) -> Result<(), FileError> {
    let root = match layers {
        [] => empty_root()?,
        [one] => ConfinedRoot::open(one).map_err(io_at("open", one))?,
        many => mount_layers(many, None)?,
    };
    let comps = confined::clean(Path::new(source));
    let shown = format!("/{}", confined::join(&comps).display());
    let not_found = || FileError::NotFound {
        path: shown.clone(),
        source_name: "the cache mount's from".into(),
    };
    let st = root
        .stat(&comps)
        .map_err(io_at("open", &shown))?
        .ok_or_else(not_found)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(FileError::Io {
            what: "use as a cache mount source",
            path: shown.into(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    let src = root
        .open_at(&comps, OFlags::DIRECTORY | OFlags::RDONLY)
        .map_err(io_at("open", &shown))?
        .ok_or_else(not_found)?;
    let dst = Arc::new(sys::open_dir(dest).map_err(io_at("open", dest))?);
    let opts = CopyOpts {
        owner: None,
        reset_owner: false,
        mode: None,
        filter: copy::copy_everything(),
        reuse: None,
        record_at: None,
    };
    copy::copy_dir_contents(
        &src,
        &dst,
        &opts,
        &mut Links::default(),
        &mut Counts::default(),
        Path::new(&shown),
    )
    .map_err(io_at("copy", &shown))?;
    let meta = || -> io::Result<()> {
        sys::fchown(dst.as_fd(), st.st_uid, st.st_gid)?;
        sys::fchmod(dst.as_fd(), st.st_mode & 0o7777)?;
        sys::futimens(dst.as_fd(), st.st_mtime, st.st_mtime_nsec as i64)
    };
    meta().map_err(io_at("copy", &shown))
}

/// `--chmod`: an octal mode, special bits allowed.
fn parse_chmod(s: &str) -> Result<u32, FileError> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 && !s.is_empty() => Ok(m),
        _ => Err(FileError::BadChmod(s.to_owned())),
    }
}

/// Reads a small regular file of an image (passwd, group) without following it into a FIFO
/// or device.
fn read_small(root: &ConfinedRoot, path: &str) -> Option<String> {
    let fd = root
        .open_at(
            &confined::clean(Path::new(path)),
            OFlags::RDONLY | OFlags::NONBLOCK,
        )
        .ok()??;
    let st = sys::fstat(fd.as_fd()).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let mut buf = Vec::new();
    sys::file_from(fd)
        .take(4 << 20)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Resolves `--chown` in the destination's passwd and group files.
fn owner(names: &ConfinedRoot, chown: Option<&Chown>) -> Result<Option<(u32, u32)>, FileError> {
    let Some(c) = chown else { return Ok(None) };
    let passwd = read_small(names, "/etc/passwd");
    let group = read_small(names, "/etc/group");
    user::resolve_owner(
        &c.user,
        c.group.as_deref(),
        passwd.as_deref(),
        group.as_deref(),
    )
    .map(Some)
    .map_err(FileError::Chown)
}

/// Creates `name` in `dir` with `contents`, replacing what was there.
fn write_file(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &OsStr,
    contents: &mut dyn Read,
    mode: u32,
    (uid, gid): (u32, u32),
    mtime: Option<i64>,
) -> io::Result<()> {
    clear_entry(dir, name, Replace::EmptyDir)?;
    let fd = confined::open_no_symlinks(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
        0o600,
    )?;
    let mut f = sys::file_from(fd);
    io::copy(contents, &mut f)?;
    sys::fchown(f.as_fd(), uid, gid)?;
    sys::fchmod(f.as_fd(), mode)?;
    if let Some(t) = mtime {
        sys::futimens(f.as_fd(), t, 0)?;
    }
    Ok(())
}

struct CopySpec<'a> {
    dest: &'a str,
    dest_is_dir: bool,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    parents: bool,
    /// `--exclude` patterns.
    excludes: &'a [String],
    unpack: bool,
}

/// What a COPY copies of a directory source: exactly the entries the resolver listed below
/// it (`keep`, paths relative to the directory), so the copy writes what the key covers.
/// `None`: nothing can have been left out (no `--exclude`, no ignore file), so everything is
/// copied without a set of every path (5 MB at 100,000 files).
fn copy_filter(keep: Option<HashSet<String>>) -> copy::FilterFn {
    match keep {
        Some(keep) => Rc::new(move |rel: &str| keep.contains(rel)),
        None => copy::copy_everything(),
    }
}

/// One entry a source names or matches, with what the resolver lists below it.
struct Match {
    /// Its path as the COPY names it, cleaned (a followed symlink is opened through it).
    comps: Vec<OsString>,
    /// Where it lands below the destination with `--parents`.
    dest: String,
    /// Below a directory: the paths (relative to it) to copy; `None` for all of them.
    keep: Option<HashSet<String>>,
}

/// The sources of one COPY as [`resolver::resolve`] lists them (the list the cache key
/// covers), grouped by the entry each source names or matches.
fn expand(src: &Src, sources: &[String], spec: &CopySpec<'_>) -> Result<Vec<Match>, FileError> {
    let tree = source::Dir {
        root: &src.root,
        ignore: src.exclude.as_ref(),
    };
    // The resolver leaves entries out only for an exclude pattern or the ignore file: without
    // either, each directory source is copied whole and its entries need not be listed.
    let everything = spec.excludes.is_empty() && src.exclude.is_none();
    let req = resolver::Request {
        sources,
        excludes: spec.excludes,
        follow_links: true,
        parents: spec.parents,
        below: !everything,
    };
    let entries = resolver::resolve(&tree, &req).map_err(|e| match e {
        ResolveError::NotFound { path } => FileError::NotFound {
            path,
            source_name: src.name.to_owned(),
        },
        ResolveError::Loop { path } => FileError::Io {
            what: "resolve",
            path: PathBuf::from(format!("/{path}")),
            source: io::Error::from_raw_os_error(libc::ELOOP),
        },
        ResolveError::BadPattern { pattern } => FileError::Pattern(pattern::BadPattern { pattern }),
        ResolveError::BadExclude { pattern, source } => FileError::BadExclude { pattern, source },
        ResolveError::Tree(e) => FileError::Io {
            what: "read",
            path: PathBuf::from(src.name),
            source: e,
        },
    })?;
    let mut out: Vec<Match> = Vec::new();
    let mut top = String::new();
    for e in entries {
        if e.source {
            top.clone_from(&e.path);
            out.push(Match {
                comps: confined::clean(Path::new(&e.path)),
                dest: e.dest().to_owned(),
                keep: (!everything).then(HashSet::new),
            });
            continue;
        }
        if everything {
            continue;
        }
        let rel = if top.is_empty() {
            e.path
        } else {
            e.path
                .strip_prefix(&top)
                .map(|r| r.trim_start_matches('/').to_owned())
                .unwrap_or(e.path)
        };
        if let Some(keep) = out.last_mut().and_then(|m| m.keep.as_mut()) {
            keep.insert(rel);
        }
    }
    Ok(out)
}

/// Copies `sources` from `src` into `dest` as `spec` says; what is made is added to
/// `written` (dropped where it cannot be told: an archive unpacked, a destination not named
/// by its path).
fn copy_sources(
    dest: &ConfinedRoot,
    src: &Src,
    sources: &[String],
    spec: &CopySpec<'_>,
    limit: u64,
    incremental: Option<&Incremental>,
    written: &mut Option<Written>,
) -> Result<Counts, FileError> {
    let matches = expand(src, sources, spec)?;
    let dest_comps = confined::clean(Path::new(spec.dest));
    let dest_is_dir = spec.dest_is_dir || matches.len() > 1 || spec.parents;
    if sources.len() > 1 && !spec.dest_is_dir {
        return Err(FileError::DestNotDir(spec.dest.to_owned()));
    }
    let dir_opts = DirOpts {
        mode: 0o755,
        owner: spec.owner,
    };
    let mut counts = Counts {
        written: written.take(),
        ..Counts::default()
    };
    let mut links = Links::default();
    for m in matches {
        let shown = format!("/{}", confined::join(&m.comps).display());
        let fd = src
            .root
            .open_at(&m.comps, OFlags::PATH)
            .map_err(io_at("open", &shown))?
            .ok_or_else(|| FileError::NotFound {
                path: shown.clone(),
                source_name: src.name.to_owned(),
            })?;
        let st = sys::fstat(fd.as_fd()).map_err(io_at("read", &shown))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let base_name = m
            .comps
            .last()
            .cloned()
            .unwrap_or_else(|| OsString::from("."));
        // Where the entry goes.
        let mut target = dest_comps.clone();
        if spec.parents {
            target.extend(confined::clean(Path::new(&m.dest)));
        }
        let src_rel = confined::join(&m.comps).to_string_lossy().into_owned();
        let opts = CopyOpts {
            owner: spec.owner,
            reset_owner: src.context,
            mode: spec.mode,
            filter: copy_filter(m.keep),
            reuse: incremental.filter(|_| src.context).map(|i| Reuse {
                changed: i.changed.clone(),
                cloned: i.cloned.clone(),
                prefix: src_rel.clone(),
            }),
            record_at: None,
        };
        let mut created = Vec::new();
        if is_dir {
            let dst = dest
                .mkdir_all(&target, dir_opts, &mut created)
                .map_err(io_at("create directory", spec.dest))?;
            let opts = CopyOpts {
                record_at: record_at(dest, &target, dst.as_fd(), &mut counts, incremental),
                ..opts
            };
            let sdir = src
                .root
                .open_at(&m.comps, OFlags::DIRECTORY | OFlags::RDONLY)
                .map_err(io_at("open", &shown))?;
            let Some(sdir) = sdir else { continue };
            copy::copy_dir_contents(
                &sdir,
                &Arc::new(dst),
                &opts,
                &mut links,
                &mut counts,
                Path::new(&shown),
            )
            .map_err(io_at("copy", &shown))?;
            continue;
        }
        // A file: into the destination directory, or as the destination itself. It is never
        // matched against `--exclude`: only what is below a directory source is (BuildKit's
        // copier; moby/buildkit#5489).
        let into_dir = dest_is_dir
            || spec.parents
            || dest
                .stat(&target)
                .map_err(io_at("resolve", spec.dest))?
                .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if into_dir && !spec.parents {
            target.push(base_name.clone());
        }
        if spec.unpack && st.st_mode & libc::S_IFMT == libc::S_IFREG {
            let file = sys::file_from(
                src.root
                    .open_at(&m.comps, OFlags::RDONLY | OFlags::NONBLOCK)
                    .map_err(io_at("open", &shown))?
                    .ok_or_else(|| FileError::NotFound {
                        path: shown.clone(),
                        source_name: src.name.to_owned(),
                    })?,
            );
            if let Some(c) = archive::detect(&file).map_err(io_at("read", &shown))? {
                // An archive is unpacked into the destination directory itself.
                let mut into = dest_comps.clone();
                if spec.parents {
                    into = target.clone();
                    into.pop();
                }
                let opts = ExtractOptions::add(into, spec.owner, limit);
                // What an archive makes is not told.
                counts.written = None;
                let done = archive::extract(&file, c, dest, &opts).map_err(|source| {
                    FileError::Archive {
                        path: shown.clone(),
                        source,
                    }
                })?;
                counts.entries += done.entries;
                counts.bytes += done.bytes;
                continue;
            }
        }
        let (dir, name) = dest
            .parent_of(&target, dir_opts, &mut created)
            .map_err(io_at("create", spec.dest))?;
        let opts = CopyOpts {
            record_at: record_at(
                dest,
                &target[..target.len().saturating_sub(1)],
                dir.as_fd(),
                &mut counts,
                incremental,
            ),
            ..opts
        };
        let dir = Arc::new(dir);
        // Copy the (followed) source entry: open its parent to copy by name.
        let parent_comps = &m.comps[..m.comps.len().saturating_sub(1)];
        let sparent = src
            .root
            .open_at(parent_comps, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(io_at("open", &shown))?
            .ok_or_else(|| FileError::NotFound {
                path: shown.clone(),
                source_name: src.name.to_owned(),
            })?;
        let (sdir_fd, sname): (OwnedFd, OsString) =
            real_leaf(&src.root, &m.comps, &fd).unwrap_or((sparent, base_name));
        copy::copy_entry(
            sdir_fd.as_fd(),
            &sname,
            &st,
            &dir,
            name,
            &opts,
            &mut links,
            &mut counts,
            Path::new(&shown),
        )
        .map_err(io_at("copy", &shown))?;
    }
    *written = counts.written.take();
    Ok(counts)
}

/// The path in the layer of the destination directory `dir`, opened at `comps`, when what
/// is copied into it is recorded or checked against an incremental COPY's clone: `comps`
/// itself when it names `dir` without a symlink on the way. Else (a symlink followed: the
/// entries are elsewhere) the record is dropped, and so is the clone's account (the copy
/// writes where no path of it says, so the filesystem is asked from then on). The
/// directories on the way are recorded as asked of the filesystem.
fn record_at(
    dest: &ConfinedRoot,
    comps: &[OsString],
    dir: std::os::fd::BorrowedFd<'_>,
    counts: &mut Counts,
    incremental: Option<&Incremental>,
) -> Option<Arc<[u8]>> {
    let cloned = incremental.filter(|i| i.cloned.borrow().is_some());
    if counts.written.is_none() && cloned.is_none() {
        return None;
    }
    let mut path: Arc<[u8]> = Arc::from(&b""[..]);
    for c in comps {
        if let Some(w) = counts.written.as_mut() {
            w.add(&path, c.as_bytes(), None);
        }
        path = written::child(&path, c.as_bytes());
    }
    let same = || -> io::Result<bool> {
        let named = confined::open_no_symlinks(
            dest.fd(),
            OsStr::from_bytes(&path),
            OFlags::PATH | OFlags::DIRECTORY,
            0,
        )?;
        let (a, b) = (sys::fstat(named.as_fd())?, sys::fstat(dir)?);
        Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
    };
    if same().unwrap_or(false) {
        Some(path)
    } else {
        counts.written = None;
        if let Some(i) = cloned {
            i.cloned.borrow_mut().take();
        }
        None
    }
}

/// When the source's last component is a symlink (followed inside the source root), the
/// directory and name of what it points to.
fn real_leaf(
    root: &ConfinedRoot,
    comps: &[OsString],
    target: &OwnedFd,
) -> Option<(OwnedFd, OsString)> {
    let (name, parent) = comps.split_last()?;
    let pfd = root
        .open_at(parent, OFlags::DIRECTORY | OFlags::RDONLY)
        .ok()??;
    let st = sys::lstat_at(pfd.as_fd(), Path::new(name)).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return None;
    }
    let real = real_rel(root, target)?;
    let (rname, rparent) = real.split_last()?;
    let rp = root
        .open_at(rparent, OFlags::DIRECTORY | OFlags::RDONLY)
        .ok()??;
    Some((rp, rname.clone()))
}

/// The path of `fd` relative to `root`, from /proc/self/fd (only for our own trusted
/// directories: the context and mounted layers).
fn real_rel(root: &ConfinedRoot, fd: &OwnedFd) -> Option<Vec<OsString>> {
    let real = fs_err::read_link(sys::fd_path(fd.as_fd())).ok()?;
    let base = fs_err::read_link(sys::fd_path(root.fd())).ok()?;
    let rel = real.strip_prefix(&base).ok()?;
    Some(rel.components().map(|c| c.as_os_str().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_is_octal_with_special_bits() {
        assert_eq!(parse_chmod("0755").unwrap(), 0o755);
        assert_eq!(parse_chmod("4755").unwrap(), 0o4755);
        assert_eq!(parse_chmod("600").unwrap(), 0o600);
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("99").is_err());
        assert!(parse_chmod("17777").is_err());
    }
}
