//! `strata run`: run a command of an image in the worker's sandbox, in the foreground, so a
//! user can check what they built. The exit code passes through.
//!
//! The container's filesystem is a fresh overlay upper dir over the image's snapshots and is
//! discarded when the command ends (`--rm` is accepted for docker's muscle memory; keeping
//! containers comes with `ps`/`commit` on the roadmap). Standard input is not attached.

use crate::GlobalArgs;
use anyhow::Context as _;
use std::io::Write as _;
use std::process::ExitCode;
use strata_build::{RunImage, Stream};
use strata_graph::NetworkMode;
use strata_store::Store;
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

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let _ = args.rm;
    let store = Store::open(global.store_root())?;
    let run = RunImage {
        image: args.image,
        entrypoint: args.entrypoint,
        command: args.command,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        network: if args.network == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let code = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let output = |stream, line: &[u8]| {
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
        strata_build::run_image(&store, &run, output, cancel).await
    })?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
