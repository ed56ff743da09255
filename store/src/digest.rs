//! Digests are the names of everything in the store, and some of them arrive from tarballs and
//! registries: a digest string is validated (`sha256:` and 64 lowercase hex digits) before it is
//! ever used, above all before it becomes part of a path (`sha256:../../etc/passwd`).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A validated `sha256:<64 lowercase hex>` content digest.
///
/// ```
/// use strata_store::Digest;
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d.hex().len(), 64);
/// assert_eq!(d.short(), "e3b0c44298fc");
/// assert_eq!(Digest::of(b""), d);
/// assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
/// # Ok::<(), strata_store::DigestError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// A string that is not a valid sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256: and 64 lowercase hex digits")]
pub struct DigestError(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// Builds a digest from 64 hex digits (without the `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        format!("sha256:{hex}").parse()
    }

    /// The full `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, as `docker images` shows an image ID.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

/// Whether `s` is `sha256:` and 64 lowercase hex digits.
fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::try_from(s.to_owned())
    }
}

/// Keeps the string it checked: a digest read from JSON (hundreds in a build's cache records)
/// is not copied again.
impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_digest(&s) {
            Ok(Digest(s))
        } else {
            Err(DigestError(s.chars().take(200).collect()))
        }
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        d.as_str()
            .parse()
            .expect("a validated sha256 digest is a valid OCI digest")
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        d.to_string().parse()
    }
}

/// The chain ID of a layer stack (OCI image spec): the first layer's is its diff ID, each next
/// one is `sha256(parent_chain + " " + diff_id)`. Snapshots are keyed by it.
///
/// ```
/// use strata_store::{chain_id, Digest};
/// let a = Digest::of(b"a");
/// let b = Digest::of(b"b");
/// assert_eq!(chain_id(None, &a), a);
/// assert_eq!(chain_id(Some(&a), &b), Digest::of(format!("{a} {b}").as_bytes()));
/// ```
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// The chain IDs of every prefix of `diff_ids`, bottom layer first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = chain_id(out.last(), diff_id);
        out.push(next);
    }
    out
}

/// A writer that hashes (sha256) and counts what passes through it: how anything written is
/// given its [`Digest`] without a second read.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written into `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The inner writer, the digest and the byte count of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Chunks a [`ThreadHashingWriter`] hashes on its thread (the first one only once full: a
/// smaller stream is hashed in place, no thread started).
const HASH_CHUNK: usize = 1 << 20;

/// A [`HashingWriter`] whose SHA-256 runs on a thread of its own, beside the writes: bytes are
/// gathered in 1 MiB chunks, each written to `inner` here, then hashed there (with SHA-NI the
/// hash of a 100 MB layer is as long as its read and write together; done in turn they were
/// most of a `commit`). Two chunks at most are in flight; memory stays flat.
pub(crate) struct ThreadHashingWriter<W> {
    inner: W,
    chunk: Vec<u8>,
    hashing: Hashing,
    count: u64,
}

/// Where a [`ThreadHashingWriter`]'s hash is computed.
enum Hashing {
    /// In place, until the first full chunk.
    Here(Sha256),
    /// On a thread, fed full chunks, handing them back for reuse.
    There {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        spare: std::sync::mpsc::Receiver<Vec<u8>>,
        thread: std::thread::JoinHandle<Sha256>,
    },
}

impl<W: Write> ThreadHashingWriter<W> {
    /// Hashes what is written into `inner`.
    pub(crate) fn new(inner: W) -> Self {
        ThreadHashingWriter {
            inner,
            chunk: Vec::with_capacity(HASH_CHUNK),
            hashing: Hashing::Here(Sha256::new()),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The inner writer (bytes written lately may not have reached it yet).
    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Writes the full chunk to `inner` and hands it to the hashing thread (started at the
    /// first one).
    fn pass_chunk(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.chunk)?;
        if let Hashing::Here(hasher) = &mut self.hashing {
            let mut hasher = std::mem::take(hasher);
            let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
            let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let thread = std::thread::Builder::new()
                .name("layer-hash".into())
                .spawn(move || {
                    for chunk in rx {
                        hasher.update(&chunk);
                        let _ = back.try_send(chunk);
                    }
                    hasher
                })?;
            self.hashing = Hashing::There {
                chunks,
                spare,
                thread,
            };
        }
        if let Hashing::There { chunks, spare, .. } = &self.hashing {
            let next = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK));
            let full = std::mem::replace(&mut self.chunk, next);
            chunks
                .send(full)
                .map_err(|_| io::Error::other("the layer's hashing thread stopped"))?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// The inner writer (flushed), the digest and the byte count of everything written.
    pub(crate) fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.inner.write_all(&self.chunk)?;
        self.inner.flush()?;
        let mut hasher = match self.hashing {
            Hashing::Here(hasher) => hasher,
            Hashing::There { chunks, thread, .. } => {
                drop(chunks);
                thread
                    .join()
                    .map_err(|_| io::Error::other("the layer's hashing thread panicked"))?
            }
        };
        hasher.update(&self.chunk);
        Ok((self.inner, Digest::from_hasher(hasher), self.count))
    }
}

impl<W: Write> Write for ThreadHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(HASH_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        self.count += n as u64;
        if self.chunk.len() == HASH_CHUNK {
            self.pass_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Bytes wait for a full chunk; `finish` writes the rest.
        Ok(())
    }
}

/// A reader that hashes and counts what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (R, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes everything `body` yields: its digest and length.
pub(crate) fn digest_reader(body: impl Read) -> io::Result<(Digest, u64)> {
    let mut r = HashingReader::new(body);
    io::copy(&mut r, &mut io::sink())?;
    let (_, d, n) = r.finish();
    Ok((d, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_hashing_writer_writes_and_hashes_every_byte_in_order() {
        // Below one chunk (no thread), exactly one, and several with a partial last one,
        // written in odd pieces.
        for len in [0, 5, HASH_CHUNK, 2 * HASH_CHUNK + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut w = ThreadHashingWriter::new(Vec::new());
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.count(), len as u64);
            let (out, digest, count) = w.finish().unwrap();
            assert_eq!(
                (out == data, digest, count),
                (true, Digest::of(&data), len as u64)
            );
        }
    }

    #[test]
    fn rejects_anything_but_lowercase_sha256() {
        let hex = "a".repeat(64);
        assert!(format!("sha256:{hex}").parse::<Digest>().is_ok());
        for bad in [
            String::new(),
            hex.clone(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha512:{hex}"),
            format!("sha256:../{}", "a".repeat(61)),
            format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
            // Read from JSON (a record, a manifest) by the same check.
            let json = serde_json::to_string(&bad).unwrap();
            assert!(serde_json::from_str::<Digest>(&json).is_err(), "{bad}");
        }
        let good = format!("\"sha256:{hex}\"");
        assert_eq!(
            serde_json::from_str::<Digest>(&good).unwrap().as_str(),
            format!("sha256:{hex}")
        );
    }

    #[test]
    fn hashing_writer_matches_of() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (buf, d, n) = w.finish();
        assert_eq!((d, n), (Digest::of(b"hello world"), 11));
        assert_eq!(buf, b"hello world");
    }
}
