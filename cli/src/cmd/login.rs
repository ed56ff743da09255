//! `strata login [SERVER] [-u USER] [-p PASSWORD | --password-stdin]` and `strata logout
//! [SERVER]`, in docker's config file (`~/.docker/config.json`), so docker and strata share
//! one login.

use crate::GlobalArgs;
use crate::registry::{client, docker_config_path};
use anyhow::Context as _;
use std::io::{Read, Write};
use std::process::ExitCode;
use strata_store::{Credentials, login_server, remove_credentials, save_credentials};

/// Arguments of `strata login`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: a password on the command line is visible to others)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// The registry (Docker Hub if none)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// Arguments of `strata logout`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogoutArgs {
    /// The registry (Docker Hub if none)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

fn config_path() -> anyhow::Result<std::path::PathBuf> {
    docker_config_path().context("cannot find docker's config file: set HOME or DOCKER_CONFIG")
}

pub(crate) fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let registry = login_server(args.server.as_deref())?;
    let username = args
        .username
        .clone()
        .context("give a username with -u (strata login does not prompt)")?;
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("failed to read the password from stdin")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        if args.password.is_some() {
            let _ = writeln!(
                std::io::stderr().lock(),
                "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
            );
        }
        args.password
            .clone()
            .context("give a password with --password-stdin (strata login does not prompt)")?
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let credentials = Credentials { username, password };
    let path = config_path()?;
    client()?
        .with_credentials(&registry, credentials.clone())
        .login(&registry)
        .with_context(|| format!("failed to log in to {registry}"))?;
    save_credentials(&path, &registry, &credentials)?;
    writeln!(std::io::stdout().lock(), "Login Succeeded")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn logout(args: LogoutArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let registry = login_server(args.server.as_deref())?;
    let path = config_path()?;
    let mut out = std::io::stdout().lock();
    if remove_credentials(&path, &registry)? {
        writeln!(out, "Removing login credentials for {registry}")?;
    } else {
        writeln!(out, "Not logged in to {registry}")?;
    }
    Ok(ExitCode::SUCCESS)
}
