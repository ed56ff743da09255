//! Every system call the worker makes, in one place: thin wrappers over `nix`, `libc` and
//! `caps` that return `io::Result`, so the rest of the crate is safe code that can be read
//! without a man page open. The only module allowed `unsafe`; each block says why it holds.
//!
//! The new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`, `open_tree`,
//! `mount_setattr`) has no wrapper in nix, so it is called through `libc::syscall`. It is
//! what makes deep layer chains work (`lowerdir+` takes one layer per call, no page-sized
//! option string) and lets a mount be attached to a target opened inside the sandbox root.
#![expect(
    unsafe_code,
    reason = "the one module of the workspace that calls the kernel directly"
)]

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) use nix::sched::CloneFlags;
pub(crate) use nix::sys::wait::WaitStatus;

fn cstr(path: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(path.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("file descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------------------------
// processes

/// The result of [`fork`].
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Forks the calling process. Only called from single-threaded processes: the `__sandbox`
/// helper (a fresh exec that never starts threads) and `main` before anything else (see
/// `rootless.rs`), so the child may run any code, allocate and take locks.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the calling process has exactly one thread (see above), so no lock can be
    // held by a thread that does not exist in the child.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

pub(crate) fn unshare(flags: CloneFlags) -> io::Result<()> {
    Ok(nix::sched::unshare(flags)?)
}

/// Joins the network namespace `ns`.
pub(crate) fn join_netns(ns: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)?)
}

/// Joins the namespace `ns` (any kind: the kernel reads it from the descriptor). A user
/// namespace only in a single-threaded process.
pub(crate) fn join_ns(ns: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::sched::setns(ns, CloneFlags::empty())?)
}

/// The network namespace the calling thread is in, as a descriptor.
pub(crate) fn own_netns() -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        "/proc/thread-self/ns/net",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// A descriptor that becomes readable when the child `pid` exits.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })
}

/// Reaps the child `pid` if it has exited.
pub(crate) fn try_wait_pid(pid: Pid) -> io::Result<Option<WaitStatus>> {
    use nix::sys::wait::WaitPidFlag;
    match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => Ok(None),
        Ok(st) => Ok(Some(st)),
        Err(e) => Err(e.into()),
    }
}

/// A connected pair of close-on-exec `SOCK_SEQPACKET` Unix sockets (message boundaries
/// kept, descriptors passed with `SCM_RIGHTS`).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends one message with `fds` attached. Never raises SIGPIPE: a closed peer is EPIPE.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsg: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one message of at most `buf.len()` bytes and up to four descriptors
/// (close-on-exec). `Ok((0, _))` when the peer has closed.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed these descriptors in this process for
                // this message; nothing else owns them.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other("too many descriptors in a helper request"));
    }
    Ok((msg.bytes, fds))
}

/// Makes `fd` also the descriptor number `target` (inherited across exec).
pub(crate) fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only changes what `target` refers to; the callers use it for the standard
    // descriptors 0-2, which no Rust object owns.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }.into())?;
    Ok(())
}

/// A new pseudo-terminal (master, slave), its window the size of the terminal on `like`
/// when that is one.
pub(crate) fn open_pty(like: BorrowedFd<'_>) -> io::Result<(OwnedFd, OwnedFd)> {
    open_pty_sized(window_size(like))
}

/// A new pseudo-terminal (master, slave) of `size` (rows, columns) when given.
pub(crate) fn open_pty_sized(size: Option<(u16, u16)>) -> io::Result<(OwnedFd, OwnedFd)> {
    let size = size.map(|(rows, cols)| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pty = nix::pty::openpty(size.as_ref(), None)?;
    Ok((pty.master, pty.slave))
}

/// The window size (rows, columns) of the terminal on `fd`; `None` when it is none.
pub(crate) fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd)
        .ok()
        .map(|w| (w.ws_row, w.ws_col))
}

/// Sets the window size of the terminal on `fd` (a master: its processes get SIGWINCH).
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(fd, size)?)
}

/// Makes the terminal `tty` the controlling terminal of this process (a session leader) and
/// its standard input, output and error.
pub(crate) fn attach_tty(tty: BorrowedFd<'_>) -> io::Result<()> {
    rustix::process::ioctl_tiocsctty(tty)?;
    for fd in [0, 1, 2] {
        dup_onto(tty, fd)?;
    }
    Ok(())
}

/// Puts the terminal `fd` in raw mode (no echo, no line editing, no signals from keys);
/// returns its settings before, for [`restore_terminal`]. `None` when `fd` is no terminal.
pub(crate) fn raw_terminal(fd: BorrowedFd<'_>) -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let before = tcgetattr(fd).ok()?;
    let mut raw = before.clone();
    cfmakeraw(&mut raw);
    tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
    Some(before)
}

/// Puts back the settings [`raw_terminal`] returned.
pub(crate) fn restore_terminal(fd: BorrowedFd<'_>, before: &nix::sys::termios::Termios) {
    let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, before);
}

/// Points the standard descriptors `which` (0, 1, 2) at `/dev/null` (as seen from the
/// current root).
pub(crate) fn std_to_dev_null(which: &[RawFd]) -> io::Result<()> {
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
    for fd in which {
        dup_onto(null.as_fd(), *fd)?;
    }
    Ok(())
}

pub(crate) fn set_parent_death_kill() -> io::Result<()> {
    Ok(nix::sys::prctl::set_pdeathsig(
        nix::sys::signal::Signal::SIGKILL,
    )?)
}

pub(crate) fn set_not_dumpable() -> io::Result<()> {
    Ok(nix::sys::prctl::set_dumpable(false)?)
}

pub(crate) fn setsid() -> io::Result<()> {
    nix::unistd::setsid()?;
    Ok(())
}

/// The one child of `pid` (its pid as seen here), from `/proc/<pid>/task/<pid>/children`;
/// `None` when it has none, several, or the kernel does not list them.
pub(crate) fn only_child(pid: Pid) -> Option<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = fs_err::read_to_string(path).ok()?;
    let mut pids = text.split_whitespace();
    match (pids.next(), pids.next()) {
        (Some(p), None) => p.parse().ok(),
        _ => None,
    }
}

/// Sends signal number `sig` to process `pid` (a positive pid: never a group or all).
pub(crate) fn send_signal(pid: u32, sig: i32) -> io::Result<()> {
    let sig = nix::sys::signal::Signal::try_from(sig)?;
    Ok(nix::sys::signal::kill(positive_pid(pid)?, sig)?)
}

/// Sends signal number `sig` to every process of group `pgid` (a positive id: never the
/// caller's own group or all).
pub(crate) fn send_group_signal(pgid: u32, sig: i32) -> io::Result<()> {
    let sig = nix::sys::signal::Signal::try_from(sig)?;
    Ok(nix::sys::signal::killpg(positive_pid(pgid)?, sig)?)
}

/// `id` as a pid that names one process or group (0 and ids past `i32::MAX` name none).
fn positive_pid(id: u32) -> io::Result<Pid> {
    i32::try_from(id)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// A signal's number from its name (`SIGTERM`, `TERM`, `term`) or number (`15`).
pub(crate) fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

pub(crate) fn kill(pid: Pid) -> io::Result<()> {
    Ok(nix::sys::signal::kill(
        pid,
        nix::sys::signal::Signal::SIGKILL,
    )?)
}

/// From a PID namespace's init: kills every other process of the namespace.
pub(crate) fn kill_all_in_namespace() {
    // ESRCH (nothing left) is the expected answer most of the time.
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), nix::sys::signal::Signal::SIGKILL);
}

/// Waits for any child; `None` when there is none left.
pub(crate) fn wait_any() -> io::Result<Option<WaitStatus>> {
    match nix::sys::wait::waitpid(Pid::from_raw(-1), None) {
        Ok(status) => Ok(Some(status)),
        Err(Errno::ECHILD) => Ok(None),
        Err(Errno::EINTR) => wait_any(),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn wait_pid(pid: Pid) -> io::Result<WaitStatus> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Blocks until one of `fds` is readable or hung up; returns which are.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    poll_readable_for(fds, None)
}

/// [`poll_readable`], giving up after `timeout_ms` (all `false` then).
pub(crate) fn poll_readable_for(
    fds: &[BorrowedFd<'_>],
    timeout_ms: Option<u16>,
) -> io::Result<Vec<bool>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = timeout_ms.map_or(PollTimeout::NONE, PollTimeout::from);
    loop {
        match nix::poll::poll(&mut polls, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Clears `FD_CLOEXEC` on `fd`, so that a program spawned next inherits it (the helper is
/// single-threaded, so no other exec can inherit it in between).
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(())
}

pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return Ok(other?),
        }
    }
}

pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) => buf = &buf[n..],
        }
    }
    Ok(())
}

pub(crate) fn sethostname(name: &str) -> io::Result<()> {
    Ok(nix::unistd::sethostname(name)?)
}

/// Brings up `lo` in the current network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() with constant arguments returns a new descriptor or -1.
    let sock = owned(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }.into(),
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into `req`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }.into())?;
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which is fully initialised.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }.into())?;
    Ok(())
}

/// Restores what a fresh process expects: default SIGPIPE (Rust ignores it) and an empty
/// signal mask.
pub(crate) fn reset_signals() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: installing SIG_DFL runs no Rust code in signal context.
        unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Marks every descriptor from `first` on close-on-exec, so nothing the helper inherited or
/// opened reaches the command (CVE-2024-21626).
pub(crate) fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    let ret =
        unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    check(ret.into())?;
    Ok(())
}

pub(crate) fn set_no_new_privs() -> io::Result<()> {
    Ok(nix::sys::prctl::set_no_new_privs()?)
}

/// Installs a seccomp filter on the calling thread, without setting no_new_privs: the caller
/// must hold `CAP_SYS_ADMIN` unless no_new_privs is already set (the order runc uses).
pub(crate) fn install_seccomp(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::other("the seccomp program is too long"))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program; `sock_filter` is seccompiler's repr(C) copy of
        // the kernel's struct, field for field the same as libc's.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points to `len` valid instructions that outlive the call; the kernel
    // copies the program before returning.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &raw const prog,
        )
    };
    check(ret)?;
    Ok(())
}

/// In a user namespace just made and mapped (`rootless.rs`): real, effective and saved ids
/// 0, and no supplementary group (those of the host are unmapped there). Dropping the
/// groups is skipped where the namespace does not allow `setgroups`.
pub(crate) fn become_namespace_root() -> io::Result<()> {
    match nix::unistd::setgroups(&[]) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let root = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(root.0, root.0, root.0)?;
    nix::unistd::setresuid(root.1, root.1, root.1)?;
    Ok(())
}

/// Switches to `uid`/`gid` with supplementary `groups`.
pub(crate) fn set_identity(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups)?;
    nix::unistd::setgid(Gid::from_raw(gid))?;
    nix::unistd::setuid(Uid::from_raw(uid))?;
    Ok(())
}

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: [caps::Capability; 14] = [
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_FSETID,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_MKNOD,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETFCAP,
    caps::Capability::CAP_SETPCAP,
    caps::Capability::CAP_NET_BIND_SERVICE,
    caps::Capability::CAP_SYS_CHROOT,
    caps::Capability::CAP_KILL,
    caps::Capability::CAP_AUDIT_WRITE,
];

/// The default set as a bit mask (bit n = capability n).
fn default_caps_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, c| m | (1u64 << c.index()))
}

/// Limits the bounding set to Docker's 14 capabilities (needs CAP_SETPCAP, so before
/// dropping to another user). One `PR_CAPBSET_DROP` per other capability the kernel
/// knows: EINVAL marks the end of the kernel's list. (The `caps` crate would first probe
/// every capability with `PR_CAPBSET_READ`: twice the system calls, on every RUN.)
pub(crate) fn limit_bounding_caps() -> io::Result<()> {
    let keep = default_caps_mask();
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// For a root process: effective and permitted = the 14, inheritable and ambient empty, in
/// one `capset` and one `prctl`.
pub(crate) fn set_root_caps() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(ret.into())?;
    let keep = default_caps_mask();
    let word = |shift: u32| CapData {
        effective: (keep >> shift) as u32,
        permitted: (keep >> shift) as u32,
        inheritable: 0,
    };
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3: two 32-bit words
        pid: 0,
    };
    let data = [word(0), word(32)];
    // SAFETY: capset reads the header and, for version 3, exactly two CapData words.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    })?;
    Ok(())
}

/// execve; returns only on failure.
pub(crate) fn exec(path: &CStr, argv: &[CString], env: &[CString]) -> io::Error {
    match nix::unistd::execve(path, argv, env) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

pub(crate) fn chdir(path: &Path) -> io::Result<()> {
    Ok(nix::unistd::chdir(path)?)
}

pub(crate) fn getcwd() -> io::Result<std::path::PathBuf> {
    Ok(nix::unistd::getcwd()?)
}

// ---------------------------------------------------------------------------------------------
// mounts

pub(crate) fn make_rprivate() -> io::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;

/// Mount attributes (`MOUNT_ATTR_*`).
#[derive(Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct MountAttrs {
    pub(crate) readonly: bool,
    pub(crate) nosuid: bool,
    pub(crate) nodev: bool,
    pub(crate) noexec: bool,
}

impl std::fmt::Debug for MountAttrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (self.readonly, "ro"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "[{}]", set.join(","))
    }
}

impl MountAttrs {
    pub(crate) const NONE: MountAttrs = MountAttrs {
        readonly: false,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    /// nosuid, nodev, noexec: what proc, sysfs and friends get.
    pub(crate) const SAFE: MountAttrs = MountAttrs {
        readonly: false,
        nosuid: true,
        nodev: true,
        noexec: true,
    };

    fn bits(self) -> u64 {
        (if self.readonly { 0x1 } else { 0 })
            | (if self.nosuid { 0x2 } else { 0 })
            | (if self.nodev { 0x4 } else { 0 })
            | (if self.noexec { 0x8 } else { 0 })
    }
}

/// A filesystem context being configured (fsopen); errors carry the kernel's log.
struct FsContext(OwnedFd);

impl FsContext {
    fn open(fstype: &str) -> io::Result<FsContext> {
        let name = cstr(fstype)?;
        // SAFETY: fsopen reads a NUL-terminated string and returns a new descriptor or -1.
        Ok(FsContext(owned(unsafe {
            libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC)
        })?))
    }

    fn error(&self, e: io::Error, what: &str) -> io::Error {
        let mut buf = [0u8; 1024];
        let mut log = String::new();
        while let Ok(n) = nix::unistd::read(self.0.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            log.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            log.push_str("; ");
        }
        if log.is_empty() {
            io::Error::new(e.kind(), format!("{what}: {e}"))
        } else {
            io::Error::new(
                e.kind(),
                format!("{what}: {e} ({})", log.trim_end_matches("; ")),
            )
        }
    }

    fn set(&self, key: &str, value: Option<&OsStr>) -> io::Result<()> {
        let k = cstr(key)?;
        let ret = match value {
            // SAFETY: fsconfig(SET_FLAG) reads the NUL-terminated key only.
            None => unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    self.0.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    k.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )
            },
            Some(v) => {
                let v = cstr(v)?;
                // SAFETY: fsconfig(SET_STRING) reads two NUL-terminated strings.
                unsafe {
                    libc::syscall(
                        libc::SYS_fsconfig,
                        self.0.as_raw_fd(),
                        FSCONFIG_SET_STRING,
                        k.as_ptr(),
                        v.as_ptr(),
                        0,
                    )
                }
            }
        };
        check(ret)
            .map(drop)
            .map_err(|e| self.error(e, &format!("setting {key}")))
    }

    fn mount(self, attrs: MountAttrs) -> io::Result<OwnedFd> {
        // SAFETY: fsconfig(CMD_CREATE) takes no pointers.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            )
        })
        .map_err(|e| self.error(e, "creating the filesystem"))?;
        // SAFETY: fsmount takes a descriptor and flags and returns a new descriptor or -1.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs.bits() as libc::c_uint,
            )
        })
        .map_err(|e| self.error(e, "mounting"))
    }
}

/// A detached mount of a new filesystem of `fstype` with `options` (`key` or `key=value`).
pub(crate) fn fs_mount(
    fstype: &str,
    options: &[(String, Option<String>)],
    attrs: MountAttrs,
) -> io::Result<OwnedFd> {
    let ctx = FsContext::open(fstype)?;
    for (k, v) in options {
        ctx.set(k, v.as_deref().map(OsStr::new))?;
    }
    ctx.mount(attrs)
}

/// A detached overlay mount: `lowers` top first; `upper` with its `work` dir, or read-only.
/// `volatile` (with an upper): the overlay never syncs the upper's filesystem, neither on
/// `fsync` nor when it is unmounted. A plain overlay's unmount is a `syncfs` of the whole
/// filesystem the upper is on, which waits for every dirty page anyone wrote there.
pub(crate) fn overlay_mount(
    lowers: &[&Path],
    upper: Option<(&Path, &Path)>,
    volatile: bool,
    attrs: MountAttrs,
) -> io::Result<OwnedFd> {
    let ctx = FsContext::open("overlay")?;
    // Plain, predictable upper dirs: whiteouts are 0/0 devices, opaque dirs carry
    // trusted.overlay.opaque, nothing is a metadata-only copy or a redirect. In a user
    // namespace (rootless), `userxattr`: overlay's xattrs are `user.overlay.*` (see
    // strata_store::confined::opaque_xattr), and `redirect_dir=nofollow`: `off` means
    // `follow` on kernels built with OVERLAY_FS_REDIRECT_ALWAYS_FOLLOW, which `userxattr`
    // refuses; either way no redirect is made.
    let rootless = strata_store::confined::in_user_namespace();
    if rootless {
        ctx.set("userxattr", None)?;
    }
    for (k, v) in [
        ("redirect_dir", if rootless { "nofollow" } else { "off" }),
        ("index", "off"),
        ("metacopy", "off"),
        ("xino", "off"),
    ] {
        ctx.set(k, Some(OsStr::new(v)))?;
    }
    for lower in lowers {
        ctx.set("lowerdir+", Some(lower.as_os_str()))?;
    }
    if let Some((upper, work)) = upper {
        ctx.set("upperdir", Some(upper.as_os_str()))?;
        ctx.set("workdir", Some(work.as_os_str()))?;
        if volatile {
            ctx.set("volatile", None)?;
        }
    }
    ctx.mount(attrs)
}

/// A detached copy of the mount tree at `path` (relative to `dir`, or `dir` itself when
/// `path` is empty).
pub(crate) fn clone_tree(dir: BorrowedFd<'_>, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= AT_EMPTY_PATH;
    }
    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), p.as_ptr(), flags) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets attributes on a (detached) mount, recursively.
pub(crate) fn set_mount_attrs(mnt: BorrowedFd<'_>, attrs: MountAttrs) -> io::Result<()> {
    mount_setattr(mnt, attrs.bits(), 0, true)
}

/// `mount_setattr` on the mount `mnt` is: sets `set`, clears `clear`, on the mounts below it
/// too when `recursive`.
fn mount_setattr(mnt: BorrowedFd<'_>, set: u64, clear: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive {
        AT_EMPTY_PATH | AT_RECURSIVE
    } else {
        AT_EMPTY_PATH
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (of the size given) and the empty path.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Makes the mount at `/` read-only (`true`) or writable again, not the mounts on it.
pub(crate) fn set_root_readonly(readonly: bool) -> io::Result<()> {
    let root = open_dir(Path::new("/"))?;
    let bits = MountAttrs {
        readonly: true,
        ..MountAttrs::NONE
    }
    .bits();
    if readonly {
        mount_setattr(root.as_fd(), bits, 0, false)
    } else {
        mount_setattr(root.as_fd(), 0, bits, false)
    }
}

/// Attaches a detached mount onto `target` (relative to the current root and cwd). The last
/// component of `target` is never followed if it is a symlink.
pub(crate) fn attach_mount(mnt: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let empty = c"";
    let t = cstr(target)?;
    // SAFETY: move_mount reads two NUL-terminated paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Classic bind mount of `path` onto itself then remounted read-only (for /proc/sys & co).
pub(crate) fn remount_readonly(path: &Path) -> io::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some(path), path, None::<&str>, flags, None::<&str>)?;
    Ok(())
}

pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    Ok(nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)?)
}

/// `pivot_root(".", ".")` inside `new_root`, then detaches the old root: no directory for it
/// is needed in the new root, and nothing of the host stays reachable.
pub(crate) fn pivot_root(new_root: &Path) -> io::Result<()> {
    nix::unistd::chdir(new_root)?;
    nix::unistd::pivot_root(".", ".")?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// files, always relative to a directory descriptor

/// `openat2`, retried when the kernel asks (EAGAIN: a rename or mount raced with a `..`
/// lookup), a bounded number of times: a lookup that can never succeed must not spin.
fn openat2_retrying(dir: BorrowedFd<'_>, path: &Path, how: OpenHow) -> io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dir, path, how) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            other => return Ok(other?),
        }
    }
}

/// Opens `path` below `root` only if no component is a symlink or another mount.
pub(crate) fn open_no_symlinks(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    openat2_retrying(root, path, how)
}

/// Whether something is at `path` below `dir`, looked up without following any symlink: a
/// symlink or a non-directory on the way counts as something (the caller cannot put a mount
/// point there either way), only ENOENT as nothing.
pub(crate) fn exists_beneath(dir: BorrowedFd<'_>, path: &Path) -> io::Result<bool> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2_retrying(dir, path, how) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a file for reading without following a final symlink and without blocking on a
/// FIFO; callers check the type with [`fstat`].
pub(crate) fn open_read_nofollow(path: &Path) -> io::Result<std::fs::File> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    Ok(nix::sys::stat::fstat(fd)?)
}

pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<libc::stat> {
    Ok(nix::sys::stat::fstatat(
        dir,
        name,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    Ok(nix::sys::stat::mkdirat(
        dir,
        name,
        Mode::from_bits_truncate(mode),
    )?)
}

pub(crate) fn symlink_at(target: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    Ok(nix::unistd::symlinkat(target, dir, name)?)
}

/// A hard link to `old` (never following it if it is a symlink).
pub(crate) fn link_at(
    old_dir: BorrowedFd<'_>,
    old: &Path,
    dir: BorrowedFd<'_>,
    name: &Path,
) -> io::Result<()> {
    Ok(nix::unistd::linkat(
        old_dir,
        old,
        dir,
        name,
        AtFlags::empty(),
    )?)
}

pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &Path, is_dir: bool) -> io::Result<()> {
    let flag = if is_dir {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    Ok(nix::unistd::unlinkat(dir, name, flag)?)
}

pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<std::ffi::OsString> {
    Ok(nix::fcntl::readlinkat(dir, name)?)
}

/// Kinds of node [`mknod_at`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Fifo,
    Char,
    Block,
}

pub(crate) fn mknod_at(
    dir: BorrowedFd<'_>,
    name: &Path,
    kind: NodeKind,
    mode: u32,
    major: u64,
    minor: u64,
) -> io::Result<()> {
    let kind = match kind {
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::Char => SFlag::S_IFCHR,
        NodeKind::Block => SFlag::S_IFBLK,
    };
    let dev = nix::sys::stat::makedev(major, minor);
    Ok(nix::sys::stat::mknodat(
        dir,
        name,
        kind,
        Mode::from_bits_truncate(mode),
        dev,
    )?)
}

pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    Ok(nix::unistd::fchown(
        fd,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )?)
}

/// Changes the owner of `name` in `dir` itself, never a symlink's target.
pub(crate) fn lchown_at(dir: BorrowedFd<'_>, name: &Path, uid: u32, gid: u32) -> io::Result<()> {
    Ok(nix::unistd::fchownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))?)
}

/// chmod of `name` in `dir`, refusing symlinks (fchmodat2 with AT_SYMLINK_NOFOLLOW).
pub(crate) fn lchmod_at(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: fchmodat2 reads a NUL-terminated path.
    check(unsafe {
        libc::syscall(
            452, /* fchmodat2 */
            dir.as_raw_fd(),
            p.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

fn timespec(secs: i64, nsec: i64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(secs, nsec)
}

pub(crate) fn futimens(fd: BorrowedFd<'_>, secs: i64, nsec: i64) -> io::Result<()> {
    let t = timespec(secs, nsec);
    Ok(nix::sys::stat::futimens(fd, &t, &t)?)
}

pub(crate) fn lutimes_at(dir: BorrowedFd<'_>, name: &Path, secs: i64, nsec: i64) -> io::Result<()> {
    let t = timespec(secs, nsec);
    Ok(nix::sys::stat::utimensat(
        dir,
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?)
}

pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let n = cstr(name)?;
    let (ptr, len) = (value.as_ptr().cast(), value.len());
    // SAFETY: fsetxattr reads a NUL-terminated name and `len` bytes at `ptr`.
    let ret = unsafe { libc::fsetxattr(fd.as_raw_fd(), n.as_ptr(), ptr, len, 0) };
    check(ret.into())?;
    Ok(())
}

/// Copies up to `len` bytes from `src`'s offset to `dst`'s in the kernel (`copy_file_range`:
/// a reflink or a server-side copy where the filesystem has one); returns how many, 0 at the
/// end of `src`. Fails with `EXDEV`, `EINVAL` or `EOPNOTSUPP` where the pair of filesystems
/// cannot: see [`send_file`].
pub(crate) fn copy_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    Ok(rustix::fs::copy_file_range(src, None, dst, None, len)?)
}

/// Copies up to `len` bytes from `src`'s offset to `dst`'s through the page cache
/// (`sendfile`), without a round trip through user space; returns how many, 0 at the end.
pub(crate) fn send_file(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    Ok(rustix::fs::sendfile(dst, src, None, len)?)
}

/// The effective user and group ids: who owns a file this process creates.
pub(crate) fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// The process's umask, read from `/proc/self/status` (the `umask` call cannot read it
/// without setting it, for every thread); `None` where procfs does not say.
pub(crate) fn current_umask() -> Option<u32> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Whether the file `fd` has the extended attribute `name` (`fgetxattr` of its size only);
/// false where it cannot be read.
pub(crate) fn has_xattr(fd: BorrowedFd<'_>, name: &CStr) -> bool {
    // SAFETY: fgetxattr reads a NUL-terminated name; with size 0 it writes nothing to the
    // (null) buffer and returns the value's size.
    let ret = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    ret >= 0
}

/// A file made from an owned descriptor.
pub(crate) fn file_from(fd: OwnedFd) -> std::fs::File {
    std::fs::File::from(fd)
}

/// `/proc/self/fd/N` for a descriptor, to name an fd where only a path is accepted (used
/// only for our own trusted temp directories).
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

// ---------------------------------------------------------------------------------------------
// the allocator

/// Sets glibc malloc's arena cap and a fixed mmap threshold (`mallopt`); false if glibc
/// refused either. Call before any thread exists.
#[cfg(target_env = "gnu")]
pub(crate) fn limit_malloc(arenas: i32, mmap_threshold: i32) -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // exist, and both parameters are documented as settable at any time.
    let arenas_set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } == 1;
    // SAFETY: as above.
    let mmap_set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold) } == 1;
    arenas_set && mmap_set
}

/// Other C libraries have neither knob.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn limit_malloc(_arenas: i32, _mmap_threshold: i32) -> bool {
    false
}

/// Gives the kernel back the free pages of malloc's heap (`malloc_trim(0)`): memory freed in
/// the middle of the heap stays resident otherwise.
#[cfg(target_env = "gnu")]
pub(crate) fn trim_malloc() {
    // SAFETY: malloc_trim only releases pages malloc holds free; it is thread-safe.
    unsafe { libc::malloc_trim(0) };
}

/// Other C libraries: nothing to do.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn trim_malloc() {}
