//! `strata check`: the whole frontend (parse, instruction checks, expansion, stage resolution,
//! lowering of every stage) on a Dockerfile, printing every problem with its place. Base
//! images are not looked up: any valid reference stands for an image with an empty config.

use crate::GlobalArgs;
use crate::diag;
use crate::dockerfile;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use strata_frontend::{BuildOptions, ImageResolver, Platform, ResolvedImage};
use strata_graph::ImageConfig;

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
}

/// Any base image exists and has an empty config.
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: String::new(),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }
}

pub(crate) fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let dockerfile = dockerfile::read(Some(&args.file), None)?;
    let (name, source) = (dockerfile.name, dockerfile.bytes);
    let opts = BuildOptions {
        build_args: dockerfile::build_args(&args.build_args),
        target: args.target,
        all_stages: true,
        ..BuildOptions::default()
    };
    let diags = strata_frontend::check(&source, &opts, &AnyImage);
    let mut out = std::io::stdout().lock();
    for d in diags.iter() {
        out.write_all(diag::render(&name, &source, d).as_bytes())?;
    }
    out.flush()?;
    let errors = diags.errors().count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut err = std::io::stderr().lock();
    if diags.is_empty() {
        let _ = writeln!(err, "{name}: no problems found");
        return Ok(ExitCode::SUCCESS);
    }
    let _ = writeln!(
        err,
        "{name}: {}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    );
    Ok(ExitCode::from(1))
}
