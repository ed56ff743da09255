//! The build checks, one directory per rule under `testdata/checks/<Rule>/`: `bad.Dockerfile`
//! must give exactly the findings in `bad.expected` (`<line> <Rule>: <message>` each), and
//! `good.Dockerfile` none at all, both built with the build arguments in `build-args`
//! (`KEY=VALUE` lines) and the `.dockerignore` in `dockerignore` if the directory has them.
//! Every rule of the registry has its directory.
//!
//! Base images: any reference exists with an empty config on the platform asked for, except
//! that a name containing `arm64` is a linux/arm64 image and one containing `home` sets
//! `HOME=/root` (what the rules that read the base image need).

use std::path::{Path, PathBuf};
use strata_frontend::{BuildOptions, ImageResolver, Platform, RULES, ResolvedImage, check};
use strata_graph::ImageConfig;

struct Images;

impl ImageResolver for Images {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let mut config = ImageConfig::default();
        if reference.contains("home") {
            config.env = vec!["HOME=/root".into()];
        }
        let platform = if reference.contains("arm64") {
            Platform::new("linux", "arm64", "")
        } else {
            platform.clone()
        };
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: String::new(),
            platform,
            config,
        })
    }
}

fn checks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/checks")
}

/// The findings for `file`, as `<line> <Rule>: <message>` (errors as `<line> error: ...`).
fn findings(file: &Path) -> Vec<String> {
    let source = fs_err::read(file).expect("read a check case");
    let args = file.with_file_name("build-args");
    let build_args = match fs_err::read_to_string(&args) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => Default::default(),
    };
    let opts = BuildOptions {
        build_args,
        dockerignore: fs_err::read(file.with_file_name("dockerignore")).ok(),
        all_stages: true,
        ..BuildOptions::default()
    };
    check(&source, &opts, &Images)
        .iter()
        .map(|d| {
            let what = d.rule.map_or("error", |r| r.name);
            format!("{} {what}: {}", d.loc.line, d.text())
        })
        .collect()
}

#[test]
fn each_rule_warns_on_its_bad_file_and_not_on_its_good_one() {
    let mut failures = Vec::new();
    for rule in RULES {
        let dir = checks_dir().join(rule.name);
        if !dir.is_dir() {
            continue;
        }
        let expected: Vec<String> = fs_err::read_to_string(dir.join("bad.expected"))
            .expect("every case has bad.expected")
            .lines()
            .map(str::to_owned)
            .collect();
        let bad = findings(&dir.join("bad.Dockerfile"));
        if bad != expected {
            failures.push(format!(
                "{}: bad gave {bad:#?}, expected {expected:#?}",
                rule.name
            ));
        }
        let good = findings(&dir.join("good.Dockerfile"));
        if !good.is_empty() {
            failures.push(format!("{}: good gave {good:#?}", rule.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_its_cases_and_every_case_its_rule() {
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.name)
        .filter(|n| !checks_dir().join(n).is_dir())
        .collect();
    assert_eq!(
        missing,
        Vec::<&str>::new(),
        "rules without testdata/checks/<Rule>/"
    );
    for entry in fs_err::read_dir(checks_dir()).expect("testdata/checks") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            RULES.iter().any(|r| r.name == name),
            "testdata/checks/{name} is no rule"
        );
    }
}

/// `docs/checks.md` lists every rule of the registry, one table row each, in its order.
#[test]
fn the_docs_list_every_rule_of_the_registry() {
    let docs =
        fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/checks.md"))
            .expect("docs/checks.md");
    let rows: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| [") || l.starts_with("| I"))
        .collect();
    let expected: Vec<String> = RULES
        .iter()
        .map(|r| {
            let name = match r.url {
                Some(u) => format!("[{}]({})", r.name, u.trim_start_matches("docs/checks.md")),
                None => r.name.to_owned(),
            };
            let origin = match (r.buildkit, r.experimental) {
                (true, false) => "BuildKit",
                (true, true) => "BuildKit, experimental",
                (false, _) => "strata",
            };
            format!("| {name} | {origin} | {} |", r.description)
        })
        .collect();
    assert_eq!(rows, expected);
}
