//! Containers: `create`, the monitor that runs one, and `stop`, `kill`, `wait`, `rm`. The
//! records live in the store ([`strata_store::Container`]); the process runs in the worker's
//! sandbox, the one RUN steps use, over the image's snapshots with the container's own
//! writable layer. There is no daemon: each running container has a monitor process of its
//! own (a detached `strata __monitor ID`, or the `strata run` in the foreground) that holds its
//! output, writes its json-file log, records its pid and exit code, and releases the
//! container's `monitor.lock` when it ends. `docs/containers.md` has the whole design.

use crate::Stream;
use crate::attach::Hub;
use crate::health::{HealthError, HealthOptions, Probe, effective_healthcheck};
use std::path::Path;
use std::time::{Duration, Instant};
use strata_graph::{ExecOp, ImageConfig, NetworkMode, SecurityMode};
use strata_store::{
    Container, ContainerConfig, ContainerStatus, LogLine, MountPoint, NEVER, NewContainer, Store,
    StoreError, VolumeError,
};
use strata_worker::{
    HostBind, MountInput, OutputStream, Resources, RunError, RunRequest, RunStdio, Worker,
    WorkerConfig,
};
use tokio_util::sync::CancellationToken;

/// A container to create, with docker's overrides of its image's config.
#[derive(Debug, Clone)]
pub struct CreateContainer {
    /// The image, by name or ID.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// `--entrypoint` (empty: none at all).
    pub entrypoint: Option<String>,
    /// The command (empty: the image's CMD).
    pub command: Vec<String>,
    /// `-e KEY=VALUE` (a bare `KEY` sets it empty), over the image's.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname` (`None`: the short ID).
    pub hostname: Option<String>,
    /// The network: `Default` is docker's `bridge`.
    pub network: NetworkMode,
    /// `-p`, parsed by [`crate::parse_publish`].
    pub ports: Vec<strata_store::PortBinding>,
    /// `-P`: every exposed port not in `ports` too, on a free host port.
    pub publish_all: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--stop-signal` (`None`: the image's STOPSIGNAL, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (`None`: 10).
    pub stop_timeout: Option<u32>,
    /// `--restart` (`no`, `on-failure[:N]`, `always`, `unless-stopped`).
    pub restart: String,
    /// `-v`, `--mount` and `--tmpfs`, parsed (see [`crate::parse_volume`] and the others).
    pub mounts: Vec<MountPoint>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--log-opt`, parsed by [`crate::parse_log_opts`].
    pub log_config: std::collections::BTreeMap<String, String>,
    /// `--label KEY[=VALUE]`, over the image's labels.
    pub labels: Vec<String>,
    /// `--init` (the sandbox's init is always PID 1: recorded only).
    pub init: bool,
    /// `--health-*` and `--no-healthcheck`, over the image's HEALTHCHECK.
    pub health: HealthOptions,
    /// `-i`, `-t` and how the caller attaches.
    pub stdio: strata_store::ContainerStdio,
}

/// Why a container operation failed (its command exiting non-zero is not an error).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The store failed (the image is missing, its snapshots cannot be made).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The container's records failed (no such container, a name in use).
    #[error(transparent)]
    Record(#[from] strata_store::ContainerError),
    /// The image's config is not Docker's.
    #[error("image {image} has an unreadable config")]
    Config {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Nothing to run.
    #[error("image {0} has no CMD or ENTRYPOINT: give a command to run")]
    NoCommand(String),
    /// The worker cannot start.
    #[error(transparent)]
    Worker(#[from] strata_worker::WorkerError),
    /// The sandbox failed.
    #[error("failed to run container {name}")]
    Run {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: RunError,
    },
    /// Another monitor runs it.
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// Not a signal's name or number.
    #[error("invalid signal: {0}")]
    BadSignal(String),
    /// `kill` of a container that does not run.
    #[error("cannot kill container: {0}: container is not running")]
    NotRunning(String),
    /// Signalling the container failed.
    #[error("failed to signal container {name}")]
    Signal {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It did not stop even after SIGKILL.
    #[error("container {0} did not stop within 10s of SIGKILL")]
    Unstoppable(String),
    /// Not a restart policy docker knows.
    #[error("invalid restart policy: {0}: use no, on-failure[:N], always or unless-stopped")]
    BadRestart(String),
    /// `--restart` with `--rm`.
    #[error("conflicting options: --restart and --rm")]
    RestartWithRm,
    /// A mount is refused.
    #[error(transparent)]
    Mount(#[from] crate::volume::MountError),
    /// A volume cannot be made or removed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A `-v` host directory cannot be made.
    #[error("error while creating mount source path '{}'", path.display())]
    BindSource {
        /// The host path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A volume's first mount could not copy the image's files into it.
    #[error("failed to copy the image's {target} into volume {name}")]
    CopyUp {
        /// The volume.
        name: String,
        /// The path in the container.
        target: String,
        /// Why.
        #[source]
        source: Box<strata_worker::FileError>,
    },
    /// A `--log-opt` is refused.
    #[error(transparent)]
    LogOpt(#[from] crate::log::LogOptError),
    /// Writing the log failed.
    #[error("failed to write the log {}", path.display())]
    Log {
        /// The log file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The healthcheck flags are refused, or the recorded healthcheck is unreadable.
    #[error(transparent)]
    Health(#[from] HealthError),
    /// The container's stdio (its attach socket, pipe or terminal) could not be made.
    #[error("failed to set up the stdio of the container at {}", path.display())]
    Attach {
        /// Its attach socket.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A port cannot be published.
    #[error(transparent)]
    Port(#[from] crate::port::PortError),
    /// `-p` on a network without ports of its own.
    #[error("published ports need the bridge network, not --network {0}")]
    PortsOffBridge(String),
    /// The container's address on the bridge cannot be read.
    #[error("failed to read the address of container {name}")]
    Address {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a container's run ended, as its monitor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its command ran and exited with this code (128 + signal when killed).
    Exited(i32),
    /// Its command could not start: docker's 127 (not found) or 126 (not executable, or
    /// anything else about starting it), and why.
    StartFailed {
        /// 126 or 127.
        code: i32,
        /// What went wrong.
        message: String,
    },
}

/// The worker of the store at `root`, as builds and containers use it.
/// `no_new_privs`: `--security-opt no-new-privileges` (off in Docker: a RUN may gain
/// privileges through sudo or setuid helpers); `resources`: a build's cgroup (`None` for
/// containers, as `docker run` sets no limit); `download_timeout`: how long an ADD of a URL
/// may go without progress (`None`: the worker's default).
pub(crate) fn new_worker(
    root: &Path,
    no_new_privs: bool,
    resources: Option<Resources>,
    download_timeout: Option<std::time::Duration>,
) -> Result<Worker, strata_worker::WorkerError> {
    let mut config = WorkerConfig::new(root.join("worker"), "/proc/self/exe");
    config.no_new_privs = no_new_privs;
    config.resources = resources;
    if let Some(t) = download_timeout {
        config.download_timeout = t;
    }
    Worker::new(config)
}

/// (entrypoint, cmd) as docker builds them: either overridden; an overridden entrypoint
/// drops the image's CMD.
fn entrypoint_and_cmd(config: &ImageConfig, req: &CreateContainer) -> (Vec<String>, Vec<String>) {
    let entrypoint = match &req.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !req.command.is_empty() {
        req.command.clone()
    } else if req.entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd.clone().unwrap_or_default()
    };
    (entrypoint, cmd)
}

fn image_config(
    store: &Store,
    name: &str,
) -> Result<(ImageConfig, strata_store::Image), ContainerError> {
    let image = store.image(name)?;
    let config: ImageConfig = match &image.config.config {
        Some(v) => serde_json::from_value(v.clone()).map_err(|source| ContainerError::Config {
            image: name.to_owned(),
            source,
        })?,
        None => ImageConfig::default(),
    };
    Ok((config, image))
}

/// Creates a container of `req.image` (state `created`): its config resolved from the image's
/// and the overrides, its writable layer empty. Nothing is made when anything is wrong.
pub fn create_container(store: &Store, req: &CreateContainer) -> Result<Container, ContainerError> {
    let (mut config, image) = image_config(store, &req.image)?;
    for kv in &req.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        config.env_set(k, v);
    }
    let (entrypoint, cmd) = entrypoint_and_cmd(&config, req);
    if entrypoint.is_empty() && cmd.is_empty() {
        return Err(ContainerError::NoCommand(req.image.clone()));
    }
    let stop_signal = match &req.stop_signal {
        Some(s) => s.clone(),
        None if !config.stop_signal.is_empty() => config.stop_signal.clone(),
        None => "SIGTERM".to_owned(),
    };
    if strata_worker::process::signal_number(&stop_signal).is_none() {
        return Err(ContainerError::BadSignal(stop_signal));
    }
    let restart = if req.restart.is_empty() {
        "no".to_owned()
    } else {
        req.restart.clone()
    };
    if RestartPolicy::parse(&restart)? != RestartPolicy::No && req.auto_remove {
        return Err(ContainerError::RestartWithRm);
    }
    crate::volume::check_duplicates(&req.mounts)?;
    crate::log::LogLimits::from_opts(&req.log_config)?;
    let healthcheck = effective_healthcheck(config.healthcheck.as_ref(), &req.health)?;
    let mut ports = req.ports.clone();
    if req.publish_all && req.network == NetworkMode::Default {
        for key in config.exposed_ports.keys() {
            let Some((port, proto)) = key
                .split_once('/')
                .and_then(|(p, proto)| Some((p.parse().ok()?, proto)))
                .or_else(|| Some((key.parse().ok()?, "tcp")))
            else {
                continue;
            };
            if matches!(proto, "tcp" | "udp") && !ports.iter().any(|b| b.key() == key.as_str()) {
                ports.push(strata_store::PortBinding {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: port,
                    proto: proto.to_owned(),
                });
            }
        }
    }
    if !ports.is_empty() && req.network != NetworkMode::Default {
        // docker ignores them on the host's network and refuses them on none; strata
        // refuses both rather than publish nothing.
        return Err(ContainerError::PortsOffBridge(
            network_name(req.network).to_owned(),
        ));
    }
    // docker finds a host port in use at the start; found now too, nothing is made for a
    // container that could not start (the start binds them again: they are not held).
    drop(crate::port::bind(&ports)?);
    let mounts = prepare_mounts(store, &with_image_volumes(&req.mounts, &config))?;
    let record = ContainerConfig {
        id: String::new(),
        name: String::new(),
        created: String::new(),
        image: req.image.clone(),
        image_id: image.id.clone(),
        entrypoint,
        cmd,
        env: config.env.clone(),
        working_dir: req
            .workdir
            .clone()
            .unwrap_or_else(|| config.working_dir.clone()),
        user: req.user.clone().unwrap_or_else(|| config.user.clone()),
        hostname: req.hostname.clone().unwrap_or_default(),
        network: network_name(req.network).to_owned(),
        exposed_ports: {
            let mut exposed: Vec<String> = config.exposed_ports.keys().cloned().collect();
            for p in &ports {
                if !exposed.contains(&p.key()) {
                    exposed.push(p.key());
                }
            }
            exposed
        },
        ports,
        stop_signal,
        stop_timeout: req.stop_timeout,
        auto_remove: req.auto_remove,
        restart,
        mounts,
        read_only: req.read_only,
        log_config: req.log_config.clone(),
        labels: {
            let mut labels = config.labels.clone();
            for kv in &req.labels {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
            labels
        },
        init: req.init,
        healthcheck,
        stdio: req.stdio,
    };
    let c = match store.create_container(NewContainer {
        name: req.name.clone(),
        config: record.clone(),
    }) {
        Ok(c) => c,
        Err(e) => {
            // Nothing left half-created: the anonymous volumes made for it go too.
            let _ = remove_anonymous_volumes(store, &record);
            return Err(e.into());
        }
    };
    if let Err(e) = fill_volumes(store, &c, &image) {
        let _ = store.remove_container(&c.config.id);
        let _ = remove_anonymous_volumes(store, &c.config);
        return Err(e);
    }
    Ok(c)
}

/// docker's name of a network mode.
fn network_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Default => "bridge",
        NetworkMode::None => "none",
        NetworkMode::Host => "host",
    }
}

/// The network mode of a recorded network name (docker's `default` is `bridge`).
fn network_mode(name: &str) -> NetworkMode {
    match name {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        _ => NetworkMode::Default,
    }
}

/// The directories of an image's layers, top first (its snapshots, made when missing).
fn image_layers(
    store: &Store,
    image: &strata_store::Image,
) -> Result<Vec<std::path::PathBuf>, ContainerError> {
    let mut layers: Vec<_> = {
        let _lease = store.lease()?;
        store
            .snapshots(image)?
            .into_iter()
            .map(|s| s.path)
            .collect()
    };
    layers.reverse();
    Ok(layers)
}

/// Docker's copy-up for a new container: each of its volumes that is empty gets what the
/// image has at its path.
fn fill_volumes(
    store: &Store,
    c: &Container,
    image: &strata_store::Image,
) -> Result<(), ContainerError> {
    let volumes: Vec<&MountPoint> = c
        .config
        .mounts
        .iter()
        .filter(|m| m.kind == strata_store::MountKind::Volume)
        .collect();
    if volumes.is_empty() {
        return Ok(());
    }
    let layers = image_layers(store, image)?;
    for m in volumes {
        copy_up(
            &store.volume_data(&m.name),
            &m.name,
            &m.destination,
            &layers,
        )?;
    }
    Ok(())
}

/// The mounts asked for, then an anonymous volume for each `VOLUME` of the image that none
/// of them covers (as docker makes them).
fn with_image_volumes(mounts: &[MountPoint], config: &ImageConfig) -> Vec<MountPoint> {
    let mut all = mounts.to_vec();
    for path in config.volumes.keys() {
        let Ok(mut m) = crate::volume::parse_volume(path) else {
            // Not an absolute path: docker refuses such an image at build; skipped here.
            continue;
        };
        if !all.iter().any(|have| have.destination == m.destination) {
            m.anonymous = true;
            all.push(m);
        }
    }
    all
}

/// Makes what `mounts` need before the container exists: a `-v` host directory that is
/// missing (as docker), each volume not there yet (an anonymous one gets its name here).
fn prepare_mounts(store: &Store, mounts: &[MountPoint]) -> Result<Vec<MountPoint>, ContainerError> {
    let mut out = Vec::with_capacity(mounts.len());
    let mut made = Vec::new();
    for m in mounts {
        let mut m = m.clone();
        let done = match m.kind {
            strata_store::MountKind::Bind if !m.source.exists() => {
                fs_err::create_dir_all(&m.source).map_err(|source| ContainerError::BindSource {
                    path: m.source.clone(),
                    source,
                })
            }
            strata_store::MountKind::Volume => {
                let name = (!m.anonymous).then_some(m.name.as_str());
                store
                    .create_volume(name)
                    .map(|(name, _)| {
                        if m.anonymous {
                            made.push(name.clone());
                        }
                        m.name = name;
                    })
                    .map_err(ContainerError::from)
            }
            _ => Ok(()),
        };
        if let Err(e) = done {
            for name in &made {
                let _ = store.remove_volume(name);
            }
            return Err(e);
        }
        out.push(m);
    }
    Ok(out)
}

/// Removes the anonymous volumes of a container (`rm -v`, `--rm`); its named volumes stay.
/// Call it once the container is gone, or its volumes are still in use.
pub fn remove_anonymous_volumes(
    store: &Store,
    config: &ContainerConfig,
) -> Result<(), ContainerError> {
    for m in &config.mounts {
        if m.kind == strata_store::MountKind::Volume && m.anonymous {
            match store.remove_volume(&m.name) {
                Ok(()) | Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A container's mounts as the worker takes them: tmpfs mounts as `exec.mounts` (with their
/// inputs), binds and volumes as host binds.
fn run_mounts(store: &Store, c: &Container) -> Result<RunMounts, ContainerError> {
    let (mut exec, mut inputs, mut binds) = (Vec::new(), Vec::new(), Vec::new());
    for m in &c.config.mounts {
        match m.kind {
            strata_store::MountKind::Tmpfs => {
                exec.push(strata_graph::Mount {
                    target: m.destination.clone(),
                    kind: strata_graph::MountKind::Tmpfs { size: m.tmpfs_size },
                });
                inputs.push(MountInput::None);
            }
            strata_store::MountKind::Bind => binds.push(HostBind {
                source: m.source.clone(),
                target: m.destination.clone(),
                readonly: m.readonly,
            }),
            strata_store::MountKind::Volume => {
                // Removed since (`volume rm` between create and start): made again.
                store.create_volume(Some(&m.name))?;
                binds.push(HostBind {
                    source: store.volume_data(&m.name),
                    target: m.destination.clone(),
                    readonly: m.readonly,
                });
            }
        }
    }
    Ok(RunMounts {
        exec,
        inputs,
        binds,
    })
}

/// What [`run_mounts`] hands the worker.
struct RunMounts {
    /// The op's mounts (tmpfs).
    exec: Vec<strata_graph::Mount>,
    /// Their inputs, one each.
    inputs: Vec<MountInput>,
    /// Binds and volumes.
    binds: Vec<HostBind>,
}

/// docker's copy-up, when a container is created: an empty volume `data` gets the files the
/// image (`layers`, top first) has at `target`. They are copied beside it and renamed over the
/// empty directory, so a volume is never seen half filled; of two containers doing it at
/// once, the first rename wins. Blocking.
fn copy_up(
    data: &Path,
    name: &str,
    target: &str,
    layers: &[std::path::PathBuf],
) -> Result<(), ContainerError> {
    let empty = fs_err::read_dir(data)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let err = |source| ContainerError::CopyUp {
        name: name.to_owned(),
        target: target.to_owned(),
        source: Box::new(source),
    };
    let tmp = data.with_file_name(format!(".copy-up-{}", std::process::id()));
    let _ = fs_err::remove_dir_all(&tmp);
    fs_err::create_dir(&tmp).map_err(|e| {
        err(strata_worker::FileError::Io {
            what: "create",
            path: tmp.clone(),
            source: e,
        })
    })?;
    let copied = match strata_worker::copy_up_volume(layers, target, &tmp) {
        Ok(c) => c,
        Err(e) => {
            let _ = fs_err::remove_dir_all(&tmp);
            return Err(err(e));
        }
    };
    if !copied || fs_err::rename(&tmp, data).is_err() {
        let _ = fs_err::remove_dir_all(&tmp);
    }
    Ok(())
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// `--restart`: whether the monitor runs the command again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// `no`: never.
    No,
    /// `on-failure[:N]`: after a non-zero exit, at most N times (0: no limit).
    OnFailure(u32),
    /// `always`: after any exit, unless `stop` or `kill` ended it.
    Always,
    /// `unless-stopped`: as `always` (they differ only when a daemon restarts, and there is
    /// none).
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses docker's `--restart` value.
    pub fn parse(text: &str) -> Result<RestartPolicy, ContainerError> {
        let bad = || ContainerError::BadRestart(text.to_owned());
        Ok(match text.split_once(':') {
            None => match text {
                "" | "no" => RestartPolicy::No,
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                "on-failure" => RestartPolicy::OnFailure(0),
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure(n.parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        })
    }

    /// Whether a run that ended with `code` is run again, after `restarts` restarts, when
    /// `stop` or `kill` ended it (`by_user`).
    fn restarts(self, code: i32, restarts: u32, by_user: bool) -> bool {
        match self {
            RestartPolicy::No => false,
            _ if by_user => false,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// Runs container `name_or_id` as its monitor until its command exits for good: takes its
/// `monitor.lock` (refused if another monitor has it), records it running with its pid once
/// started (then calls `started`, once), appends each output line to its json-file log and
/// hands it to `echo`, records how it ended, and runs it again as its restart policy says
/// (waiting 100 ms, doubling up to a minute, between runs). A `--rm` container is removed at
/// the end. `cancel` kills it (recorded as killed by SIGKILL, 137) and ends the monitor.
pub async fn monitor_container(
    store: &Store,
    name_or_id: &str,
    echo: impl FnMut(Stream, &[u8]) + Send,
    started: impl FnOnce(u32) + Send,
    cancel: CancellationToken,
) -> Result<Outcome, ContainerError> {
    monitor(store, name_or_id, None::<fn()>, echo, started, cancel).await
}

/// [`monitor_container`] for a client that attaches first (`run -i`/`-t`, `start -a -i`):
/// once the container's `attach.sock` listens, calls `listening` and waits (at most
/// [`FIRST_CLIENT_WAIT`]) for a first client before it starts the command, so that the client
/// misses no output and the terminal has its size from the start.
pub async fn monitor_container_attached(
    store: &Store,
    name_or_id: &str,
    listening: impl FnOnce() + Send,
    started: impl FnOnce(u32) + Send,
    cancel: CancellationToken,
) -> Result<Outcome, ContainerError> {
    monitor(
        store,
        name_or_id,
        Some(listening),
        |_, _| {},
        started,
        cancel,
    )
    .await
}

/// How long a monitor waits for the client that asked it to ([`monitor_container_attached`]).
pub const FIRST_CLIENT_WAIT: Duration = Duration::from_secs(30);

async fn monitor(
    store: &Store,
    name_or_id: &str,
    listening: Option<impl FnOnce() + Send>,
    mut echo: impl FnMut(Stream, &[u8]) + Send,
    started: impl FnOnce(u32) + Send,
    cancel: CancellationToken,
) -> Result<Outcome, ContainerError> {
    let c = store.container(name_or_id)?;
    let id = c.config.id.clone();
    let Some(_monitor) = store.lock_container_monitor(&id)? else {
        return Err(ContainerError::AlreadyRunning(c.config.name));
    };
    let hub = Hub::listen(&c).map_err(|source| ContainerError::Attach {
        path: c.dir.join("attach.sock"),
        source,
    })?;
    if let Some(listening) = listening {
        listening();
        hub.wait_first(FIRST_CLIENT_WAIT).await;
    }
    let policy = RestartPolicy::parse(&c.config.restart)?;
    let mut started = Some(started);
    let mut delay = Duration::from_millis(100);
    loop {
        let outcome = run_once(store, &c, &hub, &mut echo, &mut started, cancel.clone()).await;
        let recorded = record_end(store, &id, &outcome);
        let code = match &outcome {
            Ok(Outcome::Exited(code) | Outcome::StartFailed { code, .. }) => *code,
            Err(_) => 125,
        };
        if let Err(e) = recorded {
            hub.run_ended(code);
            return Err(e);
        }
        let again = match &outcome {
            Ok(Outcome::Exited(code)) if !cancel.is_cancelled() => {
                // `stop`, `kill` and `rm -f` mark it before signalling; a removed container
                // is not brought back.
                match store.container(&id) {
                    Ok(now) => {
                        policy.restarts(*code, now.state.restart_count, now.state.stopped_by_user)
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if !again {
            if c.config.auto_remove {
                match store.remove_container(&id) {
                    Ok(()) => {
                        let removed = remove_anonymous_volumes(store, &c.config);
                        hub.run_ended(code);
                        removed?
                    }
                    Err(strata_store::ContainerError::NotFound(_)) => {}
                    Err(e) => {
                        hub.run_ended(code);
                        return Err(e.into());
                    }
                }
            }
            // Attached clients are told once the records say so (and `--rm` removed it).
            hub.run_ended(code);
            return outcome;
        }
        hub.run_ended(code);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return outcome,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
        let counted = store.update_container_state(&id, |c| {
            c.state.restart_count += 1;
            Ok(())
        });
        if counted.is_err() {
            // Removed meanwhile.
            return outcome;
        }
    }
}

/// One run of the container's command, recorded in its state and log.
async fn run_once<S: FnOnce(u32) + Send>(
    store: &Store,
    c: &Container,
    hub: &Hub,
    echo: &mut (impl FnMut(Stream, &[u8]) + Send),
    started: &mut Option<S>,
    cancel: CancellationToken,
) -> Result<Outcome, ContainerError> {
    let id = c.config.id.clone();
    sweep_scratch(&c.dir);
    let (_, image) = image_config(store, c.config.image_id.as_str())?;
    let lowers = image_layers(store, &image)?;
    let RunMounts {
        exec: mounts,
        inputs,
        binds,
    } = run_mounts(store, c)?;
    let exec = ExecOp {
        args: c.config.argv(),
        env: c.config.env.clone(),
        cwd: if c.config.working_dir.is_empty() {
            "/".to_owned()
        } else {
            c.config.working_dir.clone()
        },
        user: c.config.user.clone(),
        network: network_mode(&c.config.network),
        security: SecurityMode::Sandbox,
        mounts,
    };
    let hostname = if c.config.hostname.is_empty() {
        c.config.short_id().to_owned()
    } else {
        c.config.hostname.clone()
    };
    let log_path = c.log_path();
    let log_err = |source| ContainerError::Log {
        path: log_path.clone(),
        source,
    };
    let limits = crate::log::LogLimits::from_opts(&c.config.log_config)?;
    let log = crate::log::JsonLog::open(&log_path, limits).map_err(log_err)?;
    // Written by the output callback, or with a terminal by its reader.
    let log = std::sync::Mutex::new(log);
    let log_line = |name: &str, line: &[u8]| {
        let entry = LogLine {
            log: format!("{}\n", String::from_utf8_lossy(line)),
            stream: name.to_owned(),
            time: now(),
        };
        if let Ok(mut bytes) = serde_json::to_vec(&entry) {
            bytes.push(b'\n');
            // A full disk loses log lines, never the container.
            let _ = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .write(&bytes);
        }
    };
    let mut exec = exec;
    let stdio =
        container_stdio(c, hub, &mut exec.env).map_err(|source| ContainerError::Attach {
            path: c.dir.join("attach.sock"),
            source,
        })?;
    // Bound before the start: a port in use fails it with nothing made.
    let published = match c.config.ports.is_empty() {
        true => None,
        false => Some(crate::port::bind(&c.config.ports)?),
    };
    let on_bridge = exec.network == NetworkMode::Default;
    let bound_ports = published
        .as_ref()
        .map(|p| p.bindings.clone())
        .unwrap_or_default();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut addr_tx = Some(addr_tx);
    let worker = new_worker(store.root(), false, None, None)?;
    let monitor_pid = std::process::id();
    let mut record_error = None;
    let probe = Probe::of(&c.config)?;
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let mut pid_tx = Some(pid_tx);
    let probes_done = CancellationToken::new();
    let probes = async {
        if let Some(probe) = &probe {
            crate::health::probe_loop(store, &id, probe, pid_rx, probes_done.clone()).await;
        }
    };
    let RunIo {
        stdio,
        console,
        mut pipe,
    } = stdio;
    // Told once the start is reported (or the run is over): the terminal's output waits for
    // it, as the worker holds back a pipe's (`Worker::run_with_stdio`), so that an attached
    // client, which waits to hear of the start before it reads, cannot hold up that report.
    let start_known = CancellationToken::new();
    let terminal = read_terminal(
        console,
        hub,
        c.config.stdio.open_stdin,
        &log_line,
        &start_known,
    );
    let run = worker.run_with_stdio(
        RunRequest {
            exec,
            lowers,
            upper: c.upper_dir(),
            mounts: inputs,
            hostname: Some(hostname),
            binds,
            read_only_root: c.config.read_only,
            container_network: true,
        },
        stdio,
        |stream, line| {
            let (stream, name) = match stream {
                OutputStream::Stdout => (Stream::Stdout, "stdout"),
                OutputStream::Stderr => (Stream::Stderr, "stderr"),
            };
            log_line(name, line);
            hub.output(stream == Stream::Stderr, line, true);
            echo(stream, line);
        },
        |pid| {
            if let Some(fd) = pipe.take() {
                hub.run_started(Some(fd), None);
            }
            let network = if on_bridge {
                match strata_worker::container_endpoint(pid) {
                    Ok(e) => Some(strata_store::NetworkState {
                        ip_address: e.address.to_string(),
                        prefix_len: e.prefix_len,
                        gateway: e.gateway.to_string(),
                        mac_address: e.mac,
                        ports: bound_ports.clone(),
                    }),
                    // It has exited already: no address to record or forward to.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => {
                        record_error = Some(ContainerError::Address {
                            name: c.config.name.clone(),
                            source,
                        });
                        None
                    }
                }
            } else {
                None
            };
            if let (Some(n), Some(tx)) = (&network, addr_tx.take()) {
                let _ = tx.send((n.ip_address.clone(), pid));
            }
            let recorded = store.update_container_state(&id, |c| {
                c.state.network = network.clone();
                c.state.status = ContainerStatus::Running;
                c.state.pid = pid;
                c.state.monitor_pid = monitor_pid;
                c.state.exit_code = 0;
                c.state.error.clear();
                c.state.started_at = now();
                c.state.finished_at = NEVER.to_owned();
                c.state.stopped_by_user = false;
                c.state.monitor_died = false;
                c.state.health = probe.as_ref().map(|_| crate::health::starting());
                Ok(())
            });
            match recorded {
                Ok(_) => {
                    if let Some(tx) = pid_tx.take() {
                        let _ = tx.send(pid);
                    }
                    if let Some(f) = started.take() {
                        f(pid);
                    }
                }
                Err(e) => record_error = Some(e.into()),
            }
            start_known.cancel();
        },
        cancel,
    );
    let proxy = async {
        let Some(published) = published else {
            return;
        };
        let to = tokio::select! {
            to = addr_rx => to.ok().and_then(|(a, pid)| Some((a.parse().ok()?, pid))),
            // It never started.
            () = probes_done.cancelled() => None,
        };
        if let Some((addr, pid)) = to {
            // Rootless, the host has no route to the container's address: the proxy
            // connects from inside its namespace.
            let netns_of = strata_store::confined::in_user_namespace().then_some(pid);
            published.serve(addr, netns_of, probes_done.clone()).await;
        }
    };
    let (result, (), (), ()) = tokio::join!(
        async {
            let result = run.await;
            start_known.cancel();
            probes_done.cancel();
            result
        },
        probes,
        terminal,
        proxy
    );
    drop(worker);
    sweep_scratch(&c.dir);
    let outcome = match result {
        Ok(_) => Ok(Outcome::Exited(0)),
        Err(RunError::Exit { code, .. } | RunError::Limit { code, .. }) => {
            Ok(Outcome::Exited(code))
        }
        Err(RunError::Cancelled) => Ok(Outcome::Exited(137)),
        Err(RunError::Start { message, .. }) => Ok(Outcome::StartFailed {
            code: start_failure_code(&message),
            message,
        }),
        Err(source) => Err(ContainerError::Run {
            name: c.config.name.clone(),
            source,
        }),
    };
    if let Some(e) = record_error {
        return Err(e);
    }
    outcome
}

/// Records how a run ended: exited with its code, or (as docker) created with the code and
/// the reason when it could not start.
fn record_end(
    store: &Store,
    id: &str,
    outcome: &Result<Outcome, ContainerError>,
) -> Result<(), ContainerError> {
    let finished = store.update_container_state(id, |c| {
        c.state.pid = 0;
        c.state.network = None;
        c.state.monitor_pid = 0;
        match outcome {
            Ok(Outcome::Exited(code)) => {
                c.state.status = ContainerStatus::Exited;
                c.state.exit_code = *code;
                c.state.finished_at = now();
            }
            Ok(Outcome::StartFailed { code, message }) => {
                c.state.status = ContainerStatus::Created;
                c.state.exit_code = *code;
                c.state.error = message.clone();
            }
            Err(e) => {
                c.state.status = ContainerStatus::Created;
                c.state.exit_code = 125;
                c.state.error = crate::error::error_chain(e);
            }
        }
        Ok(())
    });
    match finished {
        // Removed while it ran (`rm -f`): nothing to record.
        Ok(_) | Err(strata_store::ContainerError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// docker's exit code for a command that could not start.
pub(crate) fn start_failure_code(message: &str) -> i32 {
    if message.contains("not found") || message.contains("No such file") {
        127
    } else {
        126
    }
}

/// Deletes run scratch directories a previous monitor of this container left (the worker
/// deletes them in the background, which a monitor ending right after may not wait for).
fn sweep_scratch(dir: &Path) {
    if let Ok(entries) = fs_err::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".strata-run-")
            {
                let _ = fs_err::remove_dir_all(entry.path());
            }
        }
    }
}

/// A run's standard input and terminal, as [`container_stdio`] makes them.
struct RunIo {
    /// What the worker gives the command.
    stdio: RunStdio,
    /// `-t`: our end of the console socket the sandbox sends the terminal's master on.
    console: Option<std::os::unix::net::UnixStream>,
    /// `-i` without `-t`: the write end of the command's stdin pipe.
    pipe: Option<std::os::fd::OwnedFd>,
}

/// `-t`: a pseudo-terminal, made in the sandbox, of the size the attached client gave (and
/// `TERM=xterm` when the image sets no TERM, as docker's); `-i`: a pipe; else `/dev/null`.
fn container_stdio(c: &Container, hub: &Hub, env: &mut Vec<String>) -> std::io::Result<RunIo> {
    let stdio = c.config.stdio;
    if stdio.tty {
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".to_owned());
        }
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
        return Ok(RunIo {
            stdio: RunStdio::Tty {
                console: theirs.into(),
                size: hub.size(),
            },
            console: Some(mine),
            pipe: None,
        });
    }
    if stdio.open_stdin {
        let (r, w) = std::io::pipe()?;
        return Ok(RunIo {
            stdio: RunStdio::Pipe(r.into()),
            console: None,
            pipe: Some(w.into()),
        });
    }
    Ok(RunIo {
        stdio: RunStdio::Null,
        console: None,
        pipe: None,
    })
}

/// Reads a run's terminal until it hangs up (the command and all it started are gone): to
/// the attached clients as it comes, to the log by lines (`\r\n` kept, one stream,
/// "stdout", as docker's). Its master comes from the sandbox on `console` first. Nothing to
/// do without a terminal.
async fn read_terminal(
    console: Option<std::os::unix::net::UnixStream>,
    hub: &Hub,
    open_stdin: bool,
    log_line: &(impl Fn(&str, &[u8]) + Sync),
    start_known: &CancellationToken,
) {
    let Some(console) = console else {
        return;
    };
    let (master_tx, master_rx) = tokio::sync::oneshot::channel();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let reading = std::thread::Builder::new()
        .name("strata-tty".into())
        .spawn(move || {
            use std::io::Read as _;
            use std::os::fd::AsFd as _;
            let Ok(master) = strata_worker::terminal::receive_master(console.as_fd()) else {
                return;
            };
            drop(console);
            let (Ok(input), Ok(resize)) = (master.try_clone(), master.try_clone()) else {
                return;
            };
            if master_tx.send((input, resize)).is_err() {
                return;
            }
            let mut f = std::fs::File::from(master);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO: every descriptor of its slave side is closed.
                    Err(_) => break,
                }
            }
        });
    if reading.is_err() {
        return;
    }
    let Ok((input, resize)) = master_rx.await else {
        return;
    };
    hub.run_started(open_stdin.then_some(input), Some(resize));
    start_known.cancelled().await;
    let mut lines = strata_worker::Lines::default();
    while let Some(chunk) = rx.recv().await {
        hub.output(false, &chunk, false);
        lines.push(&chunk, |l| log_line("stdout", l));
    }
    lines.finish(|l| log_line("stdout", l));
}

/// Waits until container `id` no longer runs (or is gone), for at most `timeout`; returns it
/// as last seen (`None`: removed).
pub fn wait_stopped(
    store: &Store,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Option<Container>, ContainerError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let c = match store.container(id) {
            Ok(c) => c,
            Err(strata_store::ContainerError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if c.state.status != ContainerStatus::Running {
            return Ok(Some(c));
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Ok(Some(c));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Sends `signal` (a name or number) to container `c`'s process; `by_user` marks it so that
/// a restart policy does not bring it back.
pub fn kill_container(store: &Store, c: &Container, signal: &str) -> Result<(), ContainerError> {
    let sig = strata_worker::process::signal_number(signal)
        .ok_or_else(|| ContainerError::BadSignal(signal.to_owned()))?;
    let c = store.update_container_state(&c.config.id, |c| {
        if c.state.status == ContainerStatus::Running {
            c.state.stopped_by_user = true;
        }
        Ok(())
    })?;
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return Err(ContainerError::NotRunning(c.config.name));
    }
    strata_worker::process::signal(c.state.pid, sig)
        .map(|_| ())
        .map_err(|source| ContainerError::Signal {
            name: c.config.name.clone(),
            source,
        })?;
    // A paused container gets the signal once thawed, as docker's.
    crate::container_pause::thaw_if_paused(&c).map_err(|e| ContainerError::Signal {
        name: c.config.name.clone(),
        source: std::io::Error::other(e),
    })
}

/// `docker stop`: the container's stop signal, then SIGKILL after `timeout` seconds (`None`:
/// its `--stop-timeout`, else 10); returns once it has stopped. A container that does not run
/// is left as it is.
pub fn stop_container(
    store: &Store,
    c: &Container,
    timeout: Option<u32>,
) -> Result<(), ContainerError> {
    let id = &c.config.id;
    // Also when it does not run: its monitor may be waiting to restart it.
    let c = &store.update_container_state(id, |c| {
        c.state.stopped_by_user = true;
        Ok(())
    })?;
    if c.state.status != ContainerStatus::Running {
        return Ok(());
    }
    let secs = timeout.or(c.config.stop_timeout).unwrap_or(10);
    match kill_container(store, c, &c.config.stop_signal) {
        Ok(()) => {}
        // It ended meanwhile.
        Err(ContainerError::NotRunning(_)) => return Ok(()),
        Err(e) => return Err(e),
    }
    let Some(seen) = wait_stopped(store, id, Some(Duration::from_secs(u64::from(secs))))? else {
        return Ok(());
    };
    if seen.state.status != ContainerStatus::Running {
        return Ok(());
    }
    match kill_container(store, &seen, "SIGKILL") {
        Ok(()) | Err(ContainerError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    match wait_stopped(store, id, Some(Duration::from_secs(10)))? {
        Some(c) if c.state.status == ContainerStatus::Running => {
            Err(ContainerError::Unstoppable(c.config.name))
        }
        _ => Ok(()),
    }
}

/// `docker rm [-f]`: removes container `c`; `force` kills it first when it runs.
pub fn remove_container(store: &Store, c: &Container, force: bool) -> Result<(), ContainerError> {
    if c.state.status == ContainerStatus::Running && force {
        match kill_container(store, c, "SIGKILL") {
            Ok(()) | Err(ContainerError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        match wait_stopped(store, &c.config.id, Some(Duration::from_secs(10)))? {
            None => return Ok(()),
            Some(c) if c.state.status == ContainerStatus::Running => {
                return Err(ContainerError::Unstoppable(c.config.name));
            }
            Some(_) => {}
        }
    }
    match store.remove_container(&c.config.id) {
        // A `--rm` container removed itself meanwhile.
        Err(strata_store::ContainerError::NotFound(_)) if force => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(entrypoint: Option<&str>, command: &[&str]) -> CreateContainer {
        CreateContainer {
            image: "i".into(),
            name: None,
            entrypoint: entrypoint.map(Into::into),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            workdir: None,
            user: None,
            hostname: None,
            network: NetworkMode::Host,
            ports: Vec::new(),
            publish_all: false,
            auto_remove: false,
            stop_signal: None,
            stop_timeout: None,
            restart: String::new(),
            mounts: Vec::new(),
            read_only: false,
            log_config: Default::default(),
            labels: Vec::new(),
            init: false,
            health: HealthOptions::default(),
            stdio: Default::default(),
        }
    }

    #[test]
    fn argv_is_entrypoint_then_cmd_as_docker_overrides_them() {
        let config = ImageConfig {
            entrypoint: Some(vec!["/e".into()]),
            cmd: Some(vec!["c".into()]),
            ..ImageConfig::default()
        };
        let argv = |r: &CreateContainer| {
            let (e, c) = entrypoint_and_cmd(&config, r);
            e.into_iter().chain(c).collect::<Vec<_>>()
        };
        assert_eq!(argv(&req(None, &[])), ["/e", "c"]);
        assert_eq!(argv(&req(None, &["x"])), ["/e", "x"]);
        assert_eq!(argv(&req(Some("/o"), &[])), ["/o"]);
        assert_eq!(argv(&req(Some(""), &["sh"])), ["sh"]);
    }

    #[test]
    fn restart_policies_as_docker_applies_them() {
        let p = |t| RestartPolicy::parse(t).unwrap();
        assert_eq!(p("on-failure:3"), RestartPolicy::OnFailure(3));
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
        assert!(!p("no").restarts(1, 0, false));
        assert!(p("on-failure").restarts(1, 100, false));
        assert!(!p("on-failure").restarts(0, 0, false));
        assert!(p("on-failure:2").restarts(1, 1, false));
        assert!(!p("on-failure:2").restarts(1, 2, false));
        assert!(p("always").restarts(0, 7, false));
        assert!(!p("always").restarts(137, 0, true));
        assert!(!p("unless-stopped").restarts(143, 0, true));
    }

    #[test]
    fn a_command_that_cannot_start_gets_dockers_code() {
        assert_eq!(
            start_failure_code("exec: \"nosuch\": executable file not found in $PATH"),
            127
        );
        assert_eq!(
            start_failure_code("exec /etc/passwd: permission denied"),
            126
        );
    }
}
