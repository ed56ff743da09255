//! `strata check`.

use crate::GlobalArgs;
use std::process::ExitCode;

/// Arguments of `strata check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("strata check is not implemented yet")
}
