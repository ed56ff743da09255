//! The worker: runs one operation. Owns the RUN sandbox (namespaces, overlayfs, pivot_root;
//! all syscalls live in `sys.rs`), COPY/ADD file operations confined to their root, and layer
//! diffs (upper dir → OCI layer tar). Knows nothing of Dockerfiles, cache keys or scheduling.
#![warn(missing_docs)]
