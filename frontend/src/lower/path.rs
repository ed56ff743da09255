//! Paths inside the image, cleaned and made absolute against the working directory as
//! BuildKit does (Go's `path.Join` and `path.Clean`).

/// `path.Join("/", p)`.
pub(super) fn join_root(p: &str) -> String {
    strata_graph::pattern::clean(&format!("/{p}"))
}

/// A `--parents` source cleaned on each side of its `/./` pivot.
pub(super) fn clean_keep_pivot(p: &str) -> String {
    match p.split_once("/./") {
        Some((parent, rest)) => format!(
            "{}/./{}",
            join_root(parent),
            join_root(rest).trim_start_matches('/')
        ),
        None => join_root(p),
    }
}

/// `target` made absolute against the working directory.
pub(super) fn absolute_in(workdir: &str, target: &str) -> String {
    if target.starts_with('/') {
        strata_graph::pattern::clean(target)
    } else {
        strata_graph::pattern::clean(&format!("{workdir}/{target}"))
    }
}

/// BuildKit's `NormalizeWorkdir`: relative paths build on the current directory.
pub(super) fn normalize_workdir(current: &str, requested: &str) -> String {
    if requested.is_empty() {
        return current.to_owned();
    }
    absolute_in(current, requested)
}

/// A COPY destination against the working directory, keeping a trailing slash (it means
/// "into this directory").
pub(super) fn path_relative_to_workdir(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let joined = absolute_in(workdir, dest);
    if (dest.ends_with('/') || dest.ends_with("/.")) && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(path_relative_to_workdir("/work", "."), "/work/");
        assert_eq!(
            path_relative_to_workdir("/work", "renamed.txt"),
            "/work/renamed.txt"
        );
        assert_eq!(path_relative_to_workdir("/work", "sub/"), "/work/sub/");
        assert_eq!(path_relative_to_workdir("/", "/a/b/c/"), "/a/b/c/");
        assert_eq!(path_relative_to_workdir("/w", "deep/er/"), "/w/deep/er/");
        assert_eq!(path_relative_to_workdir("/w", "/x/../y"), "/y");
        assert_eq!(normalize_workdir("/a", "b/../c"), "/a/c");
        assert_eq!(normalize_workdir("/a", "/"), "/");
    }
}
