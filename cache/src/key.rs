//! Cache keys: what makes two steps "the same" across builds.
//!
//! A key is blake3 over a domain tag and its [`KeyParts`], in order:
//! * the node hash (graph): the op's definition with the hashes of its inputs' definitions:
//!   RUN's argv, the env it sees (ENV and the build args a preceding `ARG` brought in scope),
//!   user, cwd, network, mounts; COPY's sources, destination, `--chown`/`--chmod`/`--link`;
//!   an image source by its resolved image ID;
//! * the keys of the node's inputs, in input order (a step whose parent missed misses);
//! * the content checksums of what it reads, in input order ([`crate::SelectionSum`]):
//!   names, types, modes, link targets and bytes of the selected files.
//!
//! What never enters: mtimes or any other time, inode or device numbers, the owner of context
//! files, the context's absolute path, the Dockerfile's path or line numbers, stage names,
//! `# comments`, progress or `--jobs` settings, and the proxy build args (`HTTP_PROXY` and
//! friends), which Docker passes to RUN without making them part of the key. docs/cache.md
//! has the full list and the reasons.

use crate::checksum::Checksum;
use serde::{Deserialize, Serialize};
use strata_graph::NodeHash;

const KEY_DOMAIN: &[u8] = b"strata-cache-key-v1\0";

strata_graph::digest32!(
    /// The key of a build cache record: 32 bytes of blake3, 64 hex characters in files.
    CacheKey,
    "cache key"
);

/// Everything a key is made of, kept in its record so `--explain` can tell which part changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// The node's hash (its definition and its inputs' definitions).
    pub node: NodeHash,
    /// The cache keys of the node's inputs, in input order.
    pub inputs: Vec<CacheKey>,
    /// Content checksums of what the step reads (its COPY selections), in input order.
    pub contents: Vec<Checksum>,
}

impl KeyParts {
    /// The cache key these parts make.
    pub fn key(&self) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(KEY_DOMAIN);
        h.update(&self.node.0);
        h.update(&(self.inputs.len() as u64).to_le_bytes());
        for k in &self.inputs {
            h.update(&k.0);
        }
        h.update(&(self.contents.len() as u64).to_le_bytes());
        for c in &self.contents {
            h.update(&c.0);
        }
        CacheKey(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        KeyParts {
            node: NodeHash([1; 32]),
            inputs: vec![CacheKey([2; 32])],
            contents: vec![Checksum([3; 32])],
        }
    }

    #[test]
    fn every_part_changes_the_key_and_position_matters() {
        let base = parts().key();
        let mut p = parts();
        p.node = NodeHash([9; 32]);
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.inputs[0] = CacheKey([9; 32]);
        assert_ne!(p.key(), base);
        let mut p = parts();
        p.contents[0] = Checksum([9; 32]);
        assert_ne!(p.key(), base);
        // An input key moved to the contents list is a different key.
        let mut p = parts();
        p.inputs.clear();
        p.contents.insert(0, Checksum([2; 32]));
        assert_ne!(p.key(), base);
        assert_eq!(parts().key(), base);
        assert_eq!(CacheKey::from_hex(&base.to_hex()), Some(base));
    }
}
