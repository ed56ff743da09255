//! The final filesystem of a build as one tar (`--output type=tar` and `type=local`).
//!
//! The layers are merged by the kernel: a read-only overlay of the layer directories, mounted
//! in a private mount namespace of a short-lived thread (so nothing is left mounted if strata
//! dies), walked like a layer. Whiteouts never show in a merged view, so the tar holds exactly
//! the files a container would see.

use crate::diff::{DiffError, DiffOptions, DiffStats, write_layer};
use crate::sys::{self, MountAttrs};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Why the filesystem could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Mounting the merged view failed.
    #[error("failed to mount the image's layers for export")]
    Mount(#[source] io::Error),
    /// Walking the merged view or writing the tar failed.
    #[error(transparent)]
    Write(#[from] DiffError),
}

/// Writes the merged filesystem of `lowers` (layer directories, top first) to `out` as a tar.
/// `scratch` is a directory where a temporary mount point can be made. Blocking.
pub fn export_rootfs(
    lowers: &[PathBuf],
    scratch: &Path,
    out: impl Write + Send,
    opts: &DiffOptions,
) -> Result<DiffStats, ExportError> {
    match lowers {
        [] => {
            let empty = tempfile::tempdir_in(scratch).map_err(ExportError::Mount)?;
            Ok(write_layer(empty.path(), out, opts)?)
        }
        // One layer is its own merged view (overlay wants two lowers without an upper).
        [one] => Ok(write_layer(one, out, opts)?),
        many => {
            let target = tempfile::tempdir_in(scratch).map_err(ExportError::Mount)?;
            let path = target.path().to_owned();
            std::thread::scope(|s| {
                s.spawn(|| {
                    sys::unshare_mount_namespace().map_err(ExportError::Mount)?;
                    let lowers: Vec<&Path> = many.iter().map(PathBuf::as_path).collect();
                    let fd = sys::overlay_mount(
                        &lowers,
                        None,
                        MountAttrs {
                            readonly: true,
                            nodev: true,
                            ..MountAttrs::NONE
                        },
                    )
                    .map_err(ExportError::Mount)?;
                    sys::attach_mount(fd.as_fd(), &path).map_err(ExportError::Mount)?;
                    let result = write_layer(&path, out, opts);
                    let _ = sys::unmount(&path);
                    Ok(result?)
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(ExportError::Mount(io::Error::other(
                        "the export thread panicked",
                    )))
                })
            })
        }
    }
}
