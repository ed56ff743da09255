//! Why a build failed.

use crate::{CacheExportError, OutputError};
use std::path::PathBuf;
use strata_frontend::{Diagnostics, IgnoreError, PlatformError};
use strata_solver::{LocalError, SolveError};
use strata_store::StoreError;

/// Why a build failed: the Dockerfile (with every problem found, each at its place), a step
/// (with its place), or the machinery, with its source error.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse or lower; every error found, each with its location.
    #[error("the Dockerfile has {} error(s)", .0.errors().count())]
    Dockerfile(Diagnostics),
    /// A step failed, or the build was cancelled; [`SolveError::loc`] says where.
    #[error("failed to solve")]
    Solve(#[source] SolveError),
    /// `--platform` does not parse.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// `--platform` names another machine's platform.
    #[error(
        "cannot build for {target}: strata builds only for this machine's platform, {host} \
         (there is no emulation)"
    )]
    ForeignPlatform {
        /// The platform asked for.
        target: String,
        /// This machine's.
        host: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("invalid SOURCE_DATE_EPOCH {0:?}: expected seconds")]
    SourceDateEpoch(String),
    /// No stage to build.
    #[error("the Dockerfile has no stage to build")]
    NoStage,
    /// `--no-cache-filter` names a stage that is not built.
    #[error("--no-cache-filter: no stage named {0:?} is built")]
    NoCacheFilter(String),
    /// The `.dockerignore` does not parse.
    #[error("invalid .dockerignore")]
    Ignore(#[source] IgnoreError),
    /// A `--secret` or `--ssh` cannot be set up.
    #[error(transparent)]
    Secret(#[from] crate::SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The build cache failed.
    #[error(transparent)]
    Cache(#[from] strata_cache::CacheDbError),
    /// The worker cannot start.
    #[error(transparent)]
    Worker(#[from] strata_worker::WorkerError),
    /// The local backend failed outside a step.
    #[error(transparent)]
    Backend(#[from] LocalError),
    /// The target stage produced no filesystem (a bug).
    #[error("internal error: the target stage produced no filesystem")]
    NoFilesystem,
    /// `--cache-to` failed.
    #[error("failed to export the cache to {dest}")]
    CacheExport {
        /// The directory or registry reference.
        dest: String,
        /// Why.
        #[source]
        source: CacheExportError,
    },
    /// The image could not be put together.
    #[error("failed to assemble the image")]
    AssembleImage(#[source] StoreError),
    /// The image could not be committed.
    #[error("failed to store the image")]
    CommitImage(#[source] StoreError),
    /// `type=oci` or `type=docker` failed.
    #[error("failed to write the image archive")]
    ImageArchive(#[source] OutputError),
    /// `type=tar` failed.
    #[error("failed to write the filesystem tar")]
    RootfsTar(#[source] OutputError),
    /// An `--output type=image,name=…` name does not parse.
    #[error("invalid image name {name:?} in --output")]
    OutputName {
        /// The name given.
        name: String,
        /// Why.
        #[source]
        source: strata_store::ReferenceError,
    },
    /// `--push` without a name to push to.
    #[error(
        "tag is needed when pushing to registry: give -t NAME or --output type=image,name=NAME,push=true"
    )]
    PushWithoutName,
    /// `--push` or a registry cache in a request without a registry client.
    #[error("this build has no registry client to reach a registry with")]
    NoRegistry,
    /// Pushing the image failed.
    #[error("failed to push {reference}")]
    Push {
        /// The name pushed.
        reference: String,
        /// Why.
        #[source]
        source: strata_store::RegistryError,
    },
    /// `type=local` failed.
    #[error("failed to write the filesystem to {}", dir.display())]
    LocalDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: OutputError,
    },
}

/// `error: cause: cause`, for a message on one line (a warning, the frontend's pull error).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}
