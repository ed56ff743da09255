//! `strata builder prune`: docker's command over strata's build cache (see
//! `strata_build::prune_cache` and docs/cache.md).

use crate::GlobalArgs;
use anyhow::{Context, bail};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use strata_build::{CachePrune, CachePruneReport};

/// Arguments of `strata builder`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

/// Arguments of `strata builder prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. `until=24h`)
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Amount of disk space to keep for cache
    #[arg(long, value_name = "bytes", value_parser = crate::units::parse_size)]
    keep_storage: Option<u64>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BuilderCommand::Prune(a) => prune(a, global),
    }
}

fn prune(args: PruneArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let unused_for = until(&args.filter)?;
    if !args.force {
        let what = if args.all {
            "all build cache"
        } else {
            "all dangling build cache"
        };
        if !confirm(&format!(
            "WARNING! This will remove {what}. Are you sure you want to continue?"
        ))? {
            bail!("builder prune has been cancelled");
        }
    }
    let report = strata_build::prune_cache(
        &global.store_root(),
        &CachePrune {
            all: args.all,
            unused_for,
            // docker's default 0 means "no limit", not "keep nothing".
            keep_storage: args.keep_storage.filter(|&k| k > 0),
            wait: true,
        },
    )?;
    let mut out = std::io::stdout().lock();
    write_deleted(&mut out, &report)?;
    crate::cmd::images::write_reclaimed(&mut out, report.reclaimed)?;
    Ok(ExitCode::SUCCESS)
}

/// The `until=` of `--filter`s (docker's prune takes `until` and `label`; strata's cache has
/// no labels).
pub(crate) fn until(filters: &[String]) -> anyhow::Result<Option<Duration>> {
    let mut unused_for = None;
    for f in filters {
        match f.split_once('=') {
            Some(("until" | "unused-for", value)) => {
                unused_for = Some(
                    crate::units::parse_until(value, SystemTime::now())
                        .map_err(anyhow::Error::msg)?,
                );
            }
            _ => bail!("invalid filter {f:?}: strata's build cache supports until=DURATION"),
        }
    }
    Ok(unused_for)
}

/// docker's "Deleted build cache objects:" block, if anything was.
pub(crate) fn write_deleted(
    out: &mut impl Write,
    report: &CachePruneReport,
) -> std::io::Result<()> {
    if report.removed.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted build cache objects:")?;
    for e in &report.removed {
        writeln!(out, "{}", e.id)?;
    }
    writeln!(out)
}

/// docker's prompt (`builder`, `image` and `system prune`): the question on standard output, an answer line from standard input;
/// anything but y/yes, or no answer at all (a closed or empty stdin), is no.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("failed to read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
