//! Published ports (`run -p`): docker's parser of `[IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, and
//! the userland proxy that forwards them, run by the container's monitor.
//!
//! Why a proxy in the monitor rather than DNAT rules: the monitor already lives as long as
//! the container runs, so the listening sockets are bound before the container starts (a port
//! in use fails the start with nothing made) and closed when it ends, by the kernel if the
//! monitor is killed: there is no rule to add, to find again or to leak. It is docker's
//! `docker-proxy`, which docker also runs for traffic from the host's own 127.0.0.1, where
//! DNAT does not apply. The cost is a copy through user space per connection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use strata_store::PortBinding;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A `-p` that docker would refuse, or a port that cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The address part is not an IP address.
    #[error("invalid IP address: {0}")]
    Ip(String),
    /// No container port.
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    /// The container port is not a port or a range.
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    /// The host port is not a port or a range.
    #[error("invalid hostPort: {0}")]
    HostPort(String),
    /// Two ranges of different lengths.
    #[error("invalid ranges specified for container and host Ports: {0} and {1}")]
    Ranges(String, String),
    /// Not tcp, udp or sctp.
    #[error("invalid proto: {0}")]
    Proto(String),
    /// What docker takes and strata does not.
    #[error("publishing {0} is not supported")]
    Unsupported(String),
    /// The host port is taken.
    #[error("Bind for {ip}:{port} failed: port is already allocated")]
    InUse {
        /// The host address.
        ip: String,
        /// The port.
        port: u16,
    },
    /// Listening failed otherwise.
    #[error("failed to listen on {addr}")]
    Listen {
        /// The host address and port.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One port or a range of them, as docker's `ParsePortRange` reads it.
fn port_range(text: &str) -> Option<(u16, u16)> {
    match text.split_once('-') {
        None => text.parse().ok().map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
    }
}

/// Parses one `-p` as docker does (`go-connections/nat.ParsePortSpec`): one binding per port
/// of a range.
pub fn parse_publish(raw: &str) -> Result<Vec<PortBinding>, PortError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => ("".to_owned(), "", parts[0]),
        2 => ("".to_owned(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (container, proto) = match container.split_once('/') {
        _ if container.is_empty() || container.starts_with('/') => ("", ""),
        None => (container, "tcp"),
        Some((port, "")) => (port, "tcp"),
        Some((port, proto)) => (port, proto),
    };
    let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => ip,
    };
    // In docker's order: the container port's presence, the protocol, the address, the
    // ports.
    if container.is_empty() {
        return Err(PortError::NoPort(raw.to_owned()));
    }
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(PortError::Proto(proto));
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(PortError::Ip(ip));
    }
    let (start, end) =
        port_range(container).ok_or_else(|| PortError::ContainerPort(container.to_owned()))?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(host).ok_or_else(|| PortError::HostPort(host.to_owned()))?)
    };
    if let Some((hs, he)) = host_range
        && he - hs != end - start
    {
        if end != start {
            return Err(PortError::Ranges(container.to_owned(), host.to_owned()));
        }
        return Err(PortError::Unsupported(format!(
            "a range of host ports for one container port ({raw})"
        )));
    }
    if proto == "sctp" {
        return Err(PortError::Unsupported("sctp ports".to_owned()));
    }
    if ip.parse::<IpAddr>().is_ok_and(|i| i.is_ipv6()) {
        return Err(PortError::Unsupported(format!(
            "on an IPv6 address ({raw})"
        )));
    }
    Ok((start..=end)
        .map(|port| PortBinding {
            host_ip: ip.clone(),
            host_port: host_range.map_or(0, |(hs, _)| hs + (port - start)),
            container_port: port,
            proto: proto.clone(),
        })
        .collect())
}

/// A published port's socket on the host.
enum Socket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// The sockets of a container's published ports, bound: ready to forward once the
/// container's address is known.
pub(crate) struct Published {
    /// The bindings, each with the host port it got.
    pub(crate) bindings: Vec<PortBinding>,
    sockets: Vec<Socket>,
}

/// Binds every port of `bindings` (a host port 0 gets a free one); the first that fails
/// fails them all, and nothing stays bound.
pub(crate) fn bind(bindings: &[PortBinding]) -> Result<Published, PortError> {
    let mut out = Published {
        bindings: Vec::new(),
        sockets: Vec::new(),
    };
    for b in bindings {
        let ip: IpAddr = if b.host_ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            b.host_ip
                .parse()
                .map_err(|_| PortError::Ip(b.host_ip.clone()))?
        };
        let addr = SocketAddr::new(ip, b.host_port);
        let failed = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                PortError::InUse {
                    ip: b.host_ip_or_any().to_owned(),
                    port: b.host_port,
                }
            } else {
                PortError::Listen {
                    addr: addr.to_string(),
                    source,
                }
            }
        };
        let (socket, local) = if b.proto == "udp" {
            let s = std::net::UdpSocket::bind(addr).map_err(failed)?;
            let local = s.local_addr().map_err(failed)?;
            s.set_nonblocking(true).map_err(failed)?;
            (Socket::Udp(s), local)
        } else {
            let s = std::net::TcpListener::bind(addr).map_err(failed)?;
            let local = s.local_addr().map_err(failed)?;
            s.set_nonblocking(true).map_err(failed)?;
            (Socket::Tcp(s), local)
        };
        out.sockets.push(socket);
        out.bindings.push(PortBinding {
            host_port: local.port(),
            ..b.clone()
        });
    }
    Ok(out)
}

impl Published {
    /// Forwards each port to `target` (the container's address) until `stop`: each TCP
    /// connection to a connection of its own, each UDP client's datagrams through a socket of
    /// its own (so replies find their way back). The sockets to the container are made in
    /// the network namespace of `netns_of` (the container's process) when given, else in
    /// this process's. A failure costs one connection, never the container.
    pub(crate) async fn serve(
        self,
        target: Ipv4Addr,
        netns_of: Option<u32>,
        stop: CancellationToken,
    ) {
        let mut tasks = JoinSet::new();
        for (socket, b) in self.sockets.into_iter().zip(self.bindings) {
            let to = SocketAddr::new(IpAddr::V4(target), b.container_port);
            match socket {
                Socket::Tcp(l) => {
                    if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                        tasks.spawn(forward_tcp(l, to, netns_of));
                    }
                }
                Socket::Udp(s) => {
                    if let Ok(s) = tokio::net::UdpSocket::from_std(s) {
                        tasks.spawn(forward_udp(Arc::new(s), to, netns_of));
                    }
                }
            }
        }
        stop.cancelled().await;
        // Dropping the set aborts the listeners and every connection.
        tasks.shutdown().await;
    }
}

/// A connection to `to`, from the network namespace of `netns_of` when given.
async fn connect(to: SocketAddr, netns_of: Option<u32>) -> io::Result<tokio::net::TcpStream> {
    let Some(pid) = netns_of else {
        return tokio::net::TcpStream::connect(to).await;
    };
    let std = tokio::task::spawn_blocking(move || {
        strata_worker::in_netns_of(pid, move || {
            let s = std::net::TcpStream::connect(to)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
    })
    .await
    .map_err(io::Error::other)??;
    tokio::net::TcpStream::from_std(std)
}

/// A UDP socket that sends to `to` only, made in the network namespace of `netns_of` when
/// given.
async fn udp_to(to: SocketAddr, netns_of: Option<u32>) -> io::Result<tokio::net::UdpSocket> {
    let make = move || {
        let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect(to)?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    let std = match netns_of {
        None => make()?,
        Some(pid) => tokio::task::spawn_blocking(move || strata_worker::in_netns_of(pid, make))
            .await
            .map_err(io::Error::other)??,
    };
    tokio::net::UdpSocket::from_std(std)
}

async fn forward_tcp(listener: tokio::net::TcpListener, to: SocketAddr, netns_of: Option<u32>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                conns.spawn(async move {
                    if let Ok(mut outbound) = connect(to, netns_of).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn forward_udp(socket: Arc<tokio::net::UdpSocket>, to: SocketAddr, netns_of: Option<u32>) {
    let mut clients: std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> =
        std::collections::HashMap::new();
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let upstream = match clients.get(&from) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = udp_to(to, netns_of).await else {
                    continue;
                };
                let u = Arc::new(u);
                clients.insert(from, u.clone());
                let (back, up) = (socket.clone(), u.clone());
                replies.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = up.recv(&mut buf).await {
                        let _ = back.send_to(&buf[..n], from).await;
                    }
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(raw: &str) -> (String, u16, u16, String) {
        let b = parse_publish(raw).unwrap();
        assert_eq!(b.len(), 1);
        let b = &b[0];
        (
            b.host_ip.clone(),
            b.host_port,
            b.container_port,
            b.proto.clone(),
        )
    }

    #[test]
    fn publish_specs_as_docker_reads_them() {
        assert_eq!(one("80"), ("".into(), 0, 80, "tcp".into()));
        assert_eq!(one("8080:80"), ("".into(), 8080, 80, "tcp".into()));
        assert_eq!(
            one("127.0.0.1::80"),
            ("127.0.0.1".into(), 0, 80, "tcp".into())
        );
        assert_eq!(
            one("127.0.0.1:53:53/UDP"),
            ("127.0.0.1".into(), 53, 53, "udp".into())
        );
        assert_eq!(one("80/"), ("".into(), 0, 80, "tcp".into()));
        let range = parse_publish("8000-8001:80-81/udp").unwrap();
        assert_eq!(
            range
                .iter()
                .map(|b| (b.host_port, b.container_port))
                .collect::<Vec<_>>(),
            [(8000, 80), (8001, 81)]
        );
    }

    /// Publishes `proto` port `target_port` of 127.0.0.1 (the "container") on a free
    /// 127.0.0.1 port; returns that port and the token that stops the proxy.
    fn publish(proto: &str, target_port: u16) -> (u16, CancellationToken) {
        let spec = format!("127.0.0.1::{target_port}/{proto}");
        let published = bind(&parse_publish(&spec).unwrap()).unwrap();
        let port = published.bindings[0].host_port;
        assert_ne!(port, 0);
        let stop = CancellationToken::new();
        tokio::spawn(published.serve(Ipv4Addr::LOCALHOST, None, stop.clone()));
        (port, stop)
    }

    #[tokio::test]
    async fn udp_datagrams_and_their_replies_are_forwarded_per_client() {
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 100];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let mut reply = b"echo ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = echo.send_to(&reply, from).await;
            }
        });
        let (port, stop) = publish("udp", echo_port);
        for who in ["a", "b"] {
            let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            client.connect(("127.0.0.1", port)).await.unwrap();
            client.send(who.as_bytes()).await.unwrap();
            let mut buf = [0u8; 100];
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("echo {who}").as_bytes());
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn tcp_connections_are_forwarded_both_ways_and_a_taken_port_is_dockers_error() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = server.accept().await {
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&[b"got ".as_slice(), &buf].concat()).await;
                }
            }
        });
        let (port, stop) = publish("tcp", server_port);
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"got hello");
        let again = parse_publish(&format!("127.0.0.1:{port}:80")).unwrap();
        assert_eq!(
            bind(&again).err().unwrap().to_string(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        stop.cancel();
    }

    #[test]
    fn bad_publish_specs_get_dockers_errors() {
        let err = |raw| parse_publish(raw).unwrap_err().to_string();
        assert_eq!(err("x"), "invalid containerPort: x");
        assert_eq!(err("8080:x"), "invalid containerPort: x");
        assert_eq!(err("y:80"), "invalid hostPort: y");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(err("80/ftp"), "invalid proto: ftp");
        assert_eq!(err("1.2.3:x:80/ftp"), "invalid proto: ftp");
        assert_eq!(err("1.2.3:80:80"), "invalid IP address: 1.2.3");
        assert_eq!(err("8080:"), "no port specified: 8080:<empty>");
        assert_eq!(
            err("8000-8002:80-81"),
            "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"
        );
    }
}
