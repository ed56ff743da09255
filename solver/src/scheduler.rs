//! The scheduler: a demand-driven solve, owned by one task.
//!
//! First every key is computed: keys are made of definitions and of the checksums of context
//! files, so only the build context must be read before (a key source). Then the solve starts
//! at the wanted nodes and works down. A cacheable step first needs only its parent
//! filesystem (`inputs[0]`) and is looked up; on a hit nothing else it depends on is built —
//! a cached `COPY --from=build` never builds `build`, and an imported cache hands out only the
//! layers the final image is made of. On a miss its other inputs are needed, then it runs.
//! Work runs in spawned tasks, at most `jobs` at once; the first failure cancels the rest, and
//! the solve returns only after every running step has stopped and cleaned up. An early
//! output ([`Backend::early`]) starts the steps on it at once; a task of its own settles,
//! records and reports it, and the settled output replaces the early one.

use crate::backend::{Backend, Job, LogSink, StepError};
use crate::error::SolveError;
use crate::event::{Event, Phase, Phases};
use crate::key::key_parts;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_cache::{CacheKey, KeyParts};
use strata_graph::{Graph, NodeId};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which steps ignore the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NoCache {
    /// Use the cache everywhere.
    #[default]
    Off,
    /// `--no-cache`: run every step.
    All,
    /// `--no-cache-filter`: run these nodes and everything built from them (the frontend maps
    /// stage names to nodes).
    Nodes(HashSet<NodeId>),
}

/// How to solve.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// At most this many steps run at once (`--jobs`); at least 1; `usize::MAX` for no
    /// limit.
    pub jobs: usize,
    /// Cache bypass.
    pub no_cache: NoCache,
    /// Send an [`Event::Miss`] saying why each step that runs missed the cache.
    pub explain: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            no_cache: NoCache::Off,
            explain: false,
        }
    }
}

/// The results of a solve.
#[derive(Debug)]
pub struct Solved<O> {
    /// The result of every node the solve needed (a step skipped because its consumer was a
    /// cache hit has none).
    pub outputs: HashMap<NodeId, O>,
    /// The cache key of every node reachable from the wanted ones.
    pub keys: HashMap<NodeId, CacheKey>,
    /// Cacheable steps whose result came from the cache.
    pub cached: usize,
    /// Cacheable steps that were executed.
    pub executed: usize,
}

/// Where a node is in the solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not needed (yet).
    Idle,
    /// Needed; its key is being probed.
    Probing,
    /// Probed as a hit; waiting for its parent before its lookup.
    NeedParent,
    /// Its lookup runs.
    LookingUp,
    /// Needed with all its inputs; waiting for them before it runs.
    NeedAll,
    /// It runs.
    Running,
    /// It has an early result ([`Backend::early`]): the steps on it may start; it is being
    /// settled.
    Settling,
    /// It has a result.
    Done,
}

enum Work<O> {
    Probe(bool),
    Lookup(Option<O>),
    /// An early output ([`Backend::early`]) and the task that settles, records and reports it.
    Early(O, Settling<O>),
    Executed(O),
}

type TaskResult<O> = (NodeId, Result<Work<O>, StepError>);
type Settling<O> = std::pin::Pin<Box<dyn Future<Output = TaskResult<O>> + Send>>;

struct Solver<B: Backend> {
    backend: Arc<B>,
    graph: Arc<Graph>,
    events: UnboundedSender<Event>,
    stop: CancellationToken,
    semaphore: Arc<Semaphore>,
    tasks: JoinSet<TaskResult<B::Output>>,
    state: HashMap<NodeId, State>,
    parts: HashMap<NodeId, KeyParts>,
    no_cache: HashSet<NodeId>,
    explain: bool,
    solved: Solved<B::Output>,
    /// How long computing each node's content checksums took (nodes that read any).
    checksummed: HashMap<NodeId, Duration>,
}

/// Executes what `wanted` needs.
pub async fn solve<B: Backend>(
    backend: Arc<B>,
    graph: Arc<Graph>,
    wanted: &[NodeId],
    opts: SolveOptions,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<Solved<B::Output>, SolveError> {
    let order = graph.closure(wanted.iter().copied());
    let no_cache: HashSet<NodeId> = match &opts.no_cache {
        NoCache::Off => HashSet::new(),
        NoCache::All => order.iter().copied().collect(),
        // A step built from a step that ignores the cache ignores it too.
        NoCache::Nodes(set) => {
            let mut out: HashSet<NodeId> = HashSet::new();
            for &id in &order {
                if set.contains(&id) || graph.node(id).inputs.iter().any(|i| out.contains(i)) {
                    out.insert(id);
                }
            }
            out
        }
    };
    let mut s = Solver {
        backend,
        graph: graph.clone(),
        events,
        stop: cancel.child_token(),
        semaphore: Arc::new(Semaphore::new(opts.jobs.clamp(1, Semaphore::MAX_PERMITS))),
        tasks: JoinSet::new(),
        state: order.iter().map(|&id| (id, State::Idle)).collect(),
        parts: HashMap::new(),
        no_cache,
        explain: opts.explain,
        solved: Solved {
            outputs: HashMap::new(),
            keys: HashMap::new(),
            cached: 0,
            executed: 0,
        },
        checksummed: HashMap::new(),
    };
    let mut failure: Option<SolveError> = None;

    // Key sources first (the context), then every key.
    for &id in &order {
        if s.backend.is_key_source(graph.node(id)) {
            s.state.insert(id, State::NeedAll);
            s.spawn_execute(id);
        }
    }
    s.drain(&mut failure).await;
    if failure.is_none()
        && !s.stop.is_cancelled()
        && let Err((id, err)) = s.compute_keys(&order).await
    {
        failure = Some(s.step_error(id, err));
    }
    if failure.is_none() && !s.stop.is_cancelled() {
        for &w in wanted {
            s.need(w);
        }
        s.drain(&mut failure).await;
    }

    if let Some(err) = failure {
        return Err(err);
    }
    if cancel.is_cancelled() || wanted.iter().any(|w| !s.solved.outputs.contains_key(w)) {
        return Err(SolveError::Cancelled);
    }
    Ok(s.solved)
}

impl<B: Backend> Solver<B> {
    /// The key of every node, in dependency order; an error names the node it is about.
    async fn compute_keys(&mut self, order: &[NodeId]) -> Result<(), (NodeId, StepError)> {
        for &id in order {
            let node = self.graph.node(id);
            let available: Vec<Option<B::Output>> = node
                .inputs
                .iter()
                .map(|i| self.solved.outputs.get(i).cloned())
                .collect();
            let started = Instant::now();
            let contents = self
                .backend
                .contents(&self.graph, id, &available)
                .await
                .map_err(|e| (id, e))?;
            if !contents.is_empty() {
                self.checksummed.insert(id, started.elapsed());
            }
            let input_keys: Vec<CacheKey> =
                node.inputs.iter().map(|i| self.solved.keys[i]).collect();
            let parts = key_parts(node, &input_keys, contents);
            self.solved.keys.insert(id, parts.key());
            self.parts.insert(id, parts);
        }
        Ok(())
    }

    /// Whether the steps on `id` may start: it has a result, or an early one.
    fn done(&self, id: NodeId) -> bool {
        matches!(self.state.get(&id), Some(State::Done | State::Settling))
    }

    /// Marks `id` as needed and starts what can start.
    fn need(&mut self, id: NodeId) {
        if self.state.get(&id) != Some(&State::Idle) {
            return;
        }
        let node = self.graph.node(id);
        let cacheable = self.backend.cacheable(node);
        if cacheable && !self.no_cache.contains(&id) {
            self.spawn_probe(id);
        } else {
            if cacheable {
                self.send_miss(
                    id,
                    Some("the cache is off for this step (--no-cache)".into()),
                );
            }
            self.need_all(id);
        }
    }

    /// With `--explain`, sends why `id` missed (`reason`, or the backend's explanation).
    fn send_miss(&self, id: NodeId, reason: Option<String>) {
        let node = self.graph.node(id);
        if !self.explain || !self.backend.visible(node) {
            return;
        }
        let label = node.label.clone();
        let events = self.events.clone();
        let (backend, graph) = (self.backend.clone(), self.graph.clone());
        let parts = self.parts.get(&id).cloned();
        // Detached: an explanation never holds up the build; the event stream stays open
        // until it is sent.
        tokio::spawn(async move {
            let reason = match (reason, parts) {
                (Some(r), _) => Some(r),
                (None, Some(parts)) => backend.explain(&graph, id, &parts).await,
                (None, None) => None,
            };
            if let Some(reason) = reason {
                let _ = events.send(Event::Miss {
                    node: id.index() as u32,
                    label,
                    reason,
                });
            }
        });
    }

    /// A probe said hit: only the parent is needed before the lookup.
    fn need_parent(&mut self, id: NodeId) {
        match self.graph.node(id).inputs.first().copied() {
            Some(parent) => {
                self.state.insert(id, State::NeedParent);
                self.need(parent);
                if self.done(parent) {
                    self.spawn_lookup(id);
                }
            }
            None => self.spawn_lookup(id),
        }
    }

    fn spawn_probe(&mut self, id: NodeId) {
        if self.stop.is_cancelled() {
            return;
        }
        self.state.insert(id, State::Probing);
        let backend = self.backend.clone();
        let graph = self.graph.clone();
        let key = self.solved.keys[&id];
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let result = async {
                if stop.is_cancelled() {
                    return Err(StepError::Cancelled);
                }
                Ok(Work::Probe(backend.probe(&graph, id, &key).await?))
            }
            .await;
            (id, result)
        });
    }

    fn need_all(&mut self, id: NodeId) {
        self.state.insert(id, State::NeedAll);
        self.backend.will_execute(&self.graph, id);
        let inputs = self.graph.node(id).inputs.clone();
        for &i in &inputs {
            self.need(i);
        }
        if inputs.iter().all(|&i| self.done(i)) {
            self.spawn_execute(id);
        }
    }

    fn spawn_lookup(&mut self, id: NodeId) {
        if self.stop.is_cancelled() {
            return;
        }
        self.state.insert(id, State::LookingUp);
        let backend = self.backend.clone();
        let graph = self.graph.clone();
        let key = self.solved.keys[&id];
        let parent = graph
            .node(id)
            .inputs
            .first()
            .map(|p| self.solved.outputs[p].clone());
        let semaphore = self.semaphore.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let result = async {
                let _permit = tokio::select! {
                    p = semaphore.acquire_owned() => p.map_err(|_| StepError::Cancelled)?,
                    () = stop.cancelled() => return Err(StepError::Cancelled),
                };
                let found = backend.lookup(&graph, id, &key, parent.as_ref()).await?;
                Ok(Work::Lookup(found))
            }
            .await;
            (id, result)
        });
    }

    fn spawn_execute(&mut self, id: NodeId) {
        if self.stop.is_cancelled() {
            return;
        }
        self.state.insert(id, State::Running);
        let node = self.graph.node(id);
        let inputs: Vec<B::Output> = node
            .inputs
            .iter()
            .map(|i| self.solved.outputs[i].clone())
            .collect();
        let visible = self.backend.visible(node);
        let cacheable = self.backend.cacheable(node);
        let label = node.label.clone();
        let backend = self.backend.clone();
        let graph = self.graph.clone();
        let events = self.events.clone();
        let semaphore = self.semaphore.clone();
        let stop = self.stop.clone();
        let parts = self.parts.get(&id).cloned();
        let no_cache = self.no_cache.contains(&id);
        let phases = Phases::default();
        if let Some(elapsed) = self.checksummed.get(&id) {
            phases.add(Phase::ContextChecksum, *elapsed);
        }
        self.tasks.spawn(async move {
            let result = async {
                let _permit = tokio::select! {
                    p = semaphore.acquire_owned() => p.map_err(|_| StepError::Cancelled)?,
                    () = stop.cancelled() => return Err(StepError::Cancelled),
                };
                let index = id.index() as u32;
                if visible {
                    let _ = events.send(Event::Started { node: index, label });
                }
                let started = Instant::now();
                let job = Job {
                    graph: graph.clone(),
                    node: id,
                    inputs,
                    key: parts.as_ref().map_or(CacheKey([0; 32]), KeyParts::key),
                    parts: parts.clone().unwrap_or_else(|| KeyParts {
                        node: graph.node(id).hash,
                        inputs: vec![],
                        contents: vec![],
                    }),
                    no_cache,
                    log: LogSink::new(id, events.clone()),
                    cancel: stop.clone(),
                    phases: phases.clone(),
                };
                let failed = {
                    let events = events.clone();
                    move |err: StepError| {
                        if visible && !matches!(err, StepError::Cancelled) {
                            let _ = events.send(Event::Failed {
                                node: index,
                                error: err.to_string(),
                            });
                        }
                        err
                    }
                };
                let output = backend.execute(job).await.map_err(failed.clone())?;
                let early = backend.early(&output);
                // Settled (when early), recorded, reported: after the steps on an early
                // output started, in a task of its own outside the `jobs` limit.
                let rest = {
                    let output = output.clone();
                    async move {
                        let output = if early {
                            backend.settle(output).await.map_err(failed)?
                        } else {
                            output
                        };
                        if cacheable && let Some(parts) = &parts {
                            let recording = Instant::now();
                            backend
                                .record(&graph, id, parts, &output, started.elapsed())
                                .await?;
                            phases.add(Phase::Record, recording.elapsed());
                        }
                        if visible {
                            let _ = events.send(Event::Finished {
                                node: index,
                                elapsed: started.elapsed(),
                                phases: phases.to_vec(),
                            });
                        }
                        Ok(Work::Executed(output))
                    }
                };
                if early {
                    let rest: Settling<B::Output> = Box::pin(async move { (id, rest.await) });
                    return Ok(Work::Early(output, rest));
                }
                rest.await
            }
            .await;
            (id, result)
        });
    }

    /// A node got its result (`State::Done`) or an early one (`State::Settling`): wake the
    /// nodes waiting for it. Its settled result replaces an early one.
    fn finish(&mut self, id: NodeId, output: B::Output, state: State) {
        self.state.insert(id, state);
        self.solved.outputs.insert(id, output);
        let consumers: Vec<NodeId> = self.graph.consumers(id).collect();
        for c in consumers {
            match self.state.get(&c) {
                Some(State::NeedParent) if self.graph.node(c).inputs.first() == Some(&id) => {
                    self.spawn_lookup(c);
                }
                Some(State::NeedAll) if self.graph.node(c).inputs.iter().all(|&i| self.done(i)) => {
                    self.spawn_execute(c);
                }
                _ => {}
            }
        }
    }

    fn step_error(&self, id: NodeId, source: StepError) -> SolveError {
        let node = self.graph.node(id);
        let step = node.label.clone();
        let loc = node.loc;
        match source {
            StepError::Command { exit_code, .. } => SolveError::Command {
                step,
                loc,
                exit_code,
                source,
            },
            source => SolveError::Step { step, loc, source },
        }
    }

    /// Runs tasks until none is left, handling each result.
    async fn drain(&mut self, failure: &mut Option<SolveError>) {
        while let Some(joined) = self.tasks.join_next().await {
            let (id, result) = match joined {
                Ok(r) => r,
                Err(join_error) => {
                    // A panicking backend is a bug; stop everything and report it.
                    self.stop.cancel();
                    failure.get_or_insert(SolveError::Step {
                        step: "a build step".into(),
                        loc: None,
                        source: StepError::failed(join_error),
                    });
                    continue;
                }
            };
            match result {
                Ok(Work::Probe(true)) => self.need_parent(id),
                Ok(Work::Probe(false)) => {
                    self.send_miss(id, None);
                    self.need_all(id);
                }
                Ok(Work::Lookup(Some(output))) => {
                    self.solved.cached += 1;
                    let node = self.graph.node(id);
                    if self.backend.visible(node) {
                        let _ = self.events.send(Event::Cached {
                            node: id.index() as u32,
                            label: node.label.clone(),
                        });
                    }
                    self.finish(id, output, State::Done);
                }
                Ok(Work::Lookup(None)) => {
                    self.send_miss(id, None);
                    self.need_all(id);
                }
                Ok(Work::Early(output, settling)) => {
                    self.tasks.spawn(settling);
                    self.finish(id, output, State::Settling);
                }
                Ok(Work::Executed(output)) => {
                    if self.backend.cacheable(self.graph.node(id)) {
                        self.solved.executed += 1;
                    }
                    self.finish(id, output, State::Done);
                }
                Err(StepError::Cancelled) => {}
                Err(source) => {
                    self.stop.cancel();
                    if failure.is_none() {
                        *failure = Some(self.step_error(id, source));
                    }
                }
            }
        }
    }
}
