//! The life of `RUN --mount=type=cache` directories after their runs: listing them for
//! `system df -v` and reclaiming them for `builder prune`.
//!
//! Every run that mounts a cache holds a flock on `cache-mounts/<hash>.lock` while it runs:
//! shared for `sharing=shared`, exclusive for `locked` and `private` (see `run.rs`), and bumps
//! that file's mtime, which is the cache's "last used". Prune takes the lock exclusive without
//! waiting, so it never touches a cache a run is using; it moves the directory aside under the
//! lock (a run that comes next makes a fresh one) and deletes it. Lock files stay: unlinking a
//! lock file another process has open would let two holders lock two different files.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of a cache directory being deleted (left by a prune that was killed: the next one
/// finishes it).
const DOOMED: &str = ".doomed-";

/// One cache mount directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMountInfo {
    /// Its name: the hash of its id (and seed).
    pub name: String,
    /// Bytes of its files.
    pub size: u64,
    /// When it was made.
    pub created: SystemTime,
    /// When a run last mounted it.
    pub last_used: SystemTime,
    /// Whether a run is using it now.
    pub in_use: bool,
}

/// A cache mount could not be listed or removed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} cache mount {}", path.display())]
pub struct CacheMountError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheMountError {
    let path = path.to_owned();
    move |source| CacheMountError {
        action,
        path,
        source,
    }
}

/// The cache mounts under `state_dir` (the worker's, `<root>/worker`), by name.
pub fn cache_mounts(state_dir: &Path) -> Result<Vec<CacheMountInfo>, CacheMountError> {
    let base = state_dir.join("cache-mounts");
    let mut out = Vec::new();
    for (name, dir) in cache_dirs(&base)? {
        let lock = base.join(format!("{name}.lock"));
        let in_use = match open_lock(&lock)? {
            Some(f) => match f.file().try_lock() {
                Ok(()) => false,
                Err(std::fs::TryLockError::WouldBlock) => true,
                Err(std::fs::TryLockError::Error(e)) => return Err(err("lock", &lock)(e)),
            },
            None => false,
        };
        out.push(info(name, &dir, &lock, in_use));
    }
    Ok(out)
}

/// Removes the cache mounts under `state_dir` that `select` picks (it sees each one as it is
/// once its lock is taken), skipping any a run holds; returns what went.
pub fn prune_cache_mounts(
    state_dir: &Path,
    select: impl Fn(&CacheMountInfo) -> bool,
) -> Result<Vec<CacheMountInfo>, CacheMountError> {
    let base = state_dir.join("cache-mounts");
    let mut removed = Vec::new();
    if !base.is_dir() {
        return Ok(removed);
    }
    for (name, dir) in cache_dirs(&base)? {
        let lock_path = base.join(format!("{name}.lock"));
        let lock = match open_lock(&lock_path)? {
            Some(f) => f,
            None => {
                // A cache from before runs kept a lock file: it keeps its directory's age.
                let made = fs_err::File::create(&lock_path).map_err(err("lock", &lock_path))?;
                if let Ok(t) = fs_err::metadata(&dir).and_then(|m| m.modified()) {
                    let _ = made.set_modified(t);
                }
                made
            }
        };
        match lock.file().try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(err("lock", &lock_path)(e)),
        }
        let found = info(name.clone(), &dir, &lock_path, false);
        if !select(&found) {
            continue;
        }
        let doomed = base.join(format!("{DOOMED}{name}"));
        match fs_err::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("remove", &dir)(e)),
        }
        // What it was restored or exported as goes with it (see `mount_layer.rs`).
        let record = base.join(format!("{name}.imported.json"));
        match fs_err::remove_file(&record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(err("remove", &record)(e));
            }
            _ => {}
        }
        drop(lock);
        fs_err::remove_dir_all(&doomed).map_err(err("remove", &doomed))?;
        removed.push(found);
    }
    // What a killed prune left half deleted.
    for entry in fs_err::read_dir(&base).map_err(err("list", &base))? {
        let entry = entry.map_err(err("list", &base))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DOOMED))
        {
            let path = entry.path();
            fs_err::remove_dir_all(&path).map_err(err("remove", &path))?;
        }
    }
    Ok(removed)
}

/// (name, directory) of each cache directory; temporary and doomed ones are not caches.
fn cache_dirs(base: &Path) -> Result<Vec<(String, PathBuf)>, CacheMountError> {
    let entries = match fs_err::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err("list", base)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err("list", base))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn open_lock(path: &Path) -> Result<Option<fs_err::File>, CacheMountError> {
    match fs_err::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("open the lock of", path)(e)),
    }
}

fn info(name: String, dir: &Path, lock: &Path, in_use: bool) -> CacheMountInfo {
    let dir_meta = fs_err::metadata(dir).ok();
    let mtime = |m: &std::fs::Metadata| m.modified().unwrap_or(UNIX_EPOCH);
    let created = dir_meta
        .as_ref()
        .map_or(UNIX_EPOCH, |m| m.created().unwrap_or_else(|_| mtime(m)));
    // A cache made before runs bumped their lock file: its directory's mtime.
    let last_used = fs_err::metadata(lock)
        .ok()
        .or(dir_meta)
        .map_or(UNIX_EPOCH, |m| mtime(&m));
    CacheMountInfo {
        name,
        size: strata_store::tree_size(dir),
        created,
        last_used,
        in_use,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cache(base: &Path, name: &str, age: Duration) {
        fs_err::create_dir_all(base.join(name).join("sub")).unwrap();
        fs_err::write(base.join(name).join("sub/f"), b"12345").unwrap();
        let lock = fs_err::File::create(base.join(format!("{name}.lock"))).unwrap();
        lock.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn prune_skips_held_and_recent_caches_and_keeps_lock_files() {
        let state = tempfile::tempdir().unwrap();
        let base = state.path().join("cache-mounts");
        let day = Duration::from_secs(86400);
        cache(&base, "old", 3 * day);
        cache(&base, "new", Duration::ZERO);
        cache(&base, "held", 3 * day);
        fs_err::write(base.join("old.imported.json"), b"{}").unwrap();
        let held = fs_err::File::open(base.join("held.lock")).unwrap();
        held.file().lock_shared().unwrap();
        fs_err::create_dir_all(base.join(".doomed-crashed/x")).unwrap();
        // Made before runs kept lock files: its directory's mtime is its last use.
        fs_err::create_dir_all(base.join("legacy")).unwrap();
        fs_err::write(base.join("legacy/f"), b"12345").unwrap();
        let legacy = fs_err::File::open(base.join("legacy")).unwrap();
        legacy.set_modified(SystemTime::now() - 3 * day).unwrap();

        let listed = cache_mounts(state.path()).unwrap();
        let names: Vec<_> = listed.iter().map(|c| (c.name.as_str(), c.in_use)).collect();
        assert_eq!(
            names,
            [
                ("held", true),
                ("legacy", false),
                ("new", false),
                ("old", false)
            ]
        );
        assert!(listed.iter().all(|c| c.size == 5));

        let removed =
            prune_cache_mounts(state.path(), |c| c.last_used < SystemTime::now() - day).unwrap();
        let names: Vec<_> = removed.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["legacy", "old"]);
        assert!(!base.join("old").exists() && base.join("old.lock").exists());
        assert!(
            !base.join("old.imported.json").exists(),
            "its import record went too"
        );
        assert!(base.join("new").exists() && base.join("held").exists());
        assert!(!base.join(".doomed-crashed").exists());

        let removed = prune_cache_mounts(state.path(), |_| true).unwrap();
        assert_eq!(removed.len(), 1, "all but the held one");
        assert!(base.join("held/sub/f").exists());
        drop(held);
        assert_eq!(prune_cache_mounts(state.path(), |_| true).unwrap().len(), 1);
        assert!(cache_mounts(state.path()).unwrap().is_empty());
    }
}
