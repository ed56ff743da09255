//! `strata`, the command line: parses arguments, resolves paths and the store root once, calls
//! the libraries, and formats their errors and events for people. The only crate that prints.
#![warn(missing_docs)]

mod cmd;
mod config;
mod diag;
mod dockerfile;
mod registry;
mod report;
mod rootless;
mod template;
mod ui;
mod units;

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

impl GlobalArgs {
    /// The store root: `--root`, `STRATA_ROOT`, or the default for this user.
    pub(crate) fn store_root(&self) -> PathBuf {
        if let Some(root) = &self.root {
            // Resolved once here, so the store never depends on the current directory.
            return std::path::absolute(root).unwrap_or_else(|_| root.clone());
        }
        if report::running_as_root() {
            return PathBuf::from("/var/lib/strata");
        }
        user_dir("XDG_DATA_HOME", ".local/share").join("strata")
    }
}

/// A non-root user's XDG directory: `$VAR` (`XDG_DATA_HOME`, `XDG_CONFIG_HOME`), else
/// `~/DEFAULT` (`.local/share`, `.config`).
pub(crate) fn user_dir(var: &str, default: &str) -> PathBuf {
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let xdg = std::env::var_os(var).filter(|v| !v.is_empty());
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    match xdg {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(home).join(default),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile
    Build(Box<cmd::build::Args>),
    /// Run a command in a new container of an image
    Run(cmd::container::RunArgs),
    /// Create a container of an image, not started
    Create(cmd::container::CreateOnlyArgs),
    /// Start stopped containers
    Start(cmd::container::StartArgs),
    /// Stop running containers (the stop signal, then SIGKILL)
    Stop(cmd::container::StopArgs),
    /// Stop and start containers again
    Restart(cmd::container::StopArgs),
    /// Send a signal to running containers
    Kill(cmd::container::KillArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(cmd::container::WaitArgs),
    /// Remove containers
    Rm(cmd::container::RmArgs),
    /// Rename a container
    Rename(cmd::container::RenameArgs),
    /// List containers
    Ps(cmd::ps::Args),
    /// Manage containers: prune
    Container(cmd::container::ContainerArgs),
    /// Show a container's output
    Logs(cmd::logs::Args),
    /// Manage volumes: create, ls, rm, inspect, prune
    Volume(cmd::volume::Args),
    /// Show the changes in a container's filesystem (A/C/D lines)
    Diff(cmd::diff::Args),
    /// Create a new image from a container's changes
    Commit(cmd::commit::Args),
    /// Export a container's filesystem as a tar archive
    Export(cmd::export::Args),
    /// Copy files between a container and the host (or a tar stream)
    Cp(cmd::cp::Args),
    /// Run a command in a running container
    Exec(cmd::exec::Args),
    /// Attach local standard input, output, and error streams to a running container
    Attach(cmd::attach::Args),
    /// Show the processes of a running container
    Top(cmd::top::Args),
    /// Freeze every process of running containers (cgroup freezer)
    Pause(cmd::pause::Args),
    /// Thaw paused containers
    Unpause(cmd::pause::Args),
    /// List a container's published ports
    Port(cmd::port::Args),
    /// A detached container's monitor (started by `run -d` and `start`)
    #[command(name = "__monitor", hide = true)]
    Monitor(cmd::container::MonitorArgs),
    /// Print the raw parse of a Dockerfile (BuildKit's dump format)
    Parse(cmd::parse::Args),
    /// Run every frontend check on a Dockerfile and print the problems found
    Check(cmd::check::Args),
    /// List images
    Images(cmd::images::Args),
    /// Add a reference to an image
    Tag(cmd::tag::Args),
    /// Remove images (untag; delete when the last tag goes)
    Rmi(cmd::rmi::Args),
    /// Show images as JSON, like `docker image inspect`
    Inspect(cmd::inspect::Args),
    /// Show the history of an image
    History(cmd::history::Args),
    /// Import a rootfs tarball (plain, gzip or zstd) as a one-layer image
    Import(cmd::import::Args),
    /// Save images to a tarball (OCI layout and docker archive at once)
    Save(cmd::save::Args),
    /// Load images from an OCI or docker tarball
    Load(cmd::load::Args),
    /// Download an image from a registry
    Pull(cmd::pull::Args),
    /// Upload an image to a registry
    Push(cmd::push::Args),
    /// Search a registry's repositories (its catalog)
    Search(cmd::search::Args),
    /// Manage manifest lists (multi-platform images): create, push, rm; inspect a registry's
    Manifest(cmd::manifest::Args),
    /// Log in to a registry (docker's config file)
    Login(cmd::login::Args),
    /// Log out from a registry
    Logout(cmd::login::LogoutArgs),
    /// Manage images
    Image(cmd::image::Args),
    /// Store-wide commands: df, prune, check
    System(cmd::system::Args),
    /// Manage the build cache: prune
    Builder(cmd::builder::Args),
}

impl Command {
    /// Whether the command writes a store or runs a sandbox (and so, run by a user, needs the
    /// user namespace). `check` only reads image configs, which are the user's own files:
    /// linting a Dockerfile needs no subordinate ids.
    fn uses_store(&self) -> bool {
        !matches!(
            self,
            Command::Parse(_)
                | Command::Check(_)
                | Command::Search(_)
                | Command::Login(_)
                | Command::Logout(_)
                // Joins the user namespace of the container's monitor instead (cmd/exec.rs).
                | Command::Exec(_)
                | Command::Top(_)
        )
    }
}

fn main() -> ExitCode {
    // The RUN sandbox re-execs this binary as `strata __sandbox`; it must run before clap,
    // threads or a runtime exist (see strata_build::sandbox_main).
    if std::env::args_os().nth(1).is_some_and(|a| a == "__sandbox") {
        return strata_build::sandbox_main();
    }
    // Before any thread: one malloc arena and a fixed mmap threshold keep a large context's
    // peak memory in bounds (worker/src/memory.rs). Malloc settings a user gives glibc in
    // GLIBC_TUNABLES win (the allocator read them at start).
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let tuned = std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc."));
    if !tuned {
        strata_build::limit_allocator();
    }
    let cli = Cli::parse();
    // Rootless, a running container's root can only be opened as the user, before the user
    // namespace (see strata_build::open_running_root).
    let cp_root = match &cli.command {
        Command::Cp(args) if !report::running_as_root() => {
            cmd::cp::open_running_root(args, &cli.global)
        }
        _ => None,
    };
    // Before any thread: a user other than root becomes root of a user namespace of its own
    // for every command that opens a store (docs/rootless.md).
    if cli.command.uses_store()
        && let Err(e) = rootless::enter_unless_root()
    {
        return report::report(&anyhow::Error::new(e));
    }
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(*args, &cli.global),
        Command::Run(args) => Ok(cmd::container::run(args, &cli.global)),
        Command::Create(args) => Ok(cmd::container::create(args, &cli.global)),
        Command::Start(args) => Ok(cmd::container::start(args, &cli.global)),
        Command::Stop(args) => cmd::container::stop(args, &cli.global),
        Command::Restart(args) => cmd::container::restart(args, &cli.global),
        Command::Kill(args) => cmd::container::kill(args, &cli.global),
        Command::Container(args) => cmd::container::container(args, &cli.global),
        Command::Wait(args) => cmd::container::wait(args, &cli.global),
        Command::Rm(args) => cmd::container::rm(args, &cli.global),
        Command::Rename(args) => cmd::container::rename(args, &cli.global),
        Command::Ps(args) => cmd::ps::run(args, &cli.global),
        Command::Logs(args) => cmd::logs::run(args, &cli.global),
        Command::Volume(args) => cmd::volume::run(args, &cli.global),
        Command::Diff(args) => cmd::diff::run(args, &cli.global),
        Command::Commit(args) => cmd::commit::run(args, &cli.global),
        Command::Export(args) => cmd::export::run(args, &cli.global),
        Command::Cp(args) => cmd::cp::run(args, &cli.global, cp_root),
        Command::Exec(args) => cmd::exec::run(args, &cli.global),
        Command::Attach(args) => cmd::attach::run(args, &cli.global),
        Command::Top(args) => cmd::top::run(args, &cli.global),
        Command::Pause(args) => cmd::pause::pause(args, &cli.global),
        Command::Unpause(args) => cmd::pause::unpause(args, &cli.global),
        Command::Port(args) => cmd::port::run(args, &cli.global),
        Command::Monitor(args) => Ok(cmd::container::monitor(args, &cli.global)),
        Command::Parse(args) => cmd::parse::run(args, &cli.global),
        Command::Check(args) => cmd::check::run(args, &cli.global),
        Command::Images(args) => cmd::images::run(args, &cli.global),
        Command::Tag(args) => cmd::tag::run(args, &cli.global),
        Command::Rmi(args) => cmd::rmi::run(args, &cli.global),
        Command::Inspect(args) => cmd::inspect::run(args, &cli.global),
        Command::History(args) => cmd::history::run(args, &cli.global),
        Command::Import(args) => cmd::import::run(args, &cli.global),
        Command::Save(args) => cmd::save::run(args, &cli.global),
        Command::Load(args) => cmd::load::run(args, &cli.global),
        Command::Pull(args) => cmd::pull::run(args, &cli.global),
        Command::Push(args) => cmd::push::run(args, &cli.global),
        Command::Search(args) => cmd::search::run(args, &cli.global),
        Command::Manifest(args) => cmd::manifest::run(args, &cli.global),
        Command::Login(args) => cmd::login::run(args, &cli.global),
        Command::Logout(args) => cmd::login::logout(args, &cli.global),
        Command::Image(args) => cmd::image::run(args, &cli.global),
        Command::System(args) => cmd::system::run(args, &cli.global),
        Command::Builder(args) => cmd::builder::run(args, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(err) => report::report(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_pids_limit_help_names_the_default_the_build_applies() {
        let cli = Cli::command();
        let build = cli.find_subcommand("build").expect("a build command");
        let arg = build
            .get_arguments()
            .find(|a| a.get_id() == "pids_limit")
            .expect("--pids-limit");
        let help = arg.get_help().expect("its help").to_string();
        assert!(
            help.contains(&format!("[default: {};", strata_build::DEFAULT_PIDS_LIMIT)),
            "{help}"
        );
    }
}
