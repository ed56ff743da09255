//! The container commands: `run`, `create`, `start`, `stop`, `restart`, `kill`, `wait`, `rm`,
//! `rename`, `container prune`, and the hidden `__monitor` that a detached container runs under. Their flags, output and
//! exit codes are docker's: `run`, `create` and `start -a` exit 125 when strata fails, 126 when
//! the command cannot be executed, 127 when it is not found, else with the command's code;
//! the others (`start` without `-a` too) exit 1 on an error.
//!
//! A detached container's monitor is this binary again, `strata __monitor ID`, in a session of
//! its own; it tells its starter on its standard output how the start went (`started PID` or
//! `failed CODE\tMESSAGE`), then keeps nothing of the starter's. In the foreground (`run`
//! without `-d`, `start -a`) the command itself is the monitor and echoes the output.

use crate::GlobalArgs;
use anyhow::Context as _;
use std::io::{BufRead as _, Write as _};
use std::process::{ExitCode, Stdio};
use strata_build::{CreateContainer, Outcome, Stream};
use strata_graph::NetworkMode;
use strata_store::{ContainerStatus, Store};
use tokio_util::sync::CancellationToken;

/// What `run` and `create` share.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Override the image's ENTRYPOINT
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Set an environment variable, `KEY=VALUE` (a bare `KEY` sets it empty)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (one `KEY=VALUE` a line, `#` comments)
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User (`name|uid[:group|gid]`)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Container host name (default: its short ID)
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Network: `bridge` (default; `default` is the same), `host` or `none`
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "default", "host", "none"])]
    network: String,
    /// Publish a container's port on the host: `[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Publish every exposed port on a free host port
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Signal to stop the container (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL (default 10)
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    stop_timeout: Option<u32>,
    /// Restart policy: `no`, `on-failure[:N]`, `always` or `unless-stopped`
    #[arg(long, default_value = "no", value_name = "POLICY")]
    restart: String,
    /// Bind a host path or a volume: `HOST:CTR[:ro]`, `NAME:CTR[:ro]`, or `CTR` (anonymous)
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    volume: Vec<String>,
    /// A mount: `type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]`
    #[arg(long = "mount", value_name = "SPEC")]
    mount: Vec<String>,
    /// A tmpfs: `CTR[:size=N]`
    #[arg(long = "tmpfs", value_name = "CTR")]
    tmpfs: Vec<String>,
    /// Make the root filesystem read-only (volumes and tmpfs mounts stay writable)
    #[arg(long = "read-only")]
    read_only: bool,
    /// Run an init as PID 1 that reaps and forwards signals (strata always does: accepted)
    #[arg(long)]
    init: bool,
    /// Set a label, `KEY=VALUE` (a bare `KEY` sets it empty)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// A json-file log option: `max-size=10m`, `max-file=3`
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Command to run to check health (a shell command)
    #[arg(long = "health-cmd", value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long = "health-interval", value_name = "DURATION")]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count (ms|s|m|h)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 3)
    #[arg(
        long = "health-retries",
        value_name = "N",
        allow_negative_numbers = true
    )]
    health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// The image
    image: String,
    /// The command and its arguments (default: the image's CMD)
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

impl CreateArgs {
    fn request(&self) -> anyhow::Result<CreateContainer> {
        let mut env = Vec::new();
        for file in &self.env_file {
            let text = fs_err::read_to_string(file)?;
            env.extend(env_file_lines(&text));
        }
        env.extend(self.env.iter().cloned());
        let mut mounts = Vec::new();
        for v in &self.volume {
            mounts.push(strata_build::parse_volume(v)?);
        }
        for m in &self.mount {
            mounts.push(strata_build::parse_mount(m)?);
        }
        for t in &self.tmpfs {
            mounts.push(strata_build::parse_tmpfs(t)?);
        }
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.extend(strata_build::parse_publish(p)?);
        }
        Ok(CreateContainer {
            // Docker's: with -i the caller's stdin is attached and closes the container's
            // when it ends; `run -d` changes that (see `run`).
            stdio: strata_store::ContainerStdio {
                tty: self.tty,
                open_stdin: self.interactive,
                stdin_once: self.interactive,
                attach_stdin: self.interactive,
            },
            ports,
            publish_all: self.publish_all,
            mounts,
            read_only: self.read_only,
            log_config: strata_build::parse_log_opts(&self.log_opt)?,
            labels: self.label.clone(),
            init: self.init,
            health: strata_build::HealthOptions {
                cmd: self.health_cmd.clone(),
                interval: self.health_interval.clone(),
                timeout: self.health_timeout.clone(),
                start_period: self.health_start_period.clone(),
                retries: self.health_retries,
                disable: self.no_healthcheck,
            },
            image: self.image.clone(),
            name: self.name.clone(),
            entrypoint: self.entrypoint.clone(),
            command: self.command.clone(),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            network: match self.network.as_str() {
                "none" => NetworkMode::None,
                "host" => NetworkMode::Host,
                _ => NetworkMode::Default,
            },
            auto_remove: self.rm,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            restart: self.restart.clone(),
        })
    }
}

/// docker's `--env-file`: `KEY=VALUE` lines as written, blank lines and `#` comments skipped.
fn env_file_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
}

/// Arguments of `strata run`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct RunArgs {
    /// Run in the background and print the container's ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// Arguments of `strata create`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct CreateOnlyArgs {
    #[command(flatten)]
    create: CreateArgs,
}

/// Arguments of `strata start`.
#[derive(Debug, clap::Args)]
pub(crate) struct StartArgs {
    /// Attach its output and exit with its code
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach its STDIN (and its output)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Containers (names, IDs or ID prefixes)
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata stop` and `strata restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's stop timeout, else 10)
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    time: Option<u32>,
    /// Containers
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata container`.
#[derive(Debug, clap::Args)]
pub(crate) struct ContainerArgs {
    #[command(subcommand)]
    command: ContainerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ContainerCommand {
    /// Remove every container that does not run
    Prune(PruneArgs),
}

/// Arguments of `strata container prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Do not ask for confirmation (strata never asks: accepted for docker's scripts)
    #[arg(short = 'f', long)]
    force: bool,
}

/// Arguments of `strata kill`.
#[derive(Debug, clap::Args)]
pub(crate) struct KillArgs {
    /// Signal to send
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    /// Containers
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata wait` and `strata rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct WaitArgs {
    /// Containers
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Kill a running container first
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove its anonymous volumes too
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Containers
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata rename`.
#[derive(Debug, clap::Args)]
pub(crate) struct RenameArgs {
    /// The container
    container: String,
    /// Its new name
    new_name: String,
}

/// Arguments of `strata __monitor`.
#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// Say `listening` once the attach socket listens, and start the command once a first
    /// client has attached (`run -i`/`-t`, `start -a -i`)
    #[arg(long = "attach-first")]
    attach_first: bool,
    /// The container's full ID
    id: String,
}

/// An error of `run`, `create` or `start` as docker reports it: printed, exit code 125.
pub(crate) fn fail_125(err: anyhow::Error) -> ExitCode {
    match crate::report::report(&err) {
        code if code == ExitCode::SUCCESS => code,
        _ => ExitCode::from(125),
    }
}

pub(crate) fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.rem_euclid(256)).unwrap_or(1))
}

/// A command that could not start: its message, docker's code.
fn start_failed(name: &str, code: i32, message: &str) -> ExitCode {
    let err = anyhow::anyhow!("{}", crate::report::clip(message))
        .context(format!("failed to start container {name}"));
    let _ = crate::report::report(&err);
    exit_code(code)
}

pub(crate) fn run(args: RunArgs, global: &GlobalArgs) -> ExitCode {
    let attached = !args.detach && (args.create.interactive || args.create.tty);
    if attached && args.create.interactive && args.create.tty && !super::attach::stdin_is_terminal()
    {
        // docker's check, before anything is made (exit 1, not 125).
        return crate::report::report(&super::attach::not_a_tty());
    }
    let result = (|| {
        let store = Store::open(global.store_root())?;
        let mut req = args.create.request()?;
        if args.detach {
            req.stdio.stdin_once = false;
            req.stdio.attach_stdin = false;
        }
        let c = strata_build::create_container(&store, &req)?;
        anyhow::Ok((store, c))
    })();
    let (store, c) = match result {
        Ok(x) => x,
        Err(e) => return fail_125(e),
    };
    if args.detach {
        match spawn_monitor(global, &c.config.id) {
            Ok(Started::Running) => {
                let _ = writeln!(std::io::stdout(), "{}", c.config.id);
                ExitCode::SUCCESS
            }
            Ok(Started::Failed(code, message)) => start_failed(&c.config.name, code, &message),
            Err(e) => fail_125(e),
        }
    } else if attached {
        super::attach::start_attached(global, &store, &c, args.create.interactive)
    } else {
        foreground(&store, &c.config.id, &c.config.name)
    }
}

pub(crate) fn create(args: CreateOnlyArgs, global: &GlobalArgs) -> ExitCode {
    let result = (|| {
        let store = Store::open(global.store_root())?;
        let c = strata_build::create_container(&store, &args.create.request()?)?;
        writeln!(std::io::stdout(), "{}", c.config.id)?;
        anyhow::Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail_125(e),
    }
}

pub(crate) fn start(args: StartArgs, global: &GlobalArgs) -> ExitCode {
    let store = match Store::open(global.store_root()) {
        Ok(s) => s,
        Err(e) => return fail_125(e.into()),
    };
    if args.attach || args.interactive {
        // docker attaches to one container only.
        let [name] = args.containers.as_slice() else {
            return fail_125(anyhow::anyhow!(
                "you cannot start and attach multiple containers at once"
            ));
        };
        return match store.container(name) {
            Ok(c) if c.state.status == ContainerStatus::Running => {
                fail_125(anyhow::anyhow!("container {name} is already running"))
            }
            Ok(c) if args.interactive || c.config.stdio.tty || c.config.stdio.open_stdin => {
                let stdin = args.interactive && c.config.stdio.open_stdin;
                if stdin && c.config.stdio.tty && !super::attach::stdin_is_terminal() {
                    return crate::report::report(&super::attach::not_a_tty());
                }
                super::attach::start_attached(global, &store, &c, stdin)
            }
            Ok(c) => foreground(&store, &c.config.id, &c.config.name),
            Err(e) => fail_125(e.into()),
        };
    }
    // As docker's: each failure reported, the names that failed listed last, exit 1.
    let mut failed = Vec::new();
    for name in &args.containers {
        let started = store
            .container(name)
            .map_err(anyhow::Error::from)
            .and_then(|c| start_detached(global, &c));
        match started {
            Ok(()) => {
                let _ = writeln!(std::io::stdout(), "{name}");
            }
            Err(e) => {
                let _ = crate::report::report(&e);
                failed.push(name.as_str());
            }
        }
    }
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    let _ = crate::report::report(&anyhow::anyhow!(
        "failed to start containers: {}",
        failed.join(", ")
    ));
    ExitCode::FAILURE
}

/// Starts container `c` under a detached monitor; nothing when it runs already.
pub(crate) fn start_detached(
    global: &GlobalArgs,
    c: &strata_store::Container,
) -> anyhow::Result<()> {
    if c.state.status == ContainerStatus::Running {
        return Ok(());
    }
    match spawn_monitor(global, &c.config.id)? {
        Started::Running => Ok(()),
        Started::Failed(_, message) => Err(anyhow::anyhow!("{}", crate::report::clip(&message))
            .context(format!("failed to start container {}", c.config.name))),
    }
}

/// Runs container `id` with this process as its monitor, echoing its output; exits with its
/// code. Signals are sent on to it ([`proxy_foreground`]): the first Ctrl-C as SIGINT, the
/// second kills it.
fn foreground(store: &Store, id: &str, name: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
    {
        Ok(r) => r,
        Err(e) => return fail_125(e),
    };
    let cancel = CancellationToken::new();
    proxy_foreground(store, id, cancel.clone());
    let outcome = runtime.block_on(async {
        let echo = |stream, line: &[u8]| {
            let _ = match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line).and_then(|()| out.write_all(b"\n"))
                }
                Stream::Stderr => {
                    let mut out = std::io::stderr().lock();
                    out.write_all(line).and_then(|()| out.write_all(b"\n"))
                }
            };
        };
        strata_build::monitor_container(store, id, echo, |_| {}, cancel).await
    });
    match outcome {
        Ok(Outcome::Exited(code)) => exit_code(code),
        Ok(Outcome::StartFailed { code, message }) => start_failed(name, code, &message),
        Err(e) => fail_125(e.into()),
    }
}

/// docker's sig-proxy for a foreground `run`/`start -a`: the signals this process gets go on
/// to container `id` ([`strata_build::proxied_signals`]), the first Ctrl-C (SIGINT) too; the
/// second cancels `cancel` (the container is killed). Returns once they are caught.
fn proxy_foreground(store: &Store, id: &str, cancel: CancellationToken) {
    let (store, id) = (store.clone(), id.to_owned());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("strata-sig-proxy".into())
        .spawn(move || {
            let int = strata_build::SignalKind::interrupt();
            let mut interrupted = false;
            let listening = move || {
                let _ = ready_tx.send(());
            };
            strata_build::on_signals(&strata_build::proxied_signals(), listening, |kind| {
                if kind == int && interrupted {
                    cancel.cancel();
                    return false;
                }
                let sig = kind.as_raw_value().to_string();
                let proxied = store
                    .container(&id)
                    .ok()
                    .and_then(|c| strata_build::kill_container(&store, &c, &sig).ok());
                if kind == int {
                    if proxied.is_none() {
                        cancel.cancel();
                        return false;
                    }
                    interrupted = true;
                }
                true
            });
        });
    if spawned.is_ok() {
        let _ = ready.recv();
    }
}

/// How a detached monitor's start went.
enum Started {
    Running,
    Failed(i32, String),
}

/// Starts `strata __monitor ID` detached and waits for its first line.
fn spawn_monitor(global: &GlobalArgs, id: &str) -> anyhow::Result<Started> {
    MonitorStart::spawn(global, id, false)?.read_start()
}

/// A detached monitor being started, and the lines it says on its way.
pub(crate) struct MonitorStart {
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl MonitorStart {
    /// Starts `strata __monitor [--attach-first] ID` detached.
    pub(crate) fn spawn(
        global: &GlobalArgs,
        id: &str,
        attach_first: bool,
    ) -> anyhow::Result<MonitorStart> {
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("--root").arg(global.store_root()).arg("__monitor");
        if attach_first {
            cmd.arg("--attach-first");
        }
        let mut child = cmd
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start the container's monitor")?;
        let stdout = child
            .stdout
            .take()
            .context("the container's monitor has no output")?;
        // It lives on, in a session of its own; the kernel reaps it once we are gone.
        drop(child);
        Ok(MonitorStart {
            out: std::io::BufReader::new(stdout),
        })
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .context("failed to read from the container's monitor")?;
        Ok(line.trim_end_matches('\n').to_owned())
    }

    /// `--attach-first`: its first line says that its attach socket listens.
    pub(crate) fn expect_listening(&mut self) -> anyhow::Result<()> {
        let line = self.line()?;
        if line == "listening" {
            return Ok(());
        }
        match started_line(&line)? {
            Started::Failed(_, message) => anyhow::bail!("{}", crate::report::clip(&message)),
            Started::Running => anyhow::bail!("the container's monitor started it unattached"),
        }
    }

    /// How the start went: `None` when it runs, else the failure reported and its code.
    pub(crate) fn started(&mut self, name: &str) -> Option<ExitCode> {
        match self.read_start() {
            Ok(Started::Running) => None,
            Ok(Started::Failed(code, message)) => Some(start_failed(name, code, &message)),
            Err(e) => Some(fail_125(e)),
        }
    }

    fn read_start(&mut self) -> anyhow::Result<Started> {
        let line = self.line()?;
        started_line(&line)
    }
}

/// Reads a monitor's start line: `started PID`, `failed CODE\tMESSAGE`, `error\tMESSAGE`.
fn started_line(line: &str) -> anyhow::Result<Started> {
    if line.starts_with("started ") {
        return Ok(Started::Running);
    }
    if let Some(rest) = line.strip_prefix("failed\t")
        && let Some((code, message)) = rest.split_once('\t')
    {
        return Ok(Started::Failed(
            code.parse().unwrap_or(125),
            message.to_owned(),
        ));
    }
    if let Some(message) = line.strip_prefix("error\t") {
        anyhow::bail!("{message}");
    }
    anyhow::bail!("the container's monitor ended without starting it")
}

/// `strata __monitor ID`: detaches, runs the container, reports the start on stdout.
pub(crate) fn monitor(args: MonitorArgs, global: &GlobalArgs) -> ExitCode {
    if strata_build::process::detach().is_err() {
        return ExitCode::from(125);
    }
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    };
    let store = match Store::open(global.store_root()) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("error\t{}\n", one_line(&e.into())));
            return ExitCode::from(125);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        say("error\tfailed to start the async runtime\n");
        return ExitCode::from(125);
    };
    let started = |pid| {
        say(&format!("started {pid}\n"));
        let _ = strata_build::process::stdout_to_dev_null();
    };
    let outcome = runtime.block_on(async {
        if args.attach_first {
            let listening = || say("listening\n");
            strata_build::monitor_container_attached(
                &store,
                &args.id,
                listening,
                started,
                CancellationToken::new(),
            )
            .await
        } else {
            strata_build::monitor_container(
                &store,
                &args.id,
                |_, _| {},
                started,
                CancellationToken::new(),
            )
            .await
        }
    });
    // Written to /dev/null once started: only a failed start has someone to read it.
    match outcome {
        Ok(Outcome::Exited(_)) => ExitCode::SUCCESS,
        Ok(Outcome::StartFailed { code, message }) => {
            say(&format!("failed\t{code}\t{}\n", message.replace('\n', " ")));
            exit_code(code)
        }
        Err(e) => {
            say(&format!("error\t{}\n", one_line(&e.into())));
            ExitCode::from(125)
        }
    }
}

/// An error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// Runs `each` on every named container, all at once (stopping 50 takes one stop timeout,
/// not 50), then prints, in the order given, the name on success and the error else (exit 1
/// when any failed), as docker's multi-container commands do.
fn for_each(
    global: &GlobalArgs,
    names: &[String],
    each: impl Fn(&Store, &strata_store::Container) -> anyhow::Result<Option<String>> + Sync,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let one = |name: &String| {
        store
            .container(name)
            .map_err(anyhow::Error::from)
            .and_then(|c| each(&store, &c))
    };
    let results: Vec<anyhow::Result<Option<String>>> = if names.len() == 1 {
        names.iter().map(one).collect()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = names.iter().map(|n| s.spawn(|| one(n))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the operation panicked")))
                })
                .collect()
        })
    };
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for (name, done) in names.iter().zip(results) {
        match done {
            Ok(line) => writeln!(out, "{}", line.unwrap_or_else(|| name.clone()))?,
            Err(e) => {
                failed = true;
                let _ = crate::report::report(&e);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn stop(args: StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    for_each(global, &args.containers, |store, c| {
        strata_build::stop_container(store, c, args.time)?;
        Ok(None)
    })
}

pub(crate) fn restart(args: StopArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    for_each(global, &args.containers, |store, c| {
        strata_build::stop_container(store, c, args.time)?;
        // The monitor that ran it releases its lock right after recording the exit.
        let c = store.container(&c.config.id)?;
        let mut left = 500;
        while store.lock_container_monitor(&c.config.id)?.is_none() && left > 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            left -= 1;
        }
        start_detached(global, &c)?;
        Ok(None)
    })
}

pub(crate) fn container(args: ContainerArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ContainerCommand::Prune(a) => prune(a, global),
    }
}

/// `docker container prune`: every container not running, removed.
fn prune(args: PruneArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let _ = args.force;
    let store = Store::open(global.store_root())?;
    let mut out = std::io::stdout().lock();
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for c in store.containers()? {
        if c.state.status == ContainerStatus::Running {
            continue;
        }
        let size = strata_store::tree_size(&c.dir);
        match store.remove_container(&c.config.id) {
            Ok(()) => {
                deleted.push(c.config.id);
                reclaimed += size;
            }
            // Started or removed meanwhile.
            Err(
                strata_store::ContainerError::Running { .. }
                | strata_store::ContainerError::NotFound(_),
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    write_pruned(&mut out, "Containers", &deleted, reclaimed)?;
    Ok(ExitCode::SUCCESS)
}

/// docker's report of a prune: `Deleted WHAT:` and the names (when any), then the space.
pub(crate) fn write_pruned(
    out: &mut impl std::io::Write,
    what: &str,
    deleted: &[String],
    reclaimed: u64,
) -> std::io::Result<()> {
    if !deleted.is_empty() {
        writeln!(out, "Deleted {what}:")?;
        for name in deleted {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    crate::cmd::images::write_reclaimed(out, reclaimed)
}

pub(crate) fn kill(args: KillArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    for_each(global, &args.containers, |store, c| {
        strata_build::kill_container(store, c, &args.signal)?;
        Ok(None)
    })
}

pub(crate) fn wait(args: WaitArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    for_each(global, &args.containers, |store, c| {
        let code = match strata_build::wait_stopped(store, &c.config.id, None)? {
            Some(c) => c.state.exit_code,
            // A `--rm` container gone at its end: its code went with it.
            None => c.state.exit_code,
        };
        Ok(Some(code.to_string()))
    })
}

pub(crate) fn rm(args: RmArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    for_each(global, &args.containers, |store, c| {
        strata_build::remove_container(store, c, args.force)?;
        if args.volumes {
            strata_build::remove_anonymous_volumes(store, &c.config)?;
        }
        Ok(None)
    })
}

pub(crate) fn rename(args: RenameArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let c = store.container(&args.container)?;
    store.rename_container(&c.config.id, &args.new_name)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_skip_comments_and_blank_lines() {
        let lines: Vec<String> = env_file_lines("# c\nA=1\n\n  B=two words\nC\n").collect();
        assert_eq!(lines, ["A=1", "B=two words", "C"]);
    }
}
