//! Snapshots of the lowered graph for every `testdata/dockerfiles/<case>/Dockerfile`: each node
//! with its short hash, label, inputs and op; the target's config and history. Node hashes are
//! in the snapshot on purpose: a change to what enters a node's hash (and so every user's
//! cache) shows up in review.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unreadable case must fail loudly"
)]

use std::fmt::Write as _;
use strata_frontend::{BuildOptions, ImageResolver, Platform, ResolvedImage, lower, parse};
use strata_graph::{Graph, ImageConfig};

/// Every image exists; its ID is derived from its name so hashes are stable; `alpine` and
/// `golang` carry a little config, like the real ones.
struct FakeStore;

impl ImageResolver for FakeStore {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let mut config = ImageConfig::default();
        if reference.contains("golang") {
            config.env = vec![
                "PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "GOLANG_VERSION=1.22.0".into(),
            ];
            config.working_dir = "/go".into();
        }
        if reference.contains("alpine") {
            config.cmd = Some(vec!["/bin/sh".into()]);
            config.env =
                vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: format!("sha256:{}", blake3_hex(reference)),
            platform: platform.clone(),
            config,
        })
    }
}

fn blake3_hex(s: &str) -> String {
    // A stand-in digest: stable, distinct per reference.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn render(graph: &Graph) -> String {
    let mut out = String::new();
    for id in graph.node_ids() {
        let n = graph.node(id);
        let inputs: Vec<String> = n
            .inputs
            .iter()
            .map(|i| graph.node(*i).hash.short())
            .collect();
        let line = n
            .loc
            .map(|l| l.start.line.to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{} line {line} {:?} <- {inputs:?}",
            n.hash.short(),
            n.label
        )
        .unwrap();
        writeln!(out, "    {}", serde_json::to_string(&n.op).unwrap()).unwrap();
    }
    for t in &graph.targets {
        writeln!(
            out,
            "target {:?} = {}",
            t.stage,
            graph.node(t.node).hash.short()
        )
        .unwrap();
        writeln!(
            out,
            "config {}",
            serde_json::to_string_pretty(&t.config).unwrap()
        )
        .unwrap();
        if let Some(a) = &t.author {
            writeln!(out, "author {a}").unwrap();
        }
        writeln!(out, "history").unwrap();
        for h in &t.history {
            let kind = if h.empty_layer { "empty" } else { "layer" };
            writeln!(out, "  {kind} {:?}", h.created_by).unwrap();
        }
        writeln!(out, "nodes {}", t.nodes.len()).unwrap();
    }
    if !graph.proxy_env.is_empty() {
        writeln!(out, "proxy_env {:?}", graph.proxy_env).unwrap();
    }
    out
}

#[test]
fn lowered_graphs() {
    insta::glob!("../../testdata/dockerfiles", "*/Dockerfile", |path| {
        let bytes = fs_err::read(path).unwrap();
        let case = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        // An `error-…` case must fail, in parsing (snapshots.rs shows where) or in lowering.
        let df = match parse(&bytes) {
            Ok(df) => df,
            Err(e) => {
                assert!(case.starts_with("error-"), "{case}: {e}");
                insta::assert_snapshot!(format!("parse error Dockerfile:{}: {e}\n", e.loc));
                return;
            }
        };
        let mut opts = BuildOptions::default();
        opts.build_args
            .insert("FROM_CLI".into(), "cli value".into());
        opts.build_args
            .insert("HTTP_PROXY".into(), "http://proxy:3128".into());
        // Some cases are syntax showcases that cannot be built: their snapshot is the list
        // of problems the frontend reports.
        let text = match lower(&df, &opts, &FakeStore) {
            Ok(lowered) => {
                assert!(
                    !case.starts_with("error-"),
                    "{case} lowers without an error"
                );
                let mut text = render(&lowered.graph);
                for w in lowered.warnings.iter() {
                    writeln!(text, "warning {w}").unwrap();
                }
                text
            }
            Err(diags) => diags
                .iter()
                .map(|d| format!("{} {d}\n", format!("{:?}", d.severity).to_lowercase()))
                .collect(),
        };
        insta::assert_snapshot!(text);
    });
}
