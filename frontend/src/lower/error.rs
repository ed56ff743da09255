//! What can be wrong in a Dockerfile that parsed and typed: a variable that does not expand,
//! a stage or image that cannot be found, a value that is invalid once expanded.
//!
//! Each error says where (`at`, the instruction or FROM line) and becomes one [`Diagnostic`]:
//! a diagnostic prints one message, so a variant that wraps another error shows its text
//! instead of chaining it. The messages are BuildKit's where BuildKit has one, capitals
//! included, so that output compares with `docker build`'s.

use crate::diagnostic::Diagnostic;
use crate::expand::ExpandError;
use strata_graph::SourceLoc;
use strata_store::{PlatformError, ReferenceError};

/// A problem found while lowering, at a place in the Dockerfile.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LowerError {
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found")]
    TargetNotFound {
        at: SourceLoc,
        target: String,
        hint: Option<String>,
    },
    /// A word (an ARG default, a FROM line, an instruction's value) does not expand.
    #[error("{error}")]
    Expand { at: SourceLoc, error: ExpandError },
    /// `FROM $X` where `X` is empty.
    #[error("base name ({base}) should not be blank")]
    BlankBase { at: SourceLoc, base: String },
    /// A FROM base that is neither `scratch`, a stage above nor an image reference.
    #[error("failed to parse stage name {base:?}: {error}")]
    InvalidBase {
        at: SourceLoc,
        base: String,
        error: ReferenceError,
        hint: Option<String>,
    },
    /// `FROM --platform=$X` does not expand.
    #[error("failed to process arguments for platform: {error}")]
    PlatformArgs { at: SourceLoc, error: ExpandError },
    /// `FROM --platform=$X` expands to nothing.
    #[error("empty platform value from expression {expression}")]
    EmptyPlatform { at: SourceLoc, expression: String },
    /// `FROM --platform=` names no platform.
    #[error("failed to parse platform {expression}: {error}")]
    InvalidPlatform {
        at: SourceLoc,
        expression: String,
        error: PlatformError,
    },
    /// The caller's [`super::ImageResolver`] did not find a base image.
    #[error("failed to resolve source metadata for {reference}: {reason}")]
    Resolve {
        at: SourceLoc,
        reference: String,
        reason: String,
        hint: Option<String>,
    },
    /// An inherited ONBUILD trigger cannot be used.
    #[error("failed to process ONBUILD trigger {text:?}: {error}")]
    Trigger {
        at: SourceLoc,
        text: String,
        error: TriggerError,
    },
    /// `COPY --from=$X`: BuildKit does not expand `--from`.
    #[error(
        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    )]
    FromVariable { at: SourceLoc },
    /// `--from=3` with fewer stages.
    #[error("invalid stage index {index}")]
    StageIndex { at: SourceLoc, index: i64 },
    /// `--from`/`from=` names neither a stage nor an image.
    #[error("{from:?} is neither a stage nor a valid image reference: {error}")]
    NotStageOrImage {
        at: SourceLoc,
        from: String,
        error: ReferenceError,
        hint: Option<String>,
    },
    /// A stage reads from itself.
    #[error("circular dependency detected on stage: {stage}")]
    CircularDependency { at: SourceLoc, stage: String },
    /// A stage reads from one defined after it.
    #[error(
        "cannot copy from stage {stage:?}, it needs to be defined before current stage {current:?}"
    )]
    StageDefinedLater {
        at: SourceLoc,
        stage: String,
        current: String,
    },
    /// A stage reads from one that failed to lower (already reported).
    #[error("stage {stage:?} could not be built")]
    StageNotBuilt { at: SourceLoc, stage: String },
    /// `--from`/`from=` names an image that was not resolved (already reported).
    #[error("image {reference} could not be resolved")]
    ImageNotResolved { at: SourceLoc, reference: String },
    /// EXPOSE with an invalid port spec.
    #[error("{error}")]
    Port { at: SourceLoc, error: PortError },
    /// `VOLUME ""`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume { at: SourceLoc },
    /// STOPSIGNAL with an unknown signal.
    #[error("Invalid signal: {signal}")]
    InvalidSignal { at: SourceLoc, signal: String },
    /// A `RUN --mount` value that is invalid once expanded.
    #[error("{reason} (at {flag})")]
    Mount {
        at: SourceLoc,
        /// Where the `--mount` flag is.
        flag: SourceLoc,
        reason: String,
    },
    /// A mount on `/`.
    #[error("invalid mount target {target:?}")]
    MountTargetRoot { at: SourceLoc, target: String },
    /// A secret mount with neither `id`, `source` nor `target`.
    #[error("one of source, target required")]
    SecretWithoutId { at: SourceLoc },
    /// `type=ssh,source=...`.
    #[error("ssh does not support source")]
    SshSource { at: SourceLoc },
    /// `COPY --checksum`.
    #[error("checksum can't be specified for COPY")]
    ChecksumForCopy { at: SourceLoc },
    /// `ADD --checksum` with several sources.
    #[error("checksum can't be specified for multiple sources")]
    ChecksumSources { at: SourceLoc },
    /// `ADD --checksum` of a local source.
    #[error("checksum requires HTTP(S) or Git sources")]
    ChecksumLocal { at: SourceLoc },
    /// `ADD --checksum` with a malformed digest.
    #[error("{error}")]
    Checksum { at: SourceLoc, error: DigestError },
    /// `ADD git@...` whose fragment or query cannot be read.
    #[error("{error}")]
    GitUrl {
        at: SourceLoc,
        error: super::git::GitUrlError,
    },
    /// `ADD --checksum` of a git source that is not a commit id.
    #[error(
        "invalid checksum {checksum:?} for a git source: expected a commit id (40 or 64 hex digits)"
    )]
    GitChecksum { at: SourceLoc, checksum: String },
    /// `COPY git@...`.
    #[error("source can't be a git ref for COPY")]
    CopyGit { at: SourceLoc },
    /// `COPY https://...`.
    #[error("source can't be a URL for COPY")]
    CopyUrl { at: SourceLoc },
    /// `--chmod` that is invalid once expanded.
    #[error("invalid chmod parameter: '{chmod}'")]
    InvalidChmod { at: SourceLoc, chmod: String },
}

impl LowerError {
    /// Where in the Dockerfile.
    pub(crate) fn loc(&self) -> SourceLoc {
        use LowerError::*;
        match self {
            TargetNotFound { at, .. }
            | Expand { at, .. }
            | BlankBase { at, .. }
            | InvalidBase { at, .. }
            | PlatformArgs { at, .. }
            | EmptyPlatform { at, .. }
            | InvalidPlatform { at, .. }
            | Resolve { at, .. }
            | Trigger { at, .. }
            | FromVariable { at }
            | StageIndex { at, .. }
            | NotStageOrImage { at, .. }
            | CircularDependency { at, .. }
            | StageDefinedLater { at, .. }
            | StageNotBuilt { at, .. }
            | ImageNotResolved { at, .. }
            | Port { at, .. }
            | EmptyVolume { at }
            | InvalidSignal { at, .. }
            | Mount { at, .. }
            | MountTargetRoot { at, .. }
            | SecretWithoutId { at }
            | SshSource { at }
            | ChecksumForCopy { at }
            | ChecksumSources { at }
            | ChecksumLocal { at }
            | Checksum { at, .. }
            | GitUrl { at, .. }
            | GitChecksum { at, .. }
            | CopyGit { at }
            | CopyUrl { at }
            | InvalidChmod { at, .. } => *at,
        }
    }

    /// The "did you mean" name, where there is a near one.
    fn hint(&self) -> Option<String> {
        match self {
            LowerError::TargetNotFound { hint, .. }
            | LowerError::InvalidBase { hint, .. }
            | LowerError::Resolve { hint, .. }
            | LowerError::NotStageOrImage { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

impl From<LowerError> for Diagnostic {
    fn from(e: LowerError) -> Self {
        Diagnostic::error(e.loc(), e.to_string()).with_suggestion(e.hint())
    }
}

/// Why an ONBUILD trigger from a base cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TriggerError {
    /// Its text does not parse.
    #[error("{0}")]
    Parse(crate::ParseError),
    /// Its text is more (or less) than one instruction.
    #[error("onbuild trigger should be a single expression")]
    NotSingle,
    /// Its instruction is invalid.
    #[error("{}", .0.text())]
    Invalid(Diagnostic),
    /// It is a FROM.
    #[error("FROM isn't allowed as an ONBUILD trigger")]
    From,
}

/// An `EXPOSE` port spec that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PortError {
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    #[error("invalid hostPort: {0}")]
    HostPort(String),
    #[error("invalid ranges specified for container and host Ports: {port} and {host}")]
    Ranges { port: String, host: String },
}

/// An `ADD --checksum` digest that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DigestError {
    #[error("invalid checksum digest format {0:?}")]
    Format(String),
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
}
