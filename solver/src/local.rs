//! The backend that builds on this machine: RUN and file ops through the worker, layers and
//! snapshots in the store, results and context checksums in the build cache.
//!
//! A filesystem result is its layer stack ([`Fs`]): descriptors of blobs in the store, bottom
//! first. Snapshots (one unpacked directory per layer, keyed by chain ID) are made only when a
//! step must run on top of them, so a fully cached build touches no layer at all. A fresh
//! step's overlay upper dir is diffed into a layer blob and then adopted as that layer's
//! snapshot, never unpacked again. Cached layers are pinned in the store so that `rmi` and
//! `image prune` cannot sweep what the cache may still hand out.
//!
//! A file op's layer is written while the steps on it start ([`Backend::early`]): its output
//! is an [`Fs`] with the layer *pending* (its upper dir, not yet a layer). A RUN runs on that
//! dir as its top lower at once, beside the layer's tar and hash, and waits for the layer only
//! to commit its own; every other step waits for the layer first. The dir is adopted as the
//! layer's snapshot (renamed) only once no RUN has it among its lowers.

use crate::backend::{Backend, Job, StepError};
use crate::event::{Phase, Phases, Stream};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use strata_cache::{
    CacheDb, CacheKey, CacheMountChain, Checksum, ContextFilter, ContextIndex, ImportedCache,
    KeyParts, Record, ScanOptions, Selection, StepRef,
};
use strata_graph::pattern::DirVisit;
use strata_graph::{FileAction, FileOp, Graph, MountKind, Node, NodeId, Op};
use strata_store::{
    BlobReader, Compression, Digest, LayerDescriptor, Lease, SpliceWrite, Store, chain_id,
};
use strata_worker::{
    CacheMountImports, DiffOptions, EarlierLayer, ExcludeFn, FileRequest, FileSource, GitAuth,
    ImportError, ImportedMount, MountInput, MountLayer, OutputStream, Previous, RunRequest, Worker,
    Written, write_layer, write_layer_reusing, write_layer_told,
};

/// Why a step failed inside this backend (wrapped in [`StepError::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
    /// An imported cache could not be read.
    #[error(transparent)]
    Exchange(#[from] strata_cache::ExchangeError),
    /// A cache mount could not be written as a layer.
    #[error(transparent)]
    MountLayer(#[from] strata_worker::MountLayerError),
    /// The build cache failed.
    #[error(transparent)]
    Cache(#[from] strata_cache::CacheDbError),
    /// Reading or checksumming the build context failed (Docker's wording).
    #[error("failed to compute cache key")]
    ContextKey(#[source] strata_cache::ContextError),
    /// Reading the build context failed.
    #[error(transparent)]
    Context(#[from] strata_cache::ContextError),
    /// A RUN could not be run.
    #[error(transparent)]
    Run(#[from] strata_worker::RunError),
    /// A COPY, ADD or WORKDIR failed.
    #[error(transparent)]
    File(#[from] strata_worker::FileError),
    /// Diffing a step's changes into a layer failed.
    #[error("failed to write the layer of the step")]
    Diff(#[from] strata_worker::DiffError),
    /// Exporting the final filesystem failed.
    #[error(transparent)]
    Export(strata_worker::ExportError),
    /// The graph asked for something this backend cannot give (a bug in lowering).
    #[error("internal error: {0}")]
    Graph(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal error: a background task failed")]
    Join(#[source] tokio::task::JoinError),
}

impl From<LocalError> for StepError {
    fn from(err: LocalError) -> Self {
        match err {
            LocalError::Run(run) => match run.exit_code() {
                Some(exit_code) => StepError::command(exit_code, run),
                None => StepError::failed(LocalError::Run(run)),
            },
            other => StepError::failed(other),
        }
    }
}

/// A filesystem: layers in the store, bottom first.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    /// The layers.
    pub layers: Vec<LayerDescriptor>,
    /// When each layer was made by a build step (from its cache record when it was a hit, so
    /// a fully cached rebuild gives the same image); `None` for a base image's layers.
    pub created: Vec<Option<SystemTime>>,
    /// A layer still being written on top of `layers` (an early output): only ever in the
    /// scheduler's hands between a file op and its settling, never in a solve's results.
    pending: Option<Arc<Pending>>,
}

impl PartialEq for Fs {
    fn eq(&self, other: &Fs) -> bool {
        self.layers == other.layers
            && self.created == other.created
            && match (&self.pending, &other.pending) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Fs {}

impl Fs {
    fn with_layer(&self, layer: LayerDescriptor, created: SystemTime) -> Fs {
        let mut fs = self.clone();
        fs.layers.push(layer);
        fs.created.push(Some(created));
        fs
    }
}

/// A file op's layer being written, on top of an [`Fs`]'s layers.
struct Pending {
    /// The op's upper dir (overlayfs format) the layer is written from; a RUN's top lower
    /// until the layer is adopted.
    upper: PathBuf,
    /// A RUN holds a read guard while `upper` is among its lowers; the adoption, which
    /// renames or deletes `upper`, takes the write guard.
    users: Arc<tokio::sync::RwLock<()>>,
    /// The writing of the layer; taken by the one settle that finishes it.
    writing: Mutex<Option<tokio::task::JoinHandle<Result<LayerDescriptor, LocalError>>>>,
    /// The filesystem with the layer, once settled; `Err` when the layer failed (the op's
    /// step reports why).
    settled: tokio::sync::watch::Sender<Option<Result<Arc<Fs>, ()>>>,
    /// The op's step's phases (the adoption is its commit's last part).
    phases: Phases,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("upper", &self.upper)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The settled filesystem, if settling is over.
    fn now(&self) -> Option<Result<Arc<Fs>, ()>> {
        self.settled.borrow().clone()
    }

    /// Waits until settling is over; `Err` when the layer failed or was never settled.
    async fn wait(&self) -> Result<Arc<Fs>, ()> {
        let mut rx = self.settled.subscribe();
        let settled = rx.wait_for(Option::is_some).await.map_err(|_| ())?;
        settled.clone().unwrap_or(Err(()))
    }
}

/// `fs` with its pending layer, once written and adopted (waiting for it), for a step that
/// cannot run on a pending layer; a failed layer cancels the step (its own step reports it).
async fn settled(fs: &Arc<Fs>) -> Result<Arc<Fs>, StepError> {
    match &fs.pending {
        None => Ok(fs.clone()),
        Some(p) => p.wait().await.map_err(|()| StepError::Cancelled),
    }
}

impl Fs {
    /// The chain ID of the whole stack (`None` for an empty filesystem).
    pub fn chain_id(&self) -> Option<Digest> {
        let mut chain: Option<Digest> = None;
        for l in &self.layers {
            chain = Some(chain_id(chain.as_ref(), &l.diff_id));
        }
        chain
    }
}

/// A node's result.
#[derive(Debug, Clone)]
pub enum Output {
    /// A filesystem.
    Fs(Arc<Fs>),
    /// The build context, indexed.
    Context(Arc<ContextIndex>),
}

impl Output {
    fn fs(&self) -> Result<&Arc<Fs>, LocalError> {
        match self {
            Output::Fs(fs) => Ok(fs),
            Output::Context(_) => Err(LocalError::Graph(
                "a filesystem was expected where the build context was given".into(),
            )),
        }
    }
}

/// The build context as the CLI resolved it: an absolute directory and its `.dockerignore`.
#[derive(Clone)]
pub struct ContextSource {
    /// The context directory (absolute, canonical: the stat cache is named by it).
    pub dir: PathBuf,
    /// What `.dockerignore` leaves out.
    pub filter: Arc<dyn ContextFilter + Send + Sync>,
}

impl std::fmt::Debug for ContextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextSource")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How the local backend builds.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Compression of new layer blobs (`None`: plain tar, what docker keeps; fastest).
    pub compression: Compression,
    /// Clamp layer mtimes to this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Proxy variables passed to every RUN but kept out of keys and history.
    pub proxy_env: Vec<String>,
    /// Caches imported with `--cache-from`, consulted after the local records.
    pub imported: Vec<ImportedCache>,
    /// Names this build across runs (the CLI uses the context and Dockerfile paths): with a
    /// step's stage and position it identifies the step, so `--explain` finds its last record.
    pub build_id: String,
    /// The build's secrets (`--secret`), by id: what a `RUN --mount=type=secret` reads. A
    /// value never enters a key, a record, a layer or an event.
    pub secrets: Secrets,
    /// The ssh agent sockets (`--ssh`), by id: what a `RUN --mount=type=ssh` binds.
    pub ssh: BTreeMap<String, PathBuf>,
}

/// Secret values by id. Its `Debug` shows the ids only, so no log or error prints a value.
#[derive(Clone, Default)]
pub struct Secrets(Arc<BTreeMap<String, Vec<u8>>>);

impl Secrets {
    /// The secrets `values` holds, by id.
    pub fn new(values: BTreeMap<String, Vec<u8>>) -> Self {
        Self(Arc::new(values))
    }

    /// The value of secret `id`, when the build was given it.
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        self.0.get(id).map(Vec::as_slice)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            source_date_epoch: None,
            proxy_env: Vec::new(),
            imported: Vec::new(),
            build_id: String::new(),
            secrets: Secrets::default(),
            ssh: BTreeMap::new(),
        }
    }
}

/// Layer blobs and snapshots: the store, and imported caches to fetch missing blobs from.
#[derive(Clone)]
struct Layers {
    store: Store,
    imported: Arc<Vec<ImportedCache>>,
}

impl Layers {
    /// Makes sure the blob of `layer` is in the store, copying (and verifying) it from an
    /// imported cache when it is not: layers cross over only when a build needs them.
    fn ensure(&self, layer: &LayerDescriptor) -> Result<(), LocalError> {
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        for cache in self.imported.iter() {
            if cache.fetch_into(&self.store, &layer.digest)? {
                return Ok(());
            }
        }
        Err(LocalError::Graph(format!(
            "layer {} is neither in the store nor in an imported cache",
            layer.digest
        )))
    }

    /// Whether the blob of `layer` is here or can be fetched.
    fn available(&self, layer: &LayerDescriptor) -> bool {
        self.store.has_blob(&layer.digest)
            || self.imported.iter().any(|c| c.has_blob(&layer.digest))
    }

    /// The snapshot directories of `fs`, top first (overlayfs `lowerdir` order), unpacking any
    /// that do not exist yet.
    fn lowers(&self, fs: &Fs) -> Result<Vec<PathBuf>, LocalError> {
        self.lowers_of(&fs.layers)
    }

    /// The snapshot directories of the layer chain `layers` (bottom first), top first.
    fn lowers_of(&self, layers: &[LayerDescriptor]) -> Result<Vec<PathBuf>, LocalError> {
        let mut dirs = Vec::with_capacity(layers.len());
        let mut parent: Option<Digest> = None;
        for layer in layers {
            let chain = chain_id(parent.as_ref(), &layer.diff_id);
            let snap = match self.store.snapshot(&chain) {
                Some(s) => s,
                None => {
                    self.ensure(layer)?;
                    self.store.unpack_layer(parent.as_ref(), layer)?
                }
            };
            parent = Some(snap.chain_id);
            dirs.push(snap.path);
        }
        dirs.reverse();
        Ok(dirs)
    }
}

/// Imported cache mounts, for the worker: the first imported cache that carries a mount
/// wins; its layers are fetched and unpacked (by the store's confined extractor) only now.
impl CacheMountImports for Layers {
    fn import(&self, name: &str) -> Result<Option<ImportedMount>, ImportError> {
        let Some(chain) = self.imported.iter().find_map(|c| c.cache_mount(name)) else {
            return Ok(None);
        };
        let lowers = self.lowers_of(&chain.layers)?;
        Ok(Some(ImportedMount {
            lowers,
            chain: chain.layers.clone(),
        }))
    }
}

/// A cache mount written as a layer for `--cache-to ...,cache-mounts=true`.
#[derive(Debug)]
pub struct ExportedMount {
    /// Its id and its chain, the new layer on top.
    pub chain: CacheMountChain,
    layer: MountLayer,
}

impl ExportedMount {
    /// The mount's directory name, which names it in the cache.
    pub fn name(&self) -> &str {
        &self.layer.name
    }
}

/// The commits git sources resolved to: (remote, reference) to commit id.
type GitCommits = std::collections::HashMap<(String, Option<String>), String>;

/// Builds on this machine.
pub struct LocalBackend {
    layers: Layers,
    store: Store,
    cache: Arc<CacheDb>,
    worker: Worker,
    context: Option<ContextSource>,
    options: LocalOptions,
    saved_ms: Arc<AtomicU64>,
    /// The commit each ADD of a git repository (remote, reference) resolved to in this build:
    /// resolved once, when the step's key is made, and checked out as such.
    git_commits: Arc<Mutex<GitCommits>>,
    /// The records probes found (and marked used), with whether each came from an imported
    /// cache: the lookup that follows a hit takes its record here instead of reading and
    /// marking it again (two reads of each record per cached step before).
    probed: Arc<Mutex<BTreeMap<CacheKey, (Record, bool)>>>,
    _lease: Lease,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("store", &self.store.root())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl LocalBackend {
    /// A backend over `store`, `cache` and `worker`. Holds a store lease until dropped, so no
    /// garbage collection removes a layer between its step and the image commit.
    pub fn new(
        store: Store,
        cache: Arc<CacheDb>,
        worker: Worker,
        context: Option<ContextSource>,
        options: LocalOptions,
    ) -> Result<Self, LocalError> {
        let lease = store.lease()?;
        let layers = Layers {
            store: store.clone(),
            imported: Arc::new(options.imported.clone()),
        };
        if !options.imported.is_empty() {
            worker.set_cache_mount_imports(Arc::new(layers.clone()));
        }
        Ok(Self {
            layers,
            store,
            cache,
            worker,
            context,
            options,
            saved_ms: Arc::new(AtomicU64::new(0)),
            probed: Arc::default(),
            git_commits: Arc::default(),
            _lease: lease,
        })
    }

    /// The store this backend writes into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes each cache mount this build's RUN steps used as a layer in `compression`
    /// (a delta on what it was restored or last exported as, when this runner knows) and
    /// returns their chains. Blocking.
    pub fn cache_mount_layers(
        &self,
        compression: Compression,
    ) -> Result<Vec<ExportedMount>, LocalError> {
        let state_dir = &self.worker.config().state_dir;
        let mut out = Vec::new();
        for (name, id) in self.worker.used_cache_mounts() {
            let mut writer = self.store.layer_writer(compression)?;
            let layer = strata_worker::write_cache_mount_layer(state_dir, &name, &mut writer)?;
            let mut layers = layer.base.clone();
            if layer.base.is_empty() || layer.stats.entries > 0 {
                layers.push(writer.finish()?);
            }
            out.push(ExportedMount {
                chain: CacheMountChain { id, layers },
                layer,
            });
        }
        Ok(out)
    }

    /// Records that `mounts` were exported, so the next export of each is a delta on it.
    pub fn cache_mounts_exported(&self, mounts: Vec<ExportedMount>) -> Result<(), LocalError> {
        let state_dir = &self.worker.config().state_dir;
        for m in mounts {
            m.layer.record(state_dir, m.chain.layers)?;
        }
        Ok(())
    }

    /// Persists the context's stat cache (once, after the build's checksums).
    pub fn save_context_cache(&self, index: &ContextIndex) -> Result<(), LocalError> {
        index.save_stat_cache()?;
        index.save_checksum_memo()?;
        Ok(())
    }

    /// Writes the merged filesystem of `fs` to `out` as one tar (`--output type=tar|local`).
    /// Blocking.
    pub fn export_rootfs(
        &self,
        fs: &Fs,
        out: impl std::io::Write + Send,
    ) -> Result<(), LocalError> {
        let lowers = self.layers.lowers(fs)?;
        let scratch = self.store.new_snapshot_dir()?;
        let result = strata_worker::export_rootfs(
            &lowers,
            &scratch,
            out,
            &DiffOptions {
                source_date_epoch: self.options.source_date_epoch,
            },
        );
        let _ = fs_err::remove_dir_all(&scratch);
        result.map_err(LocalError::Export)?;
        Ok(())
    }

    /// How long the cache hits of this build took when they ran (what the cache saved).
    pub fn time_saved(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.saved_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The commits the ADDs of git repositories of `node` resolve to now (`git ls-remote`),
    /// one checksum each, remembered for [`LocalBackend::pin_git_commits`]: so a moved branch
    /// is a new key and an unchanged one a hit, without fetching anything.
    async fn git_contents(&self, node: &Node) -> Result<Vec<Checksum>, StepError> {
        let Op::File(op) = &node.op else {
            return Ok(Vec::new());
        };
        let mut sums = Vec::new();
        for action in &op.actions {
            let FileAction::Git {
                remote,
                reference,
                checksum,
                ..
            } = action
            else {
                continue;
            };
            let auth = self.git_auth(remote)?;
            let (r, rf, ck) = (remote.clone(), reference.clone(), checksum.clone());
            let commit = blocking(move || {
                strata_worker::resolve_git(&r, rf.as_deref(), ck.as_deref(), auth.as_ref())
                    .map_err(|e| LocalError::File(e.into()))
            })
            .await?;
            let mut h = blake3::Hasher::new();
            h.update(b"strata-git-commit-v1\0");
            h.update(commit.as_bytes());
            sums.push(Checksum(*h.finalize().as_bytes()));
            self.git_commits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((remote.clone(), reference.clone()), commit);
        }
        Ok(sums)
    }

    /// The credentials for git `remote`: for one over ssh, the build's `--ssh default` agent
    /// (as BuildKit); else among the build's secrets, as BuildKit names them
    /// (`GIT_AUTH_TOKEN.<host>` and the like). They reach git only: never a key or an event.
    fn git_auth(&self, remote: &str) -> Result<Option<GitAuth>, LocalError> {
        if let Some(socket) = self.options.ssh.get("default")
            && let Some(auth) = GitAuth::ssh_agent(remote, socket)
        {
            return Ok(Some(auth));
        }
        let secrets = &self.options.secrets;
        GitAuth::for_remote(remote, |id| secrets.get(id).map(<[u8]>::to_vec))
            .map_err(|e| LocalError::File(e.into()))
    }

    /// Replaces the reference of each git ADD in `op` by the commit its key was made with.
    fn pin_git_commits(&self, op: &mut FileOp) {
        let commits = self
            .git_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for action in &mut op.actions {
            if let FileAction::Git {
                remote, reference, ..
            } = action
                && let Some(commit) = commits.get(&(remote.clone(), reference.clone()))
            {
                *reference = Some(commit.clone());
            }
        }
    }

    /// A step's identity across builds: the build, the stage it belongs to and its position
    /// there (not its text, so an edited line is still "the same step").
    fn step_id(&self, graph: &Graph, node: NodeId) -> Checksum {
        let place = graph
            .stage_nodes
            .iter()
            .find_map(|(stage, ids)| ids.iter().position(|&n| n == node).map(|i| (stage, i)));
        let mut h = blake3::Hasher::new();
        h.update(b"strata-step-v1\0");
        h.update(self.options.build_id.as_bytes());
        h.update(b"\0");
        match place {
            Some((stage, i)) => {
                h.update(stage.as_bytes());
                h.update(&(i as u64).to_le_bytes());
            }
            None => {
                h.update(graph.node(node).label.as_bytes());
            }
        }
        Checksum(*h.finalize().as_bytes())
    }

    /// Makes sure every layer blob of `fs` is in the store (before committing an image).
    pub fn ensure_layers(&self, fs: &Fs) -> Result<(), LocalError> {
        fs.layers.iter().try_for_each(|l| self.layers.ensure(l))
    }

    /// The record of a step's result under `key`: the local one, else an imported one.
    pub fn record_for(&self, key: &CacheKey) -> Result<Option<Record>, LocalError> {
        if let Some(r) = self.cache.get(key)? {
            return Ok(Some(r));
        }
        Ok(self
            .options
            .imported
            .iter()
            .find_map(|c| c.get(key).cloned()))
    }

    fn context_exclude(&self) -> Option<ExcludeFn> {
        let ctx = self.context.as_ref()?;
        if ctx.filter.keeps_everything() {
            return None;
        }
        let filter = ctx.filter.clone();
        Some(Arc::new(move |rel: &Path, is_dir: bool| {
            let Some(r) = rel.to_str() else {
                return DirVisit::Include;
            };
            if !filter.excluded(r, is_dir) {
                DirVisit::Include
            } else if is_dir && filter.may_reinclude_below(r) {
                DirVisit::WalkExcluded
            } else {
                DirVisit::Skip
            }
        }))
    }

    /// Writes `upper` as a layer on top of `parent` and adopts it as that layer's snapshot
    /// ([`Self::write_upper`], then [`Self::adopt_upper`]).
    fn commit_upper(
        store: &Store,
        parent: &Fs,
        upper: &Path,
        options: &LocalOptions,
        phases: &Phases,
        earlier: Option<&Earlier>,
        written: Option<&Written>,
    ) -> Result<Fs, LocalError> {
        let layer = Self::write_upper(store, upper, options, phases, earlier, written)?;
        Self::adopt_upper(store, parent, upper, layer, phases)
    }

    /// Writes `upper` as a layer blob: from the earlier layer's tar where it can (an
    /// incremental COPY), from what the copy `written` there, or by the walk alone. Times the
    /// layer's walk ([`Phase::LayerDiff`]), its bytes into the store ([`Phase::LayerTar`])
    /// and the blob's commit ([`Phase::Commit`]) in `phases`. Only reads `upper`.
    fn write_upper(
        store: &Store,
        upper: &Path,
        options: &LocalOptions,
        phases: &Phases,
        earlier: Option<&Earlier>,
        written: Option<&Written>,
    ) -> Result<LayerDescriptor, LocalError> {
        let started = Instant::now();
        let new_writer = || {
            Ok::<_, LocalError>(TimedWrite {
                inner: store.layer_writer(options.compression)?,
                spent: Duration::ZERO,
            })
        };
        let diff = DiffOptions {
            source_date_epoch: options.source_date_epoch,
        };
        let (writer, stats) = match (earlier.and_then(|e| e.open(store, options)), written) {
            (Some(earlier), _) => {
                let mut writer = new_writer()?;
                let stats = write_layer_reusing(upper, &mut writer, &diff, earlier)?;
                (writer, stats)
            }
            (None, Some(written)) => {
                write_layer_told(upper, new_writer()?, &diff, written, new_writer)?
            }
            (None, None) => {
                let mut writer = new_writer()?;
                let stats = write_layer(upper, &mut writer, &diff)?;
                (writer, stats)
            }
        };
        phases.add(
            Phase::LayerDiff,
            started
                .elapsed()
                .saturating_sub(writer.spent)
                .saturating_sub(stats.reuse_time),
        );
        phases.add(Phase::LayerTar, writer.spent);
        if stats.reused > 0 {
            phases.add(Phase::LayerReuse, stats.reuse_time);
        }
        phases.time(Phase::Commit, || {
            writer.inner.finish().map_err(LocalError::from)
        })
    }

    /// Adopts `upper`, written as `layer`, as that layer's snapshot on top of `parent`.
    fn adopt_upper(
        store: &Store,
        parent: &Fs,
        upper: &Path,
        layer: LayerDescriptor,
        phases: &Phases,
    ) -> Result<Fs, LocalError> {
        phases.time(Phase::Commit, || {
            store.adopt_snapshot(parent.chain_id().as_ref(), &layer.diff_id, upper)?;
            Ok(parent.with_layer(layer, SystemTime::now()))
        })
    }
}

/// A writer that adds up the time spent in its `write`s: a layer's tar bytes going through
/// SHA-256 (and compression, when asked) into the store, as against the walk producing them.
struct TimedWrite<W> {
    inner: W,
    spent: Duration,
}

impl<W: Write> Write for TimedWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let started = Instant::now();
        let n = self.inner.write(buf);
        self.spent += started.elapsed();
        n
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let started = Instant::now();
        let r = self.inner.write_all(buf);
        self.spent += started.elapsed();
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let r = self.inner.flush();
        self.spent += started.elapsed();
        r
    }
}

impl<W: SpliceWrite> SpliceWrite for TimedWrite<W> {
    fn write_from(&mut self, blob: &BlobReader, offset: u64, len: u64) -> std::io::Result<()> {
        let started = Instant::now();
        let r = self.inner.write_from(blob, offset, len);
        self.spent += started.elapsed();
        r
    }
}

/// The output of a cache hit on `record` over `parent`, counting the time it saves; `None`
/// if its blob is gone (a store wiped by hand): a miss, never a broken image.
fn reuse(layers: &Layers, parent: &Fs, record: &Record, saved: &AtomicU64) -> Option<Output> {
    let layer = record.layer.clone()?;
    if !layers.available(&layer) {
        return None;
    }
    if let Some(ms) = record.duration_ms {
        saved.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
    Some(Output::Fs(Arc::new(
        parent.with_layer(layer, record.created),
    )))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LocalError> + Send + 'static,
) -> Result<T, LocalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(LocalError::Join)?
}

/// The same step's earlier layer, for an incremental COPY's layer tar: its snapshot directory
/// and its blob.
struct Earlier {
    dir: std::path::PathBuf,
    layer: LayerDescriptor,
}

impl Earlier {
    /// The earlier layer's tar, when it can be copied from as is: a plain tar blob (its
    /// digest is its diff ID) and this build writes plain tars too. `None` otherwise.
    fn open(&self, store: &Store, options: &LocalOptions) -> Option<EarlierLayer> {
        let plain = Compression::None;
        if options.compression != plain
            || self.layer.media_type != plain.media_type()
            || self.layer.digest != self.layer.diff_id
        {
            return None;
        }
        let tar = store.open_blob(&self.layer.digest).ok()?;
        Some(EarlierLayer {
            dir: self.dir.clone(),
            tar,
        })
    }
}

/// The same step's last result, for an incremental COPY (`strata_worker::Previous`): only
/// when it was made from the same definition on the same parent, its layer directory is
/// still there, and its context selections have the same paths as now (only contents
/// differ). Any doubt (a record or selection list missing or unreadable) means `None`: a
/// full copy.
fn previous_result(
    cache: &CacheDb,
    store: &Store,
    step: &Checksum,
    parts: &KeyParts,
    parent: &Fs,
) -> Option<(Previous, Earlier)> {
    let (_, record) = cache.last_for_step(step).ok()??;
    let same_step = record.parts.node == parts.node
        && record.parts.inputs == parts.inputs
        && record.parts.contents.len() == parts.contents.len()
        && !parts.contents.is_empty();
    let (_, below) = record.diff_ids.split_last()?;
    let same_parent = below.len() == parent.layers.len()
        && below
            .iter()
            .zip(&parent.layers)
            .all(|(d, l)| *d == l.diff_id);
    if !same_step || !same_parent {
        return None;
    }
    let layer = store.snapshot(record.chain_id.as_ref()?)?.path;
    let mut changed = std::collections::HashSet::new();
    for (old, new) in record.parts.contents.iter().zip(&parts.contents) {
        let diff = cache.selection_diff(new, old).ok()??;
        if !diff.added.is_empty() || !diff.removed.is_empty() {
            return None;
        }
        changed.extend(diff.changed);
    }
    let earlier = Earlier {
        dir: layer.clone(),
        layer: record.layer?,
    };
    Some((Previous { layer, changed }, earlier))
}

/// The context selections a node reads, with the index of the input they read from.
fn selections(node: &Node) -> Vec<(usize, Selection)> {
    match &node.op {
        Op::File(file) => file
            .actions
            .iter()
            .filter_map(|a| match a {
                FileAction::Copy {
                    from,
                    sources,
                    exclude,
                    parents,
                    ..
                } => Some((
                    *from,
                    Selection::copy(sources.iter().cloned())
                        .excluding(exclude.iter().cloned())
                        .with_parents(*parents),
                )),
                _ => None,
            })
            .collect(),
        Op::Exec(exec) => exec
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::Bind { input, source, .. } => {
                    Some((*input, Selection::copy([source.clone()])))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Backend for LocalBackend {
    type Output = Output;

    fn visible(&self, node: &Node) -> bool {
        !matches!(node.op, Op::Scratch | Op::Config { .. })
    }

    fn cacheable(&self, node: &Node) -> bool {
        node.op.makes_layer()
    }

    fn is_key_source(&self, node: &Node) -> bool {
        matches!(node.op, Op::Context { .. })
    }

    async fn contents(
        &self,
        graph: &Graph,
        node: NodeId,
        inputs: &[Option<Output>],
    ) -> Result<Vec<Checksum>, StepError> {
        let mut sums = self.git_contents(graph.node(node)).await?;
        let wanted: Vec<(Arc<ContextIndex>, Selection)> = selections(graph.node(node))
            .into_iter()
            .filter_map(|(input, sel)| match inputs.get(input) {
                Some(Some(Output::Context(index))) => Some((index.clone(), sel)),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(sums);
        }
        let cache = self.cache.clone();
        let context_sums = blocking(move || {
            let mut out = Vec::with_capacity(wanted.len());
            for (index, sel) in wanted {
                // An unchanged walk: the checksum an earlier build computed, if its list is
                // still stored (`--explain` reads it).
                if let Some(sum) = index.memoized_checksum(&sel)
                    && cache.has_selection(&sum)
                {
                    out.push(sum);
                    continue;
                }
                let parts = index.checksum_parts(&sel).map_err(LocalError::ContextKey)?;
                cache.put_selection_parts(&parts)?;
                index.memoize(&sel, &parts);
                out.push(parts.checksum());
            }
            Ok(out)
        })
        .await?;
        sums.extend(context_sums);
        Ok(sums)
    }

    async fn probe(
        &self,
        _graph: &Graph,
        _node: NodeId,
        key: &CacheKey,
    ) -> Result<bool, StepError> {
        let cache = self.cache.clone();
        let layers = self.layers.clone();
        let probed = self.probed.clone();
        let key = *key;
        let found = blocking(move || {
            let record = match cache.get(&key)? {
                Some(r) => Some((r, false)),
                None => layers
                    .imported
                    .iter()
                    .find_map(|c| c.get(&key).map(|r| (r.clone(), true))),
            };
            let Some(record) = record else {
                return Ok(false);
            };
            let hit = record.0.layer.as_ref().is_some_and(|l| layers.available(l));
            if hit {
                probed.lock().expect("no probe panics").insert(key, record);
            }
            Ok(hit)
        })
        .await?;
        Ok(found)
    }

    async fn lookup(
        &self,
        _graph: &Graph,
        _node: NodeId,
        key: &CacheKey,
        parent: Option<&Output>,
    ) -> Result<Option<Output>, StepError> {
        let Some(parent) = parent else {
            return Ok(None);
        };
        let parent = settled(parent.fs().map_err(StepError::from)?).await?;
        let key = *key;
        let probed = self.probed.lock().expect("no probe panics").remove(&key);
        if let Some((record, false)) = &probed {
            // Read and marked used by this build's probe: only the blob's `statx` is left,
            // done here rather than through the blocking pool, whose round trip per step (in
            // a chain of steps, each waiting for its parent) was most of a no-op build.
            return Ok(reuse(&self.layers, &parent, record, &self.saved_ms));
        }
        let cache = self.cache.clone();
        let layers = self.layers.clone();
        let saved = self.saved_ms.clone();
        let found = blocking(move || {
            let (record, imported) = match probed {
                Some(found) => found,
                None => match cache.get(&key)? {
                    Some(r) => (r, false),
                    None => match layers.imported.iter().find_map(|c| c.get(&key)) {
                        Some(r) => (r.clone(), true),
                        None => return Ok(None),
                    },
                },
            };
            let Some(output) = reuse(&layers, &parent, &record, &saved) else {
                return Ok(None);
            };
            if imported {
                // As BuildKit: a result imported with --cache-from becomes a local record, so
                // the next build hits without --cache-from. Its selection lists are in the
                // local cache already: `contents` stored this build's, which the key matches.
                // Its layer blob comes into the store when a step or the image needs it (a
                // record whose blob never came is a miss next time, as above).
                cache.put(&key, &record)?;
            }
            Ok(Some(output))
        })
        .await?;
        Ok(found)
    }

    fn will_execute(&self, graph: &Graph, node: NodeId) {
        // A RUN that misses: its sandbox helper starts while the steps below it run (the
        // helper's exec and start-up were most of the first RUN's sandbox start).
        if let Op::Exec(exec) = &graph.node(node).op {
            let (worker, network) = (self.worker.clone(), exec.network);
            drop(tokio::task::spawn_blocking(move || {
                worker.start_helper(network)
            }));
        }
    }

    async fn execute(&self, job: Job<Output>) -> Result<Output, StepError> {
        let node = job.graph.node(job.node).clone();
        let store = self.store.clone();
        match node.op {
            Op::Scratch => Ok(Output::Fs(Arc::new(Fs::default()))),
            Op::Config { .. } => job
                .inputs
                .first()
                .cloned()
                .ok_or_else(|| LocalError::Graph("a config step without input".into()).into()),
            Op::Image(src) => {
                let phases = job.phases.clone();
                let fs = blocking(move || {
                    let image = phases.time(Phase::Image, || store.image(&src.id))?;
                    Ok(Fs {
                        created: vec![None; image.layers.len()],
                        layers: image.layers,
                        pending: None,
                    })
                })
                .await?;
                Ok(Output::Fs(Arc::new(fs)))
            }
            Op::Context { name } => {
                let Some(ctx) = self.context.clone() else {
                    return Err(LocalError::Graph(format!(
                        "the build reads the context {name:?} but none was given"
                    ))
                    .into());
                };
                let stat = self.cache.stat_cache_path(&ctx.dir);
                let phases = job.phases.clone();
                let index = blocking(move || {
                    let filter: &dyn ContextFilter = &*ctx.filter;
                    let opts = ScanOptions {
                        filter,
                        stat_cache: Some(&stat),
                        ..Default::default()
                    };
                    let index =
                        phases.time(Phase::ContextScan, || ContextIndex::scan(&ctx.dir, &opts))?;
                    // The walk freed its per-directory lists; the checksums come next.
                    strata_worker::release_free_memory();
                    Ok(index)
                })
                .await?;
                Ok(Output::Context(Arc::new(index)))
            }
            Op::Exec(mut exec) => {
                // On a layer still being written, its upper dir is the top lower, held from
                // the adoption until the process is over; the commit waits for the layer.
                let mut parent = job.inputs[0].fs().map_err(StepError::from)?.clone();
                let mut mounts = Vec::with_capacity(exec.mounts.len());
                for m in &exec.mounts {
                    mounts.push(match &m.kind {
                        MountKind::Bind { input, .. }
                        | MountKind::Cache {
                            from: Some((input, _)),
                            ..
                        } => match job.inputs.get(*input) {
                            Some(Output::Context(index)) => {
                                MountInput::Layers(vec![index.dir().to_path_buf()])
                            }
                            Some(Output::Fs(fs)) => {
                                let (l, fs) = (self.layers.clone(), settled(fs).await?);
                                let phases = job.phases.clone();
                                MountInput::Layers(
                                    blocking(move || phases.time(Phase::Unpack, || l.lowers(&fs)))
                                        .await?,
                                )
                            }
                            None => {
                                return Err(LocalError::Graph(format!(
                                    "mount input {input} is missing"
                                ))
                                .into());
                            }
                        },
                        MountKind::Secret { id, .. } => {
                            MountInput::Secret(self.options.secrets.get(id).map(<[u8]>::to_vec))
                        }
                        MountKind::Ssh { id, .. } => {
                            MountInput::Ssh(self.options.ssh.get(id).cloned())
                        }
                        _ => MountInput::None,
                    });
                }
                for kv in &self.options.proxy_env {
                    let key = strata_graph::env_key(kv);
                    let set = exec.env.iter().any(|e| strata_graph::env_key(e) == key);
                    if !set {
                        exec.env.push(kv.clone());
                    }
                }
                // Taken once the mounts' inputs are settled: one of them may be this layer.
                let mut on_pending = None;
                if let Some(p) = parent.pending.clone() {
                    let users = p.users.clone().read_owned().await;
                    match p.now() {
                        Some(Ok(fs)) => parent = fs,
                        Some(Err(())) => return Err(StepError::Cancelled),
                        None => on_pending = Some((p, users)),
                    }
                }
                let (l, p) = (self.layers.clone(), parent.clone());
                let top = on_pending.as_ref().map(|(p, _)| p.upper.clone());
                let phases = job.phases.clone();
                let (lowers, upper) = blocking(move || {
                    phases.time(Phase::Unpack, || {
                        let mut lowers = l.lowers(&p)?;
                        lowers.splice(0..0, top);
                        Ok((lowers, l.store.new_snapshot_dir()?))
                    })
                })
                .await?;
                // A layer below that fails stops the RUN as a failing step would.
                let cancel = job.cancel.child_token();
                if let Some((p, _)) = &on_pending {
                    let (p, cancel) = (p.clone(), cancel.clone());
                    tokio::spawn(async move {
                        if p.wait().await.is_err() {
                            cancel.cancel();
                        }
                    });
                }
                let log = job.log.clone();
                let run = self
                    .worker
                    .run_timed(
                        RunRequest {
                            exec,
                            lowers,
                            upper: upper.clone(),
                            mounts,
                            hostname: None,
                            binds: Vec::new(),
                            read_only_root: false,
                            container_network: false,
                        },
                        move |stream, line| {
                            let stream = match stream {
                                OutputStream::Stdout => Stream::Stdout,
                                OutputStream::Stderr => Stream::Stderr,
                            };
                            log.line(stream, line);
                        },
                        cancel.clone(),
                    )
                    .await;
                let pending = on_pending.map(|(p, users)| {
                    drop(users);
                    p
                });
                match run {
                    Ok(times) => {
                        job.phases.add(Phase::SandboxStart, times.start);
                        job.phases.add(Phase::Process, times.process);
                    }
                    Err(err) => {
                        let _ = fs_err::remove_dir_all(&upper);
                        if cancel.is_cancelled() {
                            return Err(StepError::Cancelled);
                        }
                        return Err(LocalError::Run(err).into());
                    }
                }
                if let Some(p) = pending {
                    match p.wait().await {
                        Ok(fs) => parent = fs,
                        Err(()) => {
                            let _ = fs_err::remove_dir_all(&upper);
                            return Err(StepError::Cancelled);
                        }
                    }
                }
                let options = self.options.clone();
                let phases = job.phases.clone();
                let fs = blocking(move || {
                    let result =
                        Self::commit_upper(&store, &parent, &upper, &options, &phases, None, None);
                    if result.is_err() {
                        let _ = fs_err::remove_dir_all(&upper);
                    }
                    result
                })
                .await?;
                Ok(Output::Fs(Arc::new(fs)))
            }
            Op::File(mut op) => {
                self.pin_git_commits(&mut op);
                let mut git_auth = BTreeMap::new();
                for action in &op.actions {
                    if let FileAction::Git { remote, .. } = action
                        && let Some(auth) = self.git_auth(remote).map_err(StepError::from)?
                    {
                        git_auth.insert(remote.clone(), auth);
                    }
                }
                let parent = settled(job.inputs[0].fs().map_err(StepError::from)?).await?;
                let mut sources: Vec<Option<FileSource>> = vec![None];
                for input in job.inputs.iter().skip(1) {
                    sources.push(Some(match input {
                        Output::Context(index) => FileSource::Context {
                            dir: index.dir().to_path_buf(),
                            exclude: self.context_exclude(),
                        },
                        Output::Fs(fs) => {
                            let (l, fs) = (self.layers.clone(), settled(fs).await?);
                            let phases = job.phases.clone();
                            FileSource::Layers(
                                blocking(move || phases.time(Phase::Unpack, || l.lowers(&fs)))
                                    .await?,
                            )
                        }
                    }));
                }
                let worker = self.worker.clone();
                let layers = self.layers.clone();
                let reusable = (!job.no_cache).then(|| {
                    (
                        self.cache.clone(),
                        self.step_id(&job.graph, job.node),
                        job.parts.clone(),
                    )
                });
                let phases = job.phases.clone();
                let p = parent.clone();
                let applied = blocking(move || {
                    let parent = p;
                    let (lowers, upper) = phases.time(Phase::Unpack, || {
                        Ok::<_, LocalError>((layers.lowers(&parent)?, store.new_snapshot_dir()?))
                    })?;
                    let mut earlier = None;
                    let applied = phases.time(Phase::Files, || {
                        let previous = reusable.and_then(|(cache, step, parts)| {
                            previous_result(&cache, &store, &step, &parts, &parent)
                        });
                        let (previous, e) = previous.unzip();
                        earlier = e;
                        worker.apply_file_op(FileRequest {
                            op,
                            lowers,
                            upper: upper.clone(),
                            inputs: sources,
                            previous,
                            git_auth,
                        })
                    });
                    // The copy's own tables (an incremental COPY's clone, 6 MB at 100,000
                    // files, partly on a helper thread's arena) are freed: their pages go
                    // back before the layer's walk makes its own.
                    strata_worker::release_free_memory();
                    match applied {
                        Ok(stats) => Ok((upper, earlier, stats.written)),
                        Err(e) => {
                            let _ = fs_err::remove_dir_all(&upper);
                            Err(LocalError::from(e))
                        }
                    }
                })
                .await?;
                let (upper, earlier, written) = applied;
                // The layer is written while the steps on it start (`early`, `settle`).
                let (store, options, phases) =
                    (self.store.clone(), self.options.clone(), job.phases.clone());
                let dir = upper.clone();
                let writing = tokio::task::spawn_blocking(move || {
                    Self::write_upper(
                        &store,
                        &dir,
                        &options,
                        &phases,
                        earlier.as_ref(),
                        written.as_ref(),
                    )
                });
                Ok(Output::Fs(Arc::new(Fs {
                    pending: Some(Arc::new(Pending {
                        upper,
                        users: Arc::default(),
                        writing: Mutex::new(Some(writing)),
                        settled: tokio::sync::watch::Sender::new(None),
                        phases: job.phases.clone(),
                    })),
                    ..Fs::clone(&parent)
                })))
            }
        }
    }

    fn early(&self, output: &Output) -> bool {
        matches!(output, Output::Fs(fs) if fs.pending.is_some())
    }

    async fn settle(&self, output: Output) -> Result<Output, StepError> {
        let fs = output.fs().map_err(StepError::from)?.clone();
        let Some(p) = fs.pending.clone() else {
            return Ok(output);
        };
        let writing = p.writing.lock().expect("no settle panics").take();
        let Some(writing) = writing else {
            // Another step's output on the same layer (a config step passes it on): the
            // settle that took the writing finishes it.
            return Ok(Output::Fs(settled(&fs).await?));
        };
        let written = writing.await.map_err(LocalError::Join).and_then(|r| r);
        if written.is_err() {
            // The RUNs on the upper stop now (each watches for this), not when they end.
            p.settled.send_replace(Some(Err(())));
        }
        // No RUN has the upper among its lowers from here on.
        let users = p.users.clone().write_owned().await;
        let below = Fs {
            pending: None,
            ..Fs::clone(&fs)
        };
        let (store, phases, upper) = (self.store.clone(), p.phases.clone(), p.upper.clone());
        let adopted = match written {
            Ok(layer) => {
                blocking(move || {
                    let result = Self::adopt_upper(&store, &below, &upper, layer, &phases);
                    if result.is_err() {
                        let _ = fs_err::remove_dir_all(&upper);
                    }
                    result
                })
                .await
            }
            Err(e) => {
                let _ = blocking(move || Ok(fs_err::remove_dir_all(&upper))).await;
                Err(e)
            }
        };
        let adopted = adopted.map(Arc::new);
        p.settled
            .send_replace(Some(adopted.as_ref().map(Arc::clone).map_err(|_| ())));
        drop(users);
        Ok(Output::Fs(adopted?))
    }

    async fn record(
        &self,
        graph: &Graph,
        node: NodeId,
        parts: &KeyParts,
        output: &Output,
        elapsed: std::time::Duration,
    ) -> Result<(), StepError> {
        let fs = output.fs().map_err(StepError::from)?.clone();
        let Some(layer) = fs.layers.last().cloned() else {
            return Ok(());
        };
        let chain = fs.chain_id();
        let record = Record {
            layer: Some(layer.clone()),
            chain_id: chain.clone(),
            diff_ids: fs.layers.iter().map(|l| l.diff_id.clone()).collect(),
            created: fs
                .created
                .last()
                .copied()
                .flatten()
                .unwrap_or_else(SystemTime::now),
            parts: parts.clone(),
            step: Some(StepRef {
                id: self.step_id(graph, node),
                description: graph.node(node).label.clone(),
            }),
            definition: serde_json::to_value(&graph.node(node).op).ok(),
            duration_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        };
        let cache = self.cache.clone();
        let store = self.store.clone();
        let key = parts.key();
        blocking(move || {
            if let Some(chain) = &chain {
                store.pin_layer(&layer.digest, chain)?;
            }
            cache.put(&key, &record)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn explain(&self, graph: &Graph, node: NodeId, parts: &KeyParts) -> Option<String> {
        let step = self.step_id(graph, node);
        let definition = serde_json::to_value(&graph.node(node).op).ok()?;
        let cache = self.cache.clone();
        let imported = self.layers.imported.clone();
        let store = self.store.clone();
        let parts = parts.clone();
        tokio::task::spawn_blocking(move || {
            let previous = match cache.last_for_step(&step).ok().flatten() {
                Some((_, r)) => Some(r),
                None => imported
                    .iter()
                    .filter_map(|c| c.last_for_step(&step).map(|(_, r)| r.clone()))
                    .max_by_key(|r| r.created),
            };
            let selection = |sum: &Checksum| {
                cache
                    .selection(sum)
                    .ok()
                    .flatten()
                    .or_else(|| imported.iter().find_map(|c| c.selection(sum, &store)))
            };
            strata_cache::explain_miss(&parts, &definition, previous.as_ref(), &selection)
        })
        .await
        .ok()
    }
}
