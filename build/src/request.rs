//! What a build is asked to do ([`BuildRequest`]), what it tells on the way ([`BuildEvent`])
//! and what it gives back ([`BuildResult`]).

use crate::{CacheRef, CacheTo, Dockerfile, Entitlement, OutputSpec, SecretSource, SshSource};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use strata_frontend::{Diagnostic, Diagnostics};
use strata_graph::NetworkMode;
use strata_solver::Event;
use strata_store::{Digest, LayerEvent, Pushed, Reference};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// One build: every path absolute (the library does not know the current directory), every
/// value from the environment already read.
pub struct BuildRequest {
    /// The store root (`--root`).
    pub store_root: PathBuf,
    /// The Dockerfile, read.
    pub dockerfile: Dockerfile,
    /// The context directory, canonical; `None` for a build without context (`-`).
    pub context: Option<PathBuf>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    /// `--label`s added to the image.
    pub labels: BTreeMap<String, String>,
    /// `--platform` (default: this machine's; no other can be built).
    pub platform: Option<String>,
    /// `--network`: the network of RUN steps without their own.
    pub network: NetworkMode,
    /// `--allow`: the entitlements granted (BuildKit's `network.host`, `security.insecure`).
    pub allow: Vec<Entitlement>,
    /// `-t`: the names of the image.
    pub tags: Vec<Reference>,
    /// `--output`s; none means `type=image`.
    pub outputs: Vec<OutputSpec>,
    /// `--cache-from` directories.
    pub cache_from: Vec<CacheRef>,
    /// `--cache-to`.
    pub cache_to: Option<CacheTo>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--pull`: pull every base image, even one the store has (a newer one may exist).
    pub pull: bool,
    /// `--no-cache-filter`: run the steps of these stages.
    pub no_cache_filter: Vec<String>,
    /// `--security-opt no-new-privileges`: RUN commands cannot gain privileges (setuid
    /// binaries and file capabilities do nothing). Off by default, as in BuildKit.
    pub no_new_privileges: bool,
    /// The limits of the build's cgroup, where every RUN runs (`--pids-limit`, `--memory`,
    /// `--cpu-quota`, `--cpu-period`, `--cpu-shares`); `None`: no cgroup, the RUN steps run
    /// in strata's own (rootless strata, which has no cgroup of its own to write).
    pub resources: Option<strata_worker::Resources>,
    /// `--jobs`: at most this many steps at once (default: no limit, as BuildKit).
    pub jobs: Option<usize>,
    /// How long an `ADD <url>` may go without progress (`None`: the worker's 60 s).
    pub download_timeout: Option<std::time::Duration>,
    /// `--explain`: send why each step missed the cache.
    pub explain: bool,
    /// `SOURCE_DATE_EPOCH` from the environment; a build argument of that name wins.
    pub source_date_epoch: Option<String>,
    /// Where warnings and step events go; `None` drops them.
    pub progress: Option<UnboundedSender<BuildEvent>>,
    /// Where `dest=-` outputs are written (the CLI's standard output).
    pub stdout: Option<Box<dyn Write + Send>>,
    /// Cancels the build (Ctrl-C): running steps are stopped, the build fails.
    pub cancel: CancellationToken,
    /// Where `FROM` images missing from the store are pulled from, and `--push` pushes to;
    /// `None`: no pulls, and a push is an error.
    pub registry: Option<std::sync::Arc<strata_store::RegistryClient>>,
    /// Told how a push (`--push`, `push=true`) goes, in order, once the image is committed.
    pub on_push: Option<Box<dyn Fn(PushEvent) + Send + Sync>>,
    /// `--secret`s by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh` agents by id, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, SshSource>,
}

impl BuildRequest {
    /// A build of `dockerfile` in `context` into the store at `store_root`, with every option
    /// at its default: an image output, no arguments, no names.
    pub fn new(store_root: PathBuf, dockerfile: Dockerfile, context: Option<PathBuf>) -> Self {
        Self {
            store_root,
            dockerfile,
            context,
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            platform: None,
            network: NetworkMode::Default,
            allow: Vec::new(),
            tags: Vec::new(),
            outputs: Vec::new(),
            cache_from: Vec::new(),
            cache_to: None,
            no_cache: false,
            pull: false,
            no_cache_filter: Vec::new(),
            download_timeout: None,
            no_new_privileges: false,
            resources: Some(strata_worker::Resources::default()),
            jobs: None,
            explain: false,
            source_date_epoch: None,
            progress: None,
            stdout: None,
            cancel: CancellationToken::new(),
            registry: None,
            on_push: None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for BuildRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildRequest")
            .field("store_root", &self.store_root)
            .field("dockerfile", &self.dockerfile.name)
            .field("context", &self.context)
            .field("target", &self.target)
            .field("tags", &self.tags)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// What a build tells while it runs, in order: the Dockerfile's warnings, then the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// A lint warning (the build goes on).
    Warning(Diagnostic),
    /// A step's progress, from the solver.
    Step(Event),
    /// A `--cache-from` that could not be imported (the build goes on without it).
    CacheWarning(String),
}

/// How pushing the built image goes (`--push`), for each of its names in turn: the same
/// steps `strata push` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The push of this name begins.
    Started(Reference),
    /// A layer's progress.
    Layer(LayerEvent),
    /// This name is pushed: the registry has the manifest.
    Pushed(Reference, Pushed),
}

/// The image a build committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image ID (its config digest).
    pub id: Digest,
    /// The manifest digest.
    pub manifest_digest: Digest,
}

/// What a successful build did.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The committed image, when an output needed one.
    pub image: Option<BuiltImage>,
    /// The image's names (`docker.io/library/app:1`).
    pub names: Vec<String>,
    /// Steps taken from the cache.
    pub cached: usize,
    /// Steps run.
    pub executed: usize,
    /// How long the cached steps took when they ran.
    pub time_saved: Duration,
    /// How long the build took, outputs included.
    pub elapsed: Duration,
    /// The Dockerfile's warnings (also sent as [`BuildEvent::Warning`]).
    pub warnings: Diagnostics,
}

impl BuildResult {
    /// `--metadata-file`'s content: BuildKit's image keys and strata's cache statistics.
    pub fn metadata(&self) -> serde_json::Value {
        let mut meta = serde_json::json!({
            "strata.cache": {
                "cached": self.cached,
                "executed": self.executed,
                "seconds": self.elapsed.as_secs_f64(),
                "seconds_saved": self.time_saved.as_secs_f64(),
            }
        });
        if let Some(image) = &self.image {
            meta["containerimage.digest"] = image.manifest_digest.to_string().into();
            meta["containerimage.config.digest"] = image.id.to_string().into();
            if !self.names.is_empty() {
                meta["image.name"] = self.names.join(",").into();
            }
        }
        meta
    }
}
