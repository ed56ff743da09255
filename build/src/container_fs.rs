//! A container's filesystem turned back into images and tars: `diff` (its writable layer
//! read as docker's A/C/D lines), `commit` (that layer added to its image, as a build adds a
//! RUN's: the same [`write_layer`] into the same layer writer), `export` (its merged root as
//! one flat tar, the way a build's `--output type=tar` is written). The container's writable
//! layer is `containers/<id>/upper/` over the snapshots of its image (`docs/containers.md`).
//! And `cp`: the container's root opened for the worker's confined copy
//! ([`strata_worker::copy_path`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use strata_frontend::{ChangeError, apply_changes};
use strata_graph::ImageConfig;
use strata_store::{
    Compression, Container, ContainerStatus, Digest, History, Lease, MonitorLock, NewImage,
    Reference, Store, StoreError,
};
pub use strata_worker::{Change, ChangeKind, CpRoot};
use strata_worker::{
    CpError, CpOptions, DiffError, DiffOptions, DiffStats, ExportError, changes, copy_path,
    export_rootfs, own_ids, tar_path, untar_into, write_layer,
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
    /// A copy to or from the container failed.
    #[error("failed to copy files of container {name}")]
    Copy {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: CpError,
    },
    /// A stopped container being started: its filesystem cannot be written meanwhile.
    #[error("container {0} is starting: try again")]
    Starting(String),
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
    /// `-p`: freeze a running container while its layer is read (where the cgroup freezer
    /// can be used: not rootless, see [`crate::pause_container`]).
    pub pause: bool,
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

    // Frozen until the layer is written (thawed when `_frozen` goes, on error too).
    let _frozen = if opts.pause {
        crate::container_pause::freeze_for_commit(&r.container)
    } else {
        None
    };
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

/// `strata cp`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpFlags {
    /// `-L`: follow a symlink the source path names.
    pub follow: bool,
    /// `-a`: keep the source's owners (else entries belong to the container's root, or to
    /// the calling user on the host, as docker's).
    pub archive: bool,
}

/// A container's root filesystem opened for `cp`: a running container's through its process,
/// a stopped one's as a detached overlay (while it is open the container cannot start: its
/// monitor's lock is held when writing).
struct CpContainer {
    // Dropped first: the mount goes before the lock and the lease.
    root: CpRoot,
    name: String,
    _monitor: Option<MonitorLock>,
    _rootfs: Option<Rootfs>,
}

/// The root of container `name_or_id` when it runs, through its process, or `None`.
/// Rootless, `/proc/PID/root` can only be opened before the command enters a user namespace of
/// its own (the container's is not its descendant): the CLI opens it first, as the user, and
/// hands it to the copy. Errors are left for the copy to report.
pub fn open_running_root(store: &Store, name_or_id: &str) -> Option<CpRoot> {
    let c = store.container(name_or_id).ok()?;
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return None;
    }
    CpRoot::of_process(c.state.pid).ok()
}

/// Opens the container's root; `running`: its root from [`open_running_root`], if taken.
fn open_for_cp(
    store: &Store,
    name_or_id: &str,
    write: bool,
    running: Option<CpRoot>,
) -> Result<CpContainer, ContainerFsError> {
    let c = store.container(name_or_id)?;
    let name = c.config.name.clone();
    let cp_err = |source| ContainerFsError::Copy {
        name: name.clone(),
        source,
    };
    if c.state.status == ContainerStatus::Running && c.state.pid != 0 {
        return Ok(CpContainer {
            root: match running {
                Some(root) => root,
                None => CpRoot::of_process(c.state.pid).map_err(cp_err)?,
            },
            name: name.clone(),
            _monitor: None,
            _rootfs: None,
        });
    }
    let monitor = if write {
        match store.lock_container_monitor(&c.config.id)? {
            Some(lock) => Some(lock),
            None => return Err(ContainerFsError::Starting(name)),
        }
    } else {
        None
    };
    let r = rootfs(store, &c.config.id)?;
    let upper = r.container.upper_dir();
    let root = CpRoot::of_layers(
        &upper,
        &r.lowers,
        write.then_some(r.container.dir.as_path()),
    )
    .map_err(cp_err)?;
    Ok(CpContainer {
        root,
        name,
        _monitor: monitor,
        _rootfs: Some(r),
    })
}

/// Runs `copy` on the container's root (opened to write when `write`) and the host's,
/// naming the container in its error.
fn with_roots(
    store: &Store,
    name_or_id: &str,
    write: bool,
    running: Option<CpRoot>,
    copy: impl FnOnce(&CpRoot, &CpRoot) -> Result<(), CpError>,
) -> Result<(), ContainerFsError> {
    let c = open_for_cp(store, name_or_id, write, running)?;
    CpRoot::host()
        .and_then(|host| copy(&c.root, &host))
        .map_err(|source| ContainerFsError::Copy {
            name: c.name.clone(),
            source,
        })
}

/// `strata cp CONTAINER:SRC DEST`: `src` in the container to the host path `dest`
/// (absolute), by docker's rules (`strata_worker::copy_path`). Blocking.
pub fn copy_from_container(
    store: &Store,
    name_or_id: &str,
    src: &str,
    dest: &str,
    flags: CpFlags,
    running: Option<CpRoot>,
) -> Result<(), ContainerFsError> {
    let opts = CpOptions {
        follow: flags.follow,
        owner: (!flags.archive).then(own_ids),
    };
    with_roots(store, name_or_id, false, running, |c, host| {
        copy_path(c, src, host, dest, &opts).map(drop)
    })
}

/// `strata cp SRC CONTAINER:DEST`: the host path `src` (absolute) to `dest` in the
/// container. Blocking.
pub fn copy_to_container(
    store: &Store,
    src: &str,
    name_or_id: &str,
    dest: &str,
    flags: CpFlags,
    running: Option<CpRoot>,
) -> Result<(), ContainerFsError> {
    let opts = CpOptions {
        follow: flags.follow,
        owner: (!flags.archive).then_some((0, 0)),
    };
    with_roots(store, name_or_id, true, running, |c, host| {
        copy_path(host, src, c, dest, &opts).map(drop)
    })
}

/// `strata cp CONTAINER:SRC -`: `src` as a tar stream into `out`. Blocking, streaming.
pub fn tar_from_container(
    store: &Store,
    name_or_id: &str,
    src: &str,
    flags: CpFlags,
    running: Option<CpRoot>,
    out: impl Write,
) -> Result<(), ContainerFsError> {
    with_roots(store, name_or_id, false, running, |c, _| {
        tar_path(c, src, flags.follow, out)
    })
}

/// `strata cp - CONTAINER:DEST`: the tar stream `input` unpacked into the directory `dest`.
/// Blocking, streaming.
pub fn untar_to_container(
    store: &Store,
    input: impl Read,
    name_or_id: &str,
    dest: &str,
    flags: CpFlags,
    running: Option<CpRoot>,
) -> Result<(), ContainerFsError> {
    let owner = (!flags.archive).then_some((0, 0));
    with_roots(store, name_or_id, true, running, |c, _| {
        untar_into(c, dest, input, owner).map(drop)
    })
}
