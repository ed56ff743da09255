//! The Dockerfile and the build arguments a command names (`build`, `check`, `parse`),
//! resolved once against the current directory and the environment, which only the CLI reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_build::{Dockerfile, DockerfileSource};

/// A path from the command line, made absolute against the current directory.
pub(crate) fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The Dockerfile `file` names (`-`: standard input), else the one in `context`, else
/// standard input (a build without context).
pub(crate) fn read(file: Option<&Path>, context: Option<&Path>) -> anyhow::Result<Dockerfile> {
    let source = match (file, context) {
        (Some(f), _) if f.as_os_str() == "-" => DockerfileSource::Stdin,
        (Some(f), _) => DockerfileSource::File {
            name: f.display().to_string(),
            path: absolute(f.to_path_buf()),
        },
        (None, Some(dir)) => DockerfileSource::Context(dir.to_path_buf()),
        (None, None) => DockerfileSource::Stdin,
    };
    Ok(Dockerfile::read(source, std::io::stdin().lock())?)
}

/// `--build-arg K=V`, and `--build-arg K` taken from the environment (skipped when unset).
pub(crate) fn build_args(args: &[String]) -> BTreeMap<String, String> {
    strata_build::parse_build_args(args, |name| {
        #[expect(
            clippy::disallowed_methods,
            reason = "docker reads a bare --build-arg from the environment"
        )]
        let value = std::env::var_os(name);
        value.map(|v| v.to_string_lossy().into_owned())
    })
}
