//! `--output` / `-o`: where a build's result goes.
//!
//! `type=image` (the default) stores it; `type=oci` and `type=docker` write one tarball that is
//! both an OCI image layout and a docker archive (`docker load`, skopeo and umoci read it);
//! `type=tar` and `type=local` write the final filesystem, as a tar or into a directory.
//! `-o DIR` is short for `type=local,dest=DIR`, `-o -` for a tar on standard output.

use anyhow::{Context as _, bail};
use std::path::PathBuf;

/// Where an exported file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A file (replaced atomically).
    File(PathBuf),
    /// Standard output.
    Stdout,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputSpec {
    /// Into the store.
    Image,
    /// An OCI image layout tarball.
    Oci(Dest),
    /// A docker archive.
    Docker(Dest),
    /// The final filesystem as a tar.
    Tar(Dest),
    /// The final filesystem in a directory.
    Local(PathBuf),
}

impl OutputSpec {
    /// Parses `type=oci,dest=out.tar`, `DIR` or `-`.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<OutputSpec> {
        if spec == "-" {
            return Ok(OutputSpec::Tar(Dest::Stdout));
        }
        if !spec.contains('=') {
            return Ok(OutputSpec::Local(PathBuf::from(spec)));
        }
        let mut kind = None;
        let mut dest = None;
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .with_context(|| format!("--output {spec:?}: {field:?} is not KEY=VALUE"))?;
            match k.trim() {
                "type" => kind = Some(v.trim().to_owned()),
                "dest" => dest = Some(v.trim().to_owned()),
                // Accepted for compatibility; strata names images with -t.
                "name" | "push" | "compression" | "oci-mediatypes" => {}
                other => bail!("--output {spec:?}: unknown key {other:?}"),
            }
        }
        let kind = kind.unwrap_or_else(|| "local".to_owned());
        let file = |dest: Option<String>| -> anyhow::Result<Dest> {
            match dest.as_deref() {
                None => bail!("--output type={kind} needs dest=FILE (or dest=- for stdout)"),
                Some("-") => Ok(Dest::Stdout),
                Some(f) => Ok(Dest::File(PathBuf::from(f))),
            }
        };
        Ok(match kind.as_str() {
            "image" | "registry" if dest.is_none() => OutputSpec::Image,
            "oci" => OutputSpec::Oci(file(dest)?),
            "docker" => OutputSpec::Docker(file(dest)?),
            "tar" => OutputSpec::Tar(file(dest)?),
            "local" => match dest {
                Some(d) if d != "-" => OutputSpec::Local(PathBuf::from(d)),
                _ => bail!("--output type=local needs dest=DIR"),
            },
            other => bail!("--output: unknown type {other:?} (image, oci, docker, tar or local)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_s_forms() {
        let p = |s| OutputSpec::parse(s).unwrap();
        assert_eq!(p("out"), OutputSpec::Local("out".into()));
        assert_eq!(p("-"), OutputSpec::Tar(Dest::Stdout));
        assert_eq!(p("type=image"), OutputSpec::Image);
        assert_eq!(
            p("type=oci,dest=a.tar"),
            OutputSpec::Oci(Dest::File("a.tar".into()))
        );
        assert_eq!(p("type=docker,dest=-"), OutputSpec::Docker(Dest::Stdout));
        assert_eq!(
            p("type=tar,dest=fs.tar"),
            OutputSpec::Tar(Dest::File("fs.tar".into()))
        );
        assert_eq!(p("type=local,dest=d"), OutputSpec::Local("d".into()));
        assert_eq!(p("dest=d"), OutputSpec::Local("d".into()));
        for bad in [
            "type=oci",
            "type=zip,dest=x",
            "type=tar,dest=x,color=red",
            "type=local",
        ] {
            assert!(OutputSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
