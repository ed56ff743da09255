//! A dockerd of the test's own, for interop tests: its own data root, exec root, pid file,
//! unix socket and `daemon.json`, no bridge and no iptables, so a dockerd the machine runs is
//! untouched. It runs in its own process group; on drop the group is stopped (TERM, then KILL),
//! the containerd it started too, and whatever it left mounted under its directories is
//! unmounted before they are removed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dockerd and the `docker` client pointed at it.
pub(crate) struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
}

/// How long dockerd gets to answer `_ping`, and to exit on TERM, before we give up on it.
const PATIENCE: Duration = Duration::from_secs(60);

impl Dockerd {
    /// Starts dockerd (Debian's `docker.io`, or docker-ce) and waits until its socket answers
    /// `GET /_ping` with `OK`.
    pub(crate) fn start() -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("strata-dockerd.")
            .tempdir_in("/tmp") // a unix socket path has at most 108 bytes
            .expect("create a temp dir");
        let path = dir.path();
        fs_err::write(path.join("daemon.json"), "{}").expect("write daemon.json");
        fs_err::create_dir_all(path.join("client")).expect("mkdir");
        let log = fs_err::File::create(path.join("dockerd.log")).expect("create the log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(path.join("daemon.json"))
            .arg("--data-root")
            .arg(path.join("data"))
            .arg("--exec-root")
            .arg(path.join("exec"))
            .arg("--pidfile")
            .arg(path.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", path.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log").into_parts().0)
            .stderr(log.into_parts().0)
            .process_group(0)
            .spawn()
            .expect("start dockerd (Debian's docker.io package)");
        let mut dockerd = Dockerd { child, dir };
        let start = Instant::now();
        loop {
            if dockerd.ping() {
                return dockerd;
            }
            let exited = !matches!(dockerd.child.try_wait(), Ok(None));
            assert!(
                !exited && start.elapsed() < PATIENCE,
                "dockerd did not answer on {}; its log:\n{}",
                dockerd.socket().display(),
                dockerd.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Whether the socket answers `GET /_ping` with `OK`.
    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }

    /// `docker -H unix://SOCKET ARGS` with a config directory of its own, not yet run.
    pub(crate) fn docker<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        c
    }

    /// Runs `docker ARGS`, asserts it succeeded, returns its stdout.
    pub(crate) fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.docker(args).output().expect("run docker");
        assert!(
            out.status.success(),
            "docker failed ({}): {}\ndockerd's log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

/// The containerd dockerd started (it runs in a process group of its own), while it runs: a
/// process whose command line names our exec root.
fn containerd_pid(exec_root: &Path) -> Option<String> {
    let pid = fs_err::read_to_string(exec_root.join("containerd/containerd.pid")).ok()?;
    let pid = pid.trim().to_owned();
    let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(&*exec_root.to_string_lossy());
    (!pid.is_empty() && ours).then_some(pid)
}

/// The mount points under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let table = fs_err::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
        if let Some(pid) = containerd_pid(&self.dir.path().join("exec")) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid])
                .stderr(Stdio::null())
                .status();
        }
        for point in mounts_under(self.dir.path()) {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
    }
}
