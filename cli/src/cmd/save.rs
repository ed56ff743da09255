//! `strata save [-o FILE] IMAGE...`: one tarball that is both an OCI layout and a docker
//! archive. With `-o`, the file appears only once complete (written beside it, then renamed).

use crate::GlobalArgs;
use anyhow::bail;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strata_store::{SaveOptions, Store, durable};

/// Arguments of `strata save`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Recompress layers to gzip or zstd (default: as stored)
    #[arg(long, value_parser = crate::cmd::import::parse_compression)]
    compression: Option<strata_store::Compression>,
    /// Images (references or IDs)
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let names: Vec<&str> = args.images.iter().map(String::as_str).collect();
    let options = SaveOptions {
        compression: args.compression,
    };
    match args.output.as_deref() {
        // Into the file itself: layers are copied into it by the kernel.
        Some(path) => write_file(path, |file| Ok(store.save_to_file(&names, file, &options)?))?,
        None => write_archive(None, "an image archive", |out| {
            Ok(store.save_with(&names, out, &options)?)
        })?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `path` through `write`, given a temp file beside it that is renamed into place
/// (fsynced) once `write` succeeded: `path` never holds a partial archive.
fn write_file(
    path: &Path,
    write: impl FnOnce(&std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = durable::temp_file_in(&dir)?;
    write(tmp.as_file())?;
    durable::persist(tmp, path)?;
    Ok(())
}

/// Writes an archive (`save`, `export`) through `write`: to `output` when given, which
/// appears only once complete (written beside it, then renamed), else to stdout, refused
/// when stdout is a terminal (`what` names the archive in that error).
pub(crate) fn write_archive(
    output: Option<&Path>,
    what: &str,
    write: impl FnOnce(&mut (dyn Write + Send)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match output {
        Some(path) => write_file(path, |file| {
            let mut out = std::io::BufWriter::new(file);
            write(&mut out)?;
            out.flush()?;
            Ok(())
        })?,
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write {what} to a terminal: use -o or redirect");
            }
            // `Stdout`, not its lock: the writer may be handed to another thread.
            let mut out = std::io::BufWriter::new(stdout);
            write(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}
