//! The registry client: the OCI distribution spec 1.1 and Docker registry v2, for `pull`,
//! `push` and `login`. It reads OCI and Docker schema 2 manifests, OCI indexes and Docker
//! manifest lists (picking a platform), streams blobs into the store verified by digest, and
//! authenticates anonymously, with basic credentials or with bearer tokens from the
//! `WWW-Authenticate` challenge, using docker's config file for credentials. It never prints
//! and never reads the environment: progress goes to a callback, paths come from the caller.
//!
//! Why a client of our own on `ureq` rather than `oci-client`: the store is synchronous and
//! streams every blob through its [`crate::BlobWriter`] (temp file, hash, fsync, rename) under
//! a lease, which `oci-client`'s async `pull_blob(impl AsyncWrite)` would force through a
//! runtime and a sync bridge in a leaf crate that has no tokio; `oci-client` also brings reqwest
//! and hyper (a second HTTP stack next to the `ureq` the worker already uses for `ADD`), does
//! not read docker's config file, and has its own platform resolver and manifest types where
//! the store already has `oci-spec`'s. What we write ourselves is small: the requests of the
//! distribution spec (`client.rs`, `transfer.rs`), the challenge parser (`auth.rs`), and the
//! index walk (`manifest.rs`). `oci-spec` supplies the manifest and tag-list types.
//!
//! Start at [`RegistryClient::new`], then [`RegistryClient::pull`] or [`RegistryClient::push`]:
//!
//! ```no_run
//! use strata_store::{Platform, Reference, RegistryClient, RegistryOptions, Store};
//!
//! let store = Store::open("/var/lib/strata")?;
//! let client = RegistryClient::new(RegistryOptions {
//!     docker_config: Some("/root/.docker/config.json".into()),
//!     ..RegistryOptions::default()
//! })?;
//! let reference = Reference::parse("localhost:5000/app:1")?;
//! let pulled = client.pull(&store, &reference, Some(&Platform::host()), &|event| {
//!     eprintln!("{}: {:?}", &event.layer.hex()[..12], event.status);
//! })?;
//! println!("Digest: {}", pulled.digest);
//! let pushed = client.push(&store, &Reference::parse("localhost:5000/copy:1")?, &|_| {})?;
//! println!("{}: digest: {} size: {}", pushed.tag, pushed.digest, pushed.size);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod artifact;
mod auth;
mod catalog;
mod client;
mod credentials;
mod endpoint;
mod error;
#[cfg(test)]
mod fake;
mod helper;
mod manifest;
mod pull;
mod push;
mod tls;
mod transfer;

pub use catalog::RawManifest;
pub use client::{RegistryClient, RegistryOptions};
pub use credentials::{Credentials, remove_credentials, save_credentials};
pub use error::RegistryError;
pub use pull::Pulled;
pub use push::Pushed;
pub use transfer::{LayerEvent, LayerStatus, Progress};

use client::Request;

impl RegistryClient {
    /// Checks that `registry` accepts the client's credentials (`GET /v2/`), as `docker login`
    /// does before saving them.
    pub fn login(&self, registry: &str) -> Result<(), RegistryError> {
        let req = Request::new("GET", registry, String::new(), "/v2/".to_owned());
        let response = self.send(&req)?;
        self.check(&req, response, registry, "log in to")?;
        Ok(())
    }
}

/// The registry host a `login`/`logout` argument names (`https://HOST/v1/` → `HOST`); Docker
/// Hub when none is given.
pub fn login_server(server: Option<&str>) -> Result<String, RegistryError> {
    let Some(server) = server else {
        return Ok("docker.io".to_owned());
    };
    let host = credentials::host_of(server);
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if valid {
        Ok(host)
    } else {
        Err(RegistryError::InvalidServer(server.to_owned()))
    }
}
