//! What a registry holds, for `strata search` and `strata manifest inspect`: the repository
//! list (`GET /v2/_catalog`, paged with `Link: <…>; rel="next"` as the tag list is) and a
//! manifest or index exactly as the registry serves it.
//!
//! Docker's `search` asks a registry's v1 search API (`GET /v1/search?q=TERM&n=LIMIT`), which
//! Docker Hub serves at `index.docker.io` and which distribution's registry does not have;
//! private registries offer the catalog instead, so strata searches the catalog. Docker Hub
//! has no catalog, and its search API is a service strata does not speak:
//! [`RegistryClient::catalog`] refuses `docker.io` by name instead of pretending.

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::client::RegistryClient;
use crate::registry::error::RegistryError;
use crate::registry::transfer::pull_scope;
use ureq::http::StatusCode;

/// A manifest or an index as the registry served it, for `manifest inspect`.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes, unchanged (their sha256 is [`RawManifest::digest`]).
    pub bytes: Vec<u8>,
    /// The digest of the bytes.
    pub digest: Digest,
    /// The document's media type (its `mediaType`, else the registry's `Content-Type`).
    pub media_type: String,
}

/// The body of `GET /v2/_catalog`.
#[derive(Debug, serde::Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

impl RegistryClient {
    /// Every repository `registry` lists in its catalog (`GET /v2/_catalog`, following the
    /// `Link` pages), sorted. A registry without a catalog (`404`), and Docker Hub, are
    /// [`RegistryError::NoCatalog`].
    pub fn catalog(&self, registry: &str) -> Result<Vec<String>, RegistryError> {
        if registry == "docker.io" {
            return Err(RegistryError::NoCatalog {
                registry: registry.to_owned(),
                hint: "Docker Hub is searched through its own search API (index.docker.io/v1/search), which strata does not support",
            });
        }
        let invalid = |reason: String| RegistryError::InvalidDocument {
            what: "repository catalog".into(),
            registry: registry.to_owned(),
            reason,
        };
        let mut repositories = Vec::new();
        self.list_pages(
            registry,
            "registry:catalog:*",
            "/v2/_catalog?n=100".to_owned(),
            &invalid,
            |req, response| {
                if response.status() == StatusCode::NOT_FOUND {
                    return Err(RegistryError::NoCatalog {
                        registry: registry.to_owned(),
                        hint: "it answered 404 to GET /v2/_catalog",
                    });
                }
                self.check(req, response, registry, "list the repositories of")
            },
            |bytes| {
                let page: Catalog =
                    serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
                repositories.extend(page.repositories);
                Ok(())
            },
        )?;
        repositories.sort();
        repositories.dedup();
        Ok(repositories)
    }

    /// The manifest or index `reference` names (its digest, else its tag, else `latest`),
    /// byte for byte as the registry serves it, checked against its digest.
    pub fn raw_manifest(&self, reference: &Reference) -> Result<RawManifest, RegistryError> {
        let by = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.to_owned(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let fetched = self.fetch_manifest(reference, &by, &pull_scope(reference))?;
        Ok(RawManifest {
            bytes: fetched.bytes,
            digest: fetched.digest,
            media_type: fetched.media_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryOptions;
    use crate::registry::fake::FakeServer;

    #[test]
    fn the_catalog_follows_the_next_links() {
        let server = FakeServer::start(|req, _| {
            let (repos, link) = if req.target.contains("last=b") {
                (r#"["c"]"#, None)
            } else {
                (
                    r#"["b","a"]"#,
                    Some(r#"</v2/_catalog?last=b&n=2>; rel="next""#.to_owned()),
                )
            };
            let body = format!(r#"{{"repositories":{repos}}}"#);
            (
                200,
                link.map(|l| ("Link", l)).into_iter().collect(),
                body.into_bytes(),
            )
        });
        let client = RegistryClient::new(RegistryOptions::default()).unwrap();
        assert_eq!(client.catalog(&server.host()).unwrap(), ["a", "b", "c"]);
        let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
        assert_eq!(targets, ["/v2/_catalog?n=100", "/v2/_catalog?last=b&n=2"]);
    }

    #[test]
    fn a_registry_without_a_catalog_says_so() {
        let server = FakeServer::start(|_, _| (404, vec![], b"404 page not found".to_vec()));
        let client = RegistryClient::new(RegistryOptions::default()).unwrap();
        let err = client.catalog(&server.host()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} offers no repository catalog to search: it answered 404 to GET /v2/_catalog",
                server.host()
            )
        );
        let hub = client.catalog("docker.io").unwrap_err();
        assert!(
            hub.to_string().starts_with(
                "docker.io offers no repository catalog to search: Docker Hub is searched"
            ),
            "{hub}"
        );
    }
}
