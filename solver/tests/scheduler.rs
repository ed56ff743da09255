//! The scheduler against a fake backend: ordering, --jobs, parallel branches, cancellation on
//! the first failure, cache hits, content-key invalidation, --no-cache, early outputs.
#![expect(
    clippy::unwrap_used,
    reason = "a fake backend in a test panics on poisoned locks"
)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_graph::{Graph, Node, NodeId, Op};
use strata_solver::{
    Backend, CacheKey, Checksum, Event, Job, KeyParts, NoCache, SolveError, SolveOptions,
    StepError, solve,
};
use tokio_util::sync::CancellationToken;

/// Ops are config nodes whose text is `name [sleep=MS] [fail] [hang] [early] [settle=MS]
/// [settlefail]`. An `early` step's output is `early:` and its name, settled (after `settle`
/// ms, or failing with `settlefail`) into the plain output.
#[derive(Default)]
struct Fake {
    cache: Mutex<HashMap<CacheKey, String>>,
    content: Mutex<HashMap<String, u8>>,
    executed: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    saw_cancel: Mutex<Vec<String>>,
    /// `will_execute`, `execute` and finished `settle` calls in order: `"will join"`, `"run
    /// base"`, `"settled base"`.
    journal: Mutex<Vec<String>>,
    /// Early steps by name: their text and their settled output.
    early: Mutex<HashMap<String, (String, String)>>,
    settles: AtomicUsize,
}

fn text(node: &Node) -> &str {
    match &node.op {
        Op::Config { instruction } => instruction,
        _ => "",
    }
}

fn name(node: &Node) -> String {
    text(node)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

impl Backend for Fake {
    type Output = String;

    fn visible(&self, _node: &Node) -> bool {
        true
    }

    fn cacheable(&self, node: &Node) -> bool {
        !text(node).contains("source")
    }

    fn is_key_source(&self, node: &Node) -> bool {
        text(node).contains("source")
    }

    async fn contents(
        &self,
        graph: &Graph,
        node: NodeId,
        _inputs: &[Option<String>],
    ) -> Result<Vec<Checksum>, StepError> {
        let n = name(graph.node(node));
        Ok(self
            .content
            .lock()
            .unwrap()
            .get(&n)
            .map(|b| Checksum([*b; 32]))
            .into_iter()
            .collect())
    }

    async fn probe(
        &self,
        _graph: &Graph,
        _node: NodeId,
        key: &CacheKey,
    ) -> Result<bool, StepError> {
        Ok(self.cache.lock().unwrap().contains_key(key))
    }

    async fn lookup(
        &self,
        _graph: &Graph,
        _node: NodeId,
        key: &CacheKey,
        _parent: Option<&String>,
    ) -> Result<Option<String>, StepError> {
        Ok(self.cache.lock().unwrap().get(key).cloned())
    }

    fn will_execute(&self, graph: &Graph, node: NodeId) {
        let n = name(graph.node(node));
        self.journal.lock().unwrap().push(format!("will {n}"));
    }

    async fn execute(&self, job: Job<String>) -> Result<String, StepError> {
        let node = job.graph.node(job.node);
        let t = text(node).to_string();
        let n = name(node);
        self.journal.lock().unwrap().push(format!("run {n}"));
        self.executed.lock().unwrap().push(n.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let result = async {
            for word in t.split_whitespace().skip(1) {
                if let Some(ms) = word.strip_prefix("sleep=") {
                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                }
                if word == "fail" {
                    return Err(StepError::command(
                        3,
                        std::io::Error::other(format!(
                            "process \"{n}\" did not complete successfully: exit code: 3"
                        )),
                    ));
                }
                if word == "hang" {
                    job.cancel.cancelled().await;
                    self.saw_cancel.lock().unwrap().push(n.clone());
                    return Err(StepError::Cancelled);
                }
            }
            let out = format!("{n}({})", job.inputs.join(","));
            if t.split_whitespace().any(|w| w == "early") {
                self.early
                    .lock()
                    .unwrap()
                    .insert(n.clone(), (t.clone(), out));
                return Ok(format!("early:{n}"));
            }
            Ok(out)
        }
        .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn early(&self, output: &String) -> bool {
        output.starts_with("early:")
    }

    async fn settle(&self, output: String) -> Result<String, StepError> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        let n = output.trim_start_matches("early:").to_string();
        let (t, out) = self.early.lock().unwrap().get(&n).cloned().unwrap();
        for word in t.split_whitespace() {
            if let Some(ms) = word.strip_prefix("settle=") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            if word == "settlefail" {
                return Err(StepError::failed(std::io::Error::other(format!(
                    "the layer of {n} failed"
                ))));
            }
        }
        self.journal.lock().unwrap().push(format!("settled {n}"));
        Ok(out)
    }

    async fn record(
        &self,
        _graph: &Graph,
        _node: NodeId,
        parts: &KeyParts,
        output: &String,
        _elapsed: Duration,
    ) -> Result<(), StepError> {
        self.cache
            .lock()
            .unwrap()
            .insert(parts.key(), output.clone());
        Ok(())
    }
}

fn add(g: &mut Graph, text: &str, inputs: &[NodeId]) -> NodeId {
    let label = format!("[{}]", text.split_whitespace().next().unwrap());
    g.add(
        Op::Config {
            instruction: text.into(),
        },
        inputs.to_vec(),
        label,
        None,
    )
}

async fn run(
    fake: &Arc<Fake>,
    g: &Arc<Graph>,
    want: NodeId,
    opts: SolveOptions,
) -> (
    Result<strata_solver::Solved<String>, SolveError>,
    Vec<Event>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = solve(
        fake.clone(),
        g.clone(),
        &[want],
        opts,
        tx,
        CancellationToken::new(),
    )
    .await;
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (r, events)
}

fn jobs(n: usize) -> SolveOptions {
    SolveOptions {
        jobs: n,
        no_cache: NoCache::Off,
        explain: false,
    }
}

/// base → {left, right} → join; `unused` hangs off base and is never needed.
fn diamond(left: &str, right: &str) -> (Arc<Graph>, NodeId) {
    let mut g = Graph::new();
    let base = add(&mut g, "base", &[]);
    let l = add(&mut g, left, &[base]);
    let r = add(&mut g, right, &[base]);
    add(&mut g, "unused fail", &[base]);
    let join = add(&mut g, "join", &[l, r]);
    (Arc::new(g), join)
}

#[tokio::test]
async fn runs_dependencies_first_and_only_what_is_needed() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left", "right");
    let (r, _) = run(&fake, &g, join, jobs(2)).await;
    let solved = r.unwrap();
    assert_eq!(solved.outputs[&join], "join(left(base()),right(base()))");
    let executed = fake.executed.lock().unwrap().clone();
    assert_eq!(executed.first().map(String::as_str), Some("base"));
    assert_eq!(executed.last().map(String::as_str), Some("join"));
    assert!(!executed.contains(&"unused".to_string()));
    assert_eq!((solved.executed, solved.cached), (4, 0));
}

#[tokio::test]
async fn independent_branches_run_at_once_up_to_jobs() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left sleep=100", "right sleep=100");
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 2);

    let fake = Arc::new(Fake::default());
    run(&fake, &g, join, jobs(1)).await.0.unwrap();
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
}

/// The CLI's default (`usize::MAX`): every ready step runs, however many CPUs there are, as
/// in BuildKit.
#[tokio::test]
async fn without_a_limit_every_ready_step_runs_at_once() {
    let fake = Arc::new(Fake::default());
    let mut g = Graph::new();
    let base = add(&mut g, "base", &[]);
    let width = std::thread::available_parallelism().map_or(1, usize::from) + 3;
    let branches: Vec<NodeId> = (0..width)
        .map(|i| add(&mut g, &format!("b{i} sleep=200"), &[base]))
        .collect();
    let join = add(&mut g, "join", &branches);
    let g = Arc::new(g);
    run(&fake, &g, join, jobs(usize::MAX)).await.0.unwrap();
    assert_eq!(fake.max_running.load(Ordering::SeqCst), width);
}

#[tokio::test]
async fn the_first_failure_cancels_the_rest_and_names_the_step() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left sleep=20 fail", "right hang");
    let (r, events) = run(&fake, &g, join, jobs(2)).await;
    match r {
        Err(SolveError::Command {
            step, exit_code, ..
        }) => {
            assert_eq!(step, "[left]");
            assert_eq!(exit_code, 3);
        }
        other => panic!("expected a command failure, got {other:?}"),
    }
    // The hanging sibling was told to stop, and stopped before solve returned.
    assert_eq!(*fake.saw_cancel.lock().unwrap(), vec!["right".to_string()]);
    assert_eq!(fake.running.load(Ordering::SeqCst), 0);
    assert!(!fake.executed.lock().unwrap().contains(&"join".to_string()));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Failed { error, .. } if error.contains("exit code: 3")))
    );
}

#[tokio::test]
async fn an_unchanged_rebuild_is_all_cache_hits() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left", "right");
    let first = run(&fake, &g, join, jobs(2)).await.0.unwrap();
    fake.executed.lock().unwrap().clear();
    let (second, events) = run(&fake, &g, join, jobs(2)).await;
    let second = second.unwrap();
    assert!(fake.executed.lock().unwrap().is_empty());
    // join hit, so it needed only its parent chain (left, base): right was never touched.
    assert_eq!((second.executed, second.cached), (0, 3));
    assert_eq!(second.outputs[&join], first.outputs[&join]);
    let right = g
        .node_ids()
        .find(|&i| g.node(i).label == "[right]")
        .unwrap();
    assert!(!second.outputs.contains_key(&right));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Cached { .. }))
            .count(),
        3
    );
}

#[tokio::test]
async fn changed_content_reruns_exactly_the_step_and_its_descendants() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left", "right");
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    fake.executed.lock().unwrap().clear();
    fake.content.lock().unwrap().insert("left".into(), 9);
    let solved = run(&fake, &g, join, jobs(2)).await.0.unwrap();
    let mut executed = fake.executed.lock().unwrap().clone();
    executed.sort();
    assert_eq!(executed, vec!["join", "left"]);
    assert_eq!((solved.executed, solved.cached), (2, 2));
}

/// Issue 15: the backend hears that a step will run as soon as the scheduler knows it (its
/// probe missed), before the steps below it run, so it can get ready meanwhile (the local
/// backend starts its sandbox helper for a RUN); a cache hit is never announced.
#[tokio::test]
async fn a_step_that_will_run_is_announced_before_its_inputs_run() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left", "right");
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    let cold = fake.journal.lock().unwrap().clone();
    let at = |what: &str| cold.iter().position(|e| e == what).unwrap();
    assert_eq!(cold.len(), 8, "{cold:?}");
    assert!(at("will join") < at("run base"), "{cold:?}");
    assert!(at("will left") < at("run base"), "{cold:?}");
    assert!(at("will base") < at("run base"), "{cold:?}");

    fake.journal.lock().unwrap().clear();
    fake.content.lock().unwrap().insert("left".into(), 9);
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    let edit = fake.journal.lock().unwrap().clone();
    assert_eq!(edit, ["will join", "will left", "run left", "run join"]);

    fake.journal.lock().unwrap().clear();
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    assert!(fake.journal.lock().unwrap().is_empty());
}

/// An early output (a layer still being written) starts the steps on it at once, in the
/// `jobs` slot its own step held; the result kept, recorded and reported is the settled one,
/// and a cached rebuild gets it.
#[tokio::test]
async fn the_steps_on_an_early_output_start_before_it_settles() {
    let fake = Arc::new(Fake::default());
    let mut g = Graph::new();
    let base = add(&mut g, "base", &[]);
    let copy = add(&mut g, "copy early settle=300", &[base]);
    let run_step = add(&mut g, "run sleep=50", &[copy]);
    let g = Arc::new(g);
    let (r, events) = run(&fake, &g, run_step, jobs(1)).await;
    let solved = r.unwrap();
    let journal = fake.journal.lock().unwrap().clone();
    let at = |what: &str| journal.iter().position(|e| e == what).unwrap();
    assert!(at("run run") < at("settled copy"), "{journal:?}");
    assert_eq!(fake.settles.load(Ordering::SeqCst), 1);
    assert_eq!(solved.outputs[&copy], "copy(base())");
    assert_eq!(solved.outputs[&run_step], "run(early:copy)");
    assert_eq!((solved.executed, solved.cached), (3, 0));
    let finished: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Finished { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    let (copy_i, run_i) = (copy.index() as u32, run_step.index() as u32);
    assert_eq!(finished.iter().filter(|&&n| n == copy_i).count(), 1);
    let started_run = events
        .iter()
        .position(|e| matches!(e, Event::Started { node, .. } if *node == run_i))
        .unwrap();
    let finished_copy = events
        .iter()
        .position(|e| matches!(e, Event::Finished { node, .. } if *node == copy_i))
        .unwrap();
    assert!(started_run < finished_copy, "{events:?}");

    fake.journal.lock().unwrap().clear();
    let (r, _) = run(&fake, &g, run_step, jobs(1)).await;
    let solved = r.unwrap();
    assert_eq!((solved.executed, solved.cached), (0, 3));
    assert_eq!(solved.outputs[&run_step], "run(early:copy)");
    assert!(fake.journal.lock().unwrap().is_empty());
}

/// An early output that fails to settle fails the build with its own step's error, and the
/// steps started on it are cancelled.
#[tokio::test]
async fn an_early_output_that_fails_to_settle_fails_its_step() {
    let fake = Arc::new(Fake::default());
    let mut g = Graph::new();
    let base = add(&mut g, "base", &[]);
    let copy = add(&mut g, "copy early settle=50 settlefail", &[base]);
    let run_step = add(&mut g, "run hang", &[copy]);
    let g = Arc::new(g);
    let (r, events) = run(&fake, &g, run_step, jobs(2)).await;
    match r {
        Err(SolveError::Step { step, source, .. }) => {
            assert_eq!(step, "[copy]");
            assert!(
                source.to_string().contains("the layer of copy failed"),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*fake.saw_cancel.lock().unwrap(), ["run"]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Failed { node, .. } if *node == copy.index() as u32))
    );
    let recorded: Vec<String> = fake.cache.lock().unwrap().values().cloned().collect();
    assert_eq!(recorded, ["base()"]);
}

#[tokio::test]
async fn no_cache_all_and_filter() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left", "right");
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    fake.executed.lock().unwrap().clear();
    let all = SolveOptions {
        jobs: 2,
        no_cache: NoCache::All,
        explain: false,
    };
    run(&fake, &g, join, all).await.0.unwrap();
    assert_eq!(fake.executed.lock().unwrap().len(), 4);

    fake.executed.lock().unwrap().clear();
    let right = g
        .node_ids()
        .find(|&i| g.node(i).label == "[right]")
        .unwrap();
    let filter = SolveOptions {
        jobs: 2,
        no_cache: NoCache::Nodes(HashSet::from([right])),
        explain: false,
    };
    run(&fake, &g, join, filter).await.0.unwrap();
    // right reruns, and so does what is built from it; left stays cached.
    assert_eq!(
        *fake.executed.lock().unwrap(),
        vec!["right".to_string(), "join".to_string()]
    );
}

#[tokio::test]
async fn equal_steps_in_two_stages_run_once() {
    let fake = Arc::new(Fake::default());
    let mut g = Graph::new();
    let base = add(&mut g, "base", &[]);
    let a = add(&mut g, "compile sleep=10", &[base]);
    let b = add(&mut g, "compile sleep=10", &[base]);
    assert_eq!(a, b);
    let join = add(&mut g, "join", &[a, b]);
    let g = Arc::new(g);
    run(&fake, &g, join, jobs(2)).await.0.unwrap();
    let executed = fake.executed.lock().unwrap().clone();
    assert_eq!(executed.iter().filter(|n| *n == "compile").count(), 1);
}

#[tokio::test]
async fn an_outside_cancel_stops_the_build() {
    let fake = Arc::new(Fake::default());
    let (g, join) = diamond("left hang", "right hang");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.cancel();
    });
    let r = solve(fake.clone(), g, &[join], jobs(2), tx, cancel).await;
    assert!(matches!(r, Err(SolveError::Cancelled)), "{r:?}");
    assert_eq!(fake.saw_cancel.lock().unwrap().len(), 2);
}
