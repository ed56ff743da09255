//! Rootless strata, the CLI's side: a command that uses a store, started by a user other than
//! root, first makes strata root of a user namespace of its own
//! ([`strata_build::enter_user_namespace`], docs/rootless.md). Remembered here: inside it the
//! effective uid is 0 and only this flag tells that the defaults are still the user's (the
//! store under `$XDG_DATA_HOME/strata`, the config under `$XDG_CONFIG_HOME`) and that what
//! needs the host's root (cgroup limits) cannot be had.

use std::sync::atomic::{AtomicBool, Ordering};

static ENTERED: AtomicBool = AtomicBool::new(false);

/// Enters the user namespace, unless this process is root already. Call it before any
/// thread exists.
pub(crate) fn enter_unless_root() -> Result<(), strata_build::RootlessError> {
    if crate::report::running_as_root() {
        return Ok(());
    }
    strata_build::enter_user_namespace()?;
    ENTERED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Whether this process entered a user namespace of its own: it is "root" there only.
pub(crate) fn active() -> bool {
    ENTERED.load(Ordering::Relaxed)
}
