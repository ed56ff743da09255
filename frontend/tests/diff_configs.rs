//! The image configs BuildKit produced for the differential conformance cases
//! (`../shared/conformance/diff/cases/*/expected.json`, "config"): lowering each case's
//! Dockerfile with its build args and target must give exactly that config. The base image
//! `conf-base:latest` has no config at all (it was `docker import`ed), so a resolver that
//! returns an empty config stands in for the store. One test lists every mismatch.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unreadable corpus must fail loudly"
)]

use fs_err as fs;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_frontend::{BuildOptions, ImageResolver, Platform, ResolvedImage, lower, parse};
use strata_graph::ImageConfig;

struct EmptyBase;

impl ImageResolver for EmptyBase {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        if reference != "docker.io/library/conf-base:latest" {
            return Err(format!("no image {reference} in this test"));
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: "sha256:8eaba85521188ec21c91a3c08151334fca8fd5f40d066e8412449650d5b46263".into(),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/diff/cases");
    assert!(
        dir.is_dir(),
        "the diff corpus is missing at {}",
        dir.display()
    );
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file() && !p.join("expect-failure").exists())
        .collect();
    out.sort();
    out
}

fn options(case: &Path) -> BuildOptions {
    let mut opts = BuildOptions::default();
    if let Ok(text) = fs::read_to_string(case.join("buildargs")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').unwrap();
            opts.build_args.insert(k.to_owned(), v.to_owned());
        }
    }
    if let Ok(t) = fs::read_to_string(case.join("target")) {
        opts.target = Some(t.trim().to_owned());
    }
    opts
}

/// compare.py's projection: the compared fields, maps of `{}` as sorted key lists, empty
/// values dropped.
fn project(config: &ImageConfig) -> BTreeMap<String, Value> {
    let Value::Object(obj) = serde_json::to_value(config).unwrap() else {
        unreachable!("a config serialises to an object")
    };
    let mut out = BTreeMap::new();
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ] {
        let Some(v) = obj.get(field) else { continue };
        let v = match (field, v) {
            ("ExposedPorts" | "Volumes", Value::Object(m)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                json!(keys)
            }
            ("Healthcheck", Value::Object(m)) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !is_empty(v) && **v != json!(0))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<_, _>>(),
            ),
            _ => v.clone(),
        };
        if !is_empty(&v) {
            out.insert(field.to_owned(), v);
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[test]
fn shared_lowering_gives_buildkits_configs() {
    let mut misses = Vec::new();
    let mut checked = 0;
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected: Value =
            serde_json::from_str(&fs::read_to_string(case.join("expected.json")).unwrap()).unwrap();
        let mut want: BTreeMap<String, Value> =
            serde_json::from_value(expected["config"].clone()).unwrap();
        want.remove("os");
        want.remove("architecture");
        let df = parse(&fs::read(case.join("Dockerfile")).unwrap()).unwrap();
        let lowered = match lower(&df, &options(&case), &EmptyBase) {
            Ok(l) => l,
            Err(d) => {
                misses.push(format!("{name}: lowering failed: {d}"));
                continue;
            }
        };
        let got = project(&lowered.graph.targets[0].config);
        if got != want {
            misses.push(format!(
                "{name}:\n  want {}\n  got  {}",
                serde_json::to_string(&want).unwrap(),
                serde_json::to_string(&got).unwrap()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} cases found");
    assert!(
        misses.is_empty(),
        "{} of {checked} cases differ:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

/// The files COPY heredocs make are fully decided by the frontend: text (expanded unless the
/// delimiter was quoted) and mode must be what BuildKit wrote.
#[test]
fn shared_heredoc_files_match_buildkit() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("heredoc-copy"))
        .unwrap();
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(case.join("expected.json")).unwrap()).unwrap();
    let df = parse(&fs::read(case.join("Dockerfile")).unwrap()).unwrap();
    let lowered = lower(&df, &options(&case), &EmptyBase).unwrap();
    let g = &lowered.graph;
    let mut made = 0;
    for id in g.node_ids() {
        let strata_graph::Op::File(f) = &g.node(id).op else {
            continue;
        };
        for action in &f.actions {
            if let strata_graph::FileAction::MkFile {
                path,
                contents,
                mode,
                ..
            } = action
            {
                let want = &expected["fs"][path];
                assert_eq!(want["text"].as_str(), Some(contents.as_str()), "{path}");
                assert_eq!(
                    want["mode"].as_str(),
                    Some(format!("{mode:04o}").as_str()),
                    "{path}"
                );
                made += 1;
            }
        }
    }
    assert_eq!(made, 5);
}
