//! Containers' records, without a daemon: one directory per container under
//! `<root>/containers/`, which any `strata` process may read and change. What the files mean,
//! who writes them and what a crash leaves is in `docs/containers.md`; in short:
//!
//! - `config.json` is what the container was created with (written once, and again by
//!   `rename`); `state.json` is where it is in its life (created, running, exited, its pid and
//!   exit code). Both are replaced atomically ([`crate::durable`]), so a reader never takes a
//!   lock and never sees a torn file.
//! - `lock` is held exclusive around each read-modify-write of `state.json`; `monitor.lock` is
//!   held exclusive by the container's monitor process for as long as it lives. A state that
//!   says `running` while nobody holds `monitor.lock` was left by a monitor that died (killed,
//!   or the machine restarted): [`Store::container`] repairs it to `exited` with an error that
//!   says so, and every command reads containers through it.
//! - `containers/containers.lock` is held exclusive while a container is created, renamed or
//!   removed, so that names stay unique. A container is made in `.new-<id>/` and renamed into
//!   place, and removed by renaming it to `.removing-<id>/` first: a crash leaves one of those,
//!   which the next create or `system check` deletes.
//! - `upper/` is the writable layer of the container's root filesystem (an overlay on the
//!   image's snapshots); it lives as long as the container, across stops and starts.

use crate::check::chain;
use crate::digest::Digest;
use crate::durable::write_atomic;
use crate::error::StoreError;
use crate::lock::FileLock;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// What a container was created with: docker's `Config` and `HostConfig`, the parts strata
/// implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The 64-hex ID.
    pub id: String,
    /// The unique name (without docker's leading `/`).
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's ID (a container keeps its image from being removed).
    pub image_id: Digest,
    /// The entrypoint in effect (the image's, or `--entrypoint`).
    pub entrypoint: Vec<String>,
    /// The command in effect (the image's CMD, or the arguments given).
    pub cmd: Vec<String>,
    /// The environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory (empty: `/`).
    pub working_dir: String,
    /// The user (empty: root).
    pub user: String,
    /// The hostname.
    pub hostname: String,
    /// The network: `bridge`, `host` or `none`.
    pub network: String,
    /// `-p`: the ports published, in the order given.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// The ports it exposes (`80/tcp`): the image's EXPOSE and the published ones.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// The signal `stop` sends first (`SIGTERM` unless the image's STOPSIGNAL says else).
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL (`None`: 10).
    pub stop_timeout: Option<u32>,
    /// `--rm`: removed once it exits.
    pub auto_remove: bool,
    /// `--restart`: `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    pub restart: String,
    /// `-v`, `--mount`, `--tmpfs`, in the order given.
    #[serde(default)]
    pub mounts: Vec<crate::volume::MountPoint>,
    /// `--read-only`: the root filesystem is read-only (its mounts are not).
    #[serde(default)]
    pub read_only: bool,
    /// `--log-opt KEY=VALUE` of the json-file log (`max-size`, `max-file`).
    #[serde(default)]
    pub log_config: std::collections::BTreeMap<String, String>,
    /// Labels: the image's, then `--label` over them.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--init`: asked for an init as PID 1. The sandbox always has one (its init is PID 1
    /// and the command its child), so this only records the request for `inspect`.
    #[serde(default)]
    pub init: bool,
    /// The healthcheck in effect, docker's `Config.Healthcheck` JSON (`Test`, `Interval`…,
    /// as `strata_graph::Healthcheck` reads it): the image's with `--health-*` over it;
    /// `None`: no probe (none in the image, `--no-healthcheck`, or `Test: ["NONE"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    /// Its standard input and terminal (`-i`, `-t`).
    #[serde(default)]
    pub stdio: ContainerStdio,
}

/// A container's standard input and terminal, docker's `Config.{Tty, OpenStdin,
/// StdinOnce, AttachStdin}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStdio {
    /// `-t`: a pseudo-terminal is its stdin, stdout and stderr.
    pub tty: bool,
    /// `-i`: its stdin stays open (a pipe, or the terminal's input), fed by whoever attaches.
    pub open_stdin: bool,
    /// Its stdin is closed when the first attached client's input ends (`run -i` in the
    /// foreground, as docker's).
    pub stdin_once: bool,
    /// `run -i` in the foreground attached the caller's stdin.
    pub attach_stdin: bool,
}

impl ContainerConfig {
    /// The argv it runs: entrypoint then command.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }

    /// The 12-character ID `ps` shows.
    pub fn short_id(&self) -> &str {
        // IDs are hex; a hand-edited one is shown whole rather than cut inside a character.
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// A published port (`-p`): docker's `HostConfig.PortBindings` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address listened on (empty: every address, `0.0.0.0`).
    pub host_ip: String,
    /// The host port (0: a free one, picked at each start).
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

impl PortBinding {
    /// docker's key for the container's side, `80/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// The host address as docker shows it (`0.0.0.0` for every address).
    pub fn host_ip_or_any(&self) -> &str {
        if self.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.host_ip
        }
    }
}

/// Where a running container is on its network: docker's `NetworkSettings`, the parts strata
/// implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Its address on the bridge.
    pub ip_address: String,
    /// The bridge network's prefix length.
    pub prefix_len: u8,
    /// Its gateway (the bridge's address).
    pub gateway: String,
    /// Its MAC address (empty when not known).
    pub mac_address: String,
    /// Its published ports, each with the host port it got.
    pub ports: Vec<PortBinding>,
}

/// Where a container is in its life, as docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Made, never started (or its start failed).
    Created,
    /// Its process runs, watched by its monitor.
    Running,
    /// It ran and stopped.
    Exited,
}

impl ContainerStatus {
    /// docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Exited => "exited",
        }
    }
}

/// docker's time for "never".
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// A container's state: docker's `State`, the parts strata implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Where it is in its life.
    pub status: ContainerStatus,
    /// The host pid of its process while running, else 0.
    pub pid: u32,
    /// The pid of its monitor while running, else 0.
    pub monitor_pid: u32,
    /// The exit code of its last run (0 before any).
    pub exit_code: i32,
    /// Why it could not start or why its monitor is gone; empty when none.
    pub error: String,
    /// When its last run started (RFC 3339; [`NEVER`] before any).
    pub started_at: String,
    /// When its last run ended (RFC 3339; [`NEVER`] before any).
    pub finished_at: String,
    /// `stop` or `kill` asked it to end (so `--restart` does not bring it back).
    pub stopped_by_user: bool,
    /// How many times its monitor restarted it.
    pub restart_count: u32,
    /// Its last run ended because its monitor died (killed, or the machine restarted), not
    /// because its command exited: `system restart-containers` brings such containers back
    /// when their restart policy says so.
    #[serde(default)]
    pub monitor_died: bool,
    /// Its healthcheck's results while it has one (docker's `State.Health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Its address and published ports while it runs on the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkState>,
}

/// docker's `State.Health`: where the healthcheck stands and its last results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failed probes in a row (past the start period).
    pub failing_streak: u32,
    /// The last five probes, oldest first.
    pub log: Vec<HealthProbe>,
}

/// One healthcheck probe as docker records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthProbe {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended (RFC 3339).
    pub end: String,
    /// Its exit code (-1: it timed out or could not run).
    pub exit_code: i32,
    /// Its output, stdout then stderr, at most 4096 bytes.
    pub output: String,
}

impl ContainerState {
    fn new() -> ContainerState {
        ContainerState {
            status: ContainerStatus::Created,
            pid: 0,
            monitor_pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: NEVER.to_owned(),
            finished_at: NEVER.to_owned(),
            stopped_by_user: false,
            restart_count: 0,
            monitor_died: false,
            health: None,
            network: None,
        }
    }
}

/// A container as read from the store.
#[derive(Debug, Clone)]
pub struct Container {
    /// What it was created with.
    pub config: ContainerConfig,
    /// Where it is now (repaired if its monitor died).
    pub state: ContainerState,
    /// Its directory.
    pub dir: PathBuf,
}

impl Container {
    /// The writable layer of its root filesystem.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Its json-file log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("json.log")
    }

    /// Its json-file log and the files rotated from it (`json.log.1`, ...) that exist,
    /// oldest first.
    pub fn log_files(&self) -> Vec<PathBuf> {
        let current = self.log_path();
        let mut files: Vec<PathBuf> = (1..)
            .map(|i| PathBuf::from(format!("{}.{i}", current.display())))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        if current.exists() {
            files.push(current);
        }
        files
    }

    /// The lock its monitor holds for its whole life.
    pub fn monitor_lock_path(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }
}

/// One line of a container's log (`json.log`), docker's json-file format: one object per
/// line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The line, with its newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was written (RFC 3339 with nanoseconds).
    pub time: String,
}

/// Held by a container's monitor for as long as it lives: while it is held, a `running`
/// state is true.
#[derive(Debug)]
pub struct MonitorLock {
    _lock: FileLock,
}

/// Why a container operation failed, in docker's words where docker has some.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// No container has this ID, ID prefix or name.
    #[error("No such container: {0}")]
    NotFound(String),
    /// An ID prefix matches several containers.
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// The name is taken.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// A name docker would refuse.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// `rm` of a running container without force.
    #[error(
        "cannot remove container \"/{name}\": container is running: stop the container before removing or force remove"
    )]
    Running {
        /// Its name.
        name: String,
    },
    /// A container's files do not parse.
    #[error("container {id} has an unreadable {file}")]
    Corrupt {
        /// Its ID.
        id: String,
        /// `config.json` or `state.json`.
        file: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::durable::DurableError> for ContainerError {
    fn from(e: crate::durable::DurableError) -> ContainerError {
        ContainerError::Store(e.into())
    }
}

/// What [`Store::create_container`] needs; the ID, name (when `None`) and times are made here.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// `--name`, or `None` for a random `adjective_noun`.
    pub name: Option<String>,
    /// The rest of the config; its `id`, `name` and `created` are replaced.
    pub config: ContainerConfig,
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "eager",
    "elated",
    "epic",
    "focused",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];
const NOUNS: &[&str] = &[
    "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday", "fermi",
    "galileo", "gauss", "hopper", "hypatia", "kepler", "knuth", "lamport", "liskov", "lovelace",
    "maxwell", "meitner", "newton", "noether", "pascal", "planck", "ritchie", "shannon", "tesla",
    "thompson", "torvalds", "turing", "wozniak", "yalow",
];

/// `n` random bytes from the kernel.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut buf = [0u8; N];
    let path = Path::new("/dev/urandom");
    fs_err::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(StoreError::io("read", path))?;
    Ok(buf)
}

/// Whether docker accepts `name` as a container name.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The names in directory `dir`, in no order (none when it does not exist).
pub(crate) fn entry_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Deletes the `.new-*` and `.removing-*` directories in `dir` that crashed creates and
/// removes (of containers, of volumes) left; returns how many. The caller holds the lock
/// those are made under.
pub(crate) fn sweep_leftovers(dir: &Path) -> Result<usize, StoreError> {
    let mut swept = 0;
    for name in entry_names(dir)? {
        if name.starts_with(".new-") || name.starts_with(".removing-") {
            let path = dir.join(name);
            fs_err::remove_dir_all(&path).map_err(StoreError::io("remove", &path))?;
            swept += 1;
        }
    }
    Ok(swept)
}

impl Store {
    fn containers_dir(&self) -> PathBuf {
        self.root().join("containers")
    }

    /// Takes `containers.lock` (made with its directory when missing).
    fn containers_lock(&self) -> Result<FileLock, StoreError> {
        let dir = self.containers_dir();
        fs_err::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        FileLock::exclusive(&dir.join("containers.lock"))
    }

    /// The IDs of every container, in no order (crash leftovers skipped).
    fn container_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = entry_names(&self.containers_dir())?;
        ids.retain(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(ids)
    }

    /// Deletes what crashed creates and removes left (`.new-*`, `.removing-*`). The caller
    /// holds `containers.lock`.
    fn sweep_container_leftovers(&self) -> Result<usize, StoreError> {
        sweep_leftovers(&self.containers_dir())
    }

    fn read_container_files(&self, id: &str) -> Result<Container, ContainerError> {
        let dir = self.containers_dir().join(id);
        let read = |file: &'static str| -> Result<Vec<u8>, ContainerError> {
            let path = dir.join(file);
            fs_err::read(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ContainerError::NotFound(id.to_owned())
                } else {
                    StoreError::io("read", &path)(e).into()
                }
            })
        };
        let corrupt = |file| {
            let id = id.to_owned();
            move |source| ContainerError::Corrupt { id, file, source }
        };
        let config: ContainerConfig =
            serde_json::from_slice(&read("config.json")?).map_err(corrupt("config.json"))?;
        let state: ContainerState =
            serde_json::from_slice(&read("state.json")?).map_err(corrupt("state.json"))?;
        Ok(Container { config, state, dir })
    }

    /// Every container (repaired where its monitor died), oldest first.
    pub fn containers(&self) -> Result<Vec<Container>, ContainerError> {
        let mut all = Vec::new();
        for id in self.container_ids()? {
            match self.container_by_id(&id) {
                Ok(c) => all.push(c),
                // Removed meanwhile.
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // By time, not by text: RFC 3339 strings drop trailing zeros of the fraction.
        let created = |c: &Container| c.config.created.parse::<jiff::Timestamp>().ok();
        all.sort_by(|a, b| (created(a), &a.config.id).cmp(&(created(b), &b.config.id)));
        Ok(all)
    }

    fn container_by_id(&self, id: &str) -> Result<Container, ContainerError> {
        let c = self.read_container_files(id)?;
        if c.state.status == ContainerStatus::Running && !monitor_alive(&c)? {
            return self.repair_dead_monitor(id);
        }
        Ok(c)
    }

    /// A state that says running without a live monitor becomes exited, under the lock.
    fn repair_dead_monitor(&self, id: &str) -> Result<Container, ContainerError> {
        self.update_container_state(id, |c| {
            if c.state.status == ContainerStatus::Running && !monitor_alive(c)? {
                let pid = c.state.monitor_pid;
                c.state = ContainerState {
                    status: ContainerStatus::Exited,
                    pid: 0,
                    monitor_pid: 0,
                    exit_code: 255,
                    error: format!(
                        "the container's monitor (pid {pid}) died; its processes were stopped with it"
                    ),
                    finished_at: now(),
                    monitor_died: true,
                    network: None,
                    ..c.state.clone()
                };
            }
            Ok(())
        })
    }

    /// The container named by `name_or_id`: its full ID, its name, or a unique ID prefix, in
    /// that order (as docker).
    pub fn container(&self, name_or_id: &str) -> Result<Container, ContainerError> {
        let not_found = || ContainerError::NotFound(name_or_id.to_owned());
        let name_or_id = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if name_or_id.is_empty() {
            return Err(not_found());
        }
        let ids = self.container_ids()?;
        if ids.iter().any(|id| id == name_or_id) {
            return self.container_by_id(name_or_id);
        }
        for id in &ids {
            match self.read_container_files(id) {
                Ok(c) if c.config.name == name_or_id => return self.container_by_id(id),
                Ok(_) | Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let lower = name_or_id.to_ascii_lowercase();
        let mut matches = ids.iter().filter(|id| id.starts_with(&lower));
        match (matches.next(), matches.next()) {
            (Some(id), None) => self.container_by_id(id).map_err(|e| match e {
                ContainerError::NotFound(_) => not_found(),
                e => e,
            }),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(name_or_id.to_owned())),
            (None, _) => Err(not_found()),
        }
    }

    /// Makes a container (state `created`, an empty writable layer): under
    /// `containers.lock`, so that two creates never take one name.
    pub fn create_container(&self, new: NewContainer) -> Result<Container, ContainerError> {
        if let Some(name) = &new.name
            && !valid_name(name)
        {
            return Err(ContainerError::InvalidName(name.clone()));
        }
        let _lock = self.containers_lock()?;
        self.sweep_container_leftovers()?;
        let existing = self.containers()?;
        let taken: BTreeSet<&str> = existing.iter().map(|c| c.config.name.as_str()).collect();
        let name = match new.name {
            Some(name) => {
                if let Some(c) = existing.iter().find(|c| c.config.name == name) {
                    return Err(ContainerError::NameInUse {
                        name,
                        id: c.config.id.clone(),
                    });
                }
                name
            }
            None => random_name(&taken)?,
        };
        let id = hex::encode(random_bytes::<32>()?);
        let config = ContainerConfig {
            id: id.clone(),
            name,
            created: now(),
            ..new.config
        };
        let dir = self.containers_dir();
        let tmp = dir.join(format!(".new-{id}"));
        fs_err::create_dir(&tmp).map_err(StoreError::io("create", &tmp))?;
        fs_err::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(StoreError::io("set permissions of", &tmp))?;
        let upper = tmp.join("upper");
        fs_err::create_dir(&upper).map_err(StoreError::io("create", &upper))?;
        write_json(&tmp.join("config.json"), &config)?;
        write_json(&tmp.join("state.json"), &ContainerState::new())?;
        let path = dir.join(&id);
        fs_err::rename(&tmp, &path).map_err(StoreError::io("rename into place", &path))?;
        crate::durable::sync_dir(&dir)?;
        self.container_by_id(&id)
    }

    /// Reads, changes and writes a container's state under its lock; returns the container
    /// as written.
    pub fn update_container_state(
        &self,
        id: &str,
        change: impl FnOnce(&mut Container) -> Result<(), ContainerError>,
    ) -> Result<Container, ContainerError> {
        let dir = self.containers_dir().join(id);
        if !dir.is_dir() {
            return Err(ContainerError::NotFound(id.to_owned()));
        }
        let _lock = FileLock::exclusive(&dir.join("lock"))?;
        let mut c = self.read_container_files(id)?;
        let before = c.state.clone();
        change(&mut c)?;
        if c.state != before {
            write_json(&dir.join("state.json"), &c.state)?;
        }
        Ok(c)
    }

    /// Takes `monitor.lock` of the container `id` for the calling process, the monitor:
    /// `None` when another monitor holds it.
    pub fn lock_container_monitor(&self, id: &str) -> Result<Option<MonitorLock>, StoreError> {
        let path = self.containers_dir().join(id).join("monitor.lock");
        Ok(FileLock::try_exclusive(&path)?.map(|l| MonitorLock { _lock: l }))
    }

    /// Gives container `id` a new name (unique, under `containers.lock`).
    pub fn rename_container(&self, id: &str, name: &str) -> Result<Container, ContainerError> {
        if !valid_name(name) {
            return Err(ContainerError::InvalidName(name.to_owned()));
        }
        let _lock = self.containers_lock()?;
        if let Some(c) = self
            .containers()?
            .into_iter()
            .find(|c| c.config.name == name)
        {
            return Err(ContainerError::NameInUse {
                name: name.to_owned(),
                id: c.config.id,
            });
        }
        let mut c = self.read_container_files(id)?;
        c.config.name = name.to_owned();
        write_json(&c.dir.join("config.json"), &c.config)?;
        self.container_by_id(id)
    }

    /// Deletes container `id` and its files. The caller has stopped it: a running container
    /// is refused.
    pub fn remove_container(&self, id: &str) -> Result<(), ContainerError> {
        let _lock = self.containers_lock()?;
        let c = self.container_by_id(id)?;
        if c.state.status == ContainerStatus::Running {
            return Err(ContainerError::Running {
                name: c.config.name,
            });
        }
        let dir = self.containers_dir();
        let doomed = dir.join(format!(".removing-{id}"));
        fs_err::rename(&c.dir, &doomed).map_err(StoreError::io("remove", &c.dir))?;
        crate::durable::sync_dir(&dir)?;
        fs_err::remove_dir_all(&doomed).map_err(StoreError::io("remove", &doomed))?;
        Ok(())
    }

    /// The images containers use (which `rmi` and `image prune` keep), each with one
    /// container using it.
    pub fn images_used_by_containers(
        &self,
    ) -> Result<std::collections::BTreeMap<Digest, String>, StoreError> {
        let mut used = std::collections::BTreeMap::new();
        for id in self.container_ids()? {
            match self.read_container_files(&id) {
                Ok(c) => {
                    let short = c.config.short_id().to_owned();
                    used.entry(c.config.image_id).or_insert(short);
                }
                // Removed meanwhile, or unreadable (`system check` reports it): keeps nothing.
                Err(ContainerError::Store(e)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(used)
    }

    /// The config of every container (unreadable ones skipped: `system check` reports
    /// them), in no order.
    pub(crate) fn container_configs(&self) -> Result<Vec<ContainerConfig>, StoreError> {
        let mut all = Vec::new();
        for id in self.container_ids()? {
            match self.read_container_files(&id) {
                Ok(c) => all.push(c.config),
                Err(ContainerError::Store(e)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(all)
    }

    /// `system check` of the containers: repairs dead monitors and sweeps crash leftovers
    /// first (what any command would do), then reports each container whose files do not
    /// parse, whose image is gone, whose writable layer is missing, or whose name another
    /// has. Returns how many containers were checked.
    pub(crate) fn check_containers(&self, problems: &mut Vec<String>) -> Result<usize, StoreError> {
        if !self.containers_dir().is_dir() {
            return Ok(0);
        }
        // Not on a store this process cannot write (another user's): then only reported.
        if let Ok(_lock) = self.containers_lock() {
            self.sweep_container_leftovers()?;
        }
        let index = self.read_index()?;
        let mut names = std::collections::BTreeMap::new();
        let ids = self.container_ids()?;
        for id in &ids {
            let c = match self.container_by_id(id) {
                Ok(c) => c,
                Err(ContainerError::NotFound(_)) => continue,
                Err(e) => {
                    problems.push(format!("container {}: {}", &id[..12], chain(&e)));
                    continue;
                }
            };
            let mut problem = |p: String| problems.push(format!("container {}: {p}", &id[..12]));
            if c.config.id != *id {
                problem(format!("its config names ID {}", c.config.id));
            }
            if !index.images.contains_key(&c.config.image_id) {
                problem(format!(
                    "its image {} is not in the store",
                    c.config.image_id
                ));
            }
            if !c.upper_dir().is_dir() {
                problem("its writable layer upper/ is missing".to_owned());
            }
            if let Some(other) = names.insert(c.config.name.clone(), id.clone()) {
                problem(format!(
                    "its name {} is also container {}'s",
                    c.config.name,
                    &other[..12]
                ));
            }
        }
        Ok(ids.len())
    }
}

/// Whether a monitor holds the container's `monitor.lock`.
fn monitor_alive(c: &Container) -> Result<bool, StoreError> {
    let path = c.monitor_lock_path();
    if !path.exists() {
        return Ok(false);
    }
    Ok(FileLock::try_exclusive(&path)?.is_none())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        what: path.display().to_string(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)?;
    Ok(())
}

/// A random `adjective_noun` not in `taken` (with a number when every pair drawn is).
fn random_name(taken: &BTreeSet<&str>) -> Result<String, StoreError> {
    let mut attempt = 0u64;
    loop {
        let r = random_bytes::<2>()?;
        let mut name = format!(
            "{}_{}",
            ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()],
            NOUNS[usize::from(r[1]) % NOUNS.len()]
        );
        if attempt >= 8 {
            name.push_str(&attempt.to_string());
        }
        if !taken.contains(name.as_str()) {
            return Ok(name);
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(image_id: &Digest) -> ContainerConfig {
        ContainerConfig {
            id: String::new(),
            name: String::new(),
            created: String::new(),
            image: "base".into(),
            image_id: image_id.clone(),
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
            env: Vec::new(),
            working_dir: String::new(),
            user: String::new(),
            hostname: String::new(),
            network: "host".into(),
            ports: Vec::new(),
            exposed_ports: Vec::new(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: None,
            auto_remove: false,
            restart: "no".into(),
            mounts: Vec::new(),
            read_only: false,
            log_config: Default::default(),
            labels: Default::default(),
            init: false,
            healthcheck: None,
            stdio: Default::default(),
        }
    }

    fn new(name: Option<&str>) -> NewContainer {
        NewContainer {
            name: name.map(Into::into),
            config: config(&Digest::of(b"image")),
        }
    }

    #[test]
    fn names_are_unique_and_lookup_takes_id_name_or_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.create_container(new(Some("web"))).unwrap();
        assert_eq!(a.config.id.len(), 64);
        assert_eq!(a.state.status, ContainerStatus::Created);
        assert!(a.upper_dir().is_dir());
        let err = store.create_container(new(Some("web"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Conflict. The container name \"/web\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                a.config.id
            )
        );
        let b = store.create_container(new(None)).unwrap();
        assert!(b.config.name.contains('_'), "{}", b.config.name);
        assert_eq!(store.container("web").unwrap().config.id, a.config.id);
        assert_eq!(store.container("/web").unwrap().config.id, a.config.id);
        assert_eq!(
            store.container(&a.config.id[..5]).unwrap().config.id,
            a.config.id
        );
        assert_eq!(
            store.container("nosuch").unwrap_err().to_string(),
            "No such container: nosuch"
        );
        store.rename_container(&a.config.id, "api").unwrap();
        assert!(matches!(
            store.container("web"),
            Err(ContainerError::NotFound(_))
        ));
        assert!(matches!(
            store.rename_container(&b.config.id, "api"),
            Err(ContainerError::NameInUse { .. })
        ));
        assert!(matches!(
            store.create_container(new(Some("-bad"))),
            Err(ContainerError::InvalidName(_))
        ));
        store.remove_container(&a.config.id).unwrap();
        assert!(matches!(
            store.container("api"),
            Err(ContainerError::NotFound(_))
        ));
        assert_eq!(store.containers().unwrap().len(), 1);
    }

    #[test]
    fn an_ambiguous_prefix_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 17 containers: two of them share a first hex digit.
        let ids: Vec<String> = (0..17)
            .map(|_| store.create_container(new(None)).unwrap().config.id)
            .collect();
        let first = ids
            .iter()
            .find(|id| ids.iter().filter(|o| o[..1] == id[..1]).count() > 1)
            .unwrap();
        assert_eq!(
            store.container(&first[..1]).unwrap_err().to_string(),
            format!("multiple IDs found with provided prefix: {}", &first[..1])
        );
    }

    #[test]
    fn a_running_state_without_its_monitor_is_repaired_to_exited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.create_container(new(Some("c"))).unwrap();
        let id = c.config.id.clone();
        let monitor = store.lock_container_monitor(&id).unwrap().unwrap();
        assert!(store.lock_container_monitor(&id).unwrap().is_none());
        store
            .update_container_state(&id, |c| {
                c.state.status = ContainerStatus::Running;
                c.state.pid = 42;
                c.state.monitor_pid = 41;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.container("c").unwrap().state.status,
            ContainerStatus::Running
        );
        assert!(matches!(
            store.remove_container(&id),
            Err(ContainerError::Running { .. })
        ));
        drop(monitor);
        let c = store.container("c").unwrap();
        assert_eq!(c.state.status, ContainerStatus::Exited);
        assert_eq!((c.state.pid, c.state.exit_code), (0, 255));
        assert!(c.state.monitor_died);
        assert!(
            c.state.error.contains("monitor (pid 41) died"),
            "{}",
            c.state.error
        );
        // Repaired on disk, not only in what was returned.
        let on_disk: ContainerState =
            serde_json::from_slice(&fs_err::read(c.dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(on_disk.status, ContainerStatus::Exited);
        store.remove_container(&id).unwrap();
    }

    #[test]
    fn crash_leftovers_are_swept_by_the_next_create() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_container(new(None)).unwrap();
        let half = dir.path().join("containers/.new-abc");
        fs_err::create_dir_all(half.join("upper")).unwrap();
        store.create_container(new(None)).unwrap();
        assert!(!half.exists());
        assert_eq!(store.containers().unwrap().len(), 2);
    }
}
