//! The seam between scheduling and doing: a [`Backend`] says what a node reads, finds earlier
//! results, and executes. The real backend (worker, cache, store) and the tests' fake both
//! implement it, so the scheduler is tested without namespaces or disks.

use crate::event::{Event, Phases, Stream};
use std::future::Future;
use std::sync::Arc;
use strata_cache::{CacheKey, Checksum, KeyParts};
use strata_graph::{Graph, Node, NodeId};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// Why a step did not produce a result.
///
/// Transparent: it shows the backend's error as it is and keeps that error's own causes, so
/// the CLI prints the worker's words (`process "/bin/sh -c exit 3" did not complete
/// successfully: exit code: 3`) and everything behind them.
#[derive(Debug)]
pub enum StepError {
    /// The user's command failed: not the engine's failure.
    Command {
        /// The command's exit code.
        exit_code: i32,
        /// What the backend said (the worker's `RunError`), kept whole.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The step stopped because the build was cancelled.
    Cancelled,
    /// The engine could not run the step.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl StepError {
    /// Wraps any error as an engine failure.
    pub fn failed(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StepError::Failed(Box::new(err))
    }

    /// Wraps the error of a user's command that exited with `exit_code`.
    pub fn command(exit_code: i32, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StepError::Command {
            exit_code,
            error: Box::new(err),
        }
    }

    /// The backend's error this one stands for, if any.
    pub fn inner(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            StepError::Command { error, .. } | StepError::Failed(error) => Some(error.as_ref()),
            StepError::Cancelled => None,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner() {
            Some(error) => std::fmt::Display::fmt(error, f),
            None => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().and_then(|e| e.source())
    }
}

/// Where a step sends its output lines.
#[derive(Debug, Clone)]
pub struct LogSink {
    node: u32,
    tx: UnboundedSender<Event>,
}

impl LogSink {
    pub(crate) fn new(node: NodeId, tx: UnboundedSender<Event>) -> Self {
        Self {
            node: node.index() as u32,
            tx,
        }
    }

    /// Sends one line (without its newline).
    pub fn line(&self, stream: Stream, line: &[u8]) {
        let _ = self.tx.send(Event::Log {
            node: self.node,
            stream,
            line: String::from_utf8_lossy(line).into_owned(),
        });
    }
}

/// Everything a backend gets to execute one node.
#[derive(Debug)]
pub struct Job<O> {
    /// The whole graph.
    pub graph: Arc<Graph>,
    /// The node to execute.
    pub node: NodeId,
    /// The results of `node.inputs`, in order.
    pub inputs: Vec<O>,
    /// The node's cache key.
    pub key: CacheKey,
    /// What the key was made of.
    pub parts: KeyParts,
    /// `--no-cache` applies to this step: nothing from earlier builds may be reused, not
    /// even an earlier result's unchanged files.
    pub no_cache: bool,
    /// Output lines go here.
    pub log: LogSink,
    /// Cancelled when the build stops; the backend must then kill what it runs, clean up and
    /// return [`StepError::Cancelled`].
    pub cancel: CancellationToken,
    /// Where the backend times the parts of its work (shown in the step's
    /// [`Event::Finished`]).
    pub phases: Phases,
}

/// What the scheduler needs from whoever executes nodes.
pub trait Backend: Send + Sync + 'static {
    /// A node's result (a filesystem snapshot, a context index, ...).
    type Output: Clone + Send + Sync + 'static;

    /// Whether the node's progress is shown (config-only steps are not, as in BuildKit).
    fn visible(&self, node: &Node) -> bool;

    /// Whether the node's results are looked up in and recorded to the cache.
    fn cacheable(&self, node: &Node) -> bool;

    /// Whether the node must be executed before any cache key is computed, because keys read
    /// its result (the build context, whose files COPY keys checksum). Such nodes have no
    /// inputs.
    fn is_key_source(&self, node: &Node) -> bool;

    /// Checksums of what `node` reads beyond its inputs' keys (context files), in input order.
    /// `inputs` holds the results of the node's inputs that are key sources; the others are
    /// `None` (keys are computed before anything else runs).
    fn contents(
        &self,
        graph: &Graph,
        node: NodeId,
        inputs: &[Option<Self::Output>],
    ) -> impl Future<Output = Result<Vec<Checksum>, StepError>> + Send;

    /// Whether a usable result is recorded under `key` (cheap: no parent needed). A probe that
    /// says yes may still be followed by a [`Backend::lookup`] that finds nothing (the record
    /// went away); the step then runs.
    fn probe(
        &self,
        graph: &Graph,
        node: NodeId,
        key: &CacheKey,
    ) -> impl Future<Output = Result<bool, StepError>> + Send;

    /// An earlier result recorded under `key`, if any. `parent` is the result of
    /// `inputs[0]` (the filesystem the step runs on), when the node has inputs: a hit needs
    /// nothing else, so a cached `COPY --from` never builds its source stage.
    fn lookup(
        &self,
        graph: &Graph,
        node: NodeId,
        key: &CacheKey,
        parent: Option<&Self::Output>,
    ) -> impl Future<Output = Result<Option<Self::Output>, StepError>> + Send;

    /// `node` is going to execute once its inputs are done (a miss, or a step the cache is
    /// off for): the backend may get ready for it meanwhile, while those inputs are made.
    /// Must not block.
    fn will_execute(&self, graph: &Graph, node: NodeId) {
        let _ = (graph, node);
    }

    /// Executes the node.
    fn execute(
        &self,
        job: Job<Self::Output>,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send;

    /// Whether `output`, just returned by [`Backend::execute`], is *early*: usable by the
    /// steps built on it, whose [`Backend::execute`] copes with it (a layer still being
    /// written, which a RUN can already run on), but not yet the step's result. The scheduler
    /// starts those steps at once and awaits [`Backend::settle`] for the result it records
    /// and keeps.
    fn early(&self, output: &Self::Output) -> bool {
        let _ = output;
        false
    }

    /// The result an early output becomes (see [`Backend::early`]): called once per early
    /// output, outside the `jobs` limit (the steps started on it hold their slots while they
    /// wait for it). An error fails the step that made `output`.
    fn settle(
        &self,
        output: Self::Output,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send {
        async { Ok(output) }
    }

    /// Records a fresh result under `parts.key()`; the step ran for `elapsed`.
    fn record(
        &self,
        graph: &Graph,
        node: NodeId,
        parts: &KeyParts,
        output: &Self::Output,
        elapsed: std::time::Duration,
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Why `node`, whose key is made of `parts`, missed the cache (`--explain`).
    fn explain(
        &self,
        graph: &Graph,
        node: NodeId,
        parts: &KeyParts,
    ) -> impl Future<Output = Option<String>> + Send {
        let _ = (graph, node, parts);
        async { None }
    }
}
