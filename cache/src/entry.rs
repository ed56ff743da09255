//! One entry of an indexed tree and the digest that stands for it in a checksum.
//!
//! The digest covers what a COPY reproduces: the type, the permission bits with
//! setuid/setgid/sticky, the owner (only where ownership is kept, see [`Ownership`]), the size,
//! device numbers, the symlink target and the bytes. It never covers mtime, atime, ctime,
//! inode or device of the filesystem: those change on `touch`, `git checkout` or a fresh clone
//! without changing what a build sees. They are only *validators* of the stat cache.

use crate::checksum::Checksum;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

const ENTRY_DOMAIN: &[u8] = b"strata-entry-v1\0";

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file: the only kind whose bytes are read.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target is data, never followed inside a directory copy).
    Symlink,
    /// A named pipe: recorded, never opened.
    Fifo,
    /// A unix socket: recorded, never opened.
    Socket,
    /// A character device: recorded with its numbers, never opened.
    CharDevice,
    /// A block device: recorded with its numbers, never opened.
    BlockDevice,
}

impl EntryKind {
    /// From the `S_IFMT` bits of a mode.
    pub(crate) fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o010000 => EntryKind::Fifo,
            0o140000 => EntryKind::Socket,
            0o020000 => EntryKind::CharDevice,
            0o060000 => EntryKind::BlockDevice,
            _ => return None,
        })
    }

    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
            EntryKind::Fifo => b'p',
            EntryKind::Socket => b's',
            EntryKind::CharDevice => b'c',
            EntryKind::BlockDevice => b'b',
        }
    }
}

/// Whether file owners enter checksums. The build context is hashed with [`Ownership::Ignore`]:
/// COPY from the context always writes 0:0 (or `--chown`), so who owns the files on the
/// user's disk must not cause a miss, as in BuildKit, whose client resets them to 0 before
/// sending. A stage's output (`COPY --from`) keeps its owners, so it uses [`Ownership::Keep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// uid and gid are not part of any checksum.
    #[default]
    Ignore,
    /// uid and gid are part of each entry's checksum.
    Keep,
}

/// The stat fields that say "this file is unchanged since we hashed it". Never hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub(crate) size: u64,
    pub(crate) mtime: (i64, u32),
    pub(crate) ctime: (i64, u32),
    pub(crate) ino: u64,
    pub(crate) dev: u64,
    pub(crate) mode: u32,
}

impl StatKey {
    pub(crate) fn from_statx(st: &rustix::fs::Statx) -> Self {
        StatKey {
            size: st.stx_size,
            mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
            ino: st.stx_ino,
            dev: (u64::from(st.stx_dev_major) << 32) | u64::from(st.stx_dev_minor),
            mode: u32::from(st.stx_mode),
        }
    }
}

/// One entry of an indexed tree, as the walk saw it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative to the tree's root, `/`-separated; `""` is the root.
    pub(crate) path: Box<str>,
    pub(crate) kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub(crate) perm: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// `(major << 32) | minor` for devices, 0 otherwise.
    pub(crate) rdev: u64,
    /// The raw target of a symlink.
    pub(crate) link: Option<Box<[u8]>>,
    pub(crate) stat: StatKey,
}

impl Entry {
    pub(crate) fn from_statx(path: Box<str>, st: &rustix::fs::Statx) -> Option<Self> {
        let mode = u32::from(st.stx_mode);
        let kind = EntryKind::from_mode(mode)?;
        let rdev = match kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                (u64::from(st.stx_rdev_major) << 32) | u64::from(st.stx_rdev_minor)
            }
            _ => 0,
        };
        Some(Entry {
            path,
            kind,
            perm: mode & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            rdev,
            link: None,
            stat: StatKey::from_statx(st),
        })
    }

    /// The digest of this entry: metadata plus, for files, the blake3 of the bytes.
    pub(crate) fn digest(&self, content: Option<&[u8; 32]>, ownership: Ownership) -> Checksum {
        let mut h = blake3::Hasher::new();
        h.update(ENTRY_DOMAIN);
        h.update(&[self.kind.tag()]);
        // Linux symlinks are always 0777; some filesystems report otherwise. Normalise.
        let perm = if self.kind == EntryKind::Symlink {
            0o777
        } else {
            self.perm
        };
        h.update(&perm.to_le_bytes());
        match ownership {
            Ownership::Ignore => h.update(&[0]),
            Ownership::Keep => {
                h.update(&[1]);
                h.update(&self.uid.to_le_bytes());
                h.update(&self.gid.to_le_bytes())
            }
        };
        let size = if self.kind == EntryKind::File {
            self.stat.size
        } else {
            0
        };
        h.update(&size.to_le_bytes());
        h.update(&self.rdev.to_le_bytes());
        let link = self.link.as_deref().unwrap_or_default();
        h.update(&(link.len() as u64).to_le_bytes());
        h.update(link);
        match content {
            Some(c) => h.update(&[1]).update(c),
            None => h.update(&[0]),
        };
        h.finalize().into()
    }
}

/// The digest standing for the top directory of a directory source: COPY copies its contents,
/// never its own mode or owner (Docker creates the destination 0755), so only its kind counts.
pub(crate) fn source_dir_digest() -> Checksum {
    let mut h = blake3::Hasher::new();
    h.update(ENTRY_DOMAIN);
    h.update(b"source-dir");
    h.finalize().into()
}

/// Orders paths component by component (`a` < `a/b` < `a-b`), so that a directory's subtree
/// is one contiguous run after it.
pub(crate) fn path_cmp(a: &str, b: &str) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // The first differing byte decides (mapping `/` below every other byte); else the shorter.
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => key(a[i]).cmp(&key(b[i])),
        None => a.len().cmp(&b.len()),
    }
}
