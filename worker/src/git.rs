//! ADD of a git repository, through the `git` binary (as BuildKit does): [`resolve`] turns a
//! branch, tag or `HEAD` into the commit it names now (`git ls-remote`), which the solver
//! puts into the step's cache key; [`checkout`] then fetches exactly that commit, shallow, into
//! a scratch directory, from where the file operation copies the tree into the layer through
//! the same confined copy as COPY. git runs with no user or system config, no prompt and only
//! the network transports (`GIT_ALLOW_PROTOCOL`), so a Dockerfile cannot make it read the
//! host's repositories or run helpers.
//!
//! A private repository over HTTP(S) takes its credentials from the build's secrets, as
//! BuildKit names them ([`GitAuth`]): they reach git as an `Authorization` header through its
//! environment, never its arguments, and stay out of the cache key (the commit alone) and
//! every message.
//!
//! A remote over ssh (`ssh://…`, `git@host:owner/repo.git`) authenticates with the build's
//! `--ssh default` agent, as BuildKit's git source does: its socket reaches ssh as
//! `SSH_AUTH_SOCK` ([`GitAuth::ssh_agent`]); the host's own `SSH_AUTH_SOCK` never does. With
//! no known hosts given, host keys are not checked (BuildKit's `StrictHostKeyChecking=no`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::path::{Path, PathBuf};
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
    /// A `GIT_AUTH_HEADER` secret that cannot be an HTTP header value.
    #[error("secret {id} is not a header value (not UTF-8, or a line break or NUL in it)")]
    BadHeader {
        /// The secret's id (never its value).
        id: String,
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

/// The secret ids BuildKit's git source looks up, in its order: for the remote's host
/// (`host:port` when the URL names a port), then for any host. A header secret is the header's
/// value as it is; a token is sent as `basic base64("x-access-token:" + token)`.
const AUTH_SECRETS: [(&str, bool); 2] = [("GIT_AUTH_HEADER", false), ("GIT_AUTH_TOKEN", true)];

/// How git authenticates to one remote: the `Authorization` header it sends to an HTTP(S)
/// remote, or the ssh agent it uses for one over ssh. Its `Debug` hides the header.
#[derive(Clone)]
pub struct GitAuth {
    kind: AuthKind,
}

#[derive(Clone)]
enum AuthKind {
    Header {
        /// The URL prefix git sends the header to: the remote itself (credentials taken
        /// out), or all of `https://github.com/`, as BuildKit.
        scope: String,
        /// `Authorization: ...`.
        header: String,
        /// What must never show in a message: the header's credentials and the secret as
        /// given.
        hidden: [String; 2],
    },
    /// The agent's socket.
    SshAgent(PathBuf),
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            AuthKind::Header { scope, .. } => f
                .debug_struct("GitAuth")
                .field("scope", scope)
                .finish_non_exhaustive(),
            AuthKind::SshAgent(socket) => f
                .debug_struct("GitAuth")
                .field("ssh_agent", socket)
                .finish(),
        }
    }
}

/// Whether git reaches `remote` over ssh: `ssh://…`, or scp-like `[user@]host:path` (no slash
/// before the first colon, as git reads it).
pub(crate) fn is_ssh(remote: &str) -> bool {
    match remote.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("ssh"),
        None => remote
            .find(':')
            .is_some_and(|colon| !remote[..colon].contains('/') && colon > 0),
    }
}

impl GitAuth {
    /// The credentials for `remote` among the build's secrets (`secret` looks one up by id),
    /// as BuildKit picks them: `GIT_AUTH_HEADER.<host>`, `GIT_AUTH_TOKEN.<host>`,
    /// `GIT_AUTH_HEADER`, `GIT_AUTH_TOKEN`, the first given. `None` for a remote that is not
    /// HTTP(S) or when none is given.
    pub fn for_remote(
        remote: &str,
        secret: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Option<GitAuth>, GitError> {
        let Some(host) = http_host(remote) else {
            return Ok(None);
        };
        let ids = AUTH_SECRETS
            .iter()
            .map(|(name, token)| (format!("{name}.{host}"), *token))
            .chain(
                AUTH_SECRETS
                    .iter()
                    .map(|(name, token)| ((*name).to_owned(), *token)),
            );
        for (id, token) in ids {
            let Some(value) = secret(&id) else { continue };
            let value_text = String::from_utf8_lossy(&value).into_owned();
            let (credentials, encoded) = if token {
                let mut plain = b"x-access-token:".to_vec();
                plain.extend_from_slice(&value);
                let encoded = BASE64.encode(plain);
                (format!("basic {encoded}"), encoded)
            } else {
                match String::from_utf8(value) {
                    Ok(v) if !v.contains(['\r', '\n', '\0']) => (v.clone(), v),
                    _ => return Err(GitError::BadHeader { id }),
                }
            };
            let redacted = redact(remote);
            let scope = ["https://github.com/", "https://www.github.com/"]
                .into_iter()
                .find(|p| redacted.starts_with(p))
                .map_or(redacted.clone(), str::to_owned);
            return Ok(Some(GitAuth {
                kind: AuthKind::Header {
                    scope,
                    header: format!("Authorization: {credentials}"),
                    hidden: [encoded, value_text],
                },
            }));
        }
        Ok(None)
    }

    /// The ssh agent at `socket` (the build's `--ssh default`) for `remote`; `None` for a
    /// remote that is not over ssh.
    pub fn ssh_agent(remote: &str, socket: &Path) -> Option<GitAuth> {
        is_ssh(remote).then(|| GitAuth {
            kind: AuthKind::SshAgent(socket.to_owned()),
        })
    }

    /// Gives `cmd` the header through git's environment config (git 2.31+), out of its
    /// argument list; or the agent's socket.
    fn apply(&self, cmd: &mut Command) {
        match &self.kind {
            AuthKind::Header { scope, header, .. } => {
                cmd.env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", format!("http.{scope}.extraheader"))
                    .env("GIT_CONFIG_VALUE_0", header);
            }
            AuthKind::SshAgent(socket) => {
                cmd.env("SSH_AUTH_SOCK", socket);
            }
        }
    }

    /// `text` with the credentials blanked out.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        if let AuthKind::Header { hidden, .. } = &self.kind {
            for hidden in hidden.iter().filter(|h| !h.trim().is_empty()) {
                text = text.replace(hidden.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// The host (with its port, as BuildKit's secret ids spell it) of an `http://` or `https://`
/// remote.
fn http_host(remote: &str) -> Option<&str> {
    let (scheme, rest) = remote.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
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
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "GIT_TRACE_PACKET",
        "GIT_TRACE_REDACT",
        "GIT_CURL_VERBOSE",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "SSH_AUTH_SOCK",
    ] {
        c.env_remove(var);
    }
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", "/dev/null")
        .env("LC_ALL", "C")
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null",
        );
    c.args([
        "-c",
        "core.symlinks=true",
        "-c",
        "advice.detachedHead=false",
    ]);
    c
}

/// `git()` that talks to a remote, with its credentials when given.
fn remote_git(auth: Option<&GitAuth>) -> Command {
    let mut c = git();
    if let Some(auth) = auth {
        auth.apply(&mut c);
    }
    c
}

/// Runs `cmd`; its stdout on success. `auth` is scrubbed from the message on failure.
fn run(
    mut cmd: Command,
    what: &'static str,
    remote: &str,
    auth: Option<&GitAuth>,
) -> Result<String, GitError> {
    let out = cmd.output().map_err(GitError::Spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let stderr = redact(&lines[lines.len().saturating_sub(3)..].join("; "));
    Err(GitError::Command {
        what,
        remote: redact(remote),
        stderr: auth.map_or(stderr.clone(), |a| a.scrub(&stderr)),
    })
}

/// `e` with a word on the missing agent when git failed to reach an ssh `remote` without one.
fn ssh_hint(e: GitError, remote: &str, auth: Option<&GitAuth>) -> GitError {
    match e {
        GitError::Command {
            what,
            remote: shown,
            stderr,
        } if is_ssh(remote) && auth.is_none() => GitError::Command {
            what,
            remote: shown,
            stderr: format!(
                "{stderr} (git over ssh uses the build's ssh agent, `--ssh default`, and none was given)"
            ),
        },
        e => e,
    }
}

/// The commit `reference` (a branch, a tag, a full ref name, `None` for `HEAD`, or a commit id
/// taken as it is) names on `remote` now; checked against `checksum` when given. `auth`:
/// the remote's credentials ([`GitAuth::for_remote`]).
pub fn resolve(
    remote: &str,
    reference: Option<&str>,
    checksum: Option<&str>,
    auth: Option<&GitAuth>,
) -> Result<String, GitError> {
    let name = reference.unwrap_or("HEAD");
    let commit = if is_commit(name) {
        name.to_owned()
    } else {
        let mut cmd = remote_git(auth);
        cmd.args(["ls-remote", "--", remote, name, &format!("{name}^{{}}")]);
        let listed =
            run(cmd, "list the refs of", remote, auth).map_err(|e| ssh_hint(e, remote, auth))?;
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
/// Returns the commit's time (committer date, seconds since the epoch). Only the fetches get
/// `auth`, and never in a file: a kept `.git` holds no credentials.
pub(crate) fn checkout(
    remote: &str,
    commit: &str,
    tree: &Path,
    git_dir: &Path,
    keep_git_dir: bool,
    auth: Option<&GitAuth>,
) -> Result<i64, GitError> {
    let git_dir = if keep_git_dir {
        tree.join(".git")
    } else {
        git_dir.to_owned()
    };
    let in_repo = |auth: Option<&GitAuth>| {
        let mut c = remote_git(auth);
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
    run(init, "prepare a checkout of", remote, None)?;
    let mut fetch = in_repo(auth);
    fetch.args([
        "fetch",
        "-q",
        "--no-tags",
        "--depth=1",
        "--",
        remote,
        commit,
    ]);
    if run(fetch, "fetch", remote, auth).is_err() {
        // A server that refuses a commit by id (protocol v0 without allowReachableSHA1InWant):
        // everything, then the commit from it.
        let mut fetch = in_repo(auth);
        fetch.args([
            "fetch",
            "-q",
            "--no-tags",
            "--",
            remote,
            "+refs/heads/*:refs/strata/heads/*",
            "+refs/tags/*:refs/strata/tags/*",
        ]);
        run(fetch, "fetch", remote, auth).map_err(|e| ssh_hint(e, remote, auth))?;
    }
    let mut co = in_repo(None);
    co.args(["checkout", "-q", "--detach", commit]);
    run(co, "check out", remote, None)?;
    if keep_git_dir {
        let mut set = in_repo(None);
        set.args(["remote", "add", "origin", &redact(remote)]);
        run(set, "record the origin of", remote, None)?;
    }
    let mut show = in_repo(None);
    show.args(["show", "-s", "--format=%ct", commit]);
    let time = run(show, "read the commit time of", remote, None)?;
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
    fn ssh_remotes_are_told_from_others() {
        for r in [
            "ssh://git@h:22/o/r.git",
            "SSH://h/r",
            "git@github.com:o/r.git",
            "h:r",
        ] {
            assert!(is_ssh(r), "{r}");
        }
        for r in ["https://h/r.git", "git://h/r", "/srv/r.git", "./a:b", ":x"] {
            assert!(!is_ssh(r), "{r}");
        }
        let sock = Path::new("/run/agent.sock");
        assert!(GitAuth::ssh_agent("https://h/r.git", sock).is_none());
        let auth = GitAuth::ssh_agent("git@h:o/r.git", sock).expect("an ssh remote");
        let mut cmd = Command::new("git");
        auth.apply(&mut cmd);
        assert!(
            cmd.get_envs()
                .any(|(k, v)| k == "SSH_AUTH_SOCK" && v == Some(sock.as_os_str()))
        );
    }

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

    fn auth(remote: &str, given: &[(&str, &str)]) -> Result<Option<GitAuth>, GitError> {
        GitAuth::for_remote(remote, |id| {
            given
                .iter()
                .find(|(k, _)| *k == id)
                .map(|(_, v)| v.as_bytes().to_vec())
        })
    }

    fn env_of(auth: &GitAuth) -> Vec<(String, String)> {
        let mut cmd = Command::new("git");
        auth.apply(&mut cmd);
        cmd.get_envs()
            .map(|(k, v)| {
                let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
                (text(k), v.map(text).unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn auth_secrets_are_picked_as_buildkit_by_host_with_port_then_any_host() {
        let remote = "http://u:p@127.0.0.1:8080/o/r.git";
        let all = [
            ("GIT_AUTH_TOKEN", "any"),
            ("GIT_AUTH_HEADER", "bearer anyhdr"),
            ("GIT_AUTH_TOKEN.127.0.0.1:8080", "tok"),
            ("GIT_AUTH_HEADER.127.0.0.1:8080", "bearer hdr"),
        ];
        let header = |given: &[(&str, &str)]| {
            auth(remote, given)
                .expect("valid secrets")
                .and_then(|a| match a.kind {
                    AuthKind::Header { header, .. } => Some(header),
                    AuthKind::SshAgent(_) => None,
                })
        };
        assert_eq!(header(&all).as_deref(), Some("Authorization: bearer hdr"));
        // base64("x-access-token:tok")
        assert_eq!(
            header(&all[..3]).as_deref(),
            Some("Authorization: basic eC1hY2Nlc3MtdG9rZW46dG9r")
        );
        assert_eq!(
            header(&all[..2]).as_deref(),
            Some("Authorization: bearer anyhdr")
        );
        assert_eq!(
            header(&all[..1]).as_deref(),
            Some("Authorization: basic eC1hY2Nlc3MtdG9rZW46YW55")
        );
        // The host without its port is another host.
        assert_eq!(header(&[("GIT_AUTH_TOKEN.127.0.0.1", "tok")]), None);
        // Not HTTP: nothing to send a header to.
        assert!(
            auth("git://127.0.0.1/r.git", &all)
                .expect("no error")
                .is_none()
        );
        assert!(
            auth("git@h.test:o/r.git", &all)
                .expect("no error")
                .is_none()
        );
    }

    #[test]
    fn auth_reaches_git_through_its_environment_scoped_to_the_remote() {
        let a = auth("https://u:p@h.test/o/r.git", &[("GIT_AUTH_TOKEN", "tok")])
            .expect("valid")
            .expect("given");
        let env = env_of(&a);
        assert_eq!(
            env,
            [
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                (
                    "GIT_CONFIG_KEY_0".to_owned(),
                    "http.https://h.test/o/r.git.extraheader".to_owned()
                ),
                (
                    "GIT_CONFIG_VALUE_0".to_owned(),
                    "Authorization: basic eC1hY2Nlc3MtdG9rZW46dG9r".to_owned()
                ),
            ]
        );
        let gh = auth("https://github.com/o/r.git", &[("GIT_AUTH_TOKEN", "tok")])
            .expect("valid")
            .expect("given");
        assert!(
            matches!(&gh.kind, AuthKind::Header { scope, .. } if scope == "https://github.com/"),
            "{gh:?}"
        );
        let cmd = remote_git(Some(&a));
        assert!(
            cmd.get_args()
                .all(|arg| !arg.to_string_lossy().contains("eC1hY2Nlc3MtdG9rZW46dG9r")),
            "{cmd:?}"
        );
        assert!(!format!("{a:?}").contains("eC1hY2Nlc3MtdG9rZW46dG9r"));
        assert_eq!(
            a.scrub("bad eC1hY2Nlc3MtdG9rZW46dG9r and tok"),
            "bad <redacted> and <redacted>"
        );
    }

    #[test]
    fn a_header_secret_with_a_line_break_is_refused_without_its_value() {
        let err = auth(
            "https://h.test/r.git",
            &[("GIT_AUTH_HEADER", "x\r\nEvil: 1")],
        )
        .expect_err("a line break is no header value");
        assert_eq!(
            err.to_string(),
            "secret GIT_AUTH_HEADER is not a header value (not UTF-8, or a line break or NUL in it)"
        );
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
