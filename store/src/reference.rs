//! Image references, the one parser every crate uses (`FROM`, `-t`, `tag`, `images`, `load`):
//! docker's grammar (`distribution/reference`) and normalisation (`ParseNormalizedNamed` +
//! `TagNameOnly`): `busybox` is `docker.io/library/busybox:latest`, `localhost:5000/a/b:t`
//! keeps its registry, `name@sha256:…` pins a manifest digest. Errors carry docker's words, so
//! `FROM Alpine` fails as docker fails. The store keys tags by the full form and shows the
//! familiar one (`busybox:latest`), like docker.

use std::fmt;
use std::str::FromStr;

/// Splits `input` along docker's reference grammar (`distribution/reference`'s
/// `ReferenceRegexp`): the name (domain, path components), the tag and the digest, or `None`
/// when it does not match. The tests hold it to that grammar written as one regex.
///
/// Written out rather than matched with that regex: compiling it cost ~0.3 ms of every
/// process that parses a name, 3% of a no-op `strata build` (bench/build/README.md). (We
/// never used oci-spec's `Reference::from_str`, whose Unicode `\w` regex took ~40 ms to
/// compile and accepts `busybox:é`, which docker does not: Go's `\w` is ASCII.)
fn split_reference(input: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    // Neither a name nor a tag holds `@`, and a digest holds none: the first one starts it.
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (input, None),
    };
    if digest.is_some_and(|d| !is_digest(d)) {
        return None;
    }
    // A tag holds neither `:` nor `/`; a name's one `:` (a port) is followed by a `/`.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) {
        return None;
    }
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or("");
    // The first of several parts may be a domain; every other part is a path component.
    let has_path = name.contains('/');
    if !(is_component(first) || (has_path && is_domain(first))) {
        return None;
    }
    parts.all(is_component).then_some((name, tag, digest))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: lowercase alphanumerics, joined by one `.`,
/// one or two `_`, or any number of `-`.
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = b[i..].iter().take_while(|&&c| alnum(c)).count();
        if run == 0 {
            return false;
        }
        i += run;
        let sep = match b.get(i) {
            None => return true,
            Some(b'.') => 1,
            Some(b'_') if b.get(i + 1) == Some(&b'_') => 2,
            Some(b'_') => 1,
            Some(b'-') => b[i..].iter().take_while(|&&c| c == b'-').count(),
            Some(_) => return false,
        };
        i += sep;
    }
}

/// `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.…)*(?::[0-9]+)?`: dot-separated
/// host labels (alphanumerics, inner `-`), then an optional port.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    host.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
            _ => false,
        }
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    b.first().is_some_and(word)
        && b.len() <= 128
        && b.iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`: the algorithm's
/// components, then at least 32 hex digits (their algorithm and length are
/// [`check_digest`]'s).
fn is_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let component = |c: &str| {
        let b = c.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(component)
        && hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Docker's limit on the repository path (`library/busybox`), in bytes.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Docker Hub, where a reference without a registry points.
const DEFAULT_DOMAIN: &str = "docker.io";

/// Why a string is not an image reference, in docker's words (`distribution/reference` and
/// `go-digest`), so a user sees what `docker build` would have told them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The empty string.
    #[error("repository name must have at least one component")]
    Empty,
    /// 64 lowercase hex digits: an image ID, which docker refuses as a name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    /// Upper case in the repository path (the path, with `library/` for Docker Hub).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// Does not match the grammar.
    #[error("invalid reference format")]
    Format,
    /// The repository path is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    /// The digest's hex is not lowercase.
    #[error("invalid checksum digest format")]
    DigestFormat,
    /// The digest's hex does not have its algorithm's length.
    #[error("invalid checksum digest length")]
    DigestLength,
    /// The digest's algorithm is not sha256, sha384 or sha512.
    #[error("unsupported digest algorithm")]
    DigestAlgorithm,
    /// A digest where a tag is needed (`tag`, `import`, `build -t`).
    #[error("cannot tag with a digest reference: {0}")]
    Digested(String),
}

/// A parsed, normalised image reference.
///
/// ```
/// use strata_store::{Reference, ReferenceError};
/// let r = Reference::parse("busybox")?;
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.familiar(), "busybox:latest");
/// assert_eq!(r.familiar_name(), "busybox");
/// let r = Reference::parse("localhost:5000/a/b:t")?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "a/b", Some("t")));
/// assert_eq!(
///     Reference::parse("Alpine").unwrap_err().to_string(),
///     "invalid reference format: repository name (library/Alpine) must be lowercase"
/// );
/// # Ok::<(), ReferenceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference(oci_spec::distribution::Reference);

impl Reference {
    /// Parses and normalises `input` (a missing tag becomes `latest` unless a digest is given;
    /// a tag and a digest are both kept, as `FROM` keeps them).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexIdentifier(input.to_owned()));
        }
        // Docker checks case on the path before the grammar, so the error can name it.
        let (_, remainder) = split_domain(input);
        let remote = remainder.split_once(':').map_or(&*remainder, |(r, _)| r);
        if remote.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(remote.to_owned()));
        }
        let (name, tag, digest) = split_reference(input).ok_or(ReferenceError::Format)?;
        let (tag, digest) = (tag.map(str::to_owned), digest.map(str::to_owned));
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        if let Some(d) = &digest {
            check_digest(d)?;
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
    pub fn parse_tag(input: &str) -> Result<Reference, ReferenceError> {
        let r = Reference::parse(input)?;
        if r.digest().is_some() {
            return Err(ReferenceError::Digested(input.to_owned()));
        }
        Ok(r)
    }

    /// The same repository, tag and digest on another registry (a mirror of Docker Hub).
    pub fn on_registry(&self, registry: &str) -> Reference {
        use oci_spec::distribution::Reference as Oci;
        let repository = self.repository().to_owned();
        let registry = registry.to_owned();
        Reference(match (self.tag(), self.digest()) {
            (Some(tag), Some(digest)) => {
                Oci::with_tag_and_digest(registry, repository, tag.to_owned(), digest.to_owned())
            }
            (None, Some(digest)) => Oci::with_digest(registry, repository, digest.to_owned()),
            (tag, None) => Oci::with_tag(registry, repository, tag.unwrap_or("latest").to_owned()),
        })
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

    /// The manifest digest it pins, if any (`sha256:…`, also `sha384:`/`sha512:`, which
    /// [`crate::Digest`] does not hold).
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository` (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The repository as docker shows it (`busybox`, `foo/bar`, `localhost:5000/a/b`).
    pub fn familiar_name(&self) -> String {
        if self.registry() == DEFAULT_DOMAIN {
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

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits a name into registry and repository the way docker does (`splitDockerDomain`): the
/// first component is a registry only if it has a `.` or a `:`, is `localhost` or has upper
/// case (which a path may not); Docker Hub names of one component live under `library/`.
/// Works on a raw input too: then the repository keeps the tag and digest.
fn split_domain(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    let registry = if registry == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        registry
    };
    if registry == DEFAULT_DOMAIN && !repository.contains('/') {
        return (registry.to_owned(), format!("library/{repository}"));
    }
    (registry.to_owned(), repository.to_owned())
}

/// A digest the grammar matched, checked as `go-digest` does: a known algorithm, its length of
/// lowercase hex.
fn check_digest(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = digest.split_once(':').ok_or(ReferenceError::Format)?;
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestAlgorithm),
    };
    if hex.len() != expected {
        return Err(ReferenceError::DigestLength);
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestFormat);
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table for everything that parses a reference in strata: input → normalised form,
    /// or docker's error.
    #[test]
    fn normalises_and_rejects_like_docker() {
        use ReferenceError as E;
        let sha256 = format!("sha256:{}", "a".repeat(64));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let hex64 = "f".repeat(64);
        let long_path = format!("x/{}", "a".repeat(NAME_TOTAL_LENGTH_MAX - 2));
        let too_long = format!("x/{}", "a".repeat(NAME_TOTAL_LENGTH_MAX - 1));
        let long_one = "a".repeat(NAME_TOTAL_LENGTH_MAX - "library/".len());
        let tag128 = format!("busybox:{}", "t".repeat(128));
        let tag129 = format!("busybox:{}", "t".repeat(129));
        let table: Vec<(String, Result<String, ReferenceError>)> = vec![
            // docker.io/library and the default tag
            (
                "busybox".into(),
                Ok("docker.io/library/busybox:latest".into()),
            ),
            (
                "busybox:1.36".into(),
                Ok("docker.io/library/busybox:1.36".into()),
            ),
            (
                "library/busybox".into(),
                Ok("docker.io/library/busybox:latest".into()),
            ),
            (
                "docker.io/busybox".into(),
                Ok("docker.io/library/busybox:latest".into()),
            ),
            (
                "index.docker.io/busybox".into(),
                Ok("docker.io/library/busybox:latest".into()),
            ),
            (
                "index.docker.io/foo/bar:t".into(),
                Ok("docker.io/foo/bar:t".into()),
            ),
            ("foo/bar:t".into(), Ok("docker.io/foo/bar:t".into())),
            (
                "conf-base:latest".into(),
                Ok("docker.io/library/conf-base:latest".into()),
            ),
            (
                "my_image.v2".into(),
                Ok("docker.io/library/my_image.v2:latest".into()),
            ),
            (
                "a__b/c---d".into(),
                Ok("docker.io/a__b/c---d:latest".into()),
            ),
            (
                "lowercase:Uppercase".into(),
                Ok("docker.io/library/lowercase:Uppercase".into()),
            ),
            // registries: host:port, localhost, IPs, upper case hosts
            (
                "localhost:5000/a/b:t".into(),
                Ok("localhost:5000/a/b:t".into()),
            ),
            ("localhost/x".into(), Ok("localhost/x:latest".into())),
            (
                "localhost:5000".into(),
                Ok("docker.io/library/localhost:5000".into()),
            ),
            ("quay.io/a/b/c".into(), Ok("quay.io/a/b/c:latest".into())),
            ("1.2.3.4:5/x:y".into(), Ok("1.2.3.4:5/x:y".into())),
            (
                "Registry.Example/x".into(),
                Ok("Registry.Example/x:latest".into()),
            ),
            ("test:5000/repo".into(), Ok("test:5000/repo:latest".into())),
            ("host:port/x".into(), Err(E::Format)),
            // digests
            (
                format!("busybox@{sha256}"),
                Ok(format!("docker.io/library/busybox@{sha256}")),
            ),
            (
                format!("busybox:1@{sha256}"),
                Ok(format!("docker.io/library/busybox:1@{sha256}")),
            ),
            (
                format!("localhost:5000/a@{sha512}"),
                Ok(format!("localhost:5000/a@{sha512}")),
            ),
            ("x@sha256:1".into(), Err(E::Format)),
            (format!("x@sha256:{}", "f".repeat(63)), Err(E::DigestLength)),
            (format!("x@sha256:{}", "F".repeat(64)), Err(E::DigestFormat)),
            (format!("x@md5:{}", "0".repeat(32)), Err(E::DigestAlgorithm)),
            // upper case
            ("Alpine".into(), Err(E::Uppercase("library/Alpine".into()))),
            ("a/B:t".into(), Err(E::Uppercase("a/B".into()))),
            ("localhost:5000/Foo".into(), Err(E::Uppercase("Foo".into()))),
            // lengths: the path (with `library/`) at most 255, the tag at most 128
            (
                long_path.clone(),
                Ok(format!("docker.io/{long_path}:latest")),
            ),
            (too_long, Err(E::NameTooLong)),
            (
                long_one.clone(),
                Ok(format!("docker.io/library/{long_one}:latest")),
            ),
            (format!("{long_one}a"), Err(E::NameTooLong)),
            (tag128.clone(), Ok(format!("docker.io/library/{tag128}"))),
            (tag129, Err(E::Format)),
            // image IDs, empty and malformed names
            (hex64.clone(), Err(E::HexIdentifier(hex64.clone()))),
            (
                format!("{hex64}a"),
                Ok(format!("docker.io/library/{hex64}a:latest")),
            ),
            ("".into(), Err(E::Empty)),
            ("alpine:".into(), Err(E::Format)),
            ("a b".into(), Err(E::Format)),
            (" x".into(), Err(E::Format)),
            ("x ".into(), Err(E::Format)),
            ("-alpine".into(), Err(E::Format)),
            ("a:b:c".into(), Err(E::Format)),
            ("a//b".into(), Err(E::Format)),
            ("a/".into(), Err(E::Format)),
            ("busybox:é".into(), Err(E::Format)),
            ("a/b:\u{0660}".into(), Err(E::Format)),
        ];
        for (input, want) in table {
            let got = Reference::parse(&input).map(|r| r.to_string());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn errors_say_what_docker_says() {
        for (input, message) in [
            (
                "FROM",
                "invalid reference format: repository name (library/FROM) must be lowercase",
            ),
            ("", "repository name must have at least one component"),
            ("a b", "invalid reference format"),
        ] {
            assert_eq!(Reference::parse(input).unwrap_err().to_string(), message);
        }
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            Reference::parse(&id).unwrap_err().to_string(),
            format!("invalid repository name ({id}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            Reference::parse(&format!("x/{}", "a".repeat(300)))
                .unwrap_err()
                .to_string(),
            "repository name must not be more than 255 characters"
        );
    }

    #[test]
    fn familiar_forms_and_tags_only() {
        for (input, familiar) in [
            ("busybox", "busybox:latest"),
            ("docker.io/library/busybox:1.36", "busybox:1.36"),
            ("foo/bar:t", "foo/bar:t"),
            ("docker.io/library/a/b", "library/a/b:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ] {
            assert_eq!(Reference::parse(input).unwrap().familiar(), familiar);
        }
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(Reference::parse(&pinned).unwrap().tag(), None);
        assert_eq!(
            Reference::parse_tag(&pinned),
            Err(ReferenceError::Digested(pinned.clone()))
        );
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

    /// docker's `ReferenceRegexp` with its three groups (name, tag, digest), with the ASCII
    /// classes Go's `\w` has: what `split_reference` is written from.
    const GRAMMAR: &str = concat!(
        r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
        r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?",
        r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*)",
        r"(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?",
        r"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$",
    );

    fn by_grammar(input: &str) -> Option<(String, Option<String>, Option<String>)> {
        static RE: std::sync::LazyLock<regex::Regex> =
            std::sync::LazyLock::new(|| regex::Regex::new(GRAMMAR).expect("a valid regex"));
        let caps = RE.captures(input)?;
        let group = |i| caps.get(i).map(|m| m.as_str().to_owned());
        Some((group(1).unwrap_or_default(), group(2), group(3)))
    }

    fn by_hand(input: &str) -> Option<(String, Option<String>, Option<String>)> {
        let (name, tag, digest) = split_reference(input)?;
        Some((name.into(), tag.map(Into::into), digest.map(Into::into)))
    }

    #[test]
    fn the_written_out_grammar_splits_as_the_regex() {
        let hex = "0123456789abcdefABCDEF0123456789";
        let cases = [
            "busybox",
            "localhost:5000/a/b:t",
            "localhost:5000",
            "Host.Example-1.com:443/a__b/c-----d/e.f:T_1.2-x",
            "a:1/b",
            "a:b/c",
            "a::1/b",
            "-a/b",
            "a-/b",
            "a./b",
            ".a/b",
            "a..b/c",
            "a___b",
            "a__b",
            "a_.b",
            "a-_b",
            "A",
            "a/B",
            "a:",
            "a:.t",
            "a:-t",
            "a:_t",
            "a/",
            "/a",
            "a//b",
            "a@",
            "a@sha256",
            "a@sha256:",
            "a:t@b@c",
            "a:é",
            "é/a",
            "a\n",
        ];
        let mut inputs: Vec<String> = cases.iter().map(|s| s.to_string()).collect();
        for digest in [
            format!("sha256:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256+b64.x_y-z9:{hex}ff"),
            format!("9sha:{hex}"),
            format!("sha-:{hex}"),
            format!("sha256:{hex}g"),
        ] {
            inputs.push(format!("a@{digest}"));
            inputs.push(format!("h:1/a:t@{digest}"));
        }
        inputs.push(format!("a:{}", "t".repeat(128)));
        inputs.push(format!("a:{}", "t".repeat(129)));
        for input in &inputs {
            assert_eq!(by_hand(input), by_grammar(input), "{input:?}");
        }
    }

    proptest::proptest! {
        /// The same on random strings over the grammar's alphabet and its edges.
        #[test]
        fn the_written_out_grammar_agrees_on_random_strings(
            input in "[a-cA-C09._:/@+-]{0,20}"
        ) {
            proptest::prop_assert_eq!(by_hand(&input), by_grammar(&input));
        }

        /// The same on strings the grammar matches, each with one character changed.
        #[test]
        fn the_written_out_grammar_agrees_near_matches(
            input in proptest::string::string_regex(&GRAMMAR[1..GRAMMAR.len() - 1])
                .expect("a grammar proptest can generate from"),
            at in 0usize..200,
            with in "[aA0._:/@+-]?",
        ) {
            proptest::prop_assert_eq!(by_hand(&input), by_grammar(&input));
            let mut changed: Vec<char> = input.chars().collect();
            let at = at % (changed.len() + 1);
            match with.chars().next() {
                Some(c) if at < changed.len() => changed[at] = c,
                Some(c) => changed.push(c),
                None if at < changed.len() => {
                    changed.remove(at);
                }
                None => {}
            }
            let changed: String = changed.into_iter().collect();
            proptest::prop_assert_eq!(by_hand(&changed), by_grammar(&changed));
        }
    }
}
