//! `strata load [-i FILE]`: images from an OCI layout or docker archive tarball.

use crate::GlobalArgs;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata load`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Read from this file instead of stdin (plain, gzip or zstd)
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print nothing
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let loaded = match &args.input {
        Some(path) => {
            let file = fs_err::File::open(path)?;
            store
                .load(file)
                .with_context(|| format!("failed to load {}", path.display()))?
        }
        None => store
            .load(std::io::stdin().lock())
            .context("failed to load from stdin")?,
    };
    if !args.quiet {
        let mut out = std::io::stdout().lock();
        for image in loaded {
            if image.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", image.id)?;
            }
            for t in image.tags {
                writeln!(out, "Loaded image: {}", t.familiar())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
