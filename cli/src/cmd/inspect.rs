//! `strata inspect IMAGE...`: JSON shaped like `docker image inspect`.

use crate::GlobalArgs;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Image, Reference, Store};

/// Arguments of `strata inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Images (references or IDs)
    #[arg(value_name = "IMAGE", required = true)]
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
        match store.image(name) {
            Ok(image) => found.push(inspect(&image)),
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
