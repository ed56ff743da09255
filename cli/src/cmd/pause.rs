//! `strata pause CONTAINER...` and `strata unpause CONTAINER...`: freeze and thaw running
//! containers with the cgroup freezer ([`strata_build::pause_container`]), printing each name
//! as given, as docker's; a failure is reported and the others still done (exit 1).

use crate::GlobalArgs;
use std::io::Write;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata pause` and `strata unpause`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The containers
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub(crate) fn pause(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    each(args, global, strata_build::pause_container)
}

pub(crate) fn unpause(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    each(args, global, strata_build::unpause_container)
}

fn each(
    args: Args,
    global: &GlobalArgs,
    op: fn(&Store, &str) -> Result<(), strata_build::PauseError>,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let mut code = ExitCode::SUCCESS;
    for name in &args.containers {
        match op(&store, name) {
            Ok(()) => writeln!(std::io::stdout().lock(), "{name}")?,
            Err(e) => code = crate::report::report(&anyhow::Error::new(e)),
        }
    }
    Ok(code)
}
