//! The build cache: records mapping cache keys to results (layer blob and config), layer
//! snapshots on disk, build-context hashing with a persistent stat cache, and prune. Knows
//! nothing of Dockerfiles or scheduling.
#![warn(missing_docs)]
