//! `strata commit [-m MSG] [-a AUTHOR] [-c INSTRUCTION]... CONTAINER [REPO[:TAG]]`: a new image
//! of a container's filesystem and config ([`strata_build::commit_container`]); prints its
//! ID as docker does (`sha256:…`).

use crate::GlobalArgs;
use std::io::Write;
use std::process::ExitCode;
use strata_build::CommitOptions;
use strata_store::{Compression, Reference, Store};

/// Arguments of `strata commit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long, value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Freeze a running container while its layer is read (not rootless)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pause: bool,
    /// Layer compression: none (default: a plain tar, as a build's layers and docker's
    /// commit; compress when saving or pushing), gzip or zstd
    #[arg(long, default_value = "none", value_parser = parse_layer_compression)]
    compression: Compression,
    /// The container
    container: String,
    /// The reference to tag the image with
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

/// `--compression`: `none` or what `import` takes.
fn parse_layer_compression(s: &str) -> Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        _ => crate::cmd::import::parse_compression(s)
            .map_err(|e| format!("{e} (or none, the default)")),
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let tags = match &args.reference {
        Some(r) => vec![Reference::parse_tag(r)?],
        None => Vec::new(),
    };
    let store = Store::open(global.store_root())?;
    let opts = CommitOptions {
        message: args.message,
        author: args.author,
        changes: args.change,
        tags,
        compression: args.compression,
        pause: args.pause,
    };
    let id = strata_build::commit_container(&store, &args.container, &opts)?;
    writeln!(std::io::stdout().lock(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}
