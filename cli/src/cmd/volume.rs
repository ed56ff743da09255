//! `strata volume create|ls|rm|inspect|prune`: the store's volumes
//! (`<root>/volumes/NAME/_data`), with docker's output. Volumes are made by `run`/`create`
//! too (`-v NAME:/path`, `-v /path`); one a container names cannot be removed.

use crate::GlobalArgs;
use serde::Serialize;
use std::io::Write as _;
use std::process::ExitCode;
use strata_store::{Store, VolumeError};

/// Arguments of `strata volume`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: VolumeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VolumeCommand {
    /// Create a volume (a random name when none is given)
    Create {
        /// The volume's name
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list")]
    Ls {
        /// Only show volume names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove volumes no container names
    #[command(visible_alias = "remove")]
    Rm {
        /// Accepted for docker's scripts: a volume in use is refused either way
        #[arg(short, long)]
        force: bool,
        /// Volumes
        #[arg(value_name = "VOLUME", required = true)]
        volumes: Vec<String>,
    },
    /// Show volumes as JSON
    Inspect {
        /// Volumes
        #[arg(value_name = "VOLUME", required = true)]
        volumes: Vec<String>,
    },
    /// Remove the anonymous volumes no container names (`-a`: every unused volume)
    Prune {
        /// Every unused volume, named ones too
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation (strata never asks)
        #[arg(short, long)]
        force: bool,
    },
}

/// docker's `volume inspect` object.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeInspect {
    created_at: String,
    driver: &'static str,
    labels: Option<()>,
    mountpoint: std::path::PathBuf,
    name: String,
    options: Option<()>,
    scope: &'static str,
}

/// Whether `name` is one strata gave an anonymous volume (64 hex digits, as docker's).
fn anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match args.command {
        VolumeCommand::Create { name } => {
            let store = Store::open(global.store_root())?;
            let (name, _) = store.create_volume(name.as_deref())?;
            writeln!(out, "{name}")?;
        }
        VolumeCommand::Ls { quiet } => {
            let store = Store::open_read_only(global.store_root())?;
            let names = store.volumes()?;
            if quiet {
                for n in names {
                    writeln!(out, "{n}")?;
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_owned(), "VOLUME NAME".to_owned()]];
                rows.extend(names.into_iter().map(|n| vec!["local".to_owned(), n]));
                crate::cmd::images::write_table(&mut out, &rows)?;
            }
        }
        VolumeCommand::Rm { force, volumes } => {
            let _ = force;
            let store = Store::open(global.store_root())?;
            let mut failed = false;
            for name in volumes {
                match store.remove_volume(&name) {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        failed = true;
                        let _ = crate::report::report(&anyhow::Error::new(e));
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Inspect { volumes } => {
            let store = Store::open_read_only(global.store_root())?;
            let mut found = Vec::new();
            let mut failed = false;
            for name in volumes {
                let data = store.volume_data(&name);
                let known = store.volumes()?.contains(&name);
                match fs_err::metadata(data.parent().unwrap_or(&data)) {
                    Ok(meta) if known => {
                        let created = meta
                            .modified()
                            .ok()
                            .and_then(|t| jiff::Timestamp::try_from(t).ok())
                            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_default();
                        found.push(VolumeInspect {
                            created_at: created,
                            driver: "local",
                            labels: None,
                            mountpoint: data,
                            name,
                            options: None,
                            scope: "local",
                        });
                    }
                    _ => {
                        failed = true;
                        let e = anyhow::Error::new(VolumeError::NotFound(name));
                        let _ = crate::report::report(&e);
                    }
                }
            }
            serde_json::to_writer_pretty(&mut out, &found)?;
            writeln!(out)?;
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Prune { all, force } => {
            let _ = force;
            let store = Store::open(global.store_root())?;
            let mut deleted = Vec::new();
            let mut reclaimed = 0;
            for name in store.volumes()? {
                if !all && !anonymous(&name) {
                    continue;
                }
                let dir = store.volume_data(&name);
                let size = strata_store::tree_size(&dir);
                match store.remove_volume(&name) {
                    Ok(()) => {
                        deleted.push(name);
                        reclaimed += size;
                    }
                    Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            crate::cmd::container::write_pruned(&mut out, "Volumes", &deleted, reclaimed)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
