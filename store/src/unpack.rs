//! Applies one layer tar to an empty directory so that the directory can serve as an overlayfs
//! lower layer: OCI whiteouts become overlay whiteouts (`.wh.name` → a 0/0 character device
//! `name`, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory).
//!
//! The tar is hostile until proven otherwise. Every path goes through [`RootDir`] (resolved
//! inside the directory, last component never followed); an existing entry is removed before a
//! new one is created (never written through); owners and modes are set on the fd we created,
//! or with `AT_SYMLINK_NOFOLLOW`; `..` components, `.wh..`-style names and `trusted.*` xattrs
//! are refused or dropped. See reliability.md §3 and the breakout table in the tests below.

use crate::digest::Digest;
use crate::error::StoreError;
use crate::root_dir::{RootDir, Slot, open_dir_at};
use rustix::fs::Timespec;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Unpacks the (uncompressed) tar `input` into the empty directory `dest`.
pub(crate) fn unpack(dest: &Path, input: impl Read, layer: &Digest) -> Result<(), StoreError> {
    let root = RootDir::open(dest).map_err(|e| StoreError::UnpackIo {
        layer: layer.clone(),
        entry: String::new(),
        action: "open",
        source: e,
    })?;
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(StoreError::stream(format!("read layer {layer}")))?;
    let mut dir_times: Vec<(Vec<Vec<u8>>, i64)> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(StoreError::stream(format!("read layer {layer}")))?;
        let name = entry.path_bytes().into_owned();
        let shown = crate::error::shorten(&String::from_utf8_lossy(&name));
        let fail = |reason: &str| StoreError::Unpack {
            layer: layer.clone(),
            entry: shown.clone(),
            reason: reason.to_owned(),
        };
        let ioerr = |action: &'static str| {
            let layer = layer.clone();
            let entry = shown.clone();
            move |source: io::Error| StoreError::UnpackIo {
                layer,
                entry,
                action,
                source,
            }
        };
        let components = clean_components(&name).map_err(&fail)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let parts: Vec<&OsStr> = components.iter().map(|c| OsStr::from_bytes(c)).collect();
        if let Some(base) = components.last()
            && base.starts_with(WHITEOUT_PREFIX)
        {
            whiteout(&root, &parts, base).map_err(|e| match e {
                WhiteoutError::Invalid(r) => fail(r),
                WhiteoutError::Io(e) => ioerr("create whiteout")(e),
            })?;
            continue;
        }
        let header = entry.header();
        let old = header.as_old();
        let meta = Meta {
            uid: numeric(header.uid(), &old.uid).map_err(ioerr("read owner of"))?,
            gid: numeric(header.gid(), &old.gid).map_err(ioerr("read group of"))?,
            mode: numeric(header.mode().map(u64::from), &old.mode).map_err(ioerr("read mode of"))?
                as u32
                & 0o7777,
            mtime: numeric(header.mtime(), &old.mtime).map_err(ioerr("read mtime of"))?,
        };
        if meta.uid > u64::from(u32::MAX - 1) || meta.gid > u64::from(u32::MAX - 1) {
            return Err(fail("owner is out of range"));
        }
        let xattrs = xattrs(&mut entry).map_err(ioerr("read xattrs of"))?;
        let Some(slot) = root
            .slot(&parts, true)
            .map_err(ioerr("resolve parent of"))?
        else {
            // The root directory itself (`./`): take its owner and mode.
            if kind == tar::EntryType::Directory {
                apply_owner_mode(root.fd(), &meta).map_err(ioerr("set metadata of"))?;
            }
            continue;
        };
        match kind {
            tar::EntryType::Directory => {
                if slot.file_type().map_err(ioerr("inspect"))? != Some(FileType::Directory) {
                    slot.clear().map_err(ioerr("replace"))?;
                    rustix::fs::mkdirat(
                        &slot.dir,
                        slot.name.as_os_str(),
                        Mode::from_raw_mode(0o700),
                    )
                    .map_err(|e| ioerr("create directory")(e.into()))?;
                }
                let fd = open_dir_at(&slot.dir, &slot.name).map_err(ioerr("open directory"))?;
                apply_owner_mode(&fd, &meta).map_err(ioerr("set metadata of"))?;
                set_xattrs(&fd, &xattrs).map_err(ioerr("set xattrs of"))?;
                dir_times.push((components.clone(), meta.mtime as i64));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                slot.clear().map_err(ioerr("replace"))?;
                let fd = rustix::fs::openat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| ioerr("create file")(e.into()))?;
                let mut file = std::fs::File::from(fd);
                let expected = entry.size();
                let written = io::copy(&mut entry, &mut file).map_err(ioerr("write file"))?;
                if written != expected {
                    return Err(fail("truncated file data"));
                }
                let fd = OwnedFd::from(file);
                apply_owner_mode(&fd, &meta).map_err(ioerr("set metadata of"))?;
                set_xattrs(&fd, &xattrs).map_err(ioerr("set xattrs of"))?;
                set_time(&fd, meta.mtime as i64).map_err(ioerr("set time of"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| fail("symlink without a target"))?
                    .into_owned();
                slot.clear().map_err(ioerr("replace"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &slot.dir, slot.name.as_os_str())
                    .map_err(|e| ioerr("create symlink")(e.into()))?;
                rustix::fs::chownat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    Some(rustix::fs::Uid::from_raw(meta.uid as u32)),
                    Some(rustix::fs::Gid::from_raw(meta.gid as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| ioerr("set owner of")(e.into()))?;
                let t = timespec(meta.mtime as i64);
                rustix::fs::utimensat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| ioerr("set time of")(e.into()))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| fail("hardlink without a target"))?
                    .into_owned();
                let target = clean_components(&target).map_err(&fail)?;
                let target: Vec<&OsStr> = target.iter().map(|c| OsStr::from_bytes(c)).collect();
                let from = root
                    .slot(&target, false)
                    .map_err(ioerr("resolve hardlink target of"))?
                    .ok_or_else(|| fail("hardlink to the root directory"))?;
                match from
                    .file_type()
                    .map_err(ioerr("inspect hardlink target of"))?
                {
                    None => return Err(fail("hardlink target is not in this layer")),
                    Some(FileType::Directory) => return Err(fail("hardlink to a directory")),
                    Some(_) => {}
                }
                if same_entry(&from, &slot) {
                    continue;
                }
                slot.clear().map_err(ioerr("replace"))?;
                rustix::fs::linkat(
                    &from.dir,
                    from.name.as_os_str(),
                    &slot.dir,
                    slot.name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| ioerr("create hardlink")(e.into()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                slot.clear().map_err(ioerr("replace"))?;
                rustix::fs::mknodat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| ioerr("create device")(e.into()))?;
                // Just created in our private directory, and checked not to be a symlink:
                // chown/chmod by name are safe here (a device cannot be opened to fchmod).
                if slot.file_type().map_err(ioerr("inspect"))? != Some(file_type) {
                    return Err(fail("device node replaced while unpacking"));
                }
                rustix::fs::chownat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    Some(rustix::fs::Uid::from_raw(meta.uid as u32)),
                    Some(rustix::fs::Gid::from_raw(meta.gid as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| ioerr("set owner of")(e.into()))?;
                rustix::fs::chmodat(
                    &slot.dir,
                    slot.name.as_os_str(),
                    Mode::from_raw_mode(meta.mode as u32),
                    AtFlags::empty(),
                )
                .map_err(|e| ioerr("set mode of")(e.into()))?;
            }
            // Anything else (sockets cannot be in a tar; unknown types) carries no file.
            _ => {}
        }
    }
    // Directory times last: creating entries in a directory changes its mtime.
    for (components, mtime) in dir_times.iter().rev() {
        let parts: Vec<&OsStr> = components.iter().map(|c| OsStr::from_bytes(c)).collect();
        if let Ok(Some(slot)) = root.slot(&parts, false)
            && let Ok(fd) = open_dir_at(&slot.dir, &slot.name)
        {
            let _ = set_time(&fd, *mtime);
        }
    }
    Ok(())
}

/// A numeric header field; an empty one (all NUL or spaces) is 0, as Go's archive/tar reads
/// it, since some writers leave owner fields blank.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
}

/// Splits a tar name into components: leading `/` and `./` are dropped (tar names are
/// relative to the layer root); `..` is refused (no legitimate layer has it).
pub(crate) fn clean_components(name: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut out = Vec::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            p => out.push(p.to_vec()),
        }
    }
    Ok(out)
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

impl From<rustix::io::Errno> for WhiteoutError {
    fn from(e: rustix::io::Errno) -> Self {
        WhiteoutError::Io(e.into())
    }
}

fn whiteout(root: &RootDir, parts: &[&OsStr], base: &[u8]) -> Result<(), WhiteoutError> {
    let parents = &parts[..parts.len() - 1];
    if base == OPAQUE {
        let dir = root.dir(parents, true)?;
        rustix::fs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())?;
        return Ok(());
    }
    let target = &base[WHITEOUT_PREFIX.len()..];
    if target.starts_with(b".wh.") {
        // `.wh..wh.plnk` and friends are aufs metadata, not files; anything else of that
        // shape is not a valid layer.
        if base.starts_with(b".wh..wh.") {
            return Ok(());
        }
        return Err(WhiteoutError::Invalid("whiteout of a whiteout name"));
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(WhiteoutError::Invalid("invalid whiteout name"));
    }
    let dir = root.dir(parents, true)?;
    let slot = Slot {
        dir,
        name: OsStr::from_bytes(target).to_os_string(),
    };
    slot.clear()?;
    rustix::fs::mknodat(
        &slot.dir,
        slot.name.as_os_str(),
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )?;
    Ok(())
}

fn apply_owner_mode(fd: &OwnedFd, meta: &Meta) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(meta.uid as u32)),
        Some(rustix::fs::Gid::from_raw(meta.gid as u32)),
    )?;
    // After chown, which clears setuid bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))?;
    Ok(())
}

fn timespec(secs: i64) -> Timespec {
    Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }
}

fn set_time(fd: &OwnedFd, secs: i64) -> io::Result<()> {
    let t = timespec(secs);
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

/// Extended attributes from PAX `SCHILY.xattr.*` records, minus the ones an image must not
/// set: `trusted.*` (overlayfs metadata: opaque, redirect, origin) and `security.*` other
/// than `security.capability` (file capabilities are part of images; labels are not).
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.")
                && allowed_xattr(name)
            {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

pub(crate) fn allowed_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.")
        || (name.starts_with("security.") && name != "security.capability"))
}

fn set_xattrs(fd: &OwnedFd, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())?;
    }
    Ok(())
}

fn same_entry(a: &Slot, b: &Slot) -> bool {
    let st = |s: &Slot| rustix::fs::statat(&s.dir, s.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW);
    match (st(a), st(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
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

        fn unpack(&self, entries: &[E<'_>]) -> Result<(), StoreError> {
            let bytes = tar(entries);
            let result = unpack(&self.root, &bytes[..], &Digest::of(&bytes));
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
        unpack(&c.root, &bytes[..], &Digest::of(&bytes)).unwrap();
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
            fn random_link_mazes_stay_inside(ops in proptest::collection::vec(op(), 1..12)) {
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
                // Ok or Err both fine; `unpack` (through Case) checks `outside/` after.
                let _ = c.unpack(&entries);
            }
        }
    }
}
