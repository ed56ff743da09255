//! Interactive containers (issue 14 §2): `run -i` (a stdin pipe), `run -t` (a real
//! pseudo-terminal made in the container), `run -d -it` then `attach` and the detach keys,
//! `start -a -i`. A real terminal on the caller's side is `script` (util-linux), driven
//! through its stdin and stdout.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::container_tools::shell_line;
use crate::containers::Env;
use std::io::{Read as _, Write as _};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `strata ARGS` run under `script` in a terminal of 30 rows and 100 columns, then `rc=N`
/// with its exit code; typed input through `type_in`, output read by `read_until`.
struct Terminal {
    child: Child,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    fn start(env: &Env, args: &[&str]) -> Terminal {
        Terminal::shell(&format!(
            "stty rows 30 cols 100; {}; echo rc=$?",
            shell_line(&env.0.command(args))
        ))
    }

    /// `line` run by `sh -c` under `script`.
    fn shell(line: &str) -> Terminal {
        let mut child = std::process::Command::new("script")
            .args(["-qec", line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            output,
            seen: Vec::new(),
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Everything seen up to and including `token` (a hang guard, not a timing assertion).
    fn read_until(&mut self, token: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(at) = text.find(token) {
                let end = at + token.len();
                self.seen.drain(..end.min(self.seen.len()));
                return text[..end].to_owned();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!("never saw {token:?}; saw {text:?}"),
            }
        }
    }

    /// The client's exit code, from the `rc=N` line.
    fn exit_code(&mut self) -> i32 {
        self.read_until("rc=");
        let rest = self.read_until("\n");
        rest.trim().parse().unwrap()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs strata with `input` on its stdin; returns (exit code, stdout, stderr).
fn piped(env: &Env, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = env
        .0
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client that stops reading for a while (its own stdout full: the caller is slow) slows
/// the container's output down and misses none of it, as docker's attach; a first version
/// let it go after 2 s and lost lines under load.
#[test]
fn a_client_that_stops_reading_for_seconds_misses_no_output() {
    let env = Env::new();
    let mut child = env
        .0
        .command(["run", "--rm", "-i", "base", "seq", "1", "100000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    // Nobody reads the client's stdout: its pipe fills, then the client stops reading the
    // monitor, whose queue for it fills.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        (lines.len(), lines.last().copied()),
        (100000, Some("100000"))
    );
}

#[test]
fn run_i_pipes_stdin_and_without_i_the_command_reads_end_of_file() {
    let env = Env::new();
    let (code, out, err) = piped(&env, &["run", "--rm", "-i", "base", "cat"], b"hi\n");
    assert_eq!((code, out.as_str()), (Some(0), "hi\n"), "{err}");
    // Without -i the command's stdin is /dev/null: cat ends at once, the input unread.
    let (code, out, err) = piped(&env, &["run", "--rm", "base", "cat"], b"hi\n");
    assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
    // More than a pipe holds, sent before the command starts: all of it arrives, and the
    // exit code is the command's.
    let big = vec![b'x'; 300 * 1024];
    let (code, out, err) = piped(
        &env,
        &[
            "run",
            "--name",
            "counted",
            "-i",
            "base",
            "sh",
            "-c",
            "wc -c; exit 7",
        ],
        &big,
    );
    assert_eq!((code, out.trim()), (Some(7), "307200"), "{err}");
    // Much output, faster than the client writes it: none of it is lost on the way.
    let (code, out, err) = piped(
        &env,
        &["run", "--rm", "-i", "base", "seq", "1", "100000"],
        b"",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        (code, lines.len(), lines.last().copied()),
        (Some(0), 100000, Some("100000")),
        "{err}"
    );
    let config = &env.inspect("counted")["Config"];
    assert_eq!(
        (
            &config["OpenStdin"],
            &config["AttachStdin"],
            &config["StdinOnce"],
            &config["Tty"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(false)
        )
    );
}

#[test]
fn run_t_gives_a_real_terminal_in_the_container_of_the_callers_size() {
    let env = Env::new();
    let mut term = Terminal::start(
        &env,
        &[
            "run",
            "--name",
            "t",
            "-t",
            "base",
            "sh",
            "-c",
            "tty; stty size; echo $TERM; test -t 0 && echo stdin-too; exit 2",
        ],
    );
    let out = term.read_until("stdin-too");
    // The container's own /dev/pts, the caller's size, docker's TERM; a terminal's lines.
    for line in ["/dev/pts/0\r", "30 100\r", "xterm\r", "stdin-too"] {
        assert!(out.contains(line), "{line:?} not in {out:?}");
    }
    assert_eq!(term.exit_code(), 2);
    // The log has the terminal's output as one stream, "stdout", CR LF kept (docker's).
    let log = fs_err::read_to_string(
        env.0
            .root()
            .join("containers")
            .join(env.inspect("t")["Id"].as_str().unwrap())
            .join("json.log"),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&first["log"], &first["stream"]),
        (
            &serde_json::json!("/dev/pts/0\r\n"),
            &serde_json::json!("stdout")
        )
    );
    assert_eq!(env.inspect("t")["Config"]["Tty"], serde_json::json!(true));
    // -it with a stdin that is no terminal: docker's refusal, exit 1, nothing made.
    let (code, _, err) = env.run(&["run", "--name", "nope", "-it", "base", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the input device is not a TTY"), "{err}");
    assert!(!env.0.ok(["ps", "-a"]).contains("nope"));
}

#[test]
fn run_d_it_then_attach_detaches_with_ctrl_p_ctrl_q_and_attaches_again() {
    let env = Env::new();
    env.0
        .ok(["run", "-d", "-it", "--name", "sh1", "base", "sh"]);
    let mut term = Terminal::start(&env, &["attach", "sh1"]);
    // What is typed reaches the shell and its output comes back (quotes keep the echo of
    // the typed line apart from the output).
    term.type_in(b"echo hel''lo; stty size\n");
    term.read_until("hello\r\n30 100\r\n");
    term.type_in(b"\x10\x11");
    assert_eq!(term.exit_code(), 0, "detaching exits 0");
    let ps = env.0.ok(["ps"]);
    assert!(ps.contains(" Up ") && ps.contains("sh1"), "{ps}");
    drop(term);
    // Other detach keys.
    let mut term = Terminal::start(&env, &["attach", "--detach-keys", "ctrl-x,y", "sh1"]);
    term.type_in(b"echo wor''ld\n");
    term.read_until("world\r\n");
    term.type_in(b"\x18y");
    assert_eq!(term.exit_code(), 0);
    drop(term);
    // The shell's exit is attach's exit, and the record's.
    let mut term = Terminal::start(&env, &["attach", "sh1"]);
    term.type_in(b"echo ag''ain\n");
    term.read_until("again\r\n");
    term.type_in(b"exit 3\n");
    assert_eq!(term.exit_code(), 3);
    let state = &env.inspect("sh1")["State"];
    assert_eq!(
        (&state["Status"], &state["ExitCode"]),
        (&serde_json::json!("exited"), &serde_json::json!(3))
    );
    // Not running: docker's words, exit 1.
    let err = env.0.fails(["attach", "sh1"]);
    assert!(
        err.contains("You cannot attach to a stopped container, start it first"),
        "{err}"
    );
    let err = env.0.fails(["attach", "--detach-keys", "ctrl-1", "sh1"]);
    assert!(
        err.contains("invalid detach keys (ctrl-1) provided"),
        "{err}"
    );
}

#[test]
fn start_a_i_feeds_stdin_and_exits_with_the_code() {
    let env = Env::new();
    env.0.ok([
        "create",
        "-i",
        "--name",
        "c",
        "base",
        "sh",
        "-c",
        "cat; exit 4",
    ]);
    let (code, out, err) = piped(&env, &["start", "-a", "-i", "c"], b"fed\n");
    assert_eq!((code, out.as_str()), (Some(4), "fed\n"), "{err}");
    // Again (the same container, a new run): still its stdin, still its code.
    let (code, out, err) = piped(&env, &["start", "-ai", "c"], b"fed\n");
    assert_eq!((code, out.as_str()), (Some(4), "fed\n"), "{err}");
    let logs = env.0.ok(["logs", "c"]);
    assert_eq!(logs, "fed\nfed\n");
}

#[test]
fn run_i_sends_sigint_on_to_the_container_as_dockers_sig_proxy() {
    let env = Env::new();
    let (mut child, mut seen) = started_until_ready(
        &env,
        &[
            "run",
            "--rm",
            "-i",
            "base",
            "sh",
            "-c",
            "trap 'echo got-int; exit 9' INT; echo ready; while true; do sleep 1; done",
        ],
    );
    let mut out = child.stdout.take().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    out.read_to_end(&mut seen).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(
        (code, String::from_utf8_lossy(&seen).as_ref()),
        (Some(9), "ready\ngot-int\n")
    );
}

/// Starts `strata ARGS` with piped stdio; returns once its output has said `ready`.
fn started_until_ready(env: &Env, args: &[&str]) -> (std::process::Child, Vec<u8>) {
    let mut child = env
        .0
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready\n") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "ended before it was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(out);
    (child, seen)
}

/// docker's sig-proxy sends every catchable signal on, not only SIGINT and SIGTERM: SIGUSR1
/// sent to `run -i` (attached) and to a plain foreground `run` reaches the container's trap.
#[test]
fn sig_proxy_sends_sigusr1_on_to_the_container() {
    let env = Env::new();
    let script = "trap 'echo got-usr1; exit 10' USR1; echo ready; while true; do sleep 1; done";
    for args in [
        &["run", "--rm", "-i", "base", "sh", "-c", script][..],
        &["run", "--rm", "base", "sh", "-c", script][..],
    ] {
        let (mut child, mut seen) = started_until_ready(&env, args);
        let status = std::process::Command::new("kill")
            .args(["-USR1", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.stdout.take().unwrap().read_to_end(&mut seen).unwrap();
        let code = child.wait().unwrap().code();
        assert_eq!(
            (code, String::from_utf8_lossy(&seen).as_ref()),
            (Some(10), "ready\ngot-usr1\n"),
            "{args:?}"
        );
    }
}

#[test]
fn attach_passes_the_window_size_on_when_it_changes() {
    let env = Env::new();
    env.0.ok(["run", "-d", "-it", "--name", "w", "base", "sh"]);
    // attach in the background on the terminal (explicitly: a background job's stdin is
    // /dev/null otherwise); the window changes, SIGWINCH tells it.
    let attach = shell_line(&env.0.command(["attach", "w"]));
    let mut term = Terminal::shell(&format!(
        "stty rows 30 cols 100; {attach} </dev/tty & \
         while ! stty -a </dev/tty | grep -q -- -icanon; do sleep 0.05; done; \
         stty rows 40 cols 120 </dev/tty; kill -WINCH $!; echo resized; wait $!; echo rc=$?"
    ));
    term.read_until("resized");
    // The new size travels on its own (the signal's thread, then the monitor): asked until
    // the container sees it (a hang guard, not a timing assertion).
    let mut tries = 0;
    loop {
        term.type_in(b"stty size\n");
        term.read_until("size\r\n");
        if term.read_until("\r\n").ends_with("40 120\r\n") {
            break;
        }
        tries += 1;
        assert!(tries < 600, "the container never saw the new size");
        std::thread::sleep(Duration::from_millis(100));
    }
    term.type_in(b"exit 5\n");
    assert_eq!(term.exit_code(), 5);
}
