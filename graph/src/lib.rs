//! The build IR: what a build does, as data. A [`Graph`] is a DAG of [`Node`]s, each one
//! operation ([`Op`]: a source, a RUN, a file operation, a config-only step) with its inputs,
//! its Dockerfile location ([`SourceRange`]) and its [`NodeHash`], a blake3 digest over a
//! canonical encoding of the operation and its inputs' hashes. Equal nodes have equal hashes
//! and are stored once. The graph also carries each built stage's image config
//! ([`ImageConfig`], Docker's field names) and history.
//!
//! This crate is a leaf: it knows nothing of Dockerfile syntax, the disk, the store or the
//! terminal. The frontend builds graphs; the solver executes them. Start at [`Graph`].
//!
//! It also holds Docker's path pattern languages ([`pattern`]: Go's `filepath.Match`,
//! `.dockerignore` and `--exclude` matching), so that the frontend, the cache and the worker
//! all match paths with one implementation.
#![warn(missing_docs)]

mod config;
mod digest32;
mod dot;
mod graph;
mod hash;
mod loc;
mod op;
pub mod pattern;
pub mod resolver;

/// What [`digest32!`] expands to refers to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use hex;
    pub use serde;
}

pub use config::{EmptyObject, Healthcheck, History, ImageConfig, env_key};
pub use graph::{Graph, Node, NodeId, Target};
pub use hash::NodeHash;
pub use loc::{SourceLoc, SourceRange};
pub use op::{
    CacheSharing, Chown, ExecOp, FileAction, FileOp, ImageSource, Mount, MountKind, NetworkMode,
    Op, SecurityMode,
};
