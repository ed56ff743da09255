//! What the registry commands (`pull`, `push`, `login`, `logout`) and a build's `FROM` share:
//! where docker's config file is, the client built from it, and docker's status lines.

use std::path::PathBuf;
use strata_store::{LayerEvent, LayerStatus, RegistryClient, RegistryOptions};

/// Docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> Option<PathBuf> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let dir = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty());
    if let Some(dir) = dir {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".docker/config.json"))
}

/// Docker's per-registry TLS directory: `$STRATA_CERTS_D` (for tests and rootless use), else
/// `/etc/docker/certs.d`.
fn certs_dir() -> PathBuf {
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let dir = std::env::var_os("STRATA_CERTS_D").filter(|v| !v.is_empty());
    dir.map_or_else(|| PathBuf::from("/etc/docker/certs.d"), PathBuf::from)
}

/// The system's CA bundle, where Debian, Fedora or Alpine keep it.
fn ca_bundle() -> Option<PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A registry client with docker's credentials, TLS directories and defaults.
pub(crate) fn client() -> anyhow::Result<RegistryClient> {
    client_with(|_| {})
}

/// [`client`], with some options changed by `tune` (a command's flags).
pub(crate) fn client_with(
    tune: impl FnOnce(&mut RegistryOptions),
) -> anyhow::Result<RegistryClient> {
    let mut options = RegistryOptions {
        docker_config: docker_config_path(),
        certs_dir: Some(certs_dir()),
        ca_bundle: ca_bundle(),
        ..RegistryOptions::default()
    };
    tune(&mut options);
    Ok(RegistryClient::new(options)?)
}

/// Docker's text for a layer status, or `None` for the ones docker prints only as a progress
/// bar on a terminal (`Downloading`, `Extracting`, `Pushing`).
pub(crate) fn status_text(status: &LayerStatus) -> Option<String> {
    Some(
        match status {
            LayerStatus::PullingFsLayer => "Pulling fs layer",
            LayerStatus::AlreadyExists => "Already exists",
            LayerStatus::Waiting => "Waiting",
            LayerStatus::VerifyingChecksum => "Verifying Checksum",
            LayerStatus::DownloadComplete => "Download complete",
            LayerStatus::PullComplete => "Pull complete",
            LayerStatus::Preparing => "Preparing",
            LayerStatus::Pushed => "Pushed",
            LayerStatus::LayerAlreadyExists => "Layer already exists",
            LayerStatus::MountedFrom(repository) => {
                return Some(format!("Mounted from {repository}"));
            }
            _ => return None,
        }
        .to_owned(),
    )
}

/// Docker's `ID: Status` line for an event, when it prints one (see [`status_text`]).
pub(crate) fn event_line(event: &LayerEvent) -> Option<String> {
    let text = status_text(&event.status)?;
    Some(format!("{}: {text}", &event.layer.hex()[..12]))
}

/// Whether a `NAME[:TAG|@DIGEST]` argument names neither a tag nor a digest (docker then says
/// `Using default tag: latest`).
pub(crate) fn has_no_tag(name: &str) -> bool {
    !name.contains('@') && !name.rsplit('/').next().unwrap_or(name).contains(':')
}
