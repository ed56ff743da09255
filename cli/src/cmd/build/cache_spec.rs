//! `--cache-to` and `--cache-from`: a build cache shared through a directory.
//!
//! `--cache-to type=local,dest=DIR[,mode=min|max][,compression=zstd|gzip|uncompressed]`
//! exports the records of this build (`min`: the final image's steps; `max`: every step,
//! intermediate stages included) and their layers; `--cache-from type=local,src=DIR` lets a
//! build reuse them, fetching only the layers it needs.

use anyhow::{Context as _, bail};
use std::path::PathBuf;
use strata_store::Compression;

/// Which records `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheMode {
    /// The steps that make the final image.
    Min,
    /// Every step of the build.
    Max,
}

/// A parsed `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheTo {
    pub(crate) dest: PathBuf,
    pub(crate) mode: CacheMode,
    pub(crate) compression: Compression,
}

fn fields(spec: &str) -> anyhow::Result<Vec<(&str, &str)>> {
    spec.split(',')
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .with_context(|| format!("{spec:?}: {f:?} is not KEY=VALUE"))
        })
        .collect()
}

fn check_type(flag: &str, value: &str) -> anyhow::Result<()> {
    if value != "local" {
        bail!("{flag}: type {value:?} is not supported (only type=local, a directory)");
    }
    Ok(())
}

impl CacheTo {
    pub(crate) fn parse(spec: &str) -> anyhow::Result<CacheTo> {
        let mut dest = None;
        let mut mode = CacheMode::Min;
        let mut compression = Compression::Zstd;
        for (k, v) in fields(spec)? {
            match k {
                "type" => check_type("--cache-to", v)?,
                "dest" => dest = Some(PathBuf::from(v)),
                "mode" => {
                    mode = match v {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        other => bail!("--cache-to: mode {other:?} is not min or max"),
                    }
                }
                "compression" => compression = match v {
                    "uncompressed" => Compression::None,
                    other => Compression::from_name(other).with_context(|| {
                        format!(
                            "--cache-to: compression {other:?} is not zstd, gzip or uncompressed"
                        )
                    })?,
                },
                "ignore-error" | "compression-level" | "force-compression" => {}
                other => bail!("--cache-to: unknown key {other:?}"),
            }
        }
        let dest = dest.context("--cache-to needs dest=DIR")?;
        Ok(CacheTo {
            dest,
            mode,
            compression,
        })
    }
}

/// Parses `--cache-from type=local,src=DIR` (a bare `DIR` works too).
pub(crate) fn parse_cache_from(spec: &str) -> anyhow::Result<PathBuf> {
    if !spec.contains('=') {
        return Ok(PathBuf::from(spec));
    }
    let mut src = None;
    for (k, v) in fields(spec)? {
        match k {
            "type" => check_type("--cache-from", v)?,
            "src" => src = Some(PathBuf::from(v)),
            "digest" | "tag" => {}
            other => bail!("--cache-from: unknown key {other:?}"),
        }
    }
    src.context("--cache-from needs src=DIR")
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
        assert!(parse_cache_from("type=gha").is_err());
    }
}
