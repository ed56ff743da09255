//! The sandbox's mounts as data. [`SandboxPlan::new`] turns a [`SandboxSpec`] into a list of
//! [`Step`]s without touching anything, so the whole setup can be read (and snapshot-tested)
//! as a list; [`SandboxPlan::apply`] then runs them in the helper, one system call (or one
//! small group) and one error per step.
//!
//! Host paths are only used before `pivot_root`, and only to open things the parent made
//! (the layers, the work dir, cache dirs, host device nodes): each becomes a detached
//! mount held by a descriptor. What the sandbox needs that is not in any layer (the mount
//! points `/proc`, `/dev`, `/sys`, `/etc/hosts`, ..., and the files bound onto them) is made
//! in memory, on a tmpfs of the sandbox's own: no disk writes, nothing to clean up. Every path inside the sandbox is used after `pivot_root`, when
//! no symlink in the image can lead out of it. Device nodes are bind mounts of the host's
//! and everything else is `nodev`, so a node from a layer or made by `mknod` cannot be
//! opened (what Docker's device cgroup does).

use crate::spec::{SandboxSpec, SpecMount};
use crate::sys::{self, MountAttrs};
use rustix::fs::OFlags;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_store::confined;

/// Devices bound from the host into the sandbox's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /proc paths runc masks by default (a file gets /dev/null, a directory an empty tmpfs).
const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// /proc paths runc makes read-only by default.
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Bytes that are not shown in plan dumps (secrets).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Contents(pub(crate) Vec<u8>);

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// One setup step. `handle`s name detached mounts made by earlier steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Stop mount events propagating to or from the host.
    MakePrivate,
    /// The sandbox's own detached tmpfs: the stub layer and the files bound into the
    /// sandbox (`/etc/hosts`, secrets, ...) are made there.
    OwnTmpfs { handle: usize, size: u64 },
    /// The stub layer in the tmpfs `handle`: every mount point of [`ROOT_MOUNT_POINTS`], put
    /// *under* the image's layers so that whatever the image has wins.
    StubLayer { handle: usize },
    /// The root overlay (the stub layer of `stubs` at the bottom), detached.
    MountRoot {
        handle: usize,
        stubs: usize,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Attach the detached mounts `handles`, no longer needed, onto `target` (a host path,
    /// under the root overlay): they then go away with the old root, lazily, instead of each
    /// costing an RCU grace period when its last descriptor is closed while detached.
    Park {
        handles: Vec<usize>,
        target: PathBuf,
    },
    /// Attach the root overlay `handle` on `target`.
    AttachRoot { handle: usize, target: PathBuf },
    /// A detached bind of a host path (with the mounts below it when `recursive`).
    CloneHost {
        handle: usize,
        source: PathBuf,
        recursive: bool,
        attrs: MountAttrs,
    },
    /// A new filesystem, detached. `proc` and `sysfs` are made before `pivot_root`: in a user
    /// namespace the kernel makes one only where the host's is visible in the mount namespace
    /// (`mount_too_revealing`), which it is not after `pivot_root`.
    NewFs {
        handle: usize,
        fstype: &'static str,
        attrs: MountAttrs,
    },
    /// A detached overlay of `lowers` (read-only, or over a throw-away upper).
    Overlay {
        handle: usize,
        lowers: Vec<PathBuf>,
        scratch: Option<(PathBuf, PathBuf)>,
        attrs: MountAttrs,
    },
    /// Write a file into the tmpfs `handle`.
    WriteFile {
        handle: usize,
        name: String,
        contents: Contents,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A detached bind of `path` resolved inside the mount `from` (symlinks stay inside it).
    CloneInside {
        handle: usize,
        from: usize,
        path: String,
        attrs: MountAttrs,
    },
    /// Make the root overlay `/` and detach the host's root.
    PivotRoot { new_root: PathBuf },
    /// A new filesystem mounted on `target`.
    Mount {
        fstype: &'static str,
        target: String,
        options: Vec<(String, Option<String>)>,
        attrs: MountAttrs,
    },
    /// A directory (inside a tmpfs this plan mounted).
    Mkdir { path: &'static str, mode: u32 },
    /// A symlink (inside a tmpfs this plan mounted).
    Symlink {
        target: &'static str,
        link: &'static str,
    },
    /// An empty file to mount a device on.
    Touch { path: String },
    /// The mount point of a `RUN --mount`: created when missing, removed again afterwards.
    Stub { path: String, kind: StubKind },
    /// Attach the detached mount `handle` on `target`.
    Attach { handle: usize, target: String },
    /// Hide a /proc or /sys path (skipped when the kernel has no such path).
    Mask { path: &'static str },
    /// Make a /proc path read-only (skipped when missing).
    ReadOnly { path: &'static str },
    /// Set the UTS hostname.
    SetHostname { name: String },
    /// Make the root mount read-only, not the mounts on it (a container's `--read-only`).
    ReadOnlyRoot,
}

/// The mount points every sandbox needs in its root (directory or file).
const ROOT_MOUNT_POINTS: [(&str, bool); 6] = [
    ("proc", true),
    ("dev", true),
    ("sys", true),
    ("etc/hosts", false),
    ("etc/resolv.conf", false),
    ("etc/hostname", false),
];

/// Where the sandbox's own files are made in its tmpfs.
const FILES_DIR: &str = "files";

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StubKind {
    Dir,
    File,
    /// Whatever the detached mount `handle` is (a bind source may be either).
    Like(usize),
}

/// Setup failed; says at which step.
#[derive(Debug, thiserror::Error)]
#[error("sandbox setup failed at {step}")]
pub(crate) struct PlanError {
    pub(crate) step: String,
    #[source]
    pub(crate) source: io::Error,
}

/// The mounts of one sandbox, in order.
#[derive(Debug)]
pub(crate) struct SandboxPlan {
    steps: Vec<Step>,
}

/// What applying the plan left to clean up.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Mount points created for `RUN --mount`s, in creation order.
    pub(crate) stubs: Vec<(String, bool)>,
    /// Targets of `RUN --mount`s, to unmount before removing the stubs.
    pub(crate) targets: Vec<String>,
    /// The root was made read-only: writable again before the stubs are removed.
    pub(crate) read_only_root: bool,
    /// One empty read-only tmpfs (attached on the first masked directory), cloned onto the
    /// other masked directories.
    mask: Option<OwnedFd>,
}

fn opt(k: &str, v: &str) -> (String, Option<String>) {
    (k.to_owned(), Some(v.to_owned()))
}

fn flag(k: &str) -> (String, Option<String>) {
    (k.to_owned(), None)
}

/// A `RUN --mount` prepared before `pivot_root`, to attach after it.
struct UserMount {
    /// The detached mount to attach; `None` for a tmpfs, mounted in place.
    handle: Option<usize>,
    target: String,
    /// A tmpfs's size limit.
    tmpfs_size: Option<u64>,
}

/// Builds a [`SandboxPlan`]'s steps in order, numbering the detached mounts it makes.
struct Planner<'a> {
    spec: &'a SandboxSpec,
    steps: Vec<Step>,
    next_handle: usize,
}

impl<'a> Planner<'a> {
    fn new(spec: &'a SandboxSpec) -> Self {
        Planner {
            spec,
            steps: Vec::new(),
            next_handle: 0,
        }
    }

    /// A new handle for a detached mount.
    fn handle(&mut self) -> usize {
        self.next_handle += 1;
        self.next_handle - 1
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// The sandbox's own tmpfs (handle `own`), sized for the files made on it, the stub
    /// layer on it, and the root overlay (handle `root`) over it, detached.
    fn root_overlay(&mut self, own: usize, root: usize) {
        let spec = self.spec;
        let file_bytes: usize = spec.etc_files.iter().map(|(_, c)| c.len()).sum::<usize>()
            + spec
                .mounts
                .iter()
                .map(|m| match m {
                    SpecMount::File { contents, .. } => contents.len(),
                    _ => 0,
                })
                .sum::<usize>();
        self.push(Step::MakePrivate);
        self.push(Step::OwnTmpfs {
            handle: own,
            size: (16 << 20) + file_bytes as u64,
        });
        self.push(Step::StubLayer { handle: own });
        self.push(Step::MountRoot {
            handle: root,
            stubs: own,
            lowers: spec.lowers.clone(),
            upper: spec.upper.clone(),
            work: spec.work.clone(),
        });
    }

    /// Detached binds of the host's [`DEVICES`], in that order.
    fn host_devices(&mut self) -> Vec<usize> {
        DEVICES
            .iter()
            .map(|d| {
                let h = self.handle();
                self.push(Step::CloneHost {
                    handle: h,
                    source: Path::new("/dev").join(d),
                    recursive: false,
                    attrs: MountAttrs {
                        nosuid: true,
                        noexec: true,
                        ..MountAttrs::NONE
                    },
                });
                h
            })
            .collect()
    }

    /// The `/etc` files (hosts, resolv.conf, ...) written on the tmpfs `own` and cloned
    /// read-only: each one's handle and target.
    fn etc_files(&mut self, own: usize) -> Vec<(usize, String)> {
        let mut etc = Vec::new();
        for (i, (target, contents)) in self.spec.etc_files.iter().enumerate() {
            let name = format!("{FILES_DIR}/etc-{i}");
            self.push(Step::WriteFile {
                handle: own,
                name: name.clone(),
                contents: Contents(contents.clone()),
                mode: 0o644,
                uid: 0,
                gid: 0,
            });
            let attrs = MountAttrs {
                readonly: true,
                ..MountAttrs::SAFE
            };
            let h = self.clone_inside(own, name, attrs);
            etc.push((h, target.clone()));
        }
        etc
    }

    /// Each `RUN --mount` made ready as a detached mount; the overlays binds read from are
    /// added to `parked`.
    fn user_mounts(&mut self, own: usize, parked: &mut Vec<usize>) -> Vec<UserMount> {
        let spec = self.spec;
        spec.mounts
            .iter()
            .enumerate()
            .map(|(i, m)| self.user_mount(i, m, own, parked))
            .collect()
    }

    /// The `i`th `RUN --mount` made ready: a bind of a path inside an overlay of its source, a
    /// host directory, a file written on the tmpfs `own`, a host socket; a tmpfs is mounted
    /// later, in place.
    fn user_mount(
        &mut self,
        i: usize,
        m: &SpecMount,
        own: usize,
        parked: &mut Vec<usize>,
    ) -> UserMount {
        let (handle, target, tmpfs_size) = match m {
            SpecMount::Bind {
                target,
                lowers,
                source,
                scratch,
            } => {
                let h = self.bind_inside_overlay(lowers, scratch, source, parked);
                (Some(h), target, None)
            }
            SpecMount::Dir {
                target,
                dir,
                readonly,
            } => {
                let h = self.handle();
                let attrs = MountAttrs {
                    readonly: *readonly,
                    nodev: true,
                    ..MountAttrs::NONE
                };
                self.push(Step::CloneHost {
                    handle: h,
                    source: dir.clone(),
                    recursive: false,
                    attrs,
                });
                (Some(h), target, None)
            }
            SpecMount::Tmpfs { target, size } => (None, target, *size),
            SpecMount::File {
                target,
                contents,
                mode,
                uid,
                gid,
            } => {
                let name = format!("{FILES_DIR}/mount-{i}");
                self.push(Step::WriteFile {
                    handle: own,
                    name: name.clone(),
                    contents: Contents(contents.clone()),
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                });
                let attrs = MountAttrs {
                    readonly: true,
                    nosuid: true,
                    nodev: true,
                    ..MountAttrs::NONE
                };
                (Some(self.clone_inside(own, name, attrs)), target, None)
            }
            SpecMount::Socket { target, path } => {
                let h = self.handle();
                self.push(Step::CloneHost {
                    handle: h,
                    source: path.clone(),
                    recursive: false,
                    attrs: MountAttrs::SAFE,
                });
                (Some(h), target, None)
            }
        };
        UserMount {
            handle,
            target: target.clone(),
            tmpfs_size,
        }
    }

    /// `source` inside an overlay of `lowers` (read-only, or over the throw-away upper of
    /// `scratch`), detached; the overlay is added to `parked`.
    fn bind_inside_overlay(
        &mut self,
        lowers: &[PathBuf],
        scratch: &Option<(PathBuf, PathBuf)>,
        source: &str,
        parked: &mut Vec<usize>,
    ) -> usize {
        let fs = self.handle();
        parked.push(fs);
        self.push(Step::Overlay {
            handle: fs,
            lowers: lowers.to_vec(),
            scratch: scratch.clone(),
            attrs: MountAttrs {
                nodev: true,
                ..MountAttrs::NONE
            },
        });
        let attrs = MountAttrs {
            readonly: scratch.is_none(),
            nodev: true,
            ..MountAttrs::NONE
        };
        self.clone_inside(fs, source.to_owned(), attrs)
    }

    /// A detached bind of `path` inside the mount `from`: its handle.
    fn clone_inside(&mut self, from: usize, path: String, attrs: MountAttrs) -> usize {
        let h = self.handle();
        self.push(Step::CloneInside {
            handle: h,
            from,
            path,
            attrs,
        });
        h
    }

    /// Parks the mounts no longer needed, attaches the root overlay and makes it `/`.
    fn pivot(&mut self, parked: Vec<usize>, root: usize) {
        let mountpoint = &self.spec.root_mountpoint;
        self.steps.extend([
            Step::Park {
                handles: parked,
                target: mountpoint.clone(),
            },
            Step::AttachRoot {
                handle: root,
                target: mountpoint.clone(),
            },
            Step::PivotRoot {
                new_root: mountpoint.clone(),
            },
        ]);
    }

    /// The detached `/proc` and `/sys` (see [`Step::NewFs`]): their handles. `/sys` is
    /// read-only, a sysfs of the sandbox's network namespace or (`spec.host_sys`) the host's.
    fn proc_and_sys_fs(&mut self) -> (usize, usize) {
        let proc = self.handle();
        self.push(Step::NewFs {
            handle: proc,
            fstype: "proc",
            attrs: MountAttrs::SAFE,
        });
        let sys = self.handle();
        let attrs = MountAttrs {
            readonly: true,
            ..MountAttrs::SAFE
        };
        self.push(if self.spec.host_sys {
            Step::CloneHost {
                handle: sys,
                source: PathBuf::from("/sys"),
                recursive: true,
                attrs,
            }
        } else {
            Step::NewFs {
                handle: sys,
                fstype: "sysfs",
                attrs,
            }
        });
        (proc, sys)
    }

    /// `/proc` (the detached `proc`), and `/dev`: a tmpfs with the host's `devices` bound
    /// in, pts, shm, mqueue and the usual links.
    fn proc_and_dev(&mut self, proc: usize, devices: Vec<usize>) {
        self.push(Step::Attach {
            handle: proc,
            target: "/proc".into(),
        });
        self.push(Step::Mount {
            fstype: "tmpfs",
            target: "/dev".into(),
            options: vec![opt("mode", "755"), opt("size", "65536k")],
            attrs: MountAttrs {
                nosuid: true,
                nodev: true,
                ..MountAttrs::NONE
            },
        });
        for (d, h) in DEVICES.iter().zip(devices) {
            let path = format!("/dev/{d}");
            self.push(Step::Touch { path: path.clone() });
            self.push(Step::Attach {
                handle: h,
                target: path,
            });
        }
        self.push(Step::Mkdir {
            path: "/dev/pts",
            mode: 0o755,
        });
        self.push(Step::Mount {
            fstype: "devpts",
            target: "/dev/pts".into(),
            options: vec![
                flag("newinstance"),
                opt("ptmxmode", "0666"),
                opt("mode", "0620"),
                opt("gid", "5"),
            ],
            attrs: MountAttrs {
                nosuid: true,
                noexec: true,
                ..MountAttrs::NONE
            },
        });
        self.push(Step::Symlink {
            target: "pts/ptmx",
            link: "/dev/ptmx",
        });
        self.push(Step::Mkdir {
            path: "/dev/shm",
            mode: 0o1777,
        });
        self.push(Step::Mount {
            fstype: "tmpfs",
            target: "/dev/shm".into(),
            options: vec![opt("mode", "1777"), opt("size", "65536k")],
            attrs: MountAttrs::SAFE,
        });
        self.push(Step::Mkdir {
            path: "/dev/mqueue",
            mode: 0o755,
        });
        self.push(Step::Mount {
            fstype: "mqueue",
            target: "/dev/mqueue".into(),
            options: vec![],
            attrs: MountAttrs::SAFE,
        });
        for (target, link) in [
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
        ] {
            self.push(Step::Symlink { target, link });
        }
    }

    /// `/sys` (the detached one), then runc's masked and read-only paths.
    fn sys_and_masks(&mut self, sys: usize) {
        self.push(Step::Attach {
            handle: sys,
            target: "/sys".into(),
        });
        for path in MASKED {
            self.push(Step::Mask { path });
        }
        for path in READONLY {
            self.push(Step::ReadOnly { path });
        }
    }

    /// Each `RUN --mount` on its mount point (made when missing).
    fn attach_user_mounts(&mut self, mounts: Vec<UserMount>) {
        for (m, planned) in self.spec.mounts.iter().zip(mounts) {
            let UserMount {
                handle,
                target,
                tmpfs_size,
            } = planned;
            let kind = match (m, handle) {
                (SpecMount::Bind { .. } | SpecMount::Dir { .. }, Some(h)) => StubKind::Like(h),
                (m, _) if m.is_file() => StubKind::File,
                _ => StubKind::Dir,
            };
            self.push(Step::Stub {
                path: target.clone(),
                kind,
            });
            match handle {
                Some(h) => self.push(Step::Attach { handle: h, target }),
                None => {
                    let mut options = vec![opt("mode", "1777")];
                    if let Some(size) = tmpfs_size {
                        options.push(opt("size", &size.to_string()));
                    }
                    self.push(Step::Mount {
                        fstype: "tmpfs",
                        target,
                        options,
                        attrs: MountAttrs::SAFE,
                    });
                }
            }
        }
    }
}

impl SandboxPlan {
    /// Plans the mounts for `spec`. Pure: reads nothing, changes nothing.
    pub(crate) fn new(spec: &SandboxSpec) -> SandboxPlan {
        let mut p = Planner::new(spec);
        let own = p.handle();
        let root = p.handle();
        p.root_overlay(own, root);
        let mut parked = vec![own];
        let devices = p.host_devices();
        let (proc, sys) = p.proc_and_sys_fs();
        let etc = p.etc_files(own);
        let user_mounts = p.user_mounts(own, &mut parked);
        p.pivot(parked, root);
        p.proc_and_dev(proc, devices);
        p.sys_and_masks(sys);
        for (h, target) in etc {
            p.push(Step::Attach { handle: h, target });
        }
        p.attach_user_mounts(user_mounts);
        if spec.read_only_root {
            p.push(Step::ReadOnlyRoot);
        }
        p.push(Step::SetHostname {
            name: spec.hostname.clone(),
        });
        SandboxPlan { steps: p.steps }
    }

    /// The steps, in order.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the snapshot test"))]
    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Runs the steps in the helper (after `unshare`, as PID 1 of the new PID namespace).
    pub(crate) fn apply(&self) -> Result<Applied, PlanError> {
        let mut handles: Vec<Option<OwnedFd>> = Vec::new();
        let mut applied = Applied::default();
        for (n, step) in self.steps.iter().enumerate() {
            apply_step(step, &mut handles, &mut applied).map_err(|source| PlanError {
                step: format!("step {n} ({})", describe(step)),
                source,
            })?;
        }
        Ok(applied)
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::MakePrivate => "making mounts private".into(),
        Step::OwnTmpfs { .. } => "mounting the sandbox's tmpfs".into(),
        Step::StubLayer { .. } => "making the mount points".into(),
        Step::MountRoot { .. } => "mounting the root overlay".into(),
        Step::Park { .. } => "putting away the setup mounts".into(),
        Step::AttachRoot { .. } => "attaching the root overlay".into(),
        Step::CloneHost { source, .. } => format!("binding {}", source.display()),
        Step::Overlay { .. } => "mounting a bind source overlay".into(),
        Step::WriteFile { name, .. } => format!("writing {name}"),
        Step::CloneInside { path, .. } => format!("resolving mount source {path}"),
        Step::PivotRoot { .. } => "pivot_root".into(),
        Step::NewFs { fstype, .. } => format!("mounting {fstype}"),
        Step::Mount { fstype, target, .. } => format!("mounting {fstype} on {target}"),
        Step::Mkdir { path, .. } => format!("creating {path}"),
        Step::Symlink { link, .. } => format!("creating {link}"),
        Step::Touch { path } => format!("creating {path}"),
        Step::Stub { path, .. } => format!("creating mount point {path}"),
        Step::Attach { target, .. } => format!("mounting on {target}"),
        Step::Mask { path } => format!("masking {path}"),
        Step::ReadOnly { path } => format!("making {path} read-only"),
        Step::SetHostname { .. } => "setting the hostname".into(),
        Step::ReadOnlyRoot => "making the root filesystem read-only".into(),
    }
}

fn take(handles: &mut [Option<OwnedFd>], h: usize) -> io::Result<OwnedFd> {
    handles
        .get_mut(h)
        .and_then(Option::take)
        .ok_or_else(|| io::Error::other(format!("mount handle {h} missing")))
}

fn put(handles: &mut Vec<Option<OwnedFd>>, h: usize, fd: OwnedFd) {
    if handles.len() <= h {
        handles.resize_with(h + 1, || None);
    }
    handles[h] = Some(fd);
}

fn missing_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn apply_step(
    step: &Step,
    handles: &mut Vec<Option<OwnedFd>>,
    applied: &mut Applied,
) -> io::Result<()> {
    match step {
        Step::MakePrivate => sys::make_rprivate(),
        Step::OwnTmpfs { handle, size } => {
            let fd = sys::fs_mount(
                "tmpfs",
                &[opt("mode", "700"), opt("size", &size.to_string())],
                MountAttrs {
                    nosuid: true,
                    nodev: true,
                    ..MountAttrs::NONE
                },
            )?;
            sys::mkdir_at(fd.as_fd(), Path::new(FILES_DIR), 0o700)?;
            put(handles, *handle, fd);
            Ok(())
        }
        Step::StubLayer { handle } => {
            let tmpfs = get(handles, *handle)?;
            make_stubs(tmpfs, "bottom", &ROOT_MOUNT_POINTS, None)
        }
        Step::MountRoot {
            handle,
            stubs,
            lowers,
            upper,
            work,
        } => {
            let tmpfs = get(handles, *stubs)?;
            let fd = mount_root(tmpfs, lowers, upper, work)?;
            put(handles, *handle, fd);
            Ok(())
        }
        Step::Park {
            handles: hs,
            target,
        } => {
            for h in hs {
                sys::attach_mount(take(handles, *h)?.as_fd(), target)?;
            }
            Ok(())
        }
        Step::AttachRoot { handle, target } => {
            sys::attach_mount(take(handles, *handle)?.as_fd(), target)
        }
        Step::CloneHost {
            handle,
            source,
            recursive,
            attrs,
        } => {
            let fd = sys::clone_tree(sys::open_dir(Path::new("/"))?.as_fd(), source, *recursive)?;
            sys::set_mount_attrs(fd.as_fd(), *attrs)?;
            put(handles, *handle, fd);
            Ok(())
        }
        Step::Overlay {
            handle,
            lowers,
            scratch,
            attrs,
        } => {
            let lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
            let upper = scratch.as_ref().map(|(u, w)| (u.as_path(), w.as_path()));
            // Overlay wants two layers when it has no upper: one read-only layer is a bind.
            let fd = match (lowers.as_slice(), upper) {
                ([one], None) => {
                    let fd = sys::clone_tree(sys::open_dir(Path::new("/"))?.as_fd(), one, false)?;
                    sys::set_mount_attrs(fd.as_fd(), *attrs)?;
                    fd
                }
                // Writes to a bind mount are thrown away: never worth a sync.
                _ => sys::overlay_mount(&lowers, upper, true, *attrs)?,
            };
            put(handles, *handle, fd);
            Ok(())
        }
        Step::WriteFile {
            handle,
            name,
            contents,
            mode,
            uid,
            gid,
        } => {
            let dir = get(handles, *handle)?;
            let fd = confined::open_no_symlinks(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o600,
            )?;
            sys::write_all(fd.as_fd(), &contents.0)?;
            sys::fchown(fd.as_fd(), *uid, *gid)?;
            sys::fchmod(fd.as_fd(), *mode)
        }
        Step::CloneInside {
            handle,
            from,
            path,
            attrs,
        } => {
            let root = handles
                .get(*from)
                .and_then(Option::as_ref)
                .ok_or_else(|| io::Error::other(format!("mount handle {from} missing")))?;
            let inside = strata_store::confined::open_in_root(
                root.as_fd(),
                path.as_bytes(),
                rustix::fs::OFlags::PATH,
            )?;
            let fd = sys::clone_tree(inside.as_fd(), Path::new(""), true)?;
            sys::set_mount_attrs(fd.as_fd(), *attrs)?;
            put(handles, *handle, fd);
            Ok(())
        }
        Step::PivotRoot { new_root } => {
            // Handles of source filesystems are no longer needed once cloned; the bind clones
            // stay. Closing the overlays' fds here keeps nothing of the host open.
            sys::pivot_root(new_root)
        }
        Step::NewFs {
            handle,
            fstype,
            attrs,
        } => {
            let fd = sys::fs_mount(fstype, &[], *attrs)?;
            put(handles, *handle, fd);
            Ok(())
        }
        Step::Mount {
            fstype,
            target,
            options,
            attrs,
        } => {
            let fd = sys::fs_mount(fstype, options, *attrs)?;
            sys::attach_mount(fd.as_fd(), Path::new(target))
        }
        Step::Mkdir { path, mode } => {
            let dir = sys::open_dir(Path::new("/dev"))?;
            let name = Path::new(path)
                .strip_prefix("/dev")
                .map_err(io::Error::other)?;
            sys::mkdir_at(dir.as_fd(), name, 0o755)?;
            let fd = confined::open_no_symlinks(
                dir.as_fd(),
                name,
                OFlags::DIRECTORY | OFlags::RDONLY,
                0,
            )?;
            sys::fchmod(fd.as_fd(), *mode)
        }
        Step::Symlink { target, link } => {
            let dir = sys::open_dir(Path::new("/dev"))?;
            let name = Path::new(link)
                .strip_prefix("/dev")
                .map_err(io::Error::other)?;
            sys::symlink_at(Path::new(target), dir.as_fd(), name)
        }
        Step::Touch { path } => {
            let dir = sys::open_dir(Path::new("/dev"))?;
            let name = Path::new(path)
                .strip_prefix("/dev")
                .map_err(io::Error::other)?;
            confined::open_no_symlinks(
                dir.as_fd(),
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o666,
            )
            .map(drop)
        }
        Step::Stub { path, kind } => {
            let dir = match kind {
                StubKind::Dir => true,
                StubKind::File => false,
                StubKind::Like(h) => {
                    let fd = handles
                        .get(*h)
                        .and_then(Option::as_ref)
                        .ok_or_else(|| io::Error::other("mount handle missing"))?;
                    sys::fstat(fd.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFDIR
                }
            };
            applied
                .stubs
                .extend(crate::stub::create(Path::new(path), dir)?);
            applied.targets.push(path.clone());
            Ok(())
        }
        Step::Attach { handle, target } => {
            let fd = take(handles, *handle)?;
            sys::attach_mount(fd.as_fd(), Path::new(target))
        }
        Step::Mask { path } => {
            let p = Path::new(path);
            missing_ok((|| {
                let meta = fs_err::symlink_metadata(p)?;
                let fd = if meta.is_dir() {
                    match &applied.mask {
                        Some(empty) => sys::clone_tree(empty.as_fd(), Path::new(""), false)?,
                        // The first masked directory gets the tmpfs itself (attached, its
                        // descriptor is cheap to close), the others clones of it.
                        None => {
                            let empty = sys::fs_mount(
                                "tmpfs",
                                &[opt("size", "0")],
                                MountAttrs {
                                    readonly: true,
                                    ..MountAttrs::SAFE
                                },
                            )?;
                            sys::attach_mount(empty.as_fd(), p)?;
                            applied.mask = Some(empty);
                            return Ok(());
                        }
                    }
                } else {
                    sys::clone_tree(
                        sys::open_dir(Path::new("/"))?.as_fd(),
                        Path::new("/dev/null"),
                        false,
                    )?
                };
                sys::attach_mount(fd.as_fd(), p)
            })())
        }
        Step::ReadOnly { path } => missing_ok(sys::remount_readonly(Path::new(path))),
        Step::SetHostname { name } => sys::sethostname(name),
        Step::ReadOnlyRoot => {
            sys::set_root_readonly(true)?;
            applied.read_only_root = true;
            Ok(())
        }
    }
}

fn get(handles: &[Option<OwnedFd>], h: usize) -> io::Result<BorrowedFd<'_>> {
    handles
        .get(h)
        .and_then(Option::as_ref)
        .map(AsFd::as_fd)
        .ok_or_else(|| io::Error::other(format!("mount handle {h} missing")))
}

/// The root overlay: `lowers` over the stub layer. A mount point the stub layer provides can
/// still be hidden by a layer (a whiteout, an opaque `/etc`); then the overlay is made again
/// with the missing ones in a second stub layer on top, whose `/etc` copies the image's
/// owner, mode and mtime, so that a file created beside a stub copies up the image's `/etc`.
/// The first overlay is dissolved before the second is made over the same upper dir.
fn mount_root(
    tmpfs: BorrowedFd<'_>,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> io::Result<OwnedFd> {
    let attrs = MountAttrs {
        nodev: true,
        ..MountAttrs::NONE
    };
    let bottom = sys::fd_path(tmpfs).join("bottom");
    let mut layers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    layers.push(&bottom);
    // Volatile: the new layer is read back for its diff and made durable by whoever stores
    // it; syncing the whole filesystem when the sandbox ends only makes the RUN wait for
    // everyone's writeback (a RUN writing 64 MiB took 90 ms instead of 64).
    let fd = sys::overlay_mount(&layers, Some((upper, work)), true, attrs)?;
    let mut missing = Vec::new();
    for (path, dir) in ROOT_MOUNT_POINTS {
        if !sys::exists_beneath(fd.as_fd(), Path::new(path))? {
            missing.push((path, dir));
        }
    }
    if missing.is_empty() {
        return Ok(fd);
    }
    let etc = match sys::lstat_at(fd.as_fd(), Path::new("etc")) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Some(st),
        _ => None,
    };
    drop(fd);
    // A volatile overlay marks its work dir; the same upper and work dir may be mounted
    // again only once the mark is gone.
    match fs_err::remove_dir_all(work.join("work/incompat")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    make_stubs(tmpfs, "top", &missing, etc.as_ref())?;
    let top = sys::fd_path(tmpfs).join("top");
    layers.insert(0, &top);
    sys::overlay_mount(&layers, Some((upper, work)), true, attrs)
}

/// Makes the mount points `entries` (relative paths, directory or file) under `dir` in the
/// tmpfs. `/etc` gets the owner, mode and times of `etc` when given.
fn make_stubs(
    tmpfs: BorrowedFd<'_>,
    dir: &str,
    entries: &[(&str, bool)],
    etc: Option<&libc::stat>,
) -> io::Result<()> {
    sys::mkdir_at(tmpfs, Path::new(dir), 0o755)?;
    let base = confined::open_no_symlinks(tmpfs, dir, OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
    let mut etc_dir: Option<OwnedFd> = None;
    for (path, is_dir) in entries {
        let (parent, name) = match path.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, *path),
        };
        let at = match parent {
            None => base.as_fd(),
            Some(p) => {
                if etc_dir.is_none() {
                    sys::mkdir_at(base.as_fd(), Path::new(p), 0o755)?;
                    let fd = confined::open_no_symlinks(
                        base.as_fd(),
                        p,
                        OFlags::DIRECTORY | OFlags::RDONLY,
                        0,
                    )?;
                    if let Some(st) = etc {
                        sys::fchown(fd.as_fd(), st.st_uid, st.st_gid)?;
                        sys::fchmod(fd.as_fd(), st.st_mode & 0o7777)?;
                    }
                    etc_dir = Some(fd);
                }
                etc_dir.as_ref().expect("made just above").as_fd()
            }
        };
        if *is_dir {
            sys::mkdir_at(at, Path::new(name), 0o755)?;
        } else {
            let fd = confined::open_no_symlinks(
                at,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                0o644,
            )?;
            sys::fchmod(fd.as_fd(), 0o644)?;
        }
    }
    if let (Some(fd), Some(st)) = (etc_dir, etc) {
        sys::futimens(fd.as_fd(), st.st_mtime, st.st_mtime_nsec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessSpec;

    #[test]
    fn plan_for_a_run_with_every_mount_kind() {
        let p = |s: &str| PathBuf::from(s);
        let spec = SandboxSpec {
            lowers: vec![p("/layers/2"), p("/layers/1")],
            upper: p("/layers/new"),
            work: p("/layers/.strata-run-x"),
            root_mountpoint: p("/state/sandbox-root"),
            hostname: "buildkitsandbox".into(),
            network: strata_graph::NetworkMode::None,
            host_sys: false,
            etc_files: vec![
                ("/etc/hosts".into(), b"127.0.0.1\tlocalhost\n".to_vec()),
                ("/etc/resolv.conf".into(), b"nameserver 10.0.0.1\n".to_vec()),
            ],
            read_only_root: true,
            stdio: Default::default(),
            tty_size: None,
            mounts: vec![
                SpecMount::Bind {
                    target: "/src".into(),
                    lowers: vec![p("/ctx")],
                    source: "app".into(),
                    scratch: None,
                },
                SpecMount::Dir {
                    target: "/root/.cache".into(),
                    dir: p("/state/cache-mounts/ab"),
                    readonly: false,
                },
                SpecMount::Tmpfs {
                    target: "/tmp".into(),
                    size: Some(1 << 20),
                },
                SpecMount::File {
                    target: "/run/secrets/token".into(),
                    contents: b"s3cret".to_vec(),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            ],
            process: ProcessSpec {
                args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                insecure: false,
                no_new_privs: true,
            },
        };
        let plan = SandboxPlan::new(&spec);
        insta::assert_debug_snapshot!(plan.steps());
    }
}
