//! `strata exec [-d] [-i] [-t] [-e K=V] [-u USER] [-w DIR] CONTAINER CMD...`: a command in a running
//! container ([`strata_build::exec_container`]). Runs before anything else in `main`: this
//! process joins the container's namespaces, which takes a single thread, and rootless it
//! joins the user namespace of the container's monitor instead of making one of its own.
//! Exits with the command's code, 126/127 when it cannot start (docker's), 1 when the
//! container does not run.

use crate::GlobalArgs;
use crate::cmd::container::exit_code;
use std::process::ExitCode;
use strata_build::{ExecRequest, Outcome};
use strata_store::Store;

/// Arguments of `strata exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Detached: return once the command runs
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open (the command reads it)
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (a bare KEY takes this process's value)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// User (name or uid, with :group)
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory in the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// The container
    container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let env = args
        .env
        .iter()
        .filter_map(|kv| {
            if kv.contains('=') {
                return Some(kv.clone());
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "docker's `-e KEY` passes the caller's value"
            )]
            let value = std::env::var(kv).ok()?;
            Some(format!("{kv}={value}"))
        })
        .collect();
    let req = ExecRequest {
        command: args.command,
        env,
        workdir: args.workdir,
        user: args.user,
        interactive: args.interactive,
        detach: args.detach,
        tty: args.tty,
    };
    // Read-only: rootless, this process is still the user, outside any user namespace.
    let store = Store::open_read_only(global.store_root())?;
    match strata_build::exec_container(&store, &args.container, &req)? {
        Outcome::Exited(code) => Ok(exit_code(code)),
        Outcome::StartFailed { code, message } => {
            let err = anyhow::anyhow!("{}", crate::report::clip(&message))
                .context(format!("failed to exec in container {}", args.container));
            let _ = crate::report::report(&err);
            Ok(exit_code(code))
        }
    }
}
