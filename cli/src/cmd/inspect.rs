//! `strata inspect NAME...`: JSON shaped like `docker inspect`: a container (by name, ID or ID
//! prefix) as `docker container inspect` shows it, else an image as `docker image inspect`.

use crate::GlobalArgs;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Container, ContainerStatus, Image, Reference, Store};

/// Arguments of `strata inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Containers (names or IDs) or images (references or IDs)
    #[arg(value_name = "NAME", required = true)]
    images: Vec<String>,
}

/// `docker image inspect`'s fields, in its order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    docker_version: String,
    author: String,
    config: Value,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    size: u64,
    #[serde(rename = "RootFS")]
    root_fs: RootFs,
    metadata: Metadata,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RootFs {
    #[serde(rename = "Type")]
    kind: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    last_tag_time: String,
}

/// What `inspect` found for a name: a container or an image.
#[derive(Serialize)]
#[serde(untagged)]
enum Found {
    Container(Box<ContainerInspect>),
    Image(Box<Inspect>),
}

/// `docker container inspect`'s fields strata has, in its order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerInspect {
    id: String,
    created: String,
    path: String,
    args: Vec<String>,
    state: ContainerStateInspect,
    image: String,
    log_path: std::path::PathBuf,
    name: String,
    restart_count: u32,
    host_config: HostConfig,
    graph_driver: GraphDriver,
    mounts: Vec<MountInspect>,
    config: ContainerConfigInspect,
    network_settings: serde_json::Value,
}

/// docker's `Mounts` entry.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MountInspect {
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    source: std::path::PathBuf,
    destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<&'static str>,
    mode: &'static str,
    #[serde(rename = "RW")]
    rw: bool,
    propagation: &'static str,
}

fn inspect_mount(store: &Store, m: &strata_store::MountPoint) -> MountInspect {
    use strata_store::MountKind;
    let volume = m.kind == MountKind::Volume;
    MountInspect {
        kind: m.kind.as_str(),
        name: volume.then(|| m.name.clone()),
        source: match m.kind {
            MountKind::Bind => m.source.clone(),
            MountKind::Volume => store.volume_data(&m.name),
            MountKind::Tmpfs => std::path::PathBuf::new(),
        },
        destination: m.destination.clone(),
        driver: volume.then_some("local"),
        mode: match m.kind {
            MountKind::Bind if m.readonly => "ro",
            MountKind::Volume => "z",
            _ => "",
        },
        rw: !m.readonly,
        propagation: if m.kind == MountKind::Bind {
            "rprivate"
        } else {
            ""
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerStateInspect {
    status: &'static str,
    running: bool,
    paused: bool,
    restarting: bool,
    #[serde(rename = "OOMKilled")]
    oom_killed: bool,
    dead: bool,
    pid: u32,
    exit_code: i32,
    error: String,
    started_at: String,
    finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<strata_store::Health>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig {
    network_mode: String,
    restart_policy: RestartPolicy,
    auto_remove: bool,
    readonly_rootfs: bool,
    log_config: LogConfig,
    init: bool,
    port_bindings: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LogConfig {
    #[serde(rename = "Type")]
    kind: &'static str,
    config: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicy {
    name: String,
    maximum_retry_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GraphDriver {
    data: GraphDriverData,
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GraphDriverData {
    upper_dir: std::path::PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfigInspect {
    hostname: String,
    user: String,
    attach_stdin: bool,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Vec<String>,
    cmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<serde_json::Value>,
    image: String,
    working_dir: String,
    entrypoint: Option<Vec<String>>,
    stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<u32>,
    labels: std::collections::BTreeMap<String, String>,
    exposed_ports: serde_json::Value,
}

fn inspect_container(store: &Store, c: &Container) -> ContainerInspect {
    let (cfg, st) = (&c.config, &c.state);
    let argv = cfg.argv();
    let (path, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let hostname = if cfg.hostname.is_empty() {
        cfg.short_id().to_owned()
    } else {
        cfg.hostname.clone()
    };
    let (restart, retries) = match cfg.restart.split_once(':') {
        Some((name, n)) => (name.to_owned(), n.parse::<u32>().unwrap_or(0)),
        None => (cfg.restart.clone(), 0),
    };
    let paused = strata_build::container_paused(c);
    ContainerInspect {
        id: cfg.id.clone(),
        created: cfg.created.clone(),
        path,
        args,
        state: ContainerStateInspect {
            status: if paused { "paused" } else { st.status.as_str() },
            running: st.status == ContainerStatus::Running,
            paused,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: st.pid,
            exit_code: st.exit_code,
            error: st.error.clone(),
            started_at: st.started_at.clone(),
            finished_at: st.finished_at.clone(),
            health: st.health.clone(),
        },
        image: cfg.image_id.to_string(),
        log_path: c.log_path(),
        name: format!("/{}", cfg.name),
        restart_count: st.restart_count,
        host_config: HostConfig {
            network_mode: cfg.network.clone(),
            restart_policy: RestartPolicy {
                name: restart,
                maximum_retry_count: retries,
            },
            auto_remove: cfg.auto_remove,
            readonly_rootfs: cfg.read_only,
            log_config: LogConfig {
                kind: "json-file",
                config: cfg.log_config.clone(),
            },
            init: cfg.init,
            port_bindings: super::port::port_bindings(c),
        },
        graph_driver: GraphDriver {
            data: GraphDriverData {
                upper_dir: c.upper_dir(),
            },
            name: "overlay2",
        },
        mounts: cfg.mounts.iter().map(|m| inspect_mount(store, m)).collect(),
        config: ContainerConfigInspect {
            hostname,
            user: cfg.user.clone(),
            attach_stdin: cfg.stdio.attach_stdin,
            tty: cfg.stdio.tty,
            open_stdin: cfg.stdio.open_stdin,
            stdin_once: cfg.stdio.stdin_once,
            env: cfg.env.clone(),
            cmd: cfg.cmd.clone(),
            healthcheck: cfg.healthcheck.clone(),
            image: cfg.image.clone(),
            working_dir: cfg.working_dir.clone(),
            entrypoint: (!cfg.entrypoint.is_empty()).then(|| cfg.entrypoint.clone()),
            stop_signal: cfg.stop_signal.clone(),
            stop_timeout: cfg.stop_timeout,
            labels: cfg.labels.clone(),
            exposed_ports: super::port::exposed_ports(c),
        },
        network_settings: super::port::network_settings(c),
    }
}

fn inspect(image: &Image) -> Inspect {
    let cfg = &image.config;
    let str_field = |k: &str| {
        cfg.extra
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // What it was pulled as or pushed to; for a local-only image, its tags with the local
    // manifest digest (as before registries existed).
    let mut repos: Vec<String> = image
        .repo_digests
        .iter()
        .map(|d| Reference::parse(d).map_or_else(|_| d.clone(), |r| r.familiar()))
        .collect();
    for t in image.tags.iter().filter(|_| image.repo_digests.is_empty()) {
        let d = format!("{}@{}", t.familiar_name(), image.manifest_digest);
        if !repos.contains(&d) {
            repos.push(d);
        }
    }
    Inspect {
        id: image.id.to_string(),
        repo_tags: image
            .tags
            .iter()
            .filter(|t| t.tag().is_some())
            .map(|t| t.familiar())
            .collect(),
        repo_digests: repos,
        parent: String::new(),
        comment: str_field("comment"),
        created: cfg.created.clone().unwrap_or_default(),
        docker_version: str_field("docker_version"),
        author: cfg.author.clone().unwrap_or_default(),
        config: cfg
            .config
            .clone()
            .unwrap_or(Value::Object(serde_json::Map::new())),
        architecture: cfg.architecture.clone(),
        variant: cfg.variant.clone(),
        os: cfg.os.clone(),
        size: image.size(),
        root_fs: RootFs {
            kind: cfg.rootfs.kind.clone(),
            layers: cfg
                .rootfs
                .diff_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        metadata: Metadata {
            last_tag_time: image.last_tag_time.clone().unwrap_or_default(),
        },
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.images {
        if let Ok(c) = store.container(name) {
            found.push(Found::Container(Box::new(inspect_container(&store, &c))));
            continue;
        }
        match store.image(name) {
            Ok(image) => found.push(Found::Image(Box::new(inspect(&image)))),
            Err(e) => {
                failed = true;
                let _ = crate::report::report(&anyhow::Error::new(e));
            }
        }
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    found.serialize(&mut ser)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    writeln!(out)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
