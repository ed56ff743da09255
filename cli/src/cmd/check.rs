//! `strata check`: the whole frontend (parse, instruction checks, expansion, stage resolution,
//! lowering of every stage) on a Dockerfile, printing every problem with its place, like
//! `docker build --check`: its summary line first, exit status 1 on any finding. Base
//! images are not looked up: any valid reference stands for an image with an empty config,
//! so the checks that need a base image's ENV leave the stages built on one alone.

use crate::GlobalArgs;
use crate::diag;
use crate::dockerfile;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use strata_frontend::{BuildOptions, Diagnostic, Severity};

/// Arguments of `strata check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The Dockerfile (`-` reads standard input)
    #[arg(default_value = "Dockerfile", value_name = "FILE|-")]
    file: PathBuf,
    /// A build argument, `KEY=VALUE` (or `KEY` to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to check as the build target (default: the last)
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// The build context whose `.dockerignore` the CopyIgnoredFile check reads (default:
    /// none, and that check does not run)
    #[arg(long, value_name = "DIR")]
    context: Option<PathBuf>,
    /// `text` for people, or `json`: an array with one object per finding
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// One finding in `--format json`.
#[derive(serde::Serialize)]
struct Finding<'a> {
    /// `warning` or `error`.
    severity: &'static str,
    /// The build-check rule (none for errors that are not a rule's).
    rule: Option<&'static str>,
    description: Option<&'static str>,
    message: String,
    url: Option<&'static str>,
    file: &'a str,
    /// The lines, 1-based, first and last.
    line: LineRange,
    column: u32,
}

#[derive(serde::Serialize)]
struct LineRange {
    start: u32,
    end: u32,
}

fn finding<'a>(file: &'a str, d: &Diagnostic) -> Finding<'a> {
    Finding {
        severity: match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        rule: d.rule.map(|r| r.name),
        description: d.rule.map(|r| r.description),
        message: d.text(),
        url: d.rule.and_then(|r| r.url),
        file,
        line: LineRange {
            start: d.loc.line,
            end: d.loc.line,
        },
        column: d.loc.column,
    }
}

/// `docker build --check`'s summary of the warnings.
fn summary(warnings: usize) -> String {
    match warnings {
        0 => "Check complete, no warnings found.".to_owned(),
        1 => "Check complete, 1 warning has been found!".to_owned(),
        n => format!("Check complete, {n} warnings have been found!"),
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let dockerfile = dockerfile::read(Some(&args.file), None)?;
    let ignore = args
        .context
        .map(dockerfile::absolute)
        .and_then(|dir| strata_build::ignore_bytes(&dockerfile, &dir));
    let (name, source) = (dockerfile.name, dockerfile.bytes);
    let opts = BuildOptions {
        build_args: dockerfile::build_args(&args.build_args),
        target: args.target,
        all_stages: true,
        dockerignore: ignore,
        ..BuildOptions::default()
    };
    let diags = strata_build::check(&source, &opts, &global.store_root());
    let errors = diags.errors().count();
    let warnings = diags.len() - errors;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let all: Vec<Finding<'_>> = diags.iter().map(|d| finding(&name, d)).collect();
            let text = serde_json::to_string_pretty(&all).expect("findings are plain JSON");
            writeln!(out, "{text}")?;
        }
        Format::Text => {
            if warnings > 0 || errors == 0 {
                writeln!(out, "{}", summary(warnings))?;
            }
            for d in diags.iter() {
                out.write_all(diag::render(&name, &source, d).as_bytes())?;
            }
        }
    }
    out.flush()?;
    if errors > 0 && args.format == Format::Text {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            std::io::stderr().lock(),
            "{name}: {}, {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
    }
    // Like `docker build --check`: any finding, warning or error, fails.
    Ok(if diags.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
