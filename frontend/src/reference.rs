//! Image references (`alpine`, `ghcr.io/org/app:1.2`, `busybox@sha256:...`): checked and
//! normalised as Docker does, so `FROM alpine` and `FROM docker.io/library/alpine:latest` are
//! the same base and a typo like `FROM Alpine` is caught before anything runs.

/// A reference Docker's parser rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference format: {reason}")]
pub struct ReferenceError {
    /// Docker's reason (`repository name must be lowercase`).
    pub reason: String,
}

fn fail(reason: &str) -> ReferenceError {
    ReferenceError {
        reason: reason.to_owned(),
    }
}

/// Normalises `reference` like `reference.ParseNormalizedNamed` + `TagNameOnly`:
/// `alpine` → `docker.io/library/alpine:latest`, `org/app@sha256:…` keeps its digest.
pub fn normalize_reference(reference: &str) -> Result<String, ReferenceError> {
    if reference.is_empty() {
        return Err(fail("repository name must have at least one component"));
    }
    if reference.len() == 64
        && reference
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(fail("cannot specify 64-byte hexadecimal strings"));
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d.split_once(':').ok_or_else(|| fail("invalid digest"))?;
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let hex_ok = hex.len() >= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !algo_ok || !hex_ok {
            return Err(fail("invalid digest"));
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(fail("invalid tag"));
        }
    }
    let (domain, path) = split_domain(name);
    if path.is_empty() {
        return Err(fail("repository name must have at least one component"));
    }
    for component in path.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail("repository name must be lowercase"));
        }
        if !valid_component(component) {
            return Err(fail("invalid repository name"));
        }
    }
    if !domain.is_empty() && !valid_domain(domain) {
        return Err(fail("invalid domain"));
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// Docker Hub for names without a registry, `library/` for official images.
fn split_domain(name: &str) -> (&str, String) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest.to_owned())
        }
        _ => ("docker.io", name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !rest.contains('/') {
        return (domain, format!("library/{rest}"));
    }
    (domain, rest)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') {
        return host.ends_with(']');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        for (input, want) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.19", "docker.io/library/alpine:3.19"),
            ("conf-base:latest", "docker.io/library/conf-base:latest"),
            ("org/app", "docker.io/org/app:latest"),
            ("ghcr.io/org/app:1.2", "ghcr.io/org/app:1.2"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x", "localhost/x:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            ("my_image.v2", "docker.io/library/my_image.v2:latest"),
        ] {
            assert_eq!(normalize_reference(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for (input, reason) in [
            ("Alpine", "repository name must be lowercase"),
            ("", "repository name must have at least one component"),
            ("alpine:", "invalid tag"),
            ("a b", "invalid repository name"),
            ("alpine@sha256:xyz", "invalid digest"),
            ("-alpine", "invalid repository name"),
        ] {
            assert_eq!(
                normalize_reference(input).unwrap_err().reason,
                reason,
                "{input:?}"
            );
        }
    }
}
