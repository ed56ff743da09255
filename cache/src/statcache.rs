//! The persistent stat cache: (path, size, mtime, ctime, inode, device, mode) → blake3 of the
//! bytes, so an unchanged context costs one `statx` per entry and no reads.
//!
//! **Racy entries.** A file rewritten within the same timestamp tick as the write we hashed
//! keeps its stat (size, mtime and ctime all equal) while its bytes differ; trusting the cache
//! then would be a stale hit forever (git's "racy clean" problem). Git marks entries whose
//! mtime is not older than the index file. We go one step stricter: a digest is stored only
//! if the file's last change (the later of mtime and ctime, so `touch -d`/`cp -p` restoring an
//! old mtime is covered) happened at least a racy window (2 s by default: coarse kernel
//! clocks, 1 s and 2 s filesystem granularity) before we *started reading* it. A younger file
//! is hashed now and again next build, until it has been quiet for the window.
//!
//! **Format.** One binary file per context directory, written whole through
//! [`strata_store::durable::write_atomic`] (so two processes never see a torn file; the last writer wins
//! and the loser's entries are simply recomputed), ending in a blake3 of everything before it.
//! A file that fails any check (magic, length, trailer) is ignored, counted in
//! [`StatCacheStatus::Corrupt`], and replaced on the next save: never trusted, never a panic.
//! Hand-written rather than serde-encoded because the format is fixed-width fields plus a
//! checksum, and loading 20,000 entries must take a few milliseconds.

use crate::entry::path_cmp;
use crate::entry::{Entry, StatKey};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8] = b"strata-statcache-v1\n";
const TRAILER: usize = 32;

/// What the index found in its stat cache file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatCacheStatus {
    /// No stat cache was asked for.
    Disabled,
    /// There was no file yet (first build of this context).
    Missing,
    /// The file was read and checked.
    Loaded {
        /// How many digests it held.
        entries: usize,
    },
    /// The file was unreadable or damaged; it was ignored and will be rewritten.
    Corrupt,
}

/// The decoded file: every path points into `text`, so loading allocates three buffers, not
/// one string per entry. Sorted by path ([`path_cmp`]), as the index writes it.
#[derive(Debug, Default)]
struct Digests {
    text: String,
    items: Vec<Item>,
}

#[derive(Debug)]
struct Item {
    path: Range<usize>,
    key: StatKey,
    digest: [u8; 32],
}

#[derive(Debug)]
pub(crate) struct StatCache {
    map: Digests,
    pub(crate) status: StatCacheStatus,
}

impl StatCache {
    /// Reads `path`; a missing or damaged file gives an empty cache.
    pub(crate) fn load(path: &Path) -> Self {
        let bytes = match fs_err::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return StatCache {
                    map: Digests::default(),
                    status: StatCacheStatus::Missing,
                };
            }
            Err(_) => {
                return StatCache {
                    map: Digests::default(),
                    status: StatCacheStatus::Corrupt,
                };
            }
        };
        match decode(&bytes) {
            Some(map) => {
                let entries = map.items.len();
                StatCache {
                    map,
                    status: StatCacheStatus::Loaded { entries },
                }
            }
            None => StatCache {
                map: Digests::default(),
                status: StatCacheStatus::Corrupt,
            },
        }
    }

    /// The cached digest of each of `entries` whose stat is exactly the one it was hashed
    /// with, in order. `entries` must be sorted by [`path_cmp`] (as the walk gives them), so
    /// this is one merge pass over both lists: the per-entry binary search it replaces was
    /// 5% of a no-op build of a 20,000-file context.
    pub(crate) fn lookup_sorted<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a StatKey)>,
    ) -> Vec<Option<[u8; 32]>> {
        let m = &self.map;
        let mut items = m.items.iter().peekable();
        entries
            .into_iter()
            .map(|(path, key)| {
                while let Some(item) = items.peek() {
                    match path_cmp(&m.text[item.path.clone()], path) {
                        std::cmp::Ordering::Less => {
                            items.next();
                        }
                        std::cmp::Ordering::Equal => {
                            return (item.key == *key).then_some(item.digest);
                        }
                        std::cmp::Ordering::Greater => return None,
                    }
                }
                None
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.items.len()
    }
}

/// What [`merge_file`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merged {
    /// The file was read through and checked; it held this many digests.
    Loaded(usize),
    /// There is no file.
    Missing,
    /// The file failed a check: nothing it said may be used.
    Corrupt,
    /// Not sorted by path (not written by us), and not checked past that point: decode it
    /// with [`StatCache::load`] instead. Nothing it said may be used yet.
    Unsorted,
}

/// Reads the stat cache file at `path` as a stream and merges it with `entries` (sorted by
/// [`path_cmp`], as the walk gives them): `found(i, digest)` for each entry whose stat is
/// exactly the one its digest was computed with. Memory stays one read buffer and one path,
/// where decoding the file into a table first held ~125 bytes per file (12.9 MB at 100,000
/// files) beside the walk's list. The trailer is checked only at the end, so unless this
/// returns [`Merged::Loaded`], every `found` call it made must be forgotten.
pub(crate) fn merge_file(
    path: &Path,
    entries: &[Entry],
    found: &mut dyn FnMut(usize, [u8; 32]),
) -> Merged {
    let file = match fs_err::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Merged::Missing,
        Err(_) => return Merged::Corrupt,
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Merged::Corrupt;
    };
    let Some(body_len) = len.checked_sub(TRAILER as u64) else {
        return Merged::Corrupt;
    };
    // Hashed as read from the file, 64 KiB at a time: hashing each field as it is parsed
    // made a no-op of 100,000 files ~40 ms slower.
    let mut hashed = HashingReader {
        inner: file,
        left: body_len,
        hasher: blake3::Hasher::new(),
    };
    let mut body = std::io::BufReader::with_capacity(64 * 1024, &mut hashed);
    let outcome = merge_body(&mut body, body_len, entries, found);
    let consumed = body.buffer().is_empty();
    drop(body);
    let mut trailer = [0u8; TRAILER];
    let intact = consumed
        && hashed.left == 0
        && hashed.inner.read_exact(&mut trailer).is_ok()
        && hashed.inner.read(&mut [0u8; 1]).is_ok_and(|n| n == 0)
        && *hashed.hasher.finalize().as_bytes() == trailer;
    match outcome {
        // Not checked to its end: the decoding that follows checks it.
        Some(Merged::Unsorted) => Merged::Unsorted,
        Some(m @ Merged::Loaded(_)) if intact => m,
        _ => Merged::Corrupt,
    }
}

/// The entries of the file's body (`body_len` bytes) after its magic, merged with
/// `entries`; `None` if it is cut short or malformed, [`Merged::Unsorted`] at the first path
/// out of order.
fn merge_body(
    body: &mut impl Read,
    body_len: u64,
    entries: &[Entry],
    found: &mut dyn FnMut(usize, [u8; 32]),
) -> Option<Merged> {
    let mut magic = [0u8; MAGIC.len()];
    body.read_exact(&mut magic).ok()?;
    if magic != MAGIC {
        return None;
    }
    let count = usize::try_from(u64::from_le_bytes(array(body)?)).ok()?;
    // Every entry takes at least 88 bytes: a count beyond that is a lie.
    if count as u64 > body_len / 88 {
        return None;
    }
    let mut path = Vec::new();
    let mut previous = Vec::new();
    let mut next = 0; // the first entry not yet passed
    for n in 0..count {
        let len = u32::from_le_bytes(array(body)?) as usize;
        if len as u64 > body_len {
            return None;
        }
        path.resize(len, 0);
        body.read_exact(&mut path).ok()?;
        let text = std::str::from_utf8(&path).ok()?;
        let fixed: [u8; 84] = array(body)?;
        let field = |at: usize| -> [u8; 8] { fixed[at..at + 8].try_into().expect("8 bytes") };
        let half = |at: usize| -> [u8; 4] { fixed[at..at + 4].try_into().expect("4 bytes") };
        let key = StatKey {
            size: u64::from_le_bytes(field(0)),
            mtime: (i64::from_le_bytes(field(8)), u32::from_le_bytes(half(16))),
            ctime: (i64::from_le_bytes(field(20)), u32::from_le_bytes(half(28))),
            ino: u64::from_le_bytes(field(32)),
            dev: u64::from_le_bytes(field(40)),
            mode: u32::from_le_bytes(half(48)),
        };
        let digest: [u8; 32] = fixed[52..].try_into().expect("32 bytes");
        if n > 0 {
            let prev = std::str::from_utf8(&previous).ok()?;
            if !path_cmp(prev, text).is_lt() {
                return Some(Merged::Unsorted);
            }
        }
        while let Some(e) = entries.get(next) {
            match path_cmp(&e.path, text) {
                std::cmp::Ordering::Less => next += 1,
                std::cmp::Ordering::Equal => {
                    if e.stat == key {
                        found(next, digest);
                    }
                    next += 1;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        std::mem::swap(&mut previous, &mut path);
    }
    Some(Merged::Loaded(count))
}

fn array<const N: usize>(r: &mut impl Read) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).ok()?;
    Some(b)
}

/// Reads at most `left` bytes of `inner`, hashing what it reads.
struct HashingReader<R> {
    inner: R,
    left: u64,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Whether a digest of a file with stat `key`, read starting at `read_started`, may be stored.
pub(crate) fn trustworthy(key: &StatKey, read_started: SystemTime, window: Duration) -> bool {
    let nanos = |(s, ns): (i64, u32)| i128::from(s) * 1_000_000_000 + i128::from(ns);
    let changed = nanos(key.mtime).max(nanos(key.ctime));
    let started = match read_started.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    changed + (window.as_nanos() as i128) < started
}

#[cfg(test)]
pub(crate) fn encode<'a>(
    entries: impl ExactSizeIterator<Item = (&'a str, &'a StatKey, &'a [u8; 32])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    encode_to(&mut out, entries.len(), entries).expect("writing to memory does not fail");
    out
}

/// Writes the file for `count` entries to `w` as a stream (its trailer hashed on the way),
/// so saving the stat cache of 100,000 files never holds its 11 MB.
pub(crate) fn encode_to<'a>(
    w: &mut dyn Write,
    count: usize,
    entries: impl Iterator<Item = (&'a str, &'a StatKey, &'a [u8; 32])>,
) -> std::io::Result<()> {
    let mut hasher = blake3::Hasher::new();
    let mut put = |bytes: &[u8]| {
        hasher.update(bytes);
        w.write_all(bytes)
    };
    put(MAGIC)?;
    put(&(count as u64).to_le_bytes())?;
    let mut written = 0;
    for (path, k, digest) in entries {
        // One entry's fixed part (4 + 52 + 32 bytes) in one piece, the path between.
        put(&(path.len() as u32).to_le_bytes())?;
        put(path.as_bytes())?;
        let mut fixed = [0u8; 84];
        let fields: [&[u8]; 9] = [
            &k.size.to_le_bytes(),
            &k.mtime.0.to_le_bytes(),
            &k.mtime.1.to_le_bytes(),
            &k.ctime.0.to_le_bytes(),
            &k.ctime.1.to_le_bytes(),
            &k.ino.to_le_bytes(),
            &k.dev.to_le_bytes(),
            &k.mode.to_le_bytes(),
            digest,
        ];
        let mut at = 0;
        for f in fields {
            fixed[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        put(&fixed)?;
        written += 1;
    }
    if written != count {
        return Err(std::io::Error::other("stat cache entries miscounted"));
    }
    let trailer = hasher.finalize();
    w.write_all(trailer.as_bytes())
}

fn decode(bytes: &[u8]) -> Option<Digests> {
    let body_len = bytes.len().checked_sub(TRAILER)?;
    let (body, trailer) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != trailer {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let count = usize::try_from(r.u64()?).ok()?;
    // Every entry takes at least 88 bytes: a count beyond that is a lie, not an allocation.
    if count > r.0.len() / 88 {
        return None;
    }
    let mut text = String::new();
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?).ok()?;
        let start = text.len();
        text.push_str(path);
        let key = StatKey {
            size: r.u64()?,
            mtime: (r.i64()?, r.u32()?),
            ctime: (r.i64()?, r.u32()?),
            ino: r.u64()?,
            dev: r.u64()?,
            mode: r.u32()?,
        };
        let digest: [u8; 32] = r.take(32)?.try_into().ok()?;
        items.push(Item {
            path: start..text.len(),
            key,
            digest,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    let mut map = Digests { text, items };
    let sorted = map.items.is_sorted_by(|a, b| {
        path_cmp(&map.text[a.path.clone()], &map.text[b.path.clone()]).is_lt()
    });
    if !sorted {
        // Not written by us (or by an older us): sort rather than distrust.
        let text = &map.text;
        map.items
            .sort_by(|a, b| path_cmp(&text[a.path.clone()], &text[b.path.clone()]));
    }
    Some(map)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mtime: i64, ctime: i64) -> StatKey {
        StatKey {
            size: 3,
            mtime: (mtime, 5),
            ctime: (ctime, 7),
            ino: 9,
            dev: 11,
            mode: 0o100644,
        }
    }

    #[test]
    fn round_trips_and_detects_any_damage() {
        let k = key(100, 200);
        let d = [7u8; 32];
        // Out of order on purpose: a file not sorted by path is still usable.
        let bytes = encode([("c", &k, &[1u8; 32]), ("a/b", &k, &d)].into_iter());
        let cache = StatCache {
            map: decode(&bytes).expect("fresh encoding decodes"),
            status: StatCacheStatus::Disabled,
        };
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.lookup_sorted([("a", &k), ("a/b", &k), ("c", &k)]),
            [None, Some(d), Some([1u8; 32])]
        );
        let mut other = k;
        other.ctime.1 += 1;
        assert_eq!(
            cache.lookup_sorted([("a/b", &other), ("c", &k)]),
            [None, Some([1u8; 32])],
            "any stat change is a miss"
        );
        // Flipping any single byte, or cutting the file anywhere, is detected.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_none(), "flip at {i} not detected");
            assert!(
                decode(&bytes[..i]).is_none(),
                "truncation at {i} not detected"
            );
        }
    }

    /// The merge finds exactly what a per-path search finds, whatever is missing on either
    /// side, with `/` sorting before every other byte (`a/b` < `a-b` < `a0`).
    #[test]
    fn sorted_lookup_matches_every_path_on_either_side() {
        let k = key(100, 200);
        let all = ["", "a", "a/b", "a/b/c", "a/c", "a-b", "a0", "b", "b/x", "c"];
        for cached_mask in 0u32..(1 << all.len()) {
            let cached: Vec<(&str, [u8; 32])> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| cached_mask & (1 << i) != 0)
                .map(|(i, p)| (*p, [i as u8; 32]))
                .collect();
            let bytes = encode(cached.iter().map(|(p, d)| (*p, &k, d)));
            let cache = StatCache {
                map: decode(&bytes).expect("fresh encoding decodes"),
                status: StatCacheStatus::Disabled,
            };
            // Every third mask of the walk side, so both sides have gaps.
            let walked: Vec<&str> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| (cached_mask.wrapping_mul(7) >> i) % 3 != 0)
                .map(|(_, p)| *p)
                .collect();
            let expected: Vec<Option<[u8; 32]>> = walked
                .iter()
                .map(|w| cached.iter().find(|(p, _)| p == w).map(|(_, d)| *d))
                .collect();
            let got = cache.lookup_sorted(walked.iter().map(|p| (*p, &k)));
            assert_eq!(got, expected, "cached {cached:?}, walked {walked:?}");
        }
    }

    fn entries(paths: &[&str], key: &StatKey) -> Vec<Entry> {
        paths
            .iter()
            .map(|p| Entry {
                path: (*p).into(),
                kind: crate::entry::EntryKind::File,
                perm: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                link: None,
                stat: *key,
            })
            .collect()
    }

    fn merged(bytes: &[u8], walked: &[Entry]) -> (Merged, Vec<(usize, [u8; 32])>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        fs_err::write(&path, bytes).unwrap();
        let mut found = Vec::new();
        let m = merge_file(&path, walked, &mut |i, d| found.push((i, d)));
        (m, found)
    }

    /// Read as a stream beside the walk, the file gives what decoding it and looking every
    /// walked path up gives; a stat that differs is a miss.
    #[test]
    fn the_streamed_file_finds_what_the_decoded_table_finds() {
        let k = key(100, 200);
        let mut other = k;
        other.size += 1;
        let cached = [
            ("", [1u8; 32]),
            ("a/b", [2; 32]),
            ("a-b", [3; 32]),
            ("c", [4; 32]),
        ];
        let bytes = encode(cached.iter().map(|(p, d)| (*p, &k, d)));
        let mut walked = entries(&["", "a", "a/b", "a-b", "b", "c", "d"], &k);
        walked[5].stat = other;
        let (m, found) = merged(&bytes, &walked);
        assert_eq!(m, Merged::Loaded(4));
        assert_eq!(found, [(0, [1; 32]), (2, [2; 32]), (3, [3; 32])]);
        let table = StatCache {
            map: decode(&bytes).unwrap(),
            status: StatCacheStatus::Disabled,
        };
        let looked_up: Vec<(usize, [u8; 32])> = table
            .lookup_sorted(walked.iter().map(|e| (&*e.path, &e.stat)))
            .into_iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d?)))
            .collect();
        assert_eq!(found, looked_up);
    }

    #[test]
    fn a_damaged_or_unsorted_streamed_file_is_never_loaded() {
        let k = key(100, 200);
        let walked = entries(&["a", "a/b", "c"], &k);
        let bytes = encode([("a", &k, &[1u8; 32]), ("c", &k, &[2u8; 32])].into_iter());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            // (A flipped path may read as out of order first: then decoding refuses it.)
            assert_ne!(merged(&bad, &walked).0, Merged::Loaded(2), "flip at {i}");
            assert_eq!(
                merged(&bytes[..i], &walked).0,
                Merged::Corrupt,
                "cut at {i}"
            );
        }
        let unsorted = encode([("c", &k, &[2u8; 32]), ("a", &k, &[1u8; 32])].into_iter());
        assert_eq!(merged(&unsorted, &walked).0, Merged::Unsorted);
        let dir = tempfile::tempdir().unwrap();
        let mut found = 0;
        let none = merge_file(&dir.path().join("none"), &walked, &mut |_, _| found += 1);
        assert_eq!((none, found), (Merged::Missing, 0));
    }

    #[test]
    fn racy_window_uses_the_later_of_mtime_and_ctime() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let w = Duration::from_secs(2);
        assert!(trustworthy(&key(100, 100), at(103), w));
        // Changed 1 s before the read started: inside the window.
        assert!(!trustworthy(&key(100, 100), at(101), w));
        // Old mtime restored by `touch -d`, but the change (ctime) is fresh.
        assert!(!trustworthy(&key(10, 100), at(101), w));
        // A clock in the future of the reader is never trusted.
        assert!(!trustworthy(&key(500, 500), at(101), w));
        assert!(trustworthy(&key(100, 100), at(101), Duration::ZERO));
    }
}
