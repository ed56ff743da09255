//! The selection checksum memo: a COPY's checksum kept per (what the walk saw, selection),
//! so a no-op build of an unchanged context skips resolving and hashing its selection.
//!
//! Why it holds. A selection's checksum is a function of the selection, the ownership rule
//! and, for each entry of the index, its path, type, mode, owner, device numbers, link target
//! and (for a file) bytes. The walk's **fingerprint** is a blake3 of every entry's path, type,
//! owner, device numbers, link target and full stat key (size, mtime, ctime, inode, device,
//! mode), so any added, removed or renamed path, any chmod, chown or write (ctime moves), and
//! any `.dockerignore` change that changes what is indexed gives another fingerprint. Bytes
//! are not in it: a memo is only kept when every file the selection read had a digest the
//! stat cache may keep (read quiet, under exactly the stat the walk saw; see
//! [`crate::statcache`]), so the same stat key stands for the same bytes exactly as far as the
//! stat cache's own digests do, never further.
//!
//! **Format.** One small file beside the context's stat cache (`<hash>.memo`): a magic line,
//! a count, then (memo key, checksum) pairs, newest first, at most [`KEPT`], ending in a
//! blake3 of everything before it. Written unsynced and atomically: a damaged or torn file
//! fails its trailer and is simply a miss.

use crate::checksum::Checksum;
use crate::context::ContextIndex;
use crate::error::ContextError;
use crate::selection::{Selection, SelectionParts};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const MAGIC: &[u8] = b"strata-selection-memo-v1\n";
const FINGERPRINT_DOMAIN: &[u8] = b"strata-walk-fingerprint-v1\0";
const KEY_DOMAIN: &[u8] = b"strata-selection-memo-key-v1\0";
/// Memos kept per context: a few COPYs per Dockerfile, a few Dockerfiles per context.
const KEPT: usize = 64;

type Pair = ([u8; 32], Checksum);

/// The memo state of one index: read lazily, added to by [`ContextIndex::memoize`].
#[derive(Debug, Default)]
pub(crate) struct Memo {
    fingerprint: OnceLock<[u8; 32]>,
    stored: OnceLock<Vec<Pair>>,
    fresh: Mutex<Vec<Pair>>,
}

impl ContextIndex {
    /// The checksum [`Self::checksum_parts`] would give for `selection`, if an earlier build
    /// computed it from a walk that saw exactly what this one saw. `None` without a stat
    /// cache (a stage's output) or when nothing is memoized.
    pub fn memoized_checksum(&self, selection: &Selection) -> Option<Checksum> {
        let path = self.memo_path()?;
        let stored = self.memo.stored.get_or_init(|| load(&path));
        let fresh = self.memo.fresh.lock().expect("no memo thread panics");
        if stored.is_empty() && fresh.is_empty() {
            return None; // no fingerprint to compute
        }
        let key = self.memo_key(selection);
        fresh
            .iter()
            .chain(stored)
            .find(|(k, _)| *k == key)
            .map(|(_, sum)| *sum)
    }

    /// Keeps `parts` (computed by [`Self::checksum_parts`] for `selection`) for the next
    /// build, if every file it read has a trustworthy digest. Call once its list is stored:
    /// a memo hit skips making it. Written by [`Self::save_checksum_memo`].
    pub fn memoize(&self, selection: &Selection, parts: &SelectionParts) {
        if self.memo_path().is_none() || !parts.nodes().all(|i| self.digest_trusted(i)) {
            return;
        }
        let key = self.memo_key(selection);
        let mut fresh = self.memo.fresh.lock().expect("no memo thread panics");
        if !fresh.iter().any(|(k, _)| *k == key) {
            fresh.push((key, parts.checksum()));
        }
    }

    /// Writes the memos [`Self::memoize`] added, before the older ones; returns whether it
    /// wrote. Call once the build's checksums are done.
    pub fn save_checksum_memo(&self) -> Result<bool, ContextError> {
        let Some(path) = self.memo_path() else {
            return Ok(false);
        };
        let fresh = std::mem::take(&mut *self.memo.fresh.lock().expect("no memo thread panics"));
        let stored = self.memo.stored.get_or_init(|| load(&path));
        let mut all: Vec<Pair> = Vec::with_capacity(KEPT);
        for pair in fresh.iter().chain(stored) {
            if all.len() < KEPT && !all.iter().any(|(k, _)| *k == pair.0) {
                all.push(*pair);
            }
        }
        if all.len() == stored.len() && all.iter().zip(stored).all(|(a, b)| a == b) {
            return Ok(false);
        }
        strata_store::durable::write_atomic_unsynced(&path, &encode(&all)).map_err(|e| {
            ContextError::SaveChecksumMemo {
                path: path.clone(),
                source: e.into(),
            }
        })?;
        Ok(true)
    }

    fn memo_path(&self) -> Option<PathBuf> {
        self.stat_cache_path().map(|p| p.with_extension("memo"))
    }

    fn memo_key(&self, selection: &Selection) -> [u8; 32] {
        let fingerprint = self.memo.fingerprint.get_or_init(|| self.fingerprint());
        let mut h = blake3::Hasher::new();
        h.update(KEY_DOMAIN);
        h.update(fingerprint);
        let list = |h: &mut blake3::Hasher, items: &[String]| {
            h.update(&(items.len() as u64).to_le_bytes());
            for s in items {
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        };
        list(&mut h, &selection.sources);
        list(&mut h, &selection.excludes);
        h.update(&[
            u8::from(selection.follow_links),
            u8::from(selection.parents),
        ]);
        *h.finalize().as_bytes()
    }

    /// The blake3 of what the walk saw: the directory, the ownership rule, and every entry's
    /// path and metadata with its whole stat key. Fed to the hasher 64 KiB at a time (one
    /// small update per field was several times slower at 20,000 entries).
    fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(FINGERPRINT_DOMAIN);
        let dir = self.dir().as_os_str().as_encoded_bytes();
        buf.extend_from_slice(&(dir.len() as u64).to_le_bytes());
        buf.extend_from_slice(dir);
        buf.push(match self.ownership {
            crate::Ownership::Ignore => 0,
            crate::Ownership::Keep => 1,
        });
        buf.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            let link = e.link.as_deref();
            buf.extend_from_slice(&(e.path.len() as u64).to_le_bytes());
            buf.extend_from_slice(e.path.as_bytes());
            buf.push(u8::from(link.is_some()));
            if let Some(link) = link {
                buf.extend_from_slice(&(link.len() as u64).to_le_bytes());
                buf.extend_from_slice(link);
            }
            let s = &e.stat;
            for n in [e.uid, e.gid, e.perm, s.mode, s.mtime.1, s.ctime.1] {
                buf.extend_from_slice(&n.to_le_bytes());
            }
            for n in [e.rdev, s.size, s.ino, s.dev] {
                buf.extend_from_slice(&n.to_le_bytes());
            }
            for n in [s.mtime.0, s.ctime.0] {
                buf.extend_from_slice(&n.to_le_bytes());
            }
            if buf.len() >= 60 * 1024 {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
        *h.finalize().as_bytes()
    }
}

fn encode(pairs: &[Pair]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + pairs.len() * 64 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (key, sum) in pairs {
        out.extend_from_slice(key);
        out.extend_from_slice(&sum.0);
    }
    let trailer = blake3::hash(&out);
    out.extend_from_slice(trailer.as_bytes());
    out
}

/// The memos in `path`; none if it is missing, damaged or not ours.
fn load(path: &Path) -> Vec<Pair> {
    fs_err::read(path)
        .ok()
        .and_then(|bytes| decode(&bytes))
        .unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<Vec<Pair>> {
    let (body, trailer) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != trailer {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let (count, rest) = rest.split_at_checked(8)?;
    let count = u64::from_le_bytes(count.try_into().ok()?);
    if rest.len() as u64 != count.checked_mul(64)? {
        return None;
    }
    Some(
        rest.chunks_exact(64)
            .map(|pair| {
                let (key, sum) = pair.split_at(32);
                (
                    key.try_into().expect("32 bytes"),
                    Checksum(sum.try_into().expect("32 bytes")),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Tree;
    use crate::{ContextFilter, ScanOptions};
    use std::time::{Duration, SystemTime};

    fn opts(cache: &Path) -> ScanOptions<'_> {
        ScanOptions {
            stat_cache: Some(cache),
            racy_window: Duration::ZERO,
            ..ScanOptions::default()
        }
    }

    /// One build as the solver runs it: scan, checksum through the memo, save. Returns the
    /// checksum and whether it came from the memo.
    fn build_with(t: &Tree, opts: &ScanOptions<'_>, sel: &Selection) -> (Checksum, bool) {
        let index = t.scan_with(opts);
        let out = match index.memoized_checksum(sel) {
            Some(sum) => (sum, true),
            None => {
                let parts = index.checksum_parts(sel).unwrap();
                index.memoize(sel, &parts);
                (parts.checksum(), false)
            }
        };
        index.save_stat_cache().unwrap();
        index.save_checksum_memo().unwrap();
        out
    }

    fn build(t: &Tree, cache: &Path, sel: &Selection) -> (Checksum, bool) {
        build_with(t, &opts(cache), sel)
    }

    /// The checksum from a fresh index with no stat cache and no memo.
    fn truth(t: &Tree, sel: &Selection) -> Checksum {
        t.scan().checksum(sel).unwrap().checksum
    }

    fn tree() -> Tree {
        let t = Tree::new();
        t.file("a.txt", "a\n", 0o644)
            .file("src/b.txt", "bb\n", 0o644)
            .file("src/c.txt", "ccc\n", 0o755)
            .symlink("link", "a.txt");
        t
    }

    #[test]
    fn an_unchanged_tree_hits_and_any_change_misses() {
        let t = tree();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        assert!(!build(&t, &cache, &all).1, "first build: nothing memoized");
        let (sum, hit) = build(&t, &cache, &all);
        assert!(hit, "a no-op build takes the memo");
        assert_eq!(sum, truth(&t, &all));

        // Each change must miss the memo and give the true checksum; the build after hits.
        type Change = fn(&Tree);
        let changes: [(&str, Change); 6] = [
            ("same-size edit", |t| _ = t.file("src/b.txt", "BB\n", 0o644)),
            ("added file", |t| _ = t.file("src/new.txt", "n", 0o644)),
            ("deleted file", |t| {
                fs_err::remove_file(t.path("src/c.txt")).unwrap()
            }),
            ("chmod", |t| _ = t.chmod("a.txt", 0o600)),
            ("new symlink target", |t| {
                fs_err::remove_file(t.path("link")).unwrap();
                t.symlink("link", "src");
            }),
            ("added empty dir", |t| _ = t.dir("empty", 0o755)),
        ];
        for (what, change) in changes {
            let before = build(&t, &cache, &all).0;
            change(&t);
            let (after, hit) = build(&t, &cache, &all);
            assert!(!hit, "{what}: the memo was taken");
            assert_eq!(after, truth(&t, &all), "{what}");
            assert_ne!(after, before, "{what}: the checksum did not change");
            assert!(
                build(&t, &cache, &all).1,
                "{what}: the next build hits again"
            );
        }
    }

    #[test]
    fn a_same_size_edit_with_its_mtime_put_back_misses() {
        // Only the ctime tells (`cp -p`, `rsync -t`): it is in the fingerprint.
        let t = tree();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        t.set_mtime("a.txt", old);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        build(&t, &cache, &all);
        let (before, hit) = build(&t, &cache, &all);
        assert!(hit);
        t.file("a.txt", "A\n", 0o644).set_mtime("a.txt", old);
        let (after, hit) = build(&t, &cache, &all);
        assert!(!hit, "the memo was taken");
        assert_ne!(after, before);
        assert_eq!(after, truth(&t, &all));
    }

    /// Drops every path named `name` (what a `.dockerignore` line does).
    struct Drop(&'static str);

    impl ContextFilter for Drop {
        fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
            rel.rsplit('/').next() == Some(self.0)
        }

        fn may_reinclude_below(&self, _rel_dir: &str) -> bool {
            false
        }
    }

    #[test]
    fn another_selection_or_a_dockerignore_change_misses() {
        let t = tree();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        let src = Selection::copy(["src"]);
        build(&t, &cache, &all);
        assert!(build(&t, &cache, &all).1);
        let (sum, hit) = build(&t, &cache, &src);
        assert!(!hit, "another selection has its own memo");
        assert_eq!(sum, truth(&t, &src));
        let excluding = src.clone().excluding(["c.txt"]);
        assert!(
            !build(&t, &cache, &excluding).1,
            "an --exclude is part of the key"
        );
        assert!(build(&t, &cache, &all).1, "every memo is kept");
        assert!(build(&t, &cache, &src).1);

        let ignoring = ScanOptions {
            filter: &Drop("c.txt"),
            ..opts(&cache)
        };
        let (ignored, hit) = build_with(&t, &ignoring, &all);
        assert!(!hit, "a walk that ignores a file is another walk");
        assert_ne!(ignored, truth(&t, &all));
        assert_eq!(build_with(&t, &ignoring, &all), (ignored, true));
        assert_eq!(build(&t, &cache, &all), (truth(&t, &all), true));
    }

    #[test]
    fn a_file_too_young_to_trust_is_not_memoized() {
        let t = tree();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        let young = ScanOptions {
            racy_window: Duration::from_secs(3600),
            ..opts(&cache)
        };
        assert!(!build_with(&t, &young, &all).1);
        assert!(!build_with(&t, &young, &all).1, "never memoized");
        assert!(!cache.with_extension("memo").exists());
    }

    #[test]
    fn a_damaged_memo_file_is_a_miss() {
        let t = tree();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("ctx.stat");
        let all = Selection::copy(["."]);
        build(&t, &cache, &all);
        let memo = cache.with_extension("memo");
        let good = fs_err::read(&memo).unwrap();
        let mut flipped = good.clone();
        flipped[MAGIC.len() + 10] ^= 1;
        for bad in [&flipped[..], &good[..good.len() - 1], b"", b"strata"] {
            fs_err::write(&memo, bad).unwrap();
            assert_eq!(build(&t, &cache, &all), (truth(&t, &all), false));
            assert!(build(&t, &cache, &all).1, "rewritten whole");
        }
    }

    #[test]
    fn a_tree_without_a_stat_cache_has_no_memo() {
        let t = tree();
        let all = Selection::copy(["."]);
        let index = t.scan();
        let parts = index.checksum_parts(&all).unwrap();
        index.memoize(&all, &parts);
        assert!(!index.save_checksum_memo().unwrap());
        assert_eq!(index.memoized_checksum(&all), None);
    }
}
