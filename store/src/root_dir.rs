//! A directory that untrusted paths are resolved inside of, chroot-style: every lookup walks
//! one component at a time from an open directory fd with `O_NOFOLLOW`, a symlink met on the
//! way is read and resolved *inside* the root (an absolute target restarts at the root, `..`
//! stops at it), and the last component is never followed. No path is ever joined as a string
//! and opened, so no symlink or hardlink in an archive can make us touch anything outside the
//! root, and a link swapped in between two of our steps cannot either (we only go through fds).

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Symlinks followed in one lookup before giving up with ELOOP (Linux's limit).
const MAX_LINKS: usize = 40;

/// An open directory that paths are confined to.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
}

/// A directory fd and a name in it: where an entry goes. The name is one component.
pub(crate) struct Slot {
    pub(crate) dir: OwnedFd,
    pub(crate) name: OsString,
}

impl RootDir {
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir { fd })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Resolves the directory `components` name inside the root, following symlinks inside
    /// the root and, with `create`, making missing directories (mode 0755).
    pub(crate) fn dir(&self, components: &[&OsStr], create: bool) -> io::Result<OwnedFd> {
        // Only the current directory is held open (a 2000-level path must not need 2000 fds);
        // `depth` counts how far below the root it is, so `..` can stop at the root. Going
        // up through the real `..` is safe: we only ever went down through real directories
        // (O_NOFOLLOW), in a tree no one else writes to.
        let mut cur = dup_dir(&self.fd)?;
        let mut depth = 0usize;
        let mut todo: VecDeque<OsString> = components.iter().map(|c| c.to_os_string()).collect();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            let bytes = c.as_bytes();
            if bytes.is_empty() || bytes == b"." {
                continue;
            }
            if bytes == b".." {
                if depth > 0 {
                    cur = open_dir_at(&cur, OsStr::new(".."))?;
                    depth -= 1;
                }
                continue;
            }
            match rustix::fs::statat(&cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        cur = open_dir_at(&cur, &c)?;
                        depth += 1;
                    }
                    FileType::Symlink => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(Errno::LOOP.into());
                        }
                        let target = rustix::fs::readlinkat(&cur, c.as_os_str(), Vec::new())?;
                        let target = target.as_bytes();
                        if target.starts_with(b"/") {
                            cur = dup_dir(&self.fd)?;
                            depth = 0;
                        }
                        for part in target.split(|b| *b == b'/').rev() {
                            todo.push_front(OsStr::from_bytes(part).to_os_string());
                        }
                    }
                    _ => return Err(Errno::NOTDIR.into()),
                },
                Err(Errno::NOENT) if create => {
                    let made = match rustix::fs::mkdirat(
                        &cur,
                        c.as_os_str(),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(e.into()),
                    };
                    cur = open_dir_at(&cur, &c)?;
                    if made {
                        // Whatever the process umask: an implicit parent is 0755, as docker
                        // creates it.
                        rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o755))?;
                    }
                    depth += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }

    /// The parent directory of `components` (created as needed) and the last component.
    /// `None` for the root itself.
    pub(crate) fn slot(&self, components: &[&OsStr], create: bool) -> io::Result<Option<Slot>> {
        let Some((name, parents)) = components.split_last() else {
            return Ok(None);
        };
        let dir = self.dir(parents, create)?;
        Ok(Some(Slot {
            dir,
            name: name.to_os_string(),
        }))
    }
}

impl Slot {
    /// The type of what is at the slot now, without following a symlink.
    pub(crate) fn file_type(&self) -> io::Result<Option<FileType>> {
        match rustix::fs::statat(&self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes whatever is at the slot (a whole tree for a directory); never follows links.
    pub(crate) fn clear(&self) -> io::Result<()> {
        match self.file_type()? {
            None => Ok(()),
            Some(FileType::Directory) => remove_tree_at(&self.dir, &self.name),
            Some(_) => Ok(rustix::fs::unlinkat(
                &self.dir,
                self.name.as_os_str(),
                AtFlags::empty(),
            )?),
        }
    }
}

fn dup_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a directory entry that must be a real directory (not a symlink to one).
pub(crate) fn open_dir_at(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes the directory `name` in `dir` and everything in it, through fds only.
fn remove_tree_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let fd = open_dir_at(dir, name)?;
    let mut children = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = OsStr::from_bytes(n).to_os_string();
        let is_dir = match entry.file_type() {
            FileType::Unknown => {
                let st = rustix::fs::statat(&fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(st.st_mode) == FileType::Directory
            }
            t => t == FileType::Directory,
        };
        children.push((name, is_dir));
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree_at(&fd, &child)?;
        } else {
            rustix::fs::unlinkat(&fd, child.as_os_str(), AtFlags::empty())?;
        }
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}
