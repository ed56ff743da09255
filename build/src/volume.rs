//! A container's mounts as the user writes them: `-v HOST:CTR[:ro]`, `-v NAME:CTR`, `-v CTR`,
//! `--mount type=bind|volume|tmpfs,...` and `--tmpfs CTR[:size=N]`, read as docker reads them
//! (the `--mount` fields with the frontend's CSV reader, sizes with go-units' `RAMInBytes`),
//! into the [`MountPoint`]s a container's config keeps. The volumes they name are made when
//! the container is, and filled from the image on their first mount (docker's copy-up, in
//! `container.rs`).

use std::path::{Path, PathBuf};
use strata_store::{MountKind, MountPoint};

/// Why a mount was refused, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// A `-v` that does not read.
    #[error("invalid volume specification: '{spec}'{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    VolumeSpec {
        /// The `-v` value.
        spec: String,
        /// What is wrong, when more than the shape.
        reason: Option<String>,
    },
    /// A `--mount` field that does not read.
    #[error("invalid argument \"{spec}\" for \"--mount\" flag: {reason}")]
    MountFlag {
        /// The `--mount` value.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A mount docker's daemon refuses.
    #[error("invalid mount config for type \"{kind}\": {reason}")]
    Config {
        /// `bind`, `volume` or `tmpfs`.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two mounts on one path.
    #[error("Duplicate mount point: {0}")]
    Duplicate(String),
}

fn absolute(kind: &'static str, path: &str) -> Result<(), MountError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(MountError::Config {
            kind,
            reason: format!("invalid mount path: '{path}' mount path must be absolute"),
        })
    }
}

/// `-v`: `CTR` (an anonymous volume), `SRC:CTR[:MODE]` where `SRC` is a host path when it
/// starts with `/` (made when missing, as docker does for `-v`) and a volume's name else;
/// `MODE` is `ro` or `rw` (docker's SELinux and propagation modes are accepted and have no
/// effect).
pub fn parse_volume(spec: &str) -> Result<MountPoint, MountError> {
    let bad = |reason: Option<String>| MountError::VolumeSpec {
        spec: spec.to_owned(),
        reason,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, dest, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(bad(None)),
    };
    if dest.is_empty() || (parts.len() > 1 && source.is_empty()) {
        return Err(bad(None));
    }
    let mut readonly = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave"
            | "rslave" | "nocopy" => {}
            _ => return Err(bad(None)),
        }
    }
    let kind = if source.starts_with('/') {
        MountKind::Bind
    } else {
        MountKind::Volume
    };
    absolute(kind.as_str(), dest).map_err(|e| bad(Some(e.to_string())))?;
    Ok(MountPoint {
        kind,
        name: if kind == MountKind::Volume {
            source.to_owned()
        } else {
            String::new()
        },
        source: if kind == MountKind::Bind {
            PathBuf::from(source)
        } else {
            PathBuf::new()
        },
        destination: clean(dest),
        readonly,
        tmpfs_size: None,
        anonymous: source.is_empty(),
    })
}

/// `--mount type=bind|volume|tmpfs,source=,target=,readonly,tmpfs-size=`.
pub fn parse_mount(spec: &str) -> Result<MountPoint, MountError> {
    let flag = |reason: String| MountError::MountFlag {
        spec: spec.to_owned(),
        reason,
    };
    let fields = strata_frontend::parse_csv_record(spec).map_err(flag)?;
    let mut kind = MountKind::Volume;
    let (mut source, mut target, mut readonly, mut size) = (None, None, false, None);
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| {
            v.ok_or_else(|| flag(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.as_str() {
            "type" => {
                kind = match need(value)?.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => return Err(flag(format!("invalid mount type \"{other}\""))),
                }
            }
            "source" | "src" => source = Some(need(value)?),
            "target" | "destination" | "dst" => target = Some(need(value)?),
            "readonly" | "ro" => {
                readonly = match value.as_deref() {
                    None | Some("1" | "true" | "True" | "TRUE") => true,
                    Some("0" | "false" | "False" | "FALSE") => false,
                    Some(v) => {
                        return Err(flag(format!("invalid value for {key}: {v}")));
                    }
                }
            }
            "tmpfs-size" => {
                let v = need(value)?;
                size = Some(
                    strata_frontend::parse_ram_bytes(&v)
                        .ok_or_else(|| flag(format!("invalid value for {key}: {v}")))?,
                );
            }
            "bind-propagation" | "tmpfs-mode" | "volume-nocopy" | "consistency" => {}
            _ => return Err(flag(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    let kind_name = kind.as_str();
    let target = target.ok_or_else(|| flag("target is required".to_owned()))?;
    absolute(kind_name, &target)?;
    let source = source.unwrap_or_default();
    match kind {
        MountKind::Bind if source.is_empty() => {
            return Err(MountError::Config {
                kind: kind_name,
                reason: "field Source must not be empty".into(),
            });
        }
        MountKind::Bind if !Path::new(&source).exists() => {
            return Err(MountError::Config {
                kind: kind_name,
                reason: format!("bind source path does not exist: {source}"),
            });
        }
        MountKind::Bind => absolute(kind_name, &source)?,
        MountKind::Tmpfs if !source.is_empty() => {
            return Err(MountError::Config {
                kind: kind_name,
                reason: "field Source must be empty".into(),
            });
        }
        _ => {}
    }
    if size.is_some() && kind != MountKind::Tmpfs {
        return Err(MountError::Config {
            kind: kind_name,
            reason: "field TmpfsOptions must not be specified".into(),
        });
    }
    Ok(MountPoint {
        kind,
        name: if kind == MountKind::Volume {
            source.clone()
        } else {
            String::new()
        },
        source: if kind == MountKind::Bind {
            PathBuf::from(&source)
        } else {
            PathBuf::new()
        },
        destination: clean(&target),
        readonly,
        tmpfs_size: size,
        anonymous: kind == MountKind::Volume && source.is_empty(),
    })
}

/// `--tmpfs CTR[:OPTIONS]`: a tmpfs; of the options only `size=` is kept.
pub fn parse_tmpfs(spec: &str) -> Result<MountPoint, MountError> {
    let (dest, options) = spec.split_once(':').unwrap_or((spec, ""));
    absolute("tmpfs", dest)?;
    let mut size = None;
    for o in options.split(',') {
        if let Some(v) = o.strip_prefix("size=") {
            size = Some(
                strata_frontend::parse_ram_bytes(v).ok_or_else(|| MountError::Config {
                    kind: "tmpfs",
                    reason: format!("invalid size: {v}"),
                })?,
            );
        }
    }
    Ok(MountPoint {
        kind: MountKind::Tmpfs,
        name: String::new(),
        source: PathBuf::new(),
        destination: clean(dest),
        readonly: false,
        tmpfs_size: size,
        anonymous: false,
    })
}

/// `/a//b/` as `/a/b`.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Refuses two mounts on one path, as docker does.
pub(crate) fn check_duplicates(mounts: &[MountPoint]) -> Result<(), MountError> {
    let mut seen = std::collections::BTreeSet::new();
    for m in mounts {
        if !seen.insert(m.destination.as_str()) {
            return Err(MountError::Duplicate(m.destination.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_read_as_dockers() {
        let m = parse_volume("/srv/data:/data:ro").unwrap();
        assert_eq!(
            (m.kind, m.source, m.destination.as_str(), m.readonly),
            (MountKind::Bind, PathBuf::from("/srv/data"), "/data", true)
        );
        let m = parse_volume("cache:/var/cache/").unwrap();
        assert_eq!(
            (m.kind, m.name.as_str(), m.destination.as_str(), m.anonymous),
            (MountKind::Volume, "cache", "/var/cache", false)
        );
        let m = parse_volume("/scratch").unwrap();
        assert_eq!(
            (m.kind, m.name.as_str(), m.anonymous),
            (MountKind::Volume, "", true)
        );
        assert_eq!(
            parse_volume("a:b").unwrap_err().to_string(),
            "invalid volume specification: 'a:b': invalid mount config for type \"volume\": invalid mount path: 'b' mount path must be absolute"
        );
        assert!(parse_volume("/a:/b:bogus").is_err());
        assert!(parse_volume("/a:/b:ro:x").is_err());
        assert!(parse_volume(":/b").is_err());
    }

    #[test]
    fn mount_flags_read_as_dockers() {
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert_eq!((m.kind, m.tmpfs_size), (MountKind::Tmpfs, Some(1 << 20)));
        let m = parse_mount("type=volume,src=v,dst=/v,readonly").unwrap();
        assert_eq!((m.name.as_str(), m.readonly), ("v", true));
        let m = parse_mount("type=bind,source=/,target=/host,ro=false").unwrap();
        assert_eq!((m.kind, m.readonly), (MountKind::Bind, false));
        assert_eq!(
            parse_mount("type=bind,source=/no/such/dir,target=/x")
                .unwrap_err()
                .to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        );
        assert_eq!(
            parse_mount("type=bind,source=/").unwrap_err().to_string(),
            "invalid argument \"type=bind,source=/\" for \"--mount\" flag: target is required"
        );
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("type=tmpfs,source=x,target=/x").is_err());
        assert!(parse_mount("type=volume,target=/x,tmpfs-size=1m").is_err());
    }

    #[test]
    fn two_mounts_on_one_path_are_refused() {
        let a = parse_volume("/a:/x").unwrap();
        let b = parse_tmpfs("/x/").unwrap();
        assert_eq!(
            check_duplicates(&[a, b]).unwrap_err().to_string(),
            "Duplicate mount point: /x"
        );
    }
}
