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
