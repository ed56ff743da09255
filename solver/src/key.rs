//! Cache keys: when may a step's earlier result be reused?
//!
//! A node's [`CacheKey`] is blake3 over a domain tag, the hash of its op *alone* (not of its
//! inputs' definitions), the cache keys of its inputs in order, and a [`ContentKey`] for what it
//! reads beyond those inputs (the selected files of the build context for COPY/ADD and context
//! bind mounts). So a step misses exactly when its own definition changed, when an input's
//! result may have changed, or when the files it reads changed. What must NOT enter a key:
//! labels, Dockerfile line numbers, stage names, file mtimes, proxy build args (the frontend
//! keeps them out of ops), and anything about how the result is stored.

use serde::{Deserialize, Serialize};
use std::fmt;
use strata_graph::{Node, NodeHash};

const DOMAIN: &[u8] = b"strata-cache-key-v1\0";

/// The key under which a step's result is recorded and looked up.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey(pub [u8; 32]);

/// A digest of the content a step reads beyond its inputs' keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct ContentKey(pub [u8; 32]);

impl CacheKey {
    /// The key of `node` given its inputs' keys (in `node.inputs` order) and what it reads.
    pub fn compute(node: &Node, inputs: &[CacheKey], content: Option<&ContentKey>) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&NodeHash::of(&node.op, &[]).0);
        h.update(&(inputs.len() as u64).to_le_bytes());
        for key in inputs {
            h.update(&key.0);
        }
        match content {
            Some(c) => {
                h.update(&[1]);
                h.update(&c.0);
            }
            None => {
                h.update(&[0]);
            }
        }
        CacheKey(*h.finalize().as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::{Graph, Op};

    fn config(text: &str) -> Op {
        Op::Config {
            instruction: text.into(),
        }
    }

    #[test]
    fn keys_depend_on_op_inputs_and_content_but_not_labels() {
        let mut g = Graph::new();
        let a = g.add(config("A"), vec![], "one label", None);
        let b = g.add(config("B"), vec![], "other label", None);
        let base = CacheKey([7; 32]);
        let other = CacheKey([8; 32]);
        let ka = CacheKey::compute(g.node(a), &[base], None);
        // Same op, different label and location: same key.
        let mut relabelled = g.node(a).clone();
        relabelled.label = "renamed".into();
        assert_eq!(CacheKey::compute(&relabelled, &[base], None), ka);
        assert_ne!(CacheKey::compute(g.node(b), &[base], None), ka);
        assert_ne!(CacheKey::compute(g.node(a), &[other], None), ka);
        let content = ContentKey([1; 32]);
        assert_ne!(CacheKey::compute(g.node(a), &[base], Some(&content)), ka);
        assert_ne!(
            CacheKey::compute(g.node(a), &[base], Some(&content)),
            CacheKey::compute(g.node(a), &[base], Some(&ContentKey([2; 32])))
        );
    }
}
