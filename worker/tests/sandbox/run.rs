//! RUN in the sandbox: output, exit codes, users, environment, isolation, cleanup.

use crate::common::*;
use libtest_mimic::Trial;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strata_graph::{CacheSharing, Mount, MountKind, NetworkMode, SecurityMode};
use strata_worker::{MountInput, OutputStream, RunError};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "run_echo_streams_stdout_and_stderr",
            run_echo_streams_stdout_and_stderr,
        ),
        trial("run_exit_code_message", run_exit_code_message),
        trial(
            "run_reports_the_start_before_any_output",
            run_reports_the_start_before_any_output,
        ),
        trial(
            "run_timed_counts_the_command_in_process_not_in_start",
            run_timed_counts_the_command_in_process_not_in_start,
        ),
        trial(
            "run_env_home_and_path_like_buildkit",
            run_env_home_and_path_like_buildkit,
        ),
        trial(
            "run_supplementary_groups_like_buildkit",
            run_supplementary_groups_like_buildkit,
        ),
        trial(
            "run_user_errors_never_become_root",
            run_user_errors_never_become_root,
        ),
        trial(
            "run_creates_missing_workdir_owned_by_user",
            run_creates_missing_workdir_owned_by_user,
        ),
        trial(
            "run_sees_only_its_own_processes",
            run_sees_only_its_own_processes,
        ),
        trial(
            "run_cannot_reach_host_files_and_masks_proc",
            run_cannot_reach_host_files_and_masks_proc,
        ),
        trial(
            "run_layer_has_only_the_commands_changes",
            run_layer_has_only_the_commands_changes,
        ),
        trial(
            "run_leaves_no_mounts_processes_or_dirs",
            run_leaves_no_mounts_processes_or_dirs,
        ),
        trial("run_cancel_kills_everything", run_cancel_kills_everything),
        trial(
            "run_network_none_has_only_loopback",
            run_network_none_has_only_loopback,
        ),
        trial(
            "run_network_none_gets_a_fresh_namespace_every_time",
            run_network_none_gets_a_fresh_namespace_every_time,
        ),
        trial(
            "run_survives_a_killed_sandbox_helper",
            run_survives_a_killed_sandbox_helper,
        ),
        trial(
            "worker_drop_ends_the_sandbox_helper",
            worker_drop_ends_the_sandbox_helper,
        ),
        trial(
            "run_device_nodes_from_layers_cannot_be_opened",
            run_device_nodes_from_layers_cannot_be_opened,
        ),
        trial(
            "run_mounts_tmpfs_cache_bind_secret_file",
            run_mounts_tmpfs_cache_bind_secret_file,
        ),
        trial(
            "run_cache_mount_fresh_dir_mode_and_owner",
            run_cache_mount_fresh_dir_mode_and_owner,
        ),
        trial(
            "run_cache_mount_from_a_stage_is_seeded_once",
            run_cache_mount_from_a_stage_is_seeded_once,
        ),
        trial(
            "run_bind_mount_source_stays_inside_its_stage",
            run_bind_mount_source_stays_inside_its_stage,
        ),
        trial("run_on_200_layers", run_on_200_layers),
        trial(
            "run_mount_points_hidden_by_a_layer_stay_out_of_the_new_layer",
            run_mount_points_hidden_by_a_layer_stay_out_of_the_new_layer,
        ),
        trial(
            "run_capabilities_are_dockers_default",
            run_capabilities_are_dockers_default,
        ),
        trial("run_executable_not_found", run_executable_not_found),
        trial(
            "run_seccomp_blocks_what_dockers_profile_blocks",
            run_seccomp_blocks_what_dockers_profile_blocks,
        ),
        trial(
            "run_setuid_binaries_gain_privileges",
            run_setuid_binaries_gain_privileges,
        ),
        trial(
            "run_no_new_privileges_keeps_setuid_out",
            run_no_new_privileges_keeps_setuid_out,
        ),
        trial(
            "run_insecure_has_no_filter_and_every_capability",
            run_insecure_has_no_filter_and_every_capability,
        ),
    ]
}

fn ok(r: Result<(), strata_worker::RunError>, lines: &Lines) -> TestResult {
    r.map_err(|e| format!("{e}; output: {lines:?}").into())
}

fn run_echo_streams_stdout_and_stderr() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let (r, lines) = run_op(
        &env,
        sh("echo hello; echo oops >&2; printf 'no newline'"),
        vec![env.base.clone()],
        &upper,
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "hello\nno newline\n".to_string(), "stdout")?;
    ensure(
        lines
            .iter()
            .any(|(s, l)| *s == OutputStream::Stderr && l == "oops"),
        "stderr line",
    )
}

/// A container's monitor tells an attached client of the start from `started`, and the
/// client reads no output before it hears of it: were an output line handed over first, a
/// monitor whose `output` waits for that client would never report the start. The start is
/// reported by the sandbox's helper while the command already writes, so without the order
/// kept the output's read won about half the races.
fn run_reports_the_start_before_any_output() -> TestResult {
    let env = Env::new();
    let rt = runtime();
    for round in 0..12 {
        let started = Arc::new(AtomicBool::new(false));
        let early = Arc::new(AtomicU64::new(0));
        let lines = Arc::new(AtomicU64::new(0));
        let req = request(
            exec(&["seq", "1", "20000"]),
            vec![env.base.clone()],
            &env.upper(),
        );
        let (s, e, l) = (started.clone(), early.clone(), lines.clone());
        let r = rt.block_on(env.worker.run_with_start(
            req,
            move |_, _| {
                if !s.load(Ordering::SeqCst) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
                l.fetch_add(1, Ordering::SeqCst);
            },
            {
                let started = started.clone();
                move |_| started.store(true, Ordering::SeqCst)
            },
            tokio_util::sync::CancellationToken::new(),
        ));
        ensure(r.is_ok(), format!("round {round}: {:?}", r.err()))?;
        ensure_eq(
            (early.load(Ordering::SeqCst), lines.load(Ordering::SeqCst)),
            (0, 20000),
            &format!("round {round}: lines before the start, lines"),
        )?;
    }
    Ok(())
}

fn run_exit_code_message() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let (r, _) = run_op(&env, sh("exit 3"), vec![env.base.clone()], &upper, vec![]);
    let e = r.err().ok_or("expected failure")?;
    ensure_eq(
        e.to_string(),
        "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3".to_string(),
        "message",
    )?;
    ensure_eq(e.exit_code(), Some(3), "code")
}

fn run_timed_counts_the_command_in_process_not_in_start() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let req = request(sh("sleep 0.3"), vec![env.base.clone()], &upper);
    let times = runtime()
        .block_on(
            env.worker
                .run_timed(req, |_, _| {}, tokio_util::sync::CancellationToken::new()),
        )
        .map_err(|e| e.to_string())?;
    // The command's 0.3 s is all in `process`; the sandbox's start is timed too.
    ensure(
        times.process >= std::time::Duration::from_millis(300),
        format!("{times:?}"),
    )?;
    ensure(!times.start.is_zero(), format!("{times:?}"))
}

fn run_env_home_and_path_like_buildkit() -> TestResult {
    let env = Env::new();
    let script = "echo \"home=[$HOME] path=[$PATH]\"; env | sort | cut -d= -f1 | tr '\\n' ' '";
    let (r, lines) = run_op(
        &env,
        sh(script),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let out = stdout(&lines);
    ensure_eq(
        out.lines().next().unwrap_or(""),
        "home=[/root] path=[/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]",
        "root env",
    )?;
    ensure_eq(
        out.lines().nth(1).unwrap_or("").trim(),
        "HOME PATH PWD SHLVL",
        "no builder variables",
    )?;
    let mut op = sh("echo \"home=[$HOME]\"");
    op.user = "app".into();
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "home=[/home/app]\n".into(), "app home")?;
    let mut op = sh("echo \"home=[$HOME]\"");
    op.env = vec!["HOME=/custom".into()];
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "home=[/custom]\n".into(), "ENV HOME wins")
}

fn run_supplementary_groups_like_buildkit() -> TestResult {
    let env = Env::new();
    for (user, want) in [
        ("", "Groups:\t0 \n"),
        ("app", "Groups:\t1000 \n"),
        ("1000:50", "Groups:\t50 \n"),
    ] {
        let mut op = sh("grep '^Groups:' /proc/self/status; id");
        op.user = user.into();
        let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
        ok(r, &lines)?;
        let out = stdout(&lines);
        ensure_eq(
            out.lines().next().map(|l| format!("{l}\n")),
            Some(want.to_string()),
            &format!("groups of {user:?}"),
        )?;
    }
    Ok(())
}

fn run_user_errors_never_become_root() -> TestResult {
    let env = Env::new();
    for user in ["4294967296", "2147483648:2147483648", "-1:-1", "ghost"] {
        let mut op = sh("id -u");
        op.user = user.into();
        let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
        let e = r
            .err()
            .ok_or(format!("USER {user} must fail, ran with {lines:?}"))?;
        ensure(
            matches!(e, strata_worker::RunError::Start { .. }),
            format!("USER {user}: {e}"),
        )?;
    }
    let mut op = sh("id -u; id -g");
    op.user = "12345".into(); // numeric, not in passwd: fine without a lookup
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "12345\n0\n".into(), "numeric user")
}

fn run_creates_missing_workdir_owned_by_user() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let mut op = sh("pwd; id -u > uid.txt");
    op.user = "app".into();
    op.cwd = "/data/app".into();
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &upper, vec![]);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "/data/app\n".into(), "cwd")?;
    use std::os::unix::fs::MetadataExt;
    let m = fs_err::metadata(upper.join("data/app")).map_err(|e| e.to_string())?;
    ensure_eq(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (1000, 1000, 0o755),
        "created workdir",
    )?;
    ensure_eq(
        fs_err::read_to_string(upper.join("data/app/uid.txt")).map_err(|e| e.to_string())?,
        "1000\n".into(),
        "file in workdir",
    )
}

fn run_sees_only_its_own_processes() -> TestResult {
    let env = Env::new();
    let (r, lines) = run_op(
        &env,
        sh("sleep 30 & ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; hostname"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let out = stdout(&lines);
    let pids: Vec<u32> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    // init (1), the shell (2), sleep, ls, grep, ... and nothing of the host.
    ensure(
        pids.first() == Some(&1) && pids.len() < 10,
        format!("pids {pids:?}"),
    )?;
    ensure_eq(out.lines().nth(1), Some("buildkitsandbox"), "hostname")
}

fn run_cannot_reach_host_files_and_masks_proc() -> TestResult {
    let env = Env::new();
    let marker = env.dir.path().join("host-secret.txt");
    fs_err::write(&marker, "HOST").unwrap();
    let script = format!(
        "cat {} 2>/dev/null && echo LEAK; ls / | tr '\\n' ' '; echo; wc -c < /proc/keys; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo WRITABLE; \
         touch /sys/x 2>/dev/null && echo SYSRW; cat /etc/hosts; ls /dev | tr '\\n' ' '",
        marker.display()
    );
    let (r, lines) = run_op(
        &env,
        sh(&script),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let out = stdout(&lines);
    ensure(
        !out.contains("LEAK") && !out.contains("WRITABLE") && !out.contains("SYSRW"),
        format!("isolation broken: {out}"),
    )?;
    let mut l = out.lines();
    ensure_eq(
        l.next(),
        Some("bin dev etc home proc root sys tmp "),
        "root listing",
    )?;
    ensure_eq(l.next(), Some("0"), "/proc/keys masked")?;
    ensure_eq(
        l.next(),
        Some("127.0.0.1\tlocalhost buildkitsandbox"),
        "/etc/hosts",
    )?;
    let devs = out.lines().last().unwrap_or("");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin",
        "stdout", "stderr",
    ] {
        ensure(
            devs.split_whitespace().any(|x| x == d),
            format!("/dev/{d} missing: {devs}"),
        )?;
    }
    Ok(())
}

fn run_layer_has_only_the_commands_changes() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let (r, lines) = run_op(
        &env,
        sh("echo x > /tmp/new && rm /bin/yes && echo changed > /etc/motd"),
        vec![env.base.clone()],
        &upper,
        vec![],
    );
    ok(r, &lines)?;
    let mut found = Vec::new();
    for e in walk(&upper) {
        found.push(e.strip_prefix(&upper).unwrap().display().to_string());
    }
    found.sort();
    ensure_eq(
        found,
        vec![
            "bin".to_string(),
            "bin/yes".into(),
            "etc".into(),
            "etc/motd".into(),
            "tmp".into(),
            "tmp/new".into(),
        ],
        "upper contents",
    )?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let yes = fs_err::symlink_metadata(upper.join("bin/yes")).unwrap();
    ensure(
        yes.file_type().is_char_device() && yes.rdev() == 0,
        "bin/yes is an overlay whiteout",
    )
}

pub fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs_err::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs_err::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmd) = fs_err::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{name}: {cmd}"));
            }
        }
    }
    out
}

fn leftovers(env: &Env) -> TestResult {
    ensure_eq(
        own_mounts(env),
        Vec::<String>::new(),
        "mounts of the run left",
    )?;
    // Scratch dirs are deleted in the background, right after the run.
    let scratch = || -> Vec<_> {
        fs_err::read_dir(env.dir.path().join("layers"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with(".strata"))
            .collect()
    };
    for _ in 0..100 {
        if scratch().is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(format!("scratch dirs left: {:?}", scratch()).into())
}

fn run_leaves_no_mounts_processes_or_dirs() -> TestResult {
    let env = Env::new();
    let mounts = vec![Mount {
        target: "/mnt/t".into(),
        kind: MountKind::Tmpfs { size: None },
    }];
    let (r, lines) = run_op(
        &env,
        with_mounts(sh("sleep 1234567 & mount | wc -l; exit 7"), mounts),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::None],
    );
    ensure_eq(r.err().and_then(|e| e.exit_code()), Some(7), "exit code")?;
    ensure(
        stdout(&lines).trim().parse::<u32>().unwrap_or(0) > 10,
        "the sandbox had its mounts",
    )?;
    ensure(
        processes_with("1234567").is_empty(),
        format!("left running: {:?}", processes_with("1234567")),
    )?;
    leftovers(&env)
}

fn run_cancel_kills_everything() -> TestResult {
    use std::sync::Arc;
    let env = Env::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let c2 = cancel.clone();
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = started.clone();
    let req = request(
        sh("(sleep 7654321 &) ; echo started; sleep 7654321"),
        vec![env.base.clone()],
        &env.upper(),
    );
    let rt = runtime();
    let t0 = std::time::Instant::now();
    let r = rt.block_on(async {
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            c2.cancel();
        });
        let r = env
            .worker
            .run(
                req,
                move |_, l| {
                    if l == b"started" {
                        s2.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                },
                cancel,
            )
            .await;
        let _ = canceller.await;
        r
    });
    ensure(
        started.load(std::sync::atomic::Ordering::SeqCst),
        "the command started",
    )?;
    ensure(
        matches!(r, Err(strata_worker::RunError::Cancelled)),
        format!("{r:?}"),
    )?;
    ensure(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "cancel was prompt",
    )?;
    ensure(
        processes_with("7654321").is_empty(),
        format!("left running: {:?}", processes_with("7654321")),
    )?;
    leftovers(&env)
}

fn run_network_none_has_only_loopback() -> TestResult {
    let env = Env::new();
    let mut op = sh("ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/operstate");
    op.network = NetworkMode::None;
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    let out = stdout(&lines);
    ensure_eq(out.lines().next(), Some("lo "), "interfaces")?;
    ensure(
        out.lines().nth(1) == Some("unknown") || out.lines().nth(1) == Some("up"),
        format!("lo state {out}"),
    )
}

/// Network namespaces are made ahead of time by the sandbox helper, but never reused: each
/// `--network=none` run starts with a loopback no earlier run has sent anything on.
fn run_network_none_gets_a_fresh_namespace_every_time() -> TestResult {
    let env = Env::new();
    let host = fs_err::read_link("/proc/self/ns/net").unwrap();
    for i in 0..3 {
        let mut op = sh(
            "readlink /proc/self/ns/net; cat /sys/class/net/lo/statistics/tx_packets; \
             echo x | nc -w 1 127.0.0.1 1 2>/dev/null; cat /sys/class/net/lo/statistics/tx_packets",
        );
        op.network = NetworkMode::None;
        let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
        ok(r, &lines)?;
        let out = stdout(&lines);
        let l: Vec<&str> = out.lines().collect();
        ensure(
            l.len() == 3 && l[0] != host.display().to_string(),
            format!("run {i}: {out:?}"),
        )?;
        ensure_eq(l[1], "0", &format!("run {i}: packets on lo at the start"))?;
        ensure(
            l[2] != "0",
            format!("run {i}: the run made traffic: {out:?}"),
        )?;
    }
    Ok(())
}

/// The worker's sandbox helper processes (children of this process started as `__sandbox`).
fn helpers() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in fs_err::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = fs_err::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        let cmd = fs_err::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(me.as_str()) && String::from_utf8_lossy(&cmd).contains("__sandbox") {
            out.push(pid);
        }
    }
    out
}

fn run_survives_a_killed_sandbox_helper() -> TestResult {
    let env = Env::new();
    let (r, lines) = run_op(
        &env,
        sh("true"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let before = helpers();
    ensure_eq(before.len(), 1, "one helper process")?;
    let st = std::process::Command::new("kill")
        .args(["-9", &before[0].to_string()])
        .status()
        .unwrap();
    ensure(st.success(), "killed the helper")?;
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (r, lines) = run_op(
        &env,
        sh("echo again"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "again\n".into(),
        "output after a new helper",
    )?;
    let after = helpers();
    ensure(
        after.len() == 1 && after[0] != before[0],
        format!("a new helper: {before:?} -> {after:?}"),
    )
}

fn worker_drop_ends_the_sandbox_helper() -> TestResult {
    let env = Env::new();
    let (r, lines) = run_op(
        &env,
        sh("true"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(helpers().len(), 1, "one helper process")?;
    drop(env);
    for _ in 0..100 {
        if helpers().is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!("helper still running: {:?}", helpers()).into())
}

fn run_device_nodes_from_layers_cannot_be_opened() -> TestResult {
    let env = Env::new();
    let layer = env.dir.path().join("layers/devs");
    fs_err::create_dir_all(&layer).unwrap();
    let st = std::process::Command::new("mknod")
        .arg(layer.join("mem"))
        .args(["c", "1", "1"])
        .status()
        .unwrap();
    ensure(st.success(), "mknod")?;
    let script = "head -c 1 /mem >/dev/null 2>&1 && echo OPENED; mknod /dev/mem2 c 1 1 && (head -c 1 /dev/mem2 >/dev/null 2>&1 && echo OPENED2); echo ok > /dev/null && echo devnull-works";
    let (r, lines) = run_op(
        &env,
        sh(script),
        vec![layer, env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "devnull-works\n".into(),
        "device nodes outside our /dev binds are unusable",
    )
}

fn run_mounts_tmpfs_cache_bind_secret_file() -> TestResult {
    let env = Env::new();
    let upper = env.upper();
    let ctx = env.dir.path().join("ctx");
    fs_err::create_dir_all(ctx.join("src")).unwrap();
    fs_err::write(ctx.join("src/input.txt"), "from-context\n").unwrap();
    let cache = |id: &str| MountKind::Cache {
        id: id.into(),
        sharing: CacheSharing::Shared,
        from: None,
        readonly: false,
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let mounts = vec![
        Mount {
            target: "/t".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
        Mount {
            target: "/var/cache/c".into(),
            kind: cache("c1"),
        },
        Mount {
            target: "/src".into(),
            kind: MountKind::Bind {
                input: 1,
                source: "src".into(),
                rw: true,
            },
        },
        Mount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                id: "tok".into(),
                env: Some("TOK".into()),
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        },
        Mount {
            target: "/dev/pipes/script".into(),
            kind: MountKind::File {
                contents: "#!/bin/sh\necho from-heredoc\n".into(),
                mode: 0o755,
            },
        },
    ];
    let inputs = vec![
        MountInput::None,
        MountInput::None,
        MountInput::Layers(vec![ctx.clone()]),
        MountInput::Secret(Some(b"s3cret".to_vec())),
        MountInput::None,
    ];
    let script = "echo t > /t/x && cat /src/input.txt && echo w > /src/written && echo cached > /var/cache/c/item \
                  && cat /run/secrets/tok && echo && echo env=$TOK && stat -c %a /run/secrets/tok && /dev/pipes/script";
    let (r, lines) = run_op(
        &env,
        with_mounts(sh(script), mounts.clone()),
        vec![env.base.clone()],
        &upper,
        inputs.clone(),
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "from-context\ns3cret\nenv=s3cret\n400\nfrom-heredoc\n".into(),
        "mount contents",
    )?;
    ensure(
        !ctx.join("src/written").exists(),
        "rw bind writes are discarded",
    )?;
    let layer: Vec<String> = walk(&upper)
        .iter()
        .map(|p| p.strip_prefix(&upper).unwrap().display().to_string())
        .collect();
    ensure(
        layer.iter().all(|p| {
            !p.starts_with("t")
                && !p.starts_with("src")
                && !p.contains("secrets")
                && !p.contains("pipes")
                && p != "var/cache/c"
        }),
        format!("mount points left in the layer: {layer:?}"),
    )?;
    // The cache persists to the next run.
    let mounts2 = vec![Mount {
        target: "/var/cache/c".into(),
        kind: cache("c1"),
    }];
    let (r, lines) = run_op(
        &env,
        with_mounts(sh("cat /var/cache/c/item"), mounts2),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::None],
    );
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "cached\n".into(), "cache persisted")?;
    // A required secret that was not given is an error.
    let (r, _) = run_op(
        &env,
        with_mounts(sh("true"), vec![mounts[3].clone()]),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::Secret(None)],
    );
    ensure(
        matches!(r, Err(strata_worker::RunError::Mount { .. })),
        format!("{r:?}"),
    )
}

fn run_cache_mount_fresh_dir_mode_and_owner() -> TestResult {
    let env = Env::new();
    let mounts = vec![Mount {
        target: "/var/cache/conf".into(),
        kind: MountKind::Cache {
            id: "conf-mount-cache-perm".into(),
            sharing: CacheSharing::Locked,
            from: None,
            readonly: false,
            mode: 0o700,
            uid: 1000,
            gid: 50,
        },
    }];
    let (r, lines) = run_op(
        &env,
        with_mounts(sh("stat -c '%u:%g:%a' /var/cache/conf"), mounts),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::None],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "1000:50:700\n".into(),
        "fresh cache dir (conformance mount-cache)",
    )
}

/// `RUN --mount=type=cache,from=stage,source=/seed`: a new cache starts as a copy of that
/// directory of the stage (owners, modes, links kept; the stage itself never written), is
/// not seeded again once it exists, and is a different cache from the same id without
/// `from` or from another stage.
fn run_cache_mount_from_a_stage_is_seeded_once() -> TestResult {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let env = Env::new();
    let stage = |name: &str, content: &str| {
        let l = env.dir.path().join(format!("layers/{name}"));
        fs_err::create_dir_all(l.join("seed/sub")).unwrap();
        fs_err::write(l.join("seed/file.txt"), content).unwrap();
        fs_err::set_permissions(
            l.join("seed/file.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        symlink("file.txt", l.join("seed/link")).unwrap();
        fs_err::write(l.join("seed/sub/deep"), "deep\n").unwrap();
        for p in ["seed", "seed/file.txt", "seed/sub", "seed/sub/deep"] {
            std::os::unix::fs::lchown(l.join(p), Some(1000), Some(1000)).unwrap();
        }
        fs_err::set_permissions(l.join("seed"), std::fs::Permissions::from_mode(0o750)).unwrap();
        // A link that would leave the stage if it were followed on the host.
        symlink("/", l.join("seed/up")).unwrap();
        l
    };
    let one = stage("stage-one", "one\n");
    let two = stage("stage-two", "two\n");
    let cache = |from: Option<&str>| Mount {
        target: "/c".into(),
        kind: MountKind::Cache {
            id: "seeded".into(),
            sharing: CacheSharing::Shared,
            from: from.map(|s| (1, s.to_string())),
            readonly: false,
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    };
    let run = |script: &str, mount: Mount, input: MountInput| {
        run_op(
            &env,
            with_mounts(sh(script), vec![mount]),
            vec![env.base.clone()],
            &env.upper(),
            vec![input],
        )
    };
    let from_one = || MountInput::Layers(vec![one.clone(), env.base.clone()]);
    let (r, lines) = run(
        "cat /c/file.txt /c/sub/deep; stat -c '%a %u:%g' /c /c/file.txt; readlink /c/link; readlink /c/up; \
         echo added > /c/added",
        cache(Some("/seed")),
        from_one(),
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "one\ndeep\n750 1000:1000\n640 1000:1000\nfile.txt\n/\n".into(),
        "seeded cache",
    )?;
    ensure(
        !one.join("seed/added").exists(),
        "the stage is not written through the cache",
    )?;
    let (r, lines) = run(
        "cat /c/added /c/file.txt; rm /c/file.txt",
        cache(Some("/seed")),
        from_one(),
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "added\none\n".into(),
        "kept, not seeded again",
    )?;
    let (r, lines) = run("ls /c | tr '\\n' ' '", cache(Some("/seed")), from_one());
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "added link sub up \n".into(),
        "a deleted seed file stays deleted",
    )?;
    let (r, lines) = run("ls -A /c | wc -l", cache(None), MountInput::None);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "0\n".into(), "same id without from")?;
    let (r, lines) = run(
        "cat /c/file.txt",
        cache(Some("/seed")),
        MountInput::Layers(vec![two.clone(), env.base.clone()]),
    );
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "two\n".into(), "same id from another stage")?;
    let (r, _) = run("true", cache(Some("/missing")), from_one());
    match r {
        Err(strata_worker::RunError::Mount { target, reason }) => ensure(
            target == "/c" && reason.contains("/missing"),
            format!("error for a missing source: {target}: {reason}"),
        ),
        other => Err(format!("a missing source must fail: {other:?}").into()),
    }
}

fn run_bind_mount_source_stays_inside_its_stage() -> TestResult {
    let env = Env::new();
    let stage = env.dir.path().join("layers/stage");
    fs_err::create_dir_all(&stage).unwrap();
    std::os::unix::fs::symlink("/", stage.join("escape")).unwrap();
    fs_err::write(stage.join("inside.txt"), "stage-file\n").unwrap();
    let marker = env.dir.path().join("host-only.txt");
    fs_err::write(&marker, "HOST").unwrap();
    let mounts = vec![Mount {
        target: "/m".into(),
        kind: MountKind::Bind {
            input: 1,
            source: format!("/escape{}", env.dir.path().display()),
            rw: false,
        },
    }];
    let (r, _) = run_op(
        &env,
        with_mounts(sh("ls /m"), mounts),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::Layers(vec![stage.clone()])],
    );
    ensure(
        r.is_err(),
        "a source through /escape -> / resolves inside the stage, where the host path does not exist",
    )?;
    let mounts = vec![Mount {
        target: "/m".into(),
        kind: MountKind::Bind {
            input: 1,
            source: "/escape/inside.txt".into(),
            rw: false,
        },
    }];
    let (r, lines) = run_op(
        &env,
        with_mounts(sh("cat /m"), mounts),
        vec![env.base.clone()],
        &env.upper(),
        vec![MountInput::Layers(vec![stage])],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "stage-file\n".into(),
        "file bind through an in-stage symlink",
    )
}

fn run_on_200_layers() -> TestResult {
    let env = Env::new();
    let mut lowers = vec![env.base.clone()];
    for i in 0..199 {
        let l = env.dir.path().join(format!(
            "layers/deep-{i:03}-with-a-rather-long-directory-name-to-blow-mount-options"
        ));
        fs_err::create_dir_all(&l).unwrap();
        fs_err::write(l.join(format!("f{i}")), format!("{i}\n")).unwrap();
        lowers.insert(0, l);
    }
    ensure_eq(lowers.len(), 200, "layers")?;
    let (r, lines) = run_op(
        &env,
        sh("cat /f0 /f198; ls / | grep -c '^f'"),
        lowers,
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "0\n198\n199\n".into(),
        "all 200 layers visible",
    )
}

/// The sandbox's mount points (/sys, /etc/hosts, ...) come from a stub layer under the
/// image's; a layer that hides them (a whiteout, an opaque /etc) must still get them, and
/// none of them may end up in the new layer, whose /etc keeps the image's mode.
fn run_mount_points_hidden_by_a_layer_stay_out_of_the_new_layer() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let hide = env.dir.path().join("layers/hide");
    fs_err::create_dir_all(hide.join("etc")).unwrap();
    fs_err::write(hide.join("etc/passwd"), PASSWD).unwrap();
    fs_err::write(hide.join("etc/group"), GROUP).unwrap();
    fs_err::set_permissions(hide.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    xattr::set(hide.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
    let st = std::process::Command::new("mknod")
        .arg(hide.join("sys"))
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    ensure(st.success(), "mknod of a whiteout")?;
    let upper = env.upper();
    let (r, lines) = run_op(
        &env,
        sh(
            "grep -c localhost /etc/hosts; cat /etc/hostname; ls -d /sys /proc; \
            ls /etc | tr '\\n' ' '; echo; echo new > /etc/new; stat -c %a /etc",
        ),
        vec![hide, env.base.clone()],
        &upper,
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "2\nbuildkitsandbox\n/proc\n/sys\ngroup hostname hosts passwd resolv.conf \n750\n".into(),
        "mount points inside the sandbox",
    )?;
    let mut layer: Vec<String> = walk(&upper)
        .iter()
        .map(|p| p.strip_prefix(&upper).unwrap().display().to_string())
        .collect();
    layer.sort();
    ensure_eq(
        layer,
        vec!["etc".to_string(), "etc/new".into()],
        "new layer",
    )?;
    let mode = fs_err::metadata(upper.join("etc"))
        .unwrap()
        .permissions()
        .mode();
    ensure_eq(mode & 0o7777, 0o750, "mode of /etc in the new layer")
}

fn run_capabilities_are_dockers_default() -> TestResult {
    let env = Env::new();
    let (r, lines) = run_op(
        &env,
        sh("grep -E '^Cap(Eff|Bnd|Inh|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let out = stdout(&lines);
    // Docker's 14: chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    ensure(
        out.contains("CapEff:\t00000000a80425fb"),
        format!("effective caps: {out}"),
    )?;
    ensure(
        out.contains("CapBnd:\t00000000a80425fb"),
        format!("bounding caps: {out}"),
    )?;
    ensure(
        out.contains("CapInh:\t0000000000000000"),
        format!("inheritable: {out}"),
    )?;
    let mut op = sh("grep CapEff /proc/self/status");
    op.user = "app".into();
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "CapEff:\t0000000000000000\n".into(),
        "non-root has no effective caps",
    )
}

fn run_executable_not_found() -> TestResult {
    let env = Env::new();
    let (r, _) = run_op(
        &env,
        exec(&["nonexistent-tool", "x"]),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    let e = r.err().ok_or("must fail")?;
    ensure(
        e.to_string().contains("executable file not found in $PATH"),
        e.to_string(),
    )
}

/// A script printing the filter mode, no_new_privs, and what three calls the profile blocks
/// for a process without CAP_SYS_ADMIN say (`unshare -U` needs no capability at all: only
/// the filter stops it).
const SECCOMP_PROBE: &str = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
    unshare -U true 2>&1; echo unshare=$?; \
    nsenter -t 1 -m true 2>&1; echo nsenter=$?; \
    swapon /dev/null 2>&1; echo swapon=$?";

fn run_seccomp_blocks_what_dockers_profile_blocks() -> TestResult {
    let env = Env::new();
    let (r, lines) = run_op(
        &env,
        sh(SECCOMP_PROBE),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    let out = stdout(&lines);
    for want in [
        "Seccomp:\t2\n",
        "NoNewPrivs:\t0\n",
        "unshare: unshare(0x10000000): Operation not permitted\nunshare=1\n",
        "nsenter=1\n",
        "swapon: /dev/null: Operation not permitted\nswapon=1\n",
    ] {
        ensure(out.contains(want), format!("{want:?} in {out:?}"))?;
    }
    Ok(())
}

/// `/etc/passwd` with a root that has no password, and busybox (hence `su`) setuid root:
/// `su` run by `app` can only become root if the setuid bit gave it euid 0.
fn setuid_su_layer(env: &Env) -> Result<PathBuf, libtest_mimic::Failed> {
    let upper = env.upper();
    let (r, lines) = run_op(
        env,
        sh("chmod u+s /bin/busybox && sed -i 's/^root:x:/root::/' /etc/passwd"),
        vec![env.base.clone()],
        &upper,
        vec![],
    );
    ok(r, &lines)?;
    Ok(upper)
}

fn su_as_app(env: &Env, layer: PathBuf) -> (Result<(), RunError>, Lines) {
    let mut op = sh("su -c 'id -u; grep -E ^Seccomp: /proc/self/status' root 2>&1");
    op.user = "app".into();
    run_op(env, op, vec![layer, env.base.clone()], &env.upper(), vec![])
}

fn run_setuid_binaries_gain_privileges() -> TestResult {
    let env = Env::new();
    let layer = setuid_su_layer(&env)?;
    let (r, lines) = su_as_app(&env, layer);
    ok(r, &lines)?;
    ensure_eq(stdout(&lines), "0\nSeccomp:\t2\n".into(), "su as app")
}

fn run_no_new_privileges_keeps_setuid_out() -> TestResult {
    let env = Env::with_config(|c| c.no_new_privs = true);
    let (r, lines) = run_op(
        &env,
        sh("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    ok(r, &lines)?;
    ensure_eq(
        stdout(&lines),
        "NoNewPrivs:\t1\nSeccomp:\t2\n".into(),
        "status with no_new_privs",
    )?;
    let layer = setuid_su_layer(&env)?;
    let (r, lines) = su_as_app(&env, layer);
    let e = r.err().ok_or("su must fail without its setuid bit")?;
    ensure(
        e.to_string().contains("exit code: 1"),
        format!("{e}; output: {lines:?}"),
    )
}

fn run_insecure_has_no_filter_and_every_capability() -> TestResult {
    let env = Env::new();
    let mut op =
        sh("grep -E '^(Seccomp|CapEff):' /proc/self/status; unshare -U true; echo unshare=$?");
    op.security = SecurityMode::Insecure;
    let (r, lines) = run_op(&env, op, vec![env.base.clone()], &env.upper(), vec![]);
    ok(r, &lines)?;
    let out = stdout(&lines);
    ensure(out.contains("Seccomp:\t0\n"), format!("no filter: {out:?}"))?;
    ensure(
        out.contains("unshare=0\n"),
        format!("unshare allowed: {out:?}"),
    )?;
    ensure(
        !out.contains("CapEff:\t00000000a80425fb"),
        format!("more than the default capabilities: {out:?}"),
    )
}
