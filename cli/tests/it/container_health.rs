//! HEALTHCHECK for containers (issue 14): the monitor probes a running container through
//! `exec` at its interval; `State.Health` (status, failing streak, the last probes' exit codes
//! and output) in `inspect`, docker's `(health: starting)`, `(healthy)` and `(unhealthy)` in
//! `ps`, `ps --filter health=`; the image's HEALTHCHECK and `--no-healthcheck`.

use crate::containers::{Env, eventually};
use serde_json::{Value, json};

fn health(env: &Env, name: &str) -> Value {
    env.inspect(name)["State"]["Health"].clone()
}

/// The STATUS column of `ps` for `name` (the row ends with its name; STATUS is the cell
/// before it, as this test's containers publish no ports).
fn ps_status(env: &Env, name: &str) -> String {
    let out = env.0.ok(["ps", "--format", "{{.Status}}\t{{.Names}}"]);
    out.lines()
        .find_map(|l| l.strip_suffix(&format!("\t{name}")))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{out}"))
        .to_owned()
}

fn filtered(env: &Env, health: &str) -> Vec<String> {
    let mut names: Vec<String> = env
        .0
        .ok([
            "ps",
            "--filter",
            &format!("health={health}"),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn a_probe_goes_starting_then_unhealthy_then_healthy_once_it_passes() {
    let env = Env::new();
    // An interval far beyond the test: it stays starting.
    env.0.ok([
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "base",
        "sleep",
        "1000",
    ]);
    env.0.ok([
        "run",
        "-d",
        "--name",
        "probed",
        "--health-cmd",
        "cat /ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "base",
        "sleep",
        "1000",
    ]);
    env.0
        .ok(["run", "-d", "--name", "plain", "base", "sleep", "1000"]);

    let slow = health(&env, "slow");
    assert_eq!(slow["Status"], "starting");
    assert_eq!(slow["FailingStreak"], 0);
    assert_eq!(slow["Log"], json!([]));
    let status = ps_status(&env, "slow");
    assert!(
        status.starts_with("Up ") && status.ends_with(" (health: starting)"),
        "{status}"
    );
    assert!(!ps_status(&env, "plain").ends_with(')'));
    assert!(env.inspect("plain")["State"].get("Health").is_none());

    eventually("probed is unhealthy", || {
        health(&env, "probed")["Status"] == "unhealthy"
    });
    let h = health(&env, "probed");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!((2..=5).contains(&log.len()), "{h}");
    for probe in log {
        assert_eq!(probe["ExitCode"], 1, "{h}");
        assert_eq!(
            probe["Output"], "cat: can't open '/ok': No such file or directory\n",
            "{h}"
        );
        assert!(probe["Start"].as_str().unwrap() <= probe["End"].as_str().unwrap());
    }
    assert!(ps_status(&env, "probed").ends_with(" (unhealthy)"));
    assert_eq!(filtered(&env, "unhealthy"), ["probed"]);
    assert_eq!(filtered(&env, "starting"), ["slow"]);
    assert_eq!(filtered(&env, "none"), ["plain"]);

    env.0.ok(["exec", "probed", "sh", "-c", "echo fine > /ok"]);
    eventually("probed is healthy", || {
        health(&env, "probed")["Status"] == "healthy"
    });
    let h = health(&env, "probed");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].clone(), last["Output"].clone()),
        (json!(0), json!("fine\n"))
    );
    assert!(h["Log"].as_array().unwrap().len() <= 5, "{h}");
    assert!(ps_status(&env, "probed").ends_with(" (healthy)"));
    assert_eq!(filtered(&env, "healthy"), ["probed"]);
    assert_eq!(
        env.inspect("probed")["Config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "cat /ok"], "Interval": 200_000_000, "Retries": 2})
    );
}

#[test]
fn the_images_healthcheck_runs_and_no_healthcheck_turns_it_off() {
    let env = Env::new();
    crate::container_run::build(
        &env,
        "checked",
        "FROM base\nHEALTHCHECK --interval=200ms CMD [\"sh\", \"-c\", \"echo probed; exit 0\"]\n",
        "",
    );

    env.0
        .ok(["run", "-d", "--name", "on", "checked", "sleep", "1000"]);
    env.0.ok([
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "checked",
        "sleep",
        "1000",
    ]);
    eventually("on is healthy", || {
        health(&env, "on")["Status"] == "healthy"
    });
    let last = health(&env, "on")["Log"][0].clone();
    assert_eq!(
        (last["ExitCode"].clone(), last["Output"].clone()),
        (json!(0), json!("probed\n"))
    );

    let off = env.inspect("off");
    assert!(off["State"].get("Health").is_none(), "{off}");
    assert_eq!(off["Config"]["Healthcheck"], json!({"Test": ["NONE"]}));
    assert_eq!(filtered(&env, "none"), ["off"]);
    assert!(!ps_status(&env, "off").ends_with(')'));
}

#[test]
fn bad_health_flags_are_refused_before_anything_is_made() {
    let env = Env::new();
    let (code, _, err) = env.run(&[
        "run",
        "-d",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "base",
        "sleep",
        "1",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("--no-healthcheck conflicts with --health-* options"),
        "{err}"
    );
    let (code, _, err) = env.run(&["create", "--health-interval", "soon", "base", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("invalid argument for --health-interval"),
        "{err}"
    );
    let (code, _, err) = env.run(&["create", "--health-retries", "-1", "base", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("--health-retries cannot be negative"), "{err}");
    assert_eq!(env.0.ok(["ps", "-aq"]), "");
    let (code, _, err) = env.run(&["ps", "--filter", "health=sick"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unrecognized filter value for health: sick"),
        "{err}"
    );
}

#[test]
fn a_probe_past_its_timeout_is_killed_inside_the_container_and_logged_as_docker_does() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "hung",
        "--health-cmd",
        "sleep 1000",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "3",
        "base",
        "sleep",
        "999",
    ]);
    eventually("hung is unhealthy", || {
        health(&env, "hung")["Status"] == "unhealthy"
    });
    let h = health(&env, "hung");
    for probe in h["Log"].as_array().unwrap() {
        assert_eq!(probe["ExitCode"], -1, "{h}");
        assert_eq!(
            probe["Output"], "Health check exceeded timeout (300ms)",
            "{h}"
        );
    }
    // Three probes timed out; at most the one running now is left of them.
    let ps = env.0.ok(["exec", "hung", "ps", "-o", "args"]);
    let probes = ps.lines().filter(|l| l.trim() == "sleep 1000").count();
    assert!(probes <= 1, "{ps}");
}

#[test]
fn a_probes_output_is_kept_to_its_first_4096_bytes() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "loud",
        "--health-cmd",
        "head -c 100000 /dev/zero | tr '\\0' x",
        "--health-interval",
        "100ms",
        "base",
        "sleep",
        "999",
    ]);
    eventually("loud is healthy", || {
        health(&env, "loud")["Status"] == "healthy"
    });
    let h = health(&env, "loud");
    assert_eq!(h["Log"][0]["Output"], "x".repeat(4096), "{h}");
}
