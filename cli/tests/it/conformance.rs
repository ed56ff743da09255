//! strata against BuildKit: every case of `../shared/conformance/diff` built by strata, saved,
//! and compared (config and final filesystem) with what BuildKit produced.
//!
//! `add-tar-chown` is version-sensitive: the recorded reference is BuildKit 0.13, which keeps
//! archive owners under `ADD --chown`; current BuildKit (>= 0.23) applies `--chown` to the
//! extracted entries, and so does strata. That case must differ from the record in exactly
//! that way, and [`shared_add_chown_applies_to_extracted_entries_as_current_buildkit`] asserts the
//! current behaviour.

use crate::support::{TestEnv, shared_dir, strata_bin};

#[test]
fn shared_every_buildkit_conformance_case_matches() {
    let env = TestEnv::new();
    let harness = shared_dir().join("conformance/diff/run_candidate.sh");
    let out = std::process::Command::new(&harness)
        .arg("strata")
        .env("STRATA", strata_bin())
        .env("STRATA_ROOT", env.root())
        .env("CONF_WORK", env.dir().join("work"))
        .output()
        .expect("run the conformance harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
        .collect();
    assert_eq!(
        results.len(),
        36,
        "the harness did not run every case:\n{stdout}\n{stderr}"
    );
    let failed: Vec<&str> = results
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    assert_eq!(
        failed,
        vec!["FAIL add-tar-chown: 7 difference(s); layers 3 (reference 3)"],
        "cases that differ from BuildKit:\n{stdout}"
    );
    // The one expected difference is exactly the owner change current BuildKit made.
    let section: String = stdout
        .split("FAIL add-tar-chown")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| l.trim_start().starts_with("fs "))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    for line in section.lines() {
        assert!(
            line.contains("got 50") || line.contains("got 1000"),
            "add-tar-chown differs in something other than --chown owners: {line}"
        );
    }
}

#[test]
fn shared_add_chown_applies_to_extracted_entries_as_current_buildkit() {
    let env = TestEnv::with_base("conf-base:latest");
    let case = shared_dir().join("conformance/diff/cases/add-tar-chown");
    let ctx = env.context(
        "ctx",
        &[("plain.txt", "plain\n"), ("Dockerfile", "unused\n")],
    );
    let status = std::process::Command::new("python3")
        .arg(shared_dir().join("conformance/diff/lib/mktar.py"))
        .arg("archive.tar")
        .current_dir(&ctx)
        .status()
        .expect("run mktar.py");
    assert!(status.success());
    env.ok([
        "build".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        "t:1".as_ref(),
        "-f".as_ref(),
        case.join("Dockerfile").as_os_str(),
        ctx.as_os_str(),
    ]);
    let owners = env.ok([
        "run",
        "--rm",
        "t:1",
        "sh",
        "-c",
        "cd / && find owned owned-plain.txt | sort | xargs stat -c '%n %u:%g %a'",
    ]);
    for line in owners.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[1], "1000:50", "{line} (all: {owners})");
    }
    // Modes stay as the archive has them (setuid included).
    assert!(owners.contains("owned/top/suid 1000:50 4755"), "{owners}");
}
