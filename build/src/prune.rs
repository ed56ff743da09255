//! The build cache's lifecycle: what `system df -v` lists, what `builder prune` removes and
//! the automatic garbage collection after a build. One operation, [`prune_cache`], does every
//! kind of cache prune, in this order:
//!
//! 1. choose the records and cache mounts to remove ([`CachePrune`]: `-a`, `until=`,
//!    `--keep-storage` least recently used first) and remove them;
//! 2. under the store's exclusive `gc.lock` (which waits for every running build: each holds
//!    a lease from its first cache lookup to its image commit, so a record a build looked up
//!    keeps its layer until the image holds it), unpin every layer no remaining record uses
//!    and sweep the blobs and snapshots that no image and no pin needs (the store's one
//!    garbage collector, [`Store::collect_garbage_with_pins`]).
//!
//! "Shared" is BuildKit's word: a record whose layer an image in the store also uses. Its
//! removal frees nothing, so a prune without `-a` keeps it, and sizes (the cache's total, what
//! `--keep-storage` compares with) count only unshared layers, as `docker system df` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};
use strata_cache::{CacheDb, CacheDbError, CacheKey};
use strata_store::{Digest, GcReport, Store, StoreError};
use strata_worker::{CacheMountError, CacheMountInfo, cache_mounts, prune_cache_mounts};

/// For each record ID: its key and its layer.
type LayerOf = BTreeMap<String, (CacheKey, Option<Digest>)>;

/// Characters of an ID shown to users (as long as BuildKit's record IDs).
const ID_LEN: usize = 25;
/// BuildKit's default keeps at most this much unshared cache (its reserved space).
const DEFAULT_KEEP_CAP: u64 = 10_000_000_000;
/// The automatic GC removes cache mounts unused this long (BuildKit's first default rule).
const CACHE_MOUNT_MAX_IDLE: Duration = Duration::from_secs(48 * 3600);

/// Why a cache prune or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum CachePruneError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The build cache records failed.
    #[error(transparent)]
    Cache(#[from] CacheDbError),
    /// A cache mount could not be listed or removed.
    #[error(transparent)]
    CacheMount(#[from] CacheMountError),
}

/// What a record or cache mount is, in `docker system df -v`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// A step's result (a layer).
    Regular,
    /// A `RUN --mount=type=cache` directory.
    CacheMount,
}

impl CacheKind {
    /// BuildKit's name: `regular`, `exec.cachemount`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Regular => "regular",
            CacheKind::CacheMount => "exec.cachemount",
        }
    }
}

/// One entry of the build cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Its ID: the start of the record's key, or of the cache mount's name.
    pub id: String,
    /// What it is.
    pub kind: CacheKind,
    /// Bytes: the record's layer blob, or the cache mount's files.
    pub size: u64,
    /// When it was made.
    pub created: SystemTime,
    /// When a build last used it.
    pub last_used: SystemTime,
    /// A running build is using it (a held cache mount).
    pub in_use: bool,
    /// An image in the store uses its layer too.
    pub shared: bool,
}

/// What a cache prune removes. The default (nothing set) is `docker builder prune`'s: every
/// record no image shares; cache mounts stay (they go with `all`, `unused_for`, or to meet
/// `keep_storage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachePrune {
    /// `-a`: shared records and cache mounts too.
    pub all: bool,
    /// `--filter until=`: only what was not used for this long.
    pub unused_for: Option<Duration>,
    /// `--keep-storage`: remove least recently used first, only until the cache's size is at
    /// most this many bytes.
    pub keep_storage: Option<u64>,
    /// Wait for running builds before the sweep (`builder prune`); without, a prune that
    /// finds builds running removes records but leaves pins and blobs to the next one.
    pub wait: bool,
}

/// What a cache prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePruneReport {
    /// The records and cache mounts removed, as they were.
    pub removed: Vec<CacheEntry>,
    /// Bytes freed on disk: record files, cache mounts, blobs and snapshots.
    pub reclaimed: u64,
    /// The store's sweep, if it ran (`None`: builds were running and `wait` was off).
    pub gc: Option<GcReport>,
}

/// The automatic garbage collection after each build, in BuildKit's default shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Whether it runs at all.
    pub enabled: bool,
    /// Unshared cache bytes to keep; over that, least recently used records go.
    pub keep_storage: u64,
}

impl GcPolicy {
    /// BuildKit's default: 10% of the store's filesystem, at most 10 GB.
    pub fn default_for(root: &Path) -> Result<GcPolicy, CachePruneError> {
        // statvfs of the root, not a `Store::open` (its directory checks, index read and
        // leftover sweeps), which every build paid a second time after its output.
        Ok(GcPolicy {
            enabled: true,
            keep_storage: (strata_store::filesystem_size(root)? / 10).min(DEFAULT_KEEP_CAP),
        })
    }
}

/// Every record and cache mount, oldest use first.
pub fn cache_entries(root: &Path) -> Result<Vec<CacheEntry>, CachePruneError> {
    let store = Store::open(root)?;
    let db = CacheDb::open(root)?;
    let (entries, _) = entries(&store, &db, root)?;
    Ok(entries)
}

/// Runs one cache prune on the store at `root` (see the module's doc).
pub fn prune_cache(root: &Path, prune: &CachePrune) -> Result<CachePruneReport, CachePruneError> {
    let store = Store::open(root)?;
    let db = CacheDb::open(root)?;
    let (entries, layer_of) = entries(&store, &db, root)?;
    let cutoff = prune.unused_for.map(|d| SystemTime::now() - d);
    let candidate = |e: &CacheEntry| {
        !e.in_use
            && cutoff.is_none_or(|t| e.last_used < t)
            && match e.kind {
                CacheKind::Regular => prune.all || !e.shared,
                // A size limit weighs cache mounts with records, least recently used first.
                CacheKind::CacheMount => {
                    prune.all || cutoff.is_some() || prune.keep_storage.is_some()
                }
            }
    };
    let chosen = choose(&entries, &layer_of, prune.keep_storage, candidate);

    let keys: BTreeSet<CacheKey> = chosen
        .iter()
        .filter(|e| e.kind == CacheKind::Regular)
        .filter_map(|e| layer_of.get(&e.id).map(|(k, _)| *k))
        .collect();
    let mounts: BTreeSet<&str> = chosen
        .iter()
        .filter(|e| e.kind == CacheKind::CacheMount)
        .map(|e| e.id.as_str())
        .collect();
    let records = db.prune_keys(&keys)?;
    let removed_keys: BTreeSet<String> = records.removed.iter().map(|(k, _)| id(k)).collect();
    let mut report = CachePruneReport {
        reclaimed: records.bytes,
        ..CachePruneReport::default()
    };
    report.removed.extend(
        chosen
            .iter()
            .filter(|e| e.kind == CacheKind::Regular && removed_keys.contains(&e.id))
            .map(|e| (*e).clone()),
    );
    let gone = prune_cache_mounts(&root.join("worker"), |m| {
        mounts.contains(short(&m.name)) && cutoff.is_none_or(|t| m.last_used < t)
    })?;
    for m in gone {
        report.reclaimed += m.size;
        report.removed.push(mount_entry(&m));
    }
    let gc = store.collect_garbage_with_pins(prune.wait, || {
        Ok::<_, CachePruneError>(Some(db.used_layers()?))
    })?;
    report.reclaimed += gc.as_ref().map_or(0, |g| g.reclaimed);
    // A removed record's layer is only freed when no image and no other record kept it.
    report.gc = gc;
    Ok(report)
}

/// The automatic GC after a build: when the unshared cache is over `policy.keep_storage`,
/// removes least recently used unshared records and cache mounts until it is not, and cache
/// mounts unused for 48 hours; never waits for other builds. `None` when there was nothing to do.
///
/// Checking lists every record and sizes every cache mount (milliseconds on a big cache, a
/// good share of a no-op build). A build that ran no step (`ran_steps` false) skips it when a
/// check with the same limit was made less than a minute (`GC_CHECK_THROTTLE`) ago; BuildKit
/// also runs its GC at most once a minute. A step that ran may have grown the cache: always
/// checked.
pub fn gc_after_build(
    root: &Path,
    policy: &GcPolicy,
    ran_steps: bool,
) -> Result<Option<CachePruneReport>, CachePruneError> {
    if !policy.enabled {
        return Ok(None);
    }
    let stamp = root.join("cache-v1").join("gc-checked");
    let limit = policy.keep_storage.to_string();
    if !ran_steps && checked_recently(&stamp, &limit) {
        return Ok(None);
    }
    let store = Store::open(root)?;
    let db = CacheDb::open(root)?;
    let (entries, _) = entries(&store, &db, root)?;
    // Best effort: without the stamp the next no-op build checks again.
    let _ = strata_store::durable::write_atomic_unsynced(&stamp, limit.as_bytes());
    let idle_before = SystemTime::now() - CACHE_MOUNT_MAX_IDLE;
    let over = unshared_size(&entries) > policy.keep_storage;
    let stale_mounts = entries
        .iter()
        .any(|e| e.kind == CacheKind::CacheMount && !e.in_use && e.last_used < idle_before);
    if !over && !stale_mounts {
        return Ok(None);
    }
    let mut report = CachePruneReport::default();
    if over {
        report = prune_cache(
            root,
            &CachePrune {
                keep_storage: Some(policy.keep_storage),
                ..CachePrune::default()
            },
        )?;
    }
    if stale_mounts {
        for m in prune_cache_mounts(&root.join("worker"), |m| m.last_used < idle_before)? {
            report.reclaimed += m.size;
            report.removed.push(mount_entry(&m));
        }
    }
    Ok(Some(report))
}

/// How long a no-op build trusts the last check of the automatic GC ([`gc_after_build`]).
const GC_CHECK_THROTTLE: Duration = Duration::from_secs(60);

/// Whether `stamp` says the cache was checked against `limit` less than
/// [`GC_CHECK_THROTTLE`] ago (a stamp from the future, a clock set back, counts as old).
fn checked_recently(stamp: &Path, limit: &str) -> bool {
    let Ok(meta) = fs_err::metadata(stamp) else {
        return false;
    };
    let fresh = meta
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < GC_CHECK_THROTTLE);
    fresh && fs_err::read_to_string(stamp).is_ok_and(|s| s == limit)
}

/// The cache's size as `docker system df` counts it: unshared layers once each, and cache
/// mounts.
pub fn unshared_size(entries: &[CacheEntry]) -> u64 {
    entries.iter().filter(|e| !e.shared).map(|e| e.size).sum()
}

/// Records (one entry per record; a layer two records share is sized on the first only) and
/// cache mounts, least recently used first; and for each record ID, its key and layer.
fn entries(
    store: &Store,
    db: &CacheDb,
    root: &Path,
) -> Result<(Vec<CacheEntry>, LayerOf), CachePruneError> {
    let shared = store.image_layers()?;
    let mut records = db.records()?;
    records.sort_by_key(|r| std::cmp::Reverse(r.last_used));
    let mut sized = BTreeSet::new();
    let mut layer_of = BTreeMap::new();
    let mut out = Vec::new();
    // Newest first, so a layer's size stays with its most recent user until that one goes.
    for r in records {
        let layer = r.record.layer.as_ref();
        let digest = layer.map(|l| l.digest.clone());
        let size = match layer {
            Some(l) if sized.insert(l.digest.clone()) => l.size,
            _ => 0,
        };
        let id = id(&r.key);
        layer_of.insert(id.clone(), (r.key, digest.clone()));
        out.push(CacheEntry {
            id,
            kind: CacheKind::Regular,
            size,
            created: r.record.created,
            last_used: r.last_used,
            in_use: false,
            shared: digest.is_some_and(|d| shared.contains(&d)),
        });
    }
    out.extend(cache_mounts(&root.join("worker"))?.iter().map(mount_entry));
    out.sort_by_key(|e| e.last_used);
    Ok((out, layer_of))
}

/// The entries to remove: every candidate, or with `keep`, least recently used candidates
/// until the unshared size is at most `keep`. A record's layer stops counting only when no
/// remaining record uses it.
fn choose<'a>(
    entries: &'a [CacheEntry],
    layer_of: &LayerOf,
    keep: Option<u64>,
    candidate: impl Fn(&CacheEntry) -> bool,
) -> Vec<&'a CacheEntry> {
    let Some(keep) = keep else {
        return entries.iter().filter(|e| candidate(e)).collect();
    };
    let layer = |e: &CacheEntry| layer_of.get(&e.id).and_then(|(_, l)| l.clone());
    let mut users: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut layer_size: BTreeMap<Digest, u64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == CacheKind::Regular) {
        if let Some(l) = layer(e) {
            *users.entry(l.clone()).or_default() += 1;
            *layer_size.entry(l).or_default() += e.size;
        }
    }
    let mut total = unshared_size(entries);
    let mut out = Vec::new();
    for e in entries {
        if total <= keep {
            break;
        }
        if !candidate(e) {
            continue;
        }
        out.push(e);
        match layer(e) {
            Some(l) => {
                let n = users.get_mut(&l).expect("counted above");
                *n -= 1;
                if *n == 0 && !e.shared {
                    total = total.saturating_sub(layer_size.get(&l).copied().unwrap_or(0));
                }
            }
            None if !e.shared => total = total.saturating_sub(e.size),
            None => {}
        }
    }
    out
}

fn id(key: &CacheKey) -> String {
    key.to_hex()[..ID_LEN].to_owned()
}

fn short(name: &str) -> &str {
    name.get(..ID_LEN).unwrap_or(name)
}

fn mount_entry(m: &CacheMountInfo) -> CacheEntry {
    CacheEntry {
        id: short(&m.name).to_owned(),
        kind: CacheKind::CacheMount,
        size: m.size,
        created: m.created,
        last_used: m.last_used,
        in_use: m.in_use,
        shared: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, size: u64, age_s: u64, shared: bool) -> CacheEntry {
        CacheEntry {
            id: format!("r{n}"),
            kind: CacheKind::Regular,
            size,
            created: SystemTime::UNIX_EPOCH,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age_s),
            in_use: false,
            shared,
        }
    }

    #[test]
    fn keep_storage_removes_the_least_recently_used_until_under_and_counts_a_layer_once() {
        // r1 (oldest) and r3 share layer A (sized on r3, its newest user); r2 has B; r4 is
        // shared with an image and weighs nothing.
        let entries = vec![
            entry(1, 0, 400, false),
            entry(2, 300, 300, false),
            entry(3, 500, 200, false),
            entry(4, 900, 100, true),
        ];
        let layer = |n: u8| Some(Digest::of(&[n]));
        let layer_of: LayerOf = [(1, 10), (2, 20), (3, 10), (4, 40)]
            .into_iter()
            .map(|(n, l)| (format!("r{n}"), (CacheKey([n; 32]), layer(l))))
            .collect();
        assert_eq!(unshared_size(&entries), 800);
        let ids = |keep, all: bool| -> Vec<String> {
            choose(&entries, &layer_of, keep, |e| all || !e.shared)
                .iter()
                .map(|e| e.id.clone())
                .collect()
        };
        // r1 goes first but frees nothing (r3 still uses A); then r2 frees 300: 500 <= 600.
        assert_eq!(ids(Some(600), false), ["r1", "r2"]);
        assert_eq!(ids(Some(800), false), Vec::<String>::new());
        assert_eq!(ids(Some(0), false), ["r1", "r2", "r3"]);
        assert_eq!(ids(None, true), ["r1", "r2", "r3", "r4"]);
    }
}
