//! Blobs between the store and a registry. A download streams into a [`crate::BlobWriter`]
//! (constant memory, hashed as it arrives) and is committed only if it has the digest it was
//! asked by. A connection that breaks or stalls midway is resumed with a `Range` request (a
//! few times); a mismatch, or a registry that cannot resume, discards the partial blob and
//! starts once more from scratch. An upload is `POST` for a session, then one `PUT ?digest=`
//! with the file, which the registry verifies; or, with a chunk size set, `PATCH`es of that
//! size before an empty `PUT`. A session that breaks midway is abandoned and the blob sent
//! once more in a new one. Several run at once on scoped threads (`in_parallel`): the client
//! is synchronous, so plain threads are the simplest pool.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::reference::Reference;
use crate::registry::client::{Body, RegistryClient, Request, Sent};
use crate::registry::error::RegistryError;
use crate::store::Store;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

/// What a pull or push is doing with one layer: docker's status words.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerStatus {
    /// A layer to download (`Pulling fs layer`).
    PullingFsLayer,
    /// The store has the layer's blob and its snapshot (`Already exists`).
    AlreadyExists,
    /// Queued behind the download (or upload) limit (`Waiting`).
    Waiting,
    /// Bytes arriving (`Downloading`).
    Downloading {
        /// Bytes so far.
        current: u64,
        /// The layer's size.
        total: u64,
    },
    /// All bytes arrived, the digest is being checked (`Verifying Checksum`).
    VerifyingChecksum,
    /// The blob is in the store (`Download complete`).
    DownloadComplete,
    /// The layer is being unpacked into its snapshot, decompressed and checked against its
    /// diff ID on the way (`Extracting`).
    Extracting {
        /// Bytes of the blob read so far.
        current: u64,
        /// The blob's size.
        total: u64,
    },
    /// Done (`Pull complete`).
    PullComplete,
    /// A layer to push (`Preparing`).
    Preparing,
    /// Bytes going out (`Pushing`).
    Pushing {
        /// Bytes sent so far.
        current: u64,
        /// The layer's size.
        total: u64,
    },
    /// The registry has it now (`Pushed`).
    Pushed,
    /// The registry had it already (`Layer already exists`).
    LayerAlreadyExists,
    /// The registry mounted it from another of its repositories (`Mounted from REPO`).
    MountedFrom(String),
}

/// One progress report: which layer (blob digest) and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEvent {
    /// The layer blob.
    pub layer: Digest,
    /// What happens.
    pub status: LayerStatus,
}

/// Where progress goes; called from several threads.
pub type Progress<'a> = &'a (dyn Fn(LayerEvent) + Sync);

/// How many times in a row one download continues with a `Range` request after its connection
/// broke without bringing a byte: a connection that keeps breaking but brings more each time
/// (a flaky network under a big layer) is followed to the end.
const MAX_RESUMES: u32 = 5;

/// Which side of a copy failed.
enum Interrupted {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// `io::copy` that says whether the reader (the network: resumable) or the writer (the disk)
/// failed.
fn copy_resumable(from: &mut impl Read, to: &mut impl Write) -> Result<(), Interrupted> {
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Interrupted::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Interrupted::Write)?;
    }
}

/// How often `Downloading` is reported.
const PROGRESS_STEP: u64 = 1 << 20;

/// Runs `work` on every item, `jobs` at a time, and returns the results in order. The first
/// error stops the others from starting new items and is returned.
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R, RegistryError> + Sync,
) -> Result<Vec<R>, RegistryError> {
    in_parallel_until(items, jobs, &AtomicBool::new(false), work)
}

/// [`in_parallel`], which also stops starting new items once `failed` is set by someone else
/// (and sets it on its own first error). Items never started have no result.
pub(crate) fn in_parallel_until<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    failed: &AtomicBool,
    work: impl Fn(&T) -> Result<R, RegistryError> + Sync,
) -> Result<Vec<R>, RegistryError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R, RegistryError>>>> =
        Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("no worker panics holding the lock")[i] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().expect("every worker has finished");
    let mut out = Vec::with_capacity(items.len());
    let mut first_error = None;
    for r in results {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A writer that counts what passes and reports `Downloading` every [`PROGRESS_STEP`].
struct Counting<'a, W> {
    inner: W,
    count: u64,
    reported: u64,
    total: u64,
    report: &'a dyn Fn(LayerStatus),
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        if self.count - self.reported >= PROGRESS_STEP {
            self.reported = self.count;
            (self.report)(LayerStatus::Downloading {
                current: self.count,
                total: self.total,
            });
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that also sends each chunk it takes to `side` (the unpacking of a layer while it
/// downloads), until the side hangs up. The channel is bounded: memory stays constant, and
/// the download goes no faster than the unpacking.
struct Tee<W> {
    inner: W,
    side: Option<SyncSender<Vec<u8>>>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(side) = &self.side
            && side.send(buf[..n].to_vec()).is_err()
        {
            self.side = None;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The reading end of a [`Tee`]: the chunks in order, then the end when the sender is gone.
pub(crate) struct TeeReader {
    chunks: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl TeeReader {
    pub(crate) fn new(chunks: Receiver<Vec<u8>>) -> Self {
        TeeReader {
            chunks,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl RegistryClient {
    /// Downloads blob `digest` (`size` bytes) of `reference` into `store`, verified; retries
    /// once from scratch if the bytes do not match or the stream breaks.
    pub(crate) fn download_blob(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        report: &dyn Fn(LayerStatus),
    ) -> Result<(), RegistryError> {
        match self.download_once(store, reference, digest, size, report, None) {
            Err(RegistryError::Download { .. }) => {
                self.download_once(store, reference, digest, size, report, None)
            }
            other => other,
        }
    }

    /// One try at downloading blob `digest` into `store` (a [`RegistryError::Download`] is
    /// worth one more). With `tee`, every byte stored is also sent there as it arrives (the
    /// channel is closed when the last byte is in, before the blob is made durable); a
    /// receiver that hangs up stops the copies, not the download.
    pub(crate) fn download_once(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        report: &dyn Fn(LayerStatus),
        tee: Option<SyncSender<Vec<u8>>>,
    ) -> Result<(), RegistryError> {
        let registry = reference.registry();
        let failed = |source: StoreError| RegistryError::Download {
            registry: registry.to_owned(),
            digest: digest.clone(),
            source: Box::new(source),
        };
        let mut out = Counting {
            inner: Tee {
                inner: store.blob_writer()?,
                side: tee,
            },
            count: 0,
            reported: 0,
            total: size,
            report,
        };
        report(LayerStatus::Downloading {
            current: 0,
            total: size,
        });
        let mut resumes = 0;
        loop {
            let mut req = Request::new(
                "GET",
                registry,
                pull_scope(reference),
                format!("/v2/{}/blobs/{digest}", reference.repository()),
            );
            req.blob = true;
            if out.count > 0 {
                req.headers.push(("Range", format!("bytes={}-", out.count)));
            }
            let mut response = self.send_checked(&req, &reference.familiar(), "pull", || {
                RegistryError::BlobNotFound {
                    reference: reference.familiar(),
                    registry: registry.to_owned(),
                    digest: digest.clone(),
                }
            })?;
            if out.count > 0 && response.status() != 206 {
                // It sent the whole blob again: start over (the caller's one retry).
                return Err(failed(StoreError::stream(format!(
                    "resume the download of blob {digest}"
                ))(std::io::Error::other(
                    "the registry does not answer range requests",
                ))));
            }
            // One byte more than announced is enough to know the registry sent too much.
            let left = size.saturating_add(1) - out.count.min(size);
            let mut body = response.body_mut().as_reader().take(left);
            let had = out.count;
            match copy_resumable(&mut body, &mut out) {
                Ok(()) => break,
                Err(Interrupted::Write(e)) => {
                    return Err(StoreError::stream(format!("store blob {digest}"))(e).into());
                }
                Err(Interrupted::Read(e)) => {
                    // A dropped connection: ask for the rest, a few times in a row if
                    // nothing comes.
                    if out.count > had {
                        resumes = 0;
                    }
                    if resumes >= MAX_RESUMES || out.count >= size {
                        return Err(failed(StoreError::stream(format!(
                            "download blob {digest}"
                        ))(e)));
                    }
                    resumes += 1;
                }
            }
        }
        let received = out.count;
        if received != size {
            return Err(failed(StoreError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual: received,
            }));
        }
        report(LayerStatus::VerifyingChecksum);
        let Tee { inner: blob, side } = out.inner;
        drop(side);
        blob.commit(Some(digest)).map_err(|e| match e {
            e @ StoreError::DigestMismatch { .. } => failed(e),
            e => RegistryError::from(e),
        })?;
        report(LayerStatus::DownloadComplete);
        Ok(())
    }

    /// Whether the repository of `reference` has blob `digest` (`HEAD`).
    pub(crate) fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let req = Request::new(
            "HEAD",
            reference.registry(),
            push_scope(reference),
            format!("/v2/{}/blobs/{digest}", reference.repository()),
        );
        let response = self.send(&req)?;
        if response.status() == 404 {
            return Ok(false);
        }
        self.check(&req, response, &reference.familiar(), "push")?;
        Ok(true)
    }

    /// Uploads blob `digest` from `store`: `POST` an upload session, `PUT` the bytes. With
    /// `mount_from` (another repository of the same registry that has the blob), asks the
    /// registry to mount it from there first; returns whether it did (then nothing is sent).
    /// A session that breaks midway (see [`spoiled_session`]) is abandoned and the blob sent
    /// once more in a new one. `sent` hears how many bytes went out so far.
    pub(crate) fn upload_blob(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        mount_from: Option<&str>,
        sent: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, RegistryError> {
        let result = match self.upload_session(store, reference, digest, mount_from, sent) {
            Err(e) if spoiled_session(&e) => {
                self.upload_session(store, reference, digest, mount_from, sent)
            }
            other => other,
        };
        if result.is_err() {
            // The registry may have refused what we sent (DIGEST_INVALID): if the stored blob
            // is corrupt or truncated, that is the error to report, naming it.
            let path = store.blob_path(digest);
            let (actual, _) = crate::digest::digest_reader(store.open_blob(digest)?)
                .map_err(StoreError::io("read blob", &path))?;
            if actual != *digest {
                return Err(StoreError::DigestMismatch {
                    what: format!("stored blob {digest}"),
                    expected: digest.clone(),
                    actual,
                }
                .into());
            }
        }
        result
    }

    /// One upload session for [`RegistryClient::upload_blob`].
    fn upload_session(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        mount_from: Option<&str>,
        sent: &(dyn Fn(u64) + Sync),
    ) -> Result<Uploaded, RegistryError> {
        let registry = reference.registry();
        let shown = reference.familiar();
        let mut scope = push_scope(reference);
        if let Some(from) = mount_from {
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        let mut req = Request::new(
            "POST",
            registry,
            scope,
            format!("/v2/{}/blobs/uploads/", reference.repository()),
        );
        if let Some(from) = mount_from {
            req.query.push(("mount", digest.to_string()));
            req.query.push(("from", from.to_owned()));
        }
        let response = self.send(&req)?;
        let response = self.check(&req, response, &shown, "push")?;
        if mount_from.is_some() && response.status() == 201 {
            return Ok(Uploaded::Mounted);
        }
        // 202: a new upload session (the registry declined to mount, or we did not ask).
        let mut location = location_of(&response, &shown, registry)?;
        let size = store.blob_size(digest)?;
        let mut put = Request::new("PUT", registry, push_scope(reference), String::new());
        match self.options().upload_chunk_size {
            Some(chunk_size) if size > chunk_size => {
                location =
                    self.upload_chunks(store, reference, digest, chunk_size, location, sent)?;
            }
            _ => {
                put.headers
                    .push(("Content-Type", "application/octet-stream".to_owned()));
                put.body = Body::Blob(store, digest, Some(Sent(sent)));
                put.blob = true;
                put.resend = false;
            }
        }
        put.target = location;
        put.query.push(("digest", digest.to_string()));
        let response = self.send(&put)?;
        self.check(&put, response, &shown, "push")?;
        Ok(Uploaded::Sent)
    }

    /// Sends blob `digest` to the upload session at `location` in `PATCH`es of `chunk_size`
    /// bytes (one chunk in memory at a time); returns where the session continues.
    fn upload_chunks(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        chunk_size: u64,
        mut location: String,
        sent: &(dyn Fn(u64) + Sync),
    ) -> Result<String, RegistryError> {
        let registry = reference.registry();
        let shown = reference.familiar();
        let path = store.blob_path(digest);
        let mut file = store.open_blob(digest)?;
        let mut chunk = Vec::new();
        let mut offset = 0u64;
        loop {
            chunk.clear();
            (&mut file)
                .take(chunk_size)
                .read_to_end(&mut chunk)
                .map_err(StoreError::io("read blob", &path))?;
            if chunk.is_empty() {
                return Ok(location);
            }
            let end = offset + chunk.len() as u64 - 1;
            let mut patch = Request::new("PATCH", registry, push_scope(reference), location);
            patch
                .headers
                .push(("Content-Type", "application/octet-stream".to_owned()));
            patch
                .headers
                .push(("Content-Range", format!("{offset}-{end}")));
            patch.body = Body::Bytes(&chunk);
            patch.blob = true;
            patch.resend = false;
            let response = self.send(&patch)?;
            let response = self.check(&patch, response, &shown, "push")?;
            location = location_of(&response, &shown, registry)?;
            offset = end + 1;
            sent(offset);
        }
    }
}

/// Whether `error` broke an upload session midway, so that only a new session can send the
/// blob: the connection failed or stalled during its `PUT` or a `PATCH` (part of the body may have
/// reached the registry, which then refuses the session's recorded offset), or the registry
/// no longer knows the session (404 or 416 to them; distribution says `BLOB_UPLOAD_INVALID`
/// or `BLOB_UPLOAD_UNKNOWN`).
fn spoiled_session(error: &RegistryError) -> bool {
    match error {
        RegistryError::Transport { method, .. } | RegistryError::Timeout { method, .. } => {
            matches!(*method, "PUT" | "PATCH")
        }
        RegistryError::Status { method, status, .. } => {
            matches!(*method, "PUT" | "PATCH") && matches!(status, 404 | 416)
        }
        _ => false,
    }
}

/// The `Location` of an upload session's answer.
fn location_of(
    response: &ureq::http::Response<ureq::Body>,
    shown: &str,
    registry: &str,
) -> Result<String, RegistryError> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| RegistryError::InvalidDocument {
            what: format!("upload session for {shown}"),
            registry: registry.to_owned(),
            reason: "no Location header".into(),
        })
}

/// How a blob reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Uploaded {
    /// Its bytes were sent.
    Sent,
    /// The registry mounted it from another repository.
    Mounted,
}

pub(crate) fn pull_scope(reference: &Reference) -> String {
    format!("repository:{}:pull", reference.repository())
}

pub(crate) fn push_scope(reference: &Reference) -> String {
    format!("repository:{}:pull,push", reference.repository())
}

/// Reads a stored layer through its decompressor: its diff ID and uncompressed length.
pub(crate) fn diff_id_of(store: &Store, layer: &Digest) -> Result<(Digest, u64), StoreError> {
    let file = store.open_blob(layer)?;
    let what = format!("decompress layer {layer}");
    let reader =
        crate::compression::decompressed(file).map_err(StoreError::stream(what.clone()))?;
    crate::digest::digest_reader(reader.take(u64::MAX)).map_err(StoreError::stream(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryOptions;
    use crate::registry::fake::FakeServer;

    fn client() -> RegistryClient {
        RegistryClient::new(RegistryOptions {
            backoff: std::time::Duration::ZERO,
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn a_corrupt_blob_is_fetched_once_more_then_refused_by_digest_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let right = b"layer bytes";
        let digest = Digest::of(right);

        // Corrupt on the first try only: the second is stored.
        let server = FakeServer::start(|_, before| {
            let body: &[u8] = if before.is_empty() {
                b"LAYER BYTES"
            } else {
                b"layer bytes"
            };
            (200, vec![], body.to_vec())
        });
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let events = Mutex::new(Vec::new());
        let report = |s: LayerStatus| events.lock().unwrap().push(s);
        client()
            .download_blob(&store, &reference, &digest, right.len() as u64, &report)
            .unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), right);
        assert_eq!(server.seen().len(), 2);
        assert_eq!(
            events.into_inner().unwrap().last(),
            Some(&LayerStatus::DownloadComplete)
        );

        // Corrupt every time: an error naming the blob, and nothing in the store.
        let other = Digest::of(b"other bytes");
        let always = FakeServer::start(|_, _| (200, vec![], b"OTHER BYTES".to_vec()));
        let reference = Reference::parse(&format!("{}/app:1", always.host())).unwrap();
        let err = client()
            .download_blob(&store, &reference, &other, 11, &|_| {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to download blob {other} from {}", always.host())
        );
        assert!(matches!(
            &err,
            RegistryError::Download { source, .. }
                if matches!(**source, StoreError::DigestMismatch { .. })
        ));
        assert_eq!(always.seen().len(), 2);
        assert!(!store.has_blob(&other));
        assert!(store.check().unwrap().is_clean());
    }

    #[test]
    fn a_dropped_connection_resumes_with_a_range_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let whole = b"layer bytes";
        let digest = Digest::of(whole);
        let server = FakeServer::start(|req, _| match &req.range {
            // The connection drops after 5 of the 11 bytes.
            None => (
                200,
                vec![("Content-Length", "11".to_owned())],
                b"layer".to_vec(),
            ),
            Some(range) => {
                assert_eq!(range, "bytes=5-");
                (
                    206,
                    vec![("Content-Range", "bytes 5-10/11".to_owned())],
                    b" bytes".to_vec(),
                )
            }
        });
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        client()
            .download_blob(&store, &reference, &digest, 11, &|_| {})
            .unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), whole);
        let ranges: Vec<Option<String>> = server.seen().into_iter().map(|s| s.range).collect();
        assert_eq!(ranges, [None, Some("bytes=5-".to_owned())]);
    }

    #[test]
    fn resumes_go_on_while_each_brings_bytes_and_stop_after_five_that_bring_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let whole = b"layer bytes";
        let digest = Digest::of(whole);
        // Every answer announces the rest and breaks after one byte of it.
        let server = FakeServer::start(|req, _| {
            let from: usize = req
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
                .unwrap_or(0);
            let status = if from == 0 { 200 } else { 206 };
            let length = ("Content-Length", (11 - from).to_string());
            (
                status,
                vec![length],
                b"layer bytes"[from..from + 1].to_vec(),
            )
        });
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        client()
            .download_blob(&store, &reference, &digest, 11, &|_| {})
            .unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), whole);
        assert_eq!(server.seen().len(), 11, "one request a byte");

        // Nothing at all, ever: five resumes, then once more from scratch, then an error.
        let mute =
            FakeServer::start(|_, _| (200, vec![("Content-Length", "11".to_owned())], Vec::new()));
        let reference = Reference::parse(&format!("{}/app:1", mute.host())).unwrap();
        let err = client()
            .download_blob(&store, &reference, &Digest::of(b"other bytes"), 11, &|_| {})
            .unwrap_err();
        assert!(matches!(err, RegistryError::Download { .. }), "{err}");
        assert_eq!(mute.seen().len(), 2 * (1 + MAX_RESUMES as usize));
    }

    #[test]
    fn an_absurd_size_from_a_manifest_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let server = FakeServer::start(|_, _| (200, vec![], b"tiny".to_vec()));
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let digest = Digest::of(b"tiny");
        let err = client()
            .download_blob(&store, &reference, &digest, u64::MAX, &|_| {})
            .unwrap_err();
        assert!(matches!(
            &err,
            RegistryError::Download { source, .. }
                if matches!(**source, StoreError::SizeMismatch { actual: 4, .. })
        ));
        assert!(!store.has_blob(&digest));
    }

    #[test]
    fn a_chunked_upload_patches_ranges_then_puts_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let bytes: Vec<u8> = (0..25u8).collect();
        let blob = store.put_blob(None, &bytes[..]).unwrap();
        let server = FakeServer::start(|req, before| match req.method.as_str() {
            "POST" | "PATCH" => (
                202,
                vec![(
                    "Location",
                    format!("/v2/app/blobs/uploads/u?step={}", before.len()),
                )],
                Vec::new(),
            ),
            _ => (201, vec![], Vec::new()),
        });
        let client = RegistryClient::new(RegistryOptions {
            upload_chunk_size: Some(10),
            ..RegistryOptions::default()
        })
        .unwrap();
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let told = Mutex::new(Vec::new());
        let sent = client
            .upload_blob(&store, &reference, &blob.digest, None, &|n| {
                told.lock().unwrap().push(n)
            })
            .unwrap();
        assert_eq!(told.into_inner().unwrap(), [10, 20, 25]);
        assert_eq!(sent, Uploaded::Sent);
        let seen = server.seen();
        let steps: Vec<(String, String, Option<String>, usize)> = seen
            .iter()
            .map(|s| {
                (
                    s.method.clone(),
                    s.target.clone(),
                    s.content_range.clone(),
                    s.body.len(),
                )
            })
            .collect();
        let range = |r: &str| Some(r.to_owned());
        assert_eq!(
            steps,
            [
                ("POST".into(), "/v2/app/blobs/uploads/".into(), None, 0),
                (
                    "PATCH".into(),
                    "/v2/app/blobs/uploads/u?step=0".into(),
                    range("0-9"),
                    10
                ),
                (
                    "PATCH".into(),
                    "/v2/app/blobs/uploads/u?step=1".into(),
                    range("10-19"),
                    10
                ),
                (
                    "PATCH".into(),
                    "/v2/app/blobs/uploads/u?step=2".into(),
                    range("20-24"),
                    5
                ),
                (
                    "PUT".into(),
                    format!(
                        "/v2/app/blobs/uploads/u?step=3&digest=sha256%3A{}",
                        blob.digest.hex()
                    ),
                    None,
                    0
                ),
            ]
        );
        let sent_bytes: Vec<u8> = seen.iter().flat_map(|s| s.body.clone()).collect();
        assert_eq!(sent_bytes, bytes);
    }

    #[test]
    fn an_upload_session_the_registry_lost_is_started_again_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let blob = store.put_blob(None, &b"layer bytes"[..]).unwrap();
        // The first session's PUT: distribution's answer to a session whose offset is off.
        let server = FakeServer::start(|req, before| match req.method.as_str() {
            "POST" => (
                202,
                vec![(
                    "Location",
                    format!("/v2/app/blobs/uploads/s{}", before.len()),
                )],
                Vec::new(),
            ),
            _ if before.len() == 1 => (
                404,
                vec![],
                br#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid"}]}"#
                    .to_vec(),
            ),
            _ => (201, vec![], Vec::new()),
        });
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let sent = client()
            .upload_blob(&store, &reference, &blob.digest, None, &|_| {})
            .unwrap();
        assert_eq!(sent, Uploaded::Sent);
        let steps: Vec<(String, String, usize)> = server
            .seen()
            .into_iter()
            .map(|s| {
                (
                    s.method,
                    s.target.split('?').next().unwrap().to_owned(),
                    s.body.len(),
                )
            })
            .collect();
        let step = |m: &str, t: &str, n| (m.to_owned(), t.to_owned(), n);
        assert_eq!(
            steps,
            [
                step("POST", "/v2/app/blobs/uploads/", 0),
                step("PUT", "/v2/app/blobs/uploads/s0", 11),
                step("POST", "/v2/app/blobs/uploads/", 0),
                step("PUT", "/v2/app/blobs/uploads/s2", 11),
            ]
        );

        // Lost again: an error naming the PUT and the registry's words.
        let lost = FakeServer::start(|req, before| {
            match req.method.as_str() {
            "POST" => (
                202,
                vec![("Location", format!("/v2/app/blobs/uploads/s{}", before.len()))],
                Vec::new(),
            ),
            _ => (404, vec![], br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#.to_vec()),
        }
        });
        let reference = Reference::parse(&format!("{}/app:1", lost.host())).unwrap();
        let err = client()
            .upload_blob(&store, &reference, &blob.digest, None, &|_| {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} answered 404 to PUT /v2/app/blobs/uploads/s2: BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry",
                lost.host()
            )
        );
        assert_eq!(lost.seen().len(), 4, "two sessions");
    }

    #[test]
    fn a_short_or_missing_blob_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let server = FakeServer::start(|req, _| {
            if req.target.contains("/gone/") {
                (404, vec![], Vec::new())
            } else {
                (200, vec![], b"short".to_vec())
            }
        });
        let digest = Digest::of(b"a longer body");
        let app = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        let err = client()
            .download_blob(&store, &app, &digest, 13, &|_| {})
            .unwrap_err();
        assert!(matches!(
            &err,
            RegistryError::Download { source, .. }
                if matches!(**source, StoreError::SizeMismatch { expected: 13, actual: 5, .. })
        ));
        let gone = Reference::parse(&format!("{}/gone/app:1", server.host())).unwrap();
        let err = client()
            .download_blob(&store, &gone, &digest, 13, &|_| {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "blob {digest} of {}/gone/app:1 not found on {}",
                server.host(),
                server.host()
            )
        );
    }
}
