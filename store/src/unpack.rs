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
        let shown = String::from_utf8_lossy(&name).into_owned();
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
        let components = clean_components(&name).map_err(|r| fail(r))?;
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
        let meta = Meta {
            uid: header.uid().map_err(ioerr("read owner of"))?,
            gid: header.gid().map_err(ioerr("read group of"))?,
            mode: header.mode().map_err(ioerr("read mode of"))? & 0o7777,
            mtime: header.mtime().map_err(ioerr("read mtime of"))?,
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
                let target = clean_components(&target).map_err(|r| fail(r))?;
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
