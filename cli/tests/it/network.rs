//! The RUN network (issue 12 §1): what a RUN can and cannot reach with `--network=default`,
//! `none` and `host`, the `network.host` entitlement, and the /etc files it sees.

use crate::support::TestEnv;
use std::io::Write;
use std::net::{IpAddr, TcpListener, UdpSocket};

/// A TCP server on `ip` that answers every connection with `hello-from-host`, for the life
/// of the test; returns its port.
pub(crate) fn serve(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a test server");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.write_all(b"hello-from-host\n");
        }
    });
    port
}

/// The host's address on its default route (no packet is sent to find it).
pub(crate) fn host_address() -> IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    s.connect("192.0.2.123:9")
        .expect("the host has a route off the machine");
    s.local_addr().expect("its address").ip()
}

/// Builds `dockerfile` (whose RUNs write `/result`) with `args` and returns `/result`.
fn result_of(env: &TestEnv, dockerfile: &str, args: &[&str]) -> String {
    let ctx = env.context("ctx", &[("Dockerfile", dockerfile)]);
    let out = env.dir().join("out");
    let _ = fs_err::remove_dir_all(&out);
    let mut cmd = vec!["build".to_owned(), "--progress=plain".to_owned()];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    cmd.push(format!("--output=type=local,dest={}", out.display()));
    cmd.push(ctx.display().to_string());
    env.ok(&cmd);
    fs_err::read_to_string(out.join("result")).expect("the RUN wrote /result")
}

/// A RUN line that tries `ip:port` and appends what came back (or `refused`) to /result.
fn connect(ip: IpAddr, port: u16) -> String {
    format!("(nc -w 2 {ip} {port} </dev/null || echo refused) >> /result")
}

/// The names of the RUN's interfaces, one per line, appended to /result.
const INTERFACES: &str = "sed 1,2d /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort >> /result";

#[test]
fn a_default_run_has_its_own_network_with_outbound_access_but_not_the_hosts_loopback() {
    let env = TestEnv::with_base("base");
    let loopback = serve(IpAddr::from([127, 0, 0, 1]));
    let host = host_address();
    let outside = serve(host);
    let any = serve(IpAddr::from([0, 0, 0, 0]));
    let df = format!(
        "FROM base\nRUN {INTERFACES}; {}; {}; gw=$(ip route | sed -n 's/^default via \\([^ ]*\\).*/\\1/p'); \
         (nc -w 2 $gw {any} </dev/null || echo refused) >> /result\n",
        connect(IpAddr::from([127, 0, 0, 1]), loopback),
        connect(host, outside),
    );
    assert_eq!(
        result_of(&env, &df, &[]),
        // Only lo and eth0; the host's 127.0.0.1 is the RUN's own (nothing listens there);
        // the host's address is reached as from any other machine; the gateway (the bridge's
        // address) does not expose what the host serves on 0.0.0.0.
        "eth0\nlo\nrefused\nhello-from-host\nrefused\n"
    );
}

#[test]
fn a_host_network_run_needs_allow_network_host_and_then_reaches_the_hosts_loopback() {
    let env = TestEnv::with_base("base");
    let loopback = serve(IpAddr::from([127, 0, 0, 1]));
    let df = format!(
        "FROM base\nRUN --network=host {}\n",
        connect(IpAddr::from([127, 0, 0, 1]), loopback)
    );
    let ctx = env.context("ctx", &[("Dockerfile", &df)]);
    let err = env.fails(["build", ctx.to_str().expect("utf-8 path")]);
    assert!(
        err.contains("Dockerfile:2:1: network mode host is not allowed: start the build with --allow network.host"),
        "{err}"
    );
    assert_eq!(
        result_of(&env, &df, &["--allow", "network.host"]),
        "hello-from-host\n"
    );
    // `--network=host` for the whole build needs it too.
    let plain = format!(
        "FROM base\nRUN {}\n",
        connect(IpAddr::from([127, 0, 0, 1]), loopback)
    );
    let ctx = env.context("ctx2", &[("Dockerfile", &plain)]);
    let err = env.fails(["build", "--network=host", ctx.to_str().expect("utf-8 path")]);
    assert!(err.contains("--allow network.host"), "{err}");
}

#[test]
fn network_none_has_only_loopback_for_one_run_or_every_run_of_the_build() {
    let env = TestEnv::with_base("base");
    let host = host_address();
    let outside = serve(host);
    let df = format!(
        "FROM base\nRUN --network=none {INTERFACES}; {}\n",
        connect(host, outside)
    );
    assert_eq!(result_of(&env, &df, &[]), "lo\nrefused\n");
    let df = format!(
        "FROM base\nRUN {INTERFACES}\nRUN {}\n",
        connect(host, outside)
    );
    assert_eq!(result_of(&env, &df, &["--network=none"]), "lo\nrefused\n");
}

#[test]
fn a_run_sees_hosts_and_resolv_conf_as_buildkit_writes_them_and_they_stay_out_of_the_layer() {
    let env = TestEnv::with_base("base");
    let df = "FROM base\nRUN cat /etc/hosts /etc/resolv.conf > /result\n";
    let got = result_of(&env, df, &[]);
    let (hosts, resolv) = got.split_at(
        got.find("\n::1\tlocalhost ip6-localhost ip6-loopback\n")
            .expect("the ::1 line")
            + "\n::1\tlocalhost ip6-localhost ip6-loopback\n".len(),
    );
    assert_eq!(
        hosts,
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    // The host's nameservers that a RUN can reach (none on its loopback), or Google's.
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert!(!servers.is_empty(), "{resolv}");
    for s in &servers {
        let ip: IpAddr = s.trim().parse().expect("a nameserver address");
        assert!(!ip.is_loopback(), "{resolv}");
    }
    let host = fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for line in host.lines().filter(|l| l.starts_with("nameserver ")) {
        let ip: Option<IpAddr> = line["nameserver ".len()..].trim().parse().ok();
        if ip.is_some_and(|ip| !ip.is_loopback()) {
            assert!(resolv.contains(line), "{line} missing from {resolv}");
        }
    }
    // Mounted over the RUN's /etc, never written into its layer: the output's /etc files
    // are the base image's (it has neither).
    let out = env.dir().join("out");
    assert!(!out.join("etc/hosts").exists());
    assert!(!out.join("etc/resolv.conf").exists());
}
