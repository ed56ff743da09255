//! Errors of reading a build context (or a stage's tree): scanning, hashing and resolving
//! COPY sources. Their own file because the scan, the walk and the selection all return them.

use std::path::PathBuf;

/// Errors of scanning a context and computing its checksums.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory itself could not be opened.
    #[error("failed to open build context {}", dir.display())]
    Open {
        /// The context directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An entry could not be listed or stat'ed.
    #[error("failed to read {path:?} in build context {}", dir.display())]
    Walk {
        /// The context directory.
        dir: PathBuf,
        /// The entry, relative to the context.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A name that is not UTF-8 and not excluded by `.dockerignore`.
    #[error(
        "file name {path:?} in the build context is not valid UTF-8 (exclude it in .dockerignore)"
    )]
    NonUtf8Name {
        /// The path, with invalid bytes replaced.
        path: String,
    },
    /// A file's bytes could not be read for its digest.
    #[error("failed to read {path:?} from the build context")]
    Read {
        /// The file, relative to the context.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A source names nothing in the context (or only something `.dockerignore` excludes).
    /// Worded as Docker words it, after "failed to compute cache key: ".
    #[error("\"/{path}\": not found")]
    NotFound {
        /// The source as resolved, relative to the context.
        path: String,
    },
    /// A source glob Go's `filepath.Match` rejects.
    #[error("invalid source pattern {pattern:?}")]
    BadPattern {
        /// The source as written.
        pattern: String,
    },
    /// An `--exclude` pattern that does not compile.
    #[error("invalid exclude pattern {pattern:?}")]
    BadExclude {
        /// The pattern as written.
        pattern: String,
        /// Why.
        #[source]
        source: strata_graph::pattern::PatternError,
    },
    /// Symlinks that point at each other.
    #[error("too many levels of symbolic links resolving \"/{path}\"")]
    SymlinkLoop {
        /// The source being resolved.
        path: String,
    },
    /// The stat cache could not be written (the build itself is unaffected).
    #[error("failed to write the context stat cache {}", path.display())]
    SaveStatCache {
        /// The stat cache file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The selection checksum memo could not be written (the build itself is unaffected).
    #[error("failed to write the selection checksum memo {}", path.display())]
    SaveChecksumMemo {
        /// The memo file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
