//! The solver: executes a build graph. Owns cache keys (a node's hash plus the content
//! checksum of what it reads), deduplication of equal work, the parallel scheduler with its
//! `--jobs` limit and cancellation, and the progress event stream the CLI
//! renders. Does not print, parse Dockerfiles or touch the store's layout directly.
#![warn(missing_docs)]
