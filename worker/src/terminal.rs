//! Terminals for containers (`run -t`, `attach`): the pseudo-terminal a container's monitor
//! makes, its window size, and the caller's terminal in raw mode while it is attached. The
//! syscalls are `sys.rs`'s, the ones `strata exec -t` uses.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A new pseudo-terminal (master, slave), of `size` (rows, columns) when given.
pub fn open_pty(size: Option<(u16, u16)>) -> io::Result<(OwnedFd, OwnedFd)> {
    sys::open_pty_sized(size)
}

/// The window size (rows, columns) of the terminal on `fd`; `None` when it is no terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    sys::window_size(fd)
}

/// Sets the window size of a pseudo-terminal through its master.
pub fn set_window_size(master: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    sys::set_window_size(master, rows, cols)
}

/// Waits for the master of the terminal a sandbox made ([`crate::RunStdio::Tty`]) on our end
/// of its console socket.
pub fn receive_master(console: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 1];
    match sys::recv_with_fds(console, &mut buf)? {
        (_, fds) if fds.len() == 1 => Ok(fds.into_iter().next().expect("one descriptor")),
        (0, _) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the sandbox ended before making its terminal",
        )),
        _ => Err(io::Error::other("the sandbox sent no terminal")),
    }
}

/// A terminal in raw mode (no echo, no line editing, no signals from keys) until dropped,
/// when its settings are put back: on every way out of an attached session.
pub struct RawTerminal {
    fd: OwnedFd,
    before: nix::sys::termios::Termios,
}

impl RawTerminal {
    /// Puts the terminal on `fd` in raw mode; `None` when `fd` is no terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawTerminal> {
        let fd = fd.try_clone_to_owned().ok()?;
        let before = sys::raw_terminal(fd.as_fd())?;
        Some(RawTerminal { fd, before })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        sys::restore_terminal(self.fd.as_fd(), &self.before);
    }
}

impl std::fmt::Debug for RawTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTerminal").finish_non_exhaustive()
    }
}
