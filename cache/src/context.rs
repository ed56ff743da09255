//! The build context, read in place: an index of its entries and, lazily, of file digests.
//!
//! Why this shape. BuildKit copies the context into a snapshot before a step may look at it
//! and re-sends on every build what changed by stat; on a 20,000-file context that is 0.5 s
//! warm and seconds cold. We never copy: [`ContextIndex::scan`] stats the tree (in parallel,
//! filtered by `.dockerignore` as it goes), and takes file digests from the persistent stat
//! cache where the stat is unchanged. Bytes are read only when a selection needs a digest the
//! cache does not have, and then in parallel. The same index serves a stage's output
//! (`COPY --from`), with ownership kept.

use crate::entry::{Entry, EntryKind, Ownership, path_cmp};
use crate::error::ContextError;
use crate::filter::{ContextFilter, NoFilter};
use crate::statcache::{self, StatCache, StatCacheStatus};
use crate::walk;
use rayon::prelude::*;
use rustix::fd::OwnedFd;
use rustix::fs::AtFlags;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, SystemTime};

/// How to scan a tree.
#[derive(Clone, Copy)]
pub struct ScanOptions<'a> {
    /// Which paths belong to the tree (`.dockerignore`); [`NoFilter`] keeps all.
    pub filter: &'a dyn ContextFilter,
    /// Whether owners enter checksums: [`Ownership::Ignore`] for the build context.
    pub ownership: Ownership,
    /// The stat cache file (from [`crate::CacheDb::stat_cache_path`]); `None` hashes every
    /// selected file every time.
    pub stat_cache: Option<&'a Path>,
    /// A file changed less than this long before we read it is hashed but its digest is not
    /// stored (see the racy-entry note in the stat cache). Default 2 s.
    pub racy_window: Duration,
}

impl Default for ScanOptions<'_> {
    fn default() -> Self {
        ScanOptions {
            filter: &NoFilter,
            ownership: Ownership::Ignore,
            stat_cache: None,
            racy_window: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for ScanOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanOptions")
            .field("ownership", &self.ownership)
            .field("stat_cache", &self.stat_cache)
            .field("racy_window", &self.racy_window)
            .finish_non_exhaustive()
    }
}

/// What a scan and the checksums since cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    /// Entries in the index, the root included.
    pub entries: usize,
    /// Regular files among them.
    pub files: usize,
    /// What was found in the stat cache file.
    pub stat_cache: StatCacheStatus,
    /// Files whose digest came from the stat cache (no read needed).
    pub cached_digests: usize,
    /// Files opened and read to compute a digest.
    pub content_reads: u64,
    /// Bytes read for those digests.
    pub bytes_read: u64,
}

/// A file's content digest and whether it may go to the stat cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Content {
    pub(crate) hash: [u8; 32],
    persist: bool,
}

/// An indexed tree, read in place. Cheap to query from many threads at once.
#[derive(Debug)]
pub struct ContextIndex {
    dir: PathBuf,
    root: OwnedFd,
    /// Sorted by [`path_cmp`], so a directory's subtree follows it contiguously; `[0]` is the
    /// root (`""`).
    pub(crate) entries: Vec<Entry>,
    /// Parallel to `entries`; set for files once their digest is known.
    content: Vec<OnceLock<Content>>,
    pub(crate) ownership: Ownership,
    racy_window: Duration,
    stat_cache_path: Option<PathBuf>,
    stat_cache_status: StatCacheStatus,
    stat_cache_loaded: usize,
    cached_digests: usize,
    files: usize,
    content_reads: AtomicU64,
    bytes_read: AtomicU64,
    fresh_digests: AtomicU64,
    pub(crate) memo: crate::memo::Memo,
}

impl ContextIndex {
    /// Walks `dir` (absolute; the CLI resolves it) and indexes it. Reads no file contents:
    /// digests come from the stat cache or are computed when a selection needs them.
    pub fn scan(dir: &Path, opts: &ScanOptions<'_>) -> Result<Self, ContextError> {
        let root = walk::open_root(dir)?;
        let mut entries = walk::walk(dir, &root, opts.filter)?;
        // The walk emits sorted entries; lookups depend on it, so check (it is one pass).
        if !entries.is_sorted_by(|a, b| path_cmp(&a.path, &b.path).is_lt()) {
            entries.par_sort_unstable_by(|a, b| path_cmp(&a.path, &b.path));
        }
        // The stat cache is read after the walk, merged into it as a stream: reading it
        // beside the walk overlapped a few milliseconds but held its whole table at the
        // walk's peak (bench/scaling/README.md).
        let mut content: Vec<OnceLock<Content>> = entries.iter().map(|_| OnceLock::new()).collect();
        let (stat_cache_status, stat_cache_loaded) = match opts.stat_cache {
            None => (StatCacheStatus::Disabled, 0),
            Some(path) => load_stat_cache(path, &entries, &mut content),
        };
        let cached_digests = content.iter().filter(|c| c.get().is_some()).count();
        let files = entries.iter().filter(|e| e.kind == EntryKind::File).count();
        Ok(ContextIndex {
            dir: dir.to_owned(),
            root,
            entries,
            content,
            ownership: opts.ownership,
            racy_window: opts.racy_window,
            stat_cache_path: opts.stat_cache.map(Path::to_owned),
            stat_cache_status,
            stat_cache_loaded,
            cached_digests,
            files,
            content_reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            fresh_digests: AtomicU64::new(0),
            memo: crate::memo::Memo::default(),
        })
    }

    /// The directory this index was made from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters for this index: entries, cache use, content reads so far.
    pub fn stats(&self) -> ContextStats {
        ContextStats {
            entries: self.entries.len(),
            files: self.files,
            stat_cache: self.stat_cache_status,
            cached_digests: self.cached_digests,
            content_reads: self.content_reads.load(AtomicOrdering::Relaxed),
            bytes_read: self.bytes_read.load(AtomicOrdering::Relaxed),
        }
    }

    /// Writes the stat cache if anything in it would change: new digests, or entries that
    /// no longer match. Returns whether it wrote. Call once the build's checksums are done.
    pub fn save_stat_cache(&self) -> Result<bool, ContextError> {
        let Some(path) = &self.stat_cache_path else {
            return Ok(false);
        };
        let kept = || {
            self.entries.iter().zip(&self.content).filter_map(|(e, c)| {
                let c = c.get()?;
                c.persist.then_some((&*e.path, &e.stat, &c.hash))
            })
        };
        let count = kept().count();
        let unchanged = self.fresh_digests.load(AtomicOrdering::Relaxed) == 0
            && count == self.stat_cache_loaded
            && matches!(self.stat_cache_status, StatCacheStatus::Loaded { .. });
        if unchanged {
            return Ok(false);
        }
        let err = |source| ContextError::SaveStatCache {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(err)?;
        }
        strata_store::durable::write_atomic_with(path, |w| statcache::encode_to(w, count, kept()))
            .map_err(|e| err(e.into()))?;
        Ok(true)
    }

    /// The index of the entry at `path` (relative, clean, no symlinks resolved).
    pub(crate) fn lookup(&self, path: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| path_cmp(&e.path, path))
            .ok()
    }

    /// The range of indices below the directory at `i` (its whole subtree, not itself).
    pub(crate) fn subtree(&self, i: usize) -> std::ops::Range<usize> {
        let base = &*self.entries[i].path;
        let start = i + 1;
        if base.is_empty() {
            return start..self.entries.len();
        }
        let len = self.entries[start..].partition_point(|e| {
            e.path.len() > base.len()
                && e.path.as_bytes()[base.len()] == b'/'
                && e.path.starts_with(base)
        });
        start..start + len
    }

    pub(crate) fn content(&self, i: usize) -> Option<&Content> {
        self.content[i].get()
    }

    /// Whether entry `i` has no digest to doubt: not a file, or a file whose digest the stat
    /// cache may keep (read quiet, under the stat the walk saw).
    pub(crate) fn digest_trusted(&self, i: usize) -> bool {
        self.entries[i].kind != EntryKind::File || self.content(i).is_some_and(|c| c.persist)
    }

    /// The stat cache file this index reads and saves, if any.
    pub(crate) fn stat_cache_path(&self) -> Option<&Path> {
        self.stat_cache_path.as_deref()
    }

    /// Makes sure every file among `indices` has its digest, reading the missing ones in
    /// parallel.
    pub(crate) fn ensure_contents(&self, indices: &[usize]) -> Result<(), ContextError> {
        indices
            .par_iter()
            .filter(|&&i| {
                self.entries[i].kind == EntryKind::File && self.content[i].get().is_none()
            })
            .try_for_each(|&i| {
                let c = self.hash_file(&self.entries[i])?;
                if self.content[i].set(c).is_ok() && c.persist {
                    self.fresh_digests.fetch_add(1, AtomicOrdering::Relaxed);
                }
                Ok(())
            })
    }

    /// Reads one regular file, confined to the root, and returns the blake3 of its bytes.
    fn hash_file(&self, entry: &Entry) -> Result<Content, ContextError> {
        let read_error = |source: std::io::Error| ContextError::Read {
            path: entry.path.to_string(),
            source,
        };
        let file = walk::open_file_beneath(&self.root, &entry.path).map_err(read_error)?;
        let before =
            walk::statx(&file, c"", AtFlags::EMPTY_PATH).map_err(|e| read_error(e.into()))?;
        if EntryKind::from_mode(u32::from(before.stx_mode)) != Some(EntryKind::File) {
            // Replaced by something else since the walk: never read a fifo or a device.
            return Err(read_error(std::io::Error::other(
                "no longer a regular file",
            )));
        }
        let size = before.stx_size;
        let before = crate::entry::StatKey::from_statx(&before);
        let started = SystemTime::now();
        let mut hasher = blake3::Hasher::new();
        READ_BUF
            .with_borrow_mut(|buf| hash_to_end(&file, size, buf, &mut hasher))
            .map_err(read_error)?;
        let after =
            walk::statx(&file, c"", AtFlags::EMPTY_PATH).map_err(|e| read_error(e.into()))?;
        self.content_reads.fetch_add(1, AtomicOrdering::Relaxed);
        self.bytes_read
            .fetch_add(hasher.count(), AtomicOrdering::Relaxed);
        // Store only a digest of bytes that match the stat we index them under, read after
        // they had been quiet for the racy window.
        let persist = before == entry.stat
            && crate::entry::StatKey::from_statx(&after) == before
            && statcache::trustworthy(&before, started, self.racy_window);
        Ok(Content {
            hash: *hasher.finalize().as_bytes(),
            persist,
        })
    }
}

thread_local! {
    /// Each hashing thread's read buffer, made once (not zeroed again for every file).
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; 64 << 10].into_boxed_slice());
}

/// Feeds `file` to `hasher` from its offset to its end. `size` (its size when opened) saves
/// a read: a read asked for more than is left and given less is a regular file's end, so a
/// small file is one `read`, not two. Whatever is read, the digest is that of the bytes.
fn hash_to_end(
    mut file: &std::fs::File,
    size: u64,
    buf: &mut [u8],
    hasher: &mut blake3::Hasher,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut read = 0u64;
    loop {
        // One byte more than the size says is left, to see the end in the same call.
        let want = match size.checked_sub(read) {
            Some(left) if left > 0 || read == 0 => buf
                .len()
                .min(usize::try_from(left + 1).unwrap_or(usize::MAX)),
            _ => buf.len(),
        };
        let n = match file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        read += n as u64;
        if n < want && read >= size {
            return Ok(());
        }
    }
}

/// Sets the digests the stat cache file at `path` has for `entries` (sorted) into `content`;
/// returns what was found and how many digests the file held.
fn load_stat_cache(
    path: &Path,
    entries: &[Entry],
    content: &mut [OnceLock<Content>],
) -> (StatCacheStatus, usize) {
    let set = |content: &mut [OnceLock<Content>], i: usize, hash: [u8; 32]| {
        if entries[i].kind == EntryKind::File {
            content[i] = OnceLock::from(Content {
                hash,
                persist: true,
            });
        }
    };
    let merged = statcache::merge_file(path, entries, &mut |i, hash| set(content, i, hash));
    let fallback = match merged {
        statcache::Merged::Loaded(n) => return (StatCacheStatus::Loaded { entries: n }, n),
        statcache::Merged::Missing => return (StatCacheStatus::Missing, 0),
        statcache::Merged::Corrupt => return forget(content, StatCacheStatus::Corrupt),
        // Not in our order: decode it whole and sort it.
        statcache::Merged::Unsorted => StatCache::load(path),
    };
    forget(content, fallback.status);
    let cached = fallback.lookup_sorted(entries.iter().map(|e| (&*e.path, &e.stat)));
    for (i, hash) in cached.into_iter().enumerate() {
        if let Some(hash) = hash {
            set(content, i, hash);
        }
    }
    (fallback.status, fallback.len())
}

/// Drops every digest set in `content`; gives `(status, 0)`.
fn forget(content: &mut [OnceLock<Content>], status: StatCacheStatus) -> (StatCacheStatus, usize) {
    content.iter_mut().for_each(|c| *c = OnceLock::new());
    (status, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Tree;
    use crate::selection::Selection;
    use std::time::UNIX_EPOCH;

    fn opts(cache: &Path, window: Duration) -> ScanOptions<'_> {
        ScanOptions {
            stat_cache: Some(cache),
            racy_window: window,
            ..ScanOptions::default()
        }
    }

    fn big_tree(files: usize) -> Tree {
        let t = Tree::new();
        for i in 0..files {
            t.file(
                &format!("d{:02}/f{i:04}.txt", i % 20),
                &format!("content {i}\n"),
                0o644,
            );
        }
        t
    }

    /// Every file's digest is the blake3 of its bytes, whatever its size against the read
    /// buffer, and the same hashed on one thread or two.
    #[test]
    fn file_digests_are_the_blake3_of_their_bytes_on_any_thread_count() {
        let t = Tree::new();
        let sizes = [0, 1, 10_240, 65_535, 65_536, 65_537, 196_608, 200_000];
        let mut want = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let body: String = (0..*len)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect();
            t.file(&format!("f{i}"), &body, 0o644);
            want.push((format!("f{i}"), *blake3::hash(body.as_bytes()).as_bytes()));
        }
        let mut got = Vec::new();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let digests = pool.install(|| {
                let idx = ContextIndex::scan(t.root(), &ScanOptions::default()).unwrap();
                let all: Vec<usize> = (0..idx.entries.len()).collect();
                idx.ensure_contents(&all).unwrap();
                assert_eq!(idx.stats().bytes_read, sizes.iter().sum::<usize>() as u64);
                (0..idx.entries.len())
                    .filter_map(|i| Some((idx.entries[i].path.to_string(), idx.content(i)?.hash)))
                    .collect::<Vec<_>>()
            });
            got.push(digests);
        }
        assert_eq!(got[0], want);
        assert_eq!(got[1], want);
    }

    #[test]
    fn an_unchanged_tree_is_indexed_without_reading_a_byte() {
        let t = big_tree(2000);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);

        let cold = t.scan_with(&opts(&cache, Duration::ZERO));
        assert_eq!(cold.stats().stat_cache, StatCacheStatus::Missing);
        let first = cold.checksum(&all).unwrap();
        assert_eq!(cold.stats().content_reads, 2000);
        assert!(cold.save_stat_cache().unwrap(), "new digests are written");

        let warm = t.scan_with(&opts(&cache, Duration::ZERO));
        let stats = warm.stats();
        assert_eq!(stats.stat_cache, StatCacheStatus::Loaded { entries: 2000 });
        assert_eq!(
            (stats.entries, stats.files, stats.cached_digests),
            (2021, 2000, 2000)
        );
        assert_eq!(warm.checksum(&all).unwrap(), first);
        assert_eq!(
            warm.stats().content_reads,
            0,
            "a warm index reads no content"
        );
        assert!(
            !warm.save_stat_cache().unwrap(),
            "nothing changed, nothing written"
        );

        // One edit: one read, and only that file's digest changes.
        t.file("d03/f0003.txt", "edited\n", 0o644);
        let edited = t.scan_with(&opts(&cache, Duration::ZERO));
        let after = edited.checksum(&all).unwrap();
        assert_eq!(edited.stats().content_reads, 1);
        assert_eq!(after.diff(&first).changed, ["d03/f0003.txt"]);
    }

    /// The scan reads the stat cache as a stream in path order; a file in another order
    /// (another writer's) is decoded whole instead, and its digests are used all the same.
    #[test]
    fn a_stat_cache_file_in_another_order_is_still_used() {
        let t = big_tree(30);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        let cold = t.scan_with(&opts(&cache, Duration::ZERO));
        let first = cold.checksum(&all).unwrap();
        let mut kept: Vec<_> = cold
            .entries
            .iter()
            .zip(&cold.content)
            .filter_map(|(e, c)| Some((&*e.path, &e.stat, &c.get()?.hash)))
            .collect();
        kept.reverse();
        fs_err::write(&cache, statcache::encode(kept.into_iter())).unwrap();
        let warm = t.scan_with(&opts(&cache, Duration::ZERO));
        let stats = warm.stats();
        assert_eq!(stats.stat_cache, StatCacheStatus::Loaded { entries: 30 });
        assert_eq!(stats.cached_digests, 30);
        assert_eq!(warm.checksum(&all).unwrap(), first);
        assert_eq!(warm.stats().content_reads, 0);
    }

    #[test]
    fn a_file_changed_just_before_the_read_is_not_trusted_next_time() {
        let t = Tree::new();
        t.file("fresh.txt", "v1", 0o644);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let sel = Selection::copy(["fresh.txt"]);
        let window = Duration::from_secs(3600);

        let first = t.scan_with(&opts(&cache, window));
        first.checksum(&sel).unwrap();
        first.save_stat_cache().unwrap();
        // Its digest was not stored: the next build reads it again...
        let second = t.scan_with(&opts(&cache, window));
        assert_eq!(second.stats().cached_digests, 0);
        second.checksum(&sel).unwrap();
        assert_eq!(second.stats().content_reads, 1);
        // ...whereas with no racy window it would have been trusted.
        second.save_stat_cache().unwrap();
        let third = t.scan_with(&opts(&cache, Duration::ZERO));
        third.checksum(&sel).unwrap();
        third.save_stat_cache().unwrap();
        let fourth = t.scan_with(&opts(&cache, Duration::ZERO));
        assert_eq!(fourth.stats().cached_digests, 1);
    }

    #[test]
    fn same_size_rewrite_with_restored_mtime_is_still_seen() {
        // The racy-git case: new bytes, same size, mtime put back (`cp -p`, `rsync -t`).
        let t = Tree::new();
        let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        t.file("f", "aaaa", 0o644).set_mtime("f", old);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let sel = Selection::copy(["f"]);
        let first = t.scan_with(&opts(&cache, Duration::ZERO));
        let before = first.checksum(&sel).unwrap();
        first.save_stat_cache().unwrap();

        t.file("f", "bbbb", 0o644).set_mtime("f", old);
        let second = t.scan_with(&opts(&cache, Duration::ZERO));
        assert_eq!(
            second.stats().cached_digests,
            0,
            "ctime moved, so the entry is stale"
        );
        assert_ne!(second.checksum(&sel).unwrap().checksum, before.checksum);
    }

    #[test]
    fn a_damaged_stat_cache_is_ignored_and_rewritten() {
        let t = big_tree(50);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        let first = t.scan_with(&opts(&cache, Duration::ZERO));
        let good = first.checksum(&all).unwrap();
        first.save_stat_cache().unwrap();
        let bytes = fs_err::read(&cache).unwrap();

        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0xff;
        let damages: [&[u8]; 4] = [&flipped, &bytes[..bytes.len() - 5], b"", b"garbage"];
        for damaged in damages {
            fs_err::write(&cache, damaged).unwrap();
            let index = t.scan_with(&opts(&cache, Duration::ZERO));
            assert_eq!(index.stats().stat_cache, StatCacheStatus::Corrupt);
            assert_eq!(
                index.checksum(&all).unwrap(),
                good,
                "recomputed, not trusted"
            );
            assert_eq!(index.stats().content_reads, 50);
            assert!(index.save_stat_cache().unwrap());
            let healed = t.scan_with(&opts(&cache, Duration::ZERO));
            assert_eq!(
                healed.stats().stat_cache,
                StatCacheStatus::Loaded { entries: 50 }
            );
        }
    }

    #[test]
    fn concurrent_writers_leave_a_valid_stat_cache() {
        let t = big_tree(300);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("nested/ctx.stat");
        let all = Selection::copy(["."]);
        let expected = t.scan().checksum(&all).unwrap();
        std::thread::scope(|s| {
            for i in 0..6 {
                let (t, cache, all, expected) = (&t, &cache, &all, &expected);
                s.spawn(move || {
                    for round in 0..5 {
                        // Half the writers see an edit the others do not; both must survive.
                        if i == 0 && round == 2 {
                            t.file("d00/extra.txt", "new", 0o644);
                        }
                        let index = t.scan_with(&opts(cache, Duration::ZERO));
                        assert_ne!(index.stats().stat_cache, StatCacheStatus::Corrupt);
                        let sum = index.checksum(all).unwrap();
                        if sum.entries.len() == expected.entries.len() {
                            assert_eq!(&sum, expected);
                        }
                        index.save_stat_cache().unwrap();
                    }
                });
            }
        });
        let last = t.scan_with(&opts(&cache, Duration::ZERO));
        assert!(matches!(
            last.stats().stat_cache,
            StatCacheStatus::Loaded { .. }
        ));
    }

    #[test]
    fn special_files_are_never_opened() {
        let t = Tree::new();
        t.fifo("pipe").file("f", "x", 0o644);
        let socket = std::os::unix::net::UnixListener::bind(t.path("sock")).unwrap();
        let index = t.scan();
        let sum = index.checksum(&Selection::copy(["."])).unwrap();
        let kinds: Vec<_> = sum
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("", EntryKind::Dir),
                ("f", EntryKind::File),
                ("pipe", EntryKind::Fifo),
                ("sock", EntryKind::Socket)
            ]
        );
        assert_eq!(
            index.stats().content_reads,
            1,
            "only the regular file was read"
        );
        drop(socket);
    }

    #[test]
    fn a_file_swapped_for_a_fifo_after_the_scan_is_refused_not_read() {
        let t = Tree::new();
        t.file("f", "x", 0o644);
        let index = t.scan();
        fs_err::remove_file(t.path("f")).unwrap();
        t.fifo("f");
        let err = index.checksum(&Selection::copy(["f"])).unwrap_err();
        assert!(matches!(err, ContextError::Read { .. }), "{err}");
    }

    #[test]
    fn a_deep_tree_is_walked_in_bounded_stack() {
        use rustix::fs::{Mode, OFlags};
        // 400 levels in threads with 1 MiB stacks: walking it by plain recursion overflows
        // (several KiB of stack per level in a debug build); the walk's rounds do not.
        let t = Tree::new();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        let mut fd = rustix::fs::open(t.root(), flags, Mode::empty()).unwrap();
        for _ in 0..400 {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, "d", flags, Mode::empty()).unwrap();
        }
        let mode = Mode::from_raw_mode(0o644);
        let file = rustix::fs::openat(&fd, "f", OFlags::WRONLY | OFlags::CREATE, mode).unwrap();
        rustix::io::write(file, b"deep").unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .stack_size(1 << 20);
        let index = pool.build().unwrap().install(|| t.scan());
        assert_eq!(index.stats().entries, 402);
        let deepest = format!("{}f", "d/".repeat(400));
        let sum = index
            .checksum(&Selection::copy([deepest.as_str()]))
            .unwrap();
        assert_eq!(sum.entries.len(), 1);
        assert_eq!(
            index
                .checksum(&Selection::copy(["d"]))
                .unwrap()
                .entries
                .len(),
            401
        );
    }

    const CHILD_CONTEXT: &str = "STRATA_CACHE_TEST_CHILD_CONTEXT";
    const CHILD_STAT_CACHE: &str = "STRATA_CACHE_TEST_CHILD_STAT_CACHE";

    /// Run by `the_stat_cache_persists_across_processes` in a child process.
    #[test]
    #[ignore = "child process of the_stat_cache_persists_across_processes"]
    fn child_indexer() {
        #[expect(
            clippy::disallowed_methods,
            reason = "the parent test passes the paths"
        )]
        let (dir, cache) = (
            std::env::var(CHILD_CONTEXT).expect("run by the parent test"),
            std::env::var(CHILD_STAT_CACHE).expect("run by the parent test"),
        );
        let index =
            ContextIndex::scan(Path::new(&dir), &opts(Path::new(&cache), Duration::ZERO)).unwrap();
        index.checksum(&Selection::copy(["."])).unwrap();
        assert!(index.save_stat_cache().unwrap());
    }

    #[test]
    fn the_stat_cache_persists_across_processes() {
        let t = big_tree(200);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("ctx.stat");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "context::tests::child_indexer",
                "--ignored",
                "--quiet",
            ])
            .env(CHILD_CONTEXT, t.root())
            .env(CHILD_STAT_CACHE, &cache)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "the indexing process failed");
        let warm = t.scan_with(&opts(&cache, Duration::ZERO));
        assert_eq!(
            warm.stats().stat_cache,
            StatCacheStatus::Loaded { entries: 200 }
        );
        let sum = warm.checksum(&Selection::copy(["."])).unwrap();
        assert_eq!(warm.stats().content_reads, 0);
        assert_eq!(sum, t.scan().checksum(&Selection::copy(["."])).unwrap());
    }

    #[test]
    fn the_index_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ContextIndex>();
        shareable::<crate::CacheDb>();
    }

    #[test]
    fn paths_sort_so_subtrees_are_contiguous() {
        let mut v = vec!["a-b", "a/b", "a", "ab", "a/b/c", "", "a/c"];
        v.sort_by(|a, b| path_cmp(a, b));
        assert_eq!(v, ["", "a", "a/b", "a/b/c", "a/c", "a-b", "ab"]);
    }

    #[test]
    fn a_missing_context_is_a_clear_error() {
        let err =
            ContextIndex::scan(Path::new("/nonexistent/ctx"), &ScanOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to open build context /nonexistent/ctx"
        );
    }
}
