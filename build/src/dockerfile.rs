//! The Dockerfile of a build, `check` or `parse`: read once, from a file, standard input or
//! the context (`Dockerfile`, else `dockerfile` as docker accepts), and the `--build-arg`s
//! given with it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// A Dockerfile's bytes and what messages call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// As the user named it, for messages (`Dockerfile` for standard input, as docker).
    pub name: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// Where it is on disk, absolute (`None` for standard input): its `.dockerignore` is
    /// looked for beside it.
    pub path: Option<PathBuf>,
}

/// Where a Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// `-`: standard input.
    Stdin,
    /// A file named on the command line.
    File {
        /// As given, for messages.
        name: String,
        /// Absolute.
        path: PathBuf,
    },
    /// None named: `Dockerfile` in this (absolute) context directory, else `dockerfile`.
    Context(PathBuf),
}

/// Why a Dockerfile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    /// Standard input failed.
    #[error("failed to read the Dockerfile from standard input")]
    Stdin(#[source] std::io::Error),
    /// The context has no Dockerfile.
    #[error("failed to read the Dockerfile: {} does not exist (give one with -f)", .0.display())]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("failed to read the Dockerfile")]
    Read(#[source] std::io::Error),
}

impl Dockerfile {
    /// Reads the Dockerfile from `source`; `stdin` is read only for [`DockerfileSource::Stdin`].
    pub fn read(source: DockerfileSource, stdin: impl Read) -> Result<Self, DockerfileError> {
        match source {
            DockerfileSource::Stdin => {
                let mut bytes = Vec::new();
                let mut stdin = stdin;
                stdin
                    .read_to_end(&mut bytes)
                    .map_err(DockerfileError::Stdin)?;
                Ok(Dockerfile {
                    name: "Dockerfile".into(),
                    bytes,
                    path: None,
                })
            }
            DockerfileSource::File { name, path } => {
                let bytes = fs_err::read(&path).map_err(DockerfileError::Read)?;
                Ok(Dockerfile {
                    name,
                    bytes,
                    path: Some(path),
                })
            }
            DockerfileSource::Context(dir) => {
                let path = dir.join("Dockerfile");
                let (path, bytes) = match fs_err::read(&path) {
                    Ok(bytes) => (path, bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // docker accepts a lower-case `dockerfile` when `Dockerfile` is missing.
                        let lower = dir.join("dockerfile");
                        match fs_err::read(&lower) {
                            Ok(bytes) => (lower, bytes),
                            Err(_) => return Err(DockerfileError::Missing(path)),
                        }
                    }
                    Err(e) => return Err(DockerfileError::Read(e)),
                };
                Ok(Dockerfile {
                    name: "Dockerfile".into(),
                    bytes,
                    path: Some(path),
                })
            }
        }
    }
}

/// `--build-arg K=V`, and `--build-arg K` with its value from `env` (skipped when unset), as
/// docker reads them. The caller owns the environment: `env` looks a name up in it.
pub fn parse_build_args(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Some(v) = env(arg) {
                    out.insert(arg.clone(), v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_take_bare_names_from_the_environment_and_skip_unset_ones() {
        let args = ["A=1", "B", "C", "D=x=y", "E="].map(String::from);
        let env = |k: &str| (k == "B").then(|| "from env".to_owned());
        let got = parse_build_args(&args, env);
        let want: BTreeMap<String, String> =
            [("A", "1"), ("B", "from env"), ("D", "x=y"), ("E", "")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn reads_stdin_a_named_file_and_the_context_s_lower_case_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let df = Dockerfile::read(DockerfileSource::Stdin, &b"FROM a\n"[..]).unwrap();
        assert_eq!((df.name.as_str(), df.path), ("Dockerfile", None));
        assert_eq!(df.bytes, b"FROM a\n");

        let missing = Dockerfile::read(DockerfileSource::Context(dir.path().into()), &[][..]);
        assert_eq!(
            missing.unwrap_err().to_string(),
            format!(
                "failed to read the Dockerfile: {}/Dockerfile does not exist (give one with -f)",
                dir.path().display()
            )
        );
        fs_err::write(dir.path().join("dockerfile"), "FROM b\n").unwrap();
        let df = Dockerfile::read(DockerfileSource::Context(dir.path().into()), &[][..]).unwrap();
        assert_eq!(df.bytes, b"FROM b\n");
        assert_eq!(df.path, Some(dir.path().join("dockerfile")));

        let named = DockerfileSource::File {
            name: "ci/Dockerfile".into(),
            path: dir.path().join("dockerfile"),
        };
        let df = Dockerfile::read(named, &[][..]).unwrap();
        assert_eq!(df.name, "ci/Dockerfile");
        let gone = DockerfileSource::File {
            name: "x".into(),
            path: dir.path().join("x"),
        };
        assert!(matches!(
            Dockerfile::read(gone, &[][..]),
            Err(DockerfileError::Read(_))
        ));
    }
}
