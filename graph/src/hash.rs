//! Node hashes: what makes two nodes "the same".
//!
//! A node's hash is blake3 over a domain tag, the canonical JSON encoding of its [`Op`] and the
//! hashes of its inputs, in order. The encoding is canonical because every map in an op is a
//! `BTreeMap` or an ordered `Vec`, and struct fields serialise in declaration order. Labels,
//! source locations and stage names are *not* hashed: the same RUN in two stages or two
//! Dockerfiles is one node. Changing what an op serialises changes every hash; the snapshot
//! tests in `frontend` show that in review.

use crate::op::Op;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const DOMAIN: &[u8] = b"strata-node-v1\0";

/// The blake3 digest identifying a node by its definition and inputs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeHash(pub [u8; 32]);

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

    /// The full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, for display.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(12);
        s
    }

    /// Parses a 64-character hex string.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(NodeHash(out))
    }
}

impl fmt::Debug for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeHash({})", self.short())
    }
}

impl fmt::Display for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for NodeHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for NodeHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid node hash"))
    }
}
