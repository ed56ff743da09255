//! The DAG itself: nodes stored once per hash, edges from inputs to consumers.

use crate::config::{History, ImageConfig};
use crate::hash::NodeHash;
use crate::loc::SourceRange;
use crate::op::Op;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeSet, HashMap};

/// Index of a node in its [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// One vertex: an operation, its inputs and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What the node does.
    pub op: Op,
    /// Its inputs, in the order the op refers to them (`inputs[0]` is the parent filesystem for
    /// ops that have one).
    pub inputs: Vec<NodeId>,
    /// Hash of `op` and the inputs' hashes.
    pub hash: NodeHash,
    /// Display name, as BuildKit prints it: `[build 2/4] RUN make`.
    pub label: String,
    /// The Dockerfile lines it came from; `None` for sources that no line names (the context).
    pub loc: Option<SourceRange>,
}

/// What a build produces for one stage: the node holding its filesystem, its image config and
/// the history entries its instructions add on top of the base image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The stage's name (or its index, as text, when unnamed).
    pub stage: String,
    /// The node whose filesystem is the stage's result.
    pub node: NodeId,
    /// The final image config of the stage.
    pub config: ImageConfig,
    /// History entries added by this stage and the stages it is based on, in order; the base
    /// image's own history comes first and is not included.
    pub history: Vec<History>,
    /// Every node the build of this target must run, in Dockerfile order (config-only nodes
    /// included, unreachable stages excluded).
    pub nodes: Vec<NodeId>,
    /// The image's `author` (`MAINTAINER`), a top-level field of the image config.
    pub author: Option<String>,
}

/// A build graph: content-hashed, deduplicated nodes and the targets to build.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    dag: DiGraph<Node, (), u32>,
    by_hash: HashMap<NodeHash, NodeId>,
    /// What the build exports; usually one entry, the target stage.
    pub targets: Vec<Target>,
    /// Proxy variables from `--build-arg` (`HTTP_PROXY=...` and `http_proxy=...`) that every
    /// RUN gets at run time, after its own env, unless its env sets them. Like BuildKit's
    /// `ProxyEnv` they are not part of any node hash or history, so changing a proxy does not
    /// invalidate the cache. (A proxy declared with `ARG` is in the exec env instead.)
    pub proxy_env: Vec<String>,
    /// The nodes each lowered stage added, by stage name and by index (`--no-cache-filter`).
    pub stage_nodes: std::collections::BTreeMap<String, Vec<NodeId>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node, or returns the existing node with the same hash (the first label and
    /// location are kept).
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        label: impl Into<String>,
        loc: Option<SourceRange>,
    ) -> NodeId {
        let input_hashes: Vec<NodeHash> = inputs.iter().map(|&i| self.dag[i].hash).collect();
        let hash = NodeHash::of(&op, &input_hashes);
        if let Some(&id) = self.by_hash.get(&hash) {
            return id;
        }
        let id = self.dag.add_node(Node {
            op,
            inputs: inputs.clone(),
            hash,
            label: label.into(),
            loc,
        });
        let mut seen = BTreeSet::new();
        for input in inputs {
            if seen.insert(input) {
                self.dag.add_edge(input, id, ());
            }
        }
        self.by_hash.insert(hash, id);
        id
    }

    /// The node `id`.
    ///
    /// # Panics
    /// When `id` is not a node of this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id]
    }

    /// The node with `hash`, if any.
    pub fn by_hash(&self, hash: &NodeHash) -> Option<NodeId> {
        self.by_hash.get(hash).copied()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// All node ids, in insertion order (inputs always come before their consumers).
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dag.node_indices()
    }

    /// The nodes that take `id` as an input.
    pub fn consumers(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.dag.neighbors_directed(id, Direction::Outgoing)
    }

    /// `ids` and everything they depend on, in insertion order (a valid execution order).
    pub fn closure(&self, ids: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<NodeId> = ids.into_iter().collect();
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend(self.dag[id].inputs.iter().copied());
            }
        }
        seen.into_iter().collect()
    }

    /// The underlying petgraph graph, for algorithms.
    pub fn dag(&self) -> &DiGraph<Node, (), u32> {
        &self.dag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ExecOp, ImageSource};

    fn image() -> Op {
        Op::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            id: "sha256:0000".into(),
            platform: "linux/amd64".into(),
        })
    }

    fn run(cmd: &str) -> Op {
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: Default::default(),
            security: Default::default(),
            mounts: vec![],
        })
    }

    #[test]
    fn equal_nodes_are_stored_once() {
        let mut g = Graph::new();
        let a = g.add(image(), vec![], "FROM busybox", None);
        let b = g.add(image(), vec![], "FROM other-name", None);
        assert_eq!(a, b);
        let r1 = g.add(run("make"), vec![a], "[a 2/2] RUN make", None);
        let r2 = g.add(run("make"), vec![b], "[b 2/2] RUN make", None);
        assert_eq!(r1, r2);
        assert_eq!(g.len(), 2);
        assert_eq!(g.node(r1).label, "[a 2/2] RUN make");
    }

    #[test]
    fn a_changed_input_changes_every_descendant() {
        let mut g = Graph::new();
        let a = g.add(image(), vec![], "", None);
        let s = g.add(Op::Scratch, vec![], "", None);
        let r1 = g.add(run("make"), vec![a], "", None);
        let r2 = g.add(run("make"), vec![s], "", None);
        assert_ne!(g.node(r1).hash, g.node(r2).hash);
        let t1 = g.add(run("test"), vec![r1], "", None);
        let t2 = g.add(run("test"), vec![r2], "", None);
        assert_ne!(g.node(t1).hash, g.node(t2).hash);
    }

    #[test]
    fn closure_lists_dependencies_before_dependents() {
        let mut g = Graph::new();
        let a = g.add(image(), vec![], "", None);
        let r = g.add(run("x"), vec![a], "", None);
        let unrelated = g.add(Op::Scratch, vec![], "", None);
        let t = g.add(run("y"), vec![r], "", None);
        assert_eq!(g.closure([t]), vec![a, r, t]);
        assert!(!g.closure([t]).contains(&unrelated));
    }

    #[test]
    fn hashes_are_stable() {
        // A changed hash invalidates every user's cache: this value changes only on purpose.
        let h = NodeHash::of(&Op::Scratch, &[]);
        insta::assert_snapshot!(h.to_hex(), @"b2c8b1b8426242ecc1eb9eca2e07186ebef5527951a8864e0ccd069d65cfb247");
        assert_eq!(NodeHash::from_hex(&h.to_hex()), Some(h));
    }
}
