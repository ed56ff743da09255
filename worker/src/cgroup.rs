//! A build's control group: every process of every RUN of one [`Worker`](crate::Worker) runs
//! in it (made by the first RUN: a build that runs nothing makes none), under a pids limit (so a fork bomb fails its step instead of the machine) and, when
//! asked, a memory limit and a CPU quota, as `docker build --memory --cpu-quota ...`.
//!
//! Where it lives, found at run time:
//! * cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` exists): `/sys/fs/cgroup/strata/<name>`,
//!   with the `pids`, `memory` and `cpu` controllers enabled down to it;
//! * cgroup v1: `<hierarchy>/<strata's own cgroup there>/strata/<name>` in each of the `pids`,
//!   `memory` and `cpu` hierarchies (below strata's own cgroup, so a memory limit put on
//!   strata itself still covers its builds).
//!
//! `<name>` is `<pidns>-<pid>-<n>`: the strata process that owns it, and the inode of its PID
//! namespace (so that strata processes in other PID namespaces sharing the hierarchy never
//! take each other's cgroups for stale ones). The sandbox helper is
//! moved into the cgroup as soon as it is started, so every monitor, init and command forked
//! from it is born inside; nothing is done per RUN but reading two counters.
//!
//! Removal: when the worker (its last clone) is dropped, whatever is still in the cgroup is
//! killed and the directories removed, on success, on error and after Ctrl-C alike. A
//! strata killed with SIGKILL leaves its cgroup behind: the next worker started (with limits) in
//! the same place removes every one of its PID namespace whose pid is no longer alive.

use crate::sys;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The default pids limit of a build: far above what a parallel compile needs, low enough
/// that a fork bomb stays a small load on the machine.
pub const DEFAULT_PIDS_LIMIT: u64 = 8192;

/// The resource limits of a build's cgroup (`strata build --pids-limit --memory
/// --cpu-quota --cpu-period --cpu-shares`, named as `docker build`'s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Most processes (and threads) alive at once in the build's RUN steps.
    pub pids_limit: u64,
    /// Most memory in bytes (`memory.max`, v1 `memory.limit_in_bytes`).
    pub memory: Option<u64>,
    /// CPU time in microseconds per period (`cpu.max`, v1 `cpu.cfs_quota_us`).
    pub cpu_quota: Option<u64>,
    /// The period of `cpu_quota` in microseconds (default 100000).
    pub cpu_period: Option<u64>,
    /// Relative CPU weight, docker's shares (1024 = normal; v2 `cpu.weight` by docker's
    /// conversion).
    pub cpu_shares: Option<u64>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            pids_limit: DEFAULT_PIDS_LIMIT,
            memory: None,
            cpu_quota: None,
            cpu_period: None,
            cpu_shares: None,
        }
    }
}

/// Why the build's cgroup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither cgroup v2 nor a v1 `pids` hierarchy is mounted under /sys/fs/cgroup.
    #[error("no cgroup v2 and no cgroup v1 pids hierarchy under /sys/fs/cgroup")]
    Unsupported,
    /// A cgroup file or directory could not be written.
    #[error("failed to set up the build's cgroup ({})", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Write {
        path: path.to_owned(),
        source,
    }
}

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "strata";

/// A build's cgroup: its directory in each hierarchy (one on v2, `pids` first).
#[derive(Debug)]
pub(crate) struct Cgroup {
    v2: bool,
    /// (controller, directory); on v2 one entry, "".
    dirs: Vec<(&'static str, PathBuf)>,
    pids_limit: u64,
}

/// Counters that say whether a limit was hit (see [`Cgroup::limit_hit`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pids_max: u64,
    oom_kills: u64,
}

/// The directories strata makes its builds' cgroups in, by controller (`""` for v2).
type Parents = Vec<(&'static str, PathBuf)>;

/// Whether the unified hierarchy (v2) is used, and its [`Parents`].
fn parents() -> Result<(bool, Parents), CgroupError> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return Ok((true, vec![("", root.join(PARENT))]));
    }
    let own = own_v1_paths();
    let mut parents = Vec::new();
    for c in ["pids", "memory", "cpu"] {
        let mount = root.join(c);
        if mount.join("cgroup.procs").exists() {
            let own = own.iter().find(|(cs, _)| cs.split(',').any(|x| x == c));
            let rel = own.map_or("/", |(_, p)| p.as_str());
            parents.push((c, mount.join(rel.trim_start_matches('/')).join(PARENT)));
        }
    }
    if parents.first().map(|(c, _)| *c) != Some("pids") {
        return Err(CgroupError::Unsupported);
    }
    Ok((false, parents))
}

/// Removes the cgroups of dead strata processes (killing what is left in them), without
/// making one: what a worker does at its start, its own cgroup waiting for its first RUN.
/// Best effort, as the sweep of [`Cgroup::create`].
pub(crate) fn remove_stale_cgroups() {
    if let Ok((_, parents)) = parents() {
        for (_, parent) in &parents {
            if parent.is_dir() {
                remove_stale(parent);
            }
        }
    }
}

impl Cgroup {
    /// Makes a new cgroup with `res`'s limits, after removing the stale ones of dead strata
    /// processes beside it.
    pub(crate) fn create(res: &Resources) -> Result<Cgroup, CgroupError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}-{}",
            pid_namespace(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let root = Path::new(ROOT);
        let (v2, parents) = parents()?;
        for (_, parent) in &parents {
            fs_err::create_dir_all(parent).map_err(write_err(parent))?;
            remove_stale(parent);
        }
        if v2 {
            // Each level hands the controllers down; a controller the kernel lacks is left
            // out (its limit then fails to be written below, if one is asked for).
            for dir in [root, &parents[0].1] {
                let ctl = dir.join("cgroup.subtree_control");
                for c in ["+pids", "+memory", "+cpu"] {
                    let _ = fs_err::write(&ctl, c);
                }
            }
        }
        let dirs: Vec<_> = parents
            .into_iter()
            .map(|(c, parent)| (c, parent.join(&name)))
            .collect();
        let cgroup = Cgroup {
            v2,
            dirs,
            pids_limit: res.pids_limit,
        };
        for (_, dir) in &cgroup.dirs {
            fs_err::create_dir(dir).map_err(write_err(dir))?;
        }
        // From here on, dropping `cgroup` removes what was made.
        cgroup.set_limits(res)?;
        Ok(cgroup)
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| self.v2 || *c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let Some(dir) = self.dir(controller) else {
            return Err(CgroupError::Write {
                path: Path::new(ROOT).join(controller),
                source: io::Error::new(io::ErrorKind::NotFound, "no such cgroup v1 hierarchy"),
            });
        };
        let path = dir.join(file);
        fs_err::write(&path, value).map_err(write_err(&path))
    }

    fn set_limits(&self, res: &Resources) -> Result<(), CgroupError> {
        self.write("pids", "pids.max", &res.pids_limit.to_string())?;
        if let Some(bytes) = res.memory {
            let file = if self.v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            self.write("memory", file, &bytes.to_string())?;
        }
        let period = res.cpu_period.unwrap_or(100_000);
        if self.v2 {
            if res.cpu_quota.is_some() || res.cpu_period.is_some() {
                let quota = res.cpu_quota.map_or("max".to_owned(), |q| q.to_string());
                self.write("cpu", "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(shares) = res.cpu_shares {
                // runc's conversion of shares (2..262144) to weight (1..10000).
                let shares = shares.clamp(2, 262_144);
                let weight = 1 + ((shares - 2) * 9999) / 262_142;
                self.write("cpu", "cpu.weight", &weight.to_string())?;
            }
        } else {
            if res.cpu_period.is_some() {
                self.write("cpu", "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(quota) = res.cpu_quota {
                self.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
            }
            if let Some(shares) = res.cpu_shares {
                self.write("cpu", "cpu.shares", &shares.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (and so everything it forks from now on) into the cgroup.
    pub(crate) fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for (_, dir) in &self.dirs {
            let path = dir.join("cgroup.procs");
            fs_err::write(&path, pid.to_string()).map_err(write_err(&path))?;
        }
        Ok(())
    }

    /// The counters now, to compare after a step.
    pub(crate) fn counters(&self) -> Counters {
        let read = |controller: &str, file: &str, key: &str| {
            self.dir(controller)
                .and_then(|d| fs_err::read_to_string(d.join(file)).ok())
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                })
                .unwrap_or(0)
        };
        let oom = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        Counters {
            pids_max: read("pids", "pids.events", "max "),
            oom_kills: read("memory", oom.0, oom.1),
        }
    }

    /// Which limit was hit since `before`, as the user reads it.
    pub(crate) fn limit_hit(&self, before: Counters) -> Option<String> {
        let now = self.counters();
        if now.pids_max > before.pids_max {
            Some(format!(
                "the step hit the build's pids limit ({}): a process could not fork \
                 (raise it with --pids-limit)",
                self.pids_limit
            ))
        } else if now.oom_kills > before.oom_kills {
            Some(
                "the step hit the build's memory limit: a process was killed (raise it with \
                 --memory)"
                    .to_owned(),
            )
        } else {
            None
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            kill_and_remove(dir);
        }
    }
}

/// `(controllers, path)` of each v1 hierarchy strata is in, from /proc/self/cgroup.
fn own_v1_paths() -> Vec<(String, String)> {
    fs_err::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, cs, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((cs.to_owned(), path.to_owned()))
        })
        .collect()
}

/// The inode number of strata's PID namespace (0 if unknown).
fn pid_namespace() -> u64 {
    fs_err::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let l = l.to_str()?.to_owned();
            l.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

/// Removes the cgroups under `parent` of strata's PID namespace whose owner is no longer
/// alive.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    let ns = pid_namespace().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let mut parts = name.to_str().unwrap_or("").split('-');
        let (Some(owner_ns), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if owner_ns != ns {
            continue;
        }
        if entry.path().is_dir() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_and_remove(&entry.path());
        }
    }
}

/// Kills every process in cgroup `dir` and removes it; gives up after about two seconds
/// (the directory is then left for the next start's [`remove_stale`]).
fn kill_and_remove(dir: &Path) {
    let kill_file = dir.join("cgroup.kill");
    let procs = dir.join("cgroup.procs");
    for _ in 0..2000 {
        if fs_err::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        if kill_file.exists() {
            let _ = fs_err::write(&kill_file, "1");
        } else if let Ok(pids) = fs_err::read_to_string(&procs) {
            for pid in pids.lines().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = sys::kill(nix::unistd::Pid::from_raw(pid));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
