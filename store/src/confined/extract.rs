//! The one extractor of untrusted tars, for both of its callers: a layer unpacked into a
//! snapshot ([`ArchiveKind::Layer`]: OCI whiteouts become overlay whiteouts, `.wh.name` → a
//! 0/0 character device, `.wh..wh..opq` → [`opaque_xattr`]` = y`) and ADD of a local
//! archive into a directory of an image's root ([`ArchiveKind::Add`]: names starting with
//! `.wh.` are refused, since they would turn into whiteouts on export, and `--chown` applies
//! to every entry).
//!
//! The tar is hostile until proven otherwise. Every path goes through [`ConfinedRoot`]
//! (resolved inside the root, the last component never followed); what is at an entry's
//! name is removed before the entry is created (never written through); owners and modes are
//! set on an fd we created or with `AT_SYMLINK_NOFOLLOW`; a hard link's target must exist
//! inside the destination; xattrs other than [`keep_xattr`]'s are dropped; the unpacked bytes
//! and the entries are counted against limits. The `tar` crate (≥ 0.4.46) parses, honouring
//! PAX sizes as Go and GNU tar do. See reliability.md §3 and the breakout table below.

use super::{ConfinedRoot, DirOpts, Replace, Slot, clean, set_mtime_fd};
use rustix::fs::{FileType, Mode, XattrFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Which of the two callers extracts, and so which rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A layer into an empty snapshot directory: whiteouts converted, `..` in a name refused
    /// (no legitimate layer has one), an entry replacing a directory replaces its whole tree,
    /// a `./` entry sets the root's owner and mode.
    Layer,
    /// ADD of a local archive: `.wh.` names and 0/0 character devices refused, names cleaned
    /// lexically below the destination (`../x` is `x`, as BuildKit does), a non-empty
    /// directory in the way is an error, the destination itself keeps its metadata.
    Add,
}

/// Where and how to extract.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// The rules.
    pub kind: ArchiveKind,
    /// The destination directory inside the root, cleaned (made when missing).
    pub dest: Vec<OsString>,
    /// An owner for every entry and created directory instead of the archive's (`--chown`).
    pub owner: Option<(u32, u32)>,
    /// Cap on the bytes of file data unpacked.
    pub max_bytes: u64,
    /// Cap on the entries created.
    pub max_entries: u64,
}

impl ExtractOptions {
    /// A layer into the root of an empty snapshot directory, no limits.
    pub fn layer() -> ExtractOptions {
        ExtractOptions {
            kind: ArchiveKind::Layer,
            dest: Vec::new(),
            owner: None,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
        }
    }

    /// ADD of an archive into `dest`, at most `max_bytes` of file data.
    pub fn add(dest: Vec<OsString>, owner: Option<(u32, u32)>, max_bytes: u64) -> ExtractOptions {
        ExtractOptions {
            kind: ArchiveKind::Add,
            dest,
            owner,
            max_bytes,
            max_entries: u64::MAX,
        }
    }
}

/// What an extraction created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries created (directories, files, links, nodes, whiteouts).
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Why extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive is corrupt or truncated.
    #[error("failed to read the archive")]
    Read(#[source] io::Error),
    /// An entry is not acceptable.
    #[error("entry {entry:?}: {reason}")]
    Invalid {
        /// The entry's name in the archive (shortened).
        entry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An entry could not be created.
    #[error("entry {entry:?}: failed to {action}")]
    Entry {
        /// The entry's name in the archive (shortened).
        entry: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry's name would become a whiteout.
    #[error("entry {0:?}: names starting with .wh. are reserved for layer whiteouts")]
    Reserved(String),
    /// A hard link points at nothing inside the destination.
    #[error("entry {entry:?}: hard link target {target:?} is not in the archive's destination")]
    BadLink {
        /// The link's name.
        entry: String,
        /// Its target.
        target: String,
    },
    /// The archive unpacks to more than the limit.
    #[error("the archive unpacks to more than {0} bytes")]
    TooBig(u64),
    /// The archive has more entries than the limit.
    #[error("the archive has more than {0} entries")]
    TooManyEntries(u64),
}

/// Whether an extended attribute is worth keeping in an image, read from an archive or a
/// layer (extraction) or from an upper directory (the worker's layer diff): file capabilities
/// and `user.*`. Overlay's own (`trusted.overlay.*`: opaque, redirect, origin; and
/// `user.overlay.*`, where a rootless overlay keeps them, see [`opaque_xattr`]), other
/// `trusted.*`, SELinux labels and ACLs of the build host are not part of what the
/// Dockerfile made.
pub fn keep_xattr(name: &[u8]) -> bool {
    name == b"security.capability"
        || (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
}

/// Whether this process is in a user namespace other than the host's (rootless strata, see
/// the worker's `rootless.rs`): the initial namespace's uid map is the identity of all ids.
/// Read once.
pub fn in_user_namespace() -> bool {
    static IN_USERNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_USERNS.get_or_init(|| {
        let map = fs_err::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}

/// The xattr that marks an opaque directory in the overlay layers of this process:
/// `trusted.overlay.opaque` as root; in a user namespace, where `trusted.*` takes a
/// capability of the host's, `user.overlay.opaque` (overlayfs mounted there with the
/// `userxattr` option reads that one). A store is used in one of the two ways only: root's
/// store by root, a user's by that user, rootless.
pub fn opaque_xattr() -> &'static str {
    if in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// The largest buffer a file's data is written through.
const FILE_BUFFER: u64 = 1 << 20;

/// Extracts the (uncompressed) tar `input` into `opts.dest` inside `root`.
pub fn extract(
    root: &ConfinedRoot,
    input: impl Read,
    opts: &ExtractOptions,
) -> Result<Extracted, ExtractError> {
    let layer = opts.kind == ArchiveKind::Layer;
    let dir_opts = DirOpts {
        mode: 0o755,
        owner: opts.owner,
    };
    root.mkdir_all(&opts.dest, dir_opts, &mut Vec::new())
        .map_err(|source| ExtractError::Entry {
            entry: ".".into(),
            action: "create the destination",
            source,
        })?;
    let mut archive = tar::Archive::new(input);
    let mut done = Extracted::default();
    let mut dir_times: Vec<(Vec<OsString>, i64)> = Vec::new();
    for entry in archive.entries().map_err(ExtractError::Read)? {
        let mut entry = entry.map_err(ExtractError::Read)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        let invalid = |reason| ExtractError::Invalid {
            entry: name.clone(),
            reason,
        };
        let io_err = |action: &'static str| {
            let entry = name.clone();
            move |source: io::Error| ExtractError::Entry {
                entry,
                action,
                source,
            }
        };
        let rel = entry_path(&raw, layer).map_err(&invalid)?;
        let base = rel.last().map(|b| b.as_bytes().to_vec());
        if !layer
            && rel
                .iter()
                .any(|c| c.as_bytes().starts_with(WHITEOUT_PREFIX))
        {
            return Err(ExtractError::Reserved(name));
        }
        if done.entries >= opts.max_entries {
            return Err(ExtractError::TooManyEntries(opts.max_entries));
        }
        let mut comps = opts.dest.clone();
        comps.extend(rel.iter().cloned());
        if layer
            && let Some(base) = base.as_deref()
            && base.starts_with(WHITEOUT_PREFIX)
        {
            if whiteout(root, &comps, base).map_err(|e| match e {
                WhiteoutError::Invalid(r) => invalid(r),
                WhiteoutError::Io(e) => io_err("create whiteout")(e),
            })? {
                done.entries += 1;
            }
            continue;
        }
        let header = entry.header();
        let old = header.as_old();
        let (uid, gid) = match opts.owner {
            Some(owner) => owner,
            None => {
                let uid = numeric(header.uid(), &old.uid).map_err(io_err("read its owner"))?;
                let gid = numeric(header.gid(), &old.gid).map_err(io_err("read its group"))?;
                // u32::MAX is "no id" to chown; nothing above fits.
                if uid >= u64::from(u32::MAX) || gid >= u64::from(u32::MAX) {
                    return Err(invalid("owner is out of range"));
                }
                (uid as u32, gid as u32)
            }
        };
        let mode = numeric(header.mode().map(u64::from), &old.mode)
            .map_err(io_err("read its mode"))? as u32
            & 0o7777;
        let mtime = numeric(header.mtime(), &old.mtime).unwrap_or(0) as i64;
        let xattrs = xattrs(&mut entry).map_err(io_err("read its xattrs"))?;
        let Some(slot) = root
            .slot(&comps, Some(dir_opts))
            .map_err(io_err("create its parent directories"))?
        else {
            // The root directory itself (`./`).
            if layer && kind == tar::EntryType::Directory {
                let fd = root
                    .open_path(
                        b".",
                        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                    )
                    .map_err(io_err("open"))?;
                owner_mode(&fd, uid, gid, mode).map_err(io_err("set its metadata"))?;
                dir_times.push((Vec::new(), mtime));
            }
            continue;
        };
        let replace = if layer {
            Replace::Tree
        } else {
            Replace::EmptyDir
        };
        done.entries += 1;
        match kind {
            tar::EntryType::Directory => {
                if !slot.clear(Replace::KeepDir).map_err(io_err("replace"))? {
                    slot.mkdir(0o700).map_err(io_err("create directory"))?;
                }
                let fd = slot.open_dir().map_err(io_err("open directory"))?;
                owner_mode(&fd, uid, gid, mode).map_err(io_err("set its metadata"))?;
                set_xattrs(&fd, &xattrs).map_err(io_err("set its xattrs"))?;
                dir_times.push((comps, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                slot.clear(replace).map_err(io_err("replace"))?;
                let file = slot.create_file(0o600).map_err(io_err("create file"))?;
                let room = opts.max_bytes.saturating_sub(done.bytes);
                // Through a buffer of up to 1 MiB, which `io::copy` reads straight into: its
                // own 8 KiB would cost a 500 MB file 64k reads and 64k writes (~0.3 s).
                let mut out = io::BufWriter::with_capacity(
                    entry.size().clamp(8 << 10, FILE_BUFFER) as usize,
                    file,
                );
                let written = io::copy(&mut (&mut entry).take(room.saturating_add(1)), &mut out)
                    .map_err(io_err("write file"))?;
                let file = out
                    .into_inner()
                    .map_err(|e| io_err("write file")(e.into_error()))?;
                done.bytes += written;
                if done.bytes > opts.max_bytes {
                    return Err(ExtractError::TooBig(opts.max_bytes));
                }
                if written != entry.size() {
                    return Err(invalid("truncated file data"));
                }
                let fd = OwnedFd::from(file);
                owner_mode(&fd, uid, gid, mode).map_err(io_err("set its metadata"))?;
                set_xattrs(&fd, &xattrs).map_err(io_err("set its xattrs"))?;
                set_mtime_fd(&fd, mtime).map_err(io_err("set its times"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("symlink without a target"))?
                    .into_owned();
                slot.clear(replace).map_err(io_err("replace"))?;
                slot.symlink(OsStr::from_bytes(&target))
                    .map_err(io_err("create symlink"))?;
                slot.chown(uid, gid).map_err(io_err("set its owner"))?;
                slot.set_mtime(mtime).map_err(io_err("set its times"))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("hard link without a target"))?
                    .into_owned();
                let bad = || ExtractError::BadLink {
                    entry: name.clone(),
                    target: shown(&target),
                };
                let mut tcomps = opts.dest.clone();
                tcomps.extend(entry_path(&target, layer).map_err(&invalid)?);
                let from = match root.slot(&tcomps, None) {
                    Ok(Some(from)) => from,
                    Ok(None) => return Err(invalid("hard link to a directory")),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(bad()),
                    Err(e) => return Err(io_err("resolve its hard link target")(e)),
                };
                match from
                    .file_type()
                    .map_err(io_err("inspect its hard link target"))?
                {
                    None => return Err(bad()),
                    Some(FileType::Directory) => return Err(invalid("hard link to a directory")),
                    Some(_) => {}
                }
                if same_entry(&from, &slot) {
                    continue;
                }
                slot.clear(replace).map_err(io_err("replace"))?;
                slot.link_from(&from).map_err(io_err("create hard link"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if !layer && file_type == FileType::CharacterDevice && major == 0 && minor == 0 {
                    return Err(invalid("0/0 character devices are overlay whiteouts"));
                }
                slot.clear(replace).map_err(io_err("replace"))?;
                slot.mknod(file_type, major, minor)
                    .map_err(io_err("create device"))?;
                slot.chown(uid, gid).map_err(io_err("set its owner"))?;
                // After chown, which clears setuid bits.
                slot.chmod_special(file_type, mode)
                    .map_err(io_err("set its mode"))?;
                slot.set_mtime(mtime).map_err(io_err("set its times"))?;
            }
            // Anything else (sockets cannot be in a tar; volume labels, unknown types)
            // carries no file.
            _ => done.entries -= 1,
        }
    }
    // Directory times last: creating entries in a directory changes its mtime.
    for (comps, mtime) in dir_times.iter().rev() {
        let fd = match root.slot(comps, None) {
            Ok(Some(slot)) => slot.open_dir(),
            Ok(None) => root.open_path(
                b".",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            ),
            Err(e) => Err(e),
        };
        if let Ok(fd) = fd {
            let _ = set_mtime_fd(&fd, *mtime);
        }
    }
    Ok(done)
}

/// A tar name as components below the destination: leading `/` and `./` dropped (tar names
/// are relative); `..` refused for a layer, cleaned lexically (clamped) for ADD.
fn entry_path(name: &[u8], layer: bool) -> Result<Vec<OsString>, &'static str> {
    if layer {
        let mut out = Vec::new();
        for part in name.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err("path contains `..`"),
                p => out.push(OsStr::from_bytes(p).to_os_string()),
            }
        }
        Ok(out)
    } else {
        Ok(clean(Path::new(OsStr::from_bytes(name))))
    }
}

/// A numeric header field; an empty one (all NUL or spaces) is 0, as Go's archive/tar reads
/// it, since some writers leave owner fields blank.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

enum WhiteoutError {
    Invalid(&'static str),
    Io(io::Error),
}

impl From<io::Error> for WhiteoutError {
    fn from(e: io::Error) -> Self {
        WhiteoutError::Io(e)
    }
}

impl From<Errno> for WhiteoutError {
    fn from(e: Errno) -> Self {
        WhiteoutError::Io(e.into())
    }
}

/// Converts the OCI whiteout `comps` (its last component is `base`); false when it is aufs
/// metadata that carries nothing.
fn whiteout(root: &ConfinedRoot, comps: &[OsString], base: &[u8]) -> Result<bool, WhiteoutError> {
    let parents = &comps[..comps.len() - 1];
    if base == OPAQUE {
        let dir = root.mkdir_all(parents, DirOpts::DEFAULT, &mut Vec::new())?;
        rustix::fs::fsetxattr(&dir, opaque_xattr(), b"y", XattrFlags::empty())?;
        return Ok(true);
    }
    let target = &base[WHITEOUT_PREFIX.len()..];
    if target.starts_with(WHITEOUT_PREFIX) {
        // `.wh..wh.plnk` and friends are aufs metadata, not files; anything else of that
        // shape is not a valid layer.
        if base.starts_with(b".wh..wh.") {
            return Ok(false);
        }
        return Err(WhiteoutError::Invalid("whiteout of a whiteout name"));
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(WhiteoutError::Invalid("invalid whiteout name"));
    }
    let slot = Slot {
        dir: root.mkdir_all(parents, DirOpts::DEFAULT, &mut Vec::new())?,
        name: OsStr::from_bytes(target).to_os_string(),
    };
    slot.clear(Replace::Tree)?;
    rustix::fs::mknodat(
        &slot.dir,
        slot.name.as_os_str(),
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )?;
    Ok(true)
}

fn owner_mode(fd: &OwnedFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    super::chown_fd(fd, uid, gid)?;
    // After chown, which clears setuid bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Extended attributes from PAX `SCHILY.xattr.*` records that [`keep_xattr`] keeps.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")
                && keep_xattr(name)
            {
                out.push((
                    OsStr::from_bytes(name).to_os_string(),
                    ext.value_bytes().to_vec(),
                ));
            }
        }
    }
    Ok(out)
}

fn set_xattrs(fd: &OwnedFd, xattrs: &[(OsString, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        match rustix::fs::fsetxattr(fd.as_fd(), name.as_os_str(), value, XattrFlags::empty()) {
            // A filesystem without xattrs of that namespace: the file is still the file.
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn same_entry(a: &Slot, b: &Slot) -> bool {
    let st = |s: &Slot| {
        rustix::fs::statat(
            &s.dir,
            s.name.as_os_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
    };
    match (st(a), st(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// An entry name for messages: control characters replaced and at most 200 characters (a
/// hostile name can be megabytes).
fn shown(raw: &[u8]) -> String {
    crate::untrusted::shorten(&String::from_utf8_lossy(raw))
}

#[cfg(test)]
mod tests {
    //! containerd's `TestBreakouts` table (reliability.md §1), ported: every case runs against
    //! a fresh `root/` beside an `outside/` directory holding a victim file and directory, and
    //! must leave `outside/` exactly as it was, whether the unpack succeeds or fails.

    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    type Parts<'a> = (
        &'a str,
        tar::EntryType,
        &'a str,
        &'a [u8],
        u32,
        Option<(&'a str, &'a [u8])>,
    );

    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str, u32),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Xattr(&'a str, &'a str, &'a [u8]),
    }

    /// A tar written header by header, so names like `../x` that `tar::Builder` refuses can
    /// be produced.
    fn tar(entries: &[E<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            let (name, kind, link, data, mode, pax): Parts<'_> = match e {
                E::File(n, d, m) => (n, tar::EntryType::Regular, "", d, *m, None),
                E::Dir(n, m) => (n, tar::EntryType::Directory, "", &[], *m, None),
                E::Sym(n, l) => (n, tar::EntryType::Symlink, l, &[], 0o777, None),
                E::Hard(n, l) => (n, tar::EntryType::Link, l, &[], 0o644, None),
                E::Xattr(n, k, v) => (n, tar::EntryType::Regular, "", &[], 0o644, Some((*k, *v))),
            };
            if let Some((k, v)) = pax {
                let key = format!("SCHILY.xattr.{k}");
                let mut rec = Vec::new();
                let body_len = key.len() + v.len() + 3;
                let mut len = body_len + body_len.to_string().len();
                if (len.to_string().len() + body_len) != len {
                    len = body_len + len.to_string().len();
                }
                rec.extend_from_slice(format!("{len} {key}=").as_bytes());
                rec.extend_from_slice(v);
                rec.push(b'\n');
                push(&mut out, "pax", tar::EntryType::XHeader, "", &rec, 0o644);
            }
            push(&mut out, name, kind, link, data, mode);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn push(
        out: &mut Vec<u8>,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.as_gnu_mut().expect("gnu header").linkname[..link.len()]
                .copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    struct Case {
        _tmp: tempfile::TempDir,
        root: std::path::PathBuf,
        outside: std::path::PathBuf,
    }

    impl Case {
        fn new() -> Case {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            let outside = tmp.path().join("outside");
            fs_err::create_dir_all(&root).unwrap();
            fs_err::create_dir_all(outside.join("dir")).unwrap();
            fs_err::write(outside.join("victim"), "victim").unwrap();
            fs_err::set_permissions(
                outside.join("victim"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            fs_err::set_permissions(outside.join("dir"), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            Case {
                _tmp: tmp,
                root,
                outside,
            }
        }

        fn unpack(&self, entries: &[E<'_>]) -> Result<Extracted, ExtractError> {
            self.extract(entries, &ExtractOptions::layer(), false)
        }

        /// Extracts with `opts`, by the kernel's resolution or (`walk`) the fallback's.
        fn extract(
            &self,
            entries: &[E<'_>],
            opts: &ExtractOptions,
            walk: bool,
        ) -> Result<Extracted, ExtractError> {
            let bytes = tar(entries);
            let root = if walk {
                ConfinedRoot::walking(&self.root).unwrap()
            } else {
                ConfinedRoot::open(&self.root).unwrap()
            };
            let result = extract(&root, &bytes[..], opts);
            self.assert_outside_untouched();
            result
        }

        fn assert_outside_untouched(&self) {
            let mut names: Vec<_> = fs_err::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["dir", "victim"]);
            assert_eq!(
                fs_err::read_to_string(self.outside.join("victim")).unwrap(),
                "victim"
            );
            let m = fs_err::metadata(self.outside.join("victim")).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o600);
            assert_eq!(m.nlink(), 1, "victim got a hardlink");
            let d = fs_err::metadata(self.outside.join("dir")).unwrap();
            assert_eq!(d.mode() & 0o7777, 0o700);
            assert_eq!(
                fs_err::read_dir(self.outside.join("dir")).unwrap().count(),
                0
            );
        }

        fn abs(&self, rel: &str) -> String {
            self.outside.join(rel).display().to_string()
        }
    }

    #[test]
    fn symlink_absolute_resolves_inside_root() {
        let c = Case::new();
        let target = c.abs("dir");
        c.unpack(&[E::Sym("sl", &target), E::File("sl/f", b"x", 0o644)])
            .unwrap();
        // Chroot semantics: the absolute target is taken inside the root.
        let inside = c.root.join(target.trim_start_matches('/')).join("f");
        assert_eq!(fs_err::read_to_string(inside).unwrap(), "x");
    }

    #[test]
    fn symlink_up_and_out_is_clamped_at_root() {
        let c = Case::new();
        c.unpack(&[E::Sym("sl", "../outside/dir"), E::File("sl/f", b"x", 0o644)])
            .unwrap();
        assert!(c.root.join("outside/dir/f").is_file());
        let c = Case::new();
        c.unpack(&[
            E::Dir("a", 0o755),
            E::Sym("a/sl", "../../../../../outside"),
            E::File("a/sl/victim", b"pwned", 0o644),
        ])
        .unwrap();
        assert_eq!(
            fs_err::read_to_string(c.root.join("outside/victim")).unwrap(),
            "pwned"
        );
    }

    #[test]
    fn symlink_multiple_relative_and_parent_directory() {
        let c = Case::new();
        c.unpack(&[
            E::Sym("a", "b/../../.."),
            E::Sym("b", "."),
            E::File("a/outside/victim", b"pwned", 0o644),
        ])
        .unwrap();
        let c = Case::new();
        c.unpack(&[
            E::Sym("up", ".."),
            E::File("up/outside/victim", b"pwned", 0o644),
        ])
        .unwrap();
    }

    #[test]
    fn file_replaces_symlink_instead_of_writing_through_it() {
        let c = Case::new();
        let victim = c.abs("victim");
        c.unpack(&[E::Sym("f", &victim), E::File("f", b"new", 0o644)])
            .unwrap();
        assert_eq!(fs_err::read_to_string(c.root.join("f")).unwrap(), "new");
        assert!(
            !fs_err::symlink_metadata(c.root.join("f"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn directory_replaces_symlink_and_keeps_target_mode() {
        let c = Case::new();
        let dir = c.abs("dir");
        c.unpack(&[E::Sym("d", &dir), E::Dir("d", 0o777)]).unwrap();
        let m = fs_err::symlink_metadata(c.root.join("d")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, 0o777);
        // And the override in the other direction: a symlink over a directory.
        let c = Case::new();
        c.unpack(&[
            E::Dir("d", 0o755),
            E::File("d/f", b"x", 0o644),
            E::Sym("d", &dir),
        ])
        .unwrap();
        assert!(
            fs_err::symlink_metadata(c.root.join("d"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn hardlinks_never_reach_outside() {
        let c = Case::new();
        let victim = c.abs("victim");
        // Absolute: resolved inside the root, where nothing is.
        assert!(c.unpack(&[E::Hard("h", &victim)]).is_err());
        let c = Case::new();
        assert!(c.unpack(&[E::Hard("h", "../outside/victim")]).is_err());
        let c = Case::new();
        let dir = c.abs("");
        assert!(
            c.unpack(&[E::Sym("sl", &dir), E::Hard("h", "sl/victim")])
                .is_err()
        );
        let c = Case::new();
        assert!(
            c.unpack(&[E::Dir("a", 0o755), E::Hard("a/h", "a/../../outside/victim")])
                .is_err()
        );
    }

    #[test]
    fn hardlink_inside_layer_works_and_direct_relative_is_refused() {
        let c = Case::new();
        c.unpack(&[
            E::File("a", b"data", 0o640),
            E::Hard("b", "a"),
            E::Hard("./c", "/a"),
        ])
        .unwrap();
        let a = fs_err::metadata(c.root.join("a")).unwrap();
        assert_eq!(a.nlink(), 3);
        assert_eq!(a.mode() & 0o7777, 0o640);
    }

    #[test]
    fn hardlink_to_symlink_links_the_link_and_chmod_does_not_follow() {
        let c = Case::new();
        let victim = c.abs("victim");
        c.unpack(&[E::Sym("l", &victim), E::Hard("h", "l"), E::Dir("h", 0o777)])
            .unwrap();
        let c = Case::new();
        c.unpack(&[
            E::Sym("l", &victim),
            E::Hard("h", "l"),
            E::File("h", b"x", 0o777),
        ])
        .unwrap();
    }

    #[test]
    fn dotdot_names_are_refused() {
        for name in ["../victim", "a/../../victim", "./../outside/victim"] {
            let c = Case::new();
            let err = c.unpack(&[E::File(name, b"pwned", 0o644)]).unwrap_err();
            assert!(err.to_string().contains("`..`"), "{name}: {err}");
        }
    }

    #[test]
    fn implicit_parents_are_0755_whatever_the_umask() {
        // nextest runs each test in its own process, so the umask change stays here.
        rustix::process::umask(Mode::from_raw_mode(0o077));
        let c = Case::new();
        c.unpack(&[E::File("a/b/f", b"x", 0o644)]).unwrap();
        for d in ["a", "a/b"] {
            let m = fs_err::metadata(c.root.join(d)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o755, "{d}");
        }
        assert_eq!(
            fs_err::metadata(c.root.join("a/b/f")).unwrap().mode() & 0o7777,
            0o644
        );
    }

    #[test]
    fn absolute_names_land_inside() {
        let c = Case::new();
        c.unpack(&[E::File("/etc/passwd", b"root", 0o644)]).unwrap();
        assert_eq!(
            fs_err::read_to_string(c.root.join("etc/passwd")).unwrap(),
            "root"
        );
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let c = Case::new();
        let err = c.unpack(&[
            E::Sym("a", "b"),
            E::Sym("b", "a"),
            E::File("a/f", b"", 0o644),
        ]);
        assert!(err.is_err());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let c = Case::new();
        c.unpack(&[
            E::Dir("etc", 0o755),
            E::File("etc/.wh.passwd", b"", 0o644),
            E::Dir("var", 0o755),
            E::File("var/.wh..wh..opq", b"", 0o644),
            E::File("var/new", b"n", 0o644),
        ])
        .unwrap();
        let w = fs_err::symlink_metadata(c.root.join("etc/passwd")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &w.file_type()
        ));
        assert_eq!(w.rdev(), 0);
        assert!(!c.root.join("etc/.wh.passwd").exists());
        let opaque = rustix::fs::getxattr(
            c.root.join("var").as_path(),
            "trusted.overlay.opaque",
            &mut [0u8; 8],
        );
        assert_eq!(opaque.unwrap(), 1);
        assert!(c.root.join("var/new").is_file());
    }

    #[test]
    fn whiteout_oddities_are_invalid() {
        for name in [".wh..", ".wh...", "a/.wh..", ".wh..wh.x/../y"] {
            let c = Case::new();
            assert!(c.unpack(&[E::File(name, b"", 0o644)]).is_err(), "{name}");
        }
        // Whiteouts resolve inside the root too.
        let c = Case::new();
        c.unpack(&[
            E::Sym("up", ".."),
            E::File("up/outside/.wh.victim", b"", 0o644),
        ])
        .unwrap();
    }

    #[test]
    fn trusted_xattrs_are_dropped_and_user_xattrs_kept() {
        let c = Case::new();
        c.unpack(&[
            E::Xattr("opaque", "trusted.overlay.opaque", b"y"),
            E::Xattr("user", "user.note", b"hello"),
        ])
        .unwrap();
        let mut buf = [0u8; 16];
        assert!(
            rustix::fs::getxattr(
                c.root.join("opaque").as_path(),
                "trusted.overlay.opaque",
                &mut buf
            )
            .is_err()
        );
        let n = rustix::fs::getxattr(c.root.join("user").as_path(), "user.note", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[test]
    fn modes_owners_and_setuid_survive() {
        let c = Case::new();
        let bytes = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_path("suid").unwrap();
            h.set_size(1);
            h.set_mode(0o4755);
            h.set_uid(1000);
            h.set_gid(2000);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_path("sticky").unwrap();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o1777);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
            b.into_inner().unwrap()
        };
        let root = ConfinedRoot::open(&c.root).unwrap();
        extract(&root, &bytes[..], &ExtractOptions::layer()).unwrap();
        let m = fs_err::metadata(c.root.join("suid")).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
            (0o4755, 1000, 2000, 1_600_000_000)
        );
        let d = fs_err::metadata(c.root.join("sticky")).unwrap();
        assert_eq!((d.mode() & 0o7777, d.mtime()), (0o1777, 1_600_000_000));
    }

    #[test]
    fn duplicate_entries_last_wins_without_following() {
        let c = Case::new();
        let victim = c.abs("victim");
        c.unpack(&[
            E::Dir("x", 0o755),
            E::File("x", b"file", 0o644),
            E::Dir("x", 0o755),
            E::Sym("x", &victim),
            E::File("x", b"last", 0o644),
        ])
        .unwrap();
        assert_eq!(fs_err::read_to_string(c.root.join("x")).unwrap(), "last");
    }

    #[test]
    fn add_refuses_whiteout_names_and_clamps_dotdot_below_the_destination() {
        let add = ExtractOptions::add(clean(Path::new("/hostile")), None, 1 << 20);
        for name in [".wh.x", "a/.wh..wh..opq", ".wh..wh..opq"] {
            let c = Case::new();
            let err = c
                .extract(&[E::File(name, b"", 0o644)], &add, false)
                .unwrap_err();
            assert!(matches!(err, ExtractError::Reserved(_)), "{name}: {err}");
        }
        let c = Case::new();
        c.extract(&[E::File("../../x", b"up", 0o644)], &add, false)
            .unwrap();
        assert_eq!(
            fs_err::read_to_string(c.root.join("hostile/x")).unwrap(),
            "up"
        );
    }

    #[test]
    fn add_applies_chown_to_entries_and_created_directories() {
        let c = Case::new();
        let add = ExtractOptions::add(clean(Path::new("/d")), Some((10, 20)), 1 << 20);
        let done = c
            .extract(
                &[E::File("a/f", b"12345", 0o640), E::Sym("l", "a/f")],
                &add,
                false,
            )
            .unwrap();
        assert_eq!(
            done,
            Extracted {
                entries: 2,
                bytes: 5
            }
        );
        for p in ["d", "d/a", "d/a/f", "d/l"] {
            let m = fs_err::symlink_metadata(c.root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (10, 20), "{p}");
        }
        let f = fs_err::metadata(c.root.join("d/a/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
    }

    #[test]
    fn add_keeps_a_non_empty_directory_that_a_file_would_replace() {
        let c = Case::new();
        let add = ExtractOptions::add(Vec::new(), None, 1 << 20);
        let err = c
            .extract(
                &[E::File("d/f", b"x", 0o644), E::File("d", b"y", 0o644)],
                &add,
                false,
            )
            .unwrap_err();
        assert!(
            matches!(&err, ExtractError::Entry { source, .. } if source.kind() == io::ErrorKind::DirectoryNotEmpty),
            "{err}"
        );
        // A layer replaces the whole tree.
        let c = Case::new();
        c.unpack(&[E::File("d/f", b"x", 0o644), E::File("d", b"y", 0o644)])
            .unwrap();
        assert_eq!(fs_err::read_to_string(c.root.join("d")).unwrap(), "y");
    }

    #[test]
    fn byte_and_entry_limits_stop_extraction() {
        let c = Case::new();
        let mut opts = ExtractOptions::add(Vec::new(), None, 8);
        let err = c
            .extract(
                &[E::File("a", b"12345", 0o644), E::File("b", b"6789", 0o644)],
                &opts,
                false,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "the archive unpacks to more than 8 bytes");
        let c = Case::new();
        opts.max_bytes = u64::MAX;
        opts.max_entries = 2;
        let err = c
            .extract(
                &[
                    E::File("a", b"", 0o644),
                    E::File("b", b"", 0o644),
                    E::File("c", b"", 0o644),
                ],
                &opts,
                false,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "the archive has more than 2 entries");
        assert!(!c.root.join("c").exists());
    }

    #[test]
    fn the_fallback_walk_extracts_the_breakout_table_the_same_way() {
        let c = Case::new();
        let victim = c.abs("victim");
        let dir = c.abs("dir");
        c.extract(
            &[
                E::Sym("abs", &dir),
                E::File("abs/f", b"x", 0o644),
                E::Sym("up", "../../../.."),
                E::File("up/outside/victim", b"pwned", 0o644),
                E::Sym("v", &victim),
                E::File("v", b"new", 0o644),
            ],
            &ExtractOptions::layer(),
            true,
        )
        .unwrap();
        let inside = c.root.join(dir.trim_start_matches('/')).join("f");
        assert_eq!(fs_err::read_to_string(inside).unwrap(), "x");
        assert_eq!(
            fs_err::read_to_string(c.root.join("outside/victim")).unwrap(),
            "pwned"
        );
        let c = Case::new();
        assert!(
            c.extract(
                &[
                    E::Sym("a", "b"),
                    E::Sym("b", "a"),
                    E::File("a/f", b"", 0o644)
                ],
                &ExtractOptions::layer(),
                true,
            )
            .is_err()
        );
    }

    mod prop {
        //! Random layers built from the names and link targets breakouts are made of: whatever
        //! the mix, unpacking never panics and never touches `outside/`.

        use super::*;
        use proptest::prelude::*;

        const PARTS: &[&str] = &[
            "a",
            "b",
            "victim",
            "dir",
            "..",
            "outside",
            ".wh.a",
            ".wh..wh..opq",
            ".",
            "",
        ];

        fn path() -> impl Strategy<Value = String> {
            (
                proptest::collection::vec(proptest::sample::select(PARTS), 1..5),
                any::<bool>(),
            )
                .prop_map(|(parts, abs)| {
                    format!("{}{}", if abs { "/" } else { "" }, parts.join("/"))
                })
        }

        #[derive(Debug, Clone)]
        enum Op {
            File(String),
            Dir(String),
            Sym(String, String),
            Hard(String, String),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                path().prop_map(Op::File),
                path().prop_map(Op::Dir),
                (path(), path()).prop_map(|(a, b)| Op::Sym(a, b)),
                (path(), path()).prop_map(|(a, b)| Op::Hard(a, b)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
            #[test]
            fn random_link_mazes_stay_inside(
                ops in proptest::collection::vec(op(), 1..12),
                add in any::<bool>(),
                walk in any::<bool>(),
            ) {
                let c = Case::new();
                // Absolute targets aim at the real outside: the directory, its subdirectory
                // or the victim file.
                let targets = [c.abs(""), c.abs("dir"), c.abs(""), c.abs("victim")];
                let entries: Vec<E<'_>> = ops
                    .iter()
                    .map(|o| match o {
                        Op::File(p) => E::File(p, b"pwned", 0o777),
                        Op::Dir(p) => E::Dir(p, 0o777),
                        Op::Sym(p, t) if t.starts_with('/') => E::Sym(p, &targets[t.len() % 4]),
                        Op::Sym(p, t) => E::Sym(p, t),
                        Op::Hard(p, t) => E::Hard(p, t),
                    })
                    .filter(|e| match e {
                        E::File(p, ..) | E::Dir(p, _) | E::Sym(p, _) | E::Hard(p, _) => p.len() < 100,
                        E::Xattr(..) => true,
                    })
                    .collect();
                let opts = if add {
                    ExtractOptions::add(clean(Path::new("dest")), Some((7, 8)), 1 << 20)
                } else {
                    ExtractOptions::layer()
                };
                // Ok or Err both fine; `extract` (through Case) checks `outside/` after.
                let _ = c.extract(&entries, &opts, walk);
            }
        }
    }
}
