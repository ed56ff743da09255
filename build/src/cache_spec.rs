//! `--cache-to` and `--cache-from`: a build cache shared through a directory.
//!
//! `--cache-to type=local,dest=DIR[,mode=min|max][,compression=zstd|gzip|uncompressed]`
//! exports the records of this build (`min`: the final image's steps; `max`: every step,
//! intermediate stages included) and their layers; `--cache-from type=local,src=DIR` lets a
//! build reuse them, fetching only the layers it needs.

use crate::spec::{SpecError, fields, unknown_key};
use std::path::PathBuf;
use strata_cache::{CacheDb, ExchangeError, ExportOptions};
use strata_graph::{Graph, NodeId, Target};
use strata_solver::{LocalBackend, LocalError, Output, Solved};
use strata_store::{Compression, Store};

/// Which records `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps that make the final image.
    Min,
    /// Every step of the build.
    Max,
}

/// A parsed `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// The directory the cache goes to (an OCI layout).
    pub dest: PathBuf,
    /// Which records.
    pub mode: CacheMode,
    /// How the layers are compressed.
    pub compression: Compression,
}

/// Why exporting the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheExportError {
    /// Reading a record or a layer failed.
    #[error(transparent)]
    Backend(#[from] LocalError),
    /// Writing the directory failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

fn check_type(flag: &'static str, value: &str) -> Result<(), SpecError> {
    if value != "local" {
        return Err(SpecError::UnknownType {
            flag,
            kind: value.to_owned(),
            supported: "only type=local, a directory",
        });
    }
    Ok(())
}

impl CacheTo {
    /// Parses `type=local,dest=DIR[,mode=...][,compression=...]`.
    pub fn parse(spec: &str) -> Result<CacheTo, SpecError> {
        const FLAG: &str = "--cache-to";
        let mut dest = None;
        let mut mode = CacheMode::Min;
        let mut compression = Compression::Zstd;
        for (k, v) in fields(FLAG, spec)? {
            match k {
                "type" => check_type(FLAG, v)?,
                "dest" => dest = Some(PathBuf::from(v)),
                "mode" => {
                    mode = match v {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        other => {
                            return Err(SpecError::BadValue {
                                flag: FLAG,
                                key: "mode",
                                value: other.to_owned(),
                                expected: "min or max",
                            });
                        }
                    }
                }
                "compression" => {
                    compression = match v {
                        "uncompressed" => Compression::None,
                        other => {
                            Compression::from_name(other).ok_or_else(|| SpecError::BadValue {
                                flag: FLAG,
                                key: "compression",
                                value: other.to_owned(),
                                expected: "zstd, gzip or uncompressed",
                            })?
                        }
                    }
                }
                "ignore-error" | "compression-level" | "force-compression" => {}
                other => return Err(unknown_key(FLAG, spec, other)),
            }
        }
        let dest = dest.ok_or(SpecError::Missing {
            flag: FLAG.to_owned(),
            needs: "dest=DIR",
        })?;
        Ok(CacheTo {
            dest,
            mode,
            compression,
        })
    }
}

/// Parses `--cache-from type=local,src=DIR` (a bare `DIR` works too) into the directory.
pub fn parse_cache_from(spec: &str) -> Result<PathBuf, SpecError> {
    const FLAG: &str = "--cache-from";
    if !spec.contains('=') {
        return Ok(PathBuf::from(spec));
    }
    let mut src = None;
    for (k, v) in fields(FLAG, spec)? {
        match k {
            "type" => check_type(FLAG, v)?,
            "src" => src = Some(PathBuf::from(v)),
            "digest" | "tag" => {}
            other => return Err(unknown_key(FLAG, spec, other)),
        }
    }
    src.ok_or(SpecError::Missing {
        flag: FLAG.to_owned(),
        needs: "src=DIR",
    })
}

/// `--cache-to`: the records of the final image's steps (`min`) or of every step (`max`).
pub(crate) fn export_cache(
    backend: &LocalBackend,
    store: &Store,
    db: &CacheDb,
    graph: &Graph,
    target: &Target,
    solved: &Solved<Output>,
    to: &CacheTo,
) -> Result<(), CacheExportError> {
    let nodes: Vec<NodeId> = match to.mode {
        CacheMode::Min => {
            let mut chain = Vec::new();
            let mut id = Some(target.node);
            while let Some(n) = id {
                chain.push(n);
                id = graph.node(n).inputs.first().copied();
            }
            chain
        }
        CacheMode::Max => solved.keys.keys().copied().collect(),
    };
    let mut records = Vec::new();
    for node in nodes {
        if !graph.node(node).op.makes_layer() {
            continue;
        }
        let (Some(key), Some(Output::Fs(fs))) = (solved.keys.get(&node), solved.outputs.get(&node))
        else {
            continue;
        };
        if let Some(record) = backend.record_for(key)? {
            backend.ensure_layers(fs)?;
            records.push((*key, record));
        }
    }
    records.sort_by_key(|(k, _)| *k);
    strata_cache::export(
        &to.dest,
        store,
        db,
        &records,
        &ExportOptions {
            compression: to.compression,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_s_local_cache_specs() {
        let t = CacheTo::parse("type=local,dest=/c,mode=max,compression=gzip").unwrap();
        assert_eq!(
            t,
            CacheTo {
                dest: "/c".into(),
                mode: CacheMode::Max,
                compression: Compression::Gzip
            }
        );
        let t = CacheTo::parse("type=local,dest=c").unwrap();
        assert_eq!((t.mode, t.compression), (CacheMode::Min, Compression::Zstd));
        assert_eq!(
            parse_cache_from("type=local,src=/c").unwrap(),
            PathBuf::from("/c")
        );
        assert_eq!(parse_cache_from("/c").unwrap(), PathBuf::from("/c"));
        for bad in [
            "type=registry,ref=x",
            "type=local",
            "type=local,dest=c,mode=all",
            "type=local,dest=c,compression=lz4",
        ] {
            assert!(CacheTo::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CacheTo::parse("type=local,dest=c,mode=all")
                .unwrap_err()
                .to_string(),
            "--cache-to: mode \"all\" is not min or max"
        );
        assert_eq!(
            parse_cache_from("type=gha").unwrap_err().to_string(),
            "--cache-from: type \"gha\" is not supported (only type=local, a directory)"
        );
    }
}
