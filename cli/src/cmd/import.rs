//! `strata import FILE|- [REPO[:TAG]]`: a rootfs tarball becomes a one-layer image, with
//! `--change` applying Dockerfile instructions to its config like `docker import -c`, through
//! the frontend's parser and lowering ([`strata_frontend::apply_changes`]).

use crate::GlobalArgs;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use strata_frontend::{Platform, apply_changes};
use strata_graph::ImageConfig;
use strata_store::{Compression, ImportOptions, Reference, Store};

/// Arguments of `strata import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long, value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message for the history
    #[arg(short, long)]
    message: Option<String>,
    /// Set the platform the image is for (os/arch[/variant]) instead of this machine's
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Layer compression: gzip (default) or zstd
    #[arg(long, default_value = "gzip", value_parser = parse_compression)]
    compression: Compression,
    /// The tarball (plain, gzip or zstd), or `-` for stdin
    #[arg(value_name = "FILE|-")]
    file: String,
    /// The reference to tag the image with
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!("unknown compression {s:?}: use gzip or zstd")),
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let tags = match &args.reference {
        Some(r) => vec![Reference::parse_tag(r)?],
        None => Vec::new(),
    };
    let changes: Vec<&str> = args.change.iter().map(String::as_str).collect();
    let platform = match &args.platform {
        Some(p) => Platform::parse(p, &Platform::host())?,
        None => Platform::host(),
    };
    let config = apply_changes(&ImageConfig::default(), &changes, &platform).map_err(|err| {
        let change = changes.get(err.change).copied().unwrap_or_default();
        anyhow::Error::new(err).context(format!("invalid --change {change:?}"))
    })?;
    let store = Store::open(global.store_root())?;
    let options = ImportOptions {
        runtime_config: serde_json::to_value(config).context("failed to encode the config")?,
        tags,
        compression: args.compression,
        source: args.file.clone(),
        message: args.message.clone(),
        platform: Some(platform.clone()),
    };
    let id = if args.file == "-" {
        store.import(std::io::stdin().lock(), options)?
    } else {
        let file = fs_err::File::open(&args.file)?;
        store
            .import(file, options)
            .with_context(|| format!("failed to import {}", args.file))?
    };
    writeln!(std::io::stdout().lock(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}
