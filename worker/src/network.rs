//! The RUN network (`--network=default`): a network namespace of the step's own, with its
//! own loopback and one `eth0`, the end of a veth pair whose other end is a port of the
//! bridge `strata0` in the host's namespace. The RUN's default route is the bridge's
//! address, and the host masquerades what leaves through another interface (NAT).
//!
//! Why a bridge and veth pairs rather than pasta or slirp4netns: the kernel forwards at no
//! extra cost, there is no user-space process per RUN to start, watch and kill, and a
//! namespace with its veth is ready in a few milliseconds, made ahead in the helper's pool.
//! Each namespace's veth, address and route are made over rtnetlink by the helper itself
//! ([`crate::rtnetlink`]), in the pool (off the critical path, and with no exec to compete
//! with the RUN for the CPU); the bridge with iproute2's `ip` once per host, and the NAT
//! and filter rules with `iptables` once per helper: on the hosts we run on (Debian,
//! often with Docker) the filter `FORWARD` chain's policy is `DROP`, and an accept in a
//! separate nftables table cannot override another table's drop, so the rules go in the
//! chains everyone shares (iptables-nft writes them as nftables rules).
//!
//! What a RUN reaches: the host's 127.0.0.1 never (its loopback is its own, and the host
//! does not route 127/8 from a veth); the bridge's own address never (a rule refuses what
//! comes in on the bridge for it, so services the host binds to 0.0.0.0 are not exposed
//! there, which BuildKit's CNI bridge does expose); other RUNs never (each port is
//! isolated); everything else as any machine on the host's network would, through NAT.
//!
//! Containers (`run --network bridge`, their default) are on a second bridge, `strata1`,
//! made and ruled the same way on the next free network, with one difference: its ports are
//! not isolated, and what goes from one of its ports to another is accepted, so containers
//! reach each other by address as on docker's default bridge, while RUNs stay isolated from
//! each other and from containers (they are on another bridge, in another network). A
//! container's address is derived from its namespace as a RUN's is (no allocation shared
//! among processes, nothing to release or leak: it goes with the namespace), and its MAC
//! address from its address, as docker's (`02:42` then the four bytes).
//!
//! Clean-up: a veth goes with its namespace (the kernel deletes both ends when the last
//! holder of the namespace is gone, a killed helper included). The bridge and the rules are
//! made once, checked by every helper, and left: they are the same for every build.

use crate::rtnetlink::{Rtnl, Veth};
use crate::sys;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Which of strata's two bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    /// `strata0`: RUN steps, each port isolated from the others.
    Runs,
    /// `strata1`: containers, which reach each other.
    Containers,
}

impl Net {
    /// The bridge's name.
    pub(crate) fn bridge_name(self) -> &'static str {
        match self {
            Net::Runs => "strata0",
            Net::Containers => "strata1",
        }
    }

    /// The prefix of the host end of a veth on it (then the namespace's id).
    fn veth_prefix(self) -> &'static str {
        match self {
            Net::Runs => "stv",
            Net::Containers => "stc",
        }
    }
}
/// The bridge's network is a /16 (room for a veth per live namespace).
const PREFIX: u8 = 16;
/// The networks tried for the bridge, in order: the first whose range no route of the host
/// overlaps.
const CANDIDATES: [[u8; 2]; 8] = [
    [10, 88],
    [10, 89],
    [10, 90],
    [10, 91],
    [10, 92],
    [10, 93],
    [172, 29],
    [172, 30],
];
/// Serialises the making of the bridge among strata processes.
const LOCK: &str = "/run/strata-network.lock";

/// The host side, once made: where RUN namespaces get their addresses and route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bridge {
    /// Which bridge.
    kind: Net,
    /// The bridge's network (the first address).
    net: Ipv4Addr,
    /// The bridge's own address, the RUNs' gateway.
    gateway: Ipv4Addr,
}

/// Makes the bridge, its address and the NAT and filter rules where missing; idempotent,
/// and safe against other strata processes doing the same.
pub(crate) fn bridge(kind: Net) -> io::Result<Bridge> {
    let lock = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)?;
    lock.file().lock()?;
    let bridge = match bridge_address(kind)? {
        Some(b) => b,
        None => make_bridge(kind)?,
    };
    let dev = kind.bridge_name();
    // Needed for NAT; Docker and every container engine set it too. Written only when off
    // (a host that has it on may have /proc/sys read-only).
    let forward = "/proc/sys/net/ipv4/ip_forward";
    if fs_err::read_to_string(forward)?.trim() != "1" {
        fs_err::write(forward, "1\n")?;
    }
    let net = format!("{}/{PREFIX}", bridge.net);
    let gw = bridge.gateway.to_string();
    let mut rules: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "nat",
            "POSTROUTING",
            vec!["-s", &net, "!", "-o", dev, "-j", "MASQUERADE"],
        ),
        (
            "filter",
            "FORWARD",
            vec!["-i", dev, "!", "-o", dev, "-j", "ACCEPT"],
        ),
        (
            "filter",
            "FORWARD",
            vec![
                "-o",
                dev,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ),
    ];
    // What a namespace starts towards the bridge's address is refused. On the containers'
    // bridge only what it starts: the host (the monitor's port proxy) connects to containers
    // from that address, and their replies come back to it.
    let refuse: Vec<&str> = match kind {
        Net::Runs => vec!["-i", dev, "-d", &gw, "-j", "REJECT"],
        Net::Containers => vec![
            "-i",
            dev,
            "-d",
            &gw,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-j",
            "REJECT",
        ],
    };
    rules.push(("filter", "INPUT", refuse));
    if kind == Net::Containers {
        // Containers reach each other (docker's inter-container communication); on a host
        // with `br_netfilter` what crosses a bridge goes through FORWARD too.
        rules.push((
            "filter",
            "FORWARD",
            vec!["-i", dev, "-o", dev, "-j", "ACCEPT"],
        ));
    }
    let present = |table: &str, chain: &str, rule: &[&str]| {
        let mut check = vec!["-w", "-t", table, "-C", chain];
        check.extend(rule);
        run("iptables", &check, None).is_ok()
    };
    // The rules go in in this order, so the last one there means all are: one `iptables`
    // (about 4 ms) rather than one per rule, which each container's start pays.
    if let Some((table, chain, rule)) = rules.last()
        && present(table, chain, rule)
    {
        return Ok(bridge);
    }
    for (table, chain, rule) in rules {
        if !present(table, chain, &rule) {
            // First in its chain, before the rules of others (Docker's jump to its own
            // chains, a policy of DROP).
            let mut insert = vec!["-w", "-t", table, "-I", chain, "1"];
            insert.extend(&rule);
            run("iptables", &insert, None)?;
        }
    }
    drop(lock);
    Ok(bridge)
}

/// The bridge's address, if the bridge exists and has one.
fn bridge_address(kind: Net) -> io::Result<Option<Bridge>> {
    let dev = kind.bridge_name();
    if !PathBuf::from(format!("/sys/class/net/{dev}")).exists() {
        return Ok(None);
    }
    let mut rtnl = Rtnl::open()?;
    let index = rtnl.index_of(dev)?;
    let Some(addr) = rtnl
        .ipv4_addresses(index)?
        .into_iter()
        .find_map(|(addr, len)| (len == PREFIX).then_some(addr))
    else {
        return Ok(None);
    };
    let net = Ipv4Addr::from(addr.to_bits() & !(u32::MAX >> PREFIX));
    Ok(Some(Bridge {
        kind,
        net,
        gateway: addr,
    }))
}

/// Makes the bridge on the first candidate network that clashes with no route of the host.
fn make_bridge(kind: Net) -> io::Result<Bridge> {
    let dev = kind.bridge_name();
    let routes = run("ip", &["-4", "-o", "route", "show", "table", "all"], None)?;
    let taken: Vec<(u32, u32)> = routes.lines().filter_map(route_range).collect();
    let net = CANDIDATES
        .iter()
        .map(|[a, b]| Ipv4Addr::new(*a, *b, 0, 0))
        .find(|n| {
            let (lo, hi) = (n.to_bits(), n.to_bits() | (u32::MAX >> PREFIX));
            !taken.iter().any(|(l, h)| *l <= hi && lo <= *h)
        })
        .ok_or_else(|| {
            io::Error::other("every network strata can give its bridge clashes with a route")
        })?;
    let gateway = Ipv4Addr::from(net.to_bits() + 1);
    // Another process may have made the link but died before giving it its address.
    if !PathBuf::from(format!("/sys/class/net/{dev}")).exists() {
        run("ip", &["link", "add", dev, "type", "bridge"], None)?;
    }
    run(
        "ip",
        &[
            "addr",
            "replace",
            &format!("{gateway}/{PREFIX}"),
            "dev",
            dev,
        ],
        None,
    )?;
    run("ip", &["link", "set", dev, "up"], None)?;
    Ok(Bridge { kind, net, gateway })
}

/// The addresses a route covers (`default` and routes in other forms cover none here: the
/// default route is no clash).
fn route_range(line: &str) -> Option<(u32, u32)> {
    let dest = line.split_whitespace().find(|w| w.contains('.'))?;
    let first = line.split_whitespace().next()?;
    if first == "default" || first == "broadcast" || first == "local" {
        // `local`/`broadcast` lines (table local) name the host's own addresses.
        let addr = line.split_whitespace().nth(1)?.parse::<Ipv4Addr>().ok()?;
        return (first != "default").then_some((addr.to_bits(), addr.to_bits()));
    }
    let (addr, len) = match dest.split_once('/') {
        Some((a, l)) => (a.parse::<Ipv4Addr>().ok()?, l.parse::<u32>().ok()?),
        None => (dest.parse::<Ipv4Addr>().ok()?, 32),
    };
    let mask = u32::MAX.checked_shl(32u32.checked_sub(len)?).unwrap_or(0);
    let lo = addr.to_bits() & mask;
    Some((lo, lo | !mask))
}

impl Bridge {
    /// Gives the namespace the helper is in now (made for one RUN, loopback up) its `eth0`:
    /// one end of a veth pair whose other end goes to the namespace `host_ns` (the host's),
    /// with an address derived from `ns_id` and the default route through the bridge.
    /// Returns the host end's name, for [`Bridge::attach`] once back in the host namespace,
    /// and the address.
    pub(crate) fn eth0_here(
        &self,
        ns_id: u64,
        host_ns: BorrowedFd<'_>,
    ) -> io::Result<(String, Ipv4Addr)> {
        let addr = self.address_of(ns_id);
        let host_end = format!("{}{ns_id}", self.kind.veth_prefix());
        let mut rtnl = Rtnl::open()?;
        rtnl.add_veth(&Veth {
            name: "eth0",
            mac: mac_bytes(addr),
            peer: &host_end,
            peer_ns: host_ns,
        })?;
        let eth0 = rtnl.index_of("eth0")?;
        rtnl.add_address(eth0, addr, PREFIX)?;
        rtnl.add_default_route(eth0, self.gateway)?;
        Ok((host_end, addr))
    }

    /// The address of the namespace `ns_id` on this bridge. Namespace ids are unique among
    /// live namespaces, so is the address, with no allocation shared among processes; /16
    /// minus the network, the gateway and the broadcast address leaves 65533.
    pub(crate) fn address_of(&self, ns_id: u64) -> Ipv4Addr {
        let offset = u32::try_from(ns_id % 65533).expect("below 65533") + 2;
        Ipv4Addr::from(self.net.to_bits() + offset)
    }

    /// Plugs the host end of a veth into the bridge: a RUN's isolated from the other ports,
    /// a container's not. The helper must be in the host's namespace.
    pub(crate) fn attach(&self, host_end: &str) -> io::Result<()> {
        Rtnl::open()?.attach(host_end, self.kind.bridge_name(), self.kind == Net::Runs)
    }
}

/// Where a container's namespace is on the containers' bridge, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub address: Ipv4Addr,
    /// The network's prefix length.
    pub prefix_len: u8,
    /// Its default route.
    pub gateway: Ipv4Addr,
    /// Its `eth0`'s MAC address (empty when not known: rootless).
    pub mac: String,
}

/// The endpoint of the running process `pid` on the containers' bridge (it must be on it):
/// derived from its network namespace as the helper derived it, or rootless slirp4netns's
/// fixed addresses.
pub fn container_endpoint(pid: u32) -> io::Result<Endpoint> {
    if strata_store::confined::in_user_namespace() {
        return Ok(Endpoint {
            address: crate::slirp::ADDRESS,
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            mac: String::new(),
        });
    }
    use std::os::unix::fs::MetadataExt as _;
    let ns_id = fs_err::metadata(format!("/proc/{pid}/ns/net"))?.ino();
    let bridge = bridge_address(Net::Containers)?.ok_or_else(|| {
        io::Error::other(format!(
            "the bridge {} has no address",
            Net::Containers.bridge_name()
        ))
    })?;
    let address = bridge.address_of(ns_id);
    Ok(Endpoint {
        address,
        prefix_len: PREFIX,
        gateway: bridge.gateway,
        mac: mac_of(address),
    })
}

/// Runs `make` on a thread of its own inside the network namespace of process `pid` (a
/// container's), for a socket that stays in that namespace: the port proxy connects to a
/// container from there, where its address is reachable also when the host has no route to
/// it (rootless, behind slirp4netns). The thread ends once it returns.
pub fn in_netns_of<T: Send + 'static>(
    pid: u32,
    make: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = fs_err::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::Builder::new()
        .name("strata-netns".into())
        .spawn(move || {
            use std::os::fd::AsFd as _;
            sys::join_netns(ns.file().as_fd())?;
            make()
        })?
        .join()
        .map_err(|_| io::Error::other("the thread in the container's network namespace panicked"))?
}

/// docker's MAC address for an address: `02:42` then its four bytes.
pub(crate) fn mac_of(addr: Ipv4Addr) -> String {
    let [a, b, c, d, e, f] = mac_bytes(addr);
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// [`mac_of`] as bytes.
fn mac_bytes(addr: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x02, 0x42, a, b, c, d]
}

/// The id of the network namespace `ns` (its nsfs inode number).
pub(crate) fn ns_id(ns: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(sys::fstat(ns)?.st_ino)
}

/// Runs a networking tool, found in the system's directories (the helper has no `PATH`),
/// and returns its standard output; a failure carries its standard error.
fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> io::Result<String> {
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.exists())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{tool} is not installed (the RUN network needs iproute2 and iptables)"),
            )
        })?;
    let mut child = Command::new(&path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {}: {e}", path.display())))?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{tool} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_their_ranges_and_the_default_route_none() {
        let r = |s| route_range(s).map(|(l, h)| (Ipv4Addr::from(l), Ipv4Addr::from(h)));
        assert_eq!(r("default via 192.0.2.1 dev eth0"), None);
        assert_eq!(
            r("10.88.0.0/16 dev strata0 proto kernel scope link src 10.88.0.1"),
            Some((Ipv4Addr::new(10, 88, 0, 0), Ipv4Addr::new(10, 88, 255, 255)))
        );
        assert_eq!(
            r("local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2"),
            Some((Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 2)))
        );
        assert_eq!(
            r("10.1.2.3 via 192.0.2.1 dev eth0"),
            Some((Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 3)))
        );
    }
}
