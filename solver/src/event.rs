//! Progress events: what the CLI renders (indicatif lines, `#N` plain lines, rawjson).

use serde::Serialize;
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
    },
    /// A step failed; the build stops.
    Failed {
        /// Node index.
        node: u32,
        /// The error, one line.
        error: String,
    },
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
