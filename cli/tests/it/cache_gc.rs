//! The build cache's lifecycle (issue 12 §4): `builder prune`, `system df -v`, `system
//! prune`, the automatic GC after builds, and prune running beside builds.

use crate::support::{TestEnv, ran};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Every record file with the description of its step (`[2/3] RUN ...`).
fn records(env: &TestEnv) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let dir = env.root().join("cache-v1/records");
    for shard in fs_err::read_dir(&dir).expect("test setup") {
        for file in fs_err::read_dir(shard.expect("test setup").path()).expect("test setup") {
            let path = file.expect("test setup").path();
            let json: serde_json::Value =
                serde_json::from_slice(&fs_err::read(&path).expect("test setup"))
                    .expect("test setup");
            let label = json["record"]["step"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.push((path, label));
        }
    }
    out
}

/// Sets "last used" of the records whose step mentions `what` to `ago` back.
fn age_records(env: &TestEnv, what: &str, ago: Duration) {
    let mut n = 0;
    for (path, label) in records(env) {
        if label.contains(what) {
            let f = fs_err::File::open(&path).expect("test setup");
            f.set_modified(SystemTime::now() - ago).expect("test setup");
            n += 1;
        }
    }
    assert!(n > 0, "no record for {what}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs_err::read_dir(dir)
        .map(|d| {
            d.map(|e| {
                e.expect("test setup")
                    .file_name()
                    .into_string()
                    .expect("test setup")
            })
            .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn check_is_clean(env: &TestEnv) {
    let out = env.ok(["system", "check"]);
    assert!(out.trim_end().ends_with(": ok"), "{out}");
}

/// `strata builder prune ARGS` with `input` on stdin: (exit code, stdout, stderr).
fn prune_with_input(env: &TestEnv, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = env
        .command(["builder", "prune"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("test setup");
    child
        .stdin
        .take()
        .expect("test setup")
        .write_all(input.as_bytes())
        .expect("test setup");
    let out = child.wait_with_output().expect("test setup");
    (
        out.status.code().expect("test setup"),
        String::from_utf8(out.stdout).expect("test setup"),
        String::from_utf8(out.stderr).expect("test setup"),
    )
}

#[test]
fn builder_prune_asks_prints_docker_lines_and_a_rebuild_runs_every_step_again() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN echo a > /a\nRUN echo b > /b\n",
        )],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(records(&env).len(), 2);

    // No -f and no answer (stdin closed): docker's question, nothing removed, exit 1.
    let (code, out, err) = prune_with_input(&env, &["-a"], "");
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
    );
    assert!(err.contains("builder prune has been cancelled"), "{err}");
    assert_eq!(records(&env).len(), 2);

    // Without -a only dangling cache goes: both records' layers are t:1's (shared).
    let (code, out, _) = prune_with_input(&env, &[], "y\n");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "WARNING! This will remove all dangling build cache. Are you sure you want to \
         continue? [y/N] Total reclaimed space: 0B\n"
    );
    assert_eq!(records(&env).len(), 2);

    let df = env.ok(["system", "df", "-v"]);
    let mut lines = df.lines();
    assert_eq!(lines.next(), Some("Build cache usage: 0B"));
    assert_eq!(lines.next(), Some(""));
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .collect();
    let header: Vec<&str> = header.iter().map(|s| s.trim()).collect();
    assert_eq!(
        header,
        [
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED"
        ]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{df}");
    assert!(
        rows.iter()
            .all(|r| r.contains(" regular ") && r.ends_with("true")),
        "{df}"
    );
    let summary = env.ok(["system", "df"]);
    let build_cache = summary
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .unwrap();
    assert_eq!(
        build_cache.split_whitespace().collect::<Vec<_>>(),
        ["Build", "Cache", "2", "0", "0B", "0B"]
    );

    let out = env.ok(["builder", "prune", "-a", "-f"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("Deleted build cache objects:"));
    let ids: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert!(ids.iter().all(|id| id.len() == 25), "{out}");
    assert!(
        lines.next().unwrap().starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert_eq!(records(&env).len(), 0);
    assert_eq!(names(&env.root().join("pins")), Vec::<String>::new());
    check_is_clean(&env);

    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(
        ran(&events).len(),
        2,
        "every step runs again: {:?}",
        ran(&events)
    );
    check_is_clean(&env);
}

#[test]
fn until_keeps_recent_records_and_keep_storage_removes_least_recently_used_first() {
    let env = TestEnv::with_base("base:latest");
    let mut ctxs = Vec::new();
    for name in ["x", "y", "z"] {
        // Random bytes do not compress: each layer is about 200 kB.
        let dockerfile = format!("FROM base\nRUN head -c 200000 /dev/urandom > /{name}-file\n");
        ctxs.push(env.context(name, &[("Dockerfile", &dockerfile)]));
    }
    for (i, ctx) in ctxs.iter().enumerate() {
        env.ok([
            "build",
            "-q",
            "-t",
            &format!("i:{i}"),
            ctx.to_str().unwrap(),
        ]);
    }
    // Untagged and pruned, the images no longer share the layers: all three are dangling cache.
    for i in 0..3 {
        env.ok(["rmi", &format!("i:{i}")]);
    }
    env.ok(["image", "prune", "-f"]);
    assert_eq!(records(&env).len(), 3);
    age_records(&env, "x-file", Duration::from_secs(3 * 86400));
    age_records(&env, "y-file", Duration::from_secs(2 * 3600));
    age_records(&env, "z-file", Duration::from_secs(3600));

    // until=24h: only x has gone unused that long.
    let out = env.ok(["builder", "prune", "-f", "--filter", "until=24h"]);
    assert_eq!(out.lines().filter(|l| l.len() == 25).count(), 1, "{out}");
    let left: Vec<String> = records(&env).into_iter().map(|(_, l)| l).collect();
    assert!(
        left.iter().all(|l| !l.contains("x-file")) && left.len() == 2,
        "{left:?}"
    );

    // The cache is ~400 kB; keeping 300k removes the least recently used (y), not z.
    let out = env.ok(["builder", "prune", "-f", "--keep-storage", "300k"]);
    assert_eq!(out.lines().filter(|l| l.len() == 25).count(), 1, "{out}");
    let left: Vec<String> = records(&env).into_iter().map(|(_, l)| l).collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("z-file"), "{left:?}");
    assert_eq!(
        names(&env.root().join("pins")).len(),
        1,
        "y's and x's pins went"
    );

    // z's record still hits; y runs again.
    let z = ran(&env.build_events([ctxs[2].to_str().unwrap()]));
    assert!(z.is_empty(), "{z:?}");
    let y = ran(&env.build_events([ctxs[1].to_str().unwrap()]));
    assert_eq!(y.len(), 1, "{y:?}");
    check_is_clean(&env);
}

#[test]
fn unused_pins_snapshots_and_cache_mounts_are_reclaimed_and_tagged_layers_stay() {
    let env = TestEnv::with_base("base:latest");
    let keep = env.context("keep", &[("Dockerfile", "FROM base\nRUN echo k > /k\n")]);
    env.ok(["build", "-q", "-t", "keep:1", keep.to_str().unwrap()]);
    let g = env.context(
        "g",
        &[(
            "Dockerfile",
            "FROM base AS tmp\nRUN echo tmp > /t && echo junk > /junk\nFROM base\nCOPY --from=tmp /t /t\n\
             RUN --mount=type=cache,target=/c echo x > /c/x && cat /t > /g\n",
        )],
    );
    env.ok(["build", "-q", "-t", "g:1", g.to_str().unwrap()]);
    let pins = names(&env.root().join("pins"));
    assert_eq!(pins.len(), 4, "keep's, tmp's and g's two steps: {pins:?}");
    // The tmp stage's snapshot: pinned by its record, used by no image.
    let (tmp_record, _) = records(&env)
        .into_iter()
        .find(|(_, l)| l.contains("echo tmp"))
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&tmp_record).unwrap()).unwrap();
    let tmp_chain = json["record"]["chain_id"].as_str().unwrap();
    let tmp_chain = tmp_chain.strip_prefix("sha256:").unwrap().to_owned();
    let snapshots = env.root().join("snapshots");
    let before = names(&snapshots);
    assert!(before.contains(&tmp_chain), "{before:?}");
    let mounts = env.root().join("worker/cache-mounts");
    assert_eq!(
        names(&mounts)
            .iter()
            .filter(|n| !n.ends_with(".lock"))
            .count(),
        1
    );

    // -a: every record, every pin, the tmp stage's snapshot and the cache mount go.
    env.ok(["builder", "prune", "-a", "-f"]);
    assert_eq!(names(&env.root().join("pins")), Vec::<String>::new());
    let after = names(&snapshots);
    assert!(!after.contains(&tmp_chain), "{after:?}");
    assert!(!after.is_empty(), "the images' snapshots stay");
    assert!(
        names(&mounts).iter().all(|n| n.ends_with(".lock")),
        "{:?}",
        names(&mounts)
    );
    check_is_clean(&env);
    // The tagged images are whole: they run and save.
    env.ok([
        "save",
        "-o",
        env.dir().join("k.tar").to_str().unwrap(),
        "keep:1",
        "g:1",
    ]);
    let events = env.build_events(["-t", "g:1", g.to_str().unwrap()]);
    assert_eq!(ran(&events).len(), 3, "{:?}", ran(&events));
}

#[test]
fn the_automatic_gc_runs_only_over_the_configured_limit() {
    let env = TestEnv::with_base("base:latest");
    let big = env.context(
        "big",
        &[(
            "Dockerfile",
            "FROM base AS big\nRUN head -c 300000 /dev/urandom > /f\nRUN wc -c < /f > /n\n\
             FROM base\nCOPY --from=big /n /n\n",
        )],
    );
    let build = |env: &TestEnv| {
        let out = env
            .command(["build", "-t", "b:1", big.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    env.config(r#"{"builder": {"gc": {"enabled": false, "defaultKeepStorage": "100k"}}}"#);
    let err = build(&env);
    assert!(!err.contains("cache gc:"), "{err}");
    assert_eq!(records(&env).len(), 3);

    // The big stage's 300 kB layer is no image's: over 100k, the oldest records go.
    env.config(r#"{"builder": {"gc": {"defaultKeepStorage": "100k"}}}"#);
    let err = build(&env);
    assert!(err.contains("cache gc: removed "), "{err}");
    let left: Vec<String> = records(&env).into_iter().map(|(_, l)| l).collect();
    assert!(!left.iter().any(|l| l.contains("head -c")), "{left:?}");
    assert!(
        left.iter().any(|l| l.contains("COPY")),
        "b:1's own step stays: {left:?}"
    );
    check_is_clean(&env);

    // Under the limit nothing happens.
    env.config(r#"{"builder": {"gc": {"defaultKeepStorage": "10MB"}}}"#);
    let err = build(&env);
    assert!(!err.contains("cache gc:"), "{err}");
}

#[test]
fn a_build_that_ran_no_step_skips_the_gc_check_made_less_than_a_minute_ago() {
    let env = TestEnv::with_base("base:latest");
    let ctx = |name: &str, dockerfile: &str| env.context(name, &[("Dockerfile", dockerfile)]);
    let small = ctx("small", "FROM base\nRUN echo small > /s\n");
    let big = ctx(
        "big",
        "FROM base AS big\nRUN head -c 300000 /dev/urandom > /f\nRUN wc -c < /f > /n\n\
         FROM base\nCOPY --from=big /n /n\n",
    );
    let big2 = ctx(
        "big2",
        "FROM base AS big\nRUN head -c 300001 /dev/urandom > /f\nRUN wc -c < /f > /n\n\
         FROM base\nCOPY --from=big /n /n\n",
    );
    let other = ctx("other", "FROM base\nRUN echo other > /o\n");
    let build = |ctx: &Path| {
        let out = env
            .command(["build", "-t", "b:1", ctx.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let on = r#"{"builder": {"gc": {"defaultKeepStorage": "100k"}}}"#;
    // A build that ran a step checks (under the limit: nothing to do) ...
    env.config(on);
    assert!(!build(&small).contains("cache gc:"));
    // ... then, with the GC off, the cache grows over the limit ...
    env.config(r#"{"builder": {"gc": {"enabled": false, "defaultKeepStorage": "100k"}}}"#);
    build(&big);
    let before = records(&env).len();
    // ... and a no-op build within the minute trusts that check: nothing removed.
    env.config(on);
    let err = build(&big);
    assert!(err.contains("0 run;"), "a no-op build: {err}");
    assert!(!err.contains("cache gc:"), "{err}");
    assert_eq!(records(&env).len(), before);
    // A build that runs a step always checks.
    let err = build(&other);
    assert!(err.contains("cache gc: removed "), "{err}");
    // Another limit is checked at once, even by a no-op build.
    env.config(r#"{"builder": {"gc": {"enabled": false}}}"#);
    build(&big2);
    env.config(r#"{"builder": {"gc": {"defaultKeepStorage": "200k"}}}"#);
    let err = build(&big2);
    assert!(err.contains("0 run;"), "a no-op build: {err}");
    assert!(err.contains("cache gc: removed "), "{err}");
    check_is_clean(&env);
}

#[test]
fn system_prune_removes_dangling_images_and_the_build_cache() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUN echo s > /s\n")]);
    env.ok(["build", "-q", ctx.to_str().unwrap()]);
    let out = env.ok(["system", "prune", "-a", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    assert!(out.contains("\nDeleted build cache objects:\n"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert_eq!(env.ok(["images", "-q"]), "");
    assert_eq!(records(&env).len(), 0);
    check_is_clean(&env);
}

#[test]
fn eight_concurrent_builds_succeed_beside_a_prune_loop() {
    let env = TestEnv::with_base("base:latest");
    let ctxs: Vec<PathBuf> = (0..8)
        .map(|i| {
            env.context(
                &format!("c{i}"),
                &[(
                    "Dockerfile",
                    // A shared cache mount too: prune must skip it while a run holds it.
                    &format!(
                        "FROM base\nRUN echo common > /common\n\
                         RUN --mount=type=cache,target=/c echo {i} >> /c/log && echo {i} > /i\n"
                    ),
                )],
            )
        })
        .collect();
    let done = AtomicBool::new(false);
    let prunes = std::thread::scope(|s| {
        let pruner = s.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                env.ok(["builder", "prune", "-a", "-f"]);
                n += 1;
            }
            n
        });
        let builds: Vec<_> = ctxs
            .iter()
            .enumerate()
            .map(|(i, ctx)| {
                let env = &env;
                s.spawn(move || {
                    for round in 0..2 {
                        let out = env
                            .command(["build", "-q", "-t", &format!("c{i}:{round}")])
                            .arg(ctx)
                            .output()
                            .unwrap();
                        assert!(
                            out.status.success(),
                            "build {i} round {round}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                })
            })
            .collect();
        for b in builds {
            b.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        pruner.join().unwrap()
    });
    assert!(prunes > 0);
    let images = env.ok(["images"]);
    for i in 0..8 {
        for round in 0..2 {
            assert!(
                images
                    .lines()
                    .any(|l| l.starts_with(&format!("c{i} ")) && l.contains(&format!(" {round} "))),
                "c{i}:{round} missing: {images}"
            );
        }
    }
    env.ok(["builder", "prune", "-a", "-f"]);
    check_is_clean(&env);
    // Every image is whole after all that: it saves (every blob read and checked).
    env.ok([
        "save",
        "-o",
        env.dir().join("all.tar").to_str().unwrap(),
        "c0:1",
        "c7:1",
    ]);
}
