//! `strata`, the command line: parses arguments, resolves paths and the store root once, calls
//! the libraries, and formats their errors and events for people. The only crate that prints.
#![warn(missing_docs)]

mod cmd;
mod diag;
mod report;
#[expect(dead_code, reason = "`strata build` renders its events next")]
mod ui;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A daemonless Dockerfile build engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Store root [default: /var/lib/strata as root, else $XDG_DATA_HOME/strata]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
}

#[expect(dead_code, reason = "the store commands are the first users")]
impl GlobalArgs {
    /// The store root: `--root`, `STRATA_ROOT`, or the default for this user.
    pub(crate) fn store_root(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        if nix_is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the CLI reads the environment once"
        )]
        let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty());
        #[expect(
            clippy::disallowed_methods,
            reason = "the CLI reads the environment once"
        )]
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        match xdg {
            Some(dir) => PathBuf::from(dir).join("strata"),
            None => PathBuf::from(home).join(".local/share/strata"),
        }
    }
}

fn nix_is_root() -> bool {
    // The effective uid, read without unsafe code.
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the raw parse of a Dockerfile (BuildKit's dump format)
    Parse(cmd::parse::Args),
    /// Run every frontend check on a Dockerfile and print the problems found
    Check(cmd::check::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => cmd::parse::run(args, &cli.global),
        Command::Check(args) => cmd::check::run(args, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report::print_error(&err);
            ExitCode::from(1)
        }
    }
}
