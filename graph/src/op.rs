//! Operations: what one node of the graph does.
//!
//! Every op that produces a filesystem takes its parent filesystem as `inputs[0]` of its
//! node ([`Op::Exec`], [`Op::File`], [`Op::Config`]); other inputs (a `COPY --from` stage,
//! the build context, a bind-mount source) follow and are referred to by their index into the
//! node's inputs. Ops hold only resolved, expanded values: no Dockerfile variables remain.

use serde::{Deserialize, Serialize};

/// One node's operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The empty filesystem (`FROM scratch`).
    Scratch,
    /// An image from the store, pinned to the image ID it had when the graph was made.
    Image(ImageSource),
    /// A build context (a local directory); `name` is `context` for the main one. What a
    /// consumer reads from it is named by that consumer, so only those paths enter its key.
    Context {
        /// The context's name.
        name: String,
    },
    /// A `RUN` step.
    Exec(ExecOp),
    /// `COPY`, `ADD`, or the directory `WORKDIR` creates.
    File(FileOp),
    /// A config-only instruction (ENV, LABEL, CMD, ...): no filesystem change. Nothing depends
    /// on it; it is a node so that progress and `--print-graph` show every instruction.
    Config {
        /// The instruction as it applies, variables expanded (`ENV PATH=/usr/bin`).
        instruction: String,
    },
}

impl Op {
    /// A short kind name for display and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Scratch => "scratch",
            Op::Image(_) => "image",
            Op::Context { .. } => "context",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Config { .. } => "config",
        }
    }

    /// Whether the op produces a new layer over its parent (RUN, COPY, ADD, WORKDIR's mkdir).
    pub fn makes_layer(&self) -> bool {
        matches!(self, Op::Exec(_) | Op::File(_))
    }
}

/// A base image, resolved before lowering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// The normalised reference as the user wrote it (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image ID (config digest, `sha256:...`) it resolved to.
    pub id: String,
    /// `os/arch[/variant]`.
    pub platform: String,
}

/// A `RUN`: the process and the mounts it sees. The root filesystem is `inputs[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    /// argv, shell form already wrapped in the SHELL.
    pub args: Vec<String>,
    /// The full environment, `KEY=VALUE`, in order (image env, then ARGs in scope).
    pub env: Vec<String>,
    /// The working directory (absolute), created if missing.
    pub cwd: String,
    /// `user[:group]` as in USER; empty means root.
    pub user: String,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// `--mount`s, in the order given.
    pub mounts: Vec<Mount>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The engine's default: a network namespace of the step's own, with outbound access.
    #[default]
    Default,
    /// A new network namespace with only loopback.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// The default sandbox.
    #[default]
    Sandbox,
    /// Full capabilities (needs an entitlement).
    Insecure,
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox; empty for a secret given only as an env variable
    /// (`--mount=type=secret,id=x,env=X`).
    pub target: String,
    /// What is mounted there.
    pub kind: MountKind,
}

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// `type=bind`: `source` inside the node input `input` (a stage, image or the context).
    Bind {
        /// Index into the node's inputs.
        input: usize,
        /// Path inside that input.
        source: String,
        /// Writable (writes are discarded).
        rw: bool,
    },
    /// `type=cache`: a persistent directory shared between builds, never part of a layer or key.
    Cache {
        /// The cache's id (defaults to the target).
        id: String,
        /// How concurrent builds share it.
        sharing: CacheSharing,
        /// Seed content: index into the node's inputs, and the path in it.
        from: Option<(usize, String)>,
        /// Read-only.
        readonly: bool,
        /// Mode of a freshly created cache dir.
        mode: u32,
        /// Owner of a freshly created cache dir.
        uid: u32,
        /// Group of a freshly created cache dir.
        gid: u32,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// `type=secret`.
    Secret {
        /// Secret id.
        id: String,
        /// Expose as this env var instead of (or as well as) a file.
        env: Option<String>,
        /// Fail when the secret is not provided.
        required: bool,
        /// File mode.
        mode: u32,
        /// File owner.
        uid: u32,
        /// File group.
        gid: u32,
    },
    /// `type=ssh`.
    Ssh {
        /// Agent id.
        id: String,
        /// Fail when no agent is provided.
        required: bool,
        /// Socket mode.
        mode: u32,
        /// Socket owner.
        uid: u32,
        /// Socket group.
        gid: u32,
    },
    /// A generated read-only file (the script of a `RUN <<EOF` heredoc with a shebang).
    File {
        /// File contents.
        contents: String,
        /// File mode.
        mode: u32,
    },
}

/// How `type=cache` mounts are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Concurrent writers share the directory.
    #[default]
    Shared,
    /// Each concurrent writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// File operations applied in order to the parent filesystem (`inputs[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// The actions.
    pub actions: Vec<FileAction>,
}

/// `user[:group]` for `--chown`, resolved in the destination's `/etc/passwd` and `/etc/group`
/// when it is a name, taken as given when numeric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chown {
    /// User name or numeric uid.
    pub user: String,
    /// Group name or numeric gid; `None` means the user's primary group.
    pub group: Option<String>,
}

/// One file action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// COPY or ADD of local sources.
    Copy {
        /// Index into the node's inputs of the source filesystem (context, stage or image).
        from: usize,
        /// Source paths or globs inside the source, cleaned and `/`-rooted (`/src/main.c`,
        /// `/*.txt`; `/` is the whole source). With `parents`, a `/./` pivot is kept
        /// (`/src/./pkg/a.go`). They are copied one after another, in order.
        sources: Vec<String>,
        /// Absolute destination (WORKDIR applied).
        dest: String,
        /// The destination ends with `/`: sources go inside it. Without it BuildKit copies
        /// each source to `dest` itself (a later file overwrites an earlier one), unless `dest`
        /// already is a directory or a wildcard matched several files.
        dest_is_dir: bool,
        /// `--chown`.
        chown: Option<Chown>,
        /// `--chmod`, as written (octal).
        chmod: Option<String>,
        /// `--link`.
        link: bool,
        /// `--parents`.
        parents: bool,
        /// `--exclude` patterns.
        exclude: Vec<String>,
        /// ADD: extract local archives into the destination.
        unpack: bool,
    },
    /// Create a file with fixed contents (a COPY/ADD heredoc source); missing parent
    /// directories are created `0755` root, as COPY creates its destination.
    MkFile {
        /// Absolute path.
        path: String,
        /// Bytes to write.
        contents: String,
        /// Mode bits.
        mode: u32,
        /// Owner.
        chown: Option<Chown>,
    },
    /// Create a directory and its parents (WORKDIR).
    Mkdir {
        /// Absolute path.
        path: String,
        /// Mode bits of created directories.
        mode: u32,
        /// Owner of created directories.
        chown: Option<Chown>,
    },
    /// ADD of a URL: downloaded; extracted into `dest` only with `--unpack=true` when it is an
    /// archive (BuildKit's default for a URL is to leave it as it is).
    Download {
        /// The URL.
        url: String,
        /// Absolute destination.
        dest: String,
        /// The destination is a directory.
        dest_is_dir: bool,
        /// `--checksum` (`sha256:...`).
        checksum: Option<String>,
        /// `--chown`.
        chown: Option<Chown>,
        /// `--chmod`.
        chmod: Option<String>,
        /// `--unpack=true`: an archive is extracted into `dest` (a directory) instead.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unpack: bool,
    },
    /// ADD of a git repository: the tree at `reference` (or its `subdir`) copied into `dest`.
    /// The commit it names is resolved before the step's cache key is made, and that commit
    /// enters the key, so a moved branch rebuilds.
    Git {
        /// The remote as git takes it (`https://host/o/r.git`, `git@host:o/r.git`), with no
        /// fragment or query.
        remote: String,
        /// The branch, tag or commit; `None` is the remote's `HEAD`.
        reference: Option<String>,
        /// The directory of the repository to copy (`None` is its root).
        subdir: Option<String>,
        /// `--keep-git-dir`: the repository's `.git` comes along.
        keep_git_dir: bool,
        /// `--checksum`: the commit the reference must resolve to.
        checksum: Option<String>,
        /// `?mtime=commit`: every entry gets the commit's time as its mtime (BuildKit's
        /// `git.mtime=commit`), instead of the time of the checkout.
        commit_mtime: bool,
        /// Absolute destination directory.
        dest: String,
        /// `--chown`.
        chown: Option<Chown>,
        /// `--chmod`.
        chmod: Option<String>,
    },
}
