//! The sandbox helper: one `<exe> __sandbox` process per worker, started on the first RUN
//! and kept, which forks a [monitor](crate::sandbox::monitor) for every RUN.
//!
//! Why a long-lived helper rather than an exec per RUN: the worker is threaded, so it may
//! not run Rust code between `fork` and `exec`, and an exec of the (large) strata binary,
//! its dynamic linking and runtime start-up cost about a millisecond per RUN. The helper is
//! a fresh single-threaded exec, so it may fork freely; a fork of it is ready at once.
//!
//! Protocol: the helper's stdin is a `SOCK_SEQPACKET` socket. Each message is one byte of
//! flags with three descriptors attached: the run's control socket, and the write ends of
//! its stdout and stderr pipes. The helper forks a monitor that owns them and forgets them.
//! The spec and the final status travel on the control socket, between the worker and the
//! monitor only; end-of-file on it means "cancel". When the worker closes its end of the
//! helper's socket (the `SandboxHelper` is dropped, or the worker dies), the helper waits for its
//! monitors and exits.
//!
//! Network namespaces: creating one (and bringing up its loopback) costs about 0.6 ms, so
//! the helper keeps one made in advance. After handing one over it makes the next once it
//! has been idle for a millisecond, not at once: right after the fork the new monitor needs
//! the CPU more (on a busy two-core machine the helper would delay it). Each namespace is
//! used by one sandbox only and then destroyed: the isolation is the same as making it on
//! the spot.

use crate::sandbox::{self, Status};
use crate::sys::{self, CloneFlags, Forked};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{ExitCode, Stdio};

/// Request flag: the sandbox gets a network namespace of its own (`--network=none`).
const NETWORK_NONE: u8 = 1;

/// The worker's handle on its helper process.
#[derive(Debug)]
pub(crate) struct SandboxHelper {
    sock: OwnedFd,
    child: Option<std::process::Child>,
}

impl SandboxHelper {
    /// Starts `<exe> __sandbox`.
    pub(crate) fn spawn(exe: &Path) -> io::Result<SandboxHelper> {
        let (mine, theirs) = sys::seqpacket_pair()?;
        let child = std::process::Command::new(exe)
            .arg("__sandbox")
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(SandboxHelper {
            sock: mine,
            child: Some(child),
        })
    }

    /// Hands the helper a new sandbox's descriptors. An error of kind `BrokenPipe` (or
    /// `ConnectionReset`) means the helper is gone.
    pub(crate) fn start(
        &self,
        network_none: bool,
        ctl: BorrowedFd<'_>,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let flags = if network_none { NETWORK_NONE } else { 0 };
        sys::send_with_fds(self.sock.as_fd(), &[flags], &[ctl, stdout, stderr])
    }
}

impl SandboxHelper {
    /// The helper's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }
}

impl Drop for SandboxHelper {
    fn drop(&mut self) {
        // The helper exits once `sock` is closed (right after this) and its monitors are
        // done; reap it without blocking whoever drops the last handle.
        if let Some(mut child) = self.child.take() {
            let reaper = std::thread::Builder::new()
                .name("strata-helper-reaper".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            drop(reaper);
        }
    }
}

/// What the helper keeps between requests.
struct Helper {
    /// The host's network namespace, to come back to after making one.
    host_netns: Option<OwnedFd>,
    /// A network namespace made in advance for the next `--network=none` sandbox.
    spare_netns: Option<OwnedFd>,
    /// Whether any `--network=none` sandbox was asked for (then a spare is kept).
    wants_netns: bool,
    /// Live monitors and a descriptor that is readable once each has exited.
    monitors: Vec<(nix::unistd::Pid, OwnedFd)>,
}

/// Entry point of `<exe> __sandbox`, the worker's sandbox helper: call it first thing in
/// `main` when the first argument is `__sandbox`, before any thread or runtime exists.
pub fn sandbox_main() -> ExitCode {
    // Once, before any fork: every sandbox installs these programs. An error is reported by
    // each RUN that needs the filter.
    let _ = crate::seccomp::programs();
    let host_netns = match sys::own_netns() {
        Ok(fd) => fd,
        Err(_) => return ExitCode::from(125),
    };
    let mut helper = Helper {
        host_netns: Some(host_netns),
        spare_netns: None,
        wants_netns: false,
        monitors: Vec::new(),
    };
    let stdin = io::stdin();
    let sock = stdin.as_fd();
    loop {
        let mut fds = vec![sock];
        fds.extend(helper.monitors.iter().map(|(_, fd)| fd.as_fd()));
        let idle_work = helper.wants_netns && helper.spare_netns.is_none();
        let ready = match sys::poll_readable_for(&fds, idle_work.then_some(1)) {
            Ok(r) => r,
            Err(_) => break,
        };
        if idle_work && !ready.contains(&true) {
            // A failure is tried again on demand, where it is reported.
            helper.spare_netns = helper.new_netns().ok();
            continue;
        }
        helper.reap(&ready[1..]);
        if !ready[0] {
            continue;
        }
        let mut flags = [0u8; 1];
        match sys::recv_with_fds(sock, &mut flags) {
            Ok((1, fds)) if fds.len() == 3 => {
                let mut fds = fds.into_iter();
                let (ctl, out, err) = (
                    fds.next().expect("three descriptors"),
                    fds.next().expect("three descriptors"),
                    fds.next().expect("three descriptors"),
                );
                helper.fork_monitor(flags[0] & NETWORK_NONE != 0, ctl, out, err);
            }
            // A malformed request: its descriptors are closed, which the worker sees as a
            // sandbox that ended without a status.
            Ok((n, _)) if n > 0 => {}
            _ => break,
        }
    }
    // The worker is gone: let the monitors finish (they see their control sockets close).
    for (pid, _) in helper.monitors.drain(..) {
        let _ = sys::wait_pid(pid);
    }
    ExitCode::SUCCESS
}

impl Helper {
    /// Reaps the monitors whose exit descriptors are readable.
    fn reap(&mut self, ready: &[bool]) {
        let mut i = 0;
        self.monitors.retain(|(pid, _)| {
            let exited = ready.get(i).copied().unwrap_or(false);
            i += 1;
            !(exited && matches!(sys::try_wait_pid(*pid), Ok(Some(_))))
        });
    }

    fn fork_monitor(&mut self, network_none: bool, ctl: OwnedFd, out: OwnedFd, err: OwnedFd) {
        let netns = if network_none {
            match self.spare_netns.take().map_or_else(|| self.new_netns(), Ok) {
                Ok(ns) => Some(ns),
                Err(e) => {
                    let status =
                        Status::SetupFailed(format!("creating the network namespace: {e}"));
                    let _ = sys::write_all(ctl.as_fd(), &status.to_line());
                    return;
                }
            }
        } else {
            None
        };
        match sys::fork() {
            Ok(Forked::Child) => {
                // Keep nothing of the helper's: its socket (stdin), the other monitors'
                // descriptors, the namespaces it holds.
                drop(std::mem::take(&mut self.monitors));
                drop(self.spare_netns.take());
                drop(self.host_netns.take());
                let set_up = sys::std_to_dev_null(&[0])
                    .and_then(|()| sys::dup_onto(out.as_fd(), 1))
                    .and_then(|()| sys::dup_onto(err.as_fd(), 2));
                drop((out, err));
                if let Err(e) = set_up {
                    let status = Status::SetupFailed(format!("setting up the sandbox output: {e}"));
                    let _ = sys::write_all(ctl.as_fd(), &status.to_line());
                    std::process::exit(1);
                }
                // A panic must never unwind back into the helper's loop in this process.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    sandbox::monitor(ctl, netns)
                }));
                std::process::exit(101)
            }
            Ok(Forked::Parent(pid)) => {
                if let Ok(fd) = sys::pidfd_open(pid) {
                    self.monitors.push((pid, fd));
                } else {
                    // Cannot watch it: wait for it now rather than leave a zombie.
                    let _ = sys::wait_pid(pid);
                }
            }
            Err(e) => {
                let status = Status::SetupFailed(format!("starting the sandbox monitor: {e}"));
                let _ = sys::write_all(ctl.as_fd(), &status.to_line());
            }
        }
        self.wants_netns |= network_none;
    }

    /// A new network namespace with loopback up. The helper enters it to make it and
    /// comes back; if it cannot come back it must not serve another run, and exits.
    fn new_netns(&self) -> io::Result<OwnedFd> {
        let host = self
            .host_netns
            .as_ref()
            .ok_or_else(|| io::Error::other("the host network namespace is not open"))?;
        sys::unshare(CloneFlags::CLONE_NEWNET)?;
        let made = sys::own_netns().and_then(|ns| sys::loopback_up().map(|()| ns));
        if sys::join_netns(host.as_fd()).is_err() {
            std::process::exit(125);
        }
        made
    }
}
