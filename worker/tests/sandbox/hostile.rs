//! The hostile inputs of shared/research/hostile/make_hostile.py through ADD and COPY: the
//! host canary stays untouched, no secret reaches a layer, and each case either lands
//! inside the rootfs or fails with a message.

use crate::common::*;
use crate::files::{add, apply, copy, ctx_input};
use crate::hostile_expect::{Want, expected, judge};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use strata_graph::pattern::DirVisit;
use strata_worker::{DiffOptions, FileError, FileSource, Worker, WorkerConfig, write_layer};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "shared_hostile_tarballs_through_add",
            shared_hostile_tarballs_through_add,
        ),
        trial(
            "shared_hostile_contexts_through_copy",
            shared_hostile_contexts_through_copy,
        ),
        trial(
            "shared_hostile_gzip_bomb_hits_the_unpack_limit",
            shared_hostile_gzip_bomb_hits_the_unpack_limit,
        ),
    ]
}

fn generator() -> PathBuf {
    shared().join("research/hostile/make_hostile.py")
}

/// Sets up a canary dir and generates the cases aimed at it.
fn generate(env: &Env) -> (PathBuf, PathBuf, serde_json::Value) {
    let canary = env.dir.path().join("canary");
    let out = env.dir.path().join("hostile");
    let py = |args: &[&str]| {
        let st = std::process::Command::new("python3")
            .arg(generator())
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "make_hostile.py {args:?}");
    };
    py(&["canary-setup", "--canary", canary.to_str().unwrap()]);
    py(&[
        "gen",
        out.to_str().unwrap(),
        "--canary",
        canary.to_str().unwrap(),
        "--bomb-mib",
        "8",
        "--many-files",
        "500",
    ]);
    let manifest: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    (canary, out, manifest)
}

fn canary_check(canary: &Path) -> TestResult {
    let out = std::process::Command::new("python3")
        .arg(generator())
        .args(["canary-check", "--canary"])
        .arg(canary)
        .output()
        .unwrap();
    ensure(
        out.status.success(),
        format!("canary changed: {}", String::from_utf8_lossy(&out.stdout)),
    )
}

fn message(e: &FileError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

fn shared_hostile_tarballs_through_add() -> TestResult {
    let env = Env::new();
    let (canary, out, manifest) = generate(&env);
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for case in manifest["cases"].as_array().unwrap() {
        if case["kind"] != "add-tar" {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let ctx = out.join(case["context"].as_str().unwrap());
        let fname = Path::new(case["artifact"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let dest = case["dest"].as_str().unwrap();
        let r = apply(
            &env,
            vec![env.base.clone()],
            vec![add(1, &[&fname], dest)],
            ctx_input(&ctx),
        );
        match &r {
            Ok(layer) => {
                // The layer must export, and no secret may be in it.
                let mut tar = Vec::new();
                match write_layer(layer, &mut tar, &DiffOptions::default()) {
                    Err(e) => bad.push(format!("{id}: layer export failed: {e}")),
                    Ok(_) if contains(&tar, b"HOSTILE-SECRET-") => {
                        bad.push(format!("{id}: secret in layer"))
                    }
                    Ok(_) => {}
                }
            }
            Err(e) => report.push(format!("{id}: {}", message(e))),
        }
        if verbose() {
            eprintln!(
                "{id}: {}",
                match &r {
                    Ok(_) => "ok".to_string(),
                    Err(e) => message(e),
                }
            );
        }
        if let Err(e) = judge(expected(id), r.as_ref().err().map(message).as_deref()) {
            bad.push(format!("{id}: {e}"));
        }
        // Cases that must leave a usable image: the next RUN still finds /bin.
        if let (Ok(layer), "T16" | "T19" | "T28") = (&r, &id[..3]) {
            let (rr, lines) = run_op(
                &env,
                exec(&["/bin/busybox", "ls", "/bin/cat", "/bin/busybox"]),
                vec![layer.clone(), env.base.clone()],
                &env.upper(),
                vec![],
            );
            if rr.is_err() {
                bad.push(format!("{id}: base /bin damaged: {lines:?}"));
            }
        }
        if let (Ok(layer), "T17") = (&r, &id[..3]) {
            let (rr, lines) = run_op(
                &env,
                sh(
                    "head -c 1 /hostile/mem >/dev/null 2>&1 && echo OPENED-MEM; head -c 1 /hostile/loop0 >/dev/null 2>&1 && echo OPENED-LOOP; true",
                ),
                vec![layer.clone(), env.base.clone()],
                &env.upper(),
                vec![],
            );
            if rr.is_err() || stdout(&lines).contains("OPENED") {
                bad.push(format!(
                    "{id}: device nodes from the archive usable in RUN: {lines:?}"
                ));
            }
        }
    }
    canary_check(&canary)?;
    ensure(
        bad.is_empty(),
        format!("{}\n(errors seen: {})", bad.join("\n"), report.join("\n")),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn shared_hostile_contexts_through_copy() -> TestResult {
    let env = Env::new();
    let (canary, out, _) = generate(&env);
    let case = |id: &str| out.join("cases").join(id);
    let mut bad = Vec::new();
    // Each case's first step, judged by the shared table; C05's `COPY .` (its second step)
    // must succeed.
    let mut check = |id: &str, actions: Vec<strata_graph::FileAction>, want: Want| {
        let r = apply(&env, vec![env.base.clone()], actions, ctx_input(&case(id)));
        if let Ok(layer) = &r {
            let mut tar = Vec::new();
            if let Err(e) = write_layer(layer, &mut tar, &DiffOptions::default()) {
                bad.push(format!("{id}: export: {e}"));
            }
            if contains(&tar, b"HOSTILE-SECRET-") {
                bad.push(format!("{id}: secret copied"));
            }
        }
        if let Err(e) = judge(want, r.as_ref().err().map(message).as_deref()) {
            bad.push(format!("{id}: {e}"));
        }
        r.ok()
    };
    let v = canary.display().to_string();
    check(
        "C01-symlink-abs-file",
        vec![copy(1, &["link"], "/out/")],
        expected("C01-symlink-abs-file"),
    );
    check(
        "C02-symlink-abs-dir",
        vec![copy(1, &["d/secret.txt"], "/out/")],
        expected("C02-symlink-abs-dir"),
    );
    check(
        "C03-symlink-rel-escape",
        vec![copy(1, &["up/secret.txt"], "/out/")],
        expected("C03-symlink-rel-escape"),
    );
    check(
        "C04-copy-dot-escaping-links",
        vec![copy(1, &["."], "/ctx/")],
        expected("C04-copy-dot-escaping-links"),
    );
    check(
        "C05-symlink-loop",
        vec![copy(1, &["a"], "/x")],
        expected("C05"),
    );
    check("C05-symlink-loop", vec![copy(1, &["."], "/ctx/")], Want::Ok);
    let fifo = check(
        "C06-fifo-in-context",
        vec![copy(1, &["."], "/ctx/")],
        expected("C06"),
    );
    check(
        "C07-socket-in-context",
        vec![copy(1, &["."], "/ctx/")],
        expected("C07-socket-in-context"),
    );
    let devs = check(
        "C08-device-in-context",
        vec![copy(1, &["."], "/ctx/")],
        expected("C08-device-in-context"),
    );
    check(
        "C10-src-dotdot",
        vec![copy(
            1,
            &[&format!("../../../../../..{v}/secret.txt")],
            "/out/",
        )],
        expected("C10-src-dotdot"),
    );
    check(
        "C11-src-absolute",
        vec![copy(1, &[&format!("{v}/secret.txt")], "/out/")],
        expected("C11-src-absolute"),
    );
    if let Some(l) = fifo {
        use std::os::unix::fs::FileTypeExt;
        ensure(
            fs_err::symlink_metadata(l.join("ctx/fifo"))
                .map(|m| m.file_type().is_fifo())
                .unwrap_or(false),
            "FIFO recreated, not read",
        )?;
    }
    if let Some(l) = devs {
        let (rr, lines) = run_op(
            &env,
            sh("head -c 1 /ctx/mem >/dev/null 2>&1 && echo OPENED; true"),
            vec![l, env.base.clone()],
            &env.upper(),
            vec![],
        );
        ensure(
            rr.is_ok() && !stdout(&lines).contains("OPENED"),
            "a device node from the context is unusable in RUN",
        )?;
    }
    // .dockerignore through a symlink alias (C09): the callback stands in for .dockerignore.
    let ign: strata_worker::ExcludeFn = std::sync::Arc::new(|p: &Path, _| {
        if p.starts_with("secret.txt") || p.starts_with("secrets") {
            DirVisit::Skip
        } else {
            DirVisit::Include
        }
    });
    let inputs = vec![
        None,
        Some(FileSource::Context {
            dir: case("C09-dockerignore-via-symlink"),
            exclude: Some(ign),
        }),
    ];
    for (src, dest) in [("alias", "/out/alias"), ("aliasdir/", "/out/aliasdir/")] {
        if apply(
            &env,
            vec![env.base.clone()],
            vec![copy(1, &[src], dest)],
            inputs.clone(),
        )
        .is_ok()
        {
            bad.push(format!("C09: COPY {src} reached ignored content"));
        }
    }
    let l = apply(
        &env,
        vec![env.base.clone()],
        vec![copy(1, &["."], "/ctx/")],
        inputs,
    )
    .map_err(|e| message(&e))?;
    let mut tar = Vec::new();
    write_layer(&l, &mut tar, &DiffOptions::default()).map_err(|e| e.to_string())?;
    ensure(
        !contains(&tar, b"CTX-IGNORED-SECRET"),
        format!("ignored content in COPY .: {:?}", crate::run::walk(&l)),
    )?;
    canary_check(&canary)?;
    ensure(bad.is_empty(), bad.join("\n"))
}

fn shared_hostile_gzip_bomb_hits_the_unpack_limit() -> TestResult {
    let env = Env::new();
    let (_, out, _) = generate(&env);
    let mut cfg = WorkerConfig::new(
        env.dir.path().join("state2"),
        std::env::current_exe().unwrap(),
    );
    cfg.max_unpack_bytes = 4 << 20;
    let worker = Worker::new(cfg).unwrap();
    let upper = env.upper();
    let r = worker.apply_file_op(strata_worker::FileRequest {
        op: strata_graph::FileOp {
            actions: vec![add(1, &["T29-gzip-bomb.tar.gz"], "/hostile/")],
        },
        lowers: vec![env.base.clone()],
        upper,
        inputs: ctx_input(&out.join("cases/T29-gzip-bomb")),
        git_auth: Default::default(),
        previous: None,
    });
    let e = r.err().ok_or("an 8 MiB bomb must exceed a 4 MiB limit")?;
    ensure(message(&e).contains("more than 4194304 bytes"), message(&e))
}

/// `STRATA_TEST_VERBOSE=1` prints each case's outcome (to review the messages).
fn verbose() -> bool {
    #[expect(clippy::disallowed_methods, reason = "a test switch, not library code")]
    std::env::var_os("STRATA_TEST_VERBOSE").is_some()
}
