//! Who may write to a store, checked once when it is opened for writing, before anything is
//! created, cleaned or locked there: a store that cannot be written (a read-only filesystem, a
//! root directory without write permission) fails at once with its path and the reason,
//! instead of halfway through a build; and a store whose root belongs to another user is
//! refused, because what this process writes there would belong to it (as root: files in a
//! user's store that the user cannot remove).

use crate::error::StoreError;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Fails with [`StoreError::NotWritable`] when this process may not create files in `root`
/// (an existing directory): `Read-only file system` (a read-only mount or bind mount) or
/// `Permission denied`. `access(2)` answers for the real uid and gid, as [`check_owner`].
pub(crate) fn check_writable(root: &Path) -> Result<(), StoreError> {
    rustix::fs::access(
        root,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| StoreError::NotWritable {
        root: root.to_owned(),
        source: io::Error::from(e),
    })
}

/// Fails with [`StoreError::ForeignOwner`] when `root` (an existing directory) is not owned by
/// `uid`, which is the real uid this process runs as (`getuid()`, not the effective uid):
/// the user the files it writes are for. In a user namespace (rootless strata), that is the
/// namespace's uid, and the store's owner as the namespace maps it: the real user's store is
/// owned by the namespace's root, so the comparison holds there as it does outside.
pub(crate) fn check_owner(root: &Path, uid: u32) -> Result<(), StoreError> {
    let owner = fs_err::metadata(root)
        .map_err(StoreError::io("inspect", root))?
        .uid();
    if owner == uid {
        return Ok(());
    }
    Err(StoreError::ForeignOwner {
        root: root.to_owned(),
        owner,
        uid,
    })
}

/// The real uid of this process, for [`check_owner`].
pub(crate) fn real_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_owner_is_refused_with_both_uids_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let me = real_uid();
        check_owner(dir.path(), me).unwrap();
        let err = check_owner(dir.path(), me + 1).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "the store at {} is owned by uid {me}, not by uid {} that strata runs as",
                dir.path().display(),
                me + 1
            )
        );
    }

    #[test]
    fn a_writable_directory_passes_and_a_missing_one_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(dir.path()).unwrap();
        let missing = dir.path().join("missing");
        let err = check_writable(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot write to the store at {}", missing.display())
        );
    }
}
