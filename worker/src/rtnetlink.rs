//! Links, addresses and routes made over rtnetlink, the kernel's own interface for them,
//! from the helper's process: the RUN network's pool (one veth, its address and route per
//! namespace, see [`crate::network`]) without an exec of iproute2's `ip`.
//!
//! Why: each namespace of the pool cost two `ip -batch` execs (about 2 ms of CPU with the
//! dynamic linking of `ip`), which on a two-core machine compete with the RUN that starts
//! meanwhile. A netlink request is a `sendto` and a `recvfrom` on a socket of the helper's.
//!
//! Why `netlink-packet-route` with `netlink-sys` (rust-netlink, the crates under
//! `rtnetlink`) rather than `rtnetlink` itself or `neli`: they are the kernel's messages as
//! typed data with no runtime (`rtnetlink` needs an async executor, and the helper is a
//! single-threaded process that forks), they are kept up to date with the kernel's
//! attributes (a bridge port's `isolated` among them), and they need no `unsafe` of ours.
//!
//! A socket is bound to the network namespace the process is in when it is opened: a
//! [`Rtnl`] opened in a RUN's namespace configures that namespace, one opened in the host's
//! the host's, whatever namespace the helper is in later.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// A route netlink socket in the network namespace it was opened in.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// A veth pair to make: `name` here, `peer` in the namespace `peer_ns`.
pub(crate) struct Veth<'a> {
    /// This end's name.
    pub(crate) name: &'a str,
    /// This end's MAC address.
    pub(crate) mac: [u8; 6],
    /// The other end's name.
    pub(crate) peer: &'a str,
    /// The namespace the other end goes to.
    pub(crate) peer_ns: BorrowedFd<'a>,
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Rtnl> {
        let what = "opening a route netlink socket";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| context(what, e))?;
        socket.bind_auto().map_err(|e| context(what, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| context(what, e))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Makes the veth pair, this end up (the other is brought up where it is attached).
    pub(crate) fn add_veth(&mut self, veth: &Veth<'_>) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(veth.peer.to_owned()),
            LinkAttribute::NetNsFd(veth.peer_ns.as_raw_fd()),
        ];
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName(veth.name.to_owned()),
            LinkAttribute::Address(veth.mac.to_vec()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| context(&format!("making the veth pair {}", veth.name), e))
    }

    /// The index of the link `name`.
    pub(crate) fn index_of(&mut self, name: &str) -> io::Result<u32> {
        let mut link = LinkMessage::default();
        link.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        let mut index = None;
        self.exchange(RouteNetlinkMessage::GetLink(link), 0, |reply| {
            if let RouteNetlinkMessage::NewLink(l) = reply {
                index = Some(l.header.index);
            }
        })
        .map_err(|e| context(&format!("looking up the link {name}"), e))?;
        index
            .ok_or_else(|| io::Error::other(format!("the kernel did not describe the link {name}")))
    }

    /// The IPv4 addresses of the link `index`, with their prefix lengths.
    pub(crate) fn ipv4_addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let mut found = Vec::new();
        self.exchange(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP, |reply| {
            if let RouteNetlinkMessage::NewAddress(a) = reply
                && a.header.index == index
            {
                let local = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let peer = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = local.or(peer) {
                    found.push((ip, a.header.prefix_len));
                }
            }
        })
        .map_err(|e| context(&format!("listing the addresses of link {index}"), e))?;
        Ok(found)
    }

    /// Gives the link `index` the address `addr/prefix_len` (no broadcast address, as `ip
    /// addr add` without `brd`).
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(IpAddr::V4(addr)),
            AddressAttribute::Address(IpAddr::V4(addr)),
        ];
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| context(&format!("adding the address {addr}/{prefix_len}"), e))
    }

    /// Adds the default route through `gateway`, out of the link `index`.
    pub(crate) fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| context(&format!("adding the default route via {gateway}"), e))
    }

    /// Makes the link `name` a port of the bridge `bridge` (isolated from the bridge's other
    /// isolated ports when `isolated`) and brings it up.
    pub(crate) fn attach(&mut self, name: &str, bridge: &str, isolated: bool) -> io::Result<()> {
        let what = || format!("attaching {name} to the bridge {bridge}");
        let bridge_index = self.index_of(bridge)?;
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Controller(bridge_index),
        ];
        self.request(RouteNetlinkMessage::SetLink(link), 0)
            .map_err(|e| context(&what(), e))?;
        // Port data only once it is a port: the kernel takes it from the bridge's driver.
        let mut port = LinkMessage::default();
        port.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                    isolated,
                )])),
            ]),
        ];
        self.request(RouteNetlinkMessage::NewLink(port), 0)
            .map_err(|e| context(&what(), e))
    }

    /// Sends `msg` and waits for the kernel's acknowledgement.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, |_| {})
    }

    /// Sends `msg` and hands each reply to `each` until the end: of the dump (`NLM_F_DUMP`),
    /// the acknowledgement (`NLM_F_ACK`), or else the single reply. A negative
    /// acknowledgement is the error it carries.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let single = !dump && flags & NLM_F_ACK == 0;
        let mut reply = Vec::with_capacity(16 * 1024);
        loop {
            reply.clear();
            let n = self.socket.recv(&mut reply, 0)?;
            if n > reply.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a reply of {n} bytes is larger than the buffer"),
                ));
            }
            let mut offset = 0;
            while offset < n {
                let bytes = &reply[offset..];
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = usize::try_from(message.header.length).unwrap_or(usize::MAX);
                if len == 0 {
                    break;
                }
                // Each message starts on a 4-byte boundary.
                offset = offset.saturating_add(len.saturating_add(3) & !3);
                if message.header.sequence_number != self.seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                        None => return Ok(()),
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        each(m);
                        if single {
                            return Ok(());
                        }
                    }
                    NetlinkPayload::Done(_) if dump => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

/// `source` with what was being done (the `io::Error` has no chain to carry it).
fn context(what: &str, source: io::Error) -> io::Error {
    io::Error::new(source.kind(), format!("{what}: {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_is_found_with_its_address() {
        let mut rtnl = Rtnl::open().expect("a route netlink socket");
        let lo = rtnl.index_of("lo").expect("every namespace has lo");
        assert_eq!(lo, 1);
        let addresses = rtnl.ipv4_addresses(lo).expect("lo's addresses");
        assert!(
            addresses.contains(&(Ipv4Addr::LOCALHOST, 8)),
            "{addresses:?}"
        );
    }

    #[test]
    fn a_refused_request_is_an_error_naming_what_was_asked() {
        let mut rtnl = Rtnl::open().expect("a route netlink socket");
        let err = rtnl.index_of("strata-nolink").expect_err("no such link");
        assert!(
            err.to_string()
                .starts_with("looking up the link strata-nolink: No such device"),
            "{err}"
        );
    }

    /// What `ip` (run in this thread's namespace) says of it.
    fn ip(args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("iproute2 is installed");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("ip prints text")
    }

    // Needs CAP_NET_ADMIN (root, as in CI): the links are made in a network namespace of
    // this test thread's own, which goes with it.
    #[test]
    fn a_veth_gets_its_mac_address_and_default_route_and_its_peer_an_isolated_port() {
        use crate::sys::{self, CloneFlags};
        use std::os::fd::AsFd as _;
        sys::unshare(CloneFlags::CLONE_NEWNET).expect("a network namespace of our own");
        ip(&["link", "add", "br0", "type", "bridge"]);
        let ns = sys::own_netns().expect("our namespace");
        let mut rtnl = Rtnl::open().expect("a route netlink socket");
        for (end, peer) in [("eth0", "stv1"), ("eth1", "stc1")] {
            rtnl.add_veth(&Veth {
                name: end,
                mac: [0x02, 0x42, 10, 88, 0, 2],
                peer,
                peer_ns: ns.as_fd(),
            })
            .expect("the veth pair");
        }
        let eth0 = rtnl.index_of("eth0").expect("eth0");
        rtnl.add_address(eth0, Ipv4Addr::new(10, 88, 0, 2), 16)
            .expect("the address");
        rtnl.add_default_route(eth0, Ipv4Addr::new(10, 88, 0, 1))
            .expect("the route");
        rtnl.attach("stv1", "br0", true).expect("an isolated port");
        rtnl.attach("stc1", "br0", false).expect("a port");

        let eth0 = ip(&["-o", "addr", "show", "dev", "eth0"]);
        assert!(
            eth0.contains(" inet 10.88.0.2/16 scope global eth0"),
            "{eth0}"
        );
        let link = ip(&["-o", "link", "show", "dev", "eth0"]);
        assert!(link.contains("link/ether 02:42:0a:58:00:02 "), "{link}");
        assert!(link.contains("<BROADCAST,MULTICAST,UP,LOWER_UP>"), "{link}");
        let route = ip(&["route", "show", "default"]);
        assert!(
            route.starts_with("default via 10.88.0.1 dev eth0 "),
            "{route}"
        );
        for (port, isolated) in [("stv1", "on"), ("stc1", "off")] {
            let link = ip(&["-d", "-o", "link", "show", "dev", port]);
            assert!(link.contains(" master br0 "), "{link}");
            assert!(link.contains(",UP,"), "{link}");
            assert!(link.contains(&format!(" isolated {isolated} ")), "{link}");
        }
    }
}
