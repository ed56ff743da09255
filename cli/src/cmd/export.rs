//! `strata export [-o FILE] CONTAINER`: a container's merged root filesystem as one flat tar
//! (what `strata import` and `docker import` take), streamed. With `-o`, the file appears only
//! once complete (written beside it, then renamed).

use crate::GlobalArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata export`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The container
    container: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    crate::cmd::save::write_archive(args.output.as_deref(), "a tar archive", |out| {
        strata_build::export_container(&store, &args.container, out)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
