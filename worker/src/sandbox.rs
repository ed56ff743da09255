//! One sandbox: the processes the [helper](crate::helper) forks for every RUN. The helper
//! is a single-threaded process exec'd once per worker, so no Rust code ever runs between
//! `fork` and `exec` in the threaded worker. Per RUN:
//!
//! * the **monitor** (forked by the helper) reads the [`SandboxSpec`] from its control
//!   socket, makes a PID namespace and forks the init into it, and waits. If the control
//!   socket reaches end-of-file (the worker cancelled the run, or died) it kills the init.
//!   Once the init has reported how the command ended it writes the [`Status`] to the control
//!   socket, then reaps the init and exits.
//! * the **init** (PID 1 of the new PID namespace, dies with the monitor) enters the other
//!   namespaces (mount, UTS, IPC, and the network namespace the helper made ready, or the
//!   host's), applies the [`SandboxPlan`], resolves the user, forks the command, reaps every
//!   orphan, and once the command has exited kills whatever it left behind and removes the
//!   mount-point stubs.
//! * the **command**: new session, stdin from /dev/null (or a container's `-i` pipe, or its
//!   `-t` terminal as stdin, stdout, stderr and controlling terminal), capabilities and user
//!   dropped, descriptors closed, exec.
//!
//! The mount, UTS, IPC and network namespaces have the init (and what it forks) as their
//! only members: they are torn down, the root overlay included, when the init exits. The
//! init reports only once it has killed and reaped every other process of the sandbox and
//! removed the stubs, so when the worker has the status nothing writes the new layer any
//! more; the init's exit (the namespaces' teardown, whose unmounts wait for RCU grace
//! periods) runs after the report, beside the layer's diff, and the monitor exits once it is
//! over. Until then the ending overlay still holds the upper directory: the worker's mounts
//! of layers wait for it (`teardown.rs`).

use crate::plan::SandboxPlan;
use crate::spec::{ProcessSpec, SandboxSpec, SpecStdio};
use crate::sys::{self, CloneFlags, Forked, WaitStatus};
use crate::user;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata_graph::NetworkMode;
use strata_store::confined::{self, ConfinedRoot};

/// How a sandbox ended, as the monitor reports it to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// The command exited with `code`; the sandbox's setup (from the spec read to the
    /// command's fork: namespaces, mounts, `pivot_root`) took `setup_us` microseconds.
    Exited {
        /// The exit code.
        code: i32,
        /// The setup's time, for the build's event log.
        setup_us: u64,
    },
    /// The command was killed by this signal.
    Signaled(i32),
    /// The sandbox could not be set up.
    SetupFailed(String),
    /// The command could not be started (unknown user, executable not found, ...).
    StartFailed(String),
    /// The worker asked for it to stop.
    Cancelled,
    /// Not an end: the command started with this host pid (sent before the status).
    Started(u32),
}

impl Status {
    /// The status as the one line the worker reads.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"null".to_vec());
        line.push(b'\n');
        line
    }
}

/// The default PATH when the image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The monitor, in a process just forked by the helper: `ctl` is its control socket, the
/// standard descriptors are already the command's (stdin /dev/null, stdout and stderr the
/// run's pipes), `netns` the network namespace to run in when the spec asks for none, and
/// `address` its address on a container's bridge (then `/etc/hosts` gives it the hostname,
/// as docker's does). Never returns.
pub(crate) fn monitor(ctl: OwnedFd, netns: Option<OwnedFd>, address: Option<Ipv4Addr>) -> ! {
    let (status, ending) = match read_spec(ctl.as_fd()) {
        Ok(Some(mut spec)) => {
            if let Some(addr) = address {
                add_host(&mut spec, addr);
            }
            run(&spec, ctl.as_fd(), netns)
        }
        // The worker is gone before sending anything: nothing to do.
        Ok(None) => std::process::exit(0),
        Err(msg) => (Status::SetupFailed(msg), None),
    };
    let _ = sys::write_all(ctl.as_fd(), &status.to_line());
    // The init has reported: nothing of the sandbox runs but the init's own exit, which tears
    // down its namespaces (the root overlay's unmount waits for RCU grace periods). The worker
    // goes on with the layer meanwhile and learns that the sandbox is gone when this process
    // exits and `ctl` closes (see `teardown.rs`).
    if let Some(init) = ending {
        let _ = sys::wait_pid(init);
    }
    std::process::exit(0)
}

/// docker's line for a container's own address in its `/etc/hosts`: the address, then the
/// hostname.
fn add_host(spec: &mut SandboxSpec, addr: Ipv4Addr) {
    if let Some((_, hosts)) = spec.etc_files.iter_mut().find(|(t, _)| t == "/etc/hosts") {
        hosts.extend_from_slice(format!("{addr}\t{}\n", spec.hostname).as_bytes());
    }
}

/// Reads the spec line; `None` when the control socket closed first.
fn read_spec(ctl: BorrowedFd<'_>) -> Result<Option<SandboxSpec>, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = sys::read(ctl, &mut buf).map_err(|e| format!("reading the sandbox spec: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        line.extend_from_slice(&buf[..n]);
        if line.last() == Some(&b'\n') {
            break;
        }
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("parsing the sandbox spec: {e}"))
}

/// Runs the sandbox; returns its status and, when the init reported before it was reaped,
/// the init, to reap once the status is sent.
fn run(
    spec: &SandboxSpec,
    ctl: BorrowedFd<'_>,
    netns: Option<OwnedFd>,
) -> (Status, Option<nix::unistd::Pid>) {
    let began = Instant::now();
    let (status_r, status_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return (Status::SetupFailed(format!("creating a pipe: {e}")), None),
    };
    if let Err(e) = sys::unshare(CloneFlags::CLONE_NEWPID) {
        return (
            Status::SetupFailed(format!("creating the PID namespace: {e}")),
            None,
        );
    }
    let init = match sys::fork() {
        Err(e) => {
            return (
                Status::SetupFailed(format!("starting the sandbox init: {e}")),
                None,
            );
        }
        Ok(Forked::Child) => {
            drop(status_r);
            // getppid() is 0 here (the parent is outside the new PID namespace), so the
            // usual re-check is impossible; the monitor also kills the init itself.
            if sys::set_parent_death_kill().is_err() {
                std::process::exit(1);
            }
            init(spec, status_w, netns, began)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    drop(status_w);
    drop(netns);
    // The command's output reaches the worker through the init's copies only, so that the
    // worker sees end-of-file as soon as the command and the init are gone (its terminal
    // hangs up likewise).
    let _ = sys::std_to_dev_null(&[0, 1, 2]);
    let started = || {
        // The command is the init's only child: its pid here (outside the PID namespace)
        // is what `stop` and `kill` signal.
        let pid = sys::only_child(init).unwrap_or(init.as_raw() as u32);
        let _ = sys::write_all(ctl, &Status::Started(pid).to_line());
    };
    match listen(ctl, status_r.as_fd(), started) {
        Heard::Report(report) => (status_of(&report, None), Some(init)),
        // Without last words the init is reaped first: how it ended is then the message.
        Heard::End(report) => {
            let waited = sys::wait_pid(init);
            (status_of(&report, Some(waited)), None)
        }
        Heard::Hangup => {
            // The worker hung up: kill the init, which takes the namespace with it.
            let _ = sys::kill(init);
            let _ = sys::wait_pid(init);
            (Status::Cancelled, None)
        }
    }
}

/// What the monitor hears from the init's status pipe ([`listen`]).
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// The init's last words: one line (`exit`, `signal`, `setup` or `start`), written once
    /// nothing else of the sandbox runs.
    Report(Vec<u8>),
    /// End of file without them (what came before, if anything).
    End(Vec<u8>),
    /// The worker closed the control socket first.
    Hangup,
}

/// Reads the status pipe until the init's last words, calling `started` on its `started`
/// line. The last words are the status whether or not the init has finished exiting: end of
/// file on the pipe comes only with its exit, after the namespaces' teardown has begun, and
/// nothing is read after them.
fn listen(ctl: BorrowedFd<'_>, status: BorrowedFd<'_>, mut started: impl FnMut()) -> Heard {
    let mut report = Vec::new();
    loop {
        if report.contains(&b'\n') {
            return Heard::Report(report);
        }
        let ready = match sys::poll_readable(&[ctl, status]) {
            Ok(r) => r,
            Err(_) => vec![true, false],
        };
        if ready[1] {
            let mut buf = [0u8; 4096];
            match sys::read(status, &mut buf) {
                Ok(0) | Err(_) => return Heard::End(report),
                Ok(n) => report.extend_from_slice(&buf[..n]),
            }
            if let Some(rest) = report.strip_prefix(b"started\n".as_slice()) {
                report = rest.to_vec();
                started();
            }
        } else if ready[0] {
            let mut buf = [0u8; 64];
            if matches!(sys::read(ctl, &mut buf), Ok(0) | Err(_)) {
                return Heard::Hangup;
            }
        }
    }
}

/// The status the init's report (after any `started` line) says, or, when it said nothing,
/// an error naming how the init ended (`waited`).
fn status_of(report: &[u8], waited: Option<std::io::Result<WaitStatus>>) -> Status {
    let report = String::from_utf8_lossy(report);
    let first = report.lines().next().unwrap_or("");
    // `exit` and `signal` carry the setup's microseconds after the number.
    let number = |s: &str| s.split('\t').next().and_then(|n| n.parse().ok());
    match first.split_once('\t') {
        Some(("setup", msg)) => Status::SetupFailed(msg.to_owned()),
        Some(("start", msg)) => Status::StartFailed(msg.to_owned()),
        Some(("exit", rest)) => Status::Exited {
            code: number(rest).unwrap_or(255),
            setup_us: rest
                .split('\t')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        },
        Some(("signal", rest)) => Status::Signaled(number(rest).unwrap_or(9)),
        _ => Status::SetupFailed(match waited {
            Some(waited) => format!("the sandbox init ended without a report ({waited:?})"),
            None => format!("the sandbox init's report is not understood: {first:?}"),
        }),
    }
}

fn report(w: BorrowedFd<'_>, kind: &str, msg: &str) {
    let msg = msg.replace('\n', " ");
    let _ = sys::write_all(w, format!("{kind}\t{msg}\n").as_bytes());
}

/// PID 1 of the sandbox. Never returns. `began` is when the monitor got the spec.
fn init(spec: &SandboxSpec, status: OwnedFd, netns: Option<OwnedFd>, began: Instant) -> ! {
    let w = status.as_fd();
    // Not dumpable: a command running as root in the sandbox must not open the init's
    // descriptors through /proc/1/fd (the status pipe, the namespaces it holds). The
    // command itself is dumpable again after its exec.
    if let Err(e) = sys::set_not_dumpable() {
        report(w, "setup", &format!("hiding the sandbox init: {e}"));
        std::process::exit(1);
    }
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if spec.network != NetworkMode::Host && netns.is_none() {
        // Not expected (the helper hands one over), but never fall back to the host's.
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let entered = sys::unshare(flags).and_then(|()| match &netns {
        Some(ns) => sys::join_netns(ns.as_fd()),
        None => Ok(()),
    });
    drop(netns);
    if let Err(e) = entered {
        report(w, "setup", &format!("creating namespaces: {e}"));
        std::process::exit(1);
    }
    let applied = match SandboxPlan::new(spec).apply() {
        Ok(a) => a,
        Err(e) => {
            report(w, "setup", &error_chain(&e));
            std::process::exit(1);
        }
    };
    let mut prepared = match prepare_process(&spec.process) {
        Ok(mut p) => {
            match spec.stdio {
                SpecStdio::Null => {}
                SpecStdio::Pipe => p.keep_stdin = true,
                SpecStdio::Tty => match console_pty(spec.tty_size) {
                    Ok(tty) => p.tty = Some(tty),
                    Err(e) => {
                        report(w, "setup", &format!("opening the terminal: {e}"));
                        std::process::exit(1);
                    }
                },
            }
            p
        }
        Err(msg) => {
            report(w, "start", &msg);
            std::process::exit(1);
        }
    };
    let setup_us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
    let child = match sys::fork() {
        Err(e) => {
            report(w, "setup", &format!("starting the command: {e}"));
            std::process::exit(1);
        }
        Ok(Forked::Child) => {
            let e = exec_command(&prepared);
            report(w, "start", &e);
            std::process::exit(127);
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    // The terminal is the command's: its master hangs up once the command's side is gone.
    prepared.tty = None;
    let _ = sys::write_all(w, b"started\n");
    let _ = sys::std_to_dev_null(&[0, 1, 2]);
    let mut outcome = None;
    while let Ok(Some(st)) = sys::wait_any() {
        match st {
            WaitStatus::Exited(pid, code) if pid == child => outcome = Some(("exit", code)),
            WaitStatus::Signaled(pid, sig, _) if pid == child => {
                outcome = Some(("signal", sig as i32))
            }
            _ => continue,
        }
        break;
    }
    sys::kill_all_in_namespace();
    while let Ok(Some(_)) = sys::wait_any() {}
    if applied.read_only_root {
        // The stubs are in the root: a failure leaves them, as a removal failure would.
        let _ = sys::set_root_readonly(false);
    }
    crate::stub::remove(&applied.targets, &applied.stubs);
    let (kind, n) = outcome.unwrap_or(("signal", 9));
    report(w, kind, &format!("{n}\t{setup_us}"));
    std::process::exit(0)
}

/// A new terminal in the sandbox's `/dev/pts` of `size`: its master is sent back on fd 0
/// (the console socket the worker handed over); returns its slave.
fn console_pty(size: Option<(u16, u16)>) -> std::io::Result<OwnedFd> {
    let (master, slave) = sys::open_pty_sized(size)?;
    sys::send_with_fds(std::io::stdin().as_fd(), b"m", &[master.as_fd()])?;
    Ok(slave)
}

/// An error with its causes, `outer: inner: innermost`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The command, ready to exec: everything resolved inside the sandbox before forking it.
pub(crate) struct Prepared {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: PathBuf,
    id: user::Identity,
    insecure: bool,
    no_new_privs: bool,
    /// The seccomp programs to install (none for `--security=insecure`).
    seccomp: &'static [seccompiler::BpfProgram],
    /// Keep the standard input (`strata exec -i`) rather than /dev/null.
    pub(crate) keep_stdin: bool,
    /// A terminal to make the command's controlling terminal and standard descriptors
    /// (`strata exec -t`).
    pub(crate) tty: Option<OwnedFd>,
}

/// Reads a small regular file of the image (passwd, group) without following it into a FIFO
/// or device; `None` when it is missing or not a regular file.
fn read_image_file(path: &str) -> Option<String> {
    let mut f = sys::open_read_nofollow(Path::new(path)).ok()?;
    let st = sys::fstat(f.as_fd()).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let mut buf = Vec::new();
    (&mut f).take(4 << 20).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

pub(crate) fn prepare_process(p: &ProcessSpec) -> Result<Prepared, String> {
    let passwd = read_image_file("/etc/passwd");
    let group = read_image_file("/etc/group");
    let id = user::resolve(
        &p.user,
        passwd.as_deref(),
        group.as_deref(),
        user::MAX_PROCESS_ID,
    )
    .map_err(|e| e.to_string())?;
    let mut env = p.env.clone();
    if env_value(&env, "PATH").is_none() {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if env_value(&env, "HOME").is_none() {
        env.push(format!("HOME={}", id.home));
    }
    let argv0 = p.args.first().ok_or("no command given")?;
    let cwd = if p.cwd.is_empty() {
        "/".to_owned()
    } else {
        p.cwd.clone()
    };
    let root = ConfinedRoot::open(Path::new("/")).map_err(|e| e.to_string())?;
    let comps = confined::clean(Path::new(&cwd));
    let opts = confined::DirOpts {
        mode: 0o755,
        owner: Some((id.uid, id.gid)),
    };
    root.mkdir_all(&comps, opts, &mut Vec::new())
        .map_err(|e| format!("creating the working directory {cwd}: {e}"))?;
    let path = lookup_executable(argv0, env_value(&env, "PATH").unwrap_or(DEFAULT_PATH), &cwd)?;
    Ok(Prepared {
        path: CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?,
        argv: p
            .args
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        env: env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?,
        cwd: PathBuf::from(cwd),
        id,
        seccomp: if p.insecure {
            &[]
        } else {
            crate::seccomp::programs().map_err(|e| format!("preparing the seccomp filter: {e}"))?
        },
        insecure: p.insecure,
        no_new_privs: p.no_new_privs,
        keep_stdin: false,
        tty: None,
    })
}

/// Finds `name` the way runc does: as given when it has a `/`, else in each PATH entry.
fn lookup_executable(name: &str, path: &str, cwd: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(cwd).join(dir).join(name);
        if let Ok(meta) = fs_err::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    ))
}

fn install_seccomp(programs: &[seccompiler::BpfProgram]) -> std::io::Result<()> {
    programs.iter().try_for_each(|p| sys::install_seccomp(p))
}

/// In the command's process: drop privileges and exec. Returns only an error message.
pub(crate) fn exec_command(p: &Prepared) -> String {
    let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    let result = (|| {
        step("setsid", sys::setsid())?;
        step("resetting signals", sys::reset_signals())?;
        if let Some(tty) = &p.tty {
            step("attaching the terminal", sys::attach_tty(tty.as_fd()))?;
        } else if !p.keep_stdin {
            step("opening /dev/null", sys::std_to_dev_null(&[0]))?;
        }
        // As runc: without no_new_privs, installing a filter takes CAP_SYS_ADMIN, so it goes
        // in before the capabilities are dropped (every call after it is one the profile
        // allows); with no_new_privs, as late as possible.
        if !p.no_new_privs {
            step("installing the seccomp filter", install_seccomp(p.seccomp))?;
        }
        if !p.insecure {
            step("limiting capabilities", sys::limit_bounding_caps())?;
        }
        step(
            "switching user",
            sys::set_identity(p.id.uid, p.id.gid, &p.id.groups),
        )?;
        if !p.insecure && p.id.uid == 0 {
            step("setting capabilities", sys::set_root_caps())?;
        }
        if p.no_new_privs {
            step("setting no_new_privs", sys::set_no_new_privs())?;
        }
        step(
            &format!("changing to {}", p.cwd.display()),
            sys::chdir(&p.cwd),
        )?;
        match sys::getcwd() {
            Ok(cwd) if cwd.is_absolute() => {}
            _ => {
                return Err(format!(
                    "working directory {} is outside the container",
                    p.cwd.display()
                ));
            }
        }
        step("closing descriptors", sys::cloexec_from(3))?;
        if p.no_new_privs {
            step("installing the seccomp filter", install_seccomp(p.seccomp))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        return e;
    }
    let e = sys::exec(&p.path, &p.argv, &p.env);
    format!("exec {}: {e}", p.path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// The init reports, then exits: the teardown of its namespaces (the root overlay's
    /// unmount and its RCU grace periods) comes between its last words and the end of file on
    /// the status pipe. The status is its last words, not the end of file: here the pipe stays
    /// open after them, as while the init is still exiting.
    #[test]
    fn the_status_is_the_inits_last_words_not_its_exit() {
        let (status_r, status_w) = sys::pipe().expect("a pipe");
        let (ctl, _worker) = UnixStream::pair().expect("a socket pair");
        sys::write_all(status_w.as_fd(), b"started\nexit\t3\t1234\n").expect("written");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut starts = 0;
            let heard = listen(ctl.as_fd(), status_r.as_fd(), || starts += 1);
            let _ = tx.send((heard, starts));
        });
        // A bound against hanging forever without the last words' rule, not a time limit on
        // the work: it returns at once.
        let (heard, starts) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the status is known while the status pipe is still open");
        drop(status_w);
        assert_eq!(heard, Heard::Report(b"exit\t3\t1234\n".to_vec()));
        assert_eq!(starts, 1);
        assert_eq!(
            status_of(b"exit\t3\t1234\n", None),
            Status::Exited {
                code: 3,
                setup_us: 1234
            }
        );
    }

    #[test]
    fn an_init_gone_without_last_words_is_an_end_and_a_hangup_a_cancel() {
        let (status_r, status_w) = sys::pipe().expect("a pipe");
        let (ctl, worker) = UnixStream::pair().expect("a socket pair");
        sys::write_all(status_w.as_fd(), b"started\n").expect("written");
        drop(status_w);
        assert_eq!(
            listen(ctl.as_fd(), status_r.as_fd(), || {}),
            Heard::End(Vec::new())
        );
        let (status_r, _status_w) = sys::pipe().expect("a pipe");
        drop(worker);
        assert_eq!(listen(ctl.as_fd(), status_r.as_fd(), || {}), Heard::Hangup);
    }
}
