//! `strata exec`: one more process in a running container, set up exactly as the sandbox
//! sets up the container's own command.
//!
//! The calling process (single-threaded: `strata exec` does this before anything else)
//! joins the container's cgroup and namespaces, taken from its process: the user namespace
//! first (rootless, the one the container's monitor made; the caller is its owner, so it gets
//! every capability there), then IPC, UTS, network, cgroup, PID (for its children) and mount
//! last (which makes the container's root the caller's `/`). It then forks the command,
//! which is PID N of the container's PID namespace and is prepared and started by the
//! sandbox's own code (`sandbox::prepare_process`, `sandbox::exec_command`): user and groups
//! resolved in the container's `/etc/passwd`, the same seccomp filter, the same bounding set
//! and capabilities, a new session, descriptors closed, exec. Nothing else of the sandbox is
//! made again: its mounts, its network and its init are the container's.
//!
//! The command's stdout and stderr are the caller's; its stdin is the caller's with `-i`,
//! else /dev/null. With `-t` all three are a new pseudo-terminal (made here, its window the
//! caller's), the command's controlling terminal, relayed to the caller's stdout (and from
//! its stdin with `-i`, the caller's terminal in raw mode meanwhile). Whether the exec worked comes back on a close-on-exec pipe (end of file:
//! it did; a message: why not). Detached (`-d`) the caller returns once the command runs,
//! leaving it to the container's init, which adopts and reaps it (it is forked through a
//! go-between in the container's PID namespace that exits at once).

use crate::sandbox::{exec_command, prepare_process};
use crate::spec::ProcessSpec;
use crate::sys::{self, Forked, WaitStatus};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// What to run in the container, and how.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The container's process, as the host sees it (`State.Pid`).
    pub pid: u32,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// The environment (the container's, then `-e`).
    pub env: Vec<String>,
    /// The working directory (`-w`, else the container's).
    pub cwd: String,
    /// `user[:group]` (`-u`, else the container's).
    pub user: String,
    /// `-i`: the command reads this process's stdin.
    pub stdin: bool,
    /// `-d`: return once the command runs.
    pub detach: bool,
    /// `-t`: the command's stdin, stdout and stderr are a new pseudo-terminal, relayed to
    /// and from this process's (put in raw mode when it is a terminal). Not with `detach`.
    pub tty: bool,
}

/// How an exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The command exited with this code (128 + signal when killed); 0 for a detached one
    /// that started.
    Exited(i32),
    /// The command could not start: why (an unknown user, not found, not executable).
    StartFailed(String),
}

/// Why the exec could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A namespace of the container could not be opened or joined.
    #[error("failed to join the container's {kind} namespace")]
    Namespace {
        /// `mnt`, `pid`, ...
        kind: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The container's cgroup could not be joined.
    #[error("failed to join the container's cgroup {}", path.display())]
    Cgroup {
        /// Its `cgroup.procs`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Forking or waiting failed.
    #[error("failed to start the command")]
    Process(#[source] io::Error),
}

/// The namespaces joined, in order.
const NAMESPACES: [&str; 7] = ["user", "ipc", "uts", "net", "cgroup", "pid", "mnt"];

/// Runs `spec` in the running container. The calling process must be single-threaded; it
/// is left in the container's namespaces. Blocks until the command exits (or, detached,
/// starts).
pub fn exec_in_container(spec: &ExecSpec) -> Result<ExecOutcome, ExecError> {
    // Every descriptor first, while /proc is the host's.
    let mut joins: Vec<(&'static str, OwnedFd)> = Vec::new();
    for kind in NAMESPACES {
        let theirs = PathBuf::from(format!("/proc/{}/ns/{kind}", spec.pid));
        let ns_err = |source| ExecError::Namespace { kind, source };
        // A magic link: followed, as opening a namespace takes.
        let fd: OwnedFd = fs_err::File::open(&theirs)
            .map_err(ns_err)?
            .into_parts()
            .0
            .into();
        let same = match fs_err::metadata(format!("/proc/self/ns/{kind}")) {
            Ok(ours) => sys::fstat(fd.as_fd()).is_ok_and(|st| st.st_ino == ours.ino()),
            Err(_) => false,
        };
        if !same {
            joins.push((kind, fd));
        }
    }
    join_cgroup(spec.pid)?;
    for (kind, fd) in &joins {
        sys::join_ns(fd.as_fd()).map_err(|source| ExecError::Namespace { kind, source })?;
    }
    drop(joins);

    let (status_r, status_w) = sys::pipe().map_err(ExecError::Process)?;
    let tty = (spec.tty && !spec.detach)
        .then(|| sys::open_pty(std::io::stdout().as_fd()))
        .transpose()
        .map_err(ExecError::Process)?;
    let process = ProcessSpec {
        args: spec.args.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        insecure: false,
        no_new_privs: false,
    };
    let child = match sys::fork().map_err(ExecError::Process)? {
        Forked::Child => {
            drop(status_r);
            if spec.detach {
                // Once more, so that the command's parent is a process of the container's
                // PID namespace that exits at once: the container's init adopts it.
                match sys::fork() {
                    Ok(Forked::Child) => {}
                    Ok(Forked::Parent(_)) => std::process::exit(0),
                    Err(e) => {
                        let _ = sys::write_all(status_w.as_fd(), format!("fork: {e}").as_bytes());
                        std::process::exit(126)
                    }
                }
            }
            let message = match prepare_process(&process) {
                Ok(mut prepared) => {
                    prepared.keep_stdin = spec.stdin;
                    prepared.tty = tty.map(|(_, slave)| slave);
                    if spec.detach {
                        let _ = sys::std_to_dev_null(&[0, 1, 2]);
                    }
                    exec_command(&prepared)
                }
                Err(message) => message,
            };
            let _ = sys::write_all(status_w.as_fd(), message.as_bytes());
            std::process::exit(127)
        }
        Forked::Parent(pid) => pid,
    };
    drop(status_w);
    let master = tty.map(|(master, _)| master);
    let mut message = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(status_r.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => message.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ExecError::Process(e)),
        }
    }
    if !message.is_empty() {
        let _ = sys::wait_pid(child);
        return Ok(ExecOutcome::StartFailed(
            String::from_utf8_lossy(&message).into_owned(),
        ));
    }
    if spec.detach {
        // `child` is the go-between, gone already or about to be.
        let _ = sys::wait_pid(child);
        return Ok(ExecOutcome::Exited(0));
    }
    if let Some(master) = master {
        relay(&master, spec.stdin);
    }
    match sys::wait_pid(child).map_err(ExecError::Process)? {
        WaitStatus::Exited(_, code) => Ok(ExecOutcome::Exited(code)),
        WaitStatus::Signaled(_, sig, _) => Ok(ExecOutcome::Exited(128 + sig as i32)),
        _ => Ok(ExecOutcome::Exited(255)),
    }
}

/// Moves this process into the unified-hierarchy cgroup of `pid` when it is not there
/// already (containers given a cgroup of their own; today they share strata's).
fn join_cgroup(pid: u32) -> Result<(), ExecError> {
    let unified = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned)
    };
    let read = |p: String| fs_err::read_to_string(p).ok();
    let (Some(theirs), Some(ours)) = (
        read(format!("/proc/{pid}/cgroup")).and_then(|t| unified(&t)),
        read("/proc/self/cgroup".to_owned()).and_then(|t| unified(&t)),
    ) else {
        return Ok(());
    };
    if theirs == ours {
        return Ok(());
    }
    let path = PathBuf::from("/sys/fs/cgroup")
        .join(theirs.trim_start_matches('/'))
        .join("cgroup.procs");
    fs_err::write(&path, std::process::id().to_string())
        .map_err(|source| ExecError::Cgroup { path, source })
}

/// The processes in the PID namespace of process `pid` (a container's: its init, its
/// command, what they forked and what `exec` started), as host pids, sorted. Processes this
/// caller may not inspect are left out: they are not the container's.
pub fn pids_in_namespace_of(pid: u32) -> io::Result<Vec<u32>> {
    let ns_of = |p: &str| fs_err::metadata(format!("/proc/{p}/ns/pid")).map(|m| m.ino());
    let theirs = ns_of(&pid.to_string())?;
    let mut pids: Vec<u32> = fs_err::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| ns_of(&p.to_string()).is_ok_and(|ino| ino == theirs))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Relays the pseudo-terminal `master` to this process's stdout, and with `stdin` this
/// process's stdin to it (raw when it is a terminal; its end sent on as the terminal's
/// end-of-file character), until the command's side is closed.
fn relay(master: &OwnedFd, stdin: bool) {
    let input = std::io::stdin();
    let output = std::io::stdout();
    let raw = if stdin {
        sys::raw_terminal(input.as_fd())
    } else {
        None
    };
    let mut buf = [0u8; 8192];
    let mut reading = stdin;
    loop {
        let mut fds = vec![master.as_fd()];
        if reading {
            fds.push(input.as_fd());
        }
        let Ok(ready) = sys::poll_readable(&fds) else {
            break;
        };
        if ready[0] {
            match sys::read(master.as_fd(), &mut buf) {
                // EIO: the command and all it started closed the terminal.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sys::write_all(output.as_fd(), &buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        if reading && ready.get(1) == Some(&true) {
            match sys::read(input.as_fd(), &mut buf) {
                Ok(0) | Err(_) => {
                    reading = false;
                    let _ = sys::write_all(master.as_fd(), &[4]);
                }
                Ok(n) => {
                    let _ = sys::write_all(master.as_fd(), &buf[..n]);
                }
            }
        }
    }
    if let Some(before) = raw {
        sys::restore_terminal(input.as_fd(), &before);
    }
}
