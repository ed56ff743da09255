//! Image references with Docker's normalisation: `busybox` is `docker.io/library/busybox:latest`,
//! `localhost:5000/a/b:t` keeps its registry, `name@sha256:…` pins a manifest digest. The store
//! keys tags by the full form and shows the familiar one (`busybox:latest`), like docker.

use crate::error::StoreError;
use regex::Regex;
use std::fmt;
use std::sync::LazyLock;

/// Docker's reference grammar (`distribution/reference`: domain, path components, tag,
/// digest), one capture group each for the name, the tag and the digest.
///
/// We match it here instead of calling oci-spec's `Reference::from_str`, which uses the same
/// grammar but writes the tag as `[\w][\w.-]{0,127}` with Unicode `\w`: compiling that regex
/// costs ~40 ms of CPU on first use, which was 85% of a fully cached `strata build`. Go's `\w`
/// is ASCII, so the ASCII class below is also Docker's exact tag alphabet (oci-spec accepts
/// `busybox:é`, docker does not).
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let pattern = format!(
        r"^((?:{domain_component}(?:\.{domain_component})*(?::[0-9]+)?/)?{component}(?:/{component})*)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}}))?$"
    );
    Regex::new(&pattern).expect("the reference grammar is a valid regex")
});

/// Docker's limit on the repository path.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

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
        let invalid = || StoreError::InvalidReference(input.to_owned());
        let caps = REFERENCE.captures(input).ok_or_else(invalid)?;
        let name = caps.get(1).map_or("", |m| m.as_str());
        let tag = caps.get(2).map(|m| m.as_str().to_owned());
        let digest = caps.get(3).map(|m| m.as_str().to_owned());
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid());
        }
        if let Some(d) = &digest {
            let (algorithm, hex) = d.split_once(':').ok_or_else(invalid)?;
            let expected = match algorithm {
                "sha256" => 64,
                "sha384" => 96,
                "sha512" => 128,
                _ => return Err(invalid()),
            };
            if hex.len() != expected {
                return Err(invalid());
            }
        }
        use oci_spec::distribution::Reference as Oci;
        Ok(Reference(match (tag, digest) {
            (Some(tag), Some(digest)) => {
                Oci::with_tag_and_digest(registry, repository, tag, digest)
            }
            (None, Some(digest)) => Oci::with_digest(registry, repository, digest),
            (tag, None) => {
                Oci::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
            }
        }))
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

/// Splits a validated name into registry and repository the way docker does: the first
/// component is a registry only if it has a `.` or a `:` or is `localhost`; Docker Hub names
/// of one component live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    };
    if registry == "index.docker.io" {
        registry = "docker.io".to_owned();
    }
    if registry == "docker.io" && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    (registry, repository)
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

    #[test]
    fn tags_are_ascii_like_docker() {
        // Go's `\w` is ASCII: docker refuses these tags (oci-spec's parser would take them).
        for bad in ["busybox:é", "busybox:tag\u{00b5}", "a/b:\u{0660}"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("busybox:{}", "t".repeat(128));
        assert_eq!(
            Reference::parse(&long).unwrap().tag().map(str::len),
            Some(128)
        );
        assert!(Reference::parse(&format!("busybox:{}", "t".repeat(129))).is_err());
        let r = Reference::parse("index.docker.io/busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    /// Our grammar and oci-spec's agree on every ASCII input (the two differ only in what `\w`
    /// means), so replacing its parser changed nothing but the start-up cost.
    #[test]
    fn agrees_with_oci_spec_on_ascii_references() {
        let sha256 = format!("sha256:{}", "f".repeat(64));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let mut inputs: Vec<String> = [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "docker.io/busybox",
            "index.docker.io/foo/bar:t",
            "foo/bar:t",
            "localhost:5000/a/b:t",
            "localhost/x",
            "quay.io/a/b/c",
            "test.com:tag",
            "test.com:5000",
            "test:5000/repo",
            "lowercase:Uppercase",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "xn--n3h.com/myimage:x",
            "foo_bar.com:8080",
            "a__b",
            "a___b",
            "a--------b",
            "a.b_c-d/e",
            "a:",
            "a:-x",
            "a:.x",
            "a:_x",
            "-a",
            "a-",
            "a..b",
            "a/",
            "/a",
            "a//b",
            "a:b:c",
            "1.2.3.4:5/x:y",
            "[::1]:5000/x",
            "host:port/x",
            "x@sha256:1",
            "x@md5:0123456789abcdef0123456789abcdef",
            "a b",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for d in [&sha256, &sha512] {
            inputs.push(format!("busybox@{d}"));
            inputs.push(format!("localhost:5000/a:t@{d}"));
        }
        inputs.push(format!("x@sha256:{}", "f".repeat(63)));
        inputs.push(format!("x/{}", "a".repeat(260)));
        for input in &inputs {
            let ours = Reference::parse(input).ok().map(|r| r.0);
            // (No input has upper case before its tag: we refuse that before either grammar.)
            let theirs = input.parse::<oci_spec::distribution::Reference>().ok();
            assert_eq!(ours, theirs, "{input:?}");
        }
    }

    proptest::proptest! {
        /// The same agreement on random strings over the reference alphabet (lower case: upper
        /// case before the tag is refused before either grammar runs).
        #[test]
        fn agrees_with_oci_spec_on_random_strings(input in "[a-z0-9._:/@+-]{0,24}") {
            let ours = Reference::parse(&input).ok().map(|r| r.0);
            let theirs = input.parse::<oci_spec::distribution::Reference>().ok();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
