//! Deleting scratch directories off the critical path. A step's scratch directory (the
//! overlay work dir, rw bind uppers, downloads) is no longer used once the step has ended,
//! but deleting it is a handful of journaled metadata operations that cost from 0.3 ms on an
//! idle disk to several milliseconds on a busy one. So a step hands it to this thread and
//! returns; the thread deletes directories in order, one at a time.
//!
//! A directory handed over is gone shortly after, not at once; it is never used again by
//! anyone. If the process ends first, it stays behind like any temporary directory of a
//! killed process.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use tempfile::TempDir;

/// A handle on the deleting thread, shared by a worker's clones; the thread ends when the
/// last handle is dropped and the queue is empty.
#[derive(Debug, Clone, Default)]
pub(crate) struct Janitor {
    queue: Arc<Mutex<Option<Sender<TempDir>>>>,
}

impl Janitor {
    /// Deletes `dir` soon. Deletes it at once if the thread cannot be started.
    pub(crate) fn delete(&self, dir: TempDir) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = match queue.as_ref() {
            Some(q) => match q.send(dir) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => dir,
        };
        let (tx, rx) = channel::<TempDir>();
        let started = std::thread::Builder::new()
            .name("strata-janitor".into())
            .spawn(move || {
                for dir in rx {
                    let _ = dir.close();
                }
            });
        match started {
            Ok(_) => {
                let dir = match tx.send(dir) {
                    Ok(()) => None,
                    Err(back) => Some(back.0),
                };
                *queue = Some(tx);
                drop(dir);
            }
            Err(_) => drop(dir),
        }
    }
}
