//! Cache mounts as layers, so that they travel with an exported build cache.
//!
//! Export: a cache mount becomes a chain of layers. When this runner restored the mount from
//! an imported chain (or exported it before), `cache-mounts/<hash>.imported.json` records
//! that chain and the listing ([`Listing`]: path → type, mode, size, mtime, inode) of the
//! directory it left; the next export writes only a delta on top of it (changed and new
//! entries, whiteouts for gone ones). Without that record, or when the chain reached
//! [`MAX_CHAIN`] layers or its deltas outweigh its base, the export is one full layer.
//!
//! Import: the worker asks a [`CacheMountImports`] (the solver, over the imported caches)
//! for the layers of a mount only when a RUN that uses it runs, and only when the local
//! directory is missing or empty: a cache mount with content is never replaced. The chain is
//! unpacked by the store (its confined extractor: a hostile layer cannot write outside it)
//! and merged, whiteouts honoured, into a staging directory that is renamed into place,
//! under the mount's lock.

use crate::diff::{Delta, DiffError, DiffOptions, DiffStats, Listing, write_delta};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use strata_store::LayerDescriptor;
use strata_store::durable;

/// A chain longer than this is squashed into one full layer at the next export.
pub const MAX_CHAIN: usize = 8;

/// The layers of an imported cache mount, unpacked.
#[derive(Debug, Clone)]
pub struct ImportedMount {
    /// The layer directories, top first (overlayfs format, as [`crate::RunRequest::lowers`]).
    pub lowers: Vec<PathBuf>,
    /// The chain they came from, bottom first.
    pub chain: Vec<LayerDescriptor>,
}

/// Why an imported cache mount could not be had (the importer's error).
pub type ImportError = Box<dyn std::error::Error + Send + Sync>;

/// Where the worker finds imported cache mounts (the solver, over `--cache-from`).
pub trait CacheMountImports: Send + Sync {
    /// The unpacked layers of cache mount `name` (its directory name), if an imported cache
    /// carries it. Blocking: it may download.
    fn import(&self, name: &str) -> Result<Option<ImportedMount>, ImportError>;
}

/// What a restore or export left: the chain the mount's content is, and its listing then.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MountState {
    chain: Vec<LayerDescriptor>,
    listing: Listing,
}

/// A cache mount could not be written as a layer or its record kept.
#[derive(Debug, thiserror::Error)]
pub enum MountLayerError {
    /// Reading the mount or its record, or taking its lock, failed.
    #[error("failed to {action} cache mount {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the layer failed.
    #[error("failed to write cache mount {name} as a layer")]
    Diff {
        /// The mount's directory name.
        name: String,
        /// The cause.
        #[source]
        source: DiffError,
    },
    /// Writing the record failed.
    #[error(transparent)]
    Durable(#[from] durable::DurableError),
}

/// One cache mount written as a layer: the chain below it and what to record once the
/// export that carries it succeeded.
#[derive(Debug)]
pub struct MountLayer {
    /// The mount's directory name.
    pub name: String,
    /// The layers the new one goes on (empty: the new one is a full layer).
    pub base: Vec<LayerDescriptor>,
    /// What the new layer holds (no entries: nothing changed since `base`).
    pub stats: DiffStats,
    listing: Listing,
}

fn state_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir
        .join("cache-mounts")
        .join(format!("{name}.imported.json"))
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MountLayerError {
    let path = path.to_owned();
    move |source| MountLayerError::Io {
        action,
        path,
        source,
    }
}

fn read_state(path: &Path) -> Option<MountState> {
    // A damaged or missing record only costs a full layer.
    let bytes = fs_err::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_state(path: &Path, state: &MountState) -> Result<(), MountLayerError> {
    let bytes = serde_json::to_vec(state).expect("a mount state is plain data");
    durable::write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes cache mount `name` (under `state_dir`, the worker's) into `out` as a layer: a delta
/// on what this runner restored or exported last, or a full layer. Holds the mount's lock
/// (shared) while it reads. Blocking.
pub fn write_cache_mount_layer(
    state_dir: &Path,
    name: &str,
    out: impl Write,
) -> Result<MountLayer, MountLayerError> {
    let base_dir = state_dir.join("cache-mounts");
    let dir = base_dir.join(name);
    let lock_path = base_dir.join(format!("{name}.lock"));
    let lock = fs_err::File::create(&lock_path).map_err(io_err("lock", &lock_path))?;
    lock.file()
        .lock_shared()
        .map_err(io_err("lock", &lock_path))?;
    let state = read_state(&state_path(state_dir, name)).unwrap_or_default();
    let deltas: u64 = state
        .chain
        .iter()
        .skip(1)
        .map(|l| l.uncompressed_size.unwrap_or(l.size))
        .sum();
    let base_size = state
        .chain
        .first()
        .map_or(0, |l| l.uncompressed_size.unwrap_or(l.size));
    let full = state.chain.is_empty() || state.chain.len() >= MAX_CHAIN || deltas > base_size;
    let (base, since) = if full {
        (Vec::new(), Listing::default())
    } else {
        (state.chain, state.listing)
    };
    let mut delta = Delta {
        since: &since,
        now: Listing::default(),
    };
    let stats = write_delta(&dir, out, &DiffOptions::default(), &mut delta).map_err(|source| {
        MountLayerError::Diff {
            name: name.to_owned(),
            source,
        }
    })?;
    drop(lock);
    Ok(MountLayer {
        name: name.to_owned(),
        base,
        stats,
        listing: delta.now,
    })
}

impl MountLayer {
    /// Records that the mount's content is now `chain` (the base and the new layer, as
    /// exported), so the next export is a delta on it.
    pub fn record(
        self,
        state_dir: &Path,
        chain: Vec<LayerDescriptor>,
    ) -> Result<(), MountLayerError> {
        write_state(
            &state_path(state_dir, &self.name),
            &MountState {
                chain,
                listing: self.listing,
            },
        )
    }
}

/// Fills the missing or empty cache mount directory `dir` (named `name`) from `imported`:
/// merges its layers into a staging directory beside `dir`, gives it `mode`/`uid`/`gid`,
/// records the chain and listing, and renames it into place. Returns false when `dir` got
/// content meanwhile (another run restored it first). The caller holds the mount's lock.
/// Blocking.
pub(crate) fn restore(
    dir: &Path,
    name: &str,
    imported: &ImportedMount,
    (mode, uid, gid): (u32, u32, u32),
) -> Result<bool, MountLayerError> {
    use std::os::unix::fs::PermissionsExt;
    let base = dir.parent().expect("cache mount directories have a parent");
    let staging = tempfile::Builder::new()
        .prefix(".strata-restore-")
        .tempdir_in(base)
        .map_err(io_err("stage", dir))?;
    crate::fileop::seed_dir(&imported.lowers, "/", staging.path()).map_err(|e| {
        MountLayerError::Io {
            action: "restore",
            path: dir.to_owned(),
            source: io::Error::other(crate::sandbox::error_chain(&e)),
        }
    })?;
    std::os::unix::fs::chown(staging.path(), Some(uid), Some(gid))
        .map_err(io_err("restore", dir))?;
    fs_err::set_permissions(
        staging.path(),
        std::fs::Permissions::from_mode(mode & 0o7777),
    )
    .map_err(io_err("restore", dir))?;
    let listing = Listing::of(staging.path()).map_err(|source| MountLayerError::Diff {
        name: name.to_owned(),
        source,
    })?;
    // An empty directory (made by an earlier run) gives way; one with content stays.
    match fs_err::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => return Ok(false),
    }
    let staged = staging.keep();
    if let Err(e) = fs_err::rename(&staged, dir) {
        let _ = fs_err::remove_dir_all(&staged);
        if fs_err::symlink_metadata(dir).is_ok() {
            return Ok(false);
        }
        return Err(io_err("restore", dir)(e));
    }
    let state_dir = base.parent().expect("cache-mounts has a parent");
    write_state(
        &state_path(state_dir, name),
        &MountState {
            chain: imported.chain.clone(),
            listing,
        },
    )?;
    Ok(true)
}

/// Whether the cache mount directory `dir` is missing or empty (and may be restored).
pub(crate) fn is_empty(dir: &Path) -> bool {
    match fs_err::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8, uncompressed: u64) -> LayerDescriptor {
        let digest: strata_store::Digest =
            format!("sha256:{}", hex::encode([n; 32])).parse().unwrap();
        LayerDescriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            digest: digest.clone(),
            size: 10,
            diff_id: digest,
            uncompressed_size: Some(uncompressed),
        }
    }

    /// The base an export of a mount whose record holds `chain` builds on, and the names of
    /// the layer it writes.
    fn export_on(chain: Vec<LayerDescriptor>) -> (usize, usize) {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("cache-mounts/m");
        fs_err::create_dir_all(dir.join("d")).unwrap();
        fs_err::write(dir.join("d/f"), b"1").unwrap();
        fs_err::write(dir.join("g"), b"1").unwrap();
        let listing = Listing::of(&dir).unwrap();
        write_state(
            &state_path(state.path(), "m"),
            &MountState { chain, listing },
        )
        .unwrap();
        fs_err::write(dir.join("g"), b"12").unwrap();
        let mut tar = Vec::new();
        let out = write_cache_mount_layer(state.path(), "m", &mut tar).unwrap();
        (out.base.len(), out.stats.entries as usize)
    }

    #[test]
    fn an_export_is_a_delta_until_the_chain_is_long_or_its_deltas_outweigh_its_base() {
        // A delta (only g) on a short chain with small deltas.
        assert_eq!(export_on(vec![layer(1, 1000), layer(2, 10)]), (2, 1));
        // Past MAX_CHAIN layers, or deltas larger than the base: a full layer (d, d/f, g).
        let long: Vec<_> = (0..MAX_CHAIN as u8).map(|n| layer(n, 10)).collect();
        assert_eq!(export_on(long), (0, 3));
        assert_eq!(export_on(vec![layer(1, 10), layer(2, 11)]), (0, 3));
        // No record: a full layer.
        assert_eq!(export_on(Vec::new()), (0, 3));
    }
}
