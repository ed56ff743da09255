//! The OCI image store: content-addressed blobs, images and tags, layer compression, snapshots
//! for the worker, OCI and Docker tarballs (save, load, import), and later the registry client.
//! Owns everything it creates under its root (layout in `docs/store.md`); every write is atomic
//! and checked against its digest, and several processes may use one root at once. Knows
//! nothing of Dockerfiles, the build graph or the terminal. Start at [`Store::open`].
#![warn(missing_docs)]

mod blob;
mod check;
mod compression;
mod digest;
mod durable;
mod error;
mod gc;
mod image;
mod import;
mod index;
mod layer;
mod load;
mod lock;
mod reference;
mod root_dir;
mod save;
mod snapshot;
mod staging;
mod store;
mod unpack;

pub use blob::{BlobInfo, BlobWriter};
pub use check::CheckReport;
pub use compression::Compression;
pub use digest::{Digest, DigestError, chain_id, chain_ids};
pub use error::StoreError;
pub use gc::{DiskUsage, PruneReport};
pub use image::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, History, Image, ImageConfigFile,
    ImageSummary, NewImage, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Removed, RootFs,
};
pub use import::{ImportOptions, host_architecture};
pub use layer::{LayerDescriptor, LayerWriter};
pub use load::LoadedImage;
pub use lock::Lease;
pub use reference::Reference;
pub use save::SaveOptions;
pub use snapshot::Snapshot;
pub use store::Store;
