//! ADD of a git repository, through the `git` binary (as BuildKit does): [`resolve`] turns a
//! branch, tag or `HEAD` into the commit it names now (`git ls-remote`), which the solver
//! puts into the step's cache key; [`checkout`] then fetches exactly that commit, shallow, into
//! a scratch directory, from where the file operation copies the tree into the layer through
//! the same confined copy as COPY. git runs with no user or system config, no prompt and only
//! the network transports (`GIT_ALLOW_PROTOCOL`), so a Dockerfile cannot make it read the
//! host's repositories or run helpers.

use std::path::Path;
use std::process::Command;

/// Why a git source failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("failed to run git (is it installed?)")]
    Spawn(#[source] std::io::Error),
    /// A git command failed.
    #[error("failed to {what} {remote}: {stderr}")]
    Command {
        /// What was being done (`list the refs of`, `fetch`).
        what: &'static str,
        /// The remote, credentials hidden.
        remote: String,
        /// git's own words (its last lines).
        stderr: String,
    },
    /// The remote has no such branch or tag.
    #[error("{remote} has no branch or tag named {reference:?}")]
    NoRef {
        /// The remote, credentials hidden.
        remote: String,
        /// The reference asked for.
        reference: String,
    },
    /// `--checksum` names another commit than the reference.
    #[error("{remote}#{reference} is commit {actual}, but --checksum expects {expected}")]
    Checksum {
        /// The remote, credentials hidden.
        remote: String,
        /// The reference.
        reference: String,
        /// `--checksum`.
        expected: String,
        /// The commit the reference resolved to.
        actual: String,
    },
    /// The subdirectory is not a directory of the commit.
    #[error("{subdir}: not a directory of {remote} at {commit}")]
    NoSubdir {
        /// The remote, credentials hidden.
        remote: String,
        /// The commit.
        commit: String,
        /// The subdirectory asked for.
        subdir: String,
    },
}

/// A full commit id (SHA-1 or SHA-256), as BuildKit recognises one.
fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `remote` with a `user:password@` taken out, for messages.
pub(crate) fn redact(remote: &str) -> String {
    let Some((scheme, rest)) = remote.split_once("://") else {
        return remote.to_owned();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{}", &rest[host_end..]),
        None => remote.to_owned(),
    }
}

/// `git` with no configuration but ours and no way to ask for a password.
fn git() -> Command {
    let mut c = Command::new("git");
    // The process's environment stays (PATH finds git); what would point git elsewhere goes.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_EXEC_PATH",
        "GIT_TEMPLATE_DIR",
    ] {
        c.env_remove(var);
    }
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", "/dev/null")
        .env("LC_ALL", "C")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .env("GIT_SSH_COMMAND", "ssh -F /dev/null -o BatchMode=yes");
    c.args([
        "-c",
        "core.symlinks=true",
        "-c",
        "advice.detachedHead=false",
    ]);
    c
}

/// Runs `cmd`; its stdout on success.
fn run(mut cmd: Command, what: &'static str, remote: &str) -> Result<String, GitError> {
    let out = cmd.output().map_err(GitError::Spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(GitError::Command {
        what,
        remote: redact(remote),
        stderr: redact(&lines[lines.len().saturating_sub(3)..].join("; ")),
    })
}

/// The commit `reference` (a branch, a tag, a full ref name, `None` for `HEAD`, or a commit id
/// taken as it is) names on `remote` now; checked against `checksum` when given.
pub fn resolve(
    remote: &str,
    reference: Option<&str>,
    checksum: Option<&str>,
) -> Result<String, GitError> {
    let name = reference.unwrap_or("HEAD");
    let commit = if is_commit(name) {
        name.to_owned()
    } else {
        let mut cmd = git();
        cmd.args(["ls-remote", "--", remote, name, &format!("{name}^{{}}")]);
        let listed = run(cmd, "list the refs of", remote)?;
        pick(&listed, name).ok_or_else(|| GitError::NoRef {
            remote: redact(remote),
            reference: name.to_owned(),
        })?
    };
    if let Some(expected) = checksum
        && expected != commit
    {
        return Err(GitError::Checksum {
            remote: redact(remote),
            reference: name.to_owned(),
            expected: expected.to_owned(),
            actual: commit,
        });
    }
    Ok(commit)
}

/// The commit of `name` in `git ls-remote` output: the ref spelled in full, else a tag
/// (peeled: an annotated tag's commit), else a branch.
fn pick(listed: &str, name: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = listed.lines().filter_map(|l| l.split_once('\t')).collect();
    let find = |want: &str| {
        refs.iter()
            .find(|(_, r)| *r == want)
            .map(|(c, _)| (*c).to_owned())
    };
    find(name)
        .or_else(|| find(&format!("refs/tags/{name}^{{}}")))
        .or_else(|| find(&format!("refs/tags/{name}")))
        .or_else(|| find(&format!("refs/heads/{name}")))
}

/// Fetches `commit` of `remote` (depth 1) and checks its tree out into `tree`, with its
/// `.git` there when `keep_git_dir`, else in `git_dir` (which the caller throws away).
/// Returns the commit's time (committer date, seconds since the epoch).
pub(crate) fn checkout(
    remote: &str,
    commit: &str,
    tree: &Path,
    git_dir: &Path,
    keep_git_dir: bool,
) -> Result<i64, GitError> {
    let git_dir = if keep_git_dir {
        tree.join(".git")
    } else {
        git_dir.to_owned()
    };
    let in_repo = || {
        let mut c = git();
        c.arg("--git-dir")
            .arg(&git_dir)
            .arg("--work-tree")
            .arg(tree);
        c
    };
    let mut init = git();
    init.arg("--git-dir")
        .arg(&git_dir)
        .args(["init", "-q", "--initial-branch=master"]);
    run(init, "prepare a checkout of", remote)?;
    let mut fetch = in_repo();
    fetch.args([
        "fetch",
        "-q",
        "--no-tags",
        "--depth=1",
        "--",
        remote,
        commit,
    ]);
    if run(fetch, "fetch", remote).is_err() {
        // A server that refuses a commit by id (protocol v0 without allowReachableSHA1InWant):
        // everything, then the commit from it.
        let mut fetch = in_repo();
        fetch.args([
            "fetch",
            "-q",
            "--no-tags",
            "--",
            remote,
            "+refs/heads/*:refs/strata/heads/*",
            "+refs/tags/*:refs/strata/tags/*",
        ]);
        run(fetch, "fetch", remote)?;
    }
    let mut co = in_repo();
    co.args(["checkout", "-q", "--detach", commit]);
    run(co, "check out", remote)?;
    if keep_git_dir {
        let mut set = in_repo();
        set.args(["remote", "add", "origin", &redact(remote)]);
        run(set, "record the origin of", remote)?;
    }
    let mut show = in_repo();
    show.args(["show", "-s", "--format=%ct", commit]);
    let time = run(show, "read the commit time of", remote)?;
    time.trim().parse().map_err(|_| GitError::Command {
        what: "read the commit time of",
        remote: redact(remote),
        stderr: format!("unexpected output {:?}", time.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_picked_full_name_then_peeled_tag_then_tag_then_branch() {
        let listed = "aaaa\trefs/heads/v1\nbbbb\trefs/tags/v1\ncccc\trefs/tags/v1^{}\ndddd\tHEAD\n";
        assert_eq!(pick(listed, "v1").as_deref(), Some("cccc"));
        assert_eq!(pick(listed, "refs/heads/v1").as_deref(), Some("aaaa"));
        assert_eq!(pick(listed, "HEAD").as_deref(), Some("dddd"));
        assert_eq!(
            pick("eeee\trefs/heads/main\n", "main").as_deref(),
            Some("eeee")
        );
        assert_eq!(pick(listed, "main"), None);
    }

    #[test]
    fn credentials_stay_out_of_messages() {
        assert_eq!(
            redact("https://u:tok@h.test/o/r.git"),
            "https://h.test/o/r.git"
        );
        assert_eq!(redact("git@h.test:o/r.git"), "git@h.test:o/r.git");
    }
}
