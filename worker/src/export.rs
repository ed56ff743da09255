//! The final filesystem of a build as one tar (`--output type=tar` and `type=local`).
//!
//! The layers are merged by the kernel: a read-only overlay of the layer directories, detached
//! (never attached to a path, so no one else sees it and nothing is left mounted if strata
//! dies), walked like a layer through its descriptor. Whiteouts never show in a merged view, so the tar holds exactly
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
            // A detached overlay: in no mount namespace, dissolved when `mount` is dropped
            // (or strata dies), walked through its descriptor.
            let lowers: Vec<&Path> = many.iter().map(PathBuf::as_path).collect();
            let attrs = MountAttrs {
                readonly: true,
                nodev: true,
                ..MountAttrs::NONE
            };
            let mount =
                sys::overlay_mount(&lowers, None, false, attrs).map_err(ExportError::Mount)?;
            let result = write_layer(&sys::fd_path(mount.as_fd()), out, opts);
            drop(mount);
            Ok(result?)
        }
    }
}
