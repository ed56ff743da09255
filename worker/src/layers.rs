//! The overlayfs layer format on disk: a whiteout is a 0/0 character device, an opaque
//! directory carries `trusted.overlay.opaque=y` (`user.overlay.opaque=y` rootless, see
//! [`opaque_xattr`]).

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use strata_store::confined::opaque_xattr;

pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, opaque_xattr()), Ok(Some(v)) if v == b"y")
}
