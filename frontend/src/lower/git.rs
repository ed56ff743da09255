//! Git sources of ADD as BuildKit reads them: the remote, then either a fragment
//! `#ref[:subdir]` or a query `?ref=…&subdir=…&keep-git-dir=…&checksum=…`. What the remote is
//! (and whether it answers) is the worker's business; here only the text is split.

/// A git source, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GitSource {
    /// The remote without fragment or query.
    pub(super) remote: String,
    /// The branch, tag or commit (`None`: the remote's `HEAD`).
    pub(super) reference: Option<String>,
    /// The directory of the repository to copy.
    pub(super) subdir: Option<String>,
    /// `keep-git-dir=` of the query form.
    pub(super) keep_git_dir: Option<bool>,
    /// `checksum=` (or `commit=`) of the query form.
    pub(super) checksum: Option<String>,
    /// `mtime=commit` of the query form (`mtime=checkout` is the default).
    pub(super) commit_mtime: bool,
}

/// Why a git source cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GitUrlError {
    /// A query key BuildKit does not know.
    #[error(
        "unexpected key {key:?} in git URL query (supported keys: ref, tag, branch, commit, checksum, subdir, keep-git-dir, mtime)"
    )]
    Key {
        /// The key.
        key: String,
    },
    /// A query field without `=`, or a bad boolean.
    #[error("invalid field {field:?} in git URL query")]
    Field {
        /// The field.
        field: String,
    },
}

/// Splits `url` (already known to be a git source) into its parts.
pub(super) fn parse(url: &str) -> Result<GitSource, GitUrlError> {
    let mut src = GitSource {
        remote: url.to_owned(),
        reference: None,
        subdir: None,
        keep_git_dir: None,
        checksum: None,
        commit_mtime: false,
    };
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (remote, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    src.remote = remote.to_owned();
    if let Some(query) = query {
        for field in query.split('&').filter(|f| !f.is_empty()) {
            let Some((key, value)) = field.split_once('=') else {
                return Err(GitUrlError::Field {
                    field: field.to_owned(),
                });
            };
            let value = Some(value.to_owned()).filter(|v| !v.is_empty());
            match key {
                "ref" | "tag" | "branch" => src.reference = value,
                "commit" | "checksum" => src.checksum = value,
                "subdir" => src.subdir = value,
                "mtime" => {
                    src.commit_mtime = match value.as_deref() {
                        Some("commit") => true,
                        Some("checkout") => false,
                        _ => {
                            return Err(GitUrlError::Field {
                                field: field.to_owned(),
                            });
                        }
                    }
                }
                "keep-git-dir" => {
                    src.keep_git_dir = Some(match value.as_deref() {
                        None | Some("1" | "true") => true,
                        Some("0" | "false") => false,
                        Some(_) => {
                            return Err(GitUrlError::Field {
                                field: field.to_owned(),
                            });
                        }
                    })
                }
                _ => {
                    return Err(GitUrlError::Key {
                        key: key.to_owned(),
                    });
                }
            }
        }
    }
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = match fragment.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (fragment, None),
        };
        src.reference = Some(reference.to_owned()).filter(|r| !r.is_empty());
        src.subdir = subdir.map(str::to_owned).filter(|s| !s.is_empty());
    }
    if src.checksum.is_some() && src.reference.is_none() {
        src.reference.clone_from(&src.checksum);
    }
    Ok(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, Option<String>, Option<String>, Option<bool>) {
        let s = parse(url).expect("parses");
        (s.remote, s.reference, s.subdir, s.keep_git_dir)
    }

    #[test]
    fn fragment_and_query_forms() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            parts("https://github.com/moby/moby.git#v25.0.0"),
            (
                "https://github.com/moby/moby.git".into(),
                some("v25.0.0"),
                None,
                None
            )
        );
        assert_eq!(
            parts("git@host:o/r.git#main:docs/api"),
            (
                "git@host:o/r.git".into(),
                some("main"),
                some("docs/api"),
                None
            )
        );
        assert_eq!(
            parts("https://h/x.git?ref=v1&keep-git-dir=1"),
            ("https://h/x.git".into(), some("v1"), None, Some(true))
        );
        assert_eq!(
            parts("https://h/x.git?subdir=a/b&branch=dev"),
            ("https://h/x.git".into(), some("dev"), some("a/b"), None)
        );
        assert_eq!(
            parts("git://h/x.git"),
            ("git://h/x.git".into(), None, None, None)
        );
        assert!(
            parse("https://h/x.git?ref=v1&mtime=commit")
                .expect("parses")
                .commit_mtime
        );
        assert_eq!(
            parse("https://h/x.git?mtime=now"),
            Err(GitUrlError::Field {
                field: "mtime=now".into()
            })
        );
        assert_eq!(
            parse("https://h/x.git?depth=1"),
            Err(GitUrlError::Key {
                key: "depth".into()
            })
        );
    }
}
