//! Where a registry is spoken to, as docker decides it: the insecure registries (`host[:port]`
//! or a CIDR range, docker's `insecure-registries`) and the mirrors of Docker Hub (docker's
//! `registry-mirrors`). The scheme itself is chosen per request in `client.rs`
//! ([`crate::RegistryClient`]'s `base_url`): HTTPS, except for loopback registries and the
//! insecure ones, which are tried over HTTPS without verification first and then over HTTP,
//! as docker does.
//!
//! CIDR ranges are matched by hand (a mask over std's `IpAddr`) rather than with `ipnet`:
//! one comparison does not need a dependency.

use crate::registry::error::RegistryError;
use std::net::{IpAddr, ToSocketAddrs};

/// One `insecure-registries` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Insecure {
    /// `host[:port]`, matched exactly (`registry.lan:5000` does not cover `registry.lan`).
    Host(String),
    /// `10.0.0.0/8`: every registry whose host is, or resolves to, an address in it.
    Range { network: IpAddr, prefix: u8 },
}

impl Insecure {
    /// Reads an entry; a `/` makes it a CIDR range, which must be valid.
    pub(crate) fn parse(entry: &str) -> Result<Insecure, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidOption {
            option: "insecure-registries",
            value: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let entry = entry.trim();
        let bare = entry
            .strip_prefix("http://")
            .or_else(|| entry.strip_prefix("https://"))
            .unwrap_or(entry);
        let Some((ip, prefix)) = bare.split_once('/') else {
            if bare.is_empty() {
                return Err(invalid("an empty entry"));
            }
            return Ok(Insecure::Host(bare.to_owned()));
        };
        let network: IpAddr = ip
            .parse()
            .map_err(|_| invalid("a CIDR range must start with an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| {
                invalid("the prefix length of a CIDR range must be 0 to 32 (IPv6: 128)")
            })?;
        Ok(Insecure::Range { network, prefix })
    }

    /// Whether `registry` (`host[:port]`) is this entry; `addresses` are the host's
    /// (resolved only when a range needs them).
    fn matches(&self, registry: &str, addresses: &mut dyn FnMut() -> Vec<IpAddr>) -> bool {
        match self {
            Insecure::Host(h) => h == registry,
            Insecure::Range { network, prefix } => addresses()
                .iter()
                .any(|ip| in_range(*ip, *network, *prefix)),
        }
    }
}

/// Whether `ip` is in `network/prefix`.
fn in_range(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (ip, network, bits) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (ip >> shift) == (network >> shift)
}

/// The host of `host[:port]` or `[v6]:port`.
pub(crate) fn host_part(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    }
}

/// Whether `registry` is listed in `entries` (exactly, or by an address in a range).
pub(crate) fn is_insecure(entries: &[Insecure], registry: &str) -> bool {
    let mut resolved: Option<Vec<IpAddr>> = None;
    let mut addresses = || {
        resolved
            .get_or_insert_with(|| {
                let host = host_part(registry);
                match host.parse::<IpAddr>() {
                    Ok(ip) => vec![ip],
                    Err(_) => (host, 0)
                        .to_socket_addrs()
                        .map(|a| a.map(|s| s.ip()).collect())
                        .unwrap_or_default(),
                }
            })
            .clone()
    };
    entries.iter().any(|e| e.matches(registry, &mut addresses))
}

/// One `registry-mirrors` entry: `scheme://host[:port]`, for Docker Hub's images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
    /// `host[:port]`: the registry key its requests, credentials and TLS go by.
    pub(crate) host: String,
}

impl Mirror {
    /// Reads an entry as docker does: an `http` or `https` URL with no path but `/`.
    pub(crate) fn parse(url: &str) -> Result<Mirror, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidOption {
            option: "registry-mirrors",
            value: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            _ => return Err(invalid("a mirror is an http:// or https:// URL")),
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(invalid("the URL has no host"));
        }
        if host.contains(['/', '?', '#', '@']) {
            return Err(invalid(
                "a mirror URL has no path, query or credentials (docker's rule)",
            ));
        }
        Ok(Mirror {
            scheme,
            host: host.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure(entries: &[&str], registry: &str) -> bool {
        let entries: Vec<Insecure> = entries
            .iter()
            .map(|e| Insecure::parse(e).unwrap())
            .collect();
        is_insecure(&entries, registry)
    }

    #[test]
    fn insecure_entries_are_hosts_or_cidr_ranges() {
        assert!(insecure(&["registry.lan:5000"], "registry.lan:5000"));
        assert!(!insecure(&["registry.lan:5000"], "registry.lan:5001"));
        assert!(!insecure(&["registry.lan:5000"], "registry.lan"));
        assert!(insecure(&["10.1.0.0/16"], "10.1.2.3:5000"));
        assert!(!insecure(&["10.1.0.0/16"], "10.2.2.3:5000"));
        assert!(insecure(&["192.0.2.7/32"], "192.0.2.7"));
        assert!(insecure(&["0.0.0.0/0"], "198.51.100.1:443"));
        assert!(insecure(&["fd00::/8"], "[fd12::1]:5000"));
        assert!(!insecure(&["fd00::/8"], "10.1.2.3:5000"));
        assert!(insecure(&["http://registry.lan:5000"], "registry.lan:5000"));
    }

    #[test]
    fn invalid_entries_are_refused_by_name() {
        for (entry, reason) in [
            ("10.0.0.0/33", "prefix length"),
            ("lan/8", "start with an IP address"),
            ("", "empty"),
        ] {
            let err = Insecure::parse(entry).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid insecure-registries entry {entry:?}: ")),
                "{err}"
            );
            assert!(err.contains(reason), "{err}");
        }
        assert_eq!(
            Mirror::parse("https://mirror.example/").unwrap(),
            Mirror {
                scheme: "https",
                host: "mirror.example".into()
            }
        );
        assert_eq!(
            Mirror::parse("http://10.0.0.1:5000").unwrap().scheme,
            "http"
        );
        for url in ["mirror.example", "ftp://m", "https://m/v2/", "https://"] {
            let err = Mirror::parse(url).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid registry-mirrors entry {url:?}: ")),
                "{err}"
            );
        }
    }
}
