//! `strata run`: a command of an image in the worker's sandbox, in the foreground, so a user
//! can check what they built. The container's filesystem is a fresh upper directory over the
//! image's snapshots, discarded when the command ends.

use crate::Stream;
use std::path::Path;
use strata_graph::{ExecOp, ImageConfig, NetworkMode, SecurityMode};
use strata_store::{Store, StoreError};
use strata_worker::{
    OutputStream, Resources, RunError, RunRequest, Worker, WorkerConfig, WorkerError,
};
use tokio_util::sync::CancellationToken;

/// A command to run in a container of an image, with docker's overrides.
#[derive(Debug, Clone)]
pub struct RunImage {
    /// The image, by name or ID.
    pub image: String,
    /// `--entrypoint` (empty: none at all).
    pub entrypoint: Option<String>,
    /// The command (empty: the image's CMD).
    pub command: Vec<String>,
    /// `-e KEY=VALUE` (a bare `KEY` sets it empty), over the image's.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// The network.
    pub network: NetworkMode,
}

/// Why a container could not run (its command exiting non-zero is not an error).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The store failed (the image is missing, its snapshots cannot be made).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's config is not Docker's.
    #[error("image {image} has an unreadable config")]
    Config {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Nothing to run.
    #[error("image {0} has no CMD or ENTRYPOINT: give a command to run")]
    NoCommand(String),
    /// The worker cannot start.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The sandbox failed.
    #[error("failed to run the container")]
    Run(#[source] RunError),
}

/// The worker of the store at `root`, as builds and `strata run` use it.
/// `no_new_privs`: `--security-opt no-new-privileges` (off in Docker: a RUN may gain
/// privileges through sudo or setuid helpers); `resources`: a build's cgroup (`None` for
/// `strata run`, as `docker run` sets no limit); `download_timeout`: how long an ADD of a URL
/// may go without progress (`None`: the worker's default).
pub(crate) fn new_worker(
    root: &Path,
    no_new_privs: bool,
    resources: Option<Resources>,
    download_timeout: Option<std::time::Duration>,
) -> Result<Worker, WorkerError> {
    let mut config = WorkerConfig::new(root.join("worker"), "/proc/self/exe");
    config.no_new_privs = no_new_privs;
    config.resources = resources;
    if let Some(t) = download_timeout {
        config.download_timeout = t;
    }
    Worker::new(config)
}

/// argv as docker builds it: ENTRYPOINT then CMD, either overridden.
fn argv(config: &ImageConfig, run: &RunImage) -> Vec<String> {
    let entrypoint = match &run.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if run.command.is_empty() {
        // An overridden entrypoint drops the image's CMD, as docker does.
        if run.entrypoint.is_some() {
            Vec::new()
        } else {
            config.cmd.clone().unwrap_or_default()
        }
    } else {
        run.command.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// Runs `run` in the store at `store`, each output line going to `output`, until it exits or
/// `cancel` fires. Returns the command's exit code.
pub async fn run_image(
    store: &Store,
    run: &RunImage,
    mut output: impl FnMut(Stream, &[u8]) + Send,
    cancel: CancellationToken,
) -> Result<i32, ContainerError> {
    let image = store.image(&run.image)?;
    let mut config: ImageConfig = match &image.config.config {
        Some(v) => serde_json::from_value(v.clone()).map_err(|source| ContainerError::Config {
            image: run.image.clone(),
            source,
        })?,
        None => ImageConfig::default(),
    };
    for kv in &run.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        config.env_set(k, v);
    }
    let argv = argv(&config, run);
    if argv.is_empty() {
        return Err(ContainerError::NoCommand(run.image.clone()));
    }
    let exec = ExecOp {
        args: argv,
        env: config.env.clone(),
        cwd: run
            .workdir
            .clone()
            .or_else(|| (!config.working_dir.is_empty()).then(|| config.working_dir.clone()))
            .unwrap_or_else(|| "/".into()),
        user: run.user.clone().unwrap_or_else(|| config.user.clone()),
        network: run.network,
        security: SecurityMode::Sandbox,
        mounts: Vec::new(),
    };
    let _lease = store.lease()?;
    let mut lowers: Vec<_> = store
        .snapshots(&image)?
        .into_iter()
        .map(|s| s.path)
        .collect();
    lowers.reverse();
    let upper = store.new_snapshot_dir()?;
    let worker = new_worker(store.root(), false, None, None)?;
    let result = worker
        .run(
            RunRequest {
                exec,
                lowers,
                upper: upper.clone(),
                mounts: Vec::new(),
                hostname: Some(image.id.short().to_owned()),
            },
            |stream, line| {
                let stream = match stream {
                    OutputStream::Stdout => Stream::Stdout,
                    OutputStream::Stderr => Stream::Stderr,
                };
                output(stream, line);
            },
            cancel,
        )
        .await;
    let _ = fs_err::remove_dir_all(&upper);
    match result {
        Ok(()) => Ok(0),
        Err(RunError::Exit { code, .. }) => Ok(code),
        Err(err) => Err(ContainerError::Run(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entrypoint: Option<&str>, command: &[&str]) -> RunImage {
        RunImage {
            image: "i".into(),
            entrypoint: entrypoint.map(Into::into),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            workdir: None,
            user: None,
            network: NetworkMode::Host,
        }
    }

    #[test]
    fn argv_is_entrypoint_then_cmd_as_docker_overrides_them() {
        let config = ImageConfig {
            entrypoint: Some(vec!["/e".into()]),
            cmd: Some(vec!["c".into()]),
            ..ImageConfig::default()
        };
        assert_eq!(argv(&config, &run(None, &[])), ["/e", "c"]);
        assert_eq!(argv(&config, &run(None, &["x"])), ["/e", "x"]);
        assert_eq!(argv(&config, &run(Some("/o"), &[])), ["/o"]);
        assert_eq!(argv(&config, &run(Some(""), &["sh"])), ["sh"]);
    }
}
