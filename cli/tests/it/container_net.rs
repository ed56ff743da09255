//! Containers' networks (issue 14 §3): the bridge `strata1` (each container's own address,
//! `/etc/hosts`, reaching each other), `--network none`, `-p` published ports forwarded by the
//! monitor, `ps`'s PORTS, `strata port`, `inspect`'s `NetworkSettings`, and docker's errors
//! for a bad `-p` or a port in use. Only published ports on 127.0.0.1 and containers' own
//! addresses are ever connected to. The tests named `bridge_*` need root's bridge (veths,
//! containers reaching each other); the others run in the rootless pass too, where the
//! network is slirp4netns.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::containers::Env;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

/// Starts a detached busybox httpd serving `body` as `/index.html` on port 80, with `args`
/// before the image (`--name`, `-p`...); returns the container's ID.
fn web(env: &Env, args: &[&str], body: &str) -> String {
    let script = format!(
        "mkdir -p /www && printf '%s' '{body}' > /www/index.html && exec httpd -f -p 80 -h /www"
    );
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["base", "sh", "-c", &script]);
    let (code, out, err) = env.run(&all);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

/// GET / on 127.0.0.1:`port`, retried while the server starts (connection refused); the
/// whole response.
fn get(port: u16) -> String {
    let start = Instant::now();
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if !resp.is_empty() || start.elapsed() > Duration::from_secs(20) {
                    return resp;
                }
            }
            Err(e) if start.elapsed() > Duration::from_secs(20) => panic!("connect {port}: {e}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host port `strata port` prints for the container's `private` port.
fn host_port(env: &Env, name: &str, private: &str) -> u16 {
    let out = env.0.ok(["port", name, private]);
    let line = out.lines().next().unwrap();
    line.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn a_published_port_reaches_the_containers_server() {
    let env = Env::new();
    web(
        &env,
        &["--name", "web", "-p", "127.0.0.1::80"],
        "hello from the bridge",
    );
    let port = host_port(&env, "web", "80");
    assert_ne!(port, 0);
    let resp = get(port);
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello from the bridge"), "{resp}");
    // docker's lines and columns.
    assert_eq!(
        env.0.ok(["port", "web"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    let ps = env.0.ok(["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps, format!("127.0.0.1:{port}->80/tcp\n"));
    let (code, _, err) = env.run(&["port", "web", "81"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("No public port '81/tcp' published for web"),
        "{err}"
    );
    let c = env.inspect("web");
    let net = &c["NetworkSettings"];
    assert_eq!(
        net["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
    );
    assert_eq!(
        c["HostConfig"]["PortBindings"]["80/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": ""}])
    );
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");
    let ip: std::net::Ipv4Addr = net["IPAddress"].as_str().unwrap().parse().unwrap();
    assert_eq!(net["Networks"]["bridge"]["IPAddress"], ip.to_string());
    assert_eq!(net["Networks"]["bridge"]["Gateway"], net["Gateway"]);
}

#[test]
fn a_fixed_host_port_is_published_and_freed_by_rm() {
    let env = Env::new();
    // A port free now, that the container then asks for by number.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("127.0.0.1:{port}:80");
    let id = web(&env, &["--name", "fixed", "-p", &spec], "fixed port");
    assert!(get(port).ends_with("fixed port"));
    env.0.ok(["rm", "-f", &id]);
    // The port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn bridge_containers_reach_each_other_by_address_and_none_reaches_nothing() {
    let env = Env::new();
    let id = web(&env, &["--name", "server"], "between containers");
    let c = env.inspect("server");
    let net = &c["NetworkSettings"];
    let ip = net["IPAddress"].as_str().unwrap().to_owned();
    // docker's MAC address, the bridge's /16 and its first address as the gateway.
    let addr: std::net::Ipv4Addr = ip.parse().unwrap();
    let [a, b, c3, d] = addr.octets();
    assert_eq!(
        net["MacAddress"],
        format!("02:42:{a:02x}:{b:02x}:{c3:02x}:{d:02x}")
    );
    assert_eq!(net["IPPrefixLen"], 16);
    assert_eq!(net["Gateway"], format!("{a}.{b}.0.1"));
    let url = format!("http://{ip}/");
    let script =
        format!("for i in $(seq 100); do wget -qO- {url} && exit 0; sleep 0.1; done; exit 1");
    let (code, out, err) = env.run(&["run", "--rm", "base", "sh", "-c", &script]);
    assert_eq!((code, out.as_str()), (0, "between containers\n"), "{err}");
    // docker's /etc/hosts: the container's own address under its hostname.
    let (code, hosts, err) = env.run(&[
        "run",
        "--rm",
        "--hostname",
        "myhost",
        "base",
        "sh",
        "-c",
        "cat /etc/hosts; ip -4 -o addr show eth0",
    ]);
    assert_eq!(code, 0, "{err}");
    let addr = hosts
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains(&format!("\n{addr}\tmyhost\n")), "{hosts}");
    // --network none: loopback only, the other container out of reach.
    let (code, out, _) = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "base",
        "sh",
        "-c",
        &format!("ls /sys/class/net; nc -w 2 {ip} 80 </dev/null"),
    ]);
    assert_eq!((code, out.as_str()), (1, "lo\n"));
    // The container's veth on the host, named after its network namespace, goes with it.
    let pid = c["State"]["Pid"].as_u64().unwrap();
    let ns = fs_err::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    let veth = format!(
        "/sys/class/net/stc{}",
        std::os::unix::fs::MetadataExt::ino(&ns)
    );
    assert!(std::path::Path::new(&veth).exists(), "{veth}");
    env.0.ok(["rm", "-f", &id]);
    // The kernel deletes it with the namespace, shortly after the namespace's last process.
    let start = Instant::now();
    while std::path::Path::new(&veth).exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!std::path::Path::new(&veth).exists(), "{veth} is left");
}

#[test]
fn a_bad_port_spec_or_a_port_in_use_is_dockers_error_and_leaves_nothing() {
    let env = Env::new();
    for (spec, msg) in [
        ("x", "invalid containerPort: x"),
        ("y:80", "invalid hostPort: y"),
        ("80/ftp", "invalid proto: ftp"),
    ] {
        let (code, _, err) = env.run(&["run", "-d", "-p", spec, "base", "true"]);
        assert_eq!(code, 125, "{spec}: {err}");
        assert!(err.contains(msg), "{spec}: {err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}:80");
    for detach in [true, false] {
        let mut args = vec!["run"];
        if detach {
            args.push("-d");
        }
        args.extend_from_slice(&["-p", &spec, "base", "true"]);
        let (code, _, err) = env.run(&args);
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains(&format!(
                "Bind for 127.0.0.1:{port} failed: port is already allocated"
            )),
            "{err}"
        );
    }
    assert_eq!(env.0.ok(["ps", "-aq"]), "");
}

#[test]
fn exposed_ports_show_in_ps_when_not_published() {
    let env = Env::new();
    crate::container_run::build(&env, "exposing", "FROM base\nEXPOSE 80 53/udp\n", "s");
    let script = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www";
    let (code, _, err) = env.run(&[
        "run",
        "-d",
        "--name",
        "e",
        "-p",
        "127.0.0.1::80",
        "exposing",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "{err}");
    let port = host_port(&env, "e", "80/tcp");
    assert_eq!(
        env.0.ok(["ps", "--format", "{{.Ports}}"]),
        format!("127.0.0.1:{port}->80/tcp, 53/udp\n")
    );
    let c = env.inspect("e");
    assert_eq!(
        c["NetworkSettings"]["Ports"]["53/udp"],
        serde_json::Value::Null
    );
    assert_eq!(
        c["Config"]["ExposedPorts"],
        serde_json::json!({"80/tcp": {}, "53/udp": {}})
    );
    env.0.ok(["stop", "-t", "0", "e"]);
    // Stopped: no ports, no address (docker's).
    assert_eq!(env.0.ok(["ps", "-a", "--format", "{{.Ports}}"]), "\n");
    assert_eq!(env.inspect("e")["NetworkSettings"]["IPAddress"], "");
    env.0.ok(["rm", "e"]);
    // -P: each exposed port on a free port of every address.
    let (code, _, err) = env.run(&[
        "run", "-d", "--name", "all", "-P", "exposing", "sh", "-c", script,
    ]);
    assert_eq!(code, 0, "{err}");
    let (tcp, udp) = (
        host_port(&env, "all", "80"),
        host_port(&env, "all", "53/udp"),
    );
    assert_eq!(
        env.0.ok(["ps", "--format", "{{.Ports}}"]),
        format!("0.0.0.0:{udp}->53/udp, 0.0.0.0:{tcp}->80/tcp\n")
    );
    assert!(get(tcp).ends_with("hi\n"));
}

#[test]
fn a_killed_monitor_leaves_no_address_and_frees_its_ports() {
    let env = Env::new();
    let id = web(&env, &["--name", "k", "-p", "127.0.0.1::80"], "killed");
    let port = host_port(&env, "k", "80");
    assert!(get(port).ends_with("killed"));
    crate::containers::kill9(env.state(&id)["monitor_pid"].as_u64().unwrap());
    // The proxy's sockets go with the monitor, the repair clears what it recorded.
    crate::containers::eventually("the port is free", || {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    let c = env.inspect("k");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["NetworkSettings"]["IPAddress"], "");
    assert_eq!(c["NetworkSettings"]["Ports"], serde_json::json!({}));
    assert_eq!(env.0.ok(["ps", "-a", "--format", "{{.Ports}}"]), "\n");
    assert_eq!(env.0.ok(["port", "k"]), "");
    assert!(env.state(&id).get("network").is_none());
    // It starts again with its ports.
    env.0.ok(["start", "k"]);
    let again = host_port(&env, "k", "80");
    assert!(get(again).ends_with("killed"));
}
