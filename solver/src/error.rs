//! What can go wrong in a solve.

use crate::backend::StepError;
use strata_graph::SourceRange;

/// A build failure, naming the step and its Dockerfile location.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The user's command failed (a RUN exited non-zero): not our failure.
    #[error("{step} failed")]
    Command {
        /// The step's label.
        step: String,
        /// Its Dockerfile lines.
        loc: Option<SourceRange>,
        /// The command's exit code.
        exit_code: i32,
        /// What the worker said.
        #[source]
        source: StepError,
    },
    /// The engine failed to run the step.
    #[error("{step} failed")]
    Step {
        /// The step's label.
        step: String,
        /// Its Dockerfile lines.
        loc: Option<SourceRange>,
        /// The cause.
        #[source]
        source: StepError,
    },
    /// The build was cancelled (Ctrl-C, SIGTERM) before it finished.
    #[error("build cancelled")]
    Cancelled,
}

impl SolveError {
    /// The Dockerfile location of the failing step, if it has one.
    pub fn loc(&self) -> Option<SourceRange> {
        match self {
            SolveError::Command { loc, .. } | SolveError::Step { loc, .. } => *loc,
            SolveError::Cancelled => None,
        }
    }
}
