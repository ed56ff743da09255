//! The `/etc/resolv.conf` a RUN sees, as BuildKit writes it: the host's, except that in a
//! network namespace of its own a RUN cannot reach the host's loopback, so nameservers
//! there (systemd-resolved's 127.0.0.53, a local dnsmasq) are useless. Then, as BuildKit:
//! systemd-resolved's list of upstream servers is read instead of its stub's, loopback
//! nameservers are dropped, and when none is left Google's public servers are added.

use strata_graph::NetworkMode;

/// systemd-resolved's file naming the upstream servers (its stub's file names 127.0.0.53).
pub(crate) const SYSTEMD_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// Google's public DNS servers, BuildKit's fallback (IPv4, then IPv6).
const FALLBACK: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n\
                        nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n";

/// Whether the file's only nameserver is systemd-resolved's stub, so that the upstream
/// file ([`SYSTEMD_UPSTREAM`]) should be read instead for a namespace of its own.
pub(crate) fn is_systemd_stub(host: &[u8]) -> bool {
    let servers: Vec<&str> = nameservers(host).collect();
    servers == ["127.0.0.53"]
}

/// The RUN's file from the host's (already the upstream one where [`is_systemd_stub`]).
pub(crate) fn for_run(host: &[u8], network: NetworkMode) -> Vec<u8> {
    let text = String::from_utf8_lossy(host);
    // As BuildKit: the host network keeps the host's file, unless it names no server.
    if network == NetworkMode::Host && nameservers(host).next().is_some() {
        return host.to_vec();
    }
    let mut out = String::new();
    for line in text.lines() {
        if nameserver(line).is_some_and(is_loopback) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers(out.as_bytes()).next().is_none() {
        out.push_str(FALLBACK);
    }
    out.into_bytes()
}

fn nameservers(file: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(file)
        .unwrap_or("")
        .lines()
        .filter_map(nameserver)
}

/// The address of a `nameserver` line.
fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver")).then(|| words.next())?
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_dropped_and_google_added_when_none_is_left() {
        let host = b"# managed\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        assert!(is_systemd_stub(host));
        let run = String::from_utf8(for_run(host, NetworkMode::Default)).unwrap();
        assert_eq!(
            run,
            "# managed\noptions edns0 trust-ad\nsearch lan\nnameserver 8.8.8.8\n\
             nameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\n\
             nameserver 2001:4860:4860::8844\n"
        );
    }

    #[test]
    fn other_servers_are_kept_as_they_are() {
        let host = b"nameserver 10.255.255.53\nnameserver ::1\nnameserver 1.1.1.1\n";
        assert!(!is_systemd_stub(host));
        assert_eq!(
            for_run(host, NetworkMode::None),
            b"nameserver 10.255.255.53\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn the_host_network_keeps_the_hosts_file() {
        let host = b"nameserver 127.0.0.53\n";
        assert_eq!(for_run(host, NetworkMode::Host), host);
        assert!(
            String::from_utf8(for_run(b"", NetworkMode::Host))
                .unwrap()
                .contains("nameserver 8.8.8.8\n")
        );
    }
}
