//! What talking to a registry can fail with. Every variant names the reference or the registry
//! it was about, and for refusals what strata tried, so that `strata pull` can say more than
//! "401".

use crate::digest::Digest;
use crate::error::StoreError;
use std::path::PathBuf;

/// Everything the registry client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry refused our credentials, or wants some and we have none (HTTP 401).
    #[error("{registry} refused to let us {action} {reference}: authentication required ({tried})")]
    Unauthorized {
        /// The reference (or repository) asked for.
        reference: String,
        /// The registry host.
        registry: String,
        /// `pull` or `push`.
        action: &'static str,
        /// What was tried: `no credentials`, `the credentials for HOST in PATH`.
        tried: String,
    },
    /// The registry knows who we are and says no (HTTP 403).
    #[error("{registry} denied access to {reference} ({tried})")]
    Denied {
        /// The reference asked for.
        reference: String,
        /// The registry host.
        registry: String,
        /// What was tried.
        tried: String,
    },
    /// The manifest (tag or digest) does not exist (HTTP 404).
    #[error("manifest for {reference} not found on {registry}")]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
        /// The registry host.
        registry: String,
    },
    /// A blob a manifest lists is not in the registry (HTTP 404).
    #[error("blob {digest} of {reference} not found on {registry}")]
    BlobNotFound {
        /// The image.
        reference: String,
        /// The registry host.
        registry: String,
        /// The blob.
        digest: Digest,
    },
    /// Any other answer we cannot use.
    #[error("{registry} answered {status} to {method} {path}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The registry host.
        registry: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path (`/v2/library/busybox/manifests/latest`).
        path: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own error message, shortened, if it sent one.
        detail: Option<String>,
    },
    /// The connection failed (after retries), or a request timed out.
    #[error("failed to reach {registry} ({method} {path})")]
    Transport {
        /// The registry host.
        registry: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry was silent for longer than the timeout (to connect, answer, or send the
    /// next bytes of a document), on the last of the retries.
    #[error("{registry} did not answer {method} {path} within {timeout:?}")]
    Timeout {
        /// The registry host.
        registry: String,
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The timeout ([`crate::RegistryOptions::timeout`]).
        timeout: std::time::Duration,
        /// Which wait ran out.
        #[source]
        source: Box<ureq::Error>,
    },
    /// Reading a blob's bytes from the registry failed midway (after the one retry).
    #[error("failed to download blob {digest} from {registry}")]
    Download {
        /// The registry host.
        registry: String,
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<StoreError>,
    },
    /// The token server did not give us a token.
    #[error("failed to get a token for {scope} from {realm}: {reason}")]
    Token {
        /// The token server URL.
        realm: String,
        /// The scope asked for.
        scope: String,
        /// What went wrong.
        reason: String,
    },
    /// A document from the registry is not what it should be.
    #[error("invalid {what} from {registry}: {reason}")]
    InvalidDocument {
        /// Which document (`manifest for busybox:latest`).
        what: String,
        /// The registry host.
        registry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image is in the old schema 1 format, which strata does not read.
    #[error(
        "{reference} is a schema 1 manifest ({media_type}), which strata does not support: push it again with a current docker or skopeo"
    )]
    Schema1 {
        /// The reference.
        reference: String,
        /// The manifest's media type.
        media_type: String,
    },
    /// The index has no image for the platform asked for.
    #[error("{reference} has no image for {platform} (it has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists, comma-separated.
        available: String,
    },
    /// The image (not an index) is for another platform than the one asked for.
    #[error(
        "image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )]
    PlatformMismatch {
        /// The reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The image's.
        actual: String,
    },
    /// A manifest digest does not match what the reference or the registry said.
    #[error("manifest of {reference} should have digest {expected} but has {actual}")]
    ManifestDigest {
        /// The reference.
        reference: String,
        /// The digest asked for or announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A docker credential helper failed to store or erase credentials.
    #[error("{helper} failed to {action} the credentials: {reason}")]
    Helper {
        /// The helper program (`docker-credential-pass`).
        helper: String,
        /// `store` or `erase`.
        action: &'static str,
        /// What it said.
        reason: String,
    },
    /// A CA bundle, a certs.d certificate or key cannot be read.
    #[error("failed to set up TLS for {registry} from {}: {reason}", path.display())]
    Tls {
        /// The registry.
        registry: String,
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The registry lists no repositories to search: no `/v2/_catalog`, or Docker Hub.
    #[error("{registry} offers no repository catalog to search: {hint}")]
    NoCatalog {
        /// The registry host.
        registry: String,
        /// Why, and what docker would have done.
        hint: &'static str,
    },
    /// A registry given as a login server is not a host name.
    #[error("invalid registry address {0:?}")]
    InvalidServer(String),
    /// The docker config file (`~/.docker/config.json`) cannot be read or written.
    #[error("failed to {action} the docker config {}", path.display())]
    Config {
        /// `read`, `parse`, `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An `insecure-registries` or `registry-mirrors` entry is not valid.
    #[error("invalid {option} entry {value:?}: {reason}")]
    InvalidOption {
        /// `insecure-registries` or `registry-mirrors`.
        option: &'static str,
        /// The entry.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry answers plain HTTP, and it is neither on this machine nor listed as
    /// insecure.
    #[error(
        "{registry} speaks plain HTTP, not HTTPS: strata uses plain HTTP only for registries on this machine and those listed in insecure-registries"
    )]
    PlainHttp {
        /// The registry host.
        registry: String,
    },
    /// Every mirror of Docker Hub failed (connection error, 404, 5xx), and so did Docker Hub.
    #[error("the mirrors failed ({tried}), then the origin {origin} failed")]
    Mirrors {
        /// `MIRROR: what it answered`, for each mirror, joined by `; `.
        tried: String,
        /// `docker.io`.
        origin: String,
        /// The origin's failure.
        #[source]
        source: Box<RegistryError>,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        RegistryError::Store(Box::new(e))
    }
}
