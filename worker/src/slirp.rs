//! The rootless RUN network (`--network=default` when strata is in a user namespace of its
//! own, see `rootless.rs`): a network namespace of the step's own, with its own loopback and
//! an `eth0` (a TAP device, named as on the bridge) that `slirp4netns` serves from outside,
//! in the user's network namespace. Outbound TCP and UDP leave as the user's own sockets;
//! `10.0.2.3` forwards DNS.
//!
//! Why slirp4netns: the bridge of [`crate::network`] takes the host's root (a veth into the
//! host's namespace, iptables rules); a user can only have user-space networking. slirp4netns
//! and pasta both do it; slirp4netns has the two descriptors that make its lifetime easy to
//! tie to a RUN's (`--ready-fd`: configured; `--exit-fd`: end-of-file there stops it), and it
//! is packaged on every distribution rootless Podman runs on. `--disable-host-loopback`: as
//! on the bridge, the host's 127.0.0.1 stays out of reach (`10.0.2.2` is refused).
//!
//! One slirp4netns per namespace, started in the helper's pool like the bridge's veths. The
//! monitor of the RUN holds the write end of the exit pipe, so slirp4netns ends when the RUN
//! does; the helper reaps it.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};

/// The program.
const SLIRP4NETNS: &str = "slirp4netns";
/// The address slirp4netns gives the namespace (its default `10.0.2.100`).
pub(crate) const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 100);
/// The device slirp4netns opens in the namespace to make `eth0`.
const TUN: &str = "/dev/net/tun";

/// Whether this user may open [`TUN`] (udev makes it mode 0666; a machine without udev may
/// leave it 0600, root's only), so that the error says what to fix rather than how
/// slirp4netns exited.
fn check_tun() -> io::Result<()> {
    match fs_err::OpenOptions::new().read(true).write(true).open(TUN) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(io::Error::new(
            e.kind(),
            format!(
                "rootless RUN networking needs {TUN} readable and writable by every user \
                 (mode 0666, as udev makes it), or use --network none"
            ),
        )),
        Err(e) => Err(e),
    }
}

/// A slirp4netns serving one namespace: it runs as long as `exit` is open somewhere.
#[derive(Debug)]
pub(crate) struct Slirp {
    /// The write end of its exit pipe, only held.
    _exit: OwnedFd,
}

/// Starts slirp4netns on the namespace `ns` (held open by this process) and waits until it
/// has configured `eth0` in it; returns it and its process, for the caller to reap.
pub(crate) fn start(ns: BorrowedFd<'_>) -> io::Result<(Slirp, Child)> {
    check_tun()?;
    let (ready_r, ready_w) = sys::pipe()?;
    let (exit_r, exit_w) = sys::pipe()?;
    sys::set_inheritable(ready_w.as_fd())?;
    sys::set_inheritable(exit_r.as_fd())?;
    let ns_path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
    let spawned = Command::new(SLIRP4NETNS)
        .args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--netns-type=path",
        ])
        .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
        .args([ns_path.as_str(), "eth0"])
        .env_clear()
        .stdin(Stdio::null())
        // It reports every tap descriptor it passes on stdout and stderr: noise in a build's
        // output. Its failures are told by its exit status (and the check of TUN below).
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    drop((ready_w, exit_r));
    let mut child = spawned.map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                e.kind(),
                "rootless RUN networking needs slirp4netns, which is not installed \
                 (or use --network none)",
            )
        } else {
            io::Error::new(e.kind(), format!("starting slirp4netns: {e}"))
        }
    })?;
    let mut byte = [0u8; 1];
    match sys::read(ready_r.as_fd(), &mut byte) {
        Ok(1) => Ok((Slirp { _exit: exit_w }, child)),
        other => {
            drop(exit_w);
            let status = child.wait();
            Err(io::Error::other(format!(
                "slirp4netns ended before the network was up ({}{})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                other.err().map(|e| format!(", {e}")).unwrap_or_default()
            )))
        }
    }
}
