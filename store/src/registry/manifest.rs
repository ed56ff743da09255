//! Manifests from a registry: what we ask for (`Accept`), what we accept, and how an index
//! (OCI image index, Docker manifest list) becomes one image manifest for a platform. Schema 1
//! manifests are refused by name. Every document is bounded (4 MiB) and checked against the
//! digest it was asked by or announced with (`Docker-Content-Digest`).

use crate::blob::MAX_DOCUMENT;
use crate::digest::Digest;
use crate::media_type::{self, OCI_MANIFEST};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::client::{RegistryClient, Request};
use crate::registry::error::RegistryError;
use serde_json::Value;
use std::io::Read;

/// Every manifest type we read, in the order we prefer them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) json: Value,
}

impl Fetched {
    pub(crate) fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type) || self.json.get("manifests").is_some()
    }
}

/// The platform an index entry says it is for (normalised: `aarch64` is `arm64`).
fn platform_of(desc: &Value) -> Option<Platform> {
    let p = desc.get("platform")?;
    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(Platform::new(
        field("os"),
        field("architecture"),
        field("variant"),
    ))
}

/// Picks the descriptor of `index` that suits `wanted` best, in containerd's order (an arm64
/// machine takes `arm64/v8`, then `arm/v8` … `arm/v5`). Attestation manifests
/// (`unknown/unknown`) never match.
pub(crate) fn select<'a>(
    index: &'a Value,
    wanted: &Platform,
    reference: &str,
) -> Result<&'a Value, RegistryError> {
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    wanted.best(manifests, platform_of).ok_or_else(|| {
        let available: Vec<String> = manifests
            .iter()
            .filter_map(platform_of)
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        RegistryError::NoPlatform {
            reference: reference.to_owned(),
            platform: wanted.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        }
    })
}

/// The `digest` and `mediaType` of an index entry.
pub(crate) fn descriptor_digest(
    desc: &Value,
    what: &str,
    registry: &str,
) -> Result<Digest, RegistryError> {
    desc.get("digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or_else(|| RegistryError::InvalidDocument {
            what: what.to_owned(),
            registry: registry.to_owned(),
            reason: "an entry has no valid sha256 digest".into(),
        })
}

impl RegistryClient {
    /// `GET /v2/NAME/manifests/REF` (a tag or a digest), bounded and verified: by `digest` when
    /// one is given, else against the registry's `Docker-Content-Digest` if it sent one.
    pub(crate) fn fetch_manifest(
        &self,
        reference: &Reference,
        by: &str,
        scope: &str,
    ) -> Result<Fetched, RegistryError> {
        let registry = reference.registry();
        let shown = reference.familiar();
        let mut req = Request::new(
            "GET",
            registry,
            scope.to_owned(),
            format!("/v2/{}/manifests/{by}", reference.repository()),
        );
        req.headers.push(("Accept", ACCEPT.to_owned()));
        let mut response =
            self.send_checked(&req, &shown, "pull", || RegistryError::ManifestNotFound {
                reference: shown.clone(),
                registry: registry.to_owned(),
            })?;
        let invalid = |reason: String| RegistryError::InvalidDocument {
            what: format!("manifest for {shown}"),
            registry: registry.to_owned(),
            reason,
        };
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let header_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("reading it failed: {e}")))?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(invalid(format!("over the {MAX_DOCUMENT}-byte limit")));
        }
        let digest = Digest::of(&bytes);
        let expected = by.parse::<Digest>().ok().or(announced);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::ManifestDigest {
                reference: shown,
                expected,
                actual: digest,
            });
        }
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let media_type = json
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(header_type)
            .unwrap_or_default();
        let schema_version = json.get("schemaVersion").and_then(Value::as_u64);
        if schema_version == Some(1) || media_type.contains("distribution.manifest.v1") {
            return Err(RegistryError::Schema1 {
                reference: shown,
                media_type: if media_type.is_empty() {
                    "schemaVersion 1".into()
                } else {
                    media_type
                },
            });
        }
        let fetched = Fetched {
            bytes,
            digest,
            media_type,
            json,
        };
        // An index and a manifest at once: which one it is would depend on who reads it
        // (CVE-2021-41190); refused whatever its media type says.
        if fetched.json.get("manifests").is_some()
            && (fetched.json.get("layers").is_some() || fetched.json.get("config").is_some())
        {
            return Err(invalid(
                "has both `manifests` and `layers` or `config`: an ambiguous document".into(),
            ));
        }
        if !fetched.is_index() && !media_type::is_manifest(&fetched.media_type) {
            if fetched.json.get("layers").is_some() && fetched.json.get("config").is_some() {
                // An OCI manifest may omit its mediaType; the registry's Content-Type may be
                // generic then.
                return Ok(Fetched {
                    media_type: OCI_MANIFEST.into(),
                    ..fetched
                });
            }
            return Err(invalid(format!(
                "unsupported media type {:?}",
                crate::untrusted::shorten(&fetched.media_type)
            )));
        }
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Value {
        serde_json::json!({
            "manifests": [
                {"digest": "sha256:aa", "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": "sha256:cc", "platform": {"os": "unknown", "architecture": "unknown"}},
                {"digest": "sha256:dd", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            ]
        })
    }

    fn pick(platform: &str) -> Result<String, String> {
        let wanted = Platform::parse(platform, &Platform::linux_amd64()).unwrap();
        select(&index(), &wanted, "img:1")
            .map(|d| d["digest"].as_str().unwrap().to_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn picks_the_platform_asked_for_as_containerd_does() {
        assert_eq!(pick("linux/amd64").unwrap(), "sha256:aa");
        assert_eq!(pick("linux/arm64").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/aarch64").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm/v7").unwrap(), "sha256:dd");
        // An armv8 32-bit machine runs the v7 image.
        assert_eq!(pick("linux/arm/v8").unwrap(), "sha256:dd");
    }

    #[test]
    fn a_missing_platform_lists_what_there_is() {
        assert_eq!(
            pick("linux/s390x").unwrap_err(),
            "img:1 has no image for linux/s390x (it has: linux/amd64, linux/arm64, linux/arm/v7)"
        );
    }
}
