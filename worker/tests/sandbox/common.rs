//! Fixtures: a busybox base layer, a worker in a temp dir, helpers to run and read layers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_graph::{ExecOp, Mount, NetworkMode, SecurityMode};
use strata_worker::{MountInput, OutputStream, RunError, RunRequest, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), libtest_mimic::Failed>;

/// Wraps a test body so that panics and errors become failures.
pub fn trial(name: &'static str, f: fn() -> TestResult) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, f)
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1000:\nnogroup:x:65534:\n";

/// Writes the conformance base image (busybox + applets, passwd, group, /root, /tmp,
/// /home/app) into `dir`, as a layer directory.
pub fn make_base(dir: &Path) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    fs_err::create_dir_all(dir.join("bin")).unwrap();
    fs_err::copy(busybox, dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    fs_err::create_dir_all(dir.join("etc")).unwrap();
    fs_err::write(dir.join("etc/passwd"), PASSWD).unwrap();
    fs_err::write(dir.join("etc/group"), GROUP).unwrap();
    fs_err::create_dir_all(dir.join("home/app")).unwrap();
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).unwrap();
    fs_err::create_dir_all(dir.join("root")).unwrap();
    fs_err::set_permissions(dir.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    fs_err::create_dir_all(dir.join("tmp")).unwrap();
    fs_err::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

/// A temp dir with a worker, a base layer and a counter for new layers.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub worker: Worker,
    pub base: PathBuf,
    n: std::cell::Cell<usize>,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config(|_| {})
    }

    /// An Env whose worker's configuration `edit` changes.
    pub fn with_config(edit: impl FnOnce(&mut WorkerConfig)) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-worker-test-")
            .tempdir()
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut config = WorkerConfig::new(dir.path().join("state"), exe);
        edit(&mut config);
        let worker = Worker::new(config).unwrap();
        let base = dir.path().join("layers/base");
        make_base(&base);
        Env {
            dir,
            worker,
            base,
            n: std::cell::Cell::new(0),
        }
    }

    /// A fresh empty upper dir.
    pub fn upper(&self) -> PathBuf {
        self.n.set(self.n.get() + 1);
        let p = self.dir.path().join(format!("layers/l{}", self.n.get()));
        fs_err::create_dir_all(&p).unwrap();
        p
    }
}

pub fn exec(args: &[&str]) -> ExecOp {
    ExecOp {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        mounts: vec![],
    }
}

pub fn sh(script: &str) -> ExecOp {
    exec(&["/bin/sh", "-c", script])
}

pub fn with_mounts(mut op: ExecOp, mounts: Vec<Mount>) -> ExecOp {
    op.mounts = mounts;
    op
}

/// Output of a run: (stream, line) pairs.
pub type Lines = Vec<(OutputStream, String)>;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The request to run `op` over `lowers` into `upper`, with no mounts, binds or hostname.
pub fn request(op: ExecOp, lowers: Vec<PathBuf>, upper: &Path) -> RunRequest {
    RunRequest {
        exec: op,
        lowers,
        upper: upper.to_owned(),
        mounts: vec![],
        hostname: None,
        binds: Vec::new(),
        read_only_root: false,
        container_network: false,
    }
}

/// Runs `op` over `lowers` into `upper`; returns the result and its output.
pub fn run_op(
    env: &Env,
    op: ExecOp,
    lowers: Vec<PathBuf>,
    upper: &Path,
    mounts: Vec<MountInput>,
) -> (Result<(), RunError>, Lines) {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let req = RunRequest {
        mounts,
        ..request(op, lowers, upper)
    };
    let result = runtime().block_on(env.worker.run(
        req,
        move |s, l| {
            sink.lock()
                .unwrap()
                .push((s, String::from_utf8_lossy(l).into_owned()))
        },
        CancellationToken::new(),
    ));
    let lines = lines.lock().unwrap().clone();
    (result, lines)
}

pub fn stdout(lines: &Lines) -> String {
    lines
        .iter()
        .filter(|(s, _)| *s == OutputStream::Stdout)
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

pub fn ensure(cond: bool, msg: impl Into<String>) -> TestResult {
    if cond { Ok(()) } else { Err(msg.into().into()) }
}

pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(a: T, b: T, what: &str) -> TestResult {
    if a == b {
        Ok(())
    } else {
        Err(format!("{what}: {a:?} != {b:?}").into())
    }
}

/// The mount table of this process (the host's view).
pub fn mountinfo() -> String {
    fs_err::read_to_string("/proc/self/mountinfo").unwrap()
}

/// The mounts of this test's own worker: every line of the mount table that names a path
/// under `env`'s directory (as mount point, source or overlay layer). Mounts made by anything
/// else on the machine (a daemon, another build) are none of the test's business.
pub fn own_mounts(env: &Env) -> Vec<String> {
    let dir = env.dir.path().display().to_string();
    mountinfo()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect()
}

/// `shared/` beside the checkout (conformance cases, hostile generator).
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}
