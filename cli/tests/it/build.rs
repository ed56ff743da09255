//! `strata build` and `strata run` end to end: real sandboxes, a real store, the busybox base.

use crate::support::{TestEnv, ran, repo_root};
use std::time::{Duration, Instant};

fn run_in(env: &TestEnv, image: &str, script: &str) -> String {
    env.ok(["run", "--rm", image, "sh", "-c", script])
}

#[test]
fn the_demo_builds_two_stages_at_once_and_runs() {
    let env = TestEnv::with_base("demo-base:latest");
    let demo = repo_root().join("testdata/demo");
    let events = env.build_events(["-t".as_ref(), "demo:1".as_ref(), demo.as_os_str()]);

    // Both stages' RUNs ran, and one started before the other finished.
    let node_of = |needle: &str| {
        events
            .iter()
            .find(|e| e["event"] == "started" && e["label"].as_str().unwrap().contains(needle))
            .map(|e| e["node"].clone())
            .unwrap_or_else(|| panic!("no step {needle} started: {events:?}"))
    };
    let position = |kind: &str, node: &serde_json::Value| {
        events
            .iter()
            .position(|e| e["event"] == kind && &e["node"] == node)
            .unwrap()
    };
    let greeting = node_of("[greeting 2/2] RUN");
    let workdir = node_of("[fortunes 2/4] WORKDIR");
    assert!(
        position("started", &workdir) < position("finished", &greeting)
            && position("started", &greeting) < position("finished", &workdir),
        "the two stages did not overlap: {events:?}"
    );

    let out = env.ok(["run", "--rm", "demo:1"]);
    assert_eq!(
        out,
        "hello from strata\napples cache well\nmangoes never panic\nzebras build in parallel\n"
    );
}

#[test]
fn a_noop_rebuild_is_all_cache_hits_and_the_same_image() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY a.txt /a\nRUN cat /a > /b\nENV X=1\n",
            ),
            ("a.txt", "one\n"),
        ],
    );
    let first = env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    let events = env.build_events(["-t", "t:1", ctx.to_str().unwrap()]);
    assert!(
        ran(&events).is_empty(),
        "steps ran again: {:?}",
        ran(&events)
    );
    assert_eq!(
        events.iter().filter(|e| e["event"] == "cached").count(),
        2,
        "{events:?}"
    );
    let second = env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(
        first, second,
        "a cached rebuild must give the same image ID"
    );
    assert_eq!(run_in(&env, "t:1", "cat /b; echo $X"), "one\n1\n");
}

#[test]
fn rawjson_events_say_where_each_steps_time_went() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM base\nCOPY a.txt /a\nRUN cat /a > /b\n"),
            ("a.txt", "one\n"),
        ],
    );
    let events = env.build_events(["-t", "t:1", ctx.to_str().unwrap()]);
    // The `finished` event of the step whose label ends with `label`: its phases (name →
    // seconds, by name) and its elapsed seconds.
    let finished = |label: &str| {
        let node = events
            .iter()
            .find(|e| e["event"] == "started" && e["label"].as_str().unwrap().ends_with(label))
            .map(|e| e["node"].clone())
            .unwrap_or_else(|| panic!("no step {label} started: {events:?}"));
        let done = events
            .iter()
            .find(|e| e["event"] == "finished" && e["node"] == node)
            .unwrap_or_else(|| panic!("step {label} did not finish: {events:?}"));
        let phases = done["phases"].as_object().cloned().unwrap_or_default();
        let secs: Vec<(String, f64)> = phases
            .into_iter()
            .map(|(k, v)| (k, v.as_f64().expect("a phase is seconds")))
            .collect();
        (secs, done["elapsed"].as_f64().unwrap())
    };
    let names = |phases: &[(String, f64)]| {
        let mut names: Vec<&str> = phases.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names.join(" ")
    };

    let (run, run_elapsed) = finished("RUN cat /a > /b");
    assert_eq!(
        names(&run),
        "commit layer_diff layer_tar process record sandbox_start unpack",
        "{events:?}"
    );
    // The phases are parts of the step's time, and the command's is timed.
    let sum: f64 = run.iter().map(|(_, s)| s).sum();
    assert!(
        sum <= run_elapsed + 1e-6,
        "phases {run:?} add up to more than {run_elapsed}"
    );
    assert!(run.iter().all(|(_, s)| *s >= 0.0), "{run:?}");
    let process = run.iter().find(|(k, _)| k == "process").unwrap().1;
    assert!(process > 0.0, "{run:?}");

    let (copy, _) = finished("COPY a.txt /a");
    assert_eq!(
        names(&copy),
        "commit context_checksum files layer_diff layer_tar record unpack",
        "{events:?}"
    );
    let (context, _) = finished("[internal] load build context");
    assert_eq!(names(&context), "context_scan", "{events:?}");
}

#[test]
fn a_touched_file_is_a_hit_and_an_edited_one_reruns_exactly_its_dependents() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY a.txt /a\nRUN cat /a > /a2\nCOPY b.txt /b\n",
            ),
            ("a.txt", "a1\n"),
            ("b.txt", "b1\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);

    // Same bytes, new mtime: nothing runs.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    fs_err::File::options()
        .write(true)
        .open(ctx.join("a.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());

    // b.txt changes: only its COPY runs.
    fs_err::write(ctx.join("b.txt"), "b2\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events), vec!["[4/4] COPY b.txt /b"], "{events:?}");

    // a.txt changes: its COPY and everything after it run.
    fs_err::write(ctx.join("a.txt"), "a2\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(
        ran(&events),
        vec![
            "[2/4] COPY a.txt /a",
            "[3/4] RUN cat /a > /a2",
            "[4/4] COPY b.txt /b"
        ]
    );
    assert_eq!(run_in(&env, "t:1", "cat /a2 /b"), "a2\nb2\n");

    // A mode change is a change.
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(ctx.join("b.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events), vec!["[4/4] COPY b.txt /b"]);
    assert_eq!(run_in(&env, "t:1", "stat -c %a /b"), "600\n");
}

/// Diff IDs of an image's layers, from `strata inspect`.
pub(crate) fn layer_ids(env: &TestEnv, image: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(["inspect", image])).expect("inspect prints JSON");
    let v = if v.is_array() { v[0].clone() } else { v };
    v["RootFS"]["Layers"]
        .as_array()
        .expect("RootFS.Layers is a list")
        .iter()
        .map(|l| l.as_str().expect("a layer is a string").to_owned())
        .collect()
}

/// The inodes of `rel` in every snapshot of the store that has it.
fn snapshot_inodes(env: &TestEnv, rel: &str) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let dir = env.root().join("snapshots");
    for entry in fs_err::read_dir(dir).expect("the store has snapshots/") {
        let entry = entry.expect("a readable snapshots/");
        if let Ok(m) = fs_err::symlink_metadata(entry.path().join(rel)) {
            out.push(m.ino());
        }
    }
    out.sort();
    out
}

/// A context `ctx` of `dockerfile`, `src/f00.txt`… (`n` of them, "file N\n" each) and `extra`.
fn numbered_context(
    env: &TestEnv,
    dockerfile: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> std::path::PathBuf {
    let mut files = vec![("Dockerfile".to_owned(), dockerfile.to_owned())];
    files.extend((0..n).map(|i| (format!("src/f{i:02}.txt"), format!("file {i}\n"))));
    files.extend(extra.iter().map(|(p, b)| (p.to_string(), b.to_string())));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    env.context("ctx", &refs)
}

/// `build -q -t TAG EXTRA… CTX` with the layers' mtimes clamped (`SOURCE_DATE_EPOCH`), so two
/// builds of one context give one digest; it must succeed.
fn build_clamped(env: &TestEnv, ctx: &std::path::Path, extra: &[&str], tag: &str) {
    let mut cmd = env.command(["build", "-q", "-t", tag]);
    cmd.args(extra)
        .arg(ctx)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    let out = cmd.output().expect("strata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A COPY of a whole context that runs again because one file changed reuses its earlier
/// layer (unchanged files are hard links to it, nothing is copied twice), and the layer is
/// byte for byte the one a `--no-cache` build makes.
#[test]
fn an_edited_context_file_recopies_only_that_file_and_gives_the_same_layer() {
    let env = TestEnv::with_base("base:latest");
    let ctx = numbered_context(
        &env,
        "FROM base\nCOPY . /app\nRUN cat /app/edit.txt > /seen\n",
        50,
        &[("edit.txt", "before\n")],
    );
    let build = |extra: &[&str], tag: &str| build_clamped(&env, &ctx, extra, tag);
    build(&[], "t:1");
    let one = snapshot_inodes(&env, "app/src/f07.txt");
    assert_eq!(one.len(), 1, "one COPY snapshot");

    fs_err::write(ctx.join("edit.txt"), "after\n").unwrap();
    build(&[], "t:2");
    let two = snapshot_inodes(&env, "app/src/f07.txt");
    assert_eq!(two.len(), 2, "a second COPY snapshot: {two:?}");
    assert_eq!(two[0], two[1], "the unchanged file is shared, not copied");
    let edited = snapshot_inodes(&env, "app/edit.txt");
    assert_eq!(edited.len(), 2);
    assert_ne!(edited[0], edited[1], "the edited file is a new file");
    assert_eq!(
        run_in(&env, "t:2", "cat /seen /app/src/f07.txt"),
        "after\nfile 7\n"
    );

    build(&["--no-cache"], "t:fresh");
    assert_eq!(layer_ids(&env, "t:2"), layer_ids(&env, "t:fresh"));
    assert_ne!(layer_ids(&env, "t:1"), layer_ids(&env, "t:2"));
}

/// A fresh COPY's layer is written from what the copy told the layer writer, not from a
/// `stat` of each file: the image's layers have the digests of the walk of their snapshots
/// (set-ID modes, `--chown` and `--chmod`, hard links within and across directories,
/// symlinks, xattrs, a long name, an empty directory, `SOURCE_DATE_EPOCH` clamping the
/// times of the directories the build made).
#[test]
fn a_fresh_copys_layer_from_what_it_wrote_is_the_walks() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_base("base:latest");
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    let mut files = vec![
        (
            "Dockerfile".to_owned(),
            "FROM base\nCOPY . /app\nCOPY --chown=7:8 --chmod=640 a sub /etc/\n".to_owned(),
        ),
        ("a".to_owned(), "one\n".to_owned()),
        ("sub/b".to_owned(), "two\n".to_owned()),
        ("sub/suid".to_owned(), "set-uid\n".to_owned()),
        ("sub/deep/h1".to_owned(), "linked\n".to_owned()),
        (long, "long\n".to_owned()),
    ];
    files.extend((0..50).map(|i| (format!("many/f{i:02}"), "x".repeat(i * 37))));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = env.context("ctx", &refs);
    fs_err::set_permissions(
        ctx.join("sub/suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs_err::hard_link(ctx.join("sub/deep/h1"), ctx.join("sub/h2")).unwrap();
    fs_err::hard_link(ctx.join("sub/deep/h1"), ctx.join("sub/deep/h3")).unwrap();
    std::os::unix::fs::symlink("../a", ctx.join("sub/sym")).unwrap();
    fs_err::create_dir_all(ctx.join("empty")).unwrap();
    xattr::set(ctx.join("a"), "user.note", b"kept").unwrap();
    // Files older than the epoch keep their times, one second apart.
    let base = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for (i, (path, _)) in files.iter().enumerate().skip(1) {
        let f = fs_err::File::options()
            .write(true)
            .open(ctx.join(path))
            .unwrap();
        f.set_modified(base + Duration::from_secs(i as u64))
            .unwrap();
    }
    let out = env
        .command(["build", "-q", "-t", "t:1"])
        .arg(&ctx)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut walked = Vec::new();
    for entry in fs_err::read_dir(env.root().join("snapshots")).unwrap() {
        use sha2::Digest as _;
        let mut tar = Vec::new();
        let opts = strata_worker::DiffOptions {
            source_date_epoch: Some(1_700_000_000),
        };
        strata_worker::write_layer(&entry.unwrap().path(), &mut tar, &opts).unwrap();
        walked.push(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&tar))
        ));
    }
    let layers = layer_ids(&env, "t:1");
    assert_eq!(layers.len(), 3, "{layers:?}");
    for id in &layers[1..] {
        assert!(walked.contains(id), "{id} is not a walk's: {walked:?}");
    }
}

/// Each edit of a few-hundred-file context (a hard-linked pair among its files), built on
/// the last build's result and with `--no-cache`, gives the same layer; where the COPY was incremental, the layer's unchanged
/// entries were copied from the earlier layer tar (the `layer_reuse` phase is there).
#[test]
fn an_incremental_copy_reuses_the_earlier_layer_tar_and_gives_the_full_layer() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_base("base:latest");
    let mut files = vec![(
        "Dockerfile".to_owned(),
        "FROM base\nCOPY . /app\n".to_owned(),
    )];
    for d in ["lib", "src", "zz"] {
        for i in 0..100 {
            files.push((format!("{d}/f{i:03}.txt"), format!("{d} {i}\n").repeat(30)));
        }
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = env.context("ctx", &refs);
    // A hard-linked pair, one tar link entry in the layer.
    fs_err::hard_link(ctx.join("lib/f010.txt"), ctx.join("zz/pair.txt")).unwrap();
    let c = ctx.to_str().unwrap();
    // Whether the COPY's layer took entries from the earlier tar.
    let reused = |events: &[serde_json::Value]| {
        events
            .iter()
            .any(|e| e["event"] == "finished" && !e["phases"]["layer_reuse"].is_null())
    };
    // Files are not clamped (they are older), the COPY's new `/app` is (made at build time,
    // which differs between two builds).
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let epoch = [("SOURCE_DATE_EPOCH", epoch.as_str())];
    let build = |args: &[&str]| {
        let out = env
            .command(["build", "--progress=rawjson"])
            .args(args)
            .arg(c)
            .envs(epoch)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect::<Vec<serde_json::Value>>()
    };
    let first = build(&["-t", "t:0"]);
    assert!(!reused(&first), "nothing to reuse on a first build");
    let earlier = |secs: u64| std::time::SystemTime::now() - Duration::from_secs(secs);
    // What each build of an edit does with the COPY: `Reused` (incremental, entries taken
    // from the earlier tar), `Full` (not incremental), `Cached` (an mtime is not in the key).
    #[derive(Debug, PartialEq)]
    enum Copy {
        Reused,
        Full,
        Cached,
    }
    type Edit<'a> = (&'a str, Box<dyn Fn() + 'a>, Copy);
    let edits: Vec<Edit> = vec![
        (
            "same size, other bytes",
            Box::new(|| fs_err::write(ctx.join("src/f050.txt"), "SRC 50\n".repeat(30)).unwrap()),
            Copy::Reused,
        ),
        (
            "other size",
            Box::new(|| fs_err::write(ctx.join("lib/f007.txt"), "grown\n".repeat(99)).unwrap()),
            Copy::Reused,
        ),
        (
            "inside a hard-linked pair",
            Box::new(|| fs_err::write(ctx.join("lib/f010.txt"), "PAIR\n".repeat(40)).unwrap()),
            Copy::Reused,
        ),
        (
            "mtime only",
            Box::new(|| {
                fs_err::File::options()
                    .write(true)
                    .open(ctx.join("src/f000.txt"))
                    .unwrap()
                    .set_modified(earlier(3600))
                    .unwrap()
            }),
            Copy::Cached,
        ),
        // The mtime above is copied now too, though the context diff does not list it.
        (
            "chmod",
            Box::new(|| {
                fs_err::set_permissions(
                    ctx.join("zz/f099.txt"),
                    std::fs::Permissions::from_mode(0o600),
                )
                .unwrap()
            }),
            Copy::Reused,
        ),
        // Not incremental COPYs today (the set of paths changes).
        (
            "added in the middle",
            Box::new(|| fs_err::write(ctx.join("src/f050a.txt"), "new\n").unwrap()),
            Copy::Full,
        ),
        (
            "deleted",
            Box::new(|| fs_err::remove_file(ctx.join("lib/f001.txt")).unwrap()),
            Copy::Full,
        ),
        (
            "same size again, after them",
            Box::new(|| fs_err::write(ctx.join("zz/f000.txt"), "ZZ 0\n".repeat(30)).unwrap()),
            Copy::Reused,
        ),
    ];
    for (i, (what, edit, copy)) in edits.iter().enumerate() {
        edit();
        let tag = format!("t:{}", i + 1);
        let events = build(&["-t", tag.as_str()]);
        let cached = events
            .iter()
            .any(|e| e["event"] == "cached" && e["label"] == "[2/2] COPY . /app");
        let did = match (cached, reused(&events)) {
            (true, _) => Copy::Cached,
            (false, true) => Copy::Reused,
            (false, false) => Copy::Full,
        };
        assert_eq!(&did, copy, "{what}: {events:?}");
        let before = layer_ids(&env, &format!("t:{i}"));
        if *copy == Copy::Cached {
            assert_eq!(before, layer_ids(&env, &tag), "{what}");
            continue;
        }
        let fresh = format!("fresh:{}", i + 1);
        build(&["--no-cache", "-t", fresh.as_str()]);
        assert_eq!(layer_ids(&env, &tag), layer_ids(&env, &fresh), "{what}");
        assert_ne!(before, layer_ids(&env, &tag), "{what}: the layer changed");
    }
}

/// Files hard-linked together in the context are linked in the earlier layer too; the
/// incremental COPY leaves them out of its clone and makes them again, so the layer after an
/// edit elsewhere is the one a `--no-cache` build makes, links and all.
#[test]
fn an_incremental_copy_makes_hard_linked_files_again() {
    let env = TestEnv::with_base("base:latest");
    let ctx = numbered_context(
        &env,
        "FROM base\nCOPY . /app\n",
        20,
        &[("edit.txt", "before\n"), ("one.txt", "linked\n")],
    );
    fs_err::hard_link(ctx.join("one.txt"), ctx.join("src/two.txt")).unwrap();
    let build = |extra: &[&str], tag: &str| build_clamped(&env, &ctx, extra, tag);
    build(&[], "t:1");
    let one = snapshot_inodes(&env, "app/one.txt");
    assert_eq!(
        one,
        snapshot_inodes(&env, "app/src/two.txt"),
        "linked in the layer"
    );
    fs_err::write(ctx.join("edit.txt"), "after\n").unwrap();
    build(&[], "t:2");
    let unchanged = snapshot_inodes(&env, "app/src/f03.txt");
    assert_eq!(unchanged[0], unchanged[1], "an unchanged file is shared");
    let linked = snapshot_inodes(&env, "app/one.txt");
    assert_ne!(linked[0], linked[1], "a linked file is made again");
    assert_eq!(
        linked,
        snapshot_inodes(&env, "app/src/two.txt"),
        "and linked again"
    );
    build(&["--no-cache"], "t:fresh");
    assert_eq!(layer_ids(&env, "t:2"), layer_ids(&env, "t:fresh"));
}

/// Every entry under `root` with what a write would change: (type and size, mtime, inode).
fn store_state(root: &std::path::Path) -> Vec<(String, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut left = vec![root.to_owned()];
    while let Some(dir) = left.pop() {
        for entry in fs_err::read_dir(&dir).expect("a readable store") {
            let entry = entry.expect("a readable store");
            let m = fs_err::symlink_metadata(entry.path()).expect("a readable store");
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("an entry is under the root")
                .display()
                .to_string();
            out.push((rel, m.size(), m.mtime(), m.mtime_nsec(), m.ino()));
            if m.is_dir() {
                left.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// A no-op rebuild writes nothing to the store but two pieces of metadata: no blob,
/// snapshot, file list, stat cache, step pointer or `images.json` is rewritten or touched (a
/// directory's mtime would show a temporary file made and removed). The two: the records used
/// get a newer mtime (their "last used", for the GC), and the tag's `LastTagTime` is
/// refreshed, as docker's tag does, in `tag-times.json` (the one file added; `images.json`
/// keeps its bytes, issue 15). Nothing is staged in `tmp/` (the config and manifest exist
/// already; no staging directory is made).
#[test]
fn a_no_op_rebuild_writes_nothing_to_the_store() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM base\nCOPY . /app\nRUN echo hi > /hi\n"),
            ("a.txt", "a\n"),
            ("src/b.txt", "b\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.ok(["build", "-q", "-t", "t:1", c]);
    let before = store_state(&env.root());
    let tagged = crate::registry::inspect(&env, "t:1")["Metadata"]["LastTagTime"].clone();
    let events = env.build_events(["-t", "t:1", c]);
    assert!(ran(&events).is_empty(), "a no-op: {:?}", ran(&events));
    let after = store_state(&env.root());
    let retagged = crate::registry::inspect(&env, "t:1")["Metadata"]["LastTagTime"].clone();
    let time = |v: &serde_json::Value| -> jiff::Timestamp {
        v.as_str()
            .expect("a LastTagTime")
            .parse()
            .expect("an RFC 3339 time")
    };
    assert!(time(&retagged) > time(&tagged), "{retagged} after {tagged}");
    let paths = |s: &[(String, u64, i64, i64, u64)]| -> Vec<String> {
        s.iter()
            .map(|e| e.0.clone())
            .filter(|p| p != "tag-times.json")
            .collect()
    };
    assert_eq!(paths(&after), paths(&before), "entries added or removed");
    let metadata = |p: &str| p == "tag-times.json" || p.starts_with("cache-v1/records/");
    let written: Vec<_> = after
        .iter()
        .filter(|e| !before.contains(e) && !metadata(&e.0))
        .collect();
    assert!(written.is_empty(), "written: {written:#?}");
    let records = |s: &[(String, u64, i64, i64, u64)]| -> Vec<(String, u64, u64)> {
        s.iter()
            .filter(|e| e.0.starts_with("cache-v1/records/"))
            .map(|e| (e.0.clone(), e.1, e.4))
            .collect()
    };
    assert_eq!(records(&after), records(&before), "records rewritten");
}

#[test]
fn a_dockerignored_file_never_reaches_the_image_nor_the_key() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM base\nCOPY . /app\n"),
            (".dockerignore", "*.log\n"),
            ("keep.txt", "k\n"),
            ("debug.log", "secret\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(
        run_in(&env, "t:1", "ls -a /app"),
        ".\n..\n.dockerignore\nDockerfile\nkeep.txt\n"
    );
    fs_err::write(ctx.join("debug.log"), "changed\n").unwrap();
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
}

/// `COPY --exclude` with a `!` exception: the image holds what the exception brings back,
/// and the step's key covers exactly that (an edit to an excluded file is a hit, an edit to
/// the re-included one reruns the COPY). The copy and the cache key share one matcher; the
/// copy used to ignore `!` while the key counted `keep.log`.
#[test]
fn copy_exclude_exceptions_reach_the_image_and_the_key() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY --exclude=*.log --exclude=!keep.log . /app\n",
            ),
            ("keep.log", "k1\n"),
            ("debug.log", "d1\n"),
            ("a.txt", "a\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(
        run_in(&env, "t:1", "ls -a /app; cat /app/keep.log"),
        ".\n..\nDockerfile\na.txt\nkeep.log\nk1\n"
    );
    fs_err::write(ctx.join("debug.log"), "d2\n").unwrap();
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
    fs_err::write(ctx.join("keep.log"), "k2\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events).len(), 1, "{events:?}");
    assert_eq!(run_in(&env, "t:1", "cat /app/keep.log"), "k2\n");
}

/// `.dockerignore` excludes a directory and re-includes one file inside: the COPY writes the
/// directory with that file (made as its parent, as BuildKit sends it), a directory whose
/// exception brings nothing back is not there, and the key covers exactly what is copied.
/// The copy used to skip the excluded directory whole while the key counted the file.
#[test]
fn a_dockerignore_exception_inside_an_excluded_directory_is_copied() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM base\nCOPY . /app\n"),
            (".dockerignore", "docs\n!docs/keep.md\nempty\n!empty/none\n"),
            ("docs/keep.md", "k1\n"),
            ("docs/drop.md", "d1\n"),
            ("empty/x", "x\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(
        run_in(&env, "t:1", "find /app | sort"),
        "/app\n/app/.dockerignore\n/app/Dockerfile\n/app/docs\n/app/docs/keep.md\n"
    );
    fs_err::write(ctx.join("docs/drop.md"), "d2\n").unwrap();
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
    fs_err::write(ctx.join("docs/keep.md"), "k2\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events).len(), 1, "{events:?}");
    assert_eq!(run_in(&env, "t:1", "cat /app/docs/keep.md"), "k2\n");
}

/// Issue 10: a wildcard that matches nothing copies nothing and the build succeeds, also when
/// it is a COPY's only source, as current BuildKit (its Dockerfile frontend sets
/// `AllowEmptyWildcard` on every COPY/ADD source); the key and the copy used to disagree
/// (a key, then "no source files were specified"). Once it matches, the COPY reruns.
#[test]
fn issue_10_copy_of_a_wildcard_matching_nothing_succeeds_and_copies_nothing() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY nomatch* /none/\nCOPY nomatch* a.txt /some/\n",
            ),
            ("a.txt", "a\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(
        run_in(&env, "t:1", "ls -a /some; test -e /none || echo no-none"),
        ".\n..\na.txt\nno-none\n"
    );
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
    fs_err::write(ctx.join("nomatch-now.txt"), "n\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events).len(), 2, "{events:?}");
    assert_eq!(
        run_in(&env, "t:1", "ls /none /some"),
        "/none:\nnomatch-now.txt\n\n/some:\na.txt\nnomatch-now.txt\n"
    );
}

/// Issue 10: `COPY --parents --exclude` matches the excludes below the `/./` pivot (the path
/// kept under the destination), in the image and in the key alike: an edit to a file so
/// excluded is a hit, an edit to a kept one reruns the COPY.
#[test]
fn issue_10_copy_parents_excludes_match_below_the_pivot() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY --parents --exclude=a/*.log x/./a /p/\n",
            ),
            ("x/a/keep.txt", "k1\n"),
            ("x/a/drop.log", "d1\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    env.build_events(["-t", "t:1", c]);
    assert_eq!(
        run_in(&env, "t:1", "find /p | sort"),
        "/p\n/p/a\n/p/a/keep.txt\n"
    );
    fs_err::write(ctx.join("x/a/drop.log"), "d2\n").unwrap();
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
    fs_err::write(ctx.join("x/a/keep.txt"), "k2\n").unwrap();
    let events = env.build_events(["-t", "t:1", c]);
    assert_eq!(ran(&events).len(), 1, "{events:?}");
    assert_eq!(run_in(&env, "t:1", "cat /p/a/keep.txt"), "k2\n");
}

#[test]
fn build_args_in_scope_are_part_of_the_run_key() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM base\nARG V=default\nRUN echo $V > /v\n")],
    );
    let c = ctx.to_str().unwrap();
    let events = env.build_events(["-t", "t:1", "--build-arg", "V=one", c]);
    assert_eq!(ran(&events).len(), 1);
    assert_eq!(run_in(&env, "t:1", "cat /v"), "one\n");
    let events = env.build_events(["-t", "t:1", "--build-arg", "V=two", c]);
    assert_eq!(ran(&events).len(), 1);
    let events = env.build_events(["-t", "t:1", "--build-arg", "V=one", c]);
    assert!(ran(&events).is_empty());
    // An undeclared build arg changes nothing.
    let events = env.build_events(["-t", "t:1", "--build-arg", "V=one", "--build-arg", "U=x", c]);
    assert!(ran(&events).is_empty());
}

#[test]
fn copy_keeps_mode_and_owner() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nCOPY --chown=10:20 run.sh /run.sh\n",
            ),
            ("run.sh", "#!/bin/sh\n"),
        ],
    );
    fs_err::set_permissions(ctx.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(
        run_in(&env, "t:1", "stat -c '%a %u %g' /run.sh"),
        "755 10 20\n"
    );
}

/// Builds `ctx` as `t:1` with plain progress, which must fail (exit 1) well before the
/// `sleep` of 400 s or more it runs; returns its stderr.
fn a_build_that_fails_at_once(env: &TestEnv, ctx: &std::path::Path) -> String {
    let started = Instant::now();
    let out = env
        .command([
            "build",
            "--progress=plain",
            "-t",
            "t:1",
            ctx.to_str().expect("a UTF-8 test path"),
        ])
        .output()
        .expect("strata runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "{stderr}");
    stderr
}

/// No `sleep {marker}` of a failed build still runs, and none of its mounts is left.
fn nothing_of_the_build_runs(env: &TestEnv, marker: &str) {
    let ps = std::process::Command::new("ps")
        .arg("-eo")
        .arg("args")
        .output()
        .expect("ps runs");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.trim() == format!("sleep {marker}")),
        "a sandbox process outlived the build:\n{ps}"
    );
    assert!(
        !fs_err::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo is readable")
            .contains(env.root().to_str().expect("a UTF-8 test path")),
        "a mount of the build is left"
    );
}

#[test]
fn a_failing_run_names_the_step_and_its_line_and_stops_the_rest() {
    let env = TestEnv::with_base("base:latest");
    let marker = format!("{}", 400 + std::process::id() % 500);
    let dockerfile = format!(
        "FROM base AS slow\nRUN sleep {marker}\n\nFROM base AS bad\nRUN exit 3\n\n\
         FROM base\nCOPY --from=slow /etc/passwd /x\nCOPY --from=bad /etc/passwd /y\n"
    );
    let ctx = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    // The sleeping sibling was cancelled, not waited for.
    let stderr = a_build_that_fails_at_once(&env, &ctx);
    assert!(
        stderr.contains(
            "error: [bad 2/2] RUN exit 3 failed\ncaused by: process \"/bin/sh -c exit 3\" \
             did not complete successfully: exit code: 3\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(" --> Dockerfile:5:1\n5 | RUN exit 3\n  | ^\n"),
        "{stderr}"
    );
    nothing_of_the_build_runs(&env, &marker);
    let images = env.ok(["images", "-q"]);
    assert_eq!(
        images.lines().count(),
        1,
        "a failed build committed an image"
    );
}

/// A COPY's layer is written while the RUN on it runs. A layer that fails then (a context
/// file named like a whiteout) fails the build with the COPY's error and line, stops the RUN
/// at once, and leaves nothing: no image, snapshot, layer directory, process or mount.
#[test]
fn a_copy_whose_layer_fails_under_a_running_run_fails_the_build_and_leaves_nothing() {
    let env = TestEnv::with_base("base:latest");
    let ok = env.context("ok", &[("Dockerfile", "FROM base\nRUN touch /x\n")]);
    env.ok(["build", "-q", "-t", "ok:1", ok.to_str().unwrap()]);
    let snapshots = || {
        fs_err::read_dir(env.root().join("snapshots"))
            .unwrap()
            .count()
    };
    let before = snapshots();
    let marker = format!("{}", 400 + std::process::id() % 500);
    let dockerfile = format!("FROM base\nCOPY . /app\nRUN sleep {marker}\n");
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", &dockerfile),
            ("a", "a\n"),
            (".wh.trap", "x\n"),
        ],
    );
    // The RUN was stopped, not waited for.
    let stderr = a_build_that_fails_at_once(&env, &ctx);
    assert!(
        stderr.contains(
            "error: [2/3] COPY . /app failed\ncaused by: failed to write the layer of the step\n\
             caused by: app/.wh.trap cannot be stored in a layer: names starting with .wh. are \
             reserved for whiteouts\n --> Dockerfile:2:1\n"
        ),
        "{stderr}"
    );
    assert_eq!(
        snapshots(),
        before,
        "a snapshot of the failed build is left"
    );
    let left: Vec<_> = fs_err::read_dir(env.root().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "left in tmp/: {left:?}");
    nothing_of_the_build_runs(&env, &marker);
    assert_eq!(
        env.ok(["images", "-q"]).lines().count(),
        2,
        "an image of it"
    );
}

#[test]
fn bad_dockerfiles_fail_with_their_location_before_anything_runs() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUNN echo hi\n")]);
    let err = env.fails(["build", ctx.to_str().unwrap()]);
    assert!(
        err.starts_with("error: Dockerfile:2:1: unknown instruction: RUNN (did you mean RUN?)\n"),
        "{err}"
    );
    // A FROM image the store lacks is pulled: from a registry on 127.0.0.1 that lacks it too
    // (a test never reaches Docker Hub).
    let registry = crate::registry::Registry::start();
    let dockerfile = format!("FROM {}\n", registry.image("missing-image"));
    let ctx = env.context("ctx2", &[("Dockerfile", &dockerfile)]);
    let err = env.fails(["build", ctx.to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:1:1:")
            && err.contains(&format!(
                "manifest for {}:latest not found",
                registry.image("missing-image")
            )),
        "{err}"
    );
    let ctx = env.context("ctx3", &[("Dockerfile", "FROM base\nCOPY nope.txt /\n")]);
    let err = env.fails(["build", ctx.to_str().unwrap()]);
    assert!(err.contains("\"/nope.txt\": not found"), "{err}");
}

#[test]
fn cli_flags_iidfile_quiet_label_target_graph_and_platform() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base AS one\nRUN echo 1 > /one\n\nFROM base AS two\nRUN echo 2 > /two\n",
        )],
    );
    let c = ctx.to_str().unwrap();
    let iid = env.dir().join("iid");
    let quiet = env.ok([
        "build",
        "-q",
        "--target",
        "one",
        "--label",
        "team=core",
        "--iidfile",
        iid.to_str().unwrap(),
        "-t",
        "t:one",
        c,
    ]);
    assert_eq!(quiet.trim(), fs_err::read_to_string(&iid).unwrap());
    assert!(quiet.trim().starts_with("sha256:"));
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(["inspect", "t:one"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Labels"]["team"], "core");
    assert_eq!(
        run_in(&env, "t:one", "cat /one; ls /two 2>&1 || true"),
        "1\nls: /two: No such file or directory\n"
    );

    let dot = env.ok(["build", "--print-graph", c]);
    assert!(dot.starts_with("digraph strata {"), "{dot}");
    assert!(dot.contains("RUN echo 2 > /two\\nDockerfile:5"), "{dot}");
    assert!(
        !dot.contains("/one"),
        "the graph holds an unneeded stage: {dot}"
    );

    let err = env.fails(["build", "--platform", "linux/s390x", c]);
    assert!(err.contains("cannot build for linux/s390x"), "{err}");
}

#[test]
fn no_cache_and_no_cache_filter() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base AS a\nRUN echo a > /a\n\nFROM base AS b\nRUN echo b > /b\nCOPY --from=a /a /a\n",
        )],
    );
    let c = ctx.to_str().unwrap();
    env.build_events([c]);
    assert_eq!(ran(&env.build_events(["--no-cache", c])).len(), 3);
    // Stage a runs again, and so does what is built from it; b's own RUN stays cached.
    let only_a = ran(&env.build_events(["--no-cache-filter", "a", c]));
    assert_eq!(
        only_a,
        vec!["[a 2/2] RUN echo a > /a", "[b 3/3] COPY --from=a /a /a"]
    );
    let err = env.fails(["build", "--no-cache-filter", "zzz", c]);
    assert!(err.contains("no stage named \"zzz\""), "{err}");
}

#[test]
fn rmi_keeps_the_build_cache_usable() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\nRUN echo x > /x\n")]);
    let c = ctx.to_str().unwrap();
    env.ok(["build", "-q", "-t", "t:1", c]);
    env.ok(["rmi", "t:1"]);
    env.ok(["image", "prune", "-f"]);
    assert!(ran(&env.build_events(["-t", "t:1", c])).is_empty());
    assert_eq!(run_in(&env, "t:1", "cat /x"), "x\n");
    env.ok(["system", "check"]);
}

#[test]
fn run_passes_the_exit_code_through_and_uses_the_image_config() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nENV GREETING=hi\nWORKDIR /work\nUSER app\nCMD [\"sh\", \"-c\", \"echo $GREETING $(pwd) $(id -u); exit 42\"]\n",
        )],
    );
    env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    let out = env.command(["run", "--rm", "t:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi /work 1000\n");
    let out = env
        .command([
            "run",
            "--rm",
            "-e",
            "GREETING=yo",
            "-u",
            "0",
            "t:1",
            "sh",
            "-c",
            "echo $GREETING $(id -u)",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yo 0\n");
}

#[test]
fn issue_13_a_mount_without_target_is_on_the_working_directory() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base AS files\n\
                 RUN mkdir -p /etc/demo && echo staged > /etc/demo/s\n\
                 FROM base\n\
                 WORKDIR /src\n\
                 RUN --mount=type=bind cat x > /out-ctx\n\
                 RUN --mount=type=bind,source=d,target=sub cat sub/y > /out-sub\n\
                 RUN --mount=from=files,src=/etc/demo,ro cat s > /out-stage\n",
            ),
            ("x", "context\n"),
            ("d/y", "subdir\n"),
        ],
    );
    env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(
        run_in(&env, "t:1", "cat /out-ctx /out-sub /out-stage; ls /src"),
        "context\nsubdir\nstaged\n"
    );
}

#[test]
fn issue_13_warnings_are_summed_up_after_the_build_and_check_error_fails_it() {
    let env = TestEnv::with_base("base:latest");
    let src = "FROM base\nMAINTAINER me\nENV A b\n";
    let ctx = env.context("ctx", &[("Dockerfile", src)]);
    let out = env
        .command([
            "build",
            "--progress=plain",
            "-t",
            "t:1",
            ctx.to_str().unwrap(),
        ])
        .output()
        .expect("run strata");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with(
            "naming to docker.io/library/t:1\n\n 2 warnings found (use strata check for details):\n \
             - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)\n \
             - LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 3)\n"
        ),
        "{stderr}"
    );
    let strict = env.context(
        "strict",
        &[("Dockerfile", &format!("# check=error=true\n{src}"))],
    );
    let stderr = env.fails(["build", "-t", "t:2", strict.to_str().unwrap()]);
    assert!(
        stderr.contains(
            "error: Dockerfile:1:1: lint violation found for rules: LegacyKeyValueFormat, MaintainerDeprecated\n"
        ),
        "{stderr}"
    );
}

#[test]
fn issue_13_run_security_insecure_needs_allow() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN --security=sandbox true\nRUN --security=insecure cat /proc/self/status > /status\n",
        )],
    );
    let stderr = env.fails(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(
        stderr,
        "error: Dockerfile:3:1: RUN --security=insecure is not allowed: start the build with \
         --allow security.insecure\n3 | RUN --security=insecure cat /proc/self/status > /status\n  | ^\n"
    );
    env.ok([
        "build",
        "-q",
        "--allow",
        "security.insecure",
        "-t",
        "t:1",
        ctx.to_str().unwrap(),
    ]);
}

#[test]
fn issue_13_add_unpacks_a_local_archive_unless_unpack_is_false() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM base\nADD a.tar /x/\nADD --unpack=false a.tar /y/\nADD --unpack=true a.tar /z/\n",
            ),
            ("src/inside.txt", "packed\n"),
        ],
    );
    let tar = std::process::Command::new("tar")
        .args(["-cf", "a.tar", "-C", "src", "inside.txt"])
        .current_dir(&ctx)
        .status()
        .expect("run tar");
    assert!(tar.success());
    env.ok(["build", "-q", "-t", "t:1", ctx.to_str().unwrap()]);
    assert_eq!(
        run_in(&env, "t:1", "cat /x/inside.txt; ls /y; cat /z/inside.txt"),
        "packed\na.tar\npacked\n"
    );
}

#[test]
fn issue_13_a_base_image_of_another_platform_is_used_with_buildkits_warning() {
    let env = TestEnv::new();
    let tar = env.base_tarball();
    let other = if cfg!(target_arch = "aarch64") {
        ("linux/amd64", "linux/arm64")
    } else {
        ("linux/arm64", "linux/amd64")
    };
    env.ok([
        "import",
        "--platform",
        other.0,
        tar.to_str().unwrap(),
        "foreign:1",
    ]);
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM foreign:1\nCOPY a /a\n"), ("a", "x\n")],
    );
    let out = env
        .command([
            "build",
            "--progress=plain",
            "-t",
            "t:1",
            ctx.to_str().unwrap(),
        ])
        .output()
        .expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            " 1 warning found (use strata check for details):\n \
             - InvalidBaseImagePlatform: Base image foreign:1 was pulled with platform \"{}\", expected \"{}\" for current build (line 1)\n",
            other.0, other.1
        )),
        "{stderr}"
    );
}

/// What a layer says of each entry below `prefix/`: kind, mode, owner, mtime, size or link
/// target, `user.*` xattrs and a sum of the bytes; a hard link names the entry it links to.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field described"
)]
fn describe_layer_entry(
    path: &str,
    kind: char,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    target: &str,
    xattrs: &[String],
    body: &[u8],
) -> String {
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    format!(
        "{path} {kind} {mode:o} {}:{} {mtime} {} {target} [{}] {sum}",
        owner.0,
        owner.1,
        body.len(),
        xattrs.join(",")
    )
}

/// The entries of the last layer of `image` (`strata save`), described as above.
fn last_layer_entries(env: &TestEnv, image: &str) -> Vec<String> {
    use std::io::Read;
    let saved = env.dir().join("saved.tar");
    env.ok(["save", "-o", saved.to_str().expect("test fixture"), image]);
    let mut outer = tar::Archive::new(fs_err::File::open(&saved).expect("test fixture"));
    let mut files = std::collections::HashMap::new();
    for e in outer.entries().expect("test fixture") {
        let mut e = e.expect("test fixture");
        let p = e
            .path()
            .expect("test fixture")
            .to_string_lossy()
            .into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).expect("test fixture");
        files.insert(p, body);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("test fixture");
    let layers = index[0]["Layers"].as_array().expect("test fixture");
    let last = &files[layers
        .last()
        .expect("test fixture")
        .as_str()
        .expect("test fixture")];
    let mut out = Vec::new();
    let mut layer = tar::Archive::new(last.as_slice());
    for e in layer.entries().expect("test fixture") {
        let mut e = e.expect("test fixture");
        let path = e
            .path()
            .expect("test fixture")
            .to_string_lossy()
            .into_owned();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().expect("test fixture") {
            for x in pax {
                let x = x.expect("test fixture");
                if let Some(name) = x
                    .key()
                    .expect("test fixture")
                    .strip_prefix("SCHILY.xattr.user.")
                {
                    xattrs.push(format!("user.{name}={}", x.value().expect("test fixture")));
                }
            }
        }
        xattrs.sort();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            other => panic!("{path}: unexpected {other:?}"),
        };
        let target = h
            .link_name()
            .expect("test fixture")
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut body = Vec::new();
        e.read_to_end(&mut body).expect("test fixture");
        out.push(describe_layer_entry(
            path.trim_end_matches('/'),
            kind,
            h.mode().expect("test fixture"),
            (
                h.uid().expect("test fixture"),
                h.gid().expect("test fixture"),
            ),
            h.mtime().expect("test fixture"),
            &target,
            &xattrs,
            &body,
        ));
    }
    out
}

/// The same descriptions made from the context directory `dir` as a COPY to `/prefix` of
/// it should give: owned by root, everything else as in the context; the first of a group of
/// hard links (in the layer's order: names sorted, parents first) holds the bytes.
fn expected_entries(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    fn walk(
        dir: &std::path::Path,
        rel: &str,
        out: &mut Vec<String>,
        first: &mut std::collections::HashMap<u64, String>,
    ) {
        let mut names: Vec<_> = fs_err::read_dir(dir)
            .expect("test fixture")
            .map(|e| e.expect("test fixture").file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let path = format!("{rel}/{}", n.to_string_lossy());
            let m = fs_err::symlink_metadata(&p).expect("test fixture");
            let mode = m.mode() & 0o7777;
            let mtime = m.mtime() as u64;
            let ft = m.file_type();
            let mut xattrs: Vec<String> = xattr::list(&p)
                .expect("test fixture")
                .filter(|x| x.to_string_lossy().starts_with("user."))
                .map(|x| {
                    let v = xattr::get(&p, &x)
                        .expect("test fixture")
                        .expect("test fixture");
                    format!("{}={}", x.to_string_lossy(), String::from_utf8_lossy(&v))
                })
                .collect();
            xattrs.sort();
            let line = if ft.is_dir() {
                describe_layer_entry(&path, 'd', mode, (0, 0), mtime, "", &xattrs, &[])
            } else if ft.is_symlink() {
                let t = fs_err::read_link(&p).expect("test fixture");
                describe_layer_entry(
                    &path,
                    'l',
                    mode,
                    (0, 0),
                    mtime,
                    &t.to_string_lossy(),
                    &[],
                    &[],
                )
            } else if m.nlink() > 1 && first.contains_key(&m.ino()) {
                let t = first[&m.ino()].clone();
                describe_layer_entry(&path, 'h', mode, (0, 0), mtime, &t, &xattrs, &[])
            } else {
                first.insert(m.ino(), path.clone());
                let body = fs_err::read(&p).expect("test fixture");
                describe_layer_entry(&path, 'f', mode, (0, 0), mtime, "", &xattrs, &body)
            };
            out.push(line);
            if ft.is_dir() {
                walk(&p, &path, out, first);
            }
        }
    }
    walk(dir, prefix, out, &mut std::collections::HashMap::new());
}

/// A COPY of a tree of many files (nested directories; modes with set-ID bits and bits a
/// umask strips; hard links within and across directories; symlinks; xattrs; one-byte to
/// 70 kB files), whose regular files are spread over threads, lays down exactly what the
/// context holds: every entry's bytes, mode, owner, mtime, link and xattrs in the layer. A
/// file that cannot be written (a non-empty directory in the parent where it goes) fails the
/// build with its path.
#[test]
fn a_copy_of_many_files_on_threads_keeps_every_entry_and_names_a_failing_one() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::with_base("base:latest");
    let mut files = vec![(
        "Dockerfile".to_owned(),
        "FROM base\nCOPY tree /app\n".to_owned(),
    )];
    for d in 0..4 {
        for s in 0..3 {
            for f in 0..50 {
                let len = [1, 700, 4096, 10_000, 70_000][(f + s) % 5];
                let body: String = (0..len)
                    .map(|i| char::from(b'a' + ((i + f + d) % 26) as u8))
                    .collect();
                files.push((format!("tree/d{d}/s{s}/f{f:02}"), body));
            }
        }
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = env.context("ctx", &refs);
    let tree = ctx.join("tree");
    let modes = [
        0o644, 0o755, 0o600, 0o666, 0o4755, 0o640, 0o777, 0o444, 0o2750,
    ];
    for (i, (p, _)) in files.iter().enumerate().skip(1) {
        let path = ctx.join(p);
        fs_err::set_permissions(
            &path,
            std::fs::Permissions::from_mode(modes[i % modes.len()]),
        )
        .unwrap();
        if i % 11 == 0 {
            xattr::set(&path, "user.note", format!("n{i}").as_bytes()).unwrap();
        }
    }
    fs_err::hard_link(tree.join("d0/s0/f03"), tree.join("d0/s0/f03-link")).unwrap();
    fs_err::hard_link(tree.join("d0/s0/f03"), tree.join("d2/s1/zz-link")).unwrap();
    std::os::unix::fs::symlink("../s1/f01", tree.join("d1/s0/sym")).unwrap();
    std::os::unix::fs::symlink("/nowhere", tree.join("d3/dangling")).unwrap();
    let c = ctx.to_str().unwrap();
    env.ok(["build", "-q", "-t", "t:1", c]);
    let mut want = Vec::new();
    expected_entries(&tree, "app", &mut want);
    let got: Vec<String> = last_layer_entries(&env, "t:1")
        .into_iter()
        .filter(|l| l.starts_with("app/"))
        .collect();
    assert_eq!(got.len(), 4 * 3 * 50 + 4 * 3 + 4 + 4, "{got:#?}");
    assert_eq!(got, want);

    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM base\nRUN mkdir -p /app/d2/s1/f17/keep\nCOPY tree /app\n",
    )
    .unwrap();
    let err = env.fails(["build", "-q", "-t", "t:2", c]);
    assert!(
        err.contains("/tree/d2/s1/f17: cannot replace non-empty directory f17"),
        "{err}"
    );
}
