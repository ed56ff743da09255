//! ADD of a local archive: detection by content and strict, confined extraction.
//!
//! A file is an archive when, after undoing a gzip, bzip2, xz or zstd wrapper recognised by
//! its magic bytes, its first 512 bytes are a valid tar header (what BuildKit checks). Then
//! every later problem is an error, never a silent copy of the file. Entry names are cleaned
//! relative to the destination, so `../` cannot climb above it; everything is then resolved
//! inside the image's root, so a symlink in the archive or the image (`esc -> /`) leads back
//! into the root, never out. Each entry replaces what is at its name (a link in the way is
//! removed, not written through), hard links must point at something inside the
//! destination, names starting with `.wh.` are refused (they would turn into whiteouts on
//! export), and xattrs other than `user.*` and `security.capability` are dropped. The
//! `tar` crate (≥ 0.4.46) parses, honouring PAX sizes as Go and GNU tar do.

use crate::diff::keep_xattr;
use crate::root::{self, DirOpts, Root, clear_entry};
use crate::sys::{self, NodeKind};
use nix::fcntl::OFlag;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Compression of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn decompressor<'a>(c: Compression, r: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// Opens `file` as an archive: `None` when it is not one (then it is copied as a file).
pub(crate) fn detect(file: &std::fs::File) -> io::Result<Option<Compression>> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::new(f);
    let c = sniff(r.fill_buf()?);
    let mut d = match decompressor(c, r) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < 512 {
        match d.read(&mut block[got..]) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => got += n,
        }
    }
    Ok(valid_header(&block).then_some(c))
}

fn valid_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let h = tar::Header::from_byte_slice(block);
    let Ok(sum) = h.cksum() else { return false };
    let mut computed: u32 = block.iter().map(|b| u32::from(*b)).sum();
    computed -= block[148..156].iter().map(|b| u32::from(*b)).sum::<u32>();
    computed += 8 * u32::from(b' ');
    sum == computed
}

/// Why extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive is corrupt or truncated.
    #[error("reading the archive")]
    Read(#[source] io::Error),
    /// An entry could not be created.
    #[error("entry {name}")]
    Entry {
        /// The entry's name in the archive.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An entry's name would become a whiteout.
    #[error("entry {0}: names starting with .wh. are reserved for layer whiteouts")]
    Reserved(String),
    /// A hard link points outside what the archive extracts.
    #[error("entry {0}: hard link target {1} is not in the archive's destination")]
    BadLink(String, String),
    /// The archive unpacks to more than the limit.
    #[error("the archive unpacks to more than {0} bytes")]
    TooBig(u64),
}

/// What is extracted, and how.
pub(crate) struct Extract<'a> {
    pub(crate) root: &'a Root,
    /// The destination directory, cleaned, relative to the root.
    pub(crate) dest: Vec<OsString>,
    /// `--chown` (BuildKit ≥ 0.23 applies it to every extracted entry).
    pub(crate) owner: Option<(u32, u32)>,
    /// Cap on unpacked bytes.
    pub(crate) max_bytes: u64,
}

fn entry_err(name: &str) -> impl Fn(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Entry {
        name: name.to_owned(),
        source,
    }
}

/// Extracts `file` (detected as `compression`) into `x.dest`; returns (entries, bytes).
pub(crate) fn extract(
    file: &std::fs::File,
    compression: Compression,
    x: &Extract<'_>,
) -> Result<(u64, u64), ExtractError> {
    let mut f = file.try_clone().map_err(ExtractError::Read)?;
    f.seek(SeekFrom::Start(0)).map_err(ExtractError::Read)?;
    let r = BufReader::new(f);
    let d = decompressor(compression, r).map_err(ExtractError::Read)?;
    let mut archive = tar::Archive::new(d);
    let mut dirs: Vec<(Vec<OsString>, i64)> = Vec::new();
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut created = Vec::new();
    let dest_fd = x
        .root
        .mkdir_all(
            &x.dest,
            DirOpts {
                mode: 0o755,
                owner: x.owner,
            },
            &mut created,
        )
        .map_err(entry_err("."))?;
    drop(dest_fd);
    for entry in archive.entries().map_err(ExtractError::Read)? {
        let mut entry = entry.map_err(ExtractError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let name = shown_name(&raw);
        let rel = root::clean(Path::new(OsStr::from_bytes(&raw)));
        if rel.iter().any(|c| c.as_bytes().starts_with(b".wh.")) {
            return Err(ExtractError::Reserved(name));
        }
        if rel.is_empty() {
            continue; // "." or "/": the destination itself
        }
        let mut comps = x.dest.clone();
        comps.extend(rel.iter().cloned());
        let h = entry.header().clone();
        let kind = h.entry_type();
        let mode = h.mode().map_err(ExtractError::Read)? & 0o7777;
        let (uid, gid) = match x.owner {
            Some(o) => o,
            None => (
                h.uid().map_err(ExtractError::Read)?,
                h.gid().map_err(ExtractError::Read)?,
            )
                .try_into_ids()
                .map_err(entry_err(&name))?,
        };
        let mtime = h.mtime().unwrap_or(0) as i64;
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                if let Some(attr) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")
                    && keep_xattr(attr)
                {
                    xattrs.push((
                        OsStr::from_bytes(attr).to_owned(),
                        ext.value_bytes().to_vec(),
                    ));
                }
            }
        }
        let (parent, leaf) = x
            .root
            .parent_of(
                &comps,
                DirOpts {
                    mode: 0o755,
                    owner: x.owner,
                },
                &mut created,
            )
            .map_err(entry_err(&name))?;
        let p = parent.as_fd();
        let leaf_path = Path::new(leaf);
        entries += 1;
        let res: io::Result<()> = (|| match kind {
            tar::EntryType::Directory => {
                let existed = clear_entry(p, leaf, true)?;
                if !existed {
                    sys::mkdir_at(p, leaf_path, 0o700)?;
                }
                let fd = sys::open_beneath(p, leaf_path, OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)?;
                sys::fchown(fd.as_fd(), uid, gid)?;
                sys::fchmod(fd.as_fd(), mode)?;
                for (k, v) in &xattrs {
                    let _ = sys::fsetxattr(fd.as_fd(), k, v);
                }
                dirs.push((comps.clone(), mtime));
                Ok(())
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                clear_entry(p, leaf, false)?;
                let fd = sys::open_beneath(
                    p,
                    leaf_path,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    0o600,
                )?;
                let mut f = sys::file_from(fd);
                let room = x.max_bytes.saturating_sub(bytes);
                let n = io::copy(&mut (&mut entry).take(room.saturating_add(1)), &mut f)?;
                bytes += n;
                if bytes > x.max_bytes {
                    return Err(io::Error::other(format!(
                        "unpacked size limit of {} bytes exceeded",
                        x.max_bytes
                    )));
                }
                sys::fchown(f.as_fd(), uid, gid)?;
                sys::fchmod(f.as_fd(), mode)?;
                for (k, v) in &xattrs {
                    let _ = sys::fsetxattr(f.as_fd(), k, v);
                }
                sys::futimens(f.as_fd(), mtime, 0)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("symlink without a target"))?
                    .into_owned();
                clear_entry(p, leaf, false)?;
                sys::symlink_at(Path::new(OsStr::from_bytes(&target)), p, leaf_path)?;
                sys::lchown_at(p, leaf_path, uid, gid)?;
                sys::lutimes_at(p, leaf_path, mtime, 0)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("hard link without a target"))?
                    .into_owned();
                let mut tcomps = x.dest.clone();
                tcomps.extend(root::clean(Path::new(OsStr::from_bytes(&target))));
                let (tname, tparent) = tcomps
                    .split_last()
                    .ok_or_else(|| io::Error::other("hard link to the destination itself"))?;
                let tdir = x
                    .root
                    .open_at(tparent, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "hard link target not found")
                    })?;
                if tparent == &comps[..comps.len() - 1] && tname == leaf {
                    return Ok(()); // a link to itself
                }
                if sys::lstat_at(tdir.as_fd(), Path::new(tname))
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)?
                {
                    return Err(io::Error::other("hard link to a directory"));
                }
                clear_entry(p, leaf, false)?;
                sys::link_at(tdir.as_fd(), Path::new(tname), p, leaf_path)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let node = match kind {
                    tar::EntryType::Char => NodeKind::Char,
                    tar::EntryType::Block => NodeKind::Block,
                    _ => NodeKind::Fifo,
                };
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if node == NodeKind::Char && major == 0 && minor == 0 {
                    return Err(io::Error::other(
                        "0/0 character devices are overlay whiteouts",
                    ));
                }
                clear_entry(p, leaf, false)?;
                sys::mknod_at(
                    p,
                    leaf_path,
                    node,
                    0o600,
                    u64::from(major),
                    u64::from(minor),
                )?;
                sys::lchown_at(p, leaf_path, uid, gid)?;
                sys::lchmod_at(p, leaf_path, mode)?;
                sys::lutimes_at(p, leaf_path, mtime, 0)
            }
            // PAX global headers, volume labels, ...: nothing to create.
            _ => Ok(()),
        })();
        if let Err(e) = res {
            if e.kind() == io::ErrorKind::Other && e.to_string().contains("size limit") {
                return Err(ExtractError::TooBig(x.max_bytes));
            }
            if kind == tar::EntryType::Link && e.kind() == io::ErrorKind::NotFound {
                let t = entry
                    .link_name_bytes()
                    .map(|t| shown_name(&t))
                    .unwrap_or_default();
                return Err(ExtractError::BadLink(name, t));
            }
            return Err(ExtractError::Entry { name, source: e });
        }
    }
    // Directory mtimes last: creating their entries changed them.
    for (comps, mtime) in dirs.iter().rev() {
        if let Ok(Some(fd)) = x.root.open_at(comps, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
            let _ = sys::futimens(fd.as_fd(), *mtime, 0);
        }
    }
    Ok((entries, bytes))
}

trait IntoIds {
    fn try_into_ids(self) -> io::Result<(u32, u32)>;
}

impl IntoIds for (u64, u64) {
    fn try_into_ids(self) -> io::Result<(u32, u32)> {
        let max = u64::from(crate::user::MAX_FILE_ID);
        if self.0 > max || self.1 > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("owner {}:{} is out of range", self.0, self.1),
            ));
        }
        Ok((self.0 as u32, self.1 as u32))
    }
}

/// An entry name for messages: at most 200 bytes of it (a hostile name can be megabytes).
fn shown_name(raw: &[u8]) -> String {
    if raw.len() <= 200 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    format!(
        "{}... ({} bytes)",
        String::from_utf8_lossy(&raw[..200]),
        raw.len()
    )
}
