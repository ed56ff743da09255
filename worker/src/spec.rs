//! What the worker tells a sandbox: everything already resolved to host paths and plain
//! values, serialised as one JSON line on the sandbox's control socket. The sandbox reads
//! nothing else from the host except the files named here.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use strata_graph::NetworkMode;

/// One RUN, as the sandbox sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SandboxSpec {
    /// Layer dirs of the root filesystem, top first.
    pub(crate) lowers: Vec<PathBuf>,
    /// The new layer.
    pub(crate) upper: PathBuf,
    /// Overlay work dir (same filesystem as `upper`, empty).
    pub(crate) work: PathBuf,
    /// Where the root overlay is attached before pivot_root: an empty directory that is never
    /// written (each sandbox attaches there in its own mount namespace).
    pub(crate) root_mountpoint: PathBuf,
    /// UTS hostname.
    pub(crate) hostname: String,
    /// The network: the host's, or a namespace of its own handed over by the helper (with
    /// only loopback for `none`, on the RUN network for `default`).
    pub(crate) network: NetworkMode,
    /// `/sys` is a read-only bind of the host's rather than a new sysfs: rootless with the
    /// host's network, whose namespace belongs to the host's user namespace (a sysfs shows
    /// the network namespace it is mounted in, and only its owner may mount one).
    pub(crate) host_sys: bool,
    /// Files bound read-only onto `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`:
    /// (target, contents). They live in the sandbox's own tmpfs, never in a layer.
    pub(crate) etc_files: Vec<(String, Vec<u8>)>,
    /// `RUN --mount`s, in order (then a container's host binds).
    pub(crate) mounts: Vec<SpecMount>,
    /// Make `/` read-only once every mount is in place (a container's `--read-only`).
    #[serde(default)]
    pub(crate) read_only_root: bool,
    /// What the command's standard input is (a container's `-i`, `-t`); the descriptor
    /// itself is the monitor's standard input, handed over by the helper.
    #[serde(default)]
    pub(crate) stdio: SpecStdio,
    /// With [`SpecStdio::Tty`], the terminal's rows and columns.
    #[serde(default)]
    pub(crate) tty_size: Option<(u16, u16)>,
    /// The command.
    pub(crate) process: ProcessSpec,
}

/// The command's standard descriptors, as the helper set up the sandbox's monitor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SpecStdio {
    /// Standard input `/dev/null`, output and error the run's pipes.
    #[default]
    Null,
    /// Standard input a pipe (fd 0 of the monitor), output and error the run's pipes.
    Pipe,
    /// All three are a terminal made in the sandbox once its root is in place (so in its
    /// own `/dev/pts`), its controlling one; its master is sent back on fd 0 of the monitor,
    /// a unix socket.
    Tty,
}

/// The command to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProcessSpec {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: String,
    /// `user[:group]`, resolved inside the sandbox against its /etc/passwd and /etc/group.
    pub(crate) user: String,
    /// `--security=insecure`: keep every capability.
    pub(crate) insecure: bool,
    /// Set PR_SET_NO_NEW_PRIVS before exec.
    pub(crate) no_new_privs: bool,
}

/// A `RUN --mount`, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum SpecMount {
    /// `source` inside the filesystem made of `lowers` (read-only overlay, or with a
    /// throw-away upper when `scratch` is given).
    Bind {
        target: String,
        lowers: Vec<PathBuf>,
        source: String,
        scratch: Option<(PathBuf, PathBuf)>,
    },
    /// A host directory (a cache mount), or a host file or directory (a container's bind).
    Dir {
        target: String,
        dir: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs { target: String, size: Option<u64> },
    /// A read-only file with these contents (secret, heredoc script), made on a private tmpfs.
    File {
        target: String,
        contents: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A host socket or file bound read-write (ssh agent).
    Socket { target: String, path: PathBuf },
}

impl SpecMount {
    /// Whether the mount point is a file rather than a directory.
    pub(crate) fn is_file(&self) -> bool {
        matches!(self, SpecMount::File { .. } | SpecMount::Socket { .. })
    }
}
