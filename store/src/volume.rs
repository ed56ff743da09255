//! Volumes: directories that outlive the containers using them, docker's `local` driver
//! without a daemon. A volume `NAME` is `<root>/volumes/NAME/_data` (the path docker users
//! know, under strata's root), made by `volume create` or on a container's first use of the
//! name; an anonymous one (`-v /path`) gets a random 64-hex name and goes with its container
//! (`rm -v`, `--rm`). A container's mounts are in its `config.json`
//! ([`crate::ContainerConfig::mounts`]); a volume a container names cannot be removed.
//!
//! A volume is made in `.new-NAME/` and renamed into place, and removed by renaming it to
//! `.removing-NAME/` first, all under `volumes/volumes.lock`; a crash leaves one of those,
//! which the next create deletes.

use crate::container::{entry_names, random_bytes, sweep_leftovers, valid_name};
use crate::error::StoreError;
use crate::lock::FileLock;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What is mounted at a container's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host file or directory (`-v /host:/ctr`, `--mount type=bind`).
    Bind,
    /// A volume of the store (`-v name:/ctr`, `-v /ctr`, `--mount type=volume`).
    Volume,
    /// A fresh tmpfs per run (`--mount type=tmpfs`, `--tmpfs`).
    Tmpfs,
}

impl MountKind {
    /// docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One of a container's mounts, as it was created with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// What is mounted.
    pub kind: MountKind,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path (binds only; a volume's is [`Store::volume_data`]).
    #[serde(default)]
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
    /// The tmpfs's size limit in bytes (tmpfs only; `None`: the kernel's default).
    #[serde(default)]
    pub tmpfs_size: Option<u64>,
    /// An anonymous volume: removed with the container by `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous: bool,
}

/// Why a volume operation failed, in docker's words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// A name docker would refuse.
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    InvalidName(String),
    /// Containers use it.
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The full IDs of the containers naming it.
        containers: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::durable::DurableError> for VolumeError {
    fn from(e: crate::durable::DurableError) -> VolumeError {
        VolumeError::Store(e.into())
    }
}

impl Store {
    fn volumes_dir(&self) -> PathBuf {
        self.root().join("volumes")
    }

    /// The directory a volume's files are in, `<root>/volumes/NAME/_data`.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    fn volumes_lock(&self) -> Result<FileLock, StoreError> {
        let dir = self.volumes_dir();
        fs_err::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        FileLock::exclusive(&dir.join("volumes.lock"))
    }

    /// Makes volume `name` unless it exists (`None`: an anonymous volume, with a random
    /// 64-hex name); returns its name and whether it was made now.
    pub fn create_volume(&self, name: Option<&str>) -> Result<(String, bool), VolumeError> {
        let name = match name {
            Some(n) if !valid_name(n) || n.len() < 2 => {
                return Err(VolumeError::InvalidName(n.to_owned()));
            }
            Some(n) => n.to_owned(),
            None => hex::encode(random_bytes::<32>()?),
        };
        let _lock = self.volumes_lock()?;
        let dir = self.volumes_dir();
        let path = dir.join(&name);
        if path.is_dir() {
            return Ok((name, false));
        }
        sweep_leftovers(&dir)?;
        let tmp = dir.join(format!(".new-{name}"));
        let data = tmp.join("_data");
        fs_err::create_dir_all(&data).map_err(StoreError::io("create", &data))?;
        fs_err::rename(&tmp, &path).map_err(StoreError::io("rename into place", &path))?;
        crate::durable::sync_dir(&dir)?;
        Ok((name, true))
    }

    /// The names of every volume, sorted.
    pub fn volumes(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.volumes_dir();
        let mut names = entry_names(&dir)?;
        names.retain(|name| !name.starts_with('.') && dir.join(name).is_dir());
        names.sort();
        Ok(names)
    }

    /// The full IDs of the containers whose mounts name volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut users = Vec::new();
        for c in self.container_configs()? {
            if c.mounts
                .iter()
                .any(|m| m.kind == MountKind::Volume && m.name == name)
            {
                users.push(c.id);
            }
        }
        Ok(users)
    }

    /// Deletes volume `name` and its files; refused while a container names it.
    pub fn remove_volume(&self, name: &str) -> Result<(), VolumeError> {
        let _lock = self.volumes_lock()?;
        let dir = self.volumes_dir();
        let path = dir.join(name);
        if name.starts_with('.') || name.contains('/') || !path.is_dir() {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let containers = self.volume_users(name)?;
        if !containers.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                containers,
            });
        }
        let doomed = dir.join(format!(".removing-{name}"));
        fs_err::rename(&path, &doomed).map_err(StoreError::io("remove", &path))?;
        crate::durable::sync_dir(&dir)?;
        fs_err::remove_dir_all(&doomed).map_err(StoreError::io("remove", &doomed))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_made_once_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.create_volume(Some("data")).unwrap(),
            ("data".into(), true)
        );
        fs_err::write(store.volume_data("data").join("f"), "x").unwrap();
        assert_eq!(
            store.create_volume(Some("data")).unwrap(),
            ("data".into(), false)
        );
        let (anon, _) = store.create_volume(None).unwrap();
        assert_eq!(anon.len(), 64);
        let mut want = vec!["data".to_owned(), anon.clone()];
        want.sort();
        assert_eq!(store.volumes().unwrap(), want);
        assert_eq!(
            fs_err::read_to_string(store.volume_data("data").join("f")).unwrap(),
            "x"
        );
        store.remove_volume("data").unwrap();
        assert!(matches!(
            store.remove_volume("data"),
            Err(VolumeError::NotFound(_))
        ));
        assert!(matches!(
            store.create_volume(Some("a/b")),
            Err(VolumeError::InvalidName(_))
        ));
        assert!(matches!(
            store.remove_volume(".."),
            Err(VolumeError::NotFound(_))
        ));
    }
}
