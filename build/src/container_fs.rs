//! A container's filesystem turned back into images and tars: `diff` (its writable layer
//! read as docker's A/C/D lines), `commit` (that layer added to its image, as a build adds a
//! RUN's: the same [`write_layer`] into the same layer writer), `export` (its merged root as
//! one flat tar, the way a build's `--output type=tar` is written). The container's writable
//! layer is `containers/<id>/upper/` over the snapshots of its image (`docs/containers.md`).

use std::io::Write;
use std::path::PathBuf;
use strata_frontend::{ChangeError, apply_changes};
use strata_graph::ImageConfig;
use strata_store::{
    Compression, Container, Digest, History, Lease, NewImage, Reference, Store, StoreError,
};
pub use strata_worker::{Change, ChangeKind};
use strata_worker::{
    DiffError, DiffOptions, DiffStats, ExportError, changes, export_rootfs, write_layer,
};

/// Why a container's filesystem could not be listed, committed or exported.
#[derive(Debug, thiserror::Error)]
pub enum ContainerFsError {
    /// No such container, or its records are unreadable.
    #[error(transparent)]
    Record(#[from] strata_store::ContainerError),
    /// The store failed (its image is missing, a snapshot cannot be unpacked).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's config is not Docker's.
    #[error("image {image} has an unreadable config")]
    Config {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A `--change` is not an instruction that applies to a config.
    #[error("invalid --change {change:?}")]
    Change {
        /// The change as given.
        change: String,
        /// Why.
        #[source]
        source: ChangeError,
    },
    /// Reading the writable layer failed.
    #[error("failed to read the filesystem of container {name}")]
    Read {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: DiffError,
    },
    /// Exporting the merged root failed.
    #[error("failed to export container {name}")]
    Export {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: ExportError,
    },
}

/// A container with the layer directories of its image, top first, kept from the store's
/// garbage collection while the lease lives.
struct Rootfs {
    container: Container,
    image: strata_store::Image,
    lowers: Vec<PathBuf>,
    _lease: Lease,
}

fn rootfs(store: &Store, name_or_id: &str) -> Result<Rootfs, ContainerFsError> {
    let container = store.container(name_or_id)?;
    let lease = store.lease()?;
    let image = store.image(container.config.image_id.as_str())?;
    let mut lowers: Vec<PathBuf> = store
        .snapshots(&image)?
        .into_iter()
        .map(|s| s.path)
        .collect();
    lowers.reverse();
    Ok(Rootfs {
        container,
        image,
        lowers,
        _lease: lease,
    })
}

/// `strata diff`: the changes in container `name_or_id`'s filesystem over its image, in
/// docker's order. Blocking.
pub fn diff_container(store: &Store, name_or_id: &str) -> Result<Vec<Change>, ContainerFsError> {
    let r = rootfs(store, name_or_id)?;
    changes(&r.container.upper_dir(), &r.lowers).map_err(|source| ContainerFsError::Read {
        name: r.container.config.name.clone(),
        source,
    })
}

/// `strata export`: container `name_or_id`'s merged root filesystem as one flat tar into
/// `out` (what `strata import` and `docker import` take). Blocking, streaming.
pub fn export_container(
    store: &Store,
    name_or_id: &str,
    out: impl Write + Send,
) -> Result<DiffStats, ContainerFsError> {
    let r = rootfs(store, name_or_id)?;
    let mut layers = vec![r.container.upper_dir()];
    layers.extend(r.lowers.iter().cloned());
    export_rootfs(&layers, &r.container.dir, out, &DiffOptions::default()).map_err(|source| {
        ContainerFsError::Export {
            name: r.container.config.name.clone(),
            source,
        }
    })
}

/// How [`commit_container`] makes the image (`strata commit`'s flags).
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-m`: the commit message (the history entry's and the config's `comment`).
    pub message: Option<String>,
    /// `-a`: the author.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config, in order.
    pub changes: Vec<String>,
    /// `REPO[:TAG]` to point at the image.
    pub tags: Vec<Reference>,
    /// How to compress the new layer.
    pub compression: Compression,
}

/// `strata commit`: a new image of container `name_or_id`: its image's layers and, unless the
/// container changed nothing, its writable layer on top; its image's config with the
/// container's command, entrypoint, environment, working directory and user, then the
/// `-c` changes; the image's history and one entry for the commit, as docker writes it
/// (`created_by` is the container's command). Returns the image's ID. Blocking.
pub fn commit_container(
    store: &Store,
    name_or_id: &str,
    opts: &CommitOptions,
) -> Result<Digest, ContainerFsError> {
    let r = rootfs(store, name_or_id)?;
    let c = &r.container.config;
    let mut runtime: ImageConfig = match &r.image.config.config {
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|source| ContainerFsError::Config {
                image: c.image.clone(),
                source,
            })?
        }
        None => ImageConfig::default(),
    };
    runtime.cmd = (!c.cmd.is_empty()).then(|| c.cmd.clone());
    runtime.entrypoint = (!c.entrypoint.is_empty()).then(|| c.entrypoint.clone());
    runtime.env = c.env.clone();
    runtime.working_dir = c.working_dir.clone();
    runtime.user = c.user.clone();
    let platform = r.image.config.platform();
    let changes: Vec<&str> = opts.changes.iter().map(String::as_str).collect();
    let runtime = apply_changes(&runtime, &changes, &platform).map_err(|source| {
        ContainerFsError::Change {
            change: opts.changes.get(source.change).cloned().unwrap_or_default(),
            source,
        }
    })?;

    let upper = r.container.upper_dir();
    let read_err = |source| ContainerFsError::Read {
        name: c.name.clone(),
        source,
    };
    let unchanged = fs_err::read_dir(&upper)
        .map_err(|source| {
            read_err(DiffError::Read {
                path: upper.clone(),
                source,
            })
        })?
        .next()
        .is_none();
    let mut layers = r.image.layers.clone();
    if !unchanged {
        let mut writer = store.layer_writer(opts.compression)?;
        write_layer(&upper, &mut writer, &DiffOptions::default()).map_err(read_err)?;
        layers.push(writer.finish()?);
    }

    let created = jiff::Timestamp::now().to_string();
    let mut config = r.image.config.clone();
    config.created = Some(created.clone());
    config.author = opts.author.clone();
    config.config =
        Some(
            serde_json::to_value(&runtime).map_err(|source| ContainerFsError::Config {
                image: c.image.clone(),
                source,
            })?,
        );
    for stale in ["comment", "container", "container_config"] {
        config.extra.remove(stale);
    }
    if let Some(m) = &opts.message {
        config
            .extra
            .insert("comment".into(), serde_json::Value::String(m.clone()));
    }
    config
        .extra
        .insert("container".into(), serde_json::Value::String(c.id.clone()));
    // An image without history (or one that does not match its layers) cannot get an entry
    // that would make it match: commit_image checks one non-empty entry per layer.
    let had_history = !config.history.is_empty() || r.image.layers.is_empty();
    if had_history {
        config.history.push(History {
            created: Some(created),
            created_by: Some(c.cmd.join(" ")),
            author: opts.author.clone(),
            comment: opts.message.clone(),
            empty_layer: unchanged,
            ..History::default()
        });
    }
    Ok(store.commit_image(NewImage {
        config,
        layers,
        tags: opts.tags.clone(),
    })?)
}
