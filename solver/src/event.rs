//! Progress events: what the CLI renders (indicatif lines, `#N` plain lines, rawjson).

use serde::Serialize;
use serde::ser::SerializeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The step's standard output.
    Stdout,
    /// The step's standard error.
    Stderr,
}

/// One progress event. `node` is the graph node's index, stable for the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step missed the cache (`--explain`): why it runs.
    Miss {
        /// Node index.
        node: u32,
        /// `[build 2/4] RUN make`.
        label: String,
        /// `source files changed: changed src/main.rs`.
        reason: String,
    },
    /// A step began executing.
    Started {
        /// Node index.
        node: u32,
        /// `[build 2/4] RUN make`.
        label: String,
    },
    /// A step's result came from the cache.
    Cached {
        /// Node index.
        node: u32,
        /// `[build 2/4] RUN make`.
        label: String,
    },
    /// A line of a step's output (without its newline).
    Log {
        /// Node index.
        node: u32,
        /// stdout or stderr.
        stream: Stream,
        /// The line, lossily decoded.
        line: String,
    },
    /// A step finished successfully.
    Finished {
        /// Node index.
        node: u32,
        /// How long it ran.
        #[serde(serialize_with = "as_secs")]
        elapsed: Duration,
        /// Where that time went, phase by phase in the order first timed, for tools
        /// (`--progress=rawjson`: `"phases": {"process": 1.02, ...}`, in seconds); the
        /// renderers for people do not show it. Untimed parts of `elapsed` are not listed.
        #[serde(
            serialize_with = "phases_as_secs",
            skip_serializing_if = "Vec::is_empty"
        )]
        phases: Vec<(Phase, Duration)>,
    },
    /// A step failed; the build stops.
    Failed {
        /// Node index.
        node: u32,
        /// The error, one line.
        error: String,
    },
}

/// A part of a step's work, timed for the build's event log (where a cold build's time goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Walking the build context and checksumming what changed (its stat cache decides).
    ContextScan,
    /// Checksumming the context files a COPY reads, for its cache key (before anything runs).
    ContextChecksum,
    /// Reading a base image's layer list from the store.
    Image,
    /// Making the parent's layers ready as lower directories (unpacking the layers not yet
    /// unpacked) and making the step's new upper directory.
    Unpack,
    /// A RUN's sandbox start: on the host its spec, mounts and the hand-over to the helper,
    /// then in the sandbox its setup up to the command's fork (namespaces, mounts,
    /// `pivot_root`).
    SandboxStart,
    /// A RUN's command, from its fork to the sandbox's exit status (teardown included).
    Process,
    /// A COPY or ADD: the file work in the upper directory.
    Files,
    /// Walking the upper directory for the layer: stats, xattrs, whiteouts, tar headers
    /// (everything of the layer outside [`Phase::LayerTar`]).
    LayerDiff,
    /// Writing the layer's tar bytes into the store, SHA-256 computed as they go.
    LayerTar,
    /// Reading the unchanged entries of an incremental COPY's layer from the same step's
    /// earlier layer tar instead of from their files (their writes are in
    /// [`Phase::LayerTar`]). Present only when some entry was taken from it.
    LayerReuse,
    /// Making the layer durable (fsync, rename) and adopting the upper directory as its
    /// snapshot.
    Commit,
    /// Writing the step's cache record.
    Record,
}

/// The time a step spends per [`Phase`], shared by the scheduler and the backend (clones share
/// one list). A phase timed twice adds up.
#[derive(Debug, Clone, Default)]
pub struct Phases(Arc<Mutex<Vec<(Phase, Duration)>>>);

impl Phases {
    /// Adds `elapsed` to `phase`.
    pub fn add(&self, phase: Phase, elapsed: Duration) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match list.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, total)) => *total += elapsed,
            None => list.push((phase, elapsed)),
        }
    }

    /// Runs `f`, adding the time it takes to `phase`.
    pub fn time<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        self.add(phase, started.elapsed());
        out
    }

    /// The phases timed so far, in the order first timed.
    pub fn to_vec(&self) -> Vec<(Phase, Duration)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn phases_as_secs<S: serde::Serializer>(
    phases: &[(Phase, Duration)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(phases.len()))?;
    for (phase, elapsed) in phases {
        map.serialize_entry(phase, &elapsed.as_secs_f64())?;
    }
    map.end()
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
