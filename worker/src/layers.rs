//! Reading a stack of layer directories (overlayfs format, top first) without mounting it:
//! enough to answer "what is at this short path" for the sandbox's stub layer.
//!
//! The stub layer is why a RUN leaves no `/proc`, `/dev`, `/sys` or `/etc/hosts` junk in its
//! layer: the mount points the sandbox needs and the image lacks are made in a small extra
//! lower layer of their own, on top of the image's, instead of in the new layer. A directory
//! the stub layer must contain (`/etc`) copies the image's owner, mode and mtime, so a file
//! created beside the stub copies up the image's `/etc`, not ours.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a path is in the merged view.
#[derive(Debug)]
pub(crate) enum Found {
    Missing,
    Dir(Metadata),
    /// A file, symlink, ... (or a path under one).
    Other,
}

pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

/// Looks `rel` (relative, already clean) up through `lowers`, top first.
pub(crate) fn lookup(lowers: &[PathBuf], rel: &Path) -> io::Result<Found> {
    let comps: Vec<_> = rel.components().collect();
    'layers: for layer in lowers {
        let mut p = layer.clone();
        let mut opaque = false;
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let meta = match fs_err::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if opaque {
                        return Ok(Found::Missing);
                    }
                    continue 'layers;
                }
                Err(e) => return Err(e),
            };
            if is_whiteout(&meta) {
                return Ok(Found::Missing);
            }
            let last = i + 1 == comps.len();
            if last {
                return Ok(if meta.is_dir() {
                    Found::Dir(meta)
                } else {
                    Found::Other
                });
            }
            if !meta.is_dir() {
                return Ok(Found::Other);
            }
            opaque |= is_opaque(&p);
        }
    }
    Ok(Found::Missing)
}

fn mirror_dir(path: &Path, like: Option<&Metadata>) -> io::Result<()> {
    fs_err::create_dir(path)?;
    let (mode, uid, gid) = like.map_or((0o755, 0, 0), |m| {
        (m.permissions().mode() & 0o7777, m.uid(), m.gid())
    });
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(m) = like {
        let mtime = filetime_of(m);
        let f = fs_err::File::open(path)?;
        f.file().set_modified(mtime)?;
    }
    Ok(())
}

fn filetime_of(m: &Metadata) -> std::time::SystemTime {
    m.modified().unwrap_or(std::time::UNIX_EPOCH)
}

/// Fills `stubs` (an empty directory) with the mount points the sandbox needs that the
/// layers lack: `/proc`, `/dev`, `/sys` and `/etc/{hosts,resolv.conf,hostname}`.
pub(crate) fn build_stubs(lowers: &[PathBuf], stubs: &Path) -> io::Result<()> {
    for dir in ["proc", "dev", "sys"] {
        if matches!(lookup(lowers, Path::new(dir))?, Found::Missing) {
            mirror_dir(&stubs.join(dir), None)?;
        }
    }
    let mut missing = Vec::new();
    for f in ["hosts", "resolv.conf", "hostname"] {
        if matches!(lookup(lowers, &Path::new("etc").join(f))?, Found::Missing) {
            missing.push(f);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    match lookup(lowers, Path::new("etc"))? {
        Found::Dir(meta) => mirror_dir(&stubs.join("etc"), Some(&meta))?,
        Found::Missing => mirror_dir(&stubs.join("etc"), None)?,
        // /etc is a symlink or a file: leave it; mounting onto it then fails clearly.
        Found::Other => return Ok(()),
    }
    for f in missing {
        let p = stubs.join("etc").join(f);
        fs_err::File::create(&p)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
