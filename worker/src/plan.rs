//! The sandbox's mounts as data. [`SandboxPlan::new`] turns a [`SandboxSpec`] into a list of
//! [`Step`]s without touching anything, so the whole setup can be read (and snapshot-tested)
//! as a list; [`SandboxPlan::apply`] then runs them in the helper, one system call (or one
//! small group) and one error per step.
//!
//! Host paths are only used before `pivot_root`, and only to open things the parent made
//! (the layers, the scratch dir, cache dirs, host device nodes): each becomes a detached
//! mount held by a descriptor. Every path inside the sandbox is used after `pivot_root`, when
//! no symlink in the image can lead out of it. Device nodes are bind mounts of the host's
//! and everything else is `nodev`, so a node from a layer or made by `mknod` cannot be
//! opened (what Docker's device cgroup does).

use crate::spec::{SandboxSpec, SpecMount};
use crate::sys::{self, MountAttrs};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

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
    /// Mount the root overlay on `target` (a directory in the scratch dir).
    MountRoot {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A detached bind of a host path.
    CloneHost {
        handle: usize,
        source: PathBuf,
        attrs: MountAttrs,
    },
    /// A detached overlay of `lowers` (read-only, or over a throw-away upper).
    Overlay {
        handle: usize,
        lowers: Vec<PathBuf>,
        scratch: Option<(PathBuf, PathBuf)>,
        attrs: MountAttrs,
    },
    /// A detached tmpfs, private to the helper, to write files into.
    PrivateTmpfs { handle: usize },
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
    /// Bring up `lo` in the new network namespace.
    LoopbackUp,
}

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
    /// One empty read-only tmpfs, cloned onto every masked directory.
    mask: Option<OwnedFd>,
}

fn opt(k: &str, v: &str) -> (String, Option<String>) {
    (k.to_owned(), Some(v.to_owned()))
}

fn flag(k: &str) -> (String, Option<String>) {
    (k.to_owned(), None)
}

impl SandboxPlan {
    /// Plans the mounts for `spec`. Pure: reads nothing, changes nothing.
    pub(crate) fn new(spec: &SandboxSpec) -> SandboxPlan {
        let mut steps = vec![
            Step::MakePrivate,
            Step::MountRoot {
                lowers: spec.lowers.clone(),
                upper: spec.upper.clone(),
                work: spec.work.clone(),
                target: spec.root_mountpoint.clone(),
            },
        ];
        let mut next = 0;
        let mut handle = || {
            next += 1;
            next - 1
        };
        let devices: Vec<usize> = DEVICES
            .iter()
            .map(|d| {
                let h = handle();
                steps.push(Step::CloneHost {
                    handle: h,
                    source: Path::new("/dev").join(d),
                    attrs: MountAttrs {
                        nosuid: true,
                        noexec: true,
                        ..MountAttrs::NONE
                    },
                });
                h
            })
            .collect();
        let etc: Vec<(usize, String)> = spec
            .etc_files
            .iter()
            .map(|(source, target)| {
                let h = handle();
                steps.push(Step::CloneHost {
                    handle: h,
                    source: source.clone(),
                    attrs: MountAttrs {
                        readonly: true,
                        ..MountAttrs::SAFE
                    },
                });
                (h, target.clone())
            })
            .collect();
        let mut private_tmpfs = None;
        let mut user_mounts = Vec::new();
        for (i, m) in spec.mounts.iter().enumerate() {
            match m {
                SpecMount::Bind {
                    target,
                    lowers,
                    source,
                    scratch,
                } => {
                    let fs = handle();
                    steps.push(Step::Overlay {
                        handle: fs,
                        lowers: lowers.clone(),
                        scratch: scratch.clone(),
                        attrs: MountAttrs {
                            nodev: true,
                            ..MountAttrs::NONE
                        },
                    });
                    let h = handle();
                    let attrs = MountAttrs {
                        readonly: scratch.is_none(),
                        nodev: true,
                        ..MountAttrs::NONE
                    };
                    steps.push(Step::CloneInside {
                        handle: h,
                        from: fs,
                        path: source.clone(),
                        attrs,
                    });
                    user_mounts.push((Some(h), target.clone(), None));
                }
                SpecMount::Dir {
                    target,
                    dir,
                    readonly,
                } => {
                    let h = handle();
                    let attrs = MountAttrs {
                        readonly: *readonly,
                        nodev: true,
                        ..MountAttrs::NONE
                    };
                    steps.push(Step::CloneHost {
                        handle: h,
                        source: dir.clone(),
                        attrs,
                    });
                    user_mounts.push((Some(h), target.clone(), None));
                }
                SpecMount::Tmpfs { target, size } => {
                    user_mounts.push((None, target.clone(), Some(*size)))
                }
                SpecMount::File {
                    target,
                    contents,
                    mode,
                    uid,
                    gid,
                } => {
                    let tmpfs = *private_tmpfs.get_or_insert_with(|| {
                        let h = handle();
                        steps.push(Step::PrivateTmpfs { handle: h });
                        h
                    });
                    let name = format!("file-{i}");
                    steps.push(Step::WriteFile {
                        handle: tmpfs,
                        name: name.clone(),
                        contents: Contents(contents.clone()),
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                    });
                    let h = handle();
                    let attrs = MountAttrs {
                        readonly: true,
                        nosuid: true,
                        nodev: true,
                        ..MountAttrs::NONE
                    };
                    steps.push(Step::CloneInside {
                        handle: h,
                        from: tmpfs,
                        path: name,
                        attrs,
                    });
                    user_mounts.push((Some(h), target.clone(), None));
                }
                SpecMount::Socket { target, path } => {
                    let h = handle();
                    steps.push(Step::CloneHost {
                        handle: h,
                        source: path.clone(),
                        attrs: MountAttrs::SAFE,
                    });
                    user_mounts.push((Some(h), target.clone(), None));
                }
            }
        }

        steps.push(Step::PivotRoot {
            new_root: spec.root_mountpoint.clone(),
        });

        steps.push(Step::Mount {
            fstype: "proc",
            target: "/proc".into(),
            options: vec![],
            attrs: MountAttrs::SAFE,
        });
        steps.push(Step::Mount {
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
            steps.push(Step::Touch { path: path.clone() });
            steps.push(Step::Attach {
                handle: h,
                target: path,
            });
        }
        steps.push(Step::Mkdir {
            path: "/dev/pts",
            mode: 0o755,
        });
        steps.push(Step::Mount {
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
        steps.push(Step::Symlink {
            target: "pts/ptmx",
            link: "/dev/ptmx",
        });
        steps.push(Step::Mkdir {
            path: "/dev/shm",
            mode: 0o1777,
        });
        steps.push(Step::Mount {
            fstype: "tmpfs",
            target: "/dev/shm".into(),
            options: vec![opt("mode", "1777"), opt("size", "65536k")],
            attrs: MountAttrs::SAFE,
        });
        steps.push(Step::Mkdir {
            path: "/dev/mqueue",
            mode: 0o755,
        });
        steps.push(Step::Mount {
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
            steps.push(Step::Symlink { target, link });
        }
        steps.push(Step::Mount {
            fstype: "sysfs",
            target: "/sys".into(),
            options: vec![],
            attrs: MountAttrs {
                readonly: true,
                ..MountAttrs::SAFE
            },
        });
        for path in MASKED {
            steps.push(Step::Mask { path });
        }
        for path in READONLY {
            steps.push(Step::ReadOnly { path });
        }
        for (h, target) in etc {
            steps.push(Step::Attach { handle: h, target });
        }
        for (i, (h, target, tmpfs_size)) in user_mounts.into_iter().enumerate() {
            let kind = match (&spec.mounts[i], h) {
                (SpecMount::Bind { .. }, Some(h)) => StubKind::Like(h),
                (m, _) if m.is_file() => StubKind::File,
                _ => StubKind::Dir,
            };
            steps.push(Step::Stub {
                path: target.clone(),
                kind,
            });
            match h {
                Some(h) => steps.push(Step::Attach { handle: h, target }),
                None => {
                    let mut options = vec![opt("mode", "1777")];
                    if let Some(size) = tmpfs_size.flatten() {
                        options.push(opt("size", &size.to_string()));
                    }
                    steps.push(Step::Mount {
                        fstype: "tmpfs",
                        target,
                        options,
                        attrs: MountAttrs::SAFE,
                    });
                }
            }
        }
        steps.push(Step::SetHostname {
            name: spec.hostname.clone(),
        });
        if spec.network_none {
            steps.push(Step::LoopbackUp);
        }
        SandboxPlan { steps }
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
        Step::MountRoot { .. } => "mounting the root overlay".into(),
        Step::CloneHost { source, .. } => format!("binding {}", source.display()),
        Step::Overlay { .. } => "mounting a bind source overlay".into(),
        Step::PrivateTmpfs { .. } => "mounting a private tmpfs".into(),
        Step::WriteFile { name, .. } => format!("writing {name}"),
        Step::CloneInside { path, .. } => format!("resolving mount source {path}"),
        Step::PivotRoot { .. } => "pivot_root".into(),
        Step::Mount { fstype, target, .. } => format!("mounting {fstype} on {target}"),
        Step::Mkdir { path, .. } => format!("creating {path}"),
        Step::Symlink { link, .. } => format!("creating {link}"),
        Step::Touch { path } => format!("creating {path}"),
        Step::Stub { path, .. } => format!("creating mount point {path}"),
        Step::Attach { target, .. } => format!("mounting on {target}"),
        Step::Mask { path } => format!("masking {path}"),
        Step::ReadOnly { path } => format!("making {path} read-only"),
        Step::SetHostname { .. } => "setting the hostname".into(),
        Step::LoopbackUp => "bringing up loopback".into(),
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
    use nix::fcntl::OFlag;
    match step {
        Step::MakePrivate => sys::make_rprivate(),
        Step::MountRoot {
            lowers,
            upper,
            work,
            target,
        } => {
            let lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
            let attrs = MountAttrs {
                nodev: true,
                ..MountAttrs::NONE
            };
            let fd = sys::overlay_mount(&lowers, Some((upper, work)), attrs)?;
            sys::attach_mount(fd.as_fd(), target)
        }
        Step::CloneHost {
            handle,
            source,
            attrs,
        } => {
            let fd = sys::clone_tree(sys::open_dir(Path::new("/"))?.as_fd(), source, false)?;
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
                _ => sys::overlay_mount(&lowers, upper, *attrs)?,
            };
            put(handles, *handle, fd);
            Ok(())
        }
        Step::PrivateTmpfs { handle } => {
            let fd = sys::fs_mount(
                "tmpfs",
                &[opt("mode", "700"), opt("size", "16m")],
                MountAttrs {
                    nosuid: true,
                    nodev: true,
                    ..MountAttrs::NONE
                },
            )?;
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
            let dir = handles
                .get(*handle)
                .and_then(Option::as_ref)
                .ok_or_else(|| io::Error::other("private tmpfs missing"))?;
            let fd = sys::open_beneath(
                dir.as_fd(),
                Path::new(name),
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
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
            let inside = sys::open_in_root(root.as_fd(), Path::new(path), OFlag::O_PATH)?;
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
            let fd = sys::open_beneath(dir.as_fd(), name, OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)?;
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
            sys::open_beneath(
                dir.as_fd(),
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
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
                    let empty = match applied.mask.take() {
                        Some(fd) => fd,
                        None => sys::fs_mount(
                            "tmpfs",
                            &[opt("size", "0")],
                            MountAttrs {
                                readonly: true,
                                ..MountAttrs::SAFE
                            },
                        )?,
                    };
                    let clone = sys::clone_tree(empty.as_fd(), Path::new(""), false)?;
                    applied.mask = Some(empty);
                    clone
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
        Step::LoopbackUp => sys::loopback_up(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessSpec;

    #[test]
    fn plan_for_a_run_with_every_mount_kind() {
        let p = |s: &str| PathBuf::from(s);
        let spec = SandboxSpec {
            scratch: p("/s"),
            lowers: vec![p("/s/stubs"), p("/layers/2"), p("/layers/1")],
            upper: p("/layers/new"),
            work: p("/s/work"),
            root_mountpoint: p("/s/root"),
            hostname: "buildkitsandbox".into(),
            network_none: true,
            etc_files: vec![
                (p("/s/hosts"), "/etc/hosts".into()),
                (p("/s/resolv.conf"), "/etc/resolv.conf".into()),
            ],
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
            status_file: p("/s/status.json"),
        };
        let plan = SandboxPlan::new(&spec);
        insta::assert_debug_snapshot!(plan.steps());
    }
}
