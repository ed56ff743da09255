//! Test trees on disk: files, modes, symlinks, fifos, built in a temporary directory.

use crate::context::{ContextIndex, ScanOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) struct Tree {
    pub(crate) dir: tempfile::TempDir,
}

impl Tree {
    pub(crate) fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    fn parent(&self, rel: &str) {
        if let Some(p) = self.path(rel).parent() {
            fs_err::create_dir_all(p).expect("parent dirs");
        }
    }

    pub(crate) fn file(&self, rel: &str, content: &str, mode: u32) -> &Self {
        self.parent(rel);
        fs_err::write(self.path(rel), content).expect("write file");
        self.chmod(rel, mode)
    }

    pub(crate) fn dir(&self, rel: &str, mode: u32) -> &Self {
        fs_err::create_dir_all(self.path(rel)).expect("mkdir");
        self.chmod(rel, mode)
    }

    pub(crate) fn symlink(&self, rel: &str, target: &str) -> &Self {
        self.parent(rel);
        std::os::unix::fs::symlink(target, self.path(rel)).expect("symlink");
        self
    }

    pub(crate) fn fifo(&self, rel: &str) -> &Self {
        self.parent(rel);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            self.path(rel),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        self
    }

    pub(crate) fn chmod(&self, rel: &str, mode: u32) -> &Self {
        fs_err::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        self
    }

    /// Sets the mtime (of a file, directory or symlink itself), as `touch -h -d` does.
    pub(crate) fn set_mtime(&self, rel: &str, t: SystemTime) -> &Self {
        let since = t.duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        let ts = rustix::fs::Timespec {
            tv_sec: since.as_secs() as i64,
            tv_nsec: i64::from(since.subsec_nanos()) as _,
        };
        let omit = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT as _,
        };
        let times = rustix::fs::Timestamps {
            last_access: omit,
            last_modification: ts,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            self.path(rel),
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("set mtime");
        self
    }

    /// `touch`: a new mtime, nothing else.
    pub(crate) fn touch(&self, rel: &str) -> &Self {
        self.set_mtime(rel, SystemTime::now() + Duration::from_secs(5))
    }

    /// Scans without a stat cache, keeping everything.
    pub(crate) fn scan(&self) -> ContextIndex {
        ContextIndex::scan(self.root(), &ScanOptions::default()).expect("scan")
    }

    pub(crate) fn scan_with(&self, opts: &ScanOptions<'_>) -> ContextIndex {
        ContextIndex::scan(self.root(), opts).expect("scan")
    }
}
