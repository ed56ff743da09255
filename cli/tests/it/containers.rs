//! Containers without a daemon (issue 14): `run [-d] [--rm]`, `create`, `start [-a]`, `ps`,
//! `logs`, `stop`, `kill`, `wait`, `rm`, `rename`, `inspect`, with docker's output and exit
//! codes; the monitor's json-file log and state files; kill -9 of the monitor and of the
//! container's process; many containers at once; `rmi` and `image prune` keeping a
//! container's image.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::TestEnv;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A store with the busybox base image as `base`, whose containers are all removed (killed
/// first) when the test ends, passing or failing: no monitor outlives a test.
pub(crate) struct Env(pub(crate) TestEnv);

impl Env {
    pub(crate) fn new() -> Env {
        Env(TestEnv::with_base("base"))
    }

    pub(crate) fn inspect(&self, name: &str) -> Value {
        let out = self.0.ok(["inspect", name]);
        let all: Value = serde_json::from_str(&out).unwrap();
        all[0].clone()
    }

    /// Runs strata; returns (exit code, stdout, stderr).
    pub(crate) fn run(&self, args: &[&str]) -> (i32, String, String) {
        let (code, stdout, stderr) = self.run_bytes(args);
        (code, String::from_utf8_lossy(&stdout).into_owned(), stderr)
    }

    /// Runs strata; returns (exit code, stdout bytes, stderr).
    pub(crate) fn run_bytes(&self, args: &[&str]) -> (i32, Vec<u8>, String) {
        let out = self.0.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.0.root().join("containers").join(id)
    }

    pub(crate) fn state(&self, id: &str) -> Value {
        serde_json::from_slice(&fs_err::read(self.dir_of(id).join("state.json")).unwrap()).unwrap()
    }

    /// The container IDs `ps -aq --no-trunc` lists.
    fn all_ids(&self) -> Vec<String> {
        self.0
            .ok(["ps", "-aq", "--no-trunc"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn check_is_clean(&self) {
        let out = self.0.ok(["system", "check"]);
        assert!(out.trim_end().ends_with(": ok"), "{out}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let out = self.0.command(["ps", "-aq"]).output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let mut args = vec!["rm".to_owned(), "-f".to_owned()];
                args.extend(ids);
                let _ = self.0.command(&args).output();
            }
        }
    }
}

/// Polls `cond` until it holds (a hang guard far above what any machine needs, not a timing
/// assertion).
pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process_exists(pid: u64) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

pub(crate) fn kill9(pid: u64) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// The row of `ps` output for container `name`, split on runs of 3+ spaces.
fn ps_row(ps: &str, name: &str) -> Vec<String> {
    let line = ps
        .lines()
        .find(|l| l.ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{ps}"));
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn run_detached_lists_logs_stops_starts_and_removes_as_docker() {
    let env = Env::new();
    let (code, out, err) = env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "base",
        "sh",
        "-c",
        "echo out; echo err >&2; exec sleep 1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim_end().to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out:?}"
    );

    let ps = env.0.ok(["ps"]);
    assert_eq!(
        ps.lines()
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    let row = ps_row(&ps, "web");
    assert_eq!(row[0], id[..12]);
    assert_eq!(row[1], "base");
    assert_eq!(row[2], "\"sh -c echo out; ech…\"");
    assert!(row[3].ends_with(" ago"), "{row:?}");
    assert!(row[4].starts_with("Up "), "{row:?}");
    assert_eq!(row.last().unwrap(), "web");

    // The output is in the log once the monitor has it.
    eventually("the log has both lines", || {
        env.0.command(["logs", "web"]).output().unwrap().stderr == b"err\n"
    });
    let logs = env.0.command(["logs", &id[..5]]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "err\n");
    let log = fs_err::read_to_string(env.dir_of(&id).join("json.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut streams: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["log"].as_str().unwrap(), l["stream"].as_str().unwrap()))
        .collect();
    streams.sort();
    assert_eq!(streams, [("err\n", "stderr"), ("out\n", "stdout")]);
    for l in &lines {
        let time = l["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    }
    let stamped = env.0.ok(["logs", "-t", "web"]);
    assert!(stamped.ends_with("Z out\n"), "{stamped}");

    let running = env.inspect("web");
    assert_eq!(running["Id"], id.as_str());
    assert_eq!(running["Name"], "/web");
    assert_eq!(running["State"]["Status"], "running");
    assert_eq!(running["State"]["Running"], true);
    let pid = running["State"]["Pid"].as_u64().unwrap();
    assert!(process_exists(pid));
    assert_eq!(
        fs_err::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "sleep\n"
    );
    assert_eq!(running["Config"]["Cmd"][0], "sh");
    assert_eq!(running["Config"]["Image"], "base");

    // rm of a running container needs -f.
    let (code, _, err) = env.run(&["rm", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("container is running"), "{err}");

    assert_eq!(env.0.ok(["stop", "web"]), "web\n");
    assert!(!process_exists(pid));
    let stopped = env.inspect("web");
    assert_eq!(stopped["State"]["Status"], "exited");
    assert_eq!(stopped["State"]["Running"], false);
    assert_eq!(stopped["State"]["Pid"], 0);
    // SIGTERM killed sleep: 128 + 15.
    assert_eq!(stopped["State"]["ExitCode"], 143);
    assert_ne!(stopped["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(env.0.ok(["ps", "-q"]), "");
    let row = ps_row(&env.0.ok(["ps", "-a"]), "web");
    assert!(
        row[4].starts_with("Exited (143) ") && row[4].ends_with(" ago"),
        "{row:?}"
    );
    assert_eq!(env.0.ok(["wait", "web"]), "143\n");

    // Started again: the same container, its log goes on.
    assert_eq!(env.0.ok(["start", "web"]), "web\n");
    assert_eq!(env.inspect("web")["State"]["Status"], "running");
    eventually("the second run's output is logged", || {
        env.0.ok(["logs", "web"]) == "out\nout\n"
    });
    let tail = env
        .0
        .command(["logs", "--tail", "2", "web"])
        .output()
        .unwrap();
    assert_eq!(
        (tail.stdout.as_slice(), tail.stderr.as_slice()),
        (b"out\n".as_slice(), b"err\n".as_slice())
    );
    assert_eq!(env.0.ok(["logs", "--tail", "0", "web"]), "");

    assert_eq!(env.0.ok(["rm", "-f", "web"]), "web\n");
    assert!(env.all_ids().is_empty());
    assert!(!env.dir_of(&id).exists());
    let (code, _, err) = env.run(&["logs", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container: web"), "{err}");
    env.check_is_clean();
}

#[test]
fn the_writable_layer_survives_stop_and_start_and_start_attach_exits_with_its_code() {
    let env = Env::new();
    let id = env.0.ok([
        "create",
        "--name",
        "keep",
        "base",
        "sh",
        "-c",
        "echo x >> /f; cat /f; exit 3",
    ]);
    let id = id.trim_end();
    assert_eq!(env.state(id)["status"], "created");
    let row = ps_row(&env.0.ok(["ps", "-a"]), "keep");
    assert_eq!(row[4], "Created");

    let (code, out, _) = env.run(&["start", "-a", "keep"]);
    assert_eq!((code, out.as_str()), (3, "x\n"));
    let (code, out, _) = env.run(&["start", "-a", "keep"]);
    assert_eq!((code, out.as_str()), (3, "x\nx\n"));
    assert_eq!(
        fs_err::read_to_string(env.dir_of(id).join("upper/f")).unwrap(),
        "x\nx\n"
    );
    // Another container of the image starts from the image, not from this one.
    let (code, _, _) = env.run(&["run", "--rm", "base", "test", "-e", "/f"]);
    assert_eq!(code, 1);
    env.0.ok(["rm", "keep"]);
    env.check_is_clean();
}

#[test]
fn run_takes_dockers_overrides() {
    let env = Env::new();
    let envfile = env.0.dir().join("env.list");
    fs_err::write(&envfile, "# a comment\nB=from-file\n\nC=c\n").unwrap();
    let out = env.0.ok([
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        envfile.to_str().unwrap(),
        "-e",
        "C=flag",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "--hostname",
        "box",
        "base",
        "sh",
        "-c",
        "echo $A $B $C $(pwd) $(id -u) $(hostname)",
    ]);
    assert_eq!(out, "1 from-file flag /tmp 1000 box\n");
    let out = env
        .0
        .ok(["run", "--rm", "--entrypoint", "echo", "base", "hi", "there"]);
    assert_eq!(out, "hi there\n");
    // The hostname is the short ID by default; --rm leaves nothing.
    let out = env.0.ok(["run", "--rm", "base", "hostname"]);
    assert_eq!(out.trim_end().len(), 12, "{out}");
    assert!(env.all_ids().is_empty());
    // Without --rm the container stays, exited with the command's code.
    let (code, _, _) = env.run(&["run", "--name", "three", "base", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    let c = env.inspect("three");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 3);
}

#[test]
fn bad_input_gets_dockers_exit_codes_and_leaves_nothing_half_made() {
    let env = Env::new();
    let (code, _, err) = env.run(&["run", "--rm", "base", "nosuch"]);
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{err}"
    );
    let (code, _, err) = env.run(&["run", "--rm", "base", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    let (code, _, err) = env.run(&["run", "-d", "--rm", "base", "nosuch"]);
    assert_eq!(code, 127, "{err}");
    assert!(
        env.all_ids().is_empty(),
        "a --rm container that could not start stays"
    );

    let (code, _, err) = env.run(&["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such image: nosuchimage"), "{err}");

    env.0.ok(["create", "--name", "taken", "base", "true"]);
    let (code, _, err) = env.run(&["run", "-d", "--name", "taken", "base", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("The container name \"/taken\" is already in use by container"),
        "{err}"
    );
    let (code, _, err) = env.run(&["run", "--name", "no/slash", "base", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("Invalid container name"), "{err}");
    let (code, _, err) = env.run(&["run", "--stop-signal", "SIGNOPE", "base", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid signal: SIGNOPE"), "{err}");
    assert_eq!(env.all_ids().len(), 1);

    // Without --rm a container that could not start stays created, with the reason.
    let (code, _, _) = env.run(&["run", "--name", "broken", "base", "nosuch"]);
    assert_eq!(code, 127);
    let c = env.inspect("broken");
    assert_eq!(c["State"]["Status"], "created");
    assert_eq!(c["State"]["ExitCode"], 127);
    assert!(
        c["State"]["Error"]
            .as_str()
            .unwrap()
            .contains("executable file not found"),
        "{c}"
    );

    for cmd in ["stop", "kill", "rm", "wait", "start", "logs"] {
        let (code, _, err) = env.run(&[cmd, "nosuch"]);
        assert_ne!(code, 0, "{cmd}");
        assert!(err.contains("No such container: nosuch"), "{cmd}: {err}");
    }
    let (code, _, err) = env.run(&["start", "broken", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("executable file not found"), "{err}");
    assert!(
        err.contains("failed to start containers: broken, nosuch"),
        "{err}"
    );
    let (code, _, err) = env.run(&["kill", "taken"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
    env.check_is_clean();
}

#[test]
fn names_ids_and_prefixes_name_containers_and_rename_keeps_names_unique() {
    let env = Env::new();
    let a = env.0.ok(["create", "base", "true"]).trim_end().to_owned();
    let b = env
        .0
        .ok(["create", "--name", "bee", "base", "true"])
        .trim_end()
        .to_owned();
    let a_name = env.inspect(&a)["Name"].as_str().unwrap().to_owned();
    let (adjective, noun) = a_name.trim_start_matches('/').split_once('_').unwrap();
    assert!(!adjective.is_empty() && !noun.is_empty(), "{a_name}");
    assert_eq!(env.inspect(&a[..12])["Id"], a.as_str());
    assert_eq!(env.inspect("bee")["Id"], b.as_str());

    env.0.ok(["rename", "bee", "wasp"]);
    assert_eq!(env.inspect("wasp")["Id"], b.as_str());
    let (code, _, err) = env.run(&["rename", &a, "wasp"]);
    assert_eq!(code, 1);
    assert!(err.contains("is already in use"), "{err}");

    // ps: newest first; -n, -l, -q, --no-trunc.
    assert_eq!(
        env.0.ok(["ps", "-aq"]),
        format!("{}\n{}\n", &b[..12], &a[..12])
    );
    assert_eq!(env.0.ok(["ps", "-q", "-n", "1"]), format!("{}\n", &b[..12]));
    assert_eq!(env.0.ok(["ps", "-ql", "--no-trunc"]), format!("{b}\n"));
    assert!(env.0.ok(["ps", "-a", "--no-trunc"]).contains(&a));
    let config = fs_err::read_to_string(env.dir_of(&b).join("config.json")).unwrap();
    assert!(config.contains("\"name\": \"wasp\""), "{config}");
}

#[test]
fn kill_9_of_the_monitor_shows_the_container_exited_and_rm_cleans_up() {
    let env = Env::new();
    let id = env
        .0
        .ok(["run", "-d", "--name", "m", "base", "sleep", "1000"]);
    let id = id.trim_end();
    let state = env.state(id);
    let (monitor, pid) = (
        state["monitor_pid"].as_u64().unwrap(),
        state["pid"].as_u64().unwrap(),
    );
    assert!(monitor > 0 && pid > 0, "{state}");
    kill9(monitor);
    // Its processes go with it.
    eventually("the container's process is gone", || !process_exists(pid));
    eventually("ps shows it exited", || {
        ps_row(&env.0.ok(["ps", "-a"]), "m")[4].starts_with("Exited (255) ")
    });
    let c = env.inspect("m");
    assert_eq!(c["State"]["Running"], false);
    let error = c["State"]["Error"].as_str().unwrap();
    assert!(
        error.contains(&format!("monitor (pid {monitor}) died")),
        "{error}"
    );
    // Repaired on disk by the command that saw it.
    assert_eq!(env.state(id)["status"], "exited");
    env.check_is_clean();
    env.0.ok(["rm", "m"]);
    assert!(!env.dir_of(id).exists());
    env.check_is_clean();
}

#[test]
fn kill_9_of_the_containers_process_records_137() {
    let env = Env::new();
    env.0
        .ok(["run", "-d", "--name", "k", "base", "sleep", "1000"]);
    let pid = env.inspect("k")["State"]["Pid"].as_u64().unwrap();
    kill9(pid);
    assert_eq!(env.0.ok(["wait", "k"]), "137\n");
    let c = env.inspect("k");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 137);

    // kill -s: the signal given.
    env.0.ok(["start", "k"]);
    assert_eq!(env.0.ok(["kill", "-s", "USR1", "k"]), "k\n");
    assert_eq!(env.0.ok(["wait", "k"]), format!("{}\n", 128 + 10));
    let (code, _, err) = env.run(&["kill", "-s", "NOPE", "k"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid signal: NOPE"), "{err}");
}

#[test]
fn stop_sends_the_stop_signal_then_sigkill_after_the_timeout() {
    let env = Env::new();
    // The shell traps TERM and goes on: only SIGKILL ends it.
    env.0.ok([
        "run",
        "-d",
        "--name",
        "stubborn",
        "base",
        "sh",
        "-c",
        "trap 'echo got TERM' TERM; while true; do sleep 0.1; done",
    ]);
    eventually("the trap is set", || {
        let pid = env.inspect("stubborn")["State"]["Pid"].as_u64().unwrap();
        catches(pid, SIGTERM)
    });
    env.0.ok(["stop", "-t", "1", "stubborn"]);
    assert_eq!(env.inspect("stubborn")["State"]["ExitCode"], 137);
    assert_eq!(env.0.ok(["logs", "stubborn"]), "got TERM\n");

    // --stop-signal: the signal stop sends first.
    env.0.ok([
        "run",
        "-d",
        "--name",
        "hup",
        "--stop-signal",
        "SIGHUP",
        "base",
        "sleep",
        "1000",
    ]);
    env.0.ok(["stop", "hup"]);
    assert_eq!(env.inspect("hup")["State"]["ExitCode"], 128 + 1);
}

#[test]
fn many_containers_start_list_stop_and_remove_in_parallel() {
    let env = Env::new();
    const N: usize = 20;
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    let name = format!("c{i}");
                    env.0
                        .ok(["run", "-d", "--name", &name, "base", "sleep", "1000"])
                        .trim_end()
                        .to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut listed: Vec<String> = env
        .0
        .ok(["ps", "-q", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    env.check_is_clean();
    let mut stop = vec!["stop".to_owned(), "-t".to_owned(), "5".to_owned()];
    stop.extend(ids.iter().cloned());
    env.0.ok(&stop);
    assert_eq!(env.0.ok(["ps", "-q"]), "");
    let mut rm = vec!["rm".to_owned()];
    rm.extend(ids.iter().cloned());
    env.0.ok(&rm);
    assert!(env.all_ids().is_empty());
    let left: Vec<_> = fs_err::read_dir(env.0.root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["containers.lock"]);
    env.check_is_clean();
}

#[test]
fn rmi_and_image_prune_keep_an_image_a_container_uses() {
    let env = Env::new();
    env.0.ok(["create", "--name", "user", "base", "true"]);
    let (code, _, err) = env.run(&["rmi", "base"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "conflict: unable to remove repository reference \"base\" (must force) - container"
        ),
        "{err}"
    );
    env.0.ok(["image", "prune", "-a", "-f"]);
    assert!(env.0.ok(["images"]).contains("base"));
    // Forced, it loses its tag and stays for the container.
    env.0.ok(["rmi", "-f", "base"]);
    let image = env.inspect("user")["Image"].as_str().unwrap().to_owned();
    env.0.ok(["inspect", &image]);
    let (code, out, _) = env.run(&["start", "-a", "user"]);
    assert_eq!((code, out.as_str()), (0, ""));
    env.check_is_clean();
    env.0.ok(["rm", "user"]);
    env.0.ok(["image", "prune", "-a", "-f"]);
    let (code, _, _) = env.run(&["inspect", &image]);
    assert_eq!(code, 1);
}

#[test]
fn restart_policies_bring_a_container_back_until_stopped() {
    let env = Env::new();
    // on-failure:2: the first run and two restarts.
    env.0.ok([
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "base",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    eventually("two restarts, then it stays exited", || {
        env.0.ok(["logs", "flaky"]) == "run\nrun\nrun\n"
            && env.inspect("flaky")["RestartCount"] == 2
            && env.inspect("flaky")["State"]["Status"] == "exited"
    });
    assert_eq!(env.inspect("flaky")["State"]["ExitCode"], 1);
    assert_eq!(
        env.inspect("flaky")["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 2})
    );

    // always: a process killed behind strata's back comes back; `stop` ends it for good.
    env.0.ok([
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "base",
        "sleep",
        "1000",
    ]);
    let first = env.inspect("always")["State"]["Pid"].as_u64().unwrap();
    let id = env.inspect("always")["Id"].as_str().unwrap().to_owned();
    let monitor = env.state(&id)["monitor_pid"].as_u64().unwrap();
    kill9(first);
    eventually("it runs again", || {
        let c = env.inspect("always");
        c["RestartCount"] == 1 && c["State"]["Running"] == true && c["State"]["Pid"] != first
    });
    env.0.ok(["stop", "always"]);
    eventually("its monitor ends", || !process_exists(monitor));
    let c = env.inspect("always");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["RestartCount"], 1);

    // restart: a new run of the same container (docker does not count it as a restart).
    env.0
        .ok(["run", "-d", "--name", "r", "base", "sleep", "1000"]);
    let before = env.inspect("r")["State"]["Pid"].as_u64().unwrap();
    assert_eq!(env.0.ok(["restart", "-t", "1", "r"]), "r\n");
    let c = env.inspect("r");
    assert_eq!(c["State"]["Running"], true);
    assert_ne!(c["State"]["Pid"].as_u64().unwrap(), before);
    assert!(!process_exists(before));

    let (code, _, err) = env.run(&["run", "--rm", "--restart", "always", "base", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("conflicting options: --restart and --rm"),
        "{err}"
    );
    let (code, _, err) = env.run(&["run", "--restart", "sometimes", "base", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid restart policy: sometimes"), "{err}");
    env.check_is_clean();
}

#[test]
fn ps_filters_and_container_prune() {
    let env = Env::new();
    env.0.ok(["tag", "base", "other:1"]);
    env.0.ok(["create", "--name", "fresh", "base", "true"]);
    let (code, _, _) = env.run(&["run", "--name", "three", "other:1", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    env.0.ok(["run", "--name", "zero", "base", "true"]);
    env.0
        .ok(["run", "-d", "--name", "up", "base", "sleep", "1000"]);
    let names = |filters: &[&str]| -> Vec<String> {
        let mut args = vec!["ps"];
        for f in filters {
            args.push("--filter");
            args.push(f);
        }
        let out = env.0.ok(&args);
        let mut names: Vec<String> = out
            .lines()
            .skip(1)
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&[]), ["up"]);
    assert_eq!(names(&["status=exited"]), ["three", "zero"]);
    assert_eq!(
        names(&["status=exited", "status=created"]),
        ["fresh", "three", "zero"]
    );
    assert_eq!(names(&["exited=3"]), ["three"]);
    assert_eq!(names(&["status=exited", "name=ze"]), ["zero"]);
    // other:1 is base's image: its containers are all descendants of either name.
    assert_eq!(
        names(&["status=exited", "ancestor=other:1"]),
        ["three", "zero"]
    );
    assert!(names(&["status=exited", "ancestor=nosuch"]).is_empty());
    assert_eq!(names(&["name=^up$"]), ["up"]);
    assert!(names(&["status=paused"]).is_empty());
    let (code, _, err) = env.run(&["ps", "--filter", "colour=red"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid filter 'colour'"), "{err}");

    let out = env.0.ok(["container", "prune", "-f"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Deleted Containers:");
    assert_eq!(lines.len(), 1 + 3 + 2, "{out}");
    assert!(lines[5].starts_with("Total reclaimed space: "), "{out}");
    assert_eq!(
        names(&["status=exited", "status=created", "status=running"]),
        ["up"]
    );
    env.check_is_clean();
}

#[test]
fn logs_follow_ends_when_the_container_does() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "talker",
        "base",
        "sh",
        "-c",
        "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c; exit 4",
    ]);
    let out = env.0.command(["logs", "-f", "talker"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nc\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "b\n");
    assert_eq!(env.0.ok(["wait", "talker"]), "4\n");
}

#[test]
fn a_machine_restart_is_repaired_and_restart_containers_brings_back_always() {
    let env = Env::new();
    env.0.ok([
        "run",
        "-d",
        "--name",
        "svc",
        "--restart",
        "always",
        "base",
        "sleep",
        "1000",
    ]);
    env.0
        .ok(["run", "-d", "--name", "plain", "base", "sleep", "1000"]);
    env.0.ok([
        "run",
        "-d",
        "--name",
        "halted",
        "--restart",
        "always",
        "base",
        "sleep",
        "1000",
    ]);
    env.0.ok(["stop", "halted"]);
    // The machine restarts: every monitor dies at once.
    for name in ["svc", "plain"] {
        let id = env.inspect(name)["Id"].as_str().unwrap().to_owned();
        kill9(env.state(&id)["monitor_pid"].as_u64().unwrap());
    }
    eventually("both are seen exited", || env.0.ok(["ps", "-q"]).is_empty());
    assert_eq!(env.0.ok(["system", "restart-containers"]), "svc\n");
    let c = env.inspect("svc");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(env.inspect("plain")["State"]["ExitCode"], 255);
    assert_eq!(env.inspect("halted")["State"]["Status"], "exited");
    // Once back, it is not brought back again.
    assert_eq!(env.0.ok(["system", "restart-containers"]), "");
    env.check_is_clean();
}

#[test]
fn ctrl_c_of_a_foreground_run_reaches_the_container_as_sigint() {
    let env = Env::new();
    let child = env
        .0
        .command([
            "run",
            "--name",
            "fg",
            "base",
            "sh",
            "-c",
            "trap 'echo got INT; exit 5' INT; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the trap is set", || {
        let Ok(out) = env.0.command(["inspect", "fg"]).output() else {
            return false;
        };
        let c: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let Some(pid) = c[0]["State"]["Pid"].as_u64().filter(|p| *p > 0) else {
            return false;
        };
        catches(pid, SIGINT)
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got INT\n");
    assert_eq!(env.inspect("fg")["State"]["ExitCode"], 5);
}

/// Linux's signal numbers (the tests have no libc).
const SIGINT: u32 = 2;
const SIGTERM: u32 = 15;

/// Whether process `pid` has a handler for `signal` (its trap is set): the shell catches
/// other signals (SIGCHLD) before it runs the script, so any caught signal is not enough.
fn catches(pid: u64, signal: u32) -> bool {
    let Ok(status) = fs_err::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}
