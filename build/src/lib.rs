//! The build pipeline: a [`BuildRequest`] in, a [`BuildResult`] out. Owns what one build does
//! between the command line and the engines: the Dockerfile given as bytes is parsed, checked
//! and lowered (`strata-frontend`), its base images resolved in the store, the graph solved
//! with the local backend (`strata-solver` over the worker and the build cache), the image
//! committed, the outputs (`--output`) written, the image pushed (`--push`) and the cache exported (`--cache-to`). Also
//! the one Dockerfile reader ([`Dockerfile::read`]: a file, standard input or the context's)
//! and `--build-arg` parser ([`parse_build_args`]) that `build`, `check` and `parse` share,
//! the typed forms of BuildKit's `--output` and `--cache-*` strings, the `.dockerignore` that
//! applies; and containers of built images ([`create_container`], [`monitor_container`],
//! [`stop_container`]: `strata run`, `start`, `stop`...), with [`sandbox_main`], which a binary using either must call first when started as
//! `<exe> __sandbox`. And the build cache's lifecycle ([`prune_cache`], [`cache_entries`],
//! [`gc_after_build`]), which the CLI reaches only through this crate.
//!
//! Never prints, never reads the environment or the current directory: the request carries
//! absolute paths and values already read, progress goes to the request's channel as
//! [`BuildEvent`]s (the solver's [`Event`]s and the Dockerfile's warnings), and failures come
//! back as a [`BuildError`]. Start at [`build`].
#![warn(missing_docs)]

mod attach;
mod cache_spec;
mod container;
mod container_exec;
mod container_fs;
mod container_pause;
mod dockerfile;
mod entitlement;
mod error;
mod health;
mod ignore;
mod log;
mod output;
mod pipeline;
mod port;
mod prune;
mod request;
mod resolver;
mod secret;
mod spec;
mod volume;

pub use attach::{
    AttachEnd, AttachError, AttachOptions, Attached, SignalKind, on_signals, parse_detach_keys,
    proxied_signals,
};
pub use cache_spec::{CacheExportError, CacheMode, CacheRef, CacheTo, parse_cache_from};
pub use container::{
    ContainerError, CreateContainer, FIRST_CLIENT_WAIT, Outcome, RestartPolicy, create_container,
    kill_container, monitor_container, monitor_container_attached, remove_anonymous_volumes,
    remove_container, stop_container, wait_stopped,
};
pub use container_exec::{ExecContainerError, ExecRequest, container_processes, exec_container};
pub use container_fs::{
    Change, ChangeKind, CommitOptions, ContainerFsError, CpFlags, CpRoot, commit_container,
    copy_from_container, copy_to_container, diff_container, export_container, open_running_root,
    tar_from_container, untar_to_container,
};
pub use container_pause::{PauseError, container_paused, pause_container, unpause_container};
pub use dockerfile::{Dockerfile, DockerfileError, DockerfileSource, parse_build_args};
pub use entitlement::{Entitlement, EntitlementError};
pub use error::BuildError;
pub use health::{HealthError, HealthOptions};
pub use ignore::ignore_bytes;
pub use log::{LogLimits, LogOptError, parse_log_opts};
pub use output::{Dest, OutputError, OutputSpec};
pub use pipeline::{build, check, lower};
pub use port::{PortError, parse_publish};
pub use prune::{
    CacheEntry, CacheKind, CachePrune, CachePruneError, CachePruneReport, GcPolicy, cache_entries,
    gc_after_build, prune_cache, unshared_size,
};
pub use request::{BuildEvent, BuildRequest, BuildResult, BuiltImage, PushEvent};
pub use secret::{
    MAX_SECRET_SIZE, SecretError, SecretFlag, SecretSource, SshSource, parse_ssh_flag,
};
pub use spec::SpecError;
pub use strata_solver::{Event, Phase, SolveError, Stream};
pub use strata_worker::{
    DEFAULT_PIDS_LIMIT, Resources, RootlessError, enter_user_namespace, limit_allocator, process,
    sandbox_main,
};
pub use volume::{MountError, parse_mount, parse_tmpfs, parse_volume};
