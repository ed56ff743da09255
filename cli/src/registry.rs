//! What the registry commands (`pull`, `push`, `login`, `logout`) and a build's `FROM` share:
//! where docker's config file is, the client built from it and strata's config file, and
//! docker's status lines.

use crate::config::Config;
use std::path::PathBuf;
use strata_store::{LayerEvent, LayerStatus, RegistryClient, RegistryError, RegistryOptions};

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

/// `$NAME` parsed by `parse`, if set and not empty; an error naming it if it does not parse.
fn env_knob<T, E: std::fmt::Display>(
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> anyhow::Result<Option<T>> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the CLI reads the environment once"
    )]
    let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    parse(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("invalid {name} {text:?}: {e}"))
}

/// A positive duration: `30s`, `2m`, `500ms`.
fn parse_timeout(v: &str) -> anyhow::Result<std::time::Duration> {
    let d: jiff::SignedDuration = v.parse()?;
    std::time::Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("the timeout must be positive"))
}

/// `STRATA_DOWNLOAD_TIMEOUT` (`30s`, `2m`): how long a build's `ADD <url>` may go without
/// progress (60 s); for slow networks and for tests, as `STRATA_REGISTRY_TIMEOUT` is.
pub(crate) fn download_timeout() -> anyhow::Result<Option<std::time::Duration>> {
    env_knob("STRATA_DOWNLOAD_TIMEOUT", parse_timeout)
}

/// A registry client with docker's credentials and TLS directories, and strata's config file
/// (insecure registries, mirrors). Two variables change the defaults, for slow networks and
/// for tests: `STRATA_REGISTRY_TIMEOUT` (`30s`, `2m`, `500ms`) is how long a request may wait
/// for the registry to answer or to send the next bytes (60 s), and `STRATA_REGISTRY_RETRIES`
/// how many times a request is retried after a 429, a 5xx or a connection error (4).
pub(crate) fn client() -> anyhow::Result<RegistryClient> {
    client_with(|_| {})
}

/// [`client`], with some options changed by `tune` (a command's flags).
pub(crate) fn client_with(
    tune: impl FnOnce(&mut RegistryOptions),
) -> anyhow::Result<RegistryClient> {
    let config = Config::load()?;
    let defaults = RegistryOptions::default();
    let timeout = env_knob("STRATA_REGISTRY_TIMEOUT", parse_timeout)?;
    let retries = env_knob("STRATA_REGISTRY_RETRIES", str::parse::<u32>)?;
    let mut options = RegistryOptions {
        docker_config: docker_config_path(),
        certs_dir: Some(certs_dir()),
        ca_bundle: ca_bundle(),
        insecure: config.insecure_registries,
        mirrors: config.registry_mirrors,
        timeout: timeout.unwrap_or(defaults.timeout),
        retries: retries.unwrap_or(defaults.retries),
        ..defaults
    };
    tune(&mut options);
    let client = RegistryClient::new(options);
    match (client, &config.path) {
        (Err(e @ RegistryError::InvalidOption { .. }), Some(path)) => {
            Err(anyhow::Error::new(e).context(format!("invalid strata config {}", path.display())))
        }
        (client, _) => Ok(client?),
    }
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
