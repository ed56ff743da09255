//! Manifests from a registry: what we ask for (`Accept`), what we accept, and how an index
//! (OCI image index, Docker manifest list) becomes one image manifest for a platform. Schema 1
//! manifests are refused by name. Every document is bounded (4 MiB) and checked against the
//! digest it was asked by or announced with (`Docker-Content-Digest`).

use crate::blob::MAX_DOCUMENT;
use crate::digest::Digest;
use crate::image::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
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
        self.media_type == OCI_INDEX
            || self.media_type == DOCKER_MANIFEST_LIST
            || (self.json.get("manifests").is_some() && self.json.get("layers").is_none())
    }
}

/// The platform an index entry is for, or that a user asked for: `os/arch[/variant]`.
///
/// Only exact matching for now (an empty wanted variant matches any); containerd's
/// normalisation and compatibility order come with `store::Platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v8`, or empty.
    pub variant: String,
}

impl PlatformSpec {
    /// This machine: `linux/<host architecture>`.
    pub fn host() -> PlatformSpec {
        PlatformSpec {
            os: "linux".into(),
            architecture: crate::import::host_architecture().into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Option<PlatformSpec> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !parts.iter().all(valid) {
            return None;
        }
        let lower = |s: &str| s.to_ascii_lowercase();
        match parts.as_slice() {
            [os, arch] => Some(PlatformSpec {
                os: lower(os),
                architecture: lower(arch),
                variant: String::new(),
            }),
            [os, arch, variant] => Some(PlatformSpec {
                os: lower(os),
                architecture: lower(arch),
                variant: lower(variant),
            }),
            _ => None,
        }
    }

    fn of_descriptor(desc: &Value) -> Option<PlatformSpec> {
        let p = desc.get("platform")?;
        let field = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Some(PlatformSpec {
            os: field("os"),
            architecture: field("architecture"),
            variant: field("variant"),
        })
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Picks the descriptor of `index` for `wanted`: same os and architecture, and the variant if
/// one was asked for. Attestation manifests (`unknown/unknown`) never match.
pub(crate) fn select<'a>(
    index: &'a Value,
    wanted: &PlatformSpec,
    reference: &str,
) -> Result<&'a Value, RegistryError> {
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let matching = |d: &&Value| {
        PlatformSpec::of_descriptor(d).is_some_and(|p| {
            p.os == wanted.os
                && p.architecture == wanted.architecture
                && (wanted.variant.is_empty() || p.variant == wanted.variant)
        })
    };
    manifests.iter().find(matching).ok_or_else(|| {
        let available: Vec<String> = manifests
            .iter()
            .filter_map(PlatformSpec::of_descriptor)
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
        let response = self.send(&req)?;
        if response.status() == 404 {
            return Err(RegistryError::ManifestNotFound {
                reference: shown,
                registry: registry.to_owned(),
            });
        }
        let mut response = self.check(&req, response, &shown, "pull")?;
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
        let known = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ];
        if !fetched.is_index() && !known.contains(&fetched.media_type.as_str()) {
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
                crate::error::shorten(&fetched.media_type)
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
            ]
        })
    }

    #[test]
    fn picks_the_platform_asked_for() {
        let index = index();
        let amd64 = PlatformSpec::parse("linux/amd64").unwrap();
        assert_eq!(select(&index, &amd64, "x").unwrap()["digest"], "sha256:aa");
        let arm64 = PlatformSpec::parse("linux/arm64").unwrap();
        assert_eq!(select(&index, &arm64, "x").unwrap()["digest"], "sha256:bb");
        let v8 = PlatformSpec::parse("linux/arm64/v8").unwrap();
        assert_eq!(select(&index, &v8, "x").unwrap()["digest"], "sha256:bb");
    }

    #[test]
    fn a_missing_platform_lists_what_there_is() {
        let s390x = PlatformSpec::parse("linux/s390x").unwrap();
        let err = select(&index(), &s390x, "img:1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "img:1 has no image for linux/s390x (it has: linux/amd64, linux/arm64/v8)"
        );
    }

    #[test]
    fn platform_syntax() {
        assert_eq!(
            PlatformSpec::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            PlatformSpec::parse("Linux/AMD64").unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["", "linux", "linux/", "a/b/c/d", "linux/../x"] {
            assert!(PlatformSpec::parse(bad).is_none(), "{bad:?}");
        }
    }
}
