//! `--output` / `-o`: where a build's result goes.
//!
//! `type=image` (the default) stores it, `name=` adding a name and `push=true` pushing it to
//! the registry each name of the image says; `type=registry` is `type=image,push=true`
//! (`--push`); `type=oci` and `type=docker` write one tarball that is
//! both an OCI image layout and a docker archive (`docker load`, skopeo and umoci read it);
//! `type=tar` and `type=local` write the final filesystem, as a tar or into a directory.
//! `-o DIR` is short for `type=local,dest=DIR`, `-o -` for a tar on standard output.

use crate::spec::{SpecError, fields, unknown_key};
use std::io::Write;
use std::path::{Path, PathBuf};
use strata_solver::{Fs, LocalBackend, LocalError};
use strata_store::StoreError;

/// Where an exported file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A file (replaced atomically).
    File(PathBuf),
    /// The request's standard output writer.
    Stdout,
}

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// Into the store, and to a registry when `push` is set.
    Image {
        /// `name=`: one more name for the image (as `-t`).
        name: Option<String>,
        /// `push=true` (or `type=registry`): push every name of the image.
        push: bool,
    },
    /// An OCI image layout tarball.
    Oci(Dest),
    /// A docker archive.
    Docker(Dest),
    /// The final filesystem as a tar.
    Tar(Dest),
    /// The final filesystem in a directory.
    Local(PathBuf),
}

/// Why writing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file could not be written durably in place (temp file, fsync, rename).
    #[error(transparent)]
    Durable(#[from] strata_store::durable::DurableError),
    /// Reading the image from the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Exporting the filesystem failed.
    #[error(transparent)]
    Export(#[from] LocalError),
    /// The request has no standard output for `dest=-`.
    #[error("this build has no standard output to write to (dest=-)")]
    NoStdout,
    /// The exporter thread panicked.
    #[error("the filesystem exporter panicked")]
    ExporterPanicked,
}

impl OutputSpec {
    /// Parses `type=oci,dest=out.tar`, `DIR` or `-`.
    pub fn parse(spec: &str) -> Result<OutputSpec, SpecError> {
        const FLAG: &str = "--output";
        if spec == "-" {
            return Ok(OutputSpec::Tar(Dest::Stdout));
        }
        if !spec.contains('=') {
            return Ok(OutputSpec::Local(PathBuf::from(spec)));
        }
        let mut kind = None;
        let mut dest = None;
        let mut name = None;
        let mut push = None;
        for (k, v) in fields(FLAG, spec)? {
            match k {
                "type" => kind = Some(v.to_owned()),
                "dest" => dest = Some(v.to_owned()),
                "name" => name = Some(v.to_owned()),
                "push" => {
                    push = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(SpecError::BadValue {
                                flag: FLAG,
                                key: "push",
                                value: v.to_owned(),
                                expected: "true or false",
                            });
                        }
                    })
                }
                // Accepted for compatibility.
                "compression" | "oci-mediatypes" => {}
                other => return Err(unknown_key(FLAG, spec, other)),
            }
        }
        let kind = kind.unwrap_or_else(|| "local".to_owned());
        let file = |dest: Option<String>| -> Result<Dest, SpecError> {
            match dest.as_deref() {
                None => Err(SpecError::Missing {
                    flag: format!("{FLAG} type={kind}"),
                    needs: "dest=FILE (or dest=- for stdout)",
                }),
                Some("-") => Ok(Dest::Stdout),
                Some(f) => Ok(Dest::File(PathBuf::from(f))),
            }
        };
        Ok(match kind.as_str() {
            "image" | "registry" if dest.is_none() => OutputSpec::Image {
                name,
                push: push.unwrap_or(kind == "registry"),
            },
            "oci" => OutputSpec::Oci(file(dest)?),
            "docker" => OutputSpec::Docker(file(dest)?),
            "tar" => OutputSpec::Tar(file(dest)?),
            "local" => match dest {
                Some(d) if d != "-" => OutputSpec::Local(PathBuf::from(d)),
                _ => {
                    return Err(SpecError::Missing {
                        flag: format!("{FLAG} type=local"),
                        needs: "dest=DIR",
                    });
                }
            },
            other => {
                return Err(SpecError::UnknownType {
                    flag: FLAG,
                    kind: other.to_owned(),
                    supported: "image, registry, oci, docker, tar or local",
                });
            }
        })
    }

    /// The same output with its file or directory passed through `f` (the CLI makes them
    /// absolute: the library does not know the current directory).
    pub fn map_path(self, f: impl FnOnce(PathBuf) -> PathBuf) -> OutputSpec {
        match self {
            OutputSpec::Oci(Dest::File(p)) => OutputSpec::Oci(Dest::File(f(p))),
            OutputSpec::Docker(Dest::File(p)) => OutputSpec::Docker(Dest::File(f(p))),
            OutputSpec::Tar(Dest::File(p)) => OutputSpec::Tar(Dest::File(f(p))),
            OutputSpec::Local(dir) => OutputSpec::Local(f(dir)),
            other => other,
        }
    }

    /// Whether this output needs the image committed to the store.
    pub(crate) fn needs_image(&self) -> bool {
        matches!(
            self,
            OutputSpec::Image { .. } | OutputSpec::Oci(_) | OutputSpec::Docker(_)
        )
    }

    /// `--push`: `type=registry`.
    pub fn registry() -> OutputSpec {
        OutputSpec::Image {
            name: None,
            push: true,
        }
    }
}

/// Writes to `dest`: a file replaced atomically (temp file beside it, fsync, rename), or the
/// request's standard output.
pub(crate) fn write_dest(
    dest: &Dest,
    stdout: &mut Option<Box<dyn Write + Send>>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    match dest {
        Dest::Stdout => {
            let stdout = stdout.as_mut().ok_or(OutputError::NoStdout)?;
            let mut out = std::io::BufWriter::new(stdout);
            write(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Dest::File(path) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let mut tmp = strata_store::durable::temp_file_in(dir)?;
            {
                let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                write(&mut w)?;
                w.flush()?;
            }
            strata_store::durable::persist(tmp, path)?;
            Ok(())
        }
    }
}

/// `type=local`: the final filesystem unpacked into `dir` (created if missing), owners and
/// modes kept, streamed through a pipe from the exporter.
pub(crate) fn export_local(backend: &LocalBackend, fs: &Fs, dir: &Path) -> Result<(), OutputError> {
    fs_err::create_dir_all(dir)?;
    let (reader, writer) = std::io::pipe()?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let w = std::io::BufWriter::new(writer);
            backend.export_rootfs(fs, w)
        });
        let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let unpacked = archive.unpack(dir);
        drop(archive);
        let produced = producer.join().map_err(|_| OutputError::ExporterPanicked)?;
        produced?;
        unpacked?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_s_forms() {
        let p = |s| OutputSpec::parse(s).unwrap();
        assert_eq!(p("out"), OutputSpec::Local("out".into()));
        assert_eq!(p("-"), OutputSpec::Tar(Dest::Stdout));
        assert_eq!(
            p("type=image"),
            OutputSpec::Image {
                name: None,
                push: false
            }
        );
        assert_eq!(
            p("type=image,name=r.lan/app:1,push=true"),
            OutputSpec::Image {
                name: Some("r.lan/app:1".into()),
                push: true
            }
        );
        assert_eq!(
            p("type=registry,name=r.lan/app:1"),
            OutputSpec::Image {
                name: Some("r.lan/app:1".into()),
                push: true
            }
        );
        assert_eq!(
            OutputSpec::parse("type=image,push=yes")
                .unwrap_err()
                .to_string(),
            "--output: push \"yes\" is not true or false"
        );
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
        assert_eq!(
            OutputSpec::parse("type=oci").unwrap_err().to_string(),
            "--output type=oci needs dest=FILE (or dest=- for stdout)"
        );
    }

    #[test]
    fn paths_are_mapped_stdout_is_kept() {
        let abs = |p: PathBuf| Path::new("/w").join(p);
        assert_eq!(
            OutputSpec::parse("type=oci,dest=a.tar")
                .unwrap()
                .map_path(abs),
            OutputSpec::Oci(Dest::File("/w/a.tar".into()))
        );
        assert_eq!(
            OutputSpec::parse("-").unwrap().map_path(abs),
            OutputSpec::Tar(Dest::Stdout)
        );
        assert_eq!(
            OutputSpec::parse("d").unwrap().map_path(abs),
            OutputSpec::Local("/w/d".into())
        );
    }
}
