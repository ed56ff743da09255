//! `strata cp`: copying between a container's root filesystem and the host, or a tar stream,
//! with docker's rules for the paths.
//!
//! Each side is a [`CpRoot`]: a directory every path is resolved in as if it were `/`
//! (`strata_store::confined`), so a symlink in a container pointing at `/` or `../..` leads
//! back to the container's root, never to the host's. A running container's root is its
//! process's (`/proc/PID/root`: the container's own overlay, so a write lands in its
//! writable layer as the container would make it); a stopped one's is a detached overlay of
//! its writable layer over its image's (read-only to read from it; with a work directory
//! beside the layer to write to it). The host's is `/`. Entries are copied with the COPY
//! instruction's code (`copy.rs`: never through a link, owner before mode), a tar out is
//! the layer writer's walk, a tar in is the confined extractor.
//!
//! docker's rules: a source ending in `/.` copies the directory's contents, else the
//! directory itself; a source ending in `/` must be a directory. A directory goes into an
//! existing destination directory (under its own name) or becomes a new one; onto a file it
//! is an error. A file goes into an existing directory, over an existing file, or to a new
//! file; a destination ending in `/` must then be an existing directory. The parent of a new
//! destination must exist. `follow` (`-L`) follows a symlink that the source names; without
//! it the link itself is copied.

use crate::copy::{self, CopyOpts, Counts, Links};
use crate::diff::{DiffError, DiffOptions, write_entry, write_layer};
use crate::fileop::{FileError, mount_layers};
use crate::sys;
use rustix::fs::OFlags;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use strata_store::confined::{self, ConfinedRoot, ExtractError, ExtractOptions, Extracted};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The source does not exist.
    #[error("could not find the file {0}")]
    NotFound(String),
    /// A path given as a directory (ending in `/` or `/.`) is not one.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// A directory onto a file.
    #[error("cannot copy a directory to a file: {0}")]
    DirectoryToFile(String),
    /// The destination's parent directory is missing.
    #[error("destination directory {0} does not exist")]
    NoDestination(String),
    /// More symlinks than Linux follows in one lookup.
    #[error("too many levels of symbolic links: {0}")]
    Loop(String),
    /// Mounting the container's layers failed.
    #[error("failed to mount the container's layers")]
    Mount(#[source] FileError),
    /// Opening the root failed.
    #[error("failed to open {}", path.display())]
    Root {
        /// The root's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading or writing an entry failed.
    #[error("failed to copy {0}")]
    Io(String, #[source] io::Error),
    /// Writing the tar stream failed.
    #[error(transparent)]
    Tar(#[from] DiffError),
    /// Unpacking the tar stream failed.
    #[error("failed to unpack the tar stream into {dest}")]
    Extract {
        /// The destination directory.
        dest: String,
        /// Why.
        #[source]
        source: ExtractError,
    },
}

/// One side of a copy: the root paths are resolved in. Dropping it unmounts what it mounted
/// and deletes its work directory.
#[derive(Debug)]
pub struct CpRoot {
    root: ConfinedRoot,
    // After `root`: the mount goes before its work directory is deleted.
    _work: Option<tempfile::TempDir>,
}

impl CpRoot {
    /// The host's `/`.
    pub fn host() -> Result<CpRoot, CpError> {
        CpRoot::open(Path::new("/"))
    }

    /// A running container's root: that of its process `pid` (as the host sees it).
    pub fn of_process(pid: u32) -> Result<CpRoot, CpError> {
        CpRoot::open(&PathBuf::from(format!("/proc/{pid}/root")))
    }

    fn open(path: &Path) -> Result<CpRoot, CpError> {
        let root = ConfinedRoot::open(path).map_err(|source| CpError::Root {
            path: path.to_owned(),
            source,
        })?;
        Ok(CpRoot { root, _work: None })
    }

    /// A stopped container's root: its writable layer `upper` over its image's layer
    /// directories `lowers` (top first). With `work_in` (a directory on `upper`'s filesystem
    /// where a work directory is made and deleted after) writes go into `upper`; without, the
    /// root is read-only. No other mount of `upper` may be writing meanwhile.
    pub fn of_layers(
        upper: &Path,
        lowers: &[PathBuf],
        work_in: Option<&Path>,
    ) -> Result<CpRoot, CpError> {
        match work_in {
            _ if lowers.is_empty() => CpRoot::open(upper),
            None => {
                let mut all = vec![upper.to_owned()];
                all.extend(lowers.iter().cloned());
                let root = mount_layers(&all, None).map_err(CpError::Mount)?;
                Ok(CpRoot { root, _work: None })
            }
            Some(dir) => {
                let work = tempfile::Builder::new()
                    .prefix(".strata-cp-")
                    .tempdir_in(dir)
                    .map_err(|source| CpError::Root {
                        path: dir.to_owned(),
                        source,
                    })?;
                let root =
                    mount_layers(lowers, Some((upper, work.path()))).map_err(CpError::Mount)?;
                Ok(CpRoot {
                    root,
                    _work: Some(work),
                })
            }
        }
    }
}

/// How entries get their owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpOptions {
    /// `-L`: follow a symlink the source path names.
    pub follow: bool,
    /// The owner of every entry made (`None`: the source's, docker's `-a`).
    pub owner: Option<(u32, u32)>,
}

/// The effective user and group of this process: who owns what a copy to the host makes, as
/// docker's client does.
pub fn own_ids() -> (u32, u32) {
    sys::effective_ids()
}

/// What the copy read: the entry (its parent directory and name in it), its metadata, and
/// whether its contents (a trailing `/.`) rather than itself are meant.
struct Source {
    parent: Rc<OwnedFd>,
    name: OsString,
    st: libc::stat,
    contents: bool,
}

impl Source {
    fn is_dir(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    fn open_dir(&self, shown: &str) -> Result<OwnedFd, CpError> {
        confined::open_no_symlinks(
            self.parent.as_fd(),
            &self.name,
            OFlags::DIRECTORY | OFlags::RDONLY,
            0,
        )
        .map_err(|e| CpError::Io(shown.to_owned(), e))
    }
}

/// Whether `path` names a directory's contents (`dir/.`) or must be a directory (`dir/`).
fn trailing(path: &str) -> (bool, bool) {
    let contents = path == "." || path.ends_with("/.");
    (contents, contents || path.ends_with('/'))
}

fn resolve_source(root: &CpRoot, path: &str, follow: bool) -> Result<Source, CpError> {
    let io_err = |e| CpError::Io(path.to_owned(), e);
    let (contents, must_be_dir) = trailing(path);
    let mut comps = confined::clean(Path::new(path));
    for _ in 0..confined::MAX_SYMLINKS {
        let Some((name, parent)) = comps.split_last() else {
            // The root itself: its contents.
            let fd = root
                .root
                .open_path(b".", OFlags::DIRECTORY | OFlags::RDONLY)
                .map_err(io_err)?;
            let st = sys::lstat_at(fd.as_fd(), Path::new(".")).map_err(io_err)?;
            return Ok(Source {
                parent: Rc::new(fd),
                name: ".".into(),
                st,
                contents: true,
            });
        };
        let dir = match root
            .root
            .open_at(parent, OFlags::DIRECTORY | OFlags::RDONLY)
        {
            Ok(Some(d)) => d,
            Ok(None) => return Err(CpError::NotFound(path.to_owned())),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(CpError::NotFound(path.to_owned()));
            }
            Err(e) => return Err(io_err(e)),
        };
        let st = match sys::lstat_at(dir.as_fd(), Path::new(name)) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CpError::NotFound(path.to_owned()));
            }
            Err(e) => return Err(io_err(e)),
        };
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFLNK && (follow || must_be_dir) {
            let target = sys::readlink_at(dir.as_fd(), Path::new(name)).map_err(io_err)?;
            let target = Path::new(&target);
            comps = if target.is_absolute() {
                confined::clean(target)
            } else {
                confined::clean(&confined::join(parent).join(target))
            };
            continue;
        }
        if must_be_dir && kind != libc::S_IFDIR {
            return Err(CpError::NotADirectory(path.to_owned()));
        }
        return Ok(Source {
            parent: Rc::new(dir),
            name: name.clone(),
            st,
            contents,
        });
    }
    Err(CpError::Loop(path.to_owned()))
}

/// Copies `src_path` in `src` to `dst_path` in `dst` by docker's rules (see the module).
/// Returns the number of entries copied.
pub fn copy_path(
    src: &CpRoot,
    src_path: &str,
    dst: &CpRoot,
    dst_path: &str,
    opts: &CpOptions,
) -> Result<u64, CpError> {
    let s = resolve_source(src, src_path, opts.follow)?;
    let dst_err = |e| CpError::Io(dst_path.to_owned(), e);
    let (_, dst_must_be_dir) = trailing(dst_path);
    let dcomps = confined::clean(Path::new(dst_path));
    let dst_st = dst.root.stat(&dcomps).map_err(dst_err)?;
    let dst_is_dir = dst_st
        .as_ref()
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
    let copy_opts = CopyOpts {
        owner: opts.owner,
        reset_owner: false,
        mode: None,
        filter: copy::copy_everything(),
        reuse: None,
        record_at: None,
    };
    let mut links = Links::default();
    let mut counts = Counts::default();
    let shown = PathBuf::from(src_path);
    // Where the entry goes: (directory, name), or the contents into a directory.
    let into_dir = |comps: &[OsString]| -> Result<Arc<OwnedFd>, CpError> {
        let fd = dst
            .root
            .open_at(comps, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(dst_err)?
            .ok_or_else(|| CpError::NoDestination(dst_path.to_owned()))?;
        Ok(Arc::new(fd))
    };
    let new_entry = || -> Result<(Arc<OwnedFd>, OsString), CpError> {
        match dst.root.slot(&dcomps, None) {
            Ok(Some(slot)) => Ok((Arc::new(slot.dir), slot.name)),
            // The root itself always exists: not a new entry.
            Ok(None) => Err(CpError::NoDestination(dst_path.to_owned())),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err(CpError::NoDestination(parent_of(dst_path)))
            }
            Err(e) => Err(dst_err(e)),
        }
    };
    let (dir, name) = match (s.is_dir(), dst_is_dir) {
        (true, Some(false)) => return Err(CpError::DirectoryToFile(dst_path.to_owned())),
        (true, Some(true)) if s.contents => {
            let from = s.open_dir(src_path)?;
            let to = into_dir(&dcomps)?;
            copy::copy_dir_contents(&from, &to, &copy_opts, &mut links, &mut counts, &shown)
                .map_err(|e| CpError::Io(src_path.to_owned(), e))?;
            return Ok(counts.entries);
        }
        (_, Some(true)) => (into_dir(&dcomps)?, s.name.clone()),
        (false, Some(false)) if dst_must_be_dir => {
            return Err(CpError::NotADirectory(dst_path.to_owned()));
        }
        (false, None) if dst_must_be_dir => {
            return Err(CpError::NoDestination(dst_path.to_owned()));
        }
        (_, _) => new_entry()?,
    };
    copy::copy_entry(
        s.parent.as_fd(),
        &s.name,
        &s.st,
        &dir,
        &name,
        &copy_opts,
        &mut links,
        &mut counts,
        &shown,
    )
    .map_err(|e| CpError::Io(src_path.to_owned(), e))?;
    Ok(counts.entries)
}

fn parent_of(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => trimmed[..i].to_owned(),
        None => ".".to_owned(),
    }
}

/// Writes `src_path` in `src` as a tar stream to `out` (`strata cp CONTAINER:PATH -`): the
/// entry under its own name, or a directory's contents for `dir/.`.
pub fn tar_path(
    src: &CpRoot,
    src_path: &str,
    follow: bool,
    out: impl Write,
) -> Result<(), CpError> {
    let s = resolve_source(src, src_path, follow)?;
    let opts = DiffOptions::default();
    if s.contents {
        let dir = s.open_dir(src_path)?;
        write_layer(&sys::fd_path(dir.as_fd()), out, &opts)?;
    } else {
        write_entry(
            &sys::fd_path(s.parent.as_fd()),
            OsStr::from_bytes(s.name.as_bytes()),
            out,
            &opts,
        )?;
    }
    Ok(())
}

/// Unpacks the tar stream `input` into the existing directory `dst_path` in `dst` (`strata
/// cp - CONTAINER:PATH`), with the confined extractor's rules for an archive (names cleaned
/// below the destination, no whiteouts); `owner` for every entry, or the archive's.
pub fn untar_into(
    dst: &CpRoot,
    dst_path: &str,
    input: impl Read,
    owner: Option<(u32, u32)>,
) -> Result<Extracted, CpError> {
    let comps = confined::clean(Path::new(dst_path));
    match dst.root.stat(&comps) {
        Ok(Some(st)) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {}
        Ok(Some(_)) => return Err(CpError::NotADirectory(dst_path.to_owned())),
        Ok(None) => return Err(CpError::NoDestination(dst_path.to_owned())),
        Err(e) => return Err(CpError::Io(dst_path.to_owned(), e)),
    }
    confined::extract(
        &dst.root,
        input,
        &ExtractOptions::add(comps, owner, u64::MAX),
    )
    .map_err(|source| CpError::Extract {
        dest: dst_path.to_owned(),
        source,
    })
}
