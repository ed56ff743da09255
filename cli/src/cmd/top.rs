//! `strata top CONTAINER [ps OPTIONS]`: the processes of a running container, as docker's:
//! the host's `ps` (`-ef` unless options are given) filtered to the rows whose PID is in the
//! container's PID namespace ([`strata_build::container_processes`]). Run before the user
//! namespace, as `exec` (rootless, the container's processes are only visible to the user).

use crate::GlobalArgs;
use anyhow::{Context, bail};
use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata top`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The container
    container: String,
    /// Options for ps (default: -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    ps_options: Vec<String>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let pids: HashSet<u32> = strata_build::container_processes(&store, &args.container)?
        .into_iter()
        .collect();
    let ps_args = if args.ps_options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&ps_args)
        .output()
        .context("failed to run ps")?;
    if !out.status.success() {
        bail!(
            "ps {} failed: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|c| c == "PID") else {
        bail!("couldn't find PID field in ps output");
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
