//! `strata system df [-v]`, `strata system prune [-a] [-f]`, `strata system check` and
//! `strata system restart-containers`.

use crate::GlobalArgs;
use crate::cmd::builder::{confirm, write_deleted};
use crate::cmd::image::write_deleted_images;
use crate::cmd::images::{human_since, human_size, write_table};
use anyhow::bail;
use std::io::Write;
use std::process::ExitCode;
use strata_build::{CacheEntry, CachePrune, cache_entries, unshared_size};
use strata_store::Store;

/// Arguments of `strata system`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SystemCommand {
    /// Show docker disk usage: images, build cache, snapshots and what prune would reclaim
    Df {
        /// Show detailed information on space usage (the build cache's entries)
        #[arg(short, long)]
        verbose: bool,
    },
    /// Remove unused data: dangling images (all unused with -a) and the build cache
    Prune {
        /// Remove all unused images not just dangling ones, and all build cache
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
    /// Verify every reference, manifest, config and blob digest; exit 1 if anything is broken
    Check,
    /// Start again the containers whose monitor died (a machine restart) and whose restart
    /// policy brings them back: what docker's daemon does when it starts
    RestartContainers,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = match args.command {
        // df reads the build cache too, which is not opened read-only yet.
        SystemCommand::Prune { .. } | SystemCommand::Df { .. } => Store::open(global.store_root())?,
        SystemCommand::Check => Store::open_read_only(global.store_root())?,
        SystemCommand::RestartContainers => Store::open(global.store_root())?,
    };
    let mut out = std::io::stdout().lock();
    match args.command {
        SystemCommand::RestartContainers => restart_containers(&store, global, &mut out),
        SystemCommand::Df { verbose } => {
            let cache = cache_entries(store.root())?;
            if verbose {
                write_cache_table(&mut out, &cache)?;
                return Ok(ExitCode::SUCCESS);
            }
            let du = store.disk_usage()?;
            let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
            let cache_size = unshared_size(&cache);
            let cache_in_use: u64 = cache
                .iter()
                .filter(|e| e.in_use && !e.shared)
                .map(|e| e.size)
                .sum();
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
                // strata has no containers or volumes; the rows stay for docker's readers.
                ["Containers", "0", "0", "0B", "0B"]
                    .map(String::from)
                    .to_vec(),
                ["Local Volumes", "0", "0", "0B", "0B"]
                    .map(String::from)
                    .to_vec(),
                vec![
                    "Build Cache".into(),
                    cache.len().to_string(),
                    cache.iter().filter(|e| e.in_use).count().to_string(),
                    human_size(cache_size),
                    human_size(cache_size - cache_in_use),
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
        SystemCommand::Prune { all, force } => {
            drop(out);
            system_prune(&store, all, force)
        }
        SystemCommand::Check => {
            let report = store.check()?;
            for p in &report.problems {
                writeln!(out, "broken: {p}")?;
            }
            writeln!(
                out,
                "checked {} images{} and {} blobs: {}",
                report.images,
                match report.containers {
                    0 => String::new(),
                    n => format!(", {n} containers"),
                },
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

/// Starts each container with a restart policy whose monitor died, unless `stop` or `kill`
/// had ended it; prints their names.
fn restart_containers(
    store: &Store,
    global: &GlobalArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    use crate::cmd::container::start_detached;
    let mut failed = false;
    for c in store.containers()? {
        let policy = strata_build::RestartPolicy::parse(&c.config.restart)?;
        if policy == strata_build::RestartPolicy::No
            || !c.state.monitor_died
            || c.state.stopped_by_user
            || c.state.status == strata_store::ContainerStatus::Running
        {
            continue;
        }
        match start_detached(global, &c) {
            Ok(()) => writeln!(out, "{}", c.config.name)?,
            Err(e) => {
                failed = true;
                let _ = crate::report::report(&e);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `docker system df -v`'s build cache part: its size, then one row per entry.
fn write_cache_table(out: &mut impl Write, cache: &[CacheEntry]) -> anyhow::Result<()> {
    writeln!(
        out,
        "Build cache usage: {}\n",
        human_size(unshared_size(cache))
    )?;
    let now = jiff::Timestamp::now();
    let since = |t: std::time::SystemTime| {
        jiff::Timestamp::try_from(t).map_or_else(|_| String::new(), |t| human_since(t, now))
    };
    let mut table = vec![
        [
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    // Most recently used first, as BuildKit lists them.
    for e in cache.iter().rev() {
        table.push(vec![
            e.id.clone(),
            e.kind.as_str().to_owned(),
            human_size(e.size),
            since(e.created),
            if e.in_use {
                "In Use".to_owned()
            } else {
                since(e.last_used)
            },
            // Hits are not counted (a hit only bumps the record's mtime).
            "-".to_owned(),
            e.shared.to_string(),
        ]);
    }
    write_table(out, &table)?;
    Ok(())
}

/// `docker system prune`: dangling images (all unused ones with `-a`), then the build cache
/// (all of it with `-a`). strata has no containers, networks or volumes.
fn system_prune(store: &Store, all: bool, force: bool) -> anyhow::Result<ExitCode> {
    if !force {
        let (images, cache) = if all {
            (
                "all images without at least one container associated to them",
                "all build cache",
            )
        } else {
            ("all dangling images", "unused build cache")
        };
        if !confirm(&format!(
            "WARNING! This will remove:\n  - {images}\n  - {cache}\n\nAre you sure you want to continue?"
        ))? {
            bail!("system prune has been cancelled");
        }
    }
    let images = store.prune(all)?;
    let cache = strata_build::prune_cache(
        store.root(),
        &CachePrune {
            all,
            wait: true,
            ..CachePrune::default()
        },
    )?;
    let mut out = std::io::stdout().lock();
    write_deleted_images(&mut out, &images.removed)?;
    write_deleted(&mut out, &cache)?;
    crate::cmd::images::write_reclaimed(&mut out, images.reclaimed + cache.reclaimed)?;
    Ok(ExitCode::SUCCESS)
}
