//! RUN, the worker's side: turns a [`RunRequest`] into a [`SandboxSpec`] of host paths,
//! hands the run's control socket and output pipes to the sandbox helper (started once per
//! worker, see `helper.rs`), sends the spec, streams the command's output line by line, and
//! turns the sandbox's status into a result. Cancelling (the token, or dropping the future)
//! closes the control socket, and the sandbox then kills everything in it; nothing it
//! mounted was ever visible outside it, and its scratch directory is deleted here (in the
//! background, see `janitor.rs`).

use crate::agent_proxy::AgentProxy;
use crate::helper::{Netns, SandboxHelper};
use crate::resolv_conf;
use crate::sandbox::Status;
use crate::spec::{ProcessSpec, SandboxSpec, SpecMount, SpecStdio};
use crate::sys;
use crate::worker::Worker;
use sha2::Digest as _;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use strata_graph::{CacheSharing, ExecOp, MountKind, NetworkMode, SecurityMode, env_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// The command's stdout.
    Stdout,
    /// The command's stderr.
    Stderr,
}

/// A container's standard input (`run -i`, `-t`); a RUN step's is always [`RunStdio::Null`].
#[derive(Debug, Default)]
pub enum RunStdio {
    /// `/dev/null`; output and error go to the output callback.
    #[default]
    Null,
    /// The read end of a pipe; output and error go to the output callback.
    Pipe(OwnedFd),
    /// A pseudo-terminal, made inside the sandbox (its own `/dev/pts`, so the command's
    /// terminal is `/dev/pts/0` there) of `size` (rows, columns) when given: the command's
    /// stdin, stdout and stderr and its controlling terminal. Its master is sent back on
    /// `console` (a unix socket; [`crate::terminal::receive_master`]) before the command
    /// starts; its output is read from there, not the output callback.
    Tty {
        /// The sandbox's end of a unix socket pair.
        console: OwnedFd,
        /// The window's rows and columns.
        size: Option<(u16, u16)>,
    },
}

/// What a `RUN --mount` needs from outside the op, one per [`ExecOp::mounts`] entry.
#[derive(Debug, Clone)]
pub enum MountInput {
    /// The filesystem a `type=bind` reads `source` from (or a cache's `from` seed): layer
    /// directories, top first. A build context is one directory.
    Layers(Vec<PathBuf>),
    /// A secret's value; `None` when the build was not given it.
    Secret(Option<Vec<u8>>),
    /// The host path of an ssh agent socket; `None` when not given.
    Ssh(Option<PathBuf>),
    /// Nothing (tmpfs, a cache without `from`, a heredoc file).
    None,
}

/// One RUN.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The op, as lowered by the frontend.
    pub exec: ExecOp,
    /// The parent filesystem: layer directories, top first (overlayfs format: whiteouts are
    /// 0/0 character devices, opaque directories carry `trusted.overlay.opaque=y`, or
    /// `user.overlay.opaque=y` rootless).
    pub lowers: Vec<PathBuf>,
    /// An empty directory that becomes the new layer. Its parent directory must be writable
    /// and on the same filesystem (the overlay work directory is made beside it).
    pub upper: PathBuf,
    /// One entry per `exec.mounts`, in the same order.
    pub mounts: Vec<MountInput>,
    /// The sandbox's hostname (`buildkitsandbox` when `None`, like BuildKit).
    pub hostname: Option<String>,
    /// Host files and directories bound in after `exec.mounts` (a container's `-v` and
    /// `--mount type=bind|volume`; a RUN step has none).
    pub binds: Vec<HostBind>,
    /// The root filesystem is read-only once the mounts are in place (`run --read-only`);
    /// the mounts themselves stay as they are.
    pub read_only_root: bool,
    /// With `exec.network` `Default`: the containers' bridge, where namespaces reach each
    /// other and `/etc/hosts` names the hostname's address (a container on `--network
    /// bridge`), rather than the RUN network.
    pub container_network: bool,
}

/// A host file or directory bound into the sandbox as it is: writes go to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    /// The host path (a file or a directory; symlinks followed, as `mount --bind`).
    pub source: PathBuf,
    /// Absolute path inside the sandbox (made when missing).
    pub target: String,
    /// Read-only.
    pub readonly: bool,
}

/// Why a RUN did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command exited non-zero (or was killed: 128 + signal).
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    Exit {
        /// The argv, joined by spaces.
        command: String,
        /// The exit code.
        code: i32,
    },
    /// The command failed after hitting a limit of the build's cgroup.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}: {limit}")]
    Limit {
        /// The argv, joined by spaces.
        command: String,
        /// The exit code.
        code: i32,
        /// Which limit, as the user reads it.
        limit: String,
    },
    /// The command could not be started (unknown user, missing executable, bad workdir).
    #[error("process \"{command}\" could not be started: {message}")]
    Start {
        /// The argv, joined by spaces.
        command: String,
        /// What went wrong, from inside the sandbox.
        message: String,
    },
    /// The sandbox could not be set up.
    #[error("{0}")]
    Setup(String),
    /// A `--mount` cannot be provided.
    #[error("RUN --mount target {target}: {reason}")]
    Mount {
        /// The mount's target.
        target: String,
        /// Why.
        reason: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Preparing or cleaning up failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl RunError {
    /// The command's exit code, when that is why it failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Exit { code, .. } | RunError::Limit { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Splits a byte stream into lines for the output callback (and a container's terminal
/// output into its log's lines). A line longer than 64 KiB is passed on in pieces rather than
/// buffered without bound.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    const MAX: usize = 64 * 1024;

    /// Adds `data`; `emit` gets each line it completes, without its `\n`.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|b| *b == b'\n') {
            emit(&self.buf[start..start + nl]);
            start += nl + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= Self::MAX {
            emit(&self.buf[..Self::MAX]);
            self.buf.drain(..Self::MAX);
        }
    }

    /// The end of the stream: `emit` gets what is left, if anything.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf.clear();
        }
    }
}

/// Keeps a cache mount's lock for as long as the run lasts.
struct CacheLock(Option<fs_err::File>);

/// What a run holds until it ends: its cache mounts' locks, its ssh mounts' sockets.
struct Held {
    _locks: Vec<CacheLock>,
    _proxies: Vec<AgentProxy>,
}

/// How long a RUN took, in two parts (the build's event log shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTimes {
    /// The sandbox's start: on the host from the call to the hand-over to the helper
    /// (scratch directory, spec, mounts, the helper started if it was not), then in the
    /// sandbox from the spec read to the command's fork (namespaces, mounts, `pivot_root`).
    pub start: Duration,
    /// The rest, to the exit status: the command, then the sandbox's teardown (what is
    /// left in it killed, mount stubs removed) and its status sent back.
    pub process: Duration,
}

impl Worker {
    /// Runs `req.exec` in a sandbox over `req.lowers` with `req.upper` as the writable
    /// layer; each output line goes to `output`. Returns once every process of the sandbox
    /// has exited and its mounts are gone (so `req.upper` is no longer in use); its scratch
    /// directory beside `req.upper` is deleted right after, in the background.
    pub async fn run<F>(
        &self,
        req: RunRequest,
        output: F,
        cancel: CancellationToken,
    ) -> Result<(), RunError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
    {
        self.run_timed(req, output, cancel).await.map(|_| ())
    }

    /// [`Worker::run`], saying how long the sandbox took to start and the process to run.
    pub async fn run_timed<F>(
        &self,
        req: RunRequest,
        output: F,
        cancel: CancellationToken,
    ) -> Result<RunTimes, RunError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
    {
        self.run_with_start(req, output, |_| {}, cancel).await
    }

    /// [`Worker::run_timed`], telling `started` the host pid of the command once it is
    /// started (a container's monitor records it, so that `stop` and `kill` can signal it).
    /// Not called when the command could not start.
    pub async fn run_with_start<F, S>(
        &self,
        req: RunRequest,
        output: F,
        started: S,
        cancel: CancellationToken,
    ) -> Result<RunTimes, RunError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
        S: FnOnce(u32) + Send,
    {
        self.run_with_stdio(req, RunStdio::Null, output, started, cancel)
            .await
    }

    /// [`Worker::run_with_start`] with `stdio` as the command's standard input (a
    /// container's `-i`), or its terminal (`-t`). The worker keeps no copy of its descriptor.
    pub async fn run_with_stdio<F, S>(
        &self,
        req: RunRequest,
        stdio: RunStdio,
        mut output: F,
        started: S,
        cancel: CancellationToken,
    ) -> Result<RunTimes, RunError>
    where
        F: FnMut(OutputStream, &[u8]) + Send,
        S: FnOnce(u32) + Send,
    {
        let entered = Instant::now();
        if self.teardowns.pending() {
            // An earlier sandbox's overlay may hold one of this run's layers as its upper.
            let teardowns = self.teardowns.clone();
            let _ = tokio::task::spawn_blocking(move || teardowns.wait()).await;
        }
        let mut started = Some(started);
        let command = req.exec.args.join(" ");
        let parent = req.upper.parent().unwrap_or(Path::new("/")).to_owned();
        let scratch = tempfile::Builder::new()
            .prefix(".strata-run-")
            .tempdir_in(&parent)
            .map_err(io_err(format!(
                "failed to create a scratch directory in {}",
                parent.display()
            )))?;
        let (mut spec, _held) = self.spec(&req, scratch.path()).await?;
        let stdin = match stdio {
            RunStdio::Null => None,
            RunStdio::Pipe(fd) => {
                spec.stdio = SpecStdio::Pipe;
                Some(fd)
            }
            RunStdio::Tty { console, size } => {
                spec.stdio = SpecStdio::Tty;
                spec.tty_size = size;
                Some(console)
            }
        };
        let mut line = serde_json::to_vec(&spec)
            .map_err(|e| io_err("failed to encode the sandbox spec")(e.into()))?;
        line.push(b'\n');

        let pipes = || sys::pipe().map_err(io_err("failed to create the sandbox's pipes"));
        let (out_r, out_w) = pipes()?;
        let (err_r, err_w) = pipes()?;
        let (ctl, ctl_theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(io_err("failed to create the sandbox's control socket"))?;
        let cgroup = self
            .cgroup()
            .map_err(|e| RunError::Setup(crate::sandbox::error_chain(&e)))?;
        let counters = cgroup.map(|c| c.counters());
        let netns = match spec.network {
            NetworkMode::Host => Netns::Host,
            NetworkMode::None => Netns::Empty,
            NetworkMode::Default if req.container_network => Netns::Container,
            NetworkMode::Default => Netns::Bridged,
        };
        self.start_sandbox(
            netns,
            OwnedFd::from(ctl_theirs),
            out_w,
            err_w,
            stdin.as_ref(),
        )?;
        // The sandbox has its own copy: the command's end of file (or the terminal's hang-up)
        // must not wait for this one.
        drop(stdin);
        let chan = |e| io_err("failed to set up the sandbox's channels")(e);
        // Kept to learn when the sandbox is gone, once its status is known (below).
        let ctl_end = ctl.try_clone().map_err(chan)?;
        ctl.set_nonblocking(true).map_err(chan)?;
        let (mut ctl_r, ctl_w) = tokio::net::UnixStream::from_std(ctl)
            .map_err(chan)?
            .into_split();
        let mut ctl_w = Some(ctl_w);
        let mut stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r).map_err(chan)?;
        let mut stderr = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r).map_err(chan)?;
        if let Some(w) = ctl_w.as_mut() {
            // A sandbox that failed at once shows up below through its status.
            let _ = w.write_all(&line).await;
        }
        let handed = Instant::now();

        let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
        let (mut out_done, mut err_done, mut status_done) = (false, false, false);
        let mut cancelled = false;
        let (mut b1, mut b2) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
        let mut b3 = [0u8; 4096];
        let mut status_line = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(3600 * 24 * 365));
        tokio::pin!(deadline);
        let mut timed_out = false;
        // The command's output is read only once its start (or the run's end) is known, so
        // `started` is always called before `output`: a caller whose `output` waits for a
        // client that itself waits to hear of the start (an attached `run -i`) cannot hold
        // up the start's report behind it. The command meanwhile waits on a full pipe.
        let mut start_known = false;
        while !(out_done && err_done && status_done) {
            let reading = start_known || status_done;
            tokio::select! {
                r = stdout.read(&mut b1), if !out_done && reading => match r {
                    Ok(n) if n > 0 => out_lines.push(&b1[..n], |l| output(OutputStream::Stdout, l)),
                    _ => { out_done = true; out_lines.finish(|l| output(OutputStream::Stdout, l)); }
                },
                r = stderr.read(&mut b2), if !err_done && reading => match r {
                    Ok(n) if n > 0 => err_lines.push(&b2[..n], |l| output(OutputStream::Stderr, l)),
                    _ => { err_done = true; err_lines.finish(|l| output(OutputStream::Stderr, l)); }
                },
                r = ctl_r.read(&mut b3), if !status_done => match r {
                    Ok(n) if n > 0 => {
                        status_line.extend_from_slice(&b3[..n]);
                        // Lines before the last are `started` reports.
                        while let Some(nl) = status_line.iter().position(|b| *b == b'\n') {
                            match serde_json::from_slice(&status_line[..nl]) {
                                Ok(Status::Started(pid)) => {
                                    if let Some(f) = started.take() {
                                        f(pid);
                                    }
                                    start_known = true;
                                    status_line.drain(..=nl);
                                }
                                _ => {
                                    status_done = true;
                                    break;
                                }
                            }
                        }
                    }
                    _ => status_done = true,
                },
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    // End-of-file on the control socket makes the sandbox kill everything.
                    drop(ctl_w.take());
                    deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(10));
                },
                _ = &mut deadline => { timed_out = true; break; }
            }
        }
        let (start, process) = (handed.duration_since(entered), handed.elapsed());
        drop(ctl_w);
        let status: Option<Status> = status_line
            .split(|b| *b == b'\n')
            .next()
            .and_then(|l| serde_json::from_slice(l).ok());
        let failed = |command: String, code: i32| {
            let hit = cgroup
                .zip(counters)
                .and_then(|(c, before)| c.limit_hit(before));
            Err(match hit {
                Some(limit) => RunError::Limit {
                    command,
                    code,
                    limit,
                },
                None => RunError::Exit { command, code },
            })
        };
        let result = match status {
            _ if cancelled || cancel.is_cancelled() => Err(RunError::Cancelled),
            Some(Status::Exited { code: 0, setup_us }) => {
                let setup = Duration::from_micros(setup_us).min(process);
                Ok(RunTimes {
                    start: start + setup,
                    process: process - setup,
                })
            }
            Some(Status::Exited { code, .. }) => failed(command, code),
            Some(Status::Signaled(sig)) => failed(command, 128 + sig),
            Some(Status::StartFailed(message)) => Err(RunError::Start { command, message }),
            Some(Status::SetupFailed(message)) => Err(RunError::Setup(message)),
            Some(Status::Cancelled) => Err(RunError::Cancelled),
            Some(Status::Started(_)) => Err(RunError::Setup(
                "the sandbox reported its start twice".into(),
            )),
            None if timed_out => Err(RunError::Setup(
                "the sandbox did not stop within 10s of being cancelled".into(),
            )),
            None => Err(RunError::Setup(format!(
                "the sandbox helper ({} __sandbox) ended the run without a status",
                self.config.helper_exe.display()
            ))),
        };
        drop(ctl_r);
        // The sandbox ends beside what comes next (`teardown.rs`): its monitor closes the
        // control socket once the init's exit, the namespaces' teardown, is over. The scratch
        // dir, the root overlay's work dir, goes then; deleting it takes a few journaled
        // operations, done in the background, not on the way. On a thread, not a task: a
        // caller may run the worker's steps on runtimes it drives only while it awaits them.
        let ending = self.teardowns.begin();
        let janitor = self.janitor.clone();
        let watch = move || {
            if !timed_out && ctl_end.set_nonblocking(false).is_ok() {
                let mut buf = [0u8; 64];
                while matches!(sys::read(ctl_end.as_fd(), &mut buf), Ok(n) if n > 0) {}
            }
            janitor.delete(scratch);
            drop(ending);
        };
        let watching = std::thread::Builder::new()
            .name("strata-teardown".into())
            .spawn(watch);
        // Without a thread the sandbox is not waited for (a later mount may make overlayfs
        // warn) and its scratch dir is deleted at once, the closure being dropped.
        drop(watching);
        result
    }

    /// Hands a new sandbox to the helper, starting it (again) when needed.
    fn start_sandbox(
        &self,
        netns: Netns,
        ctl: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<&OwnedFd>,
    ) -> Result<(), RunError> {
        let mut dead: Option<Arc<SandboxHelper>> = None;
        for attempt in 0..2 {
            let helper = self.helper(dead.take())?;
            let stdin = stdin.map(|fd| fd.as_fd());
            match helper.start(netns, ctl.as_fd(), stdout.as_fd(), stderr.as_fd(), stdin) {
                Ok(()) => return Ok(()),
                // The helper died (killed, or crashed): start another, once.
                Err(e)
                    if attempt == 0
                        && matches!(
                            e.kind(),
                            io::ErrorKind::BrokenPipe
                                | io::ErrorKind::ConnectionReset
                                | io::ErrorKind::NotConnected
                        ) =>
                {
                    dead = Some(helper)
                }
                Err(e) => return Err(io_err("failed to hand the run to the sandbox helper")(e)),
            }
        }
        Err(RunError::Setup("the sandbox helper keeps exiting".into()))
    }

    /// Starts the sandbox helper (and the build's cgroup) now, when a RUN with `network` is
    /// known to come, so that the helper's exec and start-up overlap the steps before that
    /// RUN instead of delaying its start, and tells the helper to make that RUN's network
    /// namespace meanwhile. Blocking (a fork and exec); starts nothing when the helper runs
    /// already. An error is left for that RUN to meet and report.
    pub fn start_helper(&self, network: NetworkMode) {
        let netns = match network {
            NetworkMode::Host => Netns::Host,
            NetworkMode::None => Netns::Empty,
            NetworkMode::Default => Netns::Bridged,
        };
        if let Ok(helper) = self.helper(None) {
            let _ = helper.announce(netns);
        }
    }

    /// The helper process, started when there is none or when `dead` is the current one.
    fn helper(&self, dead: Option<Arc<SandboxHelper>>) -> Result<Arc<SandboxHelper>, RunError> {
        let mut slot = self.helper.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(d), Some(cur)) = (&dead, slot.as_ref())
            && Arc::ptr_eq(d, cur)
        {
            *slot = None;
        }
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let cgroup = self
            .cgroup()
            .map_err(|e| RunError::Setup(crate::sandbox::error_chain(&e)))?;
        let exe = &self.config.helper_exe;
        let h = Arc::new(SandboxHelper::spawn(exe).map_err(io_err(format!(
            "failed to start the sandbox helper {}",
            exe.display()
        )))?);
        // Before the first request: every sandbox it forks is born in the cgroup.
        if let (Some(cgroup), Some(pid)) = (cgroup, h.pid()) {
            cgroup
                .add(pid)
                .map_err(|e| RunError::Setup(crate::sandbox::error_chain(&e)))?;
        }
        *slot = Some(h.clone());
        Ok(h)
    }

    async fn spec(
        &self,
        req: &RunRequest,
        scratch: &Path,
    ) -> Result<(SandboxSpec, Held), RunError> {
        let mk = |p: PathBuf| {
            fs_err::create_dir(&p)
                .map(|()| p)
                .map_err(io_err("failed to prepare the scratch directory"))
        };

        let hostname = req
            .hostname
            .clone()
            .unwrap_or_else(|| "buildkitsandbox".to_owned());
        let network = req.exec.network;
        let hosts = if req.container_network && network == NetworkMode::Default {
            // docker's; the sandbox adds the container's address and hostname.
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n"
                .to_owned()
        } else {
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        };
        let resolv = match &self.config.resolv_conf {
            Some(p) => {
                let host = fs_err::read(p).unwrap_or_default();
                let host = if network != NetworkMode::Host && resolv_conf::is_systemd_stub(&host) {
                    fs_err::read(resolv_conf::SYSTEMD_UPSTREAM).unwrap_or(host)
                } else {
                    host
                };
                resolv_conf::for_run(&host, network)
            }
            None => Vec::new(),
        };
        let etc_files = vec![
            ("/etc/hosts".to_owned(), hosts.into_bytes()),
            ("/etc/resolv.conf".to_owned(), resolv),
            (
                "/etc/hostname".to_owned(),
                format!("{hostname}\n").into_bytes(),
            ),
        ];

        let mut env = req.exec.env.clone();
        let mut mounts = Vec::new();
        let mut locks = Vec::new();
        let mut proxies = Vec::new();
        for (i, m) in req.exec.mounts.iter().enumerate() {
            let input = req.mounts.get(i).cloned().unwrap_or(MountInput::None);
            let target = m.target.clone();
            let bad = |reason: &str| RunError::Mount {
                target: target.clone(),
                reason: reason.to_owned(),
            };
            match &m.kind {
                MountKind::Bind { source, rw, .. } => {
                    let MountInput::Layers(layers) = input else {
                        return Err(bad("no source filesystem given"));
                    };
                    let layers = if layers.is_empty() {
                        vec![mk(scratch.join(format!("empty-{i}")))?]
                    } else {
                        layers
                    };
                    let rw_scratch = if *rw {
                        Some((
                            mk(scratch.join(format!("bind-{i}")))?,
                            mk(scratch.join(format!("bind-{i}-work")))?,
                        ))
                    } else {
                        None
                    };
                    mounts.push(SpecMount::Bind {
                        target,
                        lowers: layers,
                        source: source.clone(),
                        scratch: rw_scratch,
                    });
                }
                MountKind::Cache {
                    id,
                    sharing,
                    from,
                    readonly,
                    mode,
                    uid,
                    gid,
                } => {
                    let seed = match (from, input) {
                        (None, _) => None,
                        (Some((_, source)), MountInput::Layers(layers)) => {
                            Some((layers, source.as_str()))
                        }
                        (Some(_), _) => return Err(bad("no filesystem given for its from")),
                    };
                    let cache = CacheMount {
                        id,
                        sharing: *sharing,
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        seed,
                    };
                    let (dir, lock) = self.cache_dir(&target, &cache, scratch).await?;
                    locks.push(lock);
                    mounts.push(SpecMount::Dir {
                        target,
                        dir,
                        readonly: *readonly,
                    });
                }
                MountKind::Tmpfs { size } => mounts.push(SpecMount::Tmpfs {
                    target,
                    size: *size,
                }),
                MountKind::Secret {
                    id,
                    env: var,
                    required,
                    mode,
                    uid,
                    gid,
                } => match input {
                    MountInput::Secret(Some(value)) => {
                        if let Some(var) = var {
                            // A variable is text without NUL; changing a secret to fit would
                            // hand the step another value than the one given.
                            let text = std::str::from_utf8(&value)
                                .ok()
                                .filter(|t| !t.contains('\0'))
                                .ok_or_else(|| {
                                    bad(&format!(
                                        "secret {id} is not UTF-8 text without NUL, so it cannot be the variable {var}"
                                    ))
                                })?;
                            // The secret wins over an ENV of the same name, as in BuildKit.
                            env.retain(|e| env_key(e) != var);
                            env.push(format!("{var}={text}"));
                        }
                        if !target.is_empty() {
                            mounts.push(SpecMount::File {
                                target,
                                contents: value,
                                mode: *mode,
                                uid: *uid,
                                gid: *gid,
                            });
                        }
                    }
                    _ if *required => {
                        return Err(bad(&format!(
                            "secret {id} is required but was not provided"
                        )));
                    }
                    _ => {}
                },
                MountKind::Ssh {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                } => match input {
                    MountInput::Ssh(Some(agent)) => {
                        let path = scratch.join(format!("ssh-{i}.sock"));
                        let proxy = AgentProxy::start(&path, agent, *mode, *uid, *gid).map_err(
                            io_err(format!("failed to make the socket of ssh agent {id}")),
                        )?;
                        proxies.push(proxy);
                        mounts.push(SpecMount::Socket { target, path });
                    }
                    _ if *required => {
                        return Err(bad(&format!(
                            "ssh agent {id} is required but was not provided"
                        )));
                    }
                    _ => {}
                },
                MountKind::File { contents, mode } => mounts.push(SpecMount::File {
                    target,
                    contents: contents.clone().into_bytes(),
                    mode: *mode,
                    uid: 0,
                    gid: 0,
                }),
            }
        }
        for b in &req.binds {
            mounts.push(SpecMount::Dir {
                target: b.target.clone(),
                dir: b.source.clone(),
                readonly: b.readonly,
            });
        }
        // As BuildKit: the first ssh mount is the agent, unless the step names its own.
        let first_ssh = req
            .exec
            .mounts
            .iter()
            .find(|m| matches!(m.kind, MountKind::Ssh { .. }));
        if let Some(m) = first_ssh
            && !env.iter().any(|e| env_key(e) == "SSH_AUTH_SOCK")
        {
            env.push(format!("SSH_AUTH_SOCK={}", m.target));
        }
        // The scratch dir itself is the root overlay's work dir (it makes `work/` inside),
        // unless the mounts put something there: overlayfs refuses an upper or work dir
        // below another overlay's work dir.
        let scratch_used = fs_err::read_dir(scratch)
            .map_err(io_err("failed to prepare the scratch directory"))?
            .next()
            .is_some();
        let work = if scratch_used {
            mk(scratch.join("work"))?
        } else {
            scratch.to_owned()
        };
        let spec = SandboxSpec {
            lowers: req.lowers.clone(),
            upper: req.upper.clone(),
            work,
            root_mountpoint: self.config.root_mountpoint(),
            hostname,
            network,
            host_sys: network == NetworkMode::Host && strata_store::confined::in_user_namespace(),
            etc_files,
            mounts,
            read_only_root: req.read_only_root,
            stdio: SpecStdio::Null,
            tty_size: None,
            process: ProcessSpec {
                args: req.exec.args.clone(),
                env,
                cwd: req.exec.cwd.clone(),
                user: req.exec.user.clone(),
                insecure: req.exec.security == SecurityMode::Insecure,
                no_new_privs: self.config.no_new_privs,
            },
        };
        Ok((
            spec,
            Held {
                _locks: locks,
                _proxies: proxies,
            },
        ))
    }

    /// The directory of cache mount `id`, made with `mode`/`uid`/`gid` when new. Ids are
    /// hashed into names, so no id can name a path outside `cache-mounts/`.
    async fn cache_dir(
        &self,
        target: &str,
        cache: &CacheMount<'_>,
        scratch: &Path,
    ) -> Result<(PathBuf, CacheLock), RunError> {
        let name = cache.name();
        let base = self.config.state_dir.join("cache-mounts");
        let dir = base.join(&name);
        let lock_path = base.join(format!("{name}.lock"));
        let err = io_err(format!("failed to prepare cache mount {}", cache.id));
        // Lock first, then make: a prune holds the lock exclusive while it moves the
        // directory away (see `cache_mount.rs`), so the directory made here stays.
        let f = fs_err::File::create(&lock_path).map_err(err)?;
        let lock = match cache.sharing {
            CacheSharing::Shared | CacheSharing::Locked => {
                let shared = matches!(cache.sharing, CacheSharing::Shared);
                let f = tokio::task::spawn_blocking(move || {
                    if shared {
                        f.file().lock_shared()
                    } else {
                        f.file().lock()
                    }
                    .map(|()| f)
                })
                .await
                .map_err(|e| io_err("failed to lock a cache mount")(io::Error::other(e)))?
                .map_err(io_err("failed to lock a cache mount"))?;
                CacheLock(Some(f))
            }
            CacheSharing::Private => match f.file().try_lock() {
                Ok(()) => CacheLock(Some(f)),
                Err(_) => {
                    // Someone else has it: this run gets a fresh one of its own.
                    let own = scratch.join("private-cache");
                    cache.make(&own, scratch, target).await?;
                    return Ok((own, CacheLock(None)));
                }
            },
        };
        if let Some(f) = &lock.0 {
            // "Last used", for prune; best effort (a failure only makes it look older).
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        if cache.seed.is_none() {
            self.mounts
                .used
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), cache.id.to_owned());
            self.restore_cache_mount(&name, &dir, cache).await?;
        }
        cache.make(&dir, &base, target).await?;
        Ok((dir, lock))
    }
}

impl Worker {
    /// Restores cache mount `name` from an imported cache when its directory `dir` is missing
    /// or empty (never over content). The caller holds its lock.
    async fn restore_cache_mount(
        &self,
        name: &str,
        dir: &Path,
        cache: &CacheMount<'_>,
    ) -> Result<(), RunError> {
        let imports = self
            .mounts
            .imports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(imports) = imports else {
            return Ok(());
        };
        if !crate::mount_layer::is_empty(dir) {
            return Ok(());
        }
        let (name, dir) = (name.to_owned(), dir.to_owned());
        let owner = (cache.mode, cache.uid, cache.gid);
        let id = cache.id.to_owned();
        tokio::task::spawn_blocking(move || {
            let Some(imported) = imports.import(&name)? else {
                return Ok(());
            };
            crate::mount_layer::restore(&dir, &name, &imported, owner)?;
            Ok(())
        })
        .await
        .map_err(|e| io_err("failed to restore a cache mount")(io::Error::other(e)))?
        .map_err(|e: crate::mount_layer::ImportError| {
            io_err(format!(
                "failed to restore cache mount {id} from the imported cache"
            ))(io::Error::other(e))
        })
    }
}

/// A `type=cache` mount, resolved: its id, how it is shared, how a new one starts.
struct CacheMount<'a> {
    id: &'a str,
    sharing: CacheSharing,
    mode: u32,
    uid: u32,
    gid: u32,
    /// `from=`: the layers of the stage (or context) it is seeded from, and the directory in
    /// it (`source=`, `/` by default).
    seed: Option<(Vec<PathBuf>, &'a str)>,
}

impl CacheMount<'_> {
    /// The cache's directory name. Ids are hashed, so no id can name a path outside
    /// `cache-mounts/`. A seeded cache is a cache of its own per seed (as in BuildKit, where
    /// the `from` snapshot is part of the cache's key): the layer directories are content
    /// addressed, so a changed stage seeds a new cache rather than reusing one that started
    /// from the old content.
    fn name(&self) -> String {
        let mut key = sha2::Sha256::new();
        key.update(self.id.as_bytes());
        if let Some((layers, source)) = &self.seed {
            key.update(b"\0from\0");
            for l in layers {
                key.update(l.as_os_str().as_encoded_bytes());
                key.update(b"\0");
            }
            key.update(b"\0source\0");
            key.update(source.as_bytes());
        }
        hex::encode(key.finalize())
    }

    /// Makes the cache directory `dir` when it does not exist yet: empty with the mount's
    /// mode and owner, or a copy of the seed. A seed is copied into a temporary directory
    /// beside `dir` and renamed into place, so a cache is never seen half seeded; when two
    /// runs seed the same cache at once, the first rename wins.
    async fn make(&self, dir: &Path, tmp_parent: &Path, target: &str) -> Result<(), RunError> {
        let err = io_err(format!("failed to prepare cache mount {}", self.id));
        let Some((layers, source)) = &self.seed else {
            let (mode, uid, gid) = (self.mode, self.uid, self.gid);
            let fresh = || -> io::Result<()> {
                use std::os::unix::fs::PermissionsExt;
                fs_err::create_dir(dir)?;
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
                fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777))
            };
            return match fresh() {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(err(e)),
                _ => Ok(()),
            };
        };
        if fs_err::symlink_metadata(dir).is_ok() {
            return Ok(());
        }
        let tmp = tempfile::Builder::new()
            .prefix(".strata-seed-")
            .tempdir_in(tmp_parent)
            .map_err(io_err(format!("failed to prepare cache mount {}", self.id)))?;
        let (layers, source, path) = (layers.clone(), source.to_string(), tmp.path().to_owned());
        tokio::task::spawn_blocking(move || crate::fileop::seed_dir(&layers, &source, &path))
            .await
            .map_err(|e| err(io::Error::other(e)))?
            .map_err(|e| RunError::Mount {
                target: target.to_owned(),
                reason: format!(
                    "seeding the cache from its from: {}",
                    crate::sandbox::error_chain(&e)
                ),
            })?;
        let seeded = tmp.keep();
        if let Err(e) = fs_err::rename(&seeded, dir) {
            let _ = fs_err::remove_dir_all(&seeded);
            if fs_err::symlink_metadata(dir).is_err() {
                return Err(io_err(format!("failed to prepare cache mount {}", self.id))(e));
            }
        }
        Ok(())
    }
}
