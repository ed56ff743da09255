//! The OCI image store: content-addressed blobs, images and tags, OCI and Docker tarballs,
//! layer compression, and later the registry client. Owns everything under its root; every
//! write is atomic and checked against its digest. Knows nothing of Dockerfiles, the build
//! graph or the terminal.
#![warn(missing_docs)]
