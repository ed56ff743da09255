//! `strata attach [--detach-keys K] [--no-stdin] [--sig-proxy=false] CONTAINER`, and the
//! attached foreground of `run -i`/`-t` and `start -a -i`: this process is a client of the
//! container's monitor ([`strata_build::Attached`], docs/containers.md), which it starts
//! itself for `run` and `start`. Exits with the container's code; 0 when detached with the
//! detach keys (ctrl-p ctrl-q unless `--detach-keys`), the container running on.

use crate::GlobalArgs;
use crate::cmd::container::exit_code;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use strata_build::{AttachEnd, AttachOptions, Attached};
use strata_store::{Container, Store};

/// docker's default detach keys.
pub(crate) const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Arguments of `strata attach`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    /// The container
    container: String,
}

/// docker's refusal of a terminal container's stdin that is no terminal.
pub(crate) fn not_a_tty() -> anyhow::Error {
    anyhow::anyhow!("the input device is not a TTY")
}

/// Whether this process's stdin is a terminal.
pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let keys = strata_build::parse_detach_keys(
        args.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS),
    )?;
    let store = Store::open(global.store_root())?;
    let c = store.container(&args.container)?;
    if c.state.status != strata_store::ContainerStatus::Running {
        return Err(strata_build::AttachError::NotRunning.into());
    }
    let stdin = !args.no_stdin && c.config.stdio.open_stdin;
    if stdin && c.config.stdio.tty && !stdin_is_terminal() {
        return Err(not_a_tty());
    }
    let opts = AttachOptions {
        stdin,
        detach_keys: keys,
    };
    let attached = Attached::connect(&c, &opts, false)?;
    let _proxy = args
        .sig_proxy
        .then(|| proxy_signals(&store, &c, stdin))
        .flatten();
    let end = attached.relay()?;
    Ok(end_code(&store, &c, end))
}

/// The exit code of an attached session: the container's, 0 when detached, else what its
/// records say once it has stopped.
pub(crate) fn end_code(store: &Store, c: &Container, end: AttachEnd) -> ExitCode {
    match end {
        AttachEnd::Exited(code) => exit_code(code),
        AttachEnd::Detached => ExitCode::SUCCESS,
        AttachEnd::Lost => match strata_build::wait_stopped(store, &c.config.id, None) {
            Ok(Some(seen)) => exit_code(seen.state.exit_code),
            _ => ExitCode::from(125),
        },
    }
}

/// docker's `--sig-proxy`: the signals sent to this process go to the container (all but
/// SIGCHLD, SIGPIPE, SIGURG and SIGWINCH: [`strata_build::proxied_signals`]), in a thread of
/// its own while the session lasts. Not with a terminal and stdin attached: a
/// raw terminal sends ctrl-c to the container itself.
pub(crate) fn proxy_signals(
    store: &Store,
    c: &Container,
    stdin: bool,
) -> Option<std::thread::JoinHandle<()>> {
    if c.config.stdio.tty && stdin {
        return None;
    }
    let (store, c) = (store.clone(), c.clone());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let proxy = std::thread::Builder::new()
        .name("strata-sig-proxy".into())
        .spawn(move || {
            let listening = move || {
                let _ = ready_tx.send(());
            };
            strata_build::on_signals(&strata_build::proxied_signals(), listening, |kind| {
                let sig = kind.as_raw_value().to_string();
                let _ = strata_build::kill_container(&store, &c, &sig);
                true
            });
        })
        .ok()?;
    // Proxied from here on: a signal sent once the container's output is seen reaches it.
    let _ = ready.recv();
    Some(proxy)
}

/// `run -i`/`-t` and `start -a -i` in the foreground: starts container `c` under a detached
/// monitor that waits for this client, attaches, relays until it exits (or the detach keys).
pub(crate) fn start_attached(
    global: &GlobalArgs,
    store: &Store,
    c: &Container,
    stdin: bool,
) -> ExitCode {
    let keys = match strata_build::parse_detach_keys(DEFAULT_DETACH_KEYS) {
        Ok(k) => k,
        Err(e) => return crate::cmd::container::fail_125(e.into()),
    };
    let opts = AttachOptions {
        stdin,
        detach_keys: keys,
    };
    let mut monitor = match crate::cmd::container::MonitorStart::spawn(global, &c.config.id, true) {
        Ok(m) => m,
        Err(e) => return crate::cmd::container::fail_125(e),
    };
    // The monitor listens, then waits for this hello before it starts the command.
    if let Err(e) = monitor.expect_listening() {
        return crate::cmd::container::fail_125(e);
    }
    let attached = match Attached::connect(c, &opts, true) {
        Ok(a) => a,
        Err(e) => return crate::cmd::container::fail_125(e.into()),
    };
    if let Some(code) = monitor.started(&c.config.name) {
        return code;
    }
    let _proxy = proxy_signals(store, c, stdin);
    match attached.relay() {
        Ok(end) => end_code(store, c, end),
        Err(e) => crate::cmd::container::fail_125(e.into()),
    }
}
