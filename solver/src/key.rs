//! Cache keys: when may a step's earlier result be reused?
//!
//! A step's key is [`KeyParts::key`] of: its node hash (its op's definition with its inputs'
//! definitions), the cache keys of its inputs in order (so a step whose parent missed misses),
//! and the content checksums of what it reads beyond its inputs (the selected files of the
//! build context for COPY/ADD and context bind mounts), which a [`crate::Backend`] computes.
//! The derivation itself lives in `strata_cache` (`cache/src/key.rs`, `docs/cache.md`) so the
//! records can keep their parts for `--explain`; this module only assembles the parts.

use strata_cache::{CacheKey, Checksum, KeyParts};
use strata_graph::Node;

/// The key parts of `node`, given its inputs' keys (in `node.inputs` order) and what it reads.
pub fn key_parts(node: &Node, inputs: &[CacheKey], contents: Vec<Checksum>) -> KeyParts {
    KeyParts {
        node: node.hash,
        inputs: inputs.to_vec(),
        contents,
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
        let ka = key_parts(g.node(a), &[base], vec![]).key();
        let mut relabelled = g.node(a).clone();
        relabelled.label = "renamed".into();
        relabelled.loc = Some(Default::default());
        assert_eq!(key_parts(&relabelled, &[base], vec![]).key(), ka);
        assert_ne!(key_parts(g.node(b), &[base], vec![]).key(), ka);
        assert_ne!(key_parts(g.node(a), &[other], vec![]).key(), ka);
        let with = |c: u8| key_parts(g.node(a), &[base], vec![Checksum([c; 32])]).key();
        assert_ne!(with(1), ka);
        assert_ne!(with(1), with(2));
    }
}
