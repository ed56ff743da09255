//! `strata history IMAGE`: the image's build steps, newest first, as `docker history`.

use crate::GlobalArgs;
use crate::cmd::images::{human_since, human_size, parse_time, write_table};
use std::io::Write;
use std::process::ExitCode;
use strata_store::Store;

/// Arguments of `strata history`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Print sizes in bytes and dates in RFC 3339
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// The image (reference or ID)
    #[arg(value_name = "IMAGE")]
    image: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let image = store.image(&args.image)?;
    let now = jiff::Timestamp::now();
    let mut layer_sizes = image
        .layers
        .iter()
        .map(|l| l.uncompressed_size.unwrap_or(l.size));
    let mut rows = Vec::new();
    for h in &image.config.history {
        let size = if h.empty_layer {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        rows.push((h, size));
    }
    let id = if args.no_trunc {
        image.id.to_string()
    } else {
        image.id.short().to_owned()
    };
    let mut table = vec![
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .map(String::from)
            .to_vec(),
    ];
    let mut out = std::io::stdout().lock();
    for (i, (h, size)) in rows.iter().enumerate().rev() {
        let image_col = if i + 1 == rows.len() {
            id.clone()
        } else {
            "<missing>".to_owned()
        };
        if args.quiet {
            writeln!(out, "{image_col}")?;
            continue;
        }
        let created = h.created.as_deref().and_then(parse_time);
        let created = match (created, args.human) {
            (Some(t), true) => human_since(t, now),
            (Some(t), false) => t.to_string(),
            (None, _) => "N/A".to_owned(),
        };
        let mut created_by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        let size = if args.human {
            human_size(*size)
        } else {
            size.to_string()
        };
        table.push(vec![
            image_col,
            created,
            created_by,
            size,
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    if !args.quiet {
        write_table(&mut out, &table)?;
    }
    Ok(ExitCode::SUCCESS)
}
