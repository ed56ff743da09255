//! `strata run`: run a command of an image in the worker's sandbox, in the foreground, so a
//! user can check what they built. The exit code passes through.
//!
//! The container's filesystem is a fresh overlay upper dir over the image's snapshots and is
//! discarded when the command ends (`--rm` is accepted for docker's muscle memory; keeping
//! containers comes with `ps`/`commit` on the roadmap). Standard input is not attached.

use crate::GlobalArgs;
use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::process::ExitCode;
use strata_graph::{ExecOp, ImageConfig, NetworkMode, SecurityMode};
use strata_store::Store;
use strata_worker::{OutputStream, RunError, RunRequest, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Arguments of `strata run`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub(crate) struct Args {
    /// Remove the container when it exits (always the case for now)
    #[arg(long)]
    rm: bool,
    /// Override the image's ENTRYPOINT
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Set an environment variable, `KEY=VALUE`
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User (`name|uid[:group|gid]`)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Network: `host` (default) or `none`
    #[arg(long, default_value = "host", value_parser = ["host", "none"])]
    network: String,
    /// The image
    image: String,
    /// The command and its arguments (default: the image's CMD)
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

/// argv as docker builds it: ENTRYPOINT then CMD, either overridden.
fn argv(config: &ImageConfig, args: &Args) -> Vec<String> {
    let entrypoint = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if args.command.is_empty() {
        // An overridden entrypoint drops the image's CMD, as docker does.
        if args.entrypoint.is_some() {
            Vec::new()
        } else {
            config.cmd.clone().unwrap_or_default()
        }
    } else {
        args.command.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let _ = args.rm;
    let store = Store::open(global.store_root())?;
    let image = store.image(&args.image)?;
    let mut config: ImageConfig = match &image.config.config {
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("image {} has an unreadable config", args.image))?,
        None => ImageConfig::default(),
    };
    for kv in &args.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        config.env_set(k, v);
    }
    let argv = argv(&config, &args);
    if argv.is_empty() {
        bail!(
            "image {} has no CMD or ENTRYPOINT: give a command to run",
            args.image
        );
    }
    let exec = ExecOp {
        args: argv,
        env: config.env.clone(),
        cwd: args
            .workdir
            .clone()
            .or_else(|| (!config.working_dir.is_empty()).then(|| config.working_dir.clone()))
            .unwrap_or_else(|| "/".into()),
        user: args.user.clone().unwrap_or_else(|| config.user.clone()),
        network: if args.network == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
        security: SecurityMode::Sandbox,
        mounts: Vec::new(),
    };
    let _lease = store.lease()?;
    let mut lowers: Vec<_> = store
        .snapshots(&image)?
        .into_iter()
        .map(|s| s.path)
        .collect();
    lowers.reverse();
    let upper = store.new_snapshot_dir()?;
    let mut worker_config = WorkerConfig::new(store.root().join("worker"), "/proc/self/exe");
    worker_config.no_new_privs = false;
    let worker = Worker::new(worker_config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        worker
            .run(
                RunRequest {
                    exec,
                    lowers,
                    upper: upper.clone(),
                    mounts: Vec::new(),
                    hostname: Some(image.id.short().to_owned()),
                },
                |stream, line| {
                    let _ = match stream {
                        OutputStream::Stdout => {
                            let mut out = std::io::stdout().lock();
                            out.write_all(line).and_then(|()| out.write_all(b"\n"))
                        }
                        OutputStream::Stderr => {
                            let mut out = std::io::stderr().lock();
                            out.write_all(line).and_then(|()| out.write_all(b"\n"))
                        }
                    };
                },
                cancel,
            )
            .await
    });
    let _ = fs_err::remove_dir_all(&upper);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(RunError::Exit { code, .. }) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        Err(err) => Err(err).context("failed to run the container"),
    }
}
