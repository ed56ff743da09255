//! `strata diff CONTAINER`: the changes in a container's filesystem over its image, one
//! `A`/`C`/`D` line per path, in docker's order ([`strata_build::diff_container`]).

use crate::GlobalArgs;
use std::io::Write;
use std::process::ExitCode;
use strata_build::ChangeKind;
use strata_store::Store;

/// Arguments of `strata diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The container
    container: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let changes = strata_build::diff_container(&store, &args.container)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in changes {
        // The path's bytes as they are, as docker prints them.
        let kind = match c.kind {
            ChangeKind::Modified => b"C ",
            ChangeKind::Added => b"A ",
            ChangeKind::Deleted => b"D ",
        };
        out.write_all(kind)?;
        out.write_all(&c.path)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
