//! `pause` and `unpause`: a container's processes frozen by the cgroup freezer, as docker's.
//!
//! Containers have no cgroup of their own while they run (they share strata's, see
//! `docs/containers.md`), so `pause` makes one, `strata-paused/<id>` at the top of the
//! freezer's hierarchy (cgroup v2: `/sys/fs/cgroup/strata-paused/<id>`, frozen by
//! `cgroup.freeze`; v1: `/sys/fs/cgroup/freezer/strata-paused/<id>`, by `freezer.state`),
//! moves every process of the container's PID namespace into it (again until none is left
//! outside: a process may fork meanwhile, and its children are born where it is), freezes it
//! and waits until the kernel says it is frozen. `unpause` thaws it, moves the processes back
//! to the cgroup of the container's monitor (where they came from) and removes it. Whether a
//! container is paused is read from that cgroup, by anyone, with no record of it in the
//! store. Rootless strata makes no cgroup: there is no freezer to use.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a container could not be paused or unpaused.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    /// No cgroup freezer this process can use (rootless, or none mounted).
    #[error("pausing needs the cgroup freezer, which {0}")]
    Unsupported(&'static str),
    /// A cgroup file could not be read or written.
    #[error("failed to use the cgroup {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel did not report the cgroup frozen (a hang guard, far above any need).
    #[error("the container's processes did not freeze within 10s")]
    Timeout,
}

/// A container's freezer cgroup (which may not exist: the container is not paused).
#[derive(Debug, Clone)]
pub struct Freezer {
    root: PathBuf,
    dir: PathBuf,
    v2: bool,
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> FreezerError + '_ {
    move |source| FreezerError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Freezer {
    /// The freezer cgroup of container `id`.
    pub fn of_container(id: &str) -> Result<Freezer, FreezerError> {
        if strata_store::confined::in_user_namespace() {
            return Err(FreezerError::Unsupported(
                "rootless strata cannot use (it makes no cgroup)",
            ));
        }
        let (root, v2) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (PathBuf::from("/sys/fs/cgroup"), true)
        } else if Path::new("/sys/fs/cgroup/freezer/cgroup.procs").exists() {
            (PathBuf::from("/sys/fs/cgroup/freezer"), false)
        } else {
            return Err(FreezerError::Unsupported("is not mounted"));
        };
        let dir = root.join("strata-paused").join(id);
        Ok(Freezer { root, dir, v2 })
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join(if self.v2 {
            "cgroup.freeze"
        } else {
            "freezer.state"
        })
    }

    /// Whether the container's processes are frozen (or being frozen).
    pub fn is_frozen(&self) -> bool {
        match fs_err::read_to_string(self.state_file()) {
            Ok(s) if self.v2 => s.trim() == "1",
            Ok(s) => matches!(s.trim(), "FROZEN" | "FREEZING"),
            Err(_) => false,
        }
    }

    /// The pids in the cgroup.
    fn members(&self) -> Result<Vec<u32>, FreezerError> {
        let procs = self.dir.join("cgroup.procs");
        let text = fs_err::read_to_string(&procs).map_err(io_at(&procs))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Moves `pid` into the cgroup at `dir`; a process gone meanwhile is no error.
    fn move_to(dir: &Path, pid: u32) -> Result<(), FreezerError> {
        use rustix::fs::{Mode, OFlags};
        let procs = dir.join("cgroup.procs");
        let fd = rustix::fs::open(&procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_at(&procs)(e.into()))?;
        match rustix::io::write(&fd, pid.to_string().as_bytes()) {
            Ok(_) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(io_at(&procs)(e.into())),
        }
    }

    /// Removes the cgroups of containers no longer paused that a thaw could not remove
    /// (a process was still leaving): those now empty.
    fn sweep(&self) {
        let Some(parent) = self.dir.parent() else {
            return;
        };
        if let Ok(entries) = fs_err::read_dir(parent) {
            for e in entries.flatten() {
                let dir = e.path();
                let frozen = Freezer {
                    dir: dir.clone(),
                    ..self.clone()
                }
                .is_frozen();
                if e.file_type().is_ok_and(|t| t.is_dir()) && !frozen {
                    let _ = fs_err::remove_dir(&dir);
                }
            }
        }
    }

    /// Freezes every process in the PID namespace of `pid` (the container's process).
    pub fn freeze(&self, pid: u32) -> Result<(), FreezerError> {
        self.sweep();
        fs_err::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        loop {
            let inside = self.members()?;
            let outside: Vec<u32> = crate::exec::pids_in_namespace_of(pid)
                .map_err(io_at(Path::new("/proc")))?
                .into_iter()
                .filter(|p| !inside.contains(p))
                .collect();
            if outside.is_empty() {
                break;
            }
            for p in outside {
                Freezer::move_to(&self.dir, p)?;
            }
        }
        let state = self.state_file();
        fs_err::write(&state, if self.v2 { "1" } else { "FROZEN" }).map_err(io_at(&state))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frozen = if self.v2 {
                let events = self.dir.join("cgroup.events");
                fs_err::read_to_string(&events)
                    .map_err(io_at(&events))?
                    .lines()
                    .any(|l| l.trim() == "frozen 1")
            } else {
                fs_err::read_to_string(&state)
                    .map_err(io_at(&state))?
                    .trim()
                    == "FROZEN"
            };
            if frozen {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FreezerError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Thaws the cgroup, moves its processes back to the cgroup of `home` (the container's
    /// monitor) when it has one in this hierarchy, and removes the cgroup.
    pub fn thaw(&self, home: Option<u32>) -> Result<(), FreezerError> {
        let state = self.state_file();
        fs_err::write(&state, if self.v2 { "0" } else { "THAWED" }).map_err(io_at(&state))?;
        let back = home.and_then(|pid| self.cgroup_of(pid));
        if let Some(back) = back {
            // Again until it is empty: a thawed process may fork meanwhile (bounded: one
            // that forks without end stays, thawed).
            for _ in 0..100 {
                let members = self.members()?;
                if members.is_empty() {
                    break;
                }
                for p in members {
                    Freezer::move_to(&back, p)?;
                }
            }
            // Busy while a process is still inside (one forked meanwhile, or still exiting):
            // a few tries, else it stays, thawed and empty soon, until a `pause` sweeps it.
            for _ in 0..50 {
                if fs_err::remove_dir(&self.dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// The directory of process `pid`'s cgroup in this hierarchy.
    fn cgroup_of(&self, pid: u32) -> Option<PathBuf> {
        let text = fs_err::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let ours = if self.v2 {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == "freezer")
            };
            ours.then_some(path)
        })?;
        Some(self.root.join(path.trim_start_matches('/')))
    }
}
