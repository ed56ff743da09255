//! The sandboxes still ending. A RUN's status reaches the worker as soon as the sandbox's
//! init has killed and reaped every other process of the sandbox, removed its mount-point
//! stubs and said how the command ended ([`crate::sandbox`]); the init's own exit comes after
//! that, beside the layer's diff: it tears down the sandbox's namespaces and unmounts its root
//! overlay, which waits for RCU grace periods (1–7 ms of an edit build's RUN on two busy
//! cores). No process is left to write the upper directory by then, but the ending overlay
//! still holds it as its upper: overlayfs warns ("in-use as upperdir/workdir of another
//! mount") when such a directory is mounted as a lower, and deleting the overlay's work
//! directory under it would race its unmount. So the worker counts the sandboxes whose
//! monitor has not exited yet (it exits once the init is reaped), a mount of layers by the
//! worker first waits for them ([`Teardowns::wait`]), and a RUN's scratch directory (the
//! overlay's work dir) is deleted once its sandbox is gone.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a mount waits for the sandboxes still ending before it goes on anyway (an init
/// that cannot finish exiting must not stop every later step; the mount then only makes
/// overlayfs warn).
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The count of sandboxes still ending, shared by a worker's clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Teardowns {
    state: Arc<(Mutex<usize>, Condvar)>,
}

/// One sandbox still ending: counted until dropped.
#[derive(Debug)]
pub(crate) struct Ending {
    state: Arc<(Mutex<usize>, Condvar)>,
}

impl Teardowns {
    /// Counts one more sandbox as ending until the returned guard is dropped.
    pub(crate) fn begin(&self) -> Ending {
        let (count, _) = &*self.state;
        *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Ending {
            state: self.state.clone(),
        }
    }

    /// Whether a sandbox is still ending.
    pub(crate) fn pending(&self) -> bool {
        let (count, _) = &*self.state;
        *count.lock().unwrap_or_else(PoisonError::into_inner) > 0
    }

    /// Blocks until no sandbox is ending, or [`WAIT_LIMIT`] has passed.
    pub(crate) fn wait(&self) {
        let (count, ended) = &*self.state;
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut n = count.lock().unwrap_or_else(PoisonError::into_inner);
        while *n > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            n = ended
                .wait_timeout(n, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        let (count, ended) = &*self.state;
        let mut n = count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            ended.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_every_ending_sandbox_is_gone() {
        let t = Teardowns::default();
        assert!(!t.pending());
        t.wait(); // nothing ending: returns at once
        let (a, b) = (t.begin(), t.begin());
        assert!(t.pending());
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || {
                t.wait();
                t.pending()
            })
        };
        drop(a);
        assert!(t.pending());
        drop(b);
        assert!(!waiter.join().expect("the waiter does not panic"));
        assert!(!t.pending());
    }
}
