//! The sandbox helper: one `<exe> __sandbox` process per worker, started on the first RUN
//! (or as soon as a build knows that a RUN will run: [`crate::Worker::start_helper`], so that
//! its exec and start-up overlap the steps below that RUN) and kept, which forks a
//! [monitor](crate::sandbox::monitor) for every RUN.
//!
//! Why a long-lived helper rather than an exec per RUN: the worker is threaded, so it may
//! not run Rust code between `fork` and `exec`, and an exec of the (large) strata binary,
//! its dynamic linking and runtime start-up cost about a millisecond per RUN. The helper is
//! a fresh single-threaded exec, so it may fork freely; a fork of it is ready at once.
//!
//! Protocol: the helper's stdin is a `SOCK_SEQPACKET` socket. Each message is one byte of
//! flags with three descriptors attached: the run's control socket, and the write ends of
//! its stdout and stderr pipes; a fourth, when given, is the command's stdin (a container's
//! `-i` pipe, or its `-t` terminal). The helper forks a monitor that owns them and forgets them.
//! The spec and the final status travel on the control socket, between the worker and the
//! monitor only; end-of-file on it means "cancel". When the worker closes its end of the
//! helper's socket (the `SandboxHelper` is dropped, or the worker dies), the helper waits for its
//! monitors and exits.
//!
//! Network namespaces: creating one (and bringing up its loopback) costs about 0.6 ms, and
//! one with the RUN network's veth ([`crate::network`]) a few milliseconds more, so the
//! helper keeps some made in advance: one for `--network=none`, a small pool for the
//! default network (as BuildKit's network namespace pool). After handing one over it makes
//! the next once it has been idle for a millisecond, not at once: right after the fork the
//! new monitor needs the CPU more (on a busy two-core machine the helper would delay it).
//! A build announces each RUN it will run ([`crate::Worker::start_helper`], while the steps
//! below it run): the helper then makes that RUN's namespace ahead, and keeps namespaces
//! ready only for the RUNs announced and not served yet, so that the last RUN of a build
//! leaves no spare made for nothing; a sandbox asked for unannounced (a container) makes it
//! keep one of its kind ready from then on, as before.
//! Each namespace is used by one sandbox only and then destroyed: the isolation is the same
//! as making it on the spot. Rootless (in a user namespace, see `rootless.rs`) a default-network
//! namespace is served by a slirp4netns of its own ([`crate::slirp`]) instead of the bridge,
//! started when the namespace is made and ended with the RUN that used it.

use crate::network::{self, Bridge, Net};
use crate::sandbox::{self, Status};
use crate::slirp::{self, Slirp};
use crate::sys::{self, CloneFlags, Forked};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{ExitCode, Stdio};

/// Request flag: the sandbox gets a network namespace of its own (`--network=none`).
const NETWORK_NONE: u8 = 1;
/// Request flag: the sandbox gets a namespace on the RUN network (`--network=default`).
const NETWORK_DEFAULT: u8 = 2;
/// Request flag: the sandbox gets a namespace on the containers' bridge (`run --network
/// bridge`).
const NETWORK_CONTAINER: u8 = 4;
/// Message flag: no sandbox yet, but one with the network of the other flags will be asked
/// for (a message without descriptors): the helper makes its namespace while idle.
const ANNOUNCE: u8 = 8;
/// How many default-network namespaces the helper keeps ready: enough for the steps that
/// start together in a typical build, few enough to cost nothing when idle.
const POOL: usize = 2;

/// The network a sandbox asks the helper for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Netns {
    /// The helper's (the host's).
    Host,
    /// A namespace of its own with loopback only.
    Empty,
    /// A namespace of its own on the RUN network.
    Bridged,
    /// A namespace of its own on the containers' bridge (rootless: as [`Netns::Bridged`]).
    Container,
}

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

    /// Tells the helper that a sandbox with `netns` will be asked for, so that it makes its
    /// network namespace ahead, while idle (nothing to make for [`Netns::Host`]).
    pub(crate) fn announce(&self, netns: Netns) -> io::Result<()> {
        match netns {
            Netns::Host => Ok(()),
            _ => sys::send_with_fds(self.sock.as_fd(), &[ANNOUNCE | flags_of(netns)], &[]),
        }
    }

    /// Hands the helper a new sandbox's descriptors. An error of kind `BrokenPipe` (or
    /// `ConnectionReset`) means the helper is gone.
    pub(crate) fn start(
        &self,
        netns: Netns,
        ctl: BorrowedFd<'_>,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
        stdin: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        let flags = flags_of(netns);
        match stdin {
            Some(stdin) => {
                sys::send_with_fds(self.sock.as_fd(), &[flags], &[ctl, stdout, stderr, stdin])
            }
            None => sys::send_with_fds(self.sock.as_fd(), &[flags], &[ctl, stdout, stderr]),
        }
    }
}

/// The request flag of `netns`.
fn flags_of(netns: Netns) -> u8 {
    match netns {
        Netns::Host => 0,
        Netns::Empty => NETWORK_NONE,
        Netns::Bridged => NETWORK_DEFAULT,
        Netns::Container => NETWORK_CONTAINER,
    }
}

/// The network a request's flags ask for.
fn netns_of(flags: u8) -> Netns {
    if flags & NETWORK_CONTAINER != 0 {
        Netns::Container
    } else if flags & NETWORK_DEFAULT != 0 {
        Netns::Bridged
    } else if flags & NETWORK_NONE != 0 {
        Netns::Empty
    } else {
        Netns::Host
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

/// How many network namespaces the helper keeps ready: for the sandboxes announced and not
/// asked for yet, or, once a sandbox of a kind was asked for unannounced, always.
#[derive(Debug, Default)]
struct Readiness {
    /// A `--network=none` sandbox was asked for unannounced: a spare is always kept.
    always_empty: bool,
    /// `--network=none` sandboxes announced and not asked for yet.
    announced_empty: usize,
    /// A default-network sandbox was asked for unannounced: the pool is kept full.
    always_bridged: bool,
    /// Default-network sandboxes announced and not asked for yet.
    announced_bridged: usize,
}

impl Readiness {
    /// A sandbox with `netns` will be asked for.
    fn announced(&mut self, netns: Netns) {
        match netns {
            Netns::Empty => self.announced_empty += 1,
            Netns::Bridged => self.announced_bridged += 1,
            Netns::Host | Netns::Container => {}
        }
    }

    /// A sandbox with `netns` was asked for.
    fn served(&mut self, netns: Netns) {
        match netns {
            Netns::Empty if self.announced_empty > 0 => self.announced_empty -= 1,
            Netns::Empty => self.always_empty = true,
            Netns::Bridged if self.announced_bridged > 0 => self.announced_bridged -= 1,
            Netns::Bridged => self.always_bridged = true,
            Netns::Host | Netns::Container => {}
        }
    }

    /// Whether a spare `--network=none` namespace is wanted.
    fn spare(&self) -> bool {
        self.always_empty || self.announced_empty > 0
    }

    /// How many default-network namespaces the pool should hold.
    fn pool(&self) -> usize {
        if self.always_bridged {
            POOL
        } else {
            self.announced_bridged.min(POOL)
        }
    }

    /// Making a default-network namespace failed: the pool stops filling (a failure is
    /// tried again on demand, where it is reported).
    fn pool_failed(&mut self) {
        (self.always_bridged, self.announced_bridged) = (false, 0);
    }
}

/// What the helper keeps between requests.
struct Helper {
    /// The host's network namespace, to come back to after making one.
    host_netns: Option<OwnedFd>,
    /// A network namespace made in advance for the next `--network=none` sandbox.
    spare_netns: Option<OwnedFd>,
    /// How many namespaces of each kind to keep ready.
    ready: Readiness,
    /// Default-network namespaces made in advance (each with its slirp4netns, rootless).
    pool: Vec<(OwnedFd, Option<Slirp>)>,
    /// The slirp4netns processes started, to reap once they have exited.
    slirps: Vec<std::process::Child>,
    /// The RUN bridge, once made or found.
    bridge: Option<Bridge>,
    /// The containers' bridge, once made or found.
    container_bridge: Option<Bridge>,
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
        ready: Readiness::default(),
        pool: Vec::new(),
        slirps: Vec::new(),
        bridge: None,
        container_bridge: None,
        monitors: Vec::new(),
    };
    let stdin = io::stdin();
    let sock = stdin.as_fd();
    loop {
        let mut fds = vec![sock];
        fds.extend(helper.monitors.iter().map(|(_, fd)| fd.as_fd()));
        let spare_wanted = helper.ready.spare() && helper.spare_netns.is_none();
        let pool_wanted = helper.pool.len() < helper.ready.pool();
        let idle_work = spare_wanted || pool_wanted;
        let ready = match sys::poll_readable_for(&fds, idle_work.then_some(1)) {
            Ok(r) => r,
            Err(_) => break,
        };
        if idle_work && !ready.contains(&true) {
            // A failure is tried again on demand, where it is reported; until then the
            // pool stops filling (so a broken host does not cost a try every millisecond).
            if spare_wanted {
                helper.spare_netns = helper.new_netns(None).ok().map(|(ns, _, _)| ns);
            } else {
                match helper.new_netns(Some(Net::Runs)) {
                    Ok((ns, slirp, _)) => helper.pool.push((ns, slirp)),
                    Err(_) => helper.ready.pool_failed(),
                }
            }
            continue;
        }
        helper.reap(&ready[1..]);
        helper
            .slirps
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
        if !ready[0] {
            continue;
        }
        let mut flags = [0u8; 1];
        match sys::recv_with_fds(sock, &mut flags) {
            Ok((1, fds)) if fds.len() == 3 || fds.len() == 4 => {
                let mut fds = fds.into_iter();
                let (ctl, out, err) = (
                    fds.next().expect("three descriptors"),
                    fds.next().expect("three descriptors"),
                    fds.next().expect("three descriptors"),
                );
                let stdin = fds.next();
                helper.fork_monitor(netns_of(flags[0]), ctl, out, err, stdin);
            }
            Ok((1, fds)) if fds.is_empty() && flags[0] & ANNOUNCE != 0 => {
                helper.ready.announced(netns_of(flags[0]))
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

    fn fork_monitor(
        &mut self,
        wanted: Netns,
        ctl: OwnedFd,
        out: OwnedFd,
        err: OwnedFd,
        stdin: Option<OwnedFd>,
    ) {
        let made = match wanted {
            Netns::Host => Ok((None, None, None)),
            Netns::Empty => match self.spare_netns.take() {
                Some(ns) => Ok((Some(ns), None, None)),
                None => self
                    .new_netns(None)
                    .map(|(ns, _, _)| (Some(ns), None, None)),
            },
            Netns::Bridged => self
                .pool
                .pop()
                .map(|(ns, slirp)| (ns, slirp, None))
                .map_or_else(|| self.new_netns(Some(Net::Runs)), Ok)
                .map(|(ns, slirp, _)| (Some(ns), slirp, None)),
            // Not pooled: a container starts far less often than a RUN.
            Netns::Container => self
                .new_netns(Some(Net::Containers))
                .map(|(ns, slirp, addr)| (Some(ns), slirp, addr)),
        };
        let (netns, slirp, address) = match made {
            Ok(ns) => ns,
            Err(e) => {
                let what = match wanted {
                    Netns::Bridged => "setting up the RUN network",
                    Netns::Container => "setting up the container's bridge network",
                    _ => "creating the network namespace",
                };
                let status = Status::SetupFailed(format!("{what}: {e}"));
                let _ = sys::write_all(ctl.as_fd(), &status.to_line());
                return;
            }
        };
        match sys::fork() {
            Ok(Forked::Child) => {
                // Keep nothing of the helper's: its socket (stdin), the other monitors'
                // descriptors, the namespaces it holds.
                drop(std::mem::take(&mut self.monitors));
                drop(self.spare_netns.take());
                drop(std::mem::take(&mut self.pool));
                drop(std::mem::take(&mut self.slirps));
                drop(self.host_netns.take());
                // Kept open until this monitor exits: then its slirp4netns stops.
                let _slirp = slirp;
                let set_up = match &stdin {
                    Some(fd) => sys::dup_onto(fd.as_fd(), 0),
                    None => sys::std_to_dev_null(&[0]),
                }
                .and_then(|()| sys::dup_onto(out.as_fd(), 1))
                .and_then(|()| sys::dup_onto(err.as_fd(), 2));
                drop((out, err, stdin));
                if let Err(e) = set_up {
                    let status = Status::SetupFailed(format!("setting up the sandbox output: {e}"));
                    let _ = sys::write_all(ctl.as_fd(), &status.to_line());
                    std::process::exit(1);
                }
                // A panic must never unwind back into the helper's loop in this process.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    sandbox::monitor(ctl, netns, address)
                }));
                std::process::exit(101)
            }
            Ok(Forked::Parent(pid)) => {
                drop(slirp);
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
        self.ready.served(wanted);
    }

    /// A new network namespace with loopback up, and on bridge `bridged` when given: a veth
    /// on it, or rootless a slirp4netns of its own (returned with it); with the namespace's
    /// address on it. The helper enters it to make it and comes back; if it cannot come
    /// back it must not serve another run, and exits.
    fn new_netns(
        &mut self,
        bridged: Option<Net>,
    ) -> io::Result<(OwnedFd, Option<Slirp>, Option<Ipv4Addr>)> {
        if strata_store::confined::in_user_namespace() {
            let ns = netns_in_child()?;
            if bridged.is_none() {
                return Ok((ns, None, None));
            }
            let (slirp, child) = slirp::start(ns.as_fd())?;
            self.slirps.push(child);
            return Ok((ns, Some(slirp), Some(slirp::ADDRESS)));
        }
        let host = self
            .host_netns
            .as_ref()
            .ok_or_else(|| io::Error::other("the host network namespace is not open"))?;
        let slot = match bridged {
            None => None,
            Some(Net::Runs) => Some(&mut self.bridge),
            Some(Net::Containers) => Some(&mut self.container_bridge),
        };
        let bridge = match (bridged, slot) {
            (Some(kind), Some(slot)) => match *slot {
                Some(b) => Some(b),
                None => {
                    let b = network::bridge(kind)?;
                    *slot = Some(b);
                    Some(b)
                }
            },
            _ => None,
        };
        sys::unshare(CloneFlags::CLONE_NEWNET)?;
        let made = sys::own_netns().and_then(|ns| {
            sys::loopback_up()?;
            match bridge {
                Some(b) => b
                    .eth0_here(network::ns_id(ns.as_fd())?, host.as_fd())
                    .map(Some),
                None => Ok(None),
            }
            .map(|host_end| (ns, host_end))
        });
        if sys::join_netns(host.as_fd()).is_err() {
            std::process::exit(125);
        }
        let (ns, host_end) = made?;
        let mut address = None;
        if let (Some(b), Some((end, addr))) = (bridge, host_end) {
            b.attach(&end)?;
            address = Some(addr);
        }
        Ok((ns, None, address))
    }
}

/// A new network namespace with loopback up, made by a child of the helper that sends it
/// back and exits. Rootless, the helper could not come back from a namespace it entered: the
/// host's network namespace belongs to the host's user namespace, where `setns` into it
/// takes a capability strata does not have there.
fn netns_in_child() -> io::Result<OwnedFd> {
    let (mine, theirs) = sys::seqpacket_pair()?;
    match sys::fork()? {
        Forked::Child => {
            drop(mine);
            let made = sys::unshare(CloneFlags::CLONE_NEWNET)
                .and_then(|()| sys::loopback_up())
                .and_then(|()| sys::own_netns());
            let sent = match made {
                Ok(ns) => sys::send_with_fds(theirs.as_fd(), &[0], &[ns.as_fd()]),
                Err(e) => {
                    let code = e.raw_os_error().unwrap_or(libc::EIO);
                    sys::send_with_fds(theirs.as_fd(), &code.to_le_bytes(), &[])
                }
            };
            std::process::exit(i32::from(sent.is_err()))
        }
        Forked::Parent(pid) => {
            drop(theirs);
            let mut buf = [0u8; 4];
            let received = sys::recv_with_fds(mine.as_fd(), &mut buf);
            let _ = sys::wait_pid(pid);
            match received? {
                (1, fds) if fds.len() == 1 => Ok(fds.into_iter().next().expect("one descriptor")),
                (4, _) => Err(io::Error::from_raw_os_error(i32::from_le_bytes(buf))),
                _ => Err(io::Error::other(
                    "the process making the network namespace ended without it",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_kept_ready_for_announced_sandboxes_only() {
        let mut r = Readiness::default();
        assert_eq!(
            (r.spare(), r.pool()),
            (false, 0),
            "nothing announced: nothing made"
        );
        r.announced(Netns::Empty);
        r.announced(Netns::Bridged);
        assert_eq!((r.spare(), r.pool()), (true, 1));
        r.served(Netns::Empty);
        r.served(Netns::Bridged);
        // The last RUN of a build leaves no namespace made for nothing behind it.
        assert_eq!((r.spare(), r.pool()), (false, 0));
        for _ in 0..5 {
            r.announced(Netns::Bridged);
        }
        assert_eq!(r.pool(), POOL);
        r.pool_failed();
        assert_eq!(r.pool(), 0);
    }

    #[test]
    fn a_sandbox_asked_for_unannounced_keeps_its_kind_ready_from_then_on() {
        let mut r = Readiness::default();
        r.served(Netns::Empty);
        r.served(Netns::Bridged);
        r.served(Netns::Container);
        assert_eq!((r.spare(), r.pool()), (true, POOL));
        r.served(Netns::Empty);
        assert!(r.spare());
    }
}
