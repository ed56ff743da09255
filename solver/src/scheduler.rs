//! The scheduler: one task owns the graph state; every node whose inputs are ready is spawned,
//! up to `jobs` at once; results come back on the join set. The first failure cancels the rest,
//! and the solve returns only after every running step has stopped and cleaned up.

use crate::backend::{Backend, Job, LogSink, StepError};
use crate::error::SolveError;
use crate::event::Event;
use crate::key::key_parts;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use strata_cache::CacheKey;
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
    /// `--no-cache-filter`: run these nodes (the frontend maps stage names to nodes).
    Nodes(HashSet<NodeId>),
}

impl NoCache {
    fn applies_to(&self, node: NodeId) -> bool {
        match self {
            NoCache::Off => false,
            NoCache::All => true,
            NoCache::Nodes(set) => set.contains(&node),
        }
    }
}

/// How to solve.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// At most this many steps run at once (`--jobs`); at least 1.
    pub jobs: usize,
    /// Cache bypass.
    pub no_cache: NoCache,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            no_cache: NoCache::Off,
        }
    }
}

/// The results of a solve.
#[derive(Debug)]
pub struct Solved<O> {
    /// The result of every node that was needed.
    pub outputs: HashMap<NodeId, O>,
    /// The cache key of every node that was needed.
    pub keys: HashMap<NodeId, CacheKey>,
    /// Cacheable steps whose result came from the cache.
    pub cached: usize,
    /// Cacheable steps that were executed.
    pub executed: usize,
}

type StepResult<O> = (NodeId, Result<Done<O>, StepError>);

struct Done<O> {
    output: O,
    key: CacheKey,
    cached: bool,
    /// A cacheable step (counted in [`Solved::cached`] / [`Solved::executed`]).
    counted: bool,
}

/// Executes `wanted` and everything it depends on.
pub async fn solve<B: Backend>(
    backend: Arc<B>,
    graph: Arc<Graph>,
    wanted: &[NodeId],
    opts: SolveOptions,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<Solved<B::Output>, SolveError> {
    let order = graph.closure(wanted.iter().copied());
    let mut waiting: HashMap<NodeId, usize> = HashMap::new();
    let mut ready = VecDeque::new();
    for &id in &order {
        let distinct: HashSet<NodeId> = graph.node(id).inputs.iter().copied().collect();
        if distinct.is_empty() {
            ready.push_back(id);
        } else {
            waiting.insert(id, distinct.len());
        }
    }
    let needed: HashSet<NodeId> = order.iter().copied().collect();
    let semaphore = Arc::new(Semaphore::new(opts.jobs.max(1)));
    let stop = cancel.child_token();
    let mut tasks: JoinSet<StepResult<B::Output>> = JoinSet::new();
    let mut solved: Solved<B::Output> = Solved {
        outputs: HashMap::new(),
        keys: HashMap::new(),
        cached: 0,
        executed: 0,
    };
    let mut failure: Option<SolveError> = None;

    loop {
        if !stop.is_cancelled() {
            while let Some(id) = ready.pop_front() {
                let inputs: Vec<B::Output> = graph
                    .node(id)
                    .inputs
                    .iter()
                    .map(|i| solved.outputs[i].clone())
                    .collect();
                let input_keys: Vec<CacheKey> = graph
                    .node(id)
                    .inputs
                    .iter()
                    .map(|i| solved.keys[i])
                    .collect();
                let ctx = StepCtx {
                    backend: backend.clone(),
                    graph: graph.clone(),
                    id,
                    inputs,
                    input_keys,
                    use_cache: !opts.no_cache.applies_to(id),
                    events: events.clone(),
                    cancel: stop.clone(),
                    semaphore: semaphore.clone(),
                };
                tasks.spawn(async move { (id, run_step(ctx).await) });
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (id, result) = match joined {
            Ok(r) => r,
            Err(join_error) => {
                // A panicking backend is a bug; stop everything and report it.
                stop.cancel();
                failure.get_or_insert(SolveError::Step {
                    step: "a build step".into(),
                    loc: None,
                    source: StepError::failed(join_error),
                });
                continue;
            }
        };
        match result {
            Ok(done) => {
                if done.counted {
                    if done.cached {
                        solved.cached += 1;
                    } else {
                        solved.executed += 1;
                    }
                }
                solved.outputs.insert(id, done.output);
                solved.keys.insert(id, done.key);
                for consumer in graph.consumers(id) {
                    if !needed.contains(&consumer) {
                        continue;
                    }
                    let left = waiting
                        .get_mut(&consumer)
                        .expect("every needed consumer has a waiting count");
                    *left -= 1;
                    if *left == 0 {
                        ready.push_back(consumer);
                    }
                }
            }
            Err(StepError::Cancelled) => {}
            Err(source) => {
                stop.cancel();
                if failure.is_none() {
                    let node = graph.node(id);
                    let step = node.label.clone();
                    let loc = node.loc;
                    failure = Some(match source {
                        StepError::Command { exit_code, .. } => SolveError::Command {
                            step,
                            loc,
                            exit_code,
                            source,
                        },
                        source => SolveError::Step { step, loc, source },
                    });
                }
            }
        }
    }

    if let Some(err) = failure {
        return Err(err);
    }
    if cancel.is_cancelled() || wanted.iter().any(|w| !solved.outputs.contains_key(w)) {
        return Err(SolveError::Cancelled);
    }
    Ok(solved)
}

struct StepCtx<B: Backend> {
    backend: Arc<B>,
    graph: Arc<Graph>,
    id: NodeId,
    inputs: Vec<B::Output>,
    input_keys: Vec<CacheKey>,
    use_cache: bool,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
    semaphore: Arc<Semaphore>,
}

async fn run_step<B: Backend>(ctx: StepCtx<B>) -> Result<Done<B::Output>, StepError> {
    let _permit = tokio::select! {
        permit = ctx.semaphore.clone().acquire_owned() => permit.map_err(|_| StepError::Cancelled)?,
        () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
    };
    let node = ctx.graph.node(ctx.id);
    let index = ctx.id.index() as u32;
    let visible = ctx.backend.visible(node);
    let contents = ctx
        .backend
        .contents(&ctx.graph, ctx.id, &ctx.inputs)
        .await?;
    let parts = key_parts(node, &ctx.input_keys, contents);
    let key = parts.key();
    let cacheable = ctx.backend.cacheable(node);
    if cacheable
        && ctx.use_cache
        && let Some(output) = ctx
            .backend
            .lookup(&ctx.graph, ctx.id, &key, &ctx.inputs)
            .await?
    {
        {
            if visible {
                let _ = ctx.events.send(Event::Cached {
                    node: index,
                    label: node.label.clone(),
                });
            }
            return Ok(Done {
                output,
                key,
                cached: true,
                counted: true,
            });
        }
    }
    if ctx.cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    if visible {
        let _ = ctx.events.send(Event::Started {
            node: index,
            label: node.label.clone(),
        });
    }
    let started = Instant::now();
    let job = Job {
        graph: ctx.graph.clone(),
        node: ctx.id,
        inputs: ctx.inputs,
        key,
        parts: parts.clone(),
        log: LogSink::new(ctx.id, ctx.events.clone()),
        cancel: ctx.cancel.clone(),
    };
    let result = ctx.backend.execute(job).await;
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            if visible && !matches!(err, StepError::Cancelled) {
                let _ = ctx.events.send(Event::Failed {
                    node: index,
                    error: err.to_string(),
                });
            }
            return Err(err);
        }
    };
    if cacheable {
        ctx.backend
            .record(&ctx.graph, ctx.id, &parts, &output)
            .await?;
    }
    if visible {
        let _ = ctx.events.send(Event::Finished {
            node: index,
            elapsed: started.elapsed(),
        });
    }
    Ok(Done {
        output,
        key,
        cached: false,
        counted: cacheable,
    })
}
