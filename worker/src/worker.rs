//! The worker itself: its configuration, its state directory (`<root>/worker/`: cache mounts
//! and the sandboxes' mount point, see docs/STORE.md) and the handle every operation hangs
//! off. What it does lives with each operation: RUN in `run.rs`, COPY/ADD/WORKDIR in
//! `fileop.rs`.

use crate::cgroup::{Cgroup, CgroupError, Resources};
use crate::helper::SandboxHelper;
use crate::janitor::Janitor;
use crate::mount_layer::CacheMountImports;
use crate::teardown::Teardowns;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Default cap on what one ADD may unpack or download (bytes).
pub const DEFAULT_MAX_UNPACK: u64 = 64 << 30;

/// How the worker runs things.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's own directory: cache mounts live in `<state_dir>/cache-mounts/`.
    pub state_dir: PathBuf,
    /// The executable that handles `__sandbox` (the strata binary, `/proc/self/exe`).
    pub helper_exe: PathBuf,
    /// The host's resolver configuration, copied into each sandbox's `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Set `PR_SET_NO_NEW_PRIVS` for RUN commands (`--security-opt no-new-privileges`). Off
    /// by default, as in BuildKit: setuid programs (`sudo`, `su`) work in a RUN; the seccomp
    /// filter is installed either way.
    pub no_new_privs: bool,
    /// The most bytes one ADD may unpack from an archive or download.
    pub max_unpack_bytes: u64,
    /// How long an ADD of a URL may go without progress: to connect, to get an answer,
    /// between two reads, and the window in which at least 1 KiB must arrive (60 s).
    pub download_timeout: std::time::Duration,
    /// Run every RUN of this worker in a cgroup of its own with these limits (see
    /// [`Resources`]); `None`: in strata's own cgroup, unlimited.
    pub resources: Option<Resources>,
}

impl WorkerConfig {
    /// The empty directory every sandbox attaches its root onto, each in its own mount
    /// namespace (so one directory serves all of them, and nothing is made per run).
    pub(crate) fn root_mountpoint(&self) -> PathBuf {
        self.state_dir.join("sandbox-root")
    }

    /// The defaults: the host's `/etc/resolv.conf`, no_new_privs off, no cgroup.
    pub fn new(state_dir: impl Into<PathBuf>, helper_exe: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            state_dir: state_dir.into(),
            helper_exe: helper_exe.into(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            no_new_privs: false,
            max_unpack_bytes: DEFAULT_MAX_UNPACK,
            download_timeout: std::time::Duration::from_secs(60),
            resources: None,
        }
    }
}

/// Runs RUN steps and file operations. Clones share one sandbox helper process, started on
/// the first RUN and ended when the last clone (and the last RUN) is gone.
#[derive(Debug, Clone)]
pub struct Worker {
    pub(crate) config: WorkerConfig,
    pub(crate) helper: Arc<Mutex<Option<Arc<SandboxHelper>>>>,
    pub(crate) janitor: Janitor,
    /// The RUN sandboxes whose namespaces are still being torn down (`teardown.rs`).
    pub(crate) teardowns: Teardowns,
    pub(crate) mounts: Arc<MountBook>,
    /// The cgroup of every RUN, when `config.resources` asks for one: made when the first
    /// RUN starts the helper (a build that runs nothing, a no-op rebuild, makes none) and
    /// removed (whatever is left in it killed) when the last clone is gone. Last, so that the
    /// helper's socket is closed first.
    pub(crate) cgroup: Arc<OnceLock<Cgroup>>,
}

/// The cache mounts of this worker's runs, and where imported ones come from.
#[derive(Default)]
pub(crate) struct MountBook {
    pub(crate) imports: Mutex<Option<Arc<dyn CacheMountImports>>>,
    /// Directory name → id of each cache mount a run used (seeded and private ones aside).
    pub(crate) used: Mutex<std::collections::BTreeMap<String, String>>,
}

impl std::fmt::Debug for MountBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountBook").finish_non_exhaustive()
    }
}

/// Errors opening the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The state directory cannot be made.
    #[error("failed to prepare the worker state directory {}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Worker {
    /// A worker with its state under `config.state_dir`.
    pub fn new(config: WorkerConfig) -> Result<Worker, WorkerError> {
        for dir in [
            config.state_dir.join("cache-mounts"),
            config.root_mountpoint(),
        ] {
            fs_err::create_dir_all(&dir)
                .map_err(|source| WorkerError::StateDir { path: dir, source })?;
        }
        if config.resources.is_some() {
            // What a strata killed with SIGKILL left goes now, as it did when the cgroup was
            // made here; ours is made by the first RUN.
            crate::cgroup::remove_stale_cgroups();
        }
        Ok(Worker {
            config,
            cgroup: Arc::default(),
            helper: Arc::new(Mutex::new(None)),
            janitor: Janitor::default(),
            teardowns: Teardowns::default(),
            mounts: Arc::default(),
        })
    }

    /// Where runs find imported cache mounts: a cache mount that is missing or empty when a
    /// RUN mounts it is restored from there first.
    pub fn set_cache_mount_imports(&self, imports: Arc<dyn CacheMountImports>) {
        *self
            .mounts
            .imports
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(imports);
    }

    /// The cache mounts the runs of this worker (and its clones) used, as (directory name,
    /// id), by name; mounts seeded with `from=` are left out (their name holds local paths).
    pub fn used_cache_mounts(&self) -> Vec<(String, String)> {
        self.mounts
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, id)| (n.clone(), id.clone()))
            .collect()
    }

    /// The build's cgroup, made on the first call when `config.resources` asks for one;
    /// `None` when it does not.
    pub(crate) fn cgroup(&self) -> Result<Option<&Cgroup>, CgroupError> {
        let Some(res) = &self.config.resources else {
            return Ok(None);
        };
        if let Some(c) = self.cgroup.get() {
            return Ok(Some(c));
        }
        let made = Cgroup::create(res)?;
        // A cgroup made by a racing caller wins; ours, still empty, is removed when dropped.
        Ok(Some(self.cgroup.get_or_init(|| made)))
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }
}
