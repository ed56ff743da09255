//! `strata manifest create|push|rm`: a multi-platform image made of this store's images, kept
//! in the store until it is pushed (docker makes it of images already in a registry; strata has
//! them locally, and `push` sends their blobs and manifests first, the index last).
//!
//! `strata manifest inspect NAME`: the manifest or index a registry serves for NAME, as JSON
//! indented with tabs as docker's `json.Indent` does. The document is printed as served (its
//! keys in the registry's order), so the sha256 of its bytes before indenting is the digest
//! `push` printed. (Docker re-encodes a manifest list from its own types; strata does not.)

use crate::GlobalArgs;
use crate::registry::client;
use crate::ui::layers::LayerDisplay;
use anyhow::Context as _;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Reference, Store};

/// Arguments of `strata manifest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ManifestCommand {
    /// Display an image manifest, or manifest list
    Inspect(InspectArgs),
    /// Create a local manifest list of this store's images, one per platform
    Create(CreateArgs),
    /// Push a manifest list to a repository: its images first, the list last
    Push(PushArgs),
    /// Delete one or more manifest lists from the local store
    Rm(RmArgs),
}

/// Arguments of `strata manifest create`.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Amend an existing manifest list (an image for a platform it has replaces that one)
    #[arg(short, long)]
    amend: bool,
    /// The list's name: the reference it will be pushed as
    #[arg(value_name = "MANIFEST_LIST")]
    list: String,
    /// Images of this store (names or IDs), each for its own platform
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

/// Arguments of `strata manifest push`.
#[derive(Debug, clap::Args)]
struct PushArgs {
    /// Remove the local manifest list after the push
    #[arg(short, long)]
    purge: bool,
    /// The list's name
    #[arg(value_name = "MANIFEST_LIST")]
    list: String,
}

/// Arguments of `strata manifest rm`.
#[derive(Debug, clap::Args)]
struct RmArgs {
    /// The lists' names
    #[arg(value_name = "MANIFEST_LIST", required = true)]
    lists: Vec<String>,
}

/// Arguments of `strata manifest inspect`.
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// The image (`NAME[:TAG|@DIGEST]`)
    #[arg(value_name = "MANIFEST")]
    name: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ManifestCommand::Inspect(args) => inspect(&args),
        ManifestCommand::Create(args) => create(&args, global),
        ManifestCommand::Push(args) => push(&args, global),
        ManifestCommand::Rm(args) => rm(&args, global),
    }
}

fn create(args: &CreateArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = Reference::parse_tag(&args.list)?;
    let store = Store::open(global.store_root())?;
    store.create_manifest_list(&name, &args.images, args.amend)?;
    writeln!(std::io::stdout().lock(), "Created manifest list {name}")?;
    Ok(ExitCode::SUCCESS)
}

fn push(args: &PushArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = Reference::parse_tag(&args.list)?;
    let store = Store::open(global.store_root())?;
    let list = store.manifest_list(&name)?;
    let display = LayerDisplay::stdout(false);
    let pushed = client()?.push_list(&store, &list, &name, &|e| display.event(e));
    display.finish();
    let pushed = pushed.with_context(|| format!("failed to push {}", name.familiar()))?;
    if args.purge {
        store.remove_manifest_list(&name)?;
    }
    writeln!(std::io::stdout().lock(), "{}", pushed.digest)?;
    Ok(ExitCode::SUCCESS)
}

fn rm(args: &RmArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    for list in &args.lists {
        store.remove_manifest_list(&Reference::parse_tag(list)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&args.name)?;
    let manifest = client()?.raw_manifest(&reference)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&indent(&manifest.bytes))?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// Go's `json.Indent(dst, src, "", "\t")`: the whitespace between tokens replaced by a newline
/// and tabs after `{`, `[` and `,`, one space after `:`; empty objects and arrays stay `{}`
/// and `[]`; strings are copied as they are.
fn indent(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // An opening bracket whose newline waits to see whether the value is empty.
    let mut pending_open = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b'\t', depth));
    };
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if pending_open {
            pending_open = false;
            if b != b'}' && b != b']' {
                newline(&mut out, depth);
            } else {
                depth -= 1;
                out.push(b);
                continue;
            }
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                depth += 1;
                pending_open = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_as_go_does() {
        let text = indent(br#"{"a" : [1, {"b":"x, {y}"}], "c":{}, "d":[ ]}"#);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "{\n\t\"a\": [\n\t\t1,\n\t\t{\n\t\t\t\"b\": \"x, {y}\"\n\t\t}\n\t],\n\t\"c\": {},\n\t\"d\": []\n}"
        );
    }
}
