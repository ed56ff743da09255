//! The OCI image store: content-addressed blobs, images and tags, layer compression, snapshots
//! for the worker, OCI and Docker tarballs (save, load, import), and the registry client (pull,
//! push, login). Owns everything it creates under its root (layout in `docs/STORE.md`); every
//! write is atomic and checked against its digest, and several processes may use one root at
//! once. Knows nothing of Dockerfiles, the build graph or the terminal. Start at
//! [`Store::open`].
//!
//! A blob is stored whole or pieced (ranges of whole blobs and bytes of its own: an
//! incremental COPY's layer, made by [`LayerWriter`] from what [`SpliceWrite::write_from`]
//! hands it); only the store knows which: every reader gets its bytes through
//! [`Store::open_blob`] ([`BlobReader`]).
//!
//! It also owns the one confined filesystem, [`confined`]: a directory nothing can escape
//! ([`ConfinedRoot`]) and the one extractor of untrusted tars, which the worker and the cache
//! use for every path from a Dockerfile, a context, a layer or an archive.
//!
//! How the rest of strata uses it:
//!
//! ```no_run
//! use std::io::Write;
//! use strata_store::{Compression, NewImage, Reference, Store, chain_id};
//!
//! let store = Store::open("/var/lib/strata")?;
//! let lease = store.lease()?; // no garbage collection until the image is committed
//!
//! // FROM busybox: the base image, its layers unpacked as overlayfs lowerdirs (bottom first).
//! let base = store.image("busybox")?;
//! let lower = store.snapshots(&base)?;
//!
//! // RUN: the worker mounts overlay(lower, upper) and runs the command; `upper` lives on the
//! // store's filesystem so it can become a snapshot by rename.
//! let upper = store.new_snapshot_dir()?;
//! // ... run the step, then stream the diff (overlay whiteouts → .wh. entries) as a tar:
//! let mut layer = store.layer_writer(Compression::Gzip)?;
//! layer.write_all(b"...tar bytes...")?;
//! let layer = layer.finish()?; // {media_type, digest, size, diff_id}
//! let parent = lower.last().map(|s| s.chain_id.clone());
//! let snapshot = store.adopt_snapshot(parent.as_ref(), &layer.diff_id, &upper)?;
//! assert_eq!(snapshot.chain_id, chain_id(parent.as_ref(), &layer.diff_id));
//!
//! // The image: base layers + ours, a config the solver built (Docker field names).
//! let mut config = base.config.clone();
//! config.history.push(serde_json::from_value(serde_json::json!({
//!     "created_by": "RUN /bin/sh -c make # buildkit", "comment": "buildkit.dockerfile.v0"
//! }))?);
//! let mut layers = base.layers.clone();
//! layers.push(layer);
//! let id = store.commit_image(NewImage { config, layers, tags: vec![Reference::parse("app:1")?] })?;
//! drop(lease);
//! println!("{}", id.short());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod access;
mod blob;
mod check;
mod compression;
pub mod confined;
mod container;
mod digest;
pub mod durable;
mod error;
mod gc;
mod gzip;
mod image;
mod import;
mod index;
mod layer;
mod load;
mod lock;
mod manifest_list;
pub mod media_type;
mod pieces;
mod pin;
mod platform;
mod progress;
mod reference;
mod registry;
mod save;
mod settle;
mod snapshot;
mod staging;
mod store;
pub mod untrusted;
mod volume;

pub use blob::{BlobInfo, BlobWriter};
pub use check::CheckReport;
pub use compression::Compression;
pub use confined::ConfinedRoot;
pub use container::{
    Container, ContainerConfig, ContainerError, ContainerState, ContainerStatus, ContainerStdio,
    Health, HealthProbe, LogLine, MonitorLock, NEVER, NetworkState, NewContainer, PortBinding,
};
pub use digest::{Digest, DigestError, HashingWriter, chain_id, chain_ids};
pub use error::StoreError;
pub use gc::{DiskUsage, GcReport, PruneReport, filesystem_size};
pub use image::{
    CommittedImage, History, Image, ImageConfigFile, ImageSummary, NewImage, Removed, RootFs,
};
pub use import::ImportOptions;
pub use layer::{LayerDescriptor, LayerWriter};
pub use load::LoadedImage;
pub use lock::Lease;
pub use manifest_list::{ListEntry, ManifestList};
pub use pieces::{BlobReader, SpliceWrite};
pub use platform::{Platform, PlatformError};
pub use reference::{NAME_TOTAL_LENGTH_MAX, Reference, ReferenceError};
pub use registry::{
    Credentials, LayerEvent, LayerStatus, Progress, Pulled, Pushed, RawManifest, RegistryClient,
    RegistryError, RegistryOptions, login_server, remove_credentials, save_credentials,
};
pub use save::SaveOptions;
pub use snapshot::Snapshot;
pub use snapshot::tree_size;
pub use store::Store;
pub use volume::{MountKind, MountPoint, VolumeError};
