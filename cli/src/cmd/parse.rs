//! `strata parse`: the raw parse of a Dockerfile, as BuildKit's dump or as JSON.

use crate::GlobalArgs;
use crate::diag;
use crate::dockerfile;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use strata_frontend::Diagnostic;

/// Arguments of `strata parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The Dockerfile to parse, or `-` for standard input
    #[arg(value_name = "FILE|-", default_value = "Dockerfile")]
    file: std::path::PathBuf,
    /// Print the syntax tree as JSON, with line and column spans, instead of the dump
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let dockerfile = dockerfile::read(Some(&args.file), None)?;
    let (name, source) = (dockerfile.name, dockerfile.bytes);
    let dockerfile = match strata_frontend::parse(&source) {
        Ok(dockerfile) => dockerfile,
        Err(err) => {
            let d = Diagnostic::error(err.loc, err.to_string());
            let _ = std::io::stderr()
                .lock()
                .write_all(diag::render(&name, &source, &d).as_bytes());
            return Ok(ExitCode::from(1));
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &dockerfile).context("failed to write the JSON")?;
        writeln!(out)?;
    } else {
        out.write_all(strata_frontend::dump(&dockerfile).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
