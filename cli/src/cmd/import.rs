//! `strata import FILE|- [REPO[:TAG]]`: a rootfs tarball becomes a one-layer image, with
//! `--change` applying Dockerfile instructions to its config like `docker import -c`.

use crate::GlobalArgs;
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Compression, ImportOptions, Reference, Store};

/// Arguments of `strata import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD is refused, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long, value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message for the history
    #[arg(short, long)]
    message: Option<String>,
    /// Layer compression: gzip (default) or zstd
    #[arg(long, default_value = "gzip", value_parser = parse_compression)]
    compression: Compression,
    /// The tarball (plain, gzip or zstd), or `-` for stdin
    #[arg(value_name = "FILE|-")]
    file: String,
    /// The reference to tag the image with
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!("unknown compression {s:?}: use gzip or zstd")),
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let tags = match &args.reference {
        Some(r) => vec![Reference::parse_tag(r)?],
        None => Vec::new(),
    };
    let mut config = Map::new();
    for change in &args.change {
        apply_change(&mut config, change)
            .with_context(|| format!("invalid --change {change:?}"))?;
    }
    let store = Store::open(global.store_root())?;
    let options = ImportOptions {
        runtime_config: Value::Object(config),
        tags,
        compression: args.compression,
        source: args.file.clone(),
        message: args.message.clone(),
    };
    let id = if args.file == "-" {
        store.import(std::io::stdin().lock(), options)?
    } else {
        let file = fs_err::File::open(&args.file)?;
        store
            .import(file, options)
            .with_context(|| format!("failed to import {}", args.file))?
    };
    writeln!(std::io::stdout().lock(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}

/// Applies one Dockerfile instruction to a runtime config (Docker's field names).
pub(crate) fn apply_change(config: &mut Map<String, Value>, change: &str) -> anyhow::Result<()> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(k, r)| (k, r.trim()));
    match keyword.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command(rest)?));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command(rest)?));
        }
        "ENV" => {
            let env = config
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .context("Env is not a list")?;
            for (k, v) in pairs(rest, "ENV")? {
                let entry = format!("{k}={v}");
                let prefix = format!("{k}=");
                match env
                    .iter_mut()
                    .find(|e| e.as_str().is_some_and(|e| e.starts_with(&prefix)))
                {
                    Some(slot) => *slot = json!(entry),
                    None => env.push(json!(entry)),
                }
            }
        }
        "LABEL" => {
            let labels = config
                .entry("Labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .context("Labels is not an object")?;
            for (k, v) in pairs(rest, "LABEL")? {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = config
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .context("ExposedPorts is not an object")?;
            for p in words(rest)? {
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let vols = config
                .entry("Volumes")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .context("Volumes is not an object")?;
            let list = if rest.starts_with('[') {
                serde_json::from_str::<Vec<String>>(rest).context("VOLUME: invalid JSON list")?
            } else {
                words(rest)?
            };
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(one(rest, "WORKDIR")?));
        }
        "USER" => {
            config.insert("User".into(), json!(one(rest, "USER")?));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(one(rest, "STOPSIGNAL")?));
        }
        other => bail!("{other} is not supported by import --change"),
    }
    Ok(())
}

fn one(rest: &str, what: &str) -> anyhow::Result<String> {
    if rest.is_empty() {
        bail!("{what} requires exactly one argument");
    }
    Ok(rest.to_owned())
}

/// Exec form (`["a", "b"]`) or shell form (`/bin/sh -c "..."`).
fn command(rest: &str) -> anyhow::Result<Vec<String>> {
    if rest.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(rest)
    {
        return Ok(v);
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_owned()])
}

/// `K=V K2="v 2"`, or the legacy `K value with spaces`.
fn pairs(rest: &str, what: &str) -> anyhow::Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .with_context(|| format!("{what} needs KEY=VALUE or KEY VALUE"))?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{what}: {w:?} is not KEY=VALUE"))
        })
        .collect()
}

/// Splits on spaces, honouring double and single quotes and backslash escapes.
fn words(s: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unterminated quote");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_docker_config_fields() {
        let mut c = Map::new();
        for ch in [
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /entry.sh",
            "ENV A=1 B=\"two words\"",
            "ENV C 3 4",
            "ENV A=5",
            "LABEL org.x=y 'q r'=s",
            "EXPOSE 80 53/udp",
            "VOLUME [\"/data\"]",
            "WORKDIR /srv",
            "USER 1000:1000",
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        assert_eq!(
            Value::Object(c),
            json!({
                "Cmd": ["/bin/sh", "-c", "echo hi"],
                "Entrypoint": ["/bin/sh", "-c", "/entry.sh"],
                "Env": ["A=5", "B=two words", "C=3 4"],
                "Labels": {"org.x": "y", "q r": "s"},
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                "Volumes": {"/data": {}},
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "StopSignal": "SIGINT",
            })
        );
        assert!(apply_change(&mut Map::new(), "RUN true").is_err());
        assert!(apply_change(&mut Map::new(), "ENV A=\"x").is_err());
    }
}
