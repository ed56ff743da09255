//! `strata parse`: the raw parse of a Dockerfile, as BuildKit's dump or as JSON.

use crate::GlobalArgs;
use anyhow::Context;
use std::fmt::Display;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use strata_graph::SourceLoc;

/// Arguments of `strata parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The Dockerfile to parse, or `-` for standard input
    #[arg(value_name = "FILE|-", default_value = "Dockerfile")]
    file: PathBuf,
    /// Print the syntax tree as JSON, with line and column spans, instead of the dump
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (name, source) = read_source(&args.file)?;
    let dockerfile = match strata_frontend::parse(&source) {
        Ok(dockerfile) => dockerfile,
        Err(err) => {
            print_located(&name, &source, err.loc, &err);
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

/// The name to show in messages (the path as given, `<stdin>` for `-`) and the bytes.
fn read_source(file: &PathBuf) -> anyhow::Result<(String, Vec<u8>)> {
    if file.as_os_str() == "-" {
        let mut source = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut source)
            .context("failed to read the Dockerfile from standard input")?;
        return Ok(("<stdin>".into(), source));
    }
    let source = fs_err::read(file)?;
    Ok((file.display().to_string(), source))
}

/// Prints `error: FILE:LINE:COL: message`, then the source line with a caret under the
/// column, to stderr.
pub(crate) fn print_located(name: &str, source: &[u8], loc: SourceLoc, message: &dyn Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {name}:{loc}: {message}");
    let Some(line) = source
        .split(|&b| b == b'\n')
        .nth(loc.line.saturating_sub(1) as usize)
    else {
        return;
    };
    let line = String::from_utf8_lossy(line);
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    let number = loc.line.to_string();
    let pad: String = line
        .chars()
        .take(loc.column.saturating_sub(1) as usize)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let gutter = " ".repeat(number.len());
    let _ = writeln!(err, " {number} | {line}");
    let _ = writeln!(err, " {gutter} | {pad}^");
}
