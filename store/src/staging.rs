//! Each open [`crate::Store`] that writes gets a private staging directory `<root>/tmp/<id>/`,
//! made when first needed (a no-op build makes none), where blobs and snapshots are written
//! before they are renamed into place (same filesystem, so the rename is atomic). Ownership is an exclusive flock on `<root>/tmp/<id>.lock`, held for the
//! life of the store handle: a process killed with SIGKILL loses its lock, and the next
//! `Store::open` deletes its leftovers without touching a live process's files.
//!
//! Order matters. The owner creates its lock file under a temporary name (`.new-<id>`), locks
//! it, renames it to `<id>.lock` and only then creates `<id>/`; the cleaner removes `<id>/`
//! first and the lock file last. So a visible `<id>.lock` is always locked by a live owner or
//! stale, and a directory without a lock file is always stale. The step from `.new-<id>` to a
//! locked `<id>.lock` is taken under an exclusive flock on `tmp/` itself, and so is the
//! removal of `.new-*` files: whoever holds that lock sees only the `.new-*` files of processes
//! killed in that step (found by the kill -9 torture test, which left them for an hour).

use crate::durable::sync_dir;
use crate::error::StoreError;
use crate::lock::FileLock;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A process-private directory under `<root>/tmp/`, deleted on drop or by the next opener.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: FileLock,
}

impl Staging {
    /// Cleans what dead processes left in `tmp` and creates our own staging dir.
    pub(crate) fn create(tmp: &Path) -> Result<Staging, StoreError> {
        clean_stale(tmp)?;
        let creating = FileLock::exclusive_on(
            fs_err::File::open(tmp).map_err(StoreError::io("open directory", tmp))?,
        )?;
        remove_pending(tmp)?;
        let pending = tempfile::Builder::new()
            .prefix(".new-")
            .tempfile_in(tmp)
            .map_err(StoreError::io("create a lock file in", tmp))?;
        let (file, pending_path) = pending.keep().map_err(|e| {
            StoreError::io("create a lock file in", tmp)(io::Error::other(e.to_string()))
        })?;
        let lock = FileLock::exclusive_on(fs_err::File::from_parts(file, &pending_path))?;
        let id = pending_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".new-"))
            .expect("tempfile names have our prefix")
            .to_owned();
        let lock_path = tmp.join(format!("{id}.lock"));
        fs_err::rename(&pending_path, &lock_path)
            .map_err(StoreError::io("rename lock file", &lock_path))?;
        drop(creating);
        let dir = tmp.join(&id);
        fs_err::create_dir(&dir).map_err(StoreError::io("create staging directory", &dir))?;
        Ok(Staging {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new empty directory inside the staging dir, mode 0755: it may become the root of a
    /// snapshot (the staging dir itself keeps others out).
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<PathBuf, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.dir)
            .map_err(StoreError::io("create a temp directory in", &self.dir))?
            .keep();
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(StoreError::io("set permissions of", &dir))?;
        Ok(dir)
    }

    /// A new temp file inside the staging dir, deleted on drop unless persisted.
    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.dir)
            .map_err(StoreError::io("create a temp file in", &self.dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: whatever stays is removed by the next opener once our lock is gone.
        let _ = remove_tree(&self.dir);
        let _ = fs_err::remove_file(&self.lock_path);
    }
}

/// Removes the staging dirs of processes that are gone, as far as it can: leftovers are not
/// worth failing a command for, and the next opener tries again. `tmp` is fsynced only when
/// something was removed.
pub(crate) fn clean_stale(tmp: &Path) -> Result<(), StoreError> {
    let entries = fs_err::read_dir(tmp).map_err(StoreError::io("list", tmp))?;
    let mut live_dirs = Vec::new();
    let mut dirs = Vec::new();
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", tmp))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(".new-") {
            // A lock file between creation and rename: `remove_pending`'s.
        } else if let Some(id) = name.strip_suffix(".lock") {
            match FileLock::try_exclusive(&path)? {
                // What cannot be removed now stays, with its lock file, for the next
                // opener: a dead owner's RUN may write into its dir for a moment yet (its
                // sandbox ends once it sees its worker gone; the kill -9 torture test
                // found `Directory not empty` failing the open of every command).
                Some(_stale) => {
                    removed = true;
                    if remove_tree(&tmp.join(id)).is_ok() {
                        let _ = fs_err::remove_file(&path);
                    }
                }
                None => live_dirs.push(id.to_owned()),
            }
        } else {
            dirs.push(name);
        }
    }
    for name in dirs {
        if !live_dirs.contains(&name) && !tmp.join(format!("{name}.lock")).exists() {
            removed = true;
            let _ = remove_tree(&tmp.join(&name));
        }
    }
    if removed {
        sync_dir(tmp)?;
    }
    Ok(())
}

/// Removes the `.new-*` lock files of processes killed between creating and renaming one;
/// only under the exclusive lock on `tmp` (see the module's doc), where no live process has
/// one.
fn remove_pending(tmp: &Path) -> Result<(), StoreError> {
    for entry in fs_err::read_dir(tmp).map_err(StoreError::io("list", tmp))? {
        let entry = entry.map_err(StoreError::io("list", tmp))?;
        if entry.file_name().to_string_lossy().starts_with(".new-") {
            let _ = remove_tree(&entry.path());
        }
    }
    Ok(())
}

/// `remove_dir_all` that tolerates a missing path and makes read-only dirs writable first.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match fs_err::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("inspect", path)(e)),
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(path)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(StoreError::io("remove", path)),
        Ok(_) => fs_err::remove_file(path).map_err(StoreError::io("remove", path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_opener_removes_what_a_killed_one_left_at_any_step() {
        let tmp = tempfile::tempdir().unwrap();
        let live = Staging::create(tmp.path()).unwrap();
        // A process killed before it renamed its lock file, and one killed after.
        fs_err::write(tmp.path().join(".new-dead1"), "").unwrap();
        fs_err::write(tmp.path().join("dead2.lock"), "").unwrap();
        fs_err::create_dir(tmp.path().join("dead2")).unwrap();
        fs_err::write(tmp.path().join("dead2/blob-x"), "partial").unwrap();
        let next = Staging::create(tmp.path()).unwrap();
        let mut names: Vec<String> = fs_err::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = Vec::new();
        for s in [&live, &next] {
            let id = s.dir().file_name().unwrap().to_string_lossy().into_owned();
            want.push(format!("{id}.lock"));
            want.push(id);
        }
        want.sort();
        assert_eq!(names, want);
        drop((live, next));
        assert_eq!(fs_err::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_owner_s_dir_that_cannot_be_removed_yet_fails_nothing_and_goes_next_time() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join("dead.lock"), "").unwrap();
        let busy = tmp.path().join("dead/busy");
        fs_err::create_dir_all(&busy).unwrap();
        // A mount point cannot be removed (EBUSY), as a dir still written to cannot.
        let mount = |args: &[&str]| {
            let ok = std::process::Command::new(args[0])
                .args(&args[1..])
                .arg(&busy)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{args:?}");
        };
        mount(&["mount", "-t", "tmpfs", "tmpfs"]);
        let staging = Staging::create(tmp.path());
        mount(&["umount"]);
        drop(staging.unwrap());
        assert!(tmp.path().join("dead.lock").exists());
        drop(Staging::create(tmp.path()).unwrap());
        assert_eq!(fs_err::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
