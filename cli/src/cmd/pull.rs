//! `strata pull [-a] [--platform P] [-q] NAME[:TAG|@DIGEST]`, with docker's output.

use crate::GlobalArgs;
use crate::registry::{client_with, has_no_tag};
use crate::ui::layers::LayerDisplay;
use anyhow::Context as _;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Platform, Reference, Store};

/// Arguments of `strata pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Download all tagged images in the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Pull the image for this platform (os/arch[/variant]) from a multi-platform image
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Layers downloaded at once (docker's daemon setting of that name; default 3)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_downloads: u16,
    /// The image
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    name: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let platform = match &args.platform {
        Some(p) => Some(Platform::parse(p, &Platform::host())?),
        None => None,
    };
    if args.all_tags && !has_no_tag(&args.name) {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let store = Store::open(global.store_root())?;
    let client =
        client_with(|o| o.max_concurrent_downloads = args.max_concurrent_downloads.into())?;
    let mut out = std::io::stdout().lock();
    let references = if args.all_tags {
        client
            .tags(&reference)?
            .iter()
            .map(|t| Reference::parse(&format!("{}:{t}", reference.name())))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        if has_no_tag(&args.name) && !args.quiet {
            writeln!(out, "Using default tag: latest")?;
        }
        vec![reference.clone()]
    };
    let display = LayerDisplay::stdout(args.quiet);
    let mut newer = false;
    let mut last_digest = None;
    for r in &references {
        if !args.quiet {
            let what = r.digest().or(r.tag()).unwrap_or("latest");
            writeln!(out, "{what}: Pulling from {}", r.repository())?;
            out.flush()?;
        }
        drop(out);
        let pulled = client.pull(&store, r, platform.as_ref(), &|e| display.event(e));
        display.finish();
        let pulled = pulled.with_context(|| format!("failed to pull {}", r.familiar()))?;
        out = std::io::stdout().lock();
        if let Some(other) = &pulled.other_platform {
            let _ = writeln!(
                std::io::stderr().lock(),
                "WARNING: The requested image's platform ({other}) does not match the detected \
                 host platform ({}) and no specific platform was requested",
                Platform::host()
            );
        }
        newer |= !pulled.up_to_date;
        if !args.quiet {
            writeln!(out, "Digest: {}", pulled.digest)?;
        }
        last_digest = Some(pulled);
    }
    let shown = if args.all_tags {
        reference.familiar_name()
    } else {
        reference.familiar()
    };
    let full = if args.all_tags {
        reference.name()
    } else {
        reference.to_string()
    };
    if !args.quiet && last_digest.is_some() {
        if newer {
            writeln!(out, "Status: Downloaded newer image for {shown}")?;
        } else {
            writeln!(out, "Status: Image is up to date for {shown}")?;
        }
    }
    writeln!(out, "{full}")?;
    Ok(ExitCode::SUCCESS)
}
