//! `strata exec`: a command in a running container, through the worker's
//! [`exec_in_container`] (its namespaces joined, the sandbox's own process setup); and the
//! processes a running container has (`strata top`).

use crate::container::{Outcome, start_failure_code};
use strata_store::{ContainerStatus, Store};
use strata_worker::{ExecError, ExecOutcome, ExecSpec, exec_in_container, pids_in_namespace_of};

/// What `strata exec` runs, with docker's overrides of the container's config.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `-e KEY=VALUE`, over the container's environment.
    pub env: Vec<String>,
    /// `-w` (`None`: the container's working directory).
    pub workdir: Option<String>,
    /// `-u` (`None`: the container's user).
    pub user: Option<String>,
    /// `-i`: keep stdin open.
    pub interactive: bool,
    /// `-d`: return once it runs.
    pub detach: bool,
    /// `-t`: a pseudo-terminal (ignored with `detach`).
    pub tty: bool,
}

/// Why `exec` failed before its command could run.
#[derive(Debug, thiserror::Error)]
pub enum ExecContainerError {
    /// No such container, or its records are unreadable.
    #[error(transparent)]
    Record(#[from] strata_store::ContainerError),
    /// It does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// It is paused.
    #[error("container {0} is paused, unpause the container before exec")]
    Paused(String),
    /// Its processes could not be listed.
    #[error("failed to list the processes of container {name}")]
    Processes {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Joining it failed.
    #[error("failed to exec in container {name}")]
    Exec {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: ExecError,
    },
}

/// Runs `req` in the running container `name_or_id`. The calling process must be
/// single-threaded (it joins the container's namespaces); it blocks until the command exits
/// (or, with `detach`, starts). The outcome carries docker's exit code: the command's, or
/// 126/127 when it could not start.
pub fn exec_container(
    store: &Store,
    name_or_id: &str,
    req: &ExecRequest,
) -> Result<Outcome, ExecContainerError> {
    let c = store.container(name_or_id)?;
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return Err(ExecContainerError::NotRunning(c.config.name));
    }
    if crate::container_pause::container_paused(&c) {
        return Err(ExecContainerError::Paused(c.config.name));
    }
    let mut env = c.config.env.clone();
    for kv in &req.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    let cwd = match &req.workdir {
        Some(w) => w.clone(),
        None if c.config.working_dir.is_empty() => "/".to_owned(),
        None => c.config.working_dir.clone(),
    };
    let spec = ExecSpec {
        pid: c.state.pid,
        args: req.command.clone(),
        env,
        cwd,
        user: req.user.clone().unwrap_or_else(|| c.config.user.clone()),
        stdin: req.interactive,
        detach: req.detach,
        tty: req.tty,
    };
    match exec_in_container(&spec) {
        Ok(ExecOutcome::Exited(code)) => Ok(Outcome::Exited(code)),
        Ok(ExecOutcome::StartFailed(message)) => Ok(Outcome::StartFailed {
            code: start_failure_code(&message),
            message,
        }),
        Err(source) => Err(ExecContainerError::Exec {
            name: c.config.name,
            source,
        }),
    }
}

/// `strata top`: the host pids of the processes in running container `name_or_id`'s PID
/// namespace, sorted. Rootless, the caller must be the user outside any user namespace (as
/// for [`exec_container`]) to see into the container's.
pub fn container_processes(
    store: &Store,
    name_or_id: &str,
) -> Result<Vec<u32>, ExecContainerError> {
    let c = store.container(name_or_id)?;
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return Err(ExecContainerError::NotRunning(c.config.name));
    }
    pids_in_namespace_of(c.state.pid).map_err(|source| ExecContainerError::Processes {
        name: c.config.name,
        source,
    })
}
