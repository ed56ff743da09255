//! What of a context directory is part of the build context at all (`.dockerignore`).
//!
//! The frontend reads `.dockerignore` (into `strata_graph::pattern::PatternMatcher`); the
//! cache only asks these two questions while it walks, so a path the user excluded is never
//! stat'ed twice, never read, and never reaches a checksum.

/// Decides which paths of a context directory belong to the context. The CLI implements it
/// over the frontend's `.dockerignore` matcher. Paths are relative to the context root,
/// `/`-separated, without a leading or trailing slash (`src/main.rs`); the root itself is never
/// asked about.
pub trait ContextFilter: Sync {
    /// Whether `rel` is excluded from the context.
    fn excluded(&self, rel: &str, is_dir: bool) -> bool;

    /// For an excluded directory: whether a later `!pattern` may re-include something below
    /// it, so the walk must go on inside it. An excluded directory with re-included children
    /// is part of the context (it holds them); one without is skipped whole.
    fn may_reinclude_below(&self, rel_dir: &str) -> bool;

    /// Whether it excludes nothing at all, so a copy of the context needs no filter.
    fn keeps_everything(&self) -> bool {
        false
    }
}

/// The filter that keeps everything (a context without `.dockerignore`, a stage's output).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFilter;

impl ContextFilter for NoFilter {
    fn excluded(&self, _rel: &str, _is_dir: bool) -> bool {
        false
    }

    fn may_reinclude_below(&self, _rel_dir: &str) -> bool {
        false
    }

    fn keeps_everything(&self) -> bool {
        true
    }
}
