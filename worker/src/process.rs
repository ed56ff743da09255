//! What a container's monitor and the commands acting on it need of the process model:
//! leaving the caller's session, and signals by name. Thin and safe wrappers over `sys.rs`,
//! so no crate above the worker calls libc.

use std::io;

/// Makes the calling process the leader of a new session with its standard input and error
/// on `/dev/null`: a terminal's hangup or the starting command's exit no longer reaches it.
/// Standard output stays, for the one line telling the starter how the start went (then
/// [`stdout_to_dev_null`]). For a freshly exec'd process, before any thread exists.
pub fn detach() -> io::Result<()> {
    crate::sys::setsid()?;
    crate::sys::std_to_dev_null(&[0, 2])
}

/// Points standard output at `/dev/null` (a monitor, once it has told its starter it runs).
pub fn stdout_to_dev_null() -> io::Result<()> {
    crate::sys::std_to_dev_null(&[1])
}

/// Sends signal `sig` (a number) to process `pid`; `false` when there is no such process.
pub fn signal(pid: u32, sig: i32) -> io::Result<bool> {
    delivered(crate::sys::send_signal(pid, sig))
}

/// Kills (SIGKILL) the process group of `pid`'s one child: for a `strata exec` process, the
/// command it runs in the container (which leads a session and group of its own) with what
/// that started. `false` when `pid` has no one child (or it is gone).
pub fn kill_child_group(pid: u32) -> io::Result<bool> {
    let Ok(pid) = i32::try_from(pid) else {
        return Ok(false);
    };
    match crate::sys::only_child(nix::unistd::Pid::from_raw(pid)) {
        Some(child) => delivered(crate::sys::send_group_signal(child, libc::SIGKILL)),
        None => Ok(false),
    }
}

fn delivered(sent: io::Result<()>) -> io::Result<bool> {
    match sent {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A signal's number from its name (`SIGTERM`, `TERM`) or number (`15`); `None` when it
/// names no signal.
pub fn signal_number(name: &str) -> Option<i32> {
    crate::sys::signal_number(name)
}

/// The signals a client attached to a container sends on to it (docker's `--sig-proxy`),
/// by number: every standard signal but SIGCHLD, SIGPIPE, SIGURG and SIGWINCH (the client's
/// own business, as docker's), SIGKILL and SIGSTOP (they cannot be caught) and the faults
/// the kernel raises for a bad instruction or address (SIGILL, SIGFPE, SIGSEGV, SIGBUS: a
/// handler for them would make a real fault loop).
pub fn proxied_signals() -> Vec<i32> {
    use nix::sys::signal::Signal;
    Signal::iterator()
        .filter(|s| {
            !matches!(
                s,
                Signal::SIGCHLD
                    | Signal::SIGPIPE
                    | Signal::SIGURG
                    | Signal::SIGWINCH
                    | Signal::SIGKILL
                    | Signal::SIGSTOP
                    | Signal::SIGILL
                    | Signal::SIGFPE
                    | Signal::SIGSEGV
                    | Signal::SIGBUS
            )
        })
        .map(|s| s as i32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_docker_takes_them() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("KILL"), Some(9));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("99"), None);
    }

    #[test]
    fn proxied_signals_are_dockers() {
        let proxied = proxied_signals();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGQUIT,
        ] {
            assert!(proxied.contains(&sig), "{sig} not proxied");
        }
        for sig in [
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGURG,
            libc::SIGWINCH,
            libc::SIGKILL,
        ] {
            assert!(!proxied.contains(&sig), "{sig} proxied");
        }
    }
}
