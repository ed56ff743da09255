//! `strata system df` and `strata system check`.

use crate::GlobalArgs;
use crate::cmd::images::{human_size, write_table};
use std::io::Write;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata system`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SystemCommand {
    /// Show disk usage: images, blobs, snapshots and what prune would reclaim
    Df,
    /// Verify every reference, manifest, config and blob digest; exit 1 if anything is broken
    Check,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let mut out = std::io::stdout().lock();
    match args.command {
        SystemCommand::Df => {
            let du = store.disk_usage()?;
            let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
            let table = vec![
                ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
                    .map(String::from)
                    .to_vec(),
                vec![
                    "Images".into(),
                    du.images.to_string(),
                    du.tagged_images.to_string(),
                    human_size(du.blob_bytes),
                    format!(
                        "{} ({}%)",
                        human_size(du.reclaimable_blob_bytes),
                        pct(du.reclaimable_blob_bytes, du.blob_bytes)
                    ),
                ],
                vec![
                    "Snapshots".into(),
                    du.snapshots.to_string(),
                    String::new(),
                    human_size(du.snapshot_bytes),
                    format!(
                        "{} ({}%)",
                        human_size(du.reclaimable_snapshot_bytes),
                        pct(du.reclaimable_snapshot_bytes, du.snapshot_bytes)
                    ),
                ],
            ];
            write_table(&mut out, &table)?;
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Check => {
            let report = store.check()?;
            for p in &report.problems {
                writeln!(out, "broken: {p}")?;
            }
            writeln!(
                out,
                "checked {} images and {} blobs: {}",
                report.images,
                report.blobs,
                if report.is_clean() {
                    "ok".to_owned()
                } else {
                    format!("{} problems", report.problems.len())
                }
            )?;
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
