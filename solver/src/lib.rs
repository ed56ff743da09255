//! The solver: executes a build graph. Owns cache keys (a node's definition, its inputs' keys
//! and the content checksum of what it reads), the parallel scheduler with its `--jobs` limit
//! and cancellation, and the progress [`Event`] stream the CLI renders. What a node actually
//! does is a [`Backend`]'s business: the real one drives the worker, the cache and the store;
//! tests use a fake. Never prints, never parses Dockerfiles. Start at [`solve`].
#![warn(missing_docs)]

mod backend;
mod error;
mod event;
mod export;
mod key;
mod local;
mod scheduler;

pub use backend::{Backend, Job, LogSink, StepError};
pub use error::SolveError;
pub use event::{Event, Phase, Phases, Stream};
pub use export::{base_image_id, new_image};
pub use key::key_parts;
pub use local::{
    ContextSource, ExportedMount, Fs, LocalBackend, LocalError, LocalOptions, Output, Secrets,
};
pub use scheduler::{NoCache, SolveOptions, Solved, solve};
pub use strata_cache::{CacheKey, Checksum, KeyParts};
