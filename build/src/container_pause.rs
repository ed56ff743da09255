//! `strata pause` and `unpause`: a running container's processes frozen and thawed by the
//! cgroup freezer (the worker's [`Freezer`]). Whether a container is paused is the freezer's
//! state, read by `ps` ([`container_paused`]); `kill` (and so `stop` and `rm -f`) thaws a
//! paused container after signalling it, so that the signal is delivered, as docker's.

use strata_store::{Container, ContainerStatus, Store};
use strata_worker::{Freezer, FreezerError};

/// Why a container could not be paused or unpaused (docker's wording).
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// No such container, or its records are unreadable.
    #[error(transparent)]
    Record(#[from] strata_store::ContainerError),
    /// It does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `pause` of a paused container.
    #[error("container {0} is already paused")]
    AlreadyPaused(String),
    /// `unpause` of a container that is not paused.
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// The freezer failed.
    #[error("failed to pause or unpause container {name}")]
    Freezer {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: FreezerError,
    },
}

fn running(store: &Store, name_or_id: &str) -> Result<(Container, Freezer), PauseError> {
    let c = store.container(name_or_id)?;
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return Err(PauseError::NotRunning(c.config.name));
    }
    let freezer = Freezer::of_container(&c.config.id).map_err(|source| PauseError::Freezer {
        name: c.config.name.clone(),
        source,
    })?;
    Ok((c, freezer))
}

/// `strata pause`: freezes every process of running container `name_or_id`.
pub fn pause_container(store: &Store, name_or_id: &str) -> Result<(), PauseError> {
    let (c, freezer) = running(store, name_or_id)?;
    if freezer.is_frozen() {
        return Err(PauseError::AlreadyPaused(c.config.name));
    }
    freezer
        .freeze(c.state.pid)
        .map_err(|source| PauseError::Freezer {
            name: c.config.name,
            source,
        })
}

/// `strata unpause`: thaws paused container `name_or_id`.
pub fn unpause_container(store: &Store, name_or_id: &str) -> Result<(), PauseError> {
    let (c, freezer) = running(store, name_or_id)?;
    if !freezer.is_frozen() {
        return Err(PauseError::NotPaused(c.config.name));
    }
    let home = (c.state.monitor_pid != 0).then_some(c.state.monitor_pid);
    freezer.thaw(home).map_err(|source| PauseError::Freezer {
        name: c.config.name,
        source,
    })
}

/// Whether container `c` runs and is paused (`ps`: "Up 3 seconds (Paused)").
pub fn container_paused(c: &Container) -> bool {
    c.state.status == ContainerStatus::Running
        && Freezer::of_container(&c.config.id).is_ok_and(|f| f.is_frozen())
}

/// Thaws container `c` if it is paused, so that a signal just sent reaches it.
pub(crate) fn thaw_if_paused(c: &Container) -> Result<(), FreezerError> {
    match Freezer::of_container(&c.config.id) {
        Ok(f) if f.is_frozen() => {
            let home = (c.state.monitor_pid != 0).then_some(c.state.monitor_pid);
            f.thaw(home)
        }
        _ => Ok(()),
    }
}

/// A running container frozen for `commit --pause`; thawed when dropped.
pub(crate) struct Frozen {
    freezer: Freezer,
    home: Option<u32>,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.freezer.thaw(self.home);
    }
}

/// Freezes container `c` for a commit when it runs, is not paused already, and the freezer
/// can be used (else it is read as it runs, as without `--pause`).
pub(crate) fn freeze_for_commit(c: &Container) -> Option<Frozen> {
    if c.state.status != ContainerStatus::Running || c.state.pid == 0 {
        return None;
    }
    let freezer = Freezer::of_container(&c.config.id).ok()?;
    if freezer.is_frozen() {
        return None;
    }
    let home = (c.state.monitor_pid != 0).then_some(c.state.monitor_pid);
    match freezer.freeze(c.state.pid) {
        Ok(()) => Some(Frozen { freezer, home }),
        Err(_) => {
            let _ = freezer.thaw(home);
            None
        }
    }
}
