//! `strata rmi [-f] IMAGE...`: untag, and delete images whose last tag went, as `docker rmi`.

use crate::GlobalArgs;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Removed, Store};

/// Arguments of `strata rmi`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Remove an image ID even if several repositories name it
    #[arg(short, long)]
    force: bool,
    /// Images (references or IDs)
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok(removed) => {
                for r in removed {
                    match r {
                        Removed::Untagged(t) => writeln!(out, "Untagged: {}", t.familiar())?,
                        Removed::Deleted(id) => writeln!(out, "Deleted: {id}")?,
                    }
                }
            }
            Err(e) => {
                failed = true;
                let _ = crate::report::report(&anyhow::Error::new(e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
