//! Mount points for `RUN --mount` targets that the image does not have. They are created in
//! the sandbox's root (so in the new layer) and removed again when the command has ended,
//! re-resolved without following any symlink: a command that swaps a stub's parent for a
//! link cannot make the cleanup delete something else (CVE-2024-23652).

use crate::sys;
use nix::fcntl::OFlag;
use rustix::fs::OFlags;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use strata_store::confined::{self, ConfinedRoot, DirOpts};

/// Creates `path` (a directory, or an empty file when `dir` is false) and its missing
/// parents; returns the paths it created, outermost first.
pub(crate) fn create(path: &Path, dir: bool) -> io::Result<Vec<(String, bool)>> {
    let root = ConfinedRoot::open(Path::new("/"))?;
    let comps = confined::clean(path);
    let mut created: Vec<PathBuf> = Vec::new();
    let mut file = None;
    if root.stat(&comps)?.is_none() {
        if dir {
            root.mkdir_all(&comps, DirOpts::DEFAULT, &mut created)?;
        } else {
            let (parent, name) = root.parent_of(&comps, DirOpts::DEFAULT, &mut created)?;
            let fd = confined::open_no_symlinks(
                parent.as_fd(),
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o644,
            )?;
            drop(fd);
            file = Some(Path::new("/").join(confined::join(&comps)));
        }
    }
    let name = |p: PathBuf| p.to_string_lossy().into_owned();
    let mut out: Vec<(String, bool)> = created.into_iter().map(|p| (name(p), true)).collect();
    out.extend(file.map(|p| (name(p), false)));
    Ok(out)
}

/// Unmounts the `targets` and removes the `stubs` (innermost first), only where they are
/// still what was created: an empty directory or file reached without a symlink.
pub(crate) fn remove(targets: &[String], stubs: &[(String, bool)]) {
    for t in targets.iter().rev() {
        let _ = sys::unmount(Path::new(t));
    }
    let Ok(rootfd) = sys::open_dir(Path::new("/")) else {
        return;
    };
    for (path, dir) in stubs.iter().rev() {
        let comps = confined::clean(Path::new(path));
        let Some((name, parent)) = comps.split_last() else {
            continue;
        };
        let Ok(pfd) = sys::open_no_symlinks(
            rootfd.as_fd(),
            &confined::join(parent),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        ) else {
            continue;
        };
        match sys::lstat_at(pfd.as_fd(), Path::new(name)) {
            Ok(st) if *dir && st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                let _ = sys::unlink_at(pfd.as_fd(), Path::new(name), true);
            }
            Ok(st) if !*dir && st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0 => {
                let _ = sys::unlink_at(pfd.as_fd(), Path::new(name), false);
            }
            _ => {}
        }
    }
}
