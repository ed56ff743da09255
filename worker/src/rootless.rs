//! Rootless strata: an ordinary user's strata becomes "root" of a user namespace of its own
//! before it does anything else, and everything after that (the store, extraction with
//! owners, overlay mounts, the sandbox helper, pivot_root, seccomp, the mount, PID, UTS, IPC
//! and network namespaces of each RUN) is the same code as for root.
//!
//! The namespace maps container uid 0 to the user's own uid and 1..=N to the user's first
//! subordinate range in `/etc/subuid` (N its length), and gids the same way from
//! `/etc/subgid`. So a file that is root's in an image is the user's on disk and root's
//! again in the layer tar, and a file of uid 1000 is subordinate uid `start + 999` on disk.
//! Only the setuid helpers `newuidmap`/`newgidmap` (Debian's `uidmap`) may write a map with
//! more than the user's own id, and only from outside the namespace; that is what buildah's
//! `unshare` does too.
//!
//! Why in-process rather than buildah's re-exec: `main` calls [`enter_user_namespace`] while
//! the process still has one thread, so it may `unshare(CLONE_NEWUSER)` itself. A child
//! forked just before (it stays outside the namespace, where `newuidmap` must run) writes
//! the maps and exits. There is no second strata process to forward signals, exit codes and
//! the terminal to, and it costs one fork and two execs of small setuid tools.
//!
//! A mount namespace is made too, owned by the new user namespace: the new mount API
//! (`fsopen`, `open_tree`) wants `CAP_SYS_ADMIN` over the caller's mount namespace. Mounts
//! made in it never reach the host's.

use crate::sys::{self, CloneFlags, Forked};
use std::io::{self, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `/etc/subuid`, the subordinate uid ranges (subuid(5)).
const SUBUID: &str = "/etc/subuid";
/// `/etc/subgid`, the subordinate gid ranges.
const SUBGID: &str = "/etc/subgid";

/// One subordinate id range of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdRange {
    /// The first id on the host.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

/// Why strata cannot become root of a user namespace of its own.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// The user has no entry in `/etc/passwd` (or NSS).
    #[error("rootless mode needs a user name for uid {uid}, and none is known")]
    NoUser {
        /// The real uid.
        uid: u32,
    },
    /// `/etc/subuid` or `/etc/subgid` has no range for the user.
    #[error("rootless mode needs a range in {} for {user} (see subuid(5))", file.display())]
    NoRange {
        /// The user's name.
        user: String,
        /// The file.
        file: PathBuf,
    },
    /// `/etc/subuid` or `/etc/subgid` cannot be read.
    #[error("rootless mode needs {}, which cannot be read", path.display())]
    ReadRanges {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `newuidmap` or `newgidmap` is not installed.
    #[error("rootless mode needs {tool} (Debian's package uidmap), which is not installed")]
    MissingTool {
        /// `newuidmap` or `newgidmap`.
        tool: &'static str,
    },
    /// `newuidmap` or `newgidmap` failed.
    #[error("{tool} failed to map {what}: {message}")]
    Map {
        /// `newuidmap` or `newgidmap`.
        tool: &'static str,
        /// The map it was given.
        what: String,
        /// Its own message, or how it ended.
        message: String,
    },
    /// A system call failed.
    #[error("failed to enter a user namespace: {what}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The first range of `user` (whose id is `id`) in the text of `/etc/subuid` or
/// `/etc/subgid`: lines `name:start:count`, where `name` may also be the numeric id.
/// Hand-written: the format is three fields, and no maintained crate reads it.
pub(crate) fn subordinate_range(text: &str, user: &str, id: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (name, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || (name != user && name.parse::<u32>().ok() != Some(id)) {
            return None;
        }
        let range = IdRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count > 0 && range.start.checked_add(range.count).is_some()).then_some(range)
    })
}

fn sys_err(what: &'static str) -> impl FnOnce(io::Error) -> RootlessError {
    move |source| RootlessError::Sys { what, source }
}

/// The user's range in `file`.
fn range_of(file: &str, user: &str, id: u32) -> Result<IdRange, RootlessError> {
    let text = match fs_err::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(RootlessError::ReadRanges {
                path: file.into(),
                source,
            });
        }
    };
    subordinate_range(&text, user, id).ok_or_else(|| RootlessError::NoRange {
        user: user.to_owned(),
        file: file.into(),
    })
}

/// One map for `newuidmap`/`newgidmap`: 0 → `own`, 1..=count → the range.
fn map_args(own: u32, range: IdRange) -> [String; 6] {
    [
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.start.to_string(),
        range.count.to_string(),
    ]
}

/// Makes this process root of a new user namespace (uid and gid 0 the caller's own, 1..=N
/// its subordinate ranges) and of a new mount namespace. Call it first thing in `main`,
/// before any thread exists, and only when not root. Afterwards every file this process
/// makes is still the user's on the host.
pub fn enter_user_namespace() -> Result<(), RootlessError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .ok_or(RootlessError::NoUser { uid })?
        .name;
    let uids = range_of(SUBUID, &user, uid)?;
    let gids = range_of(SUBGID, &user, gid)?;
    let parent = nix::unistd::getpid().as_raw();
    let (go_r, go_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    let (done_r, done_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    match sys::fork().map_err(sys_err("forking the id mapper"))? {
        Forked::Child => {
            drop((go_w, done_r));
            let result = write_maps(go_r, parent, uid, uids, gid, gids);
            let _ = sys::write_all(done_w.as_fd(), result.as_bytes());
            std::process::exit(0)
        }
        Forked::Parent(child) => {
            drop((go_r, done_w));
            let unshared = sys::unshare(CloneFlags::CLONE_NEWUSER);
            // Either way the child is told (end-of-file: give up), then reaped.
            if unshared.is_ok() {
                let _ = sys::write_all(go_w.as_fd(), b"g");
            }
            drop(go_w);
            let mut answer = String::new();
            let _ = sys::file_from(done_r).read_to_string(&mut answer);
            let _ = sys::wait_pid(child);
            unshared.map_err(sys_err("creating the user namespace"))?;
            parse_answer(&answer, uids, gids)?;
        }
    }
    sys::become_namespace_root().map_err(sys_err("switching to root of the namespace"))?;
    sys::unshare(CloneFlags::CLONE_NEWNS).map_err(sys_err("creating the mount namespace"))
}

/// In the forked child: waits for the parent to have unshared, runs both tools, and returns
/// `ok`, or `<tool>\t<what>\t<message>` (`missing` as the message when it is not installed).
fn write_maps(go: OwnedFd, pid: i32, uid: u32, uids: IdRange, gid: u32, gids: IdRange) -> String {
    let mut byte = [0u8; 1];
    if !matches!(sys::read(go.as_fd(), &mut byte), Ok(1)) {
        return "gave up".into();
    }
    for (tool, own, range) in [("newuidmap", uid, uids), ("newgidmap", gid, gids)] {
        let args = map_args(own, range);
        let out = Command::new(tool)
            .arg(pid.to_string())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let message = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let err = err.trim().replace(['\n', '\t'], " ");
                if err.is_empty() {
                    o.status.to_string()
                } else {
                    err
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => "missing".into(),
            Err(e) => e.to_string(),
        };
        return format!("{tool}\t{}\t{message}", args.join(" "));
    }
    "ok".into()
}

fn parse_answer(answer: &str, uids: IdRange, gids: IdRange) -> Result<(), RootlessError> {
    if answer == "ok" {
        return Ok(());
    }
    let mut parts = answer.splitn(3, '\t');
    let (tool, what, message) = (parts.next(), parts.next(), parts.next());
    let tool = if tool == Some("newgidmap") {
        "newgidmap"
    } else {
        "newuidmap"
    };
    if message == Some("missing") {
        return Err(RootlessError::MissingTool { tool });
    }
    let range = if tool == "newgidmap" { gids } else { uids };
    Err(RootlessError::Map {
        tool,
        what: what.map_or_else(
            || format!("1..={} to {}", range.count, range.start),
            str::to_owned,
        ),
        message: message.unwrap_or("it ended without saying why").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_users_first_range_by_name_or_uid() {
        let text = "alice:100000:65536\nbob:165536:65536\nbob:300000:10\n1002:400000:5\n";
        assert_eq!(
            subordinate_range(text, "bob", 1001),
            Some(IdRange {
                start: 165536,
                count: 65536
            })
        );
        assert_eq!(
            subordinate_range(text, "carol", 1002),
            Some(IdRange {
                start: 400000,
                count: 5
            })
        );
        assert_eq!(subordinate_range(text, "dave", 1003), None);
    }

    #[test]
    fn skips_malformed_and_empty_ranges() {
        let text = "alice:x:65536\nalice:1:0\nalice:4294967295:2\nalice:1:2:3\nalice:500:7\n";
        assert_eq!(
            subordinate_range(text, "alice", 1000),
            Some(IdRange {
                start: 500,
                count: 7
            })
        );
    }

    #[test]
    fn a_tool_failure_names_the_tool_map_and_message() {
        let r = IdRange { start: 1, count: 2 };
        let e = parse_answer("newgidmap\t0 1000 1 1 1 2\tnope", r, r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "newgidmap failed to map 0 1000 1 1 1 2: nope"
        );
        let e = parse_answer("newuidmap\t0 1000 1 1 1 2\tmissing", r, r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rootless mode needs newuidmap (Debian's package uidmap), which is not installed"
        );
    }
}
