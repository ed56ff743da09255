//! The Dockerfile of a build, as read.

use std::path::PathBuf;

/// A Dockerfile's bytes and what messages call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// As the user named it, for messages (`Dockerfile` for standard input, as docker).
    pub name: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// Where it is on disk, absolute (`None` for standard input): its `.dockerignore` is
    /// looked for beside it.
    pub path: Option<PathBuf>,
}
