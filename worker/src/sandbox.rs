//! The `__sandbox` helper: the process the worker re-execs for every RUN, so that no Rust code
//! runs between `fork` and `exec` in the threaded parent. Three processes:
//!
//! * the **monitor** (the helper itself) reads the [`SandboxSpec`] from stdin, unshares the
//!   namespaces, forks the init and waits. If stdin reaches end-of-file (the worker was
//!   cancelled, or died) it kills the init. It writes the [`Status`] file and exits.
//! * the **init** (PID 1 of the new PID namespace, dies with the monitor) applies the
//!   [`SandboxPlan`], resolves the user, forks the command, reaps every orphan, and once the
//!   command has exited kills whatever it left behind and removes the mount-point stubs.
//! * the **command**: new session, stdin from /dev/null, capabilities and user dropped,
//!   descriptors closed, exec.
//!
//! Mounts live only in the sandbox's mount namespace: when its last process exits they are
//! gone, whatever happened to the worker.

use crate::plan::SandboxPlan;
use crate::spec::{ProcessSpec, SandboxSpec};
use crate::sys::{self, CloneFlags, Forked, WaitStatus};
use crate::user;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{BufRead, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How a sandbox ended, as the monitor reports it to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// The sandbox could not be set up.
    SetupFailed(String),
    /// The command could not be started (unknown user, executable not found, ...).
    StartFailed(String),
    /// The worker asked for it to stop.
    Cancelled,
}

/// The default PATH when the image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Entry point of `strata __sandbox`; call it before starting any thread or runtime.
pub fn sandbox_main() -> ExitCode {
    let mut line = String::new();
    let stdin = std::io::stdin();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        return fail_early(&format!("reading the sandbox spec: {e}"));
    }
    let spec: SandboxSpec = match serde_json::from_str(&line) {
        Ok(spec) => spec,
        Err(e) => return fail_early(&format!("parsing the sandbox spec: {e}")),
    };
    // Opened now: once the init has called pivot_root, the monitor (same mount namespace)
    // can no longer reach host paths.
    let mut status_file = match fs_err::File::create(&spec.status_file) {
        Ok(f) => f,
        Err(e) => return fail_early(&e.to_string()),
    };
    let status = monitor(&spec);
    let written = serde_json::to_vec(&status)
        .map_err(std::io::Error::from)
        .and_then(|b| std::io::Write::write_all(&mut status_file, &b));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail_early(&e.to_string()),
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the helper's stderr is the only channel before the spec is read"
)]
fn fail_early(msg: &str) -> ExitCode {
    eprintln!("strata sandbox: {msg}");
    ExitCode::from(125)
}

fn monitor(spec: &SandboxSpec) -> Status {
    let (status_r, status_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return Status::SetupFailed(format!("creating a pipe: {e}")),
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network_none {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = sys::unshare(flags) {
        return Status::SetupFailed(format!("creating namespaces: {e}"));
    }
    let init = match sys::fork() {
        Err(e) => return Status::SetupFailed(format!("starting the sandbox init: {e}")),
        Ok(Forked::Child) => {
            drop(status_r);
            // getppid() is 0 here (the parent is outside the new PID namespace), so the
            // usual re-check is impossible; the monitor also kills the init itself.
            if sys::set_parent_death_kill().is_err() {
                std::process::exit(1);
            }
            init(spec, status_w)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    drop(status_w);
    let stdin = std::io::stdin();
    let stdin = stdin.as_fd();
    let mut report = Vec::new();
    loop {
        let ready = match sys::poll_readable(&[stdin, status_r.as_fd()]) {
            Ok(r) => r,
            Err(_) => vec![true, false],
        };
        if ready[1] {
            let mut buf = [0u8; 4096];
            match sys::read(status_r.as_fd(), &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => report.extend_from_slice(&buf[..n]),
            }
        } else if ready[0] {
            let mut buf = [0u8; 64];
            if matches!(sys::read(stdin, &mut buf), Ok(0) | Err(_)) {
                // The worker hung up: kill the init, which takes the namespace with it.
                let _ = sys::kill(init);
                let _ = sys::wait_pid(init);
                return Status::Cancelled;
            }
        }
    }
    let waited = sys::wait_pid(init);
    let report = String::from_utf8_lossy(&report);
    let first = report.lines().next().unwrap_or("");
    match first.split_once('\t') {
        Some(("setup", msg)) => Status::SetupFailed(msg.to_owned()),
        Some(("start", msg)) => Status::StartFailed(msg.to_owned()),
        Some(("exit", code)) => Status::Exited(code.parse().unwrap_or(255)),
        Some(("signal", sig)) => Status::Signaled(sig.parse().unwrap_or(9)),
        _ => Status::SetupFailed(format!(
            "the sandbox init ended without a report ({waited:?})"
        )),
    }
}

fn report(w: BorrowedFd<'_>, kind: &str, msg: &str) {
    let msg = msg.replace('\n', " ");
    let _ = sys::write_all(w, format!("{kind}\t{msg}\n").as_bytes());
}

/// PID 1 of the sandbox. Never returns.
fn init(spec: &SandboxSpec, status: OwnedFd) -> ! {
    let w = status.as_fd();
    let applied = match SandboxPlan::new(spec).apply() {
        Ok(a) => a,
        Err(e) => {
            report(w, "setup", &error_chain(&e));
            std::process::exit(1);
        }
    };
    let prepared = match prepare_process(&spec.process) {
        Ok(p) => p,
        Err(msg) => {
            report(w, "start", &msg);
            std::process::exit(1);
        }
    };
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
    crate::stub::remove(&applied.targets, &applied.stubs);
    let (kind, n) = outcome.unwrap_or(("signal", 9));
    report(w, kind, &n.to_string());
    std::process::exit(0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
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
struct Prepared {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: PathBuf,
    id: user::Identity,
    insecure: bool,
    no_new_privs: bool,
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

fn prepare_process(p: &ProcessSpec) -> Result<Prepared, String> {
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
    let root = crate::root::Root::open(Path::new("/")).map_err(|e| e.to_string())?;
    let comps = crate::root::clean(Path::new(&cwd));
    let opts = crate::root::DirOpts {
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
        insecure: p.insecure,
        no_new_privs: p.no_new_privs,
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

/// In the command's process: drop privileges and exec. Returns only an error message.
fn exec_command(p: &Prepared) -> String {
    let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    let result = (|| {
        step("setsid", sys::setsid())?;
        step("resetting signals", sys::reset_signals())?;
        step("opening /dev/null", sys::stdin_from_dev_null())?;
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
        Ok(())
    })();
    if let Err(e) = result {
        return e;
    }
    let e = sys::exec(&p.path, &p.argv, &p.env);
    format!("exec {}: {e}", p.path.to_string_lossy())
}
