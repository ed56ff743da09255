//! `.dockerignore`: which file applies (`<Dockerfile>.dockerignore` beside the Dockerfile wins
//! over the context's, as in BuildKit), and the filter the context walker and COPY see.

use crate::Dockerfile;
use std::path::Path;
use strata_cache::ContextFilter;
use strata_frontend::{
    DirVisit, IgnoreError, IgnoreMatcher, dockerfile_ignore_name, pick_ignore_file,
};

/// `.dockerignore` as the context walker and the COPY source filter see it.
pub(crate) struct IgnoreFilter(pub(crate) IgnoreMatcher);

impl ContextFilter for IgnoreFilter {
    fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
        self.0.is_excluded(rel)
    }

    fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        self.0.dir_visit(rel_dir, true) == DirVisit::WalkExcluded
    }

    fn keeps_everything(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads and parses the ignore file of a build of `dockerfile` in `context` (none: nothing
/// is ignored).
pub(crate) fn read_ignore(
    dockerfile: &Dockerfile,
    context: &Path,
) -> Result<IgnoreMatcher, IgnoreError> {
    IgnoreMatcher::parse(&ignore_bytes(dockerfile, context).unwrap_or_default())
}

/// The bytes of the ignore file that applies to a build of `dockerfile` in `context`:
/// `<Dockerfile>.dockerignore` beside the Dockerfile, else the context's `.dockerignore`.
pub fn ignore_bytes(dockerfile: &Dockerfile, context: &Path) -> Option<Vec<u8>> {
    let beside = dockerfile.path.as_ref().and_then(|p| {
        let name = dockerfile_ignore_name(&p.display().to_string());
        fs_err::read(p.with_file_name(name)).ok()
    });
    let at_root = fs_err::read(context.join(".dockerignore")).ok();
    pick_ignore_file(beside.as_deref(), at_root.as_deref()).map(|(_, bytes)| bytes.to_vec())
}
