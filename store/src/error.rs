//! The one error type of the store. Each variant names what was being done and on what (the
//! path, the digest, the image); the cause, if any, is its `source`.

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;
use std::path::PathBuf;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done (`write blob`, `lock`, ...).
        action: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a stream (a tarball, a layer, stdin) failed.
    #[error("failed to {action}")]
    Stream {
        /// What was being read or written.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A digest string is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Content does not hash to the digest it claims.
    #[error("{what} should have digest {expected} but has {actual}")]
    DigestMismatch {
        /// What was checked (`blob`, `layer blobs/sha256/…`).
        what: String,
        /// The digest it claims.
        expected: Digest,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// Content is not as long as its descriptor says.
    #[error("{what} should be {expected} bytes but is {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size its descriptor gives.
        expected: u64,
        /// Its real size.
        actual: u64,
    },
    /// An uncompressed layer does not hash to the diff ID its config lists.
    #[error(
        "layer {layer}: config says diff ID {expected} but the uncompressed layer has {actual}"
    )]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The diff ID from the image config.
        expected: Digest,
        /// The digest of the uncompressed bytes.
        actual: Digest,
    },
    /// A blob is not in the store.
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    /// No image has this name or ID.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// An image ID prefix matches several images.
    #[error("image ID prefix {prefix} is ambiguous: it matches {count} images")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many images it matches.
        count: usize,
    },
    /// An image reference cannot be parsed, or names a digest where a tag is needed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// `rmi` of an image ID that several references name, without force.
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"
    )]
    ImageInUse {
        /// The short image ID.
        id: String,
    },
    /// `rmi` of an image a container uses, without force.
    #[error(
        "conflict: unable to remove repository reference \"{image}\" (must force) - container {container} is using its referenced image {id}"
    )]
    ImageUsedByContainer {
        /// The image as named.
        image: String,
        /// The short ID of a container using it.
        container: String,
        /// The image's short ID.
        id: String,
    },
    /// A manifest, config or index is not what it should be.
    #[error("invalid {what}: {reason}")]
    InvalidDocument {
        /// Which document (`manifest sha256:…`, `index.json`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document does not parse.
    #[error("invalid {what}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A tarball (layer, image archive, rootfs) is malformed or hostile.
    #[error("invalid {what}: {reason}")]
    InvalidArchive {
        /// Which archive or which member of it.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The store on disk has a layout this version does not know.
    #[error("store {} has layout version {found}, this strata knows {expected}", path.display())]
    Version {
        /// The index file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// No manifest list of that name was created (`strata manifest create`).
    #[error("no such manifest list: {0}")]
    ManifestListNotFound(String),
    /// `manifest create` of a list that exists, without `--amend`.
    #[error("refusing to amend an existing manifest list with no --amend flag: {0}")]
    ManifestListExists(String),
    /// The store cannot be written: a read-only filesystem, or no write permission on its
    /// root (the cause says which). Checked by [`crate::Store::open`] before anything.
    #[error("cannot write to the store at {}", root.display())]
    NotWritable {
        /// The store's root directory.
        root: PathBuf,
        /// `Read-only file system` or `Permission denied`.
        #[source]
        source: std::io::Error,
    },
    /// The store's root belongs to another user than the one strata runs as.
    /// Refused because what strata wrote there would belong to `uid`: as root, files in a
    /// user's store that the user could not remove.
    #[error(
        "the store at {} is owned by uid {owner}, not by uid {uid} that strata runs as",
        root.display()
    )]
    ForeignOwner {
        /// The store's root directory.
        root: PathBuf,
        /// The uid owning it.
        owner: u32,
        /// The real uid of this process.
        uid: u32,
    },
    /// A write on a store opened with [`crate::Store::open_read_only`].
    #[error("the store at {} was opened read-only: cannot {action}", root.display())]
    ReadOnly {
        /// The store's root directory.
        root: PathBuf,
        /// What needed to write.
        action: &'static str,
    },
    /// Unpacking a layer into a snapshot failed.
    #[error("failed to unpack layer {layer}")]
    Unpack {
        /// The layer blob being unpacked.
        layer: Digest,
        /// What went wrong, at which entry.
        #[source]
        source: crate::confined::ExtractError,
    },
}

impl From<crate::durable::DurableError> for StoreError {
    fn from(e: crate::durable::DurableError) -> StoreError {
        StoreError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

impl StoreError {
    /// `map_err(io(action, path))`: an io error naming what failed on which path.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }

    /// `map_err(stream(action))`: an io error on a stream that has no path.
    pub(crate) fn stream(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let action = action.into();
        move |source| StoreError::Stream { action, source }
    }

    pub(crate) fn archive(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidArchive {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn document(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidDocument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> StoreError {
        let what = what.into();
        move |source| StoreError::Json { what, source }
    }
}
