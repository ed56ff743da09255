//! The build cache: records mapping cache keys to results (layer and chain), and the content
//! checksums keys are made of: the build context read in place, hashed with blake3 in
//! parallel behind a persistent stat cache, and COPY selections resolved by
//! `strata_graph::resolver`, the one resolver the copy uses too. Owns everything under
//! `<root>/cache-v1/`; every write is atomic and safe with other strata processes. Knows nothing of Dockerfiles, scheduling or the terminal, and
//! never reads the environment or the current directory.
//!
//! Start at [`ContextIndex::scan`] (the context), [`ContextIndex::checksum`] (one COPY's
//! sources), [`KeyParts::key`] (a step's key) and [`CacheDb::open`] (the records).
#![warn(missing_docs)]

mod checksum;
mod context;
mod entry;
mod error;
mod exchange;
mod explain;
mod filter;
#[cfg(test)]
mod fixture;
mod key;
mod memo;
mod record;
mod selection;
mod statcache;
mod walk;

pub use checksum::Checksum;
pub use context::{ContextIndex, ContextStats, ScanOptions};
pub use entry::{EntryKind, Ownership};
pub use error::ContextError;
pub use exchange::{
    CACHE_REF_NAME, CacheLocation, CacheMountChain, ExchangeError, ExportOptions, ExportReport,
    ImportedCache, export, export_to,
};
pub use explain::explain_miss;
pub use filter::{ContextFilter, NoFilter};
pub use key::{CacheKey, KeyParts};
pub use record::{
    CacheDb, CacheDbError, CacheUsage, PruneFilter, PruneReport, Record, StepRef, StoredRecord,
};
pub use selection::{
    Placement, SelectedEntry, Selection, SelectionDiff, SelectionParts, SelectionSum,
};
pub use statcache::StatCacheStatus;
