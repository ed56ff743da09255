//! The build's cgroup (issue 12 §2): every RUN in it, its limits, a fork bomb failing its step
//! with the pids limit named, and the cgroup gone when the worker is, or at the next start
//! after a kill -9. Runs on whichever cgroup version this machine has.
use crate::common::*;
use libtest_mimic::Trial;
use std::path::PathBuf;
use strata_worker::Resources;

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "cgroup_every_run_is_in_the_builds_cgroup_with_its_limits",
            cgroup_every_run_is_in_the_builds_cgroup_with_its_limits,
        ),
        trial(
            "cgroup_fork_bomb_fails_the_step_naming_the_pids_limit",
            cgroup_fork_bomb_fails_the_step_naming_the_pids_limit,
        ),
        trial(
            "cgroup_memory_hog_fails_the_step_naming_the_memory_limit",
            cgroup_memory_hog_fails_the_step_naming_the_memory_limit,
        ),
        trial(
            "cgroup_is_removed_with_the_worker_and_stale_ones_at_the_next_start",
            cgroup_is_removed_with_the_worker_and_stale_ones_at_the_next_start,
        ),
    ]
}

fn limited(pids: u64, memory: Option<u64>) -> Env {
    Env::with_config(|c| {
        c.resources = Some(Resources {
            pids_limit: pids,
            memory,
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            ..Resources::default()
        })
    })
}

/// Whether this machine has cgroup v2 (else v1 is used).
fn v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The host directory of the RUN's cgroup in the pids hierarchy (v1) or the unified one
/// (v2), from the RUN's own /proc/self/cgroup (no cgroup namespace: host paths).
fn run_cgroup(env: &Env) -> Result<PathBuf, libtest_mimic::Failed> {
    let (r, lines) = run_op(
        env,
        sh("cat /proc/self/cgroup"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    r.map_err(|e| format!("{e}: {lines:?}"))?;
    let out = stdout(&lines);
    let (prefix, mount) = if v2() {
        ("0::", "/sys/fs/cgroup")
    } else {
        ("", "/sys/fs/cgroup/pids")
    };
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix) && (v2() || l.split(':').nth(1) == Some("pids")))
        .ok_or(format!("no pids cgroup in {out}"))?;
    let path = line.splitn(3, ':').nth(2).unwrap_or("");
    ensure(
        path.contains("/strata/"),
        format!("the RUN is not in a strata cgroup: {out}"),
    )?;
    Ok(PathBuf::from(mount).join(path.trim_start_matches('/')))
}

fn cgroup_every_run_is_in_the_builds_cgroup_with_its_limits() -> TestResult {
    let env = limited(100, Some(256 << 20));
    let dir = run_cgroup(&env)?;
    let again = run_cgroup(&env)?;
    ensure_eq(
        again.clone(),
        dir.clone(),
        "two RUNs of one worker, one cgroup",
    )?;
    let read = |p: PathBuf| fs_err::read_to_string(p).unwrap_or_default();
    ensure_eq(read(dir.join("pids.max")), "100\n".into(), "pids.max")?;
    if v2() {
        ensure_eq(
            read(dir.join("memory.max")),
            "268435456\n".into(),
            "memory.max",
        )?;
        ensure_eq(
            read(dir.join("cpu.max")),
            "50000 100000\n".into(),
            "cpu.max",
        )
    } else {
        let mem = fs_err::read_to_string("/proc/self/cgroup").unwrap_or_default();
        // The memory and cpu directories have the same name under strata's own cgroups.
        let leaf = dir.file_name().unwrap().to_owned();
        let find = |hierarchy: &str, file: &str| -> String {
            let own = mem
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|cs| cs.split(',').any(|c| c == hierarchy))
                })
                .and_then(|l| l.splitn(3, ':').nth(2))
                .unwrap_or("/");
            read(
                PathBuf::from("/sys/fs/cgroup")
                    .join(hierarchy)
                    .join(own.trim_start_matches('/'))
                    .join("strata")
                    .join(&leaf)
                    .join(file),
            )
        };
        ensure_eq(
            find("memory", "memory.limit_in_bytes"),
            "268435456\n".into(),
            "memory.limit_in_bytes",
        )?;
        ensure_eq(
            find("cpu", "cpu.cfs_quota_us"),
            "50000\n".into(),
            "cpu.cfs_quota_us",
        )
    }
}

fn cgroup_fork_bomb_fails_the_step_naming_the_pids_limit() -> TestResult {
    let env = limited(64, None);
    // The classic bomb (busybox sh wants a name other than `:`), and a loop that keeps the step's own shell forking until it cannot.
    let (r, lines) = run_op(
        &env,
        sh("bomb() { bomb | bomb & }; bomb; while true; do sleep 100 & done"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    let e = r.err().ok_or("a fork bomb must fail its step")?;
    ensure(
        e.to_string()
            .contains("the step hit the build's pids limit (64)"),
        format!("{e}; output: {lines:?}"),
    )?;
    ensure(e.exit_code().is_some(), "the step's failure, not strata's")?;
    // The worker still runs steps afterwards.
    let (r, lines) = run_op(
        &env,
        sh("echo ok"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    r.map_err(|e| format!("{e}: {lines:?}"))?;
    ensure_eq(stdout(&lines), "ok\n".into(), "a step after the bomb")
}

fn cgroup_is_removed_with_the_worker_and_stale_ones_at_the_next_start() -> TestResult {
    let env = limited(100, None);
    let dir = run_cgroup(&env)?;
    let parent = dir.parent().unwrap().to_owned();
    ensure(dir.is_dir(), "the cgroup exists while the worker does")?;
    // A step still running when the worker goes is killed with it.
    let Env { worker, .. } = env;
    drop(worker);
    ensure(!dir.exists(), format!("{} left behind", dir.display()))?;

    // What a strata killed with SIGKILL leaves: a cgroup whose owner pid is dead.
    let ns = fs_err::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns
        .to_str()
        .unwrap()
        .trim_start_matches("pid:[")
        .trim_end_matches(']');
    let stale = parent.join(format!("{ns}-999999999-0"));
    // One of another PID namespace is not ours to judge.
    let foreign = parent.join("1-999999999-0");
    fs_err::create_dir(&foreign).unwrap();
    fs_err::create_dir(&stale).unwrap();
    let env = limited(100, None);
    ensure(
        !stale.exists(),
        format!("stale {} not removed at the next start", stale.display()),
    )?;
    drop(env);
    let kept = foreign.exists();
    let _ = fs_err::remove_dir(&foreign);
    ensure(kept, "a cgroup of another PID namespace was removed")
}

fn cgroup_memory_hog_fails_the_step_naming_the_memory_limit() -> TestResult {
    let env = limited(100, Some(32 << 20));
    // tail keeps the last line, and 256 MiB of zeros is one line.
    let (r, lines) = run_op(
        &env,
        sh("head -c 268435456 /dev/zero | tail -n 1 > /dev/null"),
        vec![env.base.clone()],
        &env.upper(),
        vec![],
    );
    let e = r
        .err()
        .ok_or("the step must not get 256 MiB under a 32 MiB limit")?;
    ensure(
        e.to_string()
            .contains("the step hit the build's memory limit"),
        format!("{e}; output: {lines:?}"),
    )
}
