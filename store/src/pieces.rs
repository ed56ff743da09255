//! Pieced blobs: a blob whose bytes are a list of pieces, each a range of a *whole* blob
//! (one stored as its bytes under `blobs/sha256/`) or bytes of its own. An incremental COPY's
//! layer is its earlier layer with one entry changed: stored pieced, it costs the changed
//! entry's bytes and a table, where a whole blob rewrote (and synced) every byte.
//!
//! A pieced blob is one file, `blobs/pieces/<hex>`: its own bytes, then the table of pieces,
//! then a 32-byte footer (magic, the table's offset, the number of pieces, the blob's length;
//! integers little-endian). A table entry is 88 bytes: kind (0: own bytes, 1: a range of a
//! whole blob), offset (in this file, or in that blob), length, and the whole blob's digest
//! as 64 hex digits (zeros for own bytes). Pieces follow each other: the blob's bytes are
//! theirs in table order. Nothing above the store knows the format: every reader goes through
//! [`BlobReader`], which reads a pieced blob as its bytes.
//!
//! The rules (docs/STORE.md, invariant 8): a piece refers only to a whole blob, never to a
//! pieced one (a pieced blob made from a pieced one refers to the whole blobs under it, so
//! there are no chains); its name is the sha256 of the bytes it reads as, hashed while it was
//! written from the very ranges it names; it is made visible like every blob (written in the
//! staging dir, synced or marked unsettled, renamed in); garbage collection keeps the whole
//! blobs a kept pieced blob refers to.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::Store;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"strpcs01";
const FOOTER: u64 = 32;
const ENTRY: u64 = 88;
/// A table of more pieces than this is refused as corrupt (a layer of 100,000 files, every
/// other one changed, has 100,000).
const MAX_PIECES: u64 = 1 << 22;

/// Where a piece's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// In the pieced blob's own file, at this offset.
    Own(u64),
    /// In the whole blob `digest`, at this offset.
    Blob(Digest, u64),
}

/// One piece: `len` bytes from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) source: Source,
    pub(crate) len: u64,
}

/// A pieced blob's table, as read from its file.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) pieces: Vec<Piece>,
    /// The blob's length: the sum of the pieces' lengths.
    pub(crate) len: u64,
}

impl Table {
    /// The whole blobs it refers to.
    pub(crate) fn sources(&self) -> impl Iterator<Item = &Digest> {
        self.pieces.iter().filter_map(|p| match &p.source {
            Source::Blob(d, _) => Some(d),
            Source::Own(_) => None,
        })
    }
}

/// Appends the table of `pieces` and the footer to `out`, at offset `own` (the own bytes'
/// length), for a blob of `len` bytes.
pub(crate) fn write_table(out: &mut impl Write, own: u64, pieces: &[Piece]) -> io::Result<()> {
    let mut len = 0u64;
    for p in pieces {
        let (kind, offset, digest) = match &p.source {
            Source::Own(at) => (0u64, *at, "0".repeat(64)),
            Source::Blob(d, at) => (1, *at, d.hex().to_owned()),
        };
        out.write_all(&kind.to_le_bytes())?;
        out.write_all(&offset.to_le_bytes())?;
        out.write_all(&p.len.to_le_bytes())?;
        out.write_all(digest.as_bytes())?;
        len += p.len;
    }
    out.write_all(MAGIC)?;
    out.write_all(&own.to_le_bytes())?;
    out.write_all(&(pieces.len() as u64).to_le_bytes())?;
    out.write_all(&len.to_le_bytes())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the footer of the pieced blob file `file` (at `path`): the table's offset, the number
/// of pieces, the blob's length.
fn footer(file: &std::fs::File, path: &Path) -> Result<(u64, u64, u64), StoreError> {
    let size = file
        .metadata()
        .map_err(StoreError::io("inspect blob", path))?
        .len();
    let bad = |why: &str| corrupt(path, why);
    if size < FOOTER {
        return Err(bad("shorter than its footer"));
    }
    let mut f = [0u8; FOOTER as usize];
    file.read_exact_at(&mut f, size - FOOTER)
        .map_err(StoreError::io("read blob", path))?;
    if &f[..8] != MAGIC {
        return Err(bad("no pieced blob footer"));
    }
    let (table, count, len) = (u64_at(&f, 8), u64_at(&f, 16), u64_at(&f, 24));
    if count > MAX_PIECES || table.checked_add(count * ENTRY + FOOTER) != Some(size) {
        return Err(bad("its table does not fit the file"));
    }
    Ok((table, count, len))
}

/// Opens `path` for reading (a blob's file: read through `pread` by [`BlobReader`]).
fn open_file(path: &Path) -> io::Result<std::fs::File> {
    fs_err::File::open(path).map(|f| f.into_parts().0)
}

fn corrupt(path: &Path, why: &str) -> StoreError {
    StoreError::io("read pieced blob", path)(io::Error::new(io::ErrorKind::InvalidData, why))
}

/// The length of the pieced blob at `path`, from its footer alone.
pub(crate) fn len_of(path: &Path) -> Result<u64, StoreError> {
    let file = fs_err::File::open(path).map_err(StoreError::io("open blob", path))?;
    Ok(footer(file.file(), path)?.2)
}

/// Reads and checks the table of the pieced blob file `file` (at `path`): pieces in bounds,
/// none empty, lengths adding up.
pub(crate) fn read_table(file: &std::fs::File, path: &Path) -> Result<Table, StoreError> {
    let (table, count, len) = footer(file, path)?;
    let mut raw = vec![0u8; (count * ENTRY) as usize];
    file.read_exact_at(&mut raw, table)
        .map_err(StoreError::io("read blob", path))?;
    let mut pieces = Vec::with_capacity(count as usize);
    let mut sum = 0u64;
    for e in raw.chunks_exact(ENTRY as usize) {
        let (kind, at, n) = (u64_at(e, 0), u64_at(e, 8), u64_at(e, 16));
        let source = match kind {
            0 if at.checked_add(n).is_some_and(|end| end <= table) => Source::Own(at),
            1 => {
                let hex =
                    std::str::from_utf8(&e[24..88]).map_err(|_| corrupt(path, "bad digest"))?;
                let d = Digest::from_hex(hex).map_err(|_| corrupt(path, "bad digest"))?;
                Source::Blob(d, at)
            }
            _ => return Err(corrupt(path, "a piece out of bounds")),
        };
        sum = sum
            .checked_add(n)
            .filter(|_| n > 0)
            .ok_or_else(|| corrupt(path, "a piece of no length"))?;
        pieces.push(Piece { source, len: n });
    }
    if sum != len {
        return Err(corrupt(path, "its pieces do not add up to its length"));
    }
    Ok(Table { pieces, len })
}

/// A piece as read: the file it is in and where, its blob's digest if it is a whole blob's.
struct Open {
    /// Where the piece starts in the blob.
    at: u64,
    len: u64,
    /// Index into [`Pieced::files`].
    file: usize,
    offset: u64,
    source: Option<Digest>,
}

/// An opened pieced blob: its own file, every whole blob it refers to (each opened once).
struct Pieced {
    files: Vec<std::fs::File>,
    pieces: Vec<Open>,
}

enum Kind {
    Whole(std::fs::File),
    Pieced(Pieced),
}

/// A blob opened for reading, whole or pieced: [`Read`] and [`Seek`] from its own position,
/// [`BlobReader::read_at`] from any, without a system call per seek.
pub struct BlobReader {
    digest: Digest,
    path: PathBuf,
    len: u64,
    pos: u64,
    kind: Kind,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.digest)
            .field("path", &self.path)
            .field("len", &self.len)
            .field("pieced", &matches!(self.kind, Kind::Pieced(_)))
            .finish()
    }
}

/// A run of a blob's bytes in one file: `len` bytes at `offset` of `file`; `source` is the
/// whole blob it is (`None`: a pieced blob's own bytes).
pub(crate) struct Segment<'a> {
    pub(crate) file: &'a std::fs::File,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) source: Option<&'a Digest>,
}

impl BlobReader {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file it is read from (for a pieced blob, its table's).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is stored as pieces.
    pub fn is_pieced(&self) -> bool {
        matches!(self.kind, Kind::Pieced(_))
    }

    /// Reads into `buf` from `pos` (less than asked only at a piece's end or the blob's).
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        if pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.len - pos) as usize;
        match &self.kind {
            Kind::Whole(f) => f.read_at(&mut buf[..want], pos),
            Kind::Pieced(p) => {
                let i = p.pieces.partition_point(|o| o.at + o.len <= pos);
                let o = &p.pieces[i];
                let n = want.min((o.at + o.len - pos) as usize);
                let got = p.files[o.file].read_at(&mut buf[..n], o.offset + (pos - o.at))?;
                if got == 0 {
                    // The piece's file is shorter than its table says.
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(got)
            }
        }
    }

    /// Fills `buf` from `pos`.
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
            }
        }
        Ok(())
    }

    /// The runs in files of the `len` bytes at `offset`, in order (clamped to the blob).
    pub(crate) fn segments(&self, offset: u64, len: u64) -> Vec<Segment<'_>> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Vec::new();
        }
        match &self.kind {
            Kind::Whole(file) => vec![Segment {
                file,
                offset,
                len: end - offset,
                source: Some(&self.digest),
            }],
            Kind::Pieced(p) => {
                let first = p.pieces.partition_point(|o| o.at + o.len <= offset);
                p.pieces[first..]
                    .iter()
                    .take_while(|o| o.at < end)
                    .map(|o| {
                        let from = offset.max(o.at);
                        let to = end.min(o.at + o.len);
                        Segment {
                            file: &p.files[o.file],
                            offset: o.offset + (from - o.at),
                            len: to - from,
                            source: o.source.as_ref(),
                        }
                    })
                    .collect()
            }
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Copies the `len` bytes of `blob` at `offset` into `out`, 1 MiB at a time.
pub(crate) fn copy_range(
    blob: &BlobReader,
    offset: u64,
    len: u64,
    out: &mut (impl Write + ?Sized),
) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        blob.read_exact_at(&mut buf[..n], at)?;
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// A writer that can take a range of a stored blob: [`crate::LayerWriter`] refers to it (a
/// pieced blob) instead of storing its bytes again; any other writer copies them (the
/// default).
pub trait SpliceWrite: Write {
    /// Writes the `len` bytes of `blob` at `offset`, as `write_all` of them would.
    fn write_from(&mut self, blob: &BlobReader, offset: u64, len: u64) -> io::Result<()> {
        copy_range(blob, offset, len, self)
    }
}

impl SpliceWrite for Vec<u8> {}
impl SpliceWrite for io::Sink {}
impl<W: SpliceWrite + ?Sized> SpliceWrite for &mut W {
    fn write_from(&mut self, blob: &BlobReader, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_from(blob, offset, len)
    }
}

/// Records, as bytes reach a plain layer's blob file, which of them are ranges of whole blobs
/// (not written: pieces) and which are its own (written).
#[derive(Debug, Default)]
pub(crate) struct PieceSink {
    /// Ranges of the stream announced by [`PieceSink::splice`] and not yet passed.
    pending: std::collections::VecDeque<(u64, u64, Digest, u64)>,
    pieces: Vec<Piece>,
    /// Bytes of the stream passed.
    pub(crate) pos: u64,
    /// Own bytes written.
    pub(crate) own: u64,
    /// Bytes in pieces of whole blobs.
    pub(crate) spliced: u64,
}

impl PieceSink {
    /// The `len` bytes of the stream from `at` (not passed yet) are `source`'s from `offset`.
    pub(crate) fn splice(&mut self, at: u64, len: u64, source: &Digest, offset: u64) {
        if len > 0 {
            self.pending.push_back((at, len, source.clone(), offset));
        }
    }

    /// Passes `buf` (the next bytes of the stream): own bytes go to `out`.
    pub(crate) fn pass(&mut self, mut buf: &[u8], out: &mut impl Write) -> io::Result<()> {
        while !buf.is_empty() {
            let next = self.pending.front().map(|(at, ..)| *at);
            match next {
                Some(at) if self.pos >= at => {
                    let (at, len, source, offset) =
                        self.pending.pop_front().expect("the front was just seen");
                    let left = (at + len).saturating_sub(self.pos);
                    if left == 0 {
                        continue;
                    }
                    let skip = (buf.len() as u64).min(left);
                    let done = self.pos - at;
                    buf = &buf[skip as usize..];
                    self.pos += skip;
                    self.spliced += skip;
                    self.push(Source::Blob(source.clone(), offset + done), skip);
                    if done + skip < len {
                        self.pending.push_front((at, len, source, offset));
                    }
                }
                _ => {
                    let n = next.map_or(buf.len(), |at| {
                        (at - self.pos).min(buf.len() as u64) as usize
                    });
                    out.write_all(&buf[..n])?;
                    self.push(Source::Own(self.own), n as u64);
                    self.own += n as u64;
                    self.pos += n as u64;
                    buf = &buf[n..];
                }
            }
        }
        Ok(())
    }

    /// Adds a piece, joined to the last one when it continues it.
    fn push(&mut self, source: Source, len: u64) {
        if let Some(last) = self.pieces.last_mut() {
            let joined = match (&last.source, &source) {
                (Source::Own(a), Source::Own(b)) => a + last.len == *b,
                (Source::Blob(d, a), Source::Blob(e, b)) => d == e && a + last.len == *b,
                _ => false,
            };
            if joined {
                last.len += len;
                return;
            }
        }
        self.pieces.push(Piece { source, len });
    }

    /// The pieces, once every byte passed.
    pub(crate) fn into_pieces(self) -> Vec<Piece> {
        self.pieces
    }
}

/// Which file holds a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobKind {
    /// `blobs/sha256/<hex>`: its bytes.
    Whole,
    /// `blobs/pieces/<hex>`: its pieces.
    Pieced,
}

impl BlobKind {
    /// Both kinds, whole first.
    pub(crate) const ALL: [BlobKind; 2] = [BlobKind::Whole, BlobKind::Pieced];

    /// The directory, under the store's root, of the blobs of this kind.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            BlobKind::Whole => "blobs/sha256",
            BlobKind::Pieced => "blobs/pieces",
        }
    }
}

impl Store {
    /// Where the pieced blob `digest` lives (whether or not it exists).
    pub(crate) fn pieces_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join(BlobKind::Pieced.dir())
            .join(digest.hex())
    }

    /// Every file in the blob directories, with the kind of blob it holds, whole ones first.
    /// A store made before pieced blobs has no `blobs/pieces` until its next open for writing.
    pub(crate) fn blob_files(&self) -> Result<Vec<(BlobKind, fs_err::DirEntry)>, StoreError> {
        let mut out = Vec::new();
        for kind in BlobKind::ALL {
            let dir = self.root().join(kind.dir());
            let entries = match fs_err::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound && kind == BlobKind::Pieced => {
                    continue;
                }
                Err(e) => return Err(StoreError::io("list", &dir)(e)),
            };
            for entry in entries {
                out.push((kind, entry.map_err(StoreError::io("list", &dir))?));
            }
        }
        Ok(out)
    }

    /// The file of blob `digest` and its kind, if it is stored (whole first).
    pub(crate) fn blob_file(&self, digest: &Digest) -> Option<(PathBuf, BlobKind)> {
        let whole = self.blob_path(digest);
        if whole.is_file() {
            return Some((whole, BlobKind::Whole));
        }
        let pieced = self.pieces_path(digest);
        pieced.is_file().then_some((pieced, BlobKind::Pieced))
    }

    /// Opens blob `digest`, whole or pieced.
    pub(crate) fn open_blob_reader(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let whole = self.blob_path(digest);
        match open_file(&whole) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(StoreError::io("inspect blob", &whole))?
                    .len();
                return Ok(BlobReader {
                    digest: digest.clone(),
                    path: whole,
                    len,
                    pos: 0,
                    kind: Kind::Whole(file),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("open blob", whole)(e)),
        }
        self.open_pieced(digest)
    }

    /// Opens the pieced blob `digest` (even if it is also stored whole: `system check`).
    pub(crate) fn open_pieced(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let path = self.pieces_path(digest);
        let own = match open_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound(digest.clone()));
            }
            Err(e) => return Err(StoreError::io("open blob", path)(e)),
        };
        let table = read_table(&own, &path)?;
        let mut files = vec![own];
        let mut opened: Vec<(Digest, usize, u64)> = Vec::new();
        let mut pieces = Vec::with_capacity(table.pieces.len());
        let mut at = 0;
        for p in table.pieces {
            let (file, offset, source) = match p.source {
                Source::Own(o) => (0, o, None),
                Source::Blob(d, o) => {
                    let (i, size) = match opened.iter().find(|(x, ..)| *x == d) {
                        Some((_, i, size)) => (*i, *size),
                        None => {
                            let p = self.blob_path(&d);
                            let f = open_file(&p).map_err(|e| {
                                if e.kind() == io::ErrorKind::NotFound {
                                    StoreError::BlobNotFound(d.clone())
                                } else {
                                    StoreError::io("open blob", &p)(e)
                                }
                            })?;
                            let size = f
                                .metadata()
                                .map_err(StoreError::io("inspect blob", &p))?
                                .len();
                            files.push(f);
                            opened.push((d.clone(), files.len() - 1, size));
                            (files.len() - 1, size)
                        }
                    };
                    if o.checked_add(p.len).is_none_or(|end| end > size) {
                        return Err(corrupt(&path, "a piece beyond the blob it refers to"));
                    }
                    (i, o, Some(d))
                }
            };
            pieces.push(Open {
                at,
                len: p.len,
                file,
                offset,
                source,
            });
            at += p.len;
        }
        Ok(BlobReader {
            digest: digest.clone(),
            path,
            len: table.len,
            pos: 0,
            kind: Kind::Pieced(Pieced { files, pieces }),
        })
    }

    /// The whole blobs the pieced blob `digest` refers to (none if it is not pieced or its
    /// table cannot be read: `system check` reports that).
    pub(crate) fn pieced_sources(&self, digest: &Digest) -> Vec<Digest> {
        let path = self.pieces_path(digest);
        let Ok(file) = open_file(&path) else {
            return Vec::new();
        };
        read_table(&file, &path)
            .map(|t| t.sources().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Compression;

    /// A store with a whole blob of `n` numbered bytes.
    fn store_with_blob(n: usize) -> (tempfile::TempDir, Store, Digest, Vec<u8>) {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path().join("root")).unwrap();
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let digest = store.put_blob(None, &bytes[..]).unwrap().digest;
        (t, store, digest, bytes)
    }

    fn read_all(store: &Store, d: &Digest) -> Vec<u8> {
        let mut out = Vec::new();
        store.open_blob(d).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_layer_mostly_spliced_from_a_whole_blob_is_stored_pieced_and_reads_as_its_bytes() {
        let (_t, store, source, bytes) = store_with_blob(3 << 20);
        let mut w = store.layer_writer(Compression::None).unwrap();
        w.write_all(b"new head").unwrap();
        let blob = store.open_blob(&source).unwrap();
        w.write_from(&blob, 100, 2 << 20).unwrap();
        w.write_all(b"-middle-").unwrap();
        w.write_from(&blob, (2 << 20) + 100, 1000).unwrap();
        // Continues the last range: joined into one piece.
        w.write_from(&blob, (2 << 20) + 1100, 5000).unwrap();
        let layer = w.finish().unwrap();

        let mut want = b"new head".to_vec();
        want.extend_from_slice(&bytes[100..(2 << 20) + 100]);
        want.extend_from_slice(b"-middle-");
        want.extend_from_slice(&bytes[(2 << 20) + 100..(2 << 20) + 6100]);
        assert_eq!(layer.digest, Digest::of(&want));
        assert_eq!(layer.diff_id, layer.digest);
        assert_eq!(layer.size, want.len() as u64);
        assert!(!store.blob_path(&layer.digest).exists());
        let file = store.pieces_path(&layer.digest);
        // Its own 16 bytes, a table of 4 pieces, the footer.
        assert_eq!(
            fs_err::metadata(&file).unwrap().len(),
            16 + 4 * ENTRY + FOOTER
        );
        assert!(store.has_blob(&layer.digest));
        assert_eq!(store.blob_size(&layer.digest).unwrap(), want.len() as u64);
        assert!(read_all(&store, &layer.digest) == want);

        // Reads and seeks across piece boundaries.
        let mut r = store.open_blob(&layer.digest).unwrap();
        assert!(r.is_pieced());
        let mut buf = vec![0; 20];
        r.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf[..], want[..20]);
        let edge = 8 + (2 << 20) - 6;
        r.read_exact_at(&mut buf, edge).unwrap();
        assert_eq!(buf[..], want[edge as usize..edge as usize + 20]);
        r.seek(SeekFrom::End(-10)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail[..], want[want.len() - 10..]);

        // A pieced blob of a pieced one refers to the whole blob under it, never to it.
        let mut w = store.layer_writer(Compression::None).unwrap();
        w.write_from(&r, 0, r.len()).unwrap();
        w.write_all(b"!").unwrap();
        let again = w.finish().unwrap();
        let mut want2 = want.clone();
        want2.push(b'!');
        assert!(read_all(&store, &again.digest) == want2);
        let sources = store.pieced_sources(&again.digest);
        assert!(
            !sources.is_empty() && sources.iter().all(|d| *d == source),
            "{sources:?}"
        );

        let report = store.check().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.blobs, 3);
    }

    #[test]
    fn a_layer_mostly_new_is_written_whole() {
        let (_t, store, source, bytes) = store_with_blob(4096);
        let mut w = store.layer_writer(Compression::None).unwrap();
        let blob = store.open_blob(&source).unwrap();
        w.write_from(&blob, 0, 1000).unwrap();
        w.write_all(&[b'x'; 1001]).unwrap();
        let layer = w.finish().unwrap();
        let mut want = bytes[..1000].to_vec();
        want.extend_from_slice(&[b'x'; 1001]);
        assert_eq!(layer.digest, Digest::of(&want));
        assert!(fs_err::read(store.blob_path(&layer.digest)).unwrap() == want);
        assert!(!store.pieces_path(&layer.digest).exists());
    }

    #[test]
    fn a_pieced_blob_whose_source_or_table_is_broken_is_reported_never_read_as_good() {
        let (_t, store, source, _) = store_with_blob(10_000);
        let mut w = store.layer_writer(Compression::None).unwrap();
        let blob = store.open_blob(&source).unwrap();
        w.write_all(b"x").unwrap();
        w.write_from(&blob, 0, 9000).unwrap();
        let layer = w.finish().unwrap();
        drop(blob);

        // The whole blob it reads from is gone (nothing but a bug removes it).
        let src = store.blob_path(&source);
        let saved = fs_err::read(&src).unwrap();
        fs_err::remove_file(&src).unwrap();
        assert!(matches!(
            store.open_blob(&layer.digest),
            Err(StoreError::BlobNotFound(d)) if d == source
        ));
        let report = store.check().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains(&format!("pieced blob {}", layer.digest)));
        fs_err::write(&src, &saved).unwrap();

        // A table cut short.
        let file = store.pieces_path(&layer.digest);
        let mut bytes = fs_err::read(&file).unwrap();
        bytes.truncate(bytes.len() - 5);
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        fs_err::write(&file, &bytes).unwrap();
        assert!(store.open_blob(&layer.digest).is_err());
        assert!(store.blob_size(&layer.digest).is_err());
        assert!(!store.check().unwrap().is_clean());
    }

    /// A build's pieced layer, marked unsettled like any of its blobs: a machine crash before
    /// the build's sync (its marker becoming another boot's) deletes it at the next open; the
    /// whole blob it read from, synced before, stays.
    #[test]
    fn a_pieced_blob_a_crash_may_have_torn_is_dropped_at_the_next_open() {
        let (t, store, source, _) = store_with_blob(10_000);
        let build = store.deferring_sync();
        let mut w = build.layer_writer(Compression::None).unwrap();
        w.write_from(&store.open_blob(&source).unwrap(), 0, 9000)
            .unwrap();
        w.write_all(b"tail").unwrap();
        let layer = w.finish().unwrap();
        assert!(store.pieces_path(&layer.digest).is_file());
        drop((build, store));
        let root = t.path().join("root");
        let boot = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        fs_err::rename(
            root.join("unsettled").join(boot.trim()),
            root.join("unsettled/00000000-dead-beef-0000-000000000000"),
        )
        .unwrap();
        let store = Store::open(&root).unwrap();
        assert!(!store.has_blob(&layer.digest));
        assert!(!store.pieces_path(&layer.digest).exists());
        assert!(store.has_blob(&source));
    }

    /// A build's sync weighs a pieced layer by the bytes it reads as: one over 32 MiB is
    /// fsynced on its own, not settled by a `syncfs` that would also write back the snapshot
    /// it was made from (as large as the layer), though its file is small.
    #[test]
    fn a_big_pieced_layer_is_fsynced_not_settled_by_a_syncfs() {
        let (_t, store, source, _) = store_with_blob(33 << 20);
        let build = store.deferring_sync();
        let mut w = build.layer_writer(Compression::None).unwrap();
        w.write_from(&store.open_blob(&source).unwrap(), 0, 33 << 20)
            .unwrap();
        w.write_all(b"tail").unwrap();
        let layer = w.finish().unwrap();
        assert!(store.pieces_path(&layer.digest).is_file());
        assert!(
            !build.settle_unsettled_blobs().unwrap(),
            "settled by a syncfs"
        );
    }

    #[test]
    fn the_sink_keeps_announced_ranges_as_pieces_and_writes_the_rest() {
        let d = Digest::of(b"source");
        let mut sink = PieceSink::default();
        let mut out = Vec::new();
        sink.pass(b"ab", &mut out).unwrap();
        sink.splice(2, 5, &d, 10);
        sink.splice(7, 3, &d, 15); // continues it
        // Bytes arrive in odd chunks across the boundaries.
        for chunk in [&b"cd"[..], b"efg", b"hij", b"kl"] {
            sink.pass(chunk, &mut out).unwrap();
        }
        assert_eq!(out, b"abkl");
        assert_eq!((sink.pos, sink.own, sink.spliced), (12, 4, 8));
        assert_eq!(
            sink.into_pieces(),
            [
                Piece {
                    source: Source::Own(0),
                    len: 2
                },
                Piece {
                    source: Source::Blob(d, 10),
                    len: 8
                },
                Piece {
                    source: Source::Own(2),
                    len: 2
                },
            ]
        );
    }
}
