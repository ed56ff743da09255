//! `strata port CONTAINER [PRIVATE_PORT[/PROTO]]`, and how a container's network shows in
//! `ps` (the PORTS column) and `inspect` (`NetworkSettings`, `HostConfig.PortBindings`,
//! `Config.ExposedPorts`), as docker's.

use crate::GlobalArgs;
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::ExitCode;
use strata_store::{Container, PortBinding, Store};

/// Arguments of `strata port`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The container
    container: String,
    /// A private port, `80` or `80/udp`
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// The host ports a running container got (none when it does not run).
fn published(c: &Container) -> &[PortBinding] {
    c.state.network.as_ref().map_or(&[], |n| n.ports.as_slice())
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let c = store.container(&args.container)?;
    let mut out = std::io::stdout().lock();
    let Some(wanted) = &args.port else {
        for b in published(&c) {
            writeln!(out, "{} -> {}:{}", b.key(), b.host_ip_or_any(), b.host_port)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let key = if wanted.contains('/') {
        wanted.clone()
    } else {
        format!("{wanted}/tcp")
    };
    let found: Vec<&PortBinding> = published(&c).iter().filter(|b| b.key() == key).collect();
    if found.is_empty() {
        anyhow::bail!("No public port '{key}' published for {}", c.config.name);
    }
    for b in found {
        writeln!(out, "{}:{}", b.host_ip_or_any(), b.host_port)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ps`'s PORTS: `0.0.0.0:8080->80/tcp` for each published port, then `80/tcp` for each
/// exposed one that is not, while it runs (docker shows none for a stopped container).
pub(crate) fn ports_column(c: &Container) -> String {
    let Some(net) = &c.state.network else {
        return String::new();
    };
    let mut parts: Vec<String> = net
        .ports
        .iter()
        .map(|b| format!("{}:{}->{}", b.host_ip_or_any(), b.host_port, b.key()))
        .collect();
    for e in &c.config.exposed_ports {
        if !net.ports.iter().any(|b| &b.key() == e) {
            parts.push(e.clone());
        }
    }
    parts.join(", ")
}

/// `inspect`'s `HostConfig.PortBindings`: each `-p` as given (`HostPort` empty for any).
pub(crate) fn port_bindings(c: &Container) -> Value {
    let mut map = serde_json::Map::new();
    for b in &c.config.ports {
        let entry = json!({
            "HostIp": b.host_ip,
            "HostPort": if b.host_port == 0 { String::new() } else { b.host_port.to_string() },
        });
        if let Some(Value::Array(list)) = map.get_mut(&b.key()) {
            list.push(entry);
        } else {
            map.insert(b.key(), Value::Array(vec![entry]));
        }
    }
    Value::Object(map)
}

/// `inspect`'s `Config.ExposedPorts`: `{"80/tcp": {}}`.
pub(crate) fn exposed_ports(c: &Container) -> Value {
    Value::Object(
        c.config
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect(),
    )
}

/// `inspect`'s `NetworkSettings`: the address, gateway and MAC address while it runs on the
/// bridge, its ports (`null` for one exposed and not published), and `Networks` keyed by
/// the network's name.
pub(crate) fn network_settings(c: &Container) -> Value {
    let net = c.state.network.as_ref();
    let mut ports = serde_json::Map::new();
    if let Some(n) = net {
        for b in &n.ports {
            let entry = json!({"HostIp": b.host_ip_or_any(), "HostPort": b.host_port.to_string()});
            if let Some(Value::Array(list)) = ports.get_mut(&b.key()) {
                list.push(entry);
            } else {
                ports.insert(b.key(), Value::Array(vec![entry]));
            }
        }
        for e in &c.config.exposed_ports {
            ports.entry(e.clone()).or_insert(Value::Null);
        }
    }
    let text = |f: fn(&strata_store::NetworkState) -> &str| net.map_or("", f).to_owned();
    let (ip, gateway, mac) = (
        text(|n| &n.ip_address),
        text(|n| &n.gateway),
        text(|n| &n.mac_address),
    );
    let prefix = net.map_or(0, |n| n.prefix_len);
    let endpoint = json!({
        "IPAMConfig": null,
        "Links": null,
        "Aliases": null,
        "MacAddress": mac,
        "NetworkID": c.config.network,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DriverOpts": null,
    });
    json!({
        "Bridge": "",
        "Ports": ports,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "MacAddress": mac,
        "Networks": { c.config.network.clone(): endpoint },
    })
}
