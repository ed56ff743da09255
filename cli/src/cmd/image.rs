//! `strata image prune [-a]`, and `strata image ls|rm|tag|inspect|history|import|save|load` as
//! aliases of the top-level commands, like `docker image`.

use crate::GlobalArgs;
use crate::cmd::builder::confirm;
use anyhow::bail;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Removed, Store};

/// Arguments of `strata image`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Remove dangling images (all images with -a), then unreferenced blobs and snapshots
    Prune(PruneArgs),
    /// List images
    #[command(alias = "list")]
    Ls(crate::cmd::images::Args),
    /// Remove images
    #[command(alias = "remove")]
    Rm(crate::cmd::rmi::Args),
    /// Tag an image
    Tag(crate::cmd::tag::Args),
    /// Show an image as JSON
    Inspect(crate::cmd::inspect::Args),
    /// Show an image's history
    History(crate::cmd::history::Args),
    /// Import a rootfs tarball as an image
    Import(crate::cmd::import::Args),
    /// Save images to a tarball
    Save(crate::cmd::save::Args),
    /// Load images from a tarball
    Load(crate::cmd::load::Args),
}

/// Arguments of `strata image prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove all images, not only dangling ones (strata has no containers to keep any alive)
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImageCommand::Prune(a) => prune(a, global),
        ImageCommand::Ls(a) => crate::cmd::images::run(a, global),
        ImageCommand::Rm(a) => crate::cmd::rmi::run(a, global),
        ImageCommand::Tag(a) => crate::cmd::tag::run(a, global),
        ImageCommand::Inspect(a) => crate::cmd::inspect::run(a, global),
        ImageCommand::History(a) => crate::cmd::history::run(a, global),
        ImageCommand::Import(a) => crate::cmd::import::run(a, global),
        ImageCommand::Save(a) => crate::cmd::save::run(a, global),
        ImageCommand::Load(a) => crate::cmd::load::run(a, global),
    }
}

fn prune(args: PruneArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !args.force {
        let what = if args.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !confirm(&format!(
            "WARNING! This will remove {what}.\nAre you sure you want to continue?"
        ))? {
            bail!("image prune has been cancelled");
        }
    }
    let store = Store::open(global.store_root())?;
    let report = store.prune(args.all)?;
    let mut out = std::io::stdout().lock();
    write_deleted_images(&mut out, &report.removed)?;
    crate::cmd::images::write_reclaimed(&mut out, report.reclaimed)?;
    Ok(ExitCode::SUCCESS)
}

/// docker's "Deleted Images:" block (`image prune`, `system prune`), if any was.
pub(crate) fn write_deleted_images(
    out: &mut impl Write,
    removed: &[Removed],
) -> std::io::Result<()> {
    if removed.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted Images:")?;
    for r in removed {
        match r {
            Removed::Untagged(t) => writeln!(out, "untagged: {}", t.familiar())?,
            Removed::Deleted(id) => writeln!(out, "deleted: {id}")?,
        }
    }
    writeln!(out)
}
