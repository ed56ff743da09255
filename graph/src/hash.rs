//! Node hashes: what makes two nodes "the same".
//!
//! A node's hash is blake3 over a domain tag, the canonical JSON encoding of its [`Op`] and the
//! hashes of its inputs, in order. The encoding is canonical because every map in an op is a
//! `BTreeMap` or an ordered `Vec`, and struct fields serialise in declaration order. Labels,
//! source locations and stage names are *not* hashed: the same RUN in two stages or two
//! Dockerfiles is one node. Changing what an op serialises changes every hash; the snapshot
//! tests in `frontend` show that in review.

use crate::op::Op;

const DOMAIN: &[u8] = b"strata-node-v1\0";

crate::digest32!(
    /// The blake3 digest identifying a node by its definition and inputs.
    NodeHash,
    "node hash"
);

impl NodeHash {
    /// Hashes `op` with its inputs' hashes.
    pub fn of(op: &Op, inputs: &[NodeHash]) -> Self {
        thread_local! {
            /// The JSON of the op being hashed: one buffer per thread, reused from node to
            /// node, because a graph of thousands of RUNs would otherwise grow and free a
            /// buffer the size of each op's environment every time.
            static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        JSON.with_borrow_mut(|json| {
            json.clear();
            serde_json::to_writer(&mut *json, op).expect("ops contain only serialisable data");
            let mut h = blake3::Hasher::new();
            h.update(DOMAIN);
            h.update(&(json.len() as u64).to_le_bytes());
            h.update(json);
            for input in inputs {
                h.update(&input.0);
            }
            if json.capacity() > 1 << 20 {
                // Do not keep a huge op's buffer alive for the rest of the thread.
                *json = Vec::new();
            }
            NodeHash(*h.finalize().as_bytes())
        })
    }
}
