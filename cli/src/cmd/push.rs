//! `strata push [-a] NAME[:TAG]`, with docker's output.

use crate::GlobalArgs;
use crate::registry::{client_with, has_no_tag};
use crate::ui::layers::LayerDisplay;
use anyhow::Context as _;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Reference, Store};

/// Arguments of `strata push`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Push all tags of the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Layers uploaded at once (docker's daemon setting of that name; default 5)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_uploads: u16,
    /// The image
    #[arg(value_name = "NAME[:TAG]")]
    name: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse_tag(&args.name)?;
    if args.all_tags && !has_no_tag(&args.name) {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let store = Store::open(global.store_root())?;
    let references: Vec<Reference> = if args.all_tags {
        let mut tags: Vec<Reference> = store
            .images()?
            .into_iter()
            .flat_map(|i| i.tags)
            .filter(|t| t.name() == reference.name() && t.tag().is_some())
            .collect();
        tags.sort_by(|a, b| a.tag().cmp(&b.tag()));
        if tags.is_empty() {
            anyhow::bail!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            );
        }
        tags
    } else {
        // Docker's message (and no registry traffic) when there is nothing to push.
        store.resolve(&reference.to_string()).map_err(|_| {
            anyhow::anyhow!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            )
        })?;
        vec![reference.clone()]
    };
    let client = client_with(|o| o.max_concurrent_uploads = args.max_concurrent_uploads.into())?;
    let mut out = std::io::stdout().lock();
    if has_no_tag(&args.name) && !args.all_tags && !args.quiet {
        writeln!(out, "Using default tag: latest")?;
    }
    if !args.quiet {
        writeln!(
            out,
            "The push refers to repository [{}]",
            reference.familiar_name()
        )?;
    }
    out.flush()?;
    drop(out);
    let display = LayerDisplay::stdout(args.quiet);
    for r in &references {
        let pushed = client.push(&store, r, &|e| display.event(e));
        display.finish();
        let pushed = pushed.with_context(|| format!("failed to push {}", r.familiar()))?;
        let mut out = std::io::stdout().lock();
        if args.quiet {
            writeln!(out, "{}", r.familiar())?;
        } else {
            writeln!(
                out,
                "{}: digest: {} size: {}",
                pushed.tag, pushed.digest, pushed.size
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
