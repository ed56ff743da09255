//! `strata cp [-a] [-L] CONTAINER:SRC DEST|-` and `strata cp [-a] [-L] SRC|- CONTAINER:DEST`:
//! files between a container and the host, or a tar stream with `-`, by docker's rules
//! (`strata_build::copy_from_container` and the others; `docs/containers.md`).

use crate::GlobalArgs;
use anyhow::bail;
use std::io::IsTerminal;
use std::process::ExitCode;
use strata_build::{CpFlags, CpRoot};
use strata_store::Store;

/// Arguments of `strata cp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Archive mode: keep the source's owners
    #[arg(short, long)]
    archive: bool,
    /// Follow a symlink the source path names
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar stream on stdin)
    #[arg(value_name = "SRC")]
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar stream on stdout)
    #[arg(value_name = "DEST")]
    dest: String,
}

/// One side of `cp`: a container and a path in it, or a host path (`-`: a tar stream).
enum Side {
    Container { name: String, path: String },
    Host(String),
}

/// docker's reading of a `cp` argument: `NAME:PATH` names a container unless the argument is an
/// absolute path or starts with `.` (so `./a:b` is a host path).
fn side(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Host(arg.to_owned());
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.starts_with('.') && !name.is_empty() => Side::Container {
            name: name.to_owned(),
            path: if path.is_empty() { "/" } else { path }.to_owned(),
        },
        _ => Side::Host(arg.to_owned()),
    }
}

/// A host path made absolute against the current directory, keeping a trailing `/` or `/.`
/// (they carry meaning for `cp`).
fn absolute(path: &str) -> anyhow::Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    let cwd = std::path::absolute(".")?;
    let cwd = cwd
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the current directory is not UTF-8"))?;
    Ok(format!("{}/{path}", cwd.trim_end_matches('/')))
}

/// The root of the running container `args` names, opened as the user before a rootless
/// command enters its user namespace ([`strata_build::open_running_root`]); `None` when
/// there is none, or it cannot be opened (the copy then reports why).
pub(crate) fn open_running_root(args: &Args, global: &GlobalArgs) -> Option<CpRoot> {
    let name = match (side(&args.src), side(&args.dest)) {
        (Side::Container { name, .. }, Side::Host(_))
        | (Side::Host(_), Side::Container { name, .. }) => name,
        _ => return None,
    };
    let store = Store::open_read_only(global.store_root()).ok()?;
    strata_build::open_running_root(&store, &name)
}

pub(crate) fn run(
    args: Args,
    global: &GlobalArgs,
    running: Option<CpRoot>,
) -> anyhow::Result<ExitCode> {
    let flags = CpFlags {
        follow: args.follow_link,
        archive: args.archive,
    };
    let (src, dest) = (side(&args.src), side(&args.dest));
    let store = Store::open(global.store_root())?;
    match (src, dest) {
        (Side::Container { .. }, Side::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
        (Side::Host(_), Side::Host(_)) => {
            bail!("must specify at least one container source")
        }
        (Side::Container { name, path }, Side::Host(dest)) if dest == "-" => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write a tar archive to a terminal: redirect it");
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            strata_build::tar_from_container(&store, &name, &path, flags, running, &mut out)?;
            std::io::Write::flush(&mut out)?;
        }
        (Side::Container { name, path }, Side::Host(dest)) => {
            strata_build::copy_from_container(
                &store,
                &name,
                &path,
                &absolute(&dest)?,
                flags,
                running,
            )?;
        }
        (Side::Host(src), Side::Container { name, path }) if src == "-" => {
            let stdin = std::io::stdin().lock();
            strata_build::untar_to_container(&store, stdin, &name, &path, flags, running)?;
        }
        (Side::Host(src), Side::Container { name, path }) => {
            strata_build::copy_to_container(
                &store,
                &absolute(&src)?,
                &name,
                &path,
                flags,
                running,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(arg: &str) -> String {
        match side(arg) {
            Side::Container { name, path } => format!("container {name} {path}"),
            Side::Host(p) => format!("host {p}"),
        }
    }

    #[test]
    fn arguments_are_read_as_dockers() {
        assert_eq!(shown("c:/etc/passwd"), "container c /etc/passwd");
        assert_eq!(shown("c:etc"), "container c etc");
        assert_eq!(shown("c:"), "container c /");
        assert_eq!(shown("/abs/a:b"), "host /abs/a:b");
        assert_eq!(shown("./a:b"), "host ./a:b");
        assert_eq!(shown("file"), "host file");
        assert_eq!(shown("-"), "host -");
    }
}
