//! `strata tag SOURCE TARGET`.

use crate::GlobalArgs;
use std::process::ExitCode;
use strata_store::{Reference, Store};

/// Arguments of `strata tag`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The image to tag (reference or ID)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// The new reference
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Reference::parse_tag(&args.target)?;
    let store = Store::open(global.store_root())?;
    store.tag(&args.source, &target)?;
    Ok(ExitCode::SUCCESS)
}
