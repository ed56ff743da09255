//! The worker: runs one operation. Owns the RUN sandbox (namespaces, overlayfs, pivot_root;
//! all syscalls live in `sys.rs`), COPY/ADD file operations confined to their root, layer
//! diffs (upper dir → OCI layer tar), and the `RUN --mount=type=cache` directories (locks,
//! prune, their export as layers and restore from imported ones: `mount_layer.rs`). Knows
//! nothing of Dockerfiles, cache keys or scheduling, and does not own storage: callers hand it
//! layer directories and an empty upper directory, and a writer for the layer tar. Start at
//! [`Worker::run`], [`Worker::apply_file_op`] and [`write_layer`]; a binary using the worker
//! must call [`sandbox_main`] when started as `<exe> __sandbox`, before anything else, and,
//! run by a user other than root, [`enter_user_namespace`] before any thread exists (rootless:
//! the RUN network is then slirp4netns, and overlay metadata `user.overlay.*`).
#![warn(missing_docs)]

mod agent_proxy;
mod archive;
mod cache_mount;
mod cgroup;
mod changes;
mod copy;
mod cp;
mod diff;
mod download;
mod exec;
mod export;
mod fileop;
mod freezer;
mod git;
mod helper;
mod janitor;
mod layers;
mod memory;
mod mount_layer;
mod network;
mod plan;
pub mod process;
mod resolv_conf;
mod reuse;
mod rootless;
mod rtnetlink;
mod run;
mod sandbox;
mod seccomp;
mod slirp;
mod source;
mod spec;
mod stub;
mod sys;
mod teardown;
pub mod terminal;
mod user;
mod worker;
mod written;

pub use cache_mount::{CacheMountError, CacheMountInfo, cache_mounts, prune_cache_mounts};
pub use cgroup::{CgroupError, DEFAULT_PIDS_LIMIT, Resources};
pub use changes::{Change, ChangeKind, changes};
pub use cp::{CpError, CpOptions, CpRoot, copy_path, own_ids, tar_path, untar_into};
pub use diff::{
    DiffError, DiffOptions, DiffStats, EarlierLayer, write_layer, write_layer_reusing,
    write_layer_told, write_layer_written,
};
pub use download::DownloadError;
pub use exec::{ExecError, ExecOutcome, ExecSpec, exec_in_container, pids_in_namespace_of};
pub use export::{ExportError, export_rootfs};
pub use fileop::{FileError, FileRequest, FileSource, FileStats, copy_up_volume};
pub use freezer::{Freezer, FreezerError};
pub use git::{GitAuth, GitError, resolve as resolve_git};
pub use helper::sandbox_main;
pub use memory::{limit_allocator, release_free_memory};
pub use mount_layer::{
    CacheMountImports, ImportError, ImportedMount, MAX_CHAIN, MountLayer, MountLayerError,
    write_cache_mount_layer,
};
pub use network::{Endpoint, container_endpoint, in_netns_of};
pub use reuse::Previous;
pub use rootless::{RootlessError, enter_user_namespace};
pub use run::{
    HostBind, Lines, MountInput, OutputStream, RunError, RunRequest, RunStdio, RunTimes,
};
pub use source::ExcludeFn;
pub use strata_store::confined::ExtractError;
pub use user::UserError;
pub use worker::{DEFAULT_MAX_UNPACK, Worker, WorkerConfig, WorkerError};
pub use written::Written;
