//! Image references with Docker's normalisation: `busybox` is `docker.io/library/busybox:latest`,
//! `localhost:5000/a/b:t` keeps its registry, `name@sha256:…` pins a manifest digest. The store
//! keys tags by the full form and shows the familiar one (`busybox:latest`), like docker.

use crate::error::StoreError;
use std::fmt;

/// A parsed, normalised image reference.
///
/// ```
/// use strata_store::Reference;
/// let r = Reference::parse("busybox")?;
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// assert_eq!(r.familiar_name(), "busybox");
/// let r = Reference::parse("localhost:5000/a/b:t")?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "a/b", Some("t")));
/// assert!(Reference::parse("Not/Valid").is_err());
/// # Ok::<(), strata_store::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference(oci_spec::distribution::Reference);

impl Reference {
    /// Parses and normalises `input` (a missing tag becomes `latest` unless a digest is given).
    pub fn parse(input: &str) -> Result<Reference, StoreError> {
        // oci-spec accepts a few things docker does not: upper case anywhere but the tag, and
        // surrounding space. Check those first.
        let name_part = input.split_once('@').map_or(input, |(n, _)| n);
        let repo_part = match name_part.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => name_part,
        };
        if input.trim() != input || repo_part.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(StoreError::InvalidReference(input.to_owned()));
        }
        input
            .parse::<oci_spec::distribution::Reference>()
            .map(Reference)
            .map_err(|_| StoreError::InvalidReference(input.to_owned()))
    }

    /// Like [`Reference::parse`] but refuses a digest: what `tag`, `import` and builds need.
    pub fn parse_tag(input: &str) -> Result<Reference, StoreError> {
        let r = Reference::parse(input)?;
        if r.digest().is_some() {
            return Err(StoreError::DigestReference(input.to_owned()));
        }
        Ok(r)
    }

    /// The registry host (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository path in the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The manifest digest it pins, if any.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository` (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The repository as docker shows it (`busybox`, `foo/bar`, `localhost:5000/a/b`).
    pub fn familiar_name(&self) -> String {
        if self.registry() == "docker.io" {
            match self.repository().strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository().to_owned(),
            }
        } else {
            self.name()
        }
    }

    /// The reference as docker shows it (`busybox:latest`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(tag) = self.tag() {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = self.digest() {
            s.push('@');
            s.push_str(digest);
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        for (input, full, familiar) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("foo/bar:t", "docker.io/foo/bar:t", "foo/bar:t"),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "quay.io/a/b/c",
                "quay.io/a/b/c:latest",
                "quay.io/a/b/c:latest",
            ),
            (
                "conf-base:latest",
                "docker.io/library/conf-base:latest",
                "conf-base:latest",
            ),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(
                (r.to_string().as_str(), r.familiar().as_str()),
                (full, familiar)
            );
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        assert_eq!(r.tag(), None);
        assert!(Reference::parse_tag(&format!("busybox@{d}")).is_err());
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "UPPER",
            "a/B:t",
            " x",
            "x ",
            "a:b:c",
            "-x",
            "x@sha256:1",
            "a//b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
