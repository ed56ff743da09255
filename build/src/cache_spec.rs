//! `--cache-to` and `--cache-from`: a build cache shared through a directory or a registry.
//!
//! `--cache-to type=local,dest=DIR` or `--cache-to type=registry,ref=HOST/REPO:TAG`, with
//! `[,mode=min|max][,compression=zstd|gzip|uncompressed][,image-manifest=true|false]
//! [,cache-mounts=true|false]`, exports the records of this build (`min`: the final image's
//! steps; `max`: every step, intermediate stages included) and their layers, and with
//! `cache-mounts=true` the `RUN --mount=type=cache` directories the build used; `--cache-from type=local,src=DIR` or
//! `--cache-from type=registry,ref=HOST/REPO:TAG` lets a build reuse them, fetching only the
//! layers it needs. Both places hold the one format of [`strata_cache::export_to`].

use crate::spec::{SpecError, fields, unknown_key};
use std::path::PathBuf;
use strata_cache::{CacheDb, CacheLocation, ExchangeError, ExportOptions, ExportReport};
use strata_graph::{Graph, NodeId, Target};
use strata_solver::{LocalBackend, LocalError, Output, Solved};
use strata_store::{Compression, Reference};

/// Which records `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps that make the final image.
    Min,
    /// Every step of the build.
    Max,
}

/// Where `--cache-to` writes or `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRef {
    /// `type=local`: a directory (an OCI layout).
    Local(PathBuf),
    /// `type=registry`: a registry tag.
    Registry(Reference),
}

impl CacheRef {
    /// Applies `f` to a local directory (the CLI makes it absolute).
    pub fn map_path(self, f: impl FnOnce(PathBuf) -> PathBuf) -> CacheRef {
        match self {
            CacheRef::Local(dir) => CacheRef::Local(f(dir)),
            other => other,
        }
    }
}

impl std::fmt::Display for CacheRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheRef::Local(dir) => write!(f, "{}", dir.display()),
            CacheRef::Registry(reference) => write!(f, "{reference}"),
        }
    }
}

/// A parsed `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// Where the cache goes.
    pub dest: CacheRef,
    /// Which records.
    pub mode: CacheMode,
    /// How the layers are compressed.
    pub compression: Compression,
    /// At a registry, an OCI image manifest instead of an index (BuildKit's option).
    pub image_manifest: bool,
    /// `cache-mounts=true`: the `RUN --mount=type=cache` directories the build used travel
    /// too, as layers (a delta on what this runner restored or exported last).
    pub cache_mounts: bool,
}

/// Why exporting the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheExportError {
    /// Reading a record or a layer failed.
    #[error(transparent)]
    Backend(#[from] LocalError),
    /// Writing the directory or pushing to the registry failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// `type=local` or `type=registry`: whether it is the registry.
fn is_registry(flag: &'static str, value: &str) -> Result<bool, SpecError> {
    match value {
        "local" => Ok(false),
        "registry" => Ok(true),
        other => Err(SpecError::UnknownType {
            flag,
            kind: other.to_owned(),
            supported: "type=local, a directory, or type=registry",
        }),
    }
}

fn parse_ref(flag: &'static str, value: &str) -> Result<Reference, SpecError> {
    Reference::parse(value).map_err(|_| SpecError::BadValue {
        flag,
        key: "ref",
        value: value.to_owned(),
        expected: "a registry reference (HOST/REPO:TAG)",
    })
}

fn parse_bool(flag: &'static str, key: &'static str, value: &str) -> Result<bool, SpecError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(SpecError::BadValue {
            flag,
            key,
            value: other.to_owned(),
            expected: "true or false",
        }),
    }
}

/// The place a spec names: `dest`/`src` for `type=local` (the default), `ref` for
/// `type=registry`.
fn place(
    flag: &'static str,
    registry: bool,
    dir: Option<PathBuf>,
    reference: Option<Reference>,
    dir_key: &'static str,
) -> Result<CacheRef, SpecError> {
    match (registry, dir, reference) {
        (false, Some(dir), None) => Ok(CacheRef::Local(dir)),
        (true, None, Some(reference)) => Ok(CacheRef::Registry(reference)),
        (false, _, _) => Err(SpecError::Missing {
            flag: format!("{flag} type=local"),
            needs: dir_key,
        }),
        (true, _, _) => Err(SpecError::Missing {
            flag: format!("{flag} type=registry"),
            needs: "ref=HOST/REPO:TAG (and no directory)",
        }),
    }
}

impl CacheTo {
    /// Parses `type=local,dest=DIR` or `type=registry,ref=REF`, with `mode`, `compression`,
    /// `image-manifest`.
    pub fn parse(spec: &str) -> Result<CacheTo, SpecError> {
        const FLAG: &str = "--cache-to";
        let mut registry = false;
        let mut dest = None;
        let mut reference = None;
        let mut mode = CacheMode::Min;
        let mut compression = Compression::Zstd;
        let mut image_manifest = false;
        let mut cache_mounts = false;
        for (k, v) in fields(FLAG, spec)? {
            match k {
                "type" => registry = is_registry(FLAG, v)?,
                "dest" => dest = Some(PathBuf::from(v)),
                "ref" => reference = Some(parse_ref(FLAG, v)?),
                "image-manifest" => image_manifest = parse_bool(FLAG, "image-manifest", v)?,
                "cache-mounts" => cache_mounts = parse_bool(FLAG, "cache-mounts", v)?,
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
                // BuildKit's options strata has no use for: strata always writes OCI media
                // types and never fails a build over an export it was told to ignore.
                "ignore-error" | "compression-level" | "force-compression" | "oci-mediatypes" => {}
                other => return Err(unknown_key(FLAG, spec, other)),
            }
        }
        let dest = place(FLAG, registry, dest, reference, "dest=DIR")?;
        Ok(CacheTo {
            dest,
            mode,
            compression,
            image_manifest,
            cache_mounts,
        })
    }
}

/// Parses `--cache-from type=local,src=DIR` (a bare `DIR` works too) or
/// `--cache-from type=registry,ref=REF`.
pub fn parse_cache_from(spec: &str) -> Result<CacheRef, SpecError> {
    const FLAG: &str = "--cache-from";
    if !spec.contains('=') {
        return Ok(CacheRef::Local(PathBuf::from(spec)));
    }
    let mut registry = false;
    let mut src = None;
    let mut reference = None;
    for (k, v) in fields(FLAG, spec)? {
        match k {
            "type" => registry = is_registry(FLAG, v)?,
            "src" => src = Some(PathBuf::from(v)),
            "ref" => reference = Some(parse_ref(FLAG, v)?),
            "digest" | "tag" => {}
            other => return Err(unknown_key(FLAG, spec, other)),
        }
    }
    place(FLAG, registry, src, reference, "src=DIR")
}

/// `--cache-to`: the records of the final image's steps (`min`) or of every step (`max`).
pub(crate) fn export_cache(
    backend: &LocalBackend,
    db: &CacheDb,
    graph: &Graph,
    target: &Target,
    solved: &Solved<Output>,
    to: &CacheTo,
    location: &CacheLocation,
) -> Result<ExportReport, CacheExportError> {
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
        let Some(key) = solved.keys.get(&node) else {
            continue;
        };
        let Some(record) = backend.record_for(key)? else {
            continue;
        };
        match solved.outputs.get(&node) {
            Some(Output::Fs(fs)) => {
                backend.ensure_layers(fs)?;
                records.push((*key, record));
            }
            // A step this build did not need (its consumer was a hit): exported when its
            // layer is in the store; one that is not came from a cache that still has it.
            _ => {
                let here = record
                    .layer
                    .as_ref()
                    .is_none_or(|l| backend.store().has_blob(&l.digest));
                if here {
                    records.push((*key, record));
                }
            }
        }
    }
    records.sort_by_key(|(k, _)| *k);
    let mounts = if to.cache_mounts {
        backend.cache_mount_layers(to.compression)?
    } else {
        Vec::new()
    };
    let chains = mounts
        .iter()
        .map(|m| (m.name().to_owned(), m.chain.clone()))
        .collect();
    let report = strata_cache::export_to(
        location,
        backend.store(),
        db,
        &records,
        &chains,
        &ExportOptions {
            compression: to.compression,
            image_manifest: to.image_manifest,
        },
    )?;
    backend.cache_mounts_exported(mounts)?;
    Ok(report)
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
                dest: CacheRef::Local("/c".into()),
                mode: CacheMode::Max,
                compression: Compression::Gzip,
                image_manifest: false,
                cache_mounts: false,
            }
        );
        let t = CacheTo::parse("type=local,dest=c").unwrap();
        assert_eq!((t.mode, t.compression), (CacheMode::Min, Compression::Zstd));
        assert_eq!(
            parse_cache_from("type=local,src=/c").unwrap(),
            CacheRef::Local("/c".into())
        );
        assert_eq!(
            parse_cache_from("/c").unwrap(),
            CacheRef::Local("/c".into())
        );
        for bad in [
            "type=registry",
            "type=registry,dest=/c",
            "type=registry,ref=HOST/UPPER:x",
            "type=registry,ref=h:5000/c,image-manifest=yes",
            "type=local",
            "type=local,dest=c,mode=all",
            "type=local,dest=c,compression=lz4",
            "type=local,dest=c,cache-mounts=yes",
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
            "--cache-from: type \"gha\" is not supported (type=local, a directory, or type=registry)"
        );
    }

    #[test]
    fn parses_buildkit_s_registry_cache_specs() {
        let t = CacheTo::parse(
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max,image-manifest=true,oci-mediatypes=true,cache-mounts=true",
        )
        .unwrap();
        assert_eq!(
            t,
            CacheTo {
                dest: CacheRef::Registry(Reference::parse("127.0.0.1:5000/app:cache").unwrap()),
                mode: CacheMode::Max,
                compression: Compression::Zstd,
                image_manifest: true,
                cache_mounts: true,
            }
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=127.0.0.1:5000/app:cache").unwrap(),
            CacheRef::Registry(Reference::parse("127.0.0.1:5000/app:cache").unwrap())
        );
        assert_eq!(
            CacheTo::parse("type=registry,dest=/c")
                .unwrap_err()
                .to_string(),
            "--cache-to type=registry needs ref=HOST/REPO:TAG (and no directory)"
        );
    }
}
