//! What a RUN may do (issue 12 §2): Docker's seccomp profile, setuid binaries, no_new_privs,
//! `RUN --security=insecure` and its entitlement.

use crate::support::TestEnv;
use std::path::Path;

/// Builds `dockerfile` with `flags` and exports the result to `<scratch>/<name>`.
fn build_local(env: &TestEnv, name: &str, dockerfile: &str, flags: &[&str]) -> std::path::PathBuf {
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    let out = env.dir().join(format!("{name}-out"));
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(flags);
    let dest = format!("type=local,dest={}", out.display());
    args.extend(["-o", &dest, ctx.to_str().expect("utf-8 path")]);
    env.ok(args);
    out
}

fn read(dir: &Path, file: &str) -> String {
    fs_err::read_to_string(dir.join(file)).expect("the RUN wrote it")
}

const PROBE: &str = "FROM base
RUN grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status > /status; \
    unshare -U true 2> /unshare; echo $? >> /unshare
RUN chmod u+s /bin/busybox && sed -i 's/^root:x:/root::/' /etc/passwd
USER app
RUN su -c 'id -u' root > /tmp/su 2>&1; echo $? >> /tmp/su
";

#[test]
fn issue_12_run_has_dockers_seccomp_filter_and_setuid_binaries_work() {
    let env = TestEnv::with_base("base:latest");
    let out = build_local(&env, "probe", PROBE, &[]);
    assert_eq!(read(&out, "status"), "NoNewPrivs:\t0\nSeccomp:\t2\n");
    assert_eq!(
        read(&out, "unshare"),
        "unshare: unshare(0x10000000): Operation not permitted\n1\n"
    );
    // `su` run by app could only switch to root with the euid 0 its setuid bit gave it.
    assert_eq!(read(&out, "tmp/su"), "0\n0\n");
}

#[test]
fn issue_12_security_opt_no_new_privileges_turns_setuid_off() {
    let env = TestEnv::with_base("base:latest");
    let out = build_local(&env, "nnp", PROBE, &["--security-opt", "no-new-privileges"]);
    assert_eq!(read(&out, "status"), "NoNewPrivs:\t1\nSeccomp:\t2\n");
    let su = read(&out, "tmp/su");
    assert!(su.ends_with("\n1\n"), "su must fail without setuid: {su}");
}

const INSECURE: &str = "FROM base
RUN --security=insecure grep -E '^(Seccomp|CapEff):' /proc/self/status > /status; \
    unshare -U true; echo $? > /unshare
";

#[test]
fn issue_12_run_security_insecure_needs_allow_and_then_has_no_filter() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context("denied", &[("Dockerfile", INSECURE)]);
    let err = env.fails(["build", "--progress=plain", ctx.to_str().expect("utf-8")]);
    assert!(
        err.contains(
            "RUN --security=insecure is not allowed: start the build with --allow security.insecure"
        ),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2"), "{err}");

    let out = build_local(&env, "allowed", INSECURE, &["--allow", "security.insecure"]);
    let status = read(&out, "status");
    assert!(status.contains("Seccomp:\t0\n"), "{status}");
    assert!(!status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert_eq!(read(&out, "unshare"), "0\n");
}

#[test]
fn issue_12_unknown_allow_and_security_opt_values_are_refused() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context("ctx", &[("Dockerfile", "FROM base\n")]);
    let ctx = ctx.to_str().expect("utf-8");
    let err = env.fails(["build", "--allow", "root.everything", ctx]);
    assert!(
        err.contains("unknown entitlement \"root.everything\""),
        "{err}"
    );
    let err = env.fails(["build", "--security-opt", "seccomp=unconfined", ctx]);
    assert!(
        err.contains("invalid --security-opt \"seccomp=unconfined\""),
        "{err}"
    );
}

/// The directory under which strata makes its builds' cgroups, as seen from here (strata
/// runs in this process's cgroups): v2 `/sys/fs/cgroup/strata`, v1 the `pids` hierarchy's.
fn cgroup_parent() -> std::path::PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return root.join("strata");
    }
    let own = fs_err::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let pids = own
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, cs, path) = (parts.next()?, parts.next()?, parts.next()?);
            cs.split(',').any(|c| c == "pids").then(|| path.to_owned())
        })
        .unwrap_or_else(|| "/".into());
    root.join("pids")
        .join(pids.trim_start_matches('/'))
        .join("strata")
}

/// The cgroups of strata process `pid` (named `<pidns>-<pid>-<n>`).
fn cgroups_of(pid: u32) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(cgroup_parent()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.split('-').nth(1) == Some(&pid.to_string()))
        .collect()
}

/// Starts `strata build` of `dockerfile` and returns once its RUN is running in the build's
/// cgroup (once the cgroup holds more than the helper: its monitor, init and command).
fn start_build(env: &TestEnv, name: &str, dockerfile: &str) -> std::process::Child {
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    let mut child = env
        .command(["build", "--progress=plain", ctx.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start strata build");
    // Waits for the sandbox to be running: bounded, and no figure is asserted on.
    for _ in 0..3000 {
        let busy = cgroups_of(child.id()).iter().any(|n| {
            fs_err::read_to_string(cgroup_parent().join(n).join("cgroup.procs"))
                .is_ok_and(|p| p.lines().count() > 3)
        });
        if busy {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the build's RUN never started in a cgroup");
}

#[test]
fn issue_12_fork_bomb_fails_its_step_naming_the_pids_limit_and_the_cgroup_goes() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "bomb",
        &[(
            "Dockerfile",
            "FROM base\nRUN bomb() { bomb | bomb & }; bomb; while true; do sleep 100 & done\n",
        )],
    );
    let out = env
        .command([
            "build",
            "--progress=plain",
            "--pids-limit",
            "64",
            ctx.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run strata build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the step hit the build's pids limit (64)"),
        "{stderr}"
    );
    // A later build works, and neither leaves its cgroup behind.
    let ctx = env.context("after", &[("Dockerfile", "FROM base\nRUN echo ok\n")]);
    let mut child = env
        .command(["build", "--progress=plain", ctx.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start strata build");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    assert_eq!(cgroups_of(pid), Vec::<String>::new());
}

#[test]
fn issue_12_the_cgroup_goes_after_ctrl_c_and_after_kill_9_at_the_next_start() {
    let env = TestEnv::with_base("base:latest");
    let mut child = start_build(&env, "int", "FROM base\nRUN sleep 1000\n");
    let pid = child.id();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    assert!(!child.wait().expect("wait").success());
    assert_eq!(cgroups_of(pid), Vec::<String>::new(), "after Ctrl-C");

    let mut child = start_build(&env, "kill", "FROM base\nRUN sleep 1000 # 2\n");
    let pid = child.id();
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let left = cgroups_of(pid);
    assert_eq!(left.len(), 1, "SIGKILL leaves the cgroup: {left:?}");
    env.ok([
        "build",
        "--progress=plain",
        env.context("next", &[("Dockerfile", "FROM base\nRUN true\n")])
            .to_str()
            .expect("utf-8"),
    ]);
    assert_eq!(
        cgroups_of(pid),
        Vec::<String>::new(),
        "after the next start"
    );
}
