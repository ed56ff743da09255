//! `--secret`, `--ssh` and `RUN --mount=type=secret|ssh|tmpfs` (issue 12 §3): the secret
//! reaches its RUN and nothing else a build writes or prints.

use crate::support::{TestEnv, ran};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A token no build could write by chance.
fn token(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("test setup")
        .as_nanos();
    format!("tok-{tag}-{:x}-{nanos:x}", std::process::id())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every regular file under `dir` (but `skip`) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], skip: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs_err::read_dir(&d).expect("test setup") {
            let entry = entry.expect("test setup");
            let path = entry.path();
            let kind = entry.file_type().expect("test setup");
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file()
                && path != skip
                && fs_err::read(&path)
                    .expect("test setup")
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

fn read(path: PathBuf) -> String {
    fs_err::read_to_string(path).expect("test setup")
}

#[test]
fn secret_reaches_its_run_only_and_leaks_nowhere() {
    let env = TestEnv::with_base("base:latest");
    let secret = token("file");
    let env_secret = token("env");
    let secret_file = env.dir().join("secret.txt");
    fs_err::write(&secret_file, &secret).expect("test setup");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\n\
             RUN --mount=type=secret,id=tok stat -c '%a %u %g' /run/secrets/tok > /default \
             && sha256sum /run/secrets/tok | cut -d' ' -f1 > /sum && echo visible-marker > /marker\n\
             RUN --mount=type=secret,id=tok,target=/s/t,mode=0440,uid=7,gid=8 \
             stat -c '%a %u %g' /s/t > /custom\n\
             RUN --mount=type=secret,id=envtok,env=TOK printf %s \"$TOK\" | sha256sum | cut -d' ' -f1 > /envsum \
             && test ! -e /run/secrets/envtok\n\
             RUN --mount=type=secret,id=tok cat /run/secrets/tok\n",
        )],
    );
    let (out, cache, meta) = (
        env.dir().join("out"),
        env.dir().join("cache"),
        env.dir().join("meta.json"),
    );
    let build = |secret_arg: &str, progress: &str| {
        env.command(["build", progress, "-t", "t:1", "--explain"])
            .args(["--secret", secret_arg, "--secret", "id=envtok,env=MY_TOKEN"])
            .arg("--metadata-file")
            .arg(&meta)
            .arg("--cache-to")
            .arg(format!(
                "type=local,dest={},mode=max,compression=uncompressed",
                cache.display()
            ))
            .arg(&ctx)
            .env("MY_TOKEN", &env_secret)
            .output()
            .expect("test setup")
    };
    let run = build(
        &format!("id=tok,src={}", secret_file.display()),
        "--progress=plain",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stderr}");
    let exported = env
        .command(["build", "-q", "--secret"])
        .arg(format!("id=tok,src={}", secret_file.display()))
        .args(["--secret", "id=envtok,env=MY_TOKEN", "-o"])
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&ctx)
        .env("MY_TOKEN", &env_secret)
        .status()
        .expect("test setup");
    assert!(exported.success());

    // Inside the RUN: BuildKit's defaults, the options given, the value itself.
    assert_eq!(read(out.join("default")), "400 0 0\n");
    assert_eq!(read(out.join("custom")), "440 7 8\n");
    assert_eq!(read(out.join("sum")).trim(), sha256(secret.as_bytes()));
    assert_eq!(
        read(out.join("envsum")).trim(),
        sha256(env_secret.as_bytes())
    );
    assert!(!out.join("run/secrets/tok").exists());

    // strata prints the secret only where the RUN printed it: its one log line.
    assert!(!stdout.contains(&secret), "{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(&secret)).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with('#') && lines[0].ends_with(&secret),
        "{stderr}"
    );
    assert!(!stderr.contains(&env_secret), "{stderr}");

    // Nothing written holds it: layers, snapshots, records, the cache export, the metadata
    // file, the local output. The marker shows the walk reads the layers.
    for needle in [&secret, &env_secret] {
        let found = files_containing(env.dir(), needle.as_bytes(), &secret_file);
        assert!(found.is_empty(), "{needle} found in {found:?}");
    }
    assert!(!files_containing(&env.root(), b"visible-marker", &secret_file).is_empty());
    assert!(!files_containing(&cache, b"visible-marker", &secret_file).is_empty());
    assert!(meta.is_file());
    for cmd in [vec!["inspect", "t:1"], vec!["history", "--no-trunc", "t:1"]] {
        let shown = env.ok(&cmd);
        assert!(shown.contains("t:1") || shown.contains("RUN"), "{shown}");
        assert!(
            !shown.contains(&secret) && !shown.contains(&env_secret),
            "{shown}"
        );
    }
    let history = env.ok(["history", "--no-trunc", "t:1"]);
    assert!(
        history.contains("RUN /bin/sh -c cat /run/secrets/tok"),
        "{history}"
    );

    // Other contents under the same id hit the cache, as in BuildKit.
    let other = env.dir().join("other.txt");
    fs_err::write(&other, token("other")).expect("test setup");
    let again = env
        .command(["build", "--progress=rawjson", "-t", "t:1"])
        .arg("--secret")
        .arg(format!("id=tok,src={}", other.display()))
        .args(["--secret", "id=envtok,env=MY_TOKEN"])
        .arg(&ctx)
        .env("MY_TOKEN", "another value")
        .output()
        .expect("test setup");
    assert!(again.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(ran(&events), Vec::<String>::new());
}

#[test]
fn missing_secrets_fail_with_their_id_and_line() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nRUN --mount=type=secret,id=opt cat /run/secrets/opt || echo absent > /a\n\
             RUN --mount=type=secret,id=needed,required=true true\n",
        )],
    );
    let ctx = ctx.to_str().expect("test setup");
    let stderr = env.fails(["build", "-q", ctx]);
    assert!(
        stderr.contains("Dockerfile:3")
            && stderr.contains("secret needed is required but was not provided"),
        "{stderr}"
    );
    let stderr = env.fails([
        "build",
        "-q",
        "--secret",
        "id=needed,src=/nonexistent/s",
        ctx,
    ]);
    assert!(
        stderr.contains("failed to read secret \"needed\"") && stderr.contains("/nonexistent/s"),
        "{stderr}"
    );
    let stderr = env.fails([
        "build",
        "-q",
        "--secret",
        "id=needed,env=STRATA_UNSET_VAR",
        ctx,
    ]);
    assert!(
        stderr.contains("secret \"needed\": environment variable STRATA_UNSET_VAR is not set"),
        "{stderr}"
    );
    let big = env.dir().join("big");
    fs_err::write(&big, vec![b'x'; 500 * 1024 + 1]).unwrap();
    let stderr = env.fails([
        "build",
        "-q",
        "--secret",
        &format!("id=needed,src={}", big.display()),
        ctx,
    ]);
    assert!(
        stderr.contains("secret \"needed\" in ") && stderr.contains("larger than 500 KiB"),
        "{stderr}"
    );
    let binary = env.dir().join("binary");
    fs_err::write(&binary, b"\xff\x00").unwrap();
    let as_env = env.context(
        "as_env",
        &[(
            "Dockerfile",
            "FROM base\nRUN --mount=type=secret,id=bin,env=BIN true\n",
        )],
    );
    let stderr = env.fails([
        "build",
        "-q",
        "--secret",
        &format!("id=bin,src={}", binary.display()),
        as_env.to_str().unwrap(),
    ]);
    assert!(
        stderr
            .contains("secret bin is not UTF-8 text without NUL, so it cannot be the variable BIN"),
        "{stderr}"
    );
    let stderr = env.fails(["build", "-q", "--secret", "src=/x", ctx]);
    assert!(stderr.contains("--secret needs id=ID"), "{stderr}");
}

/// An `ssh-agent -D` of the test's own; killed on drop.
struct HostAgent {
    child: Child,
    socket: PathBuf,
}

impl HostAgent {
    fn start(dir: &Path) -> HostAgent {
        let socket = dir.join("host-agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run ssh-agent (openssh-client)");
        // It prints once the socket listens.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("test setup")),
            &mut line,
        )
        .expect("test setup");
        HostAgent { child, socket }
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh ed25519 key in `dir`; returns its path and its `SHA256:` fingerprint.
pub(crate) fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("test setup");
    assert!(status.success());
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .expect("test setup");
    let listed = String::from_utf8(out.stdout).expect("test setup");
    let fingerprint = listed
        .split_whitespace()
        .nth(1)
        .expect("test setup")
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");
    (key, fingerprint)
}

/// Copies the host's `ssh-add` with the libraries it loads into `dir`: busybox has no agent
/// client, so the RUN runs this one through the copied dynamic loader.
fn copy_ssh_add(dir: &Path) {
    fs_err::create_dir_all(dir).expect("test setup");
    let out = Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .expect("test setup");
    let mut files = vec![PathBuf::from("/usr/bin/ssh-add")];
    for line in String::from_utf8(out.stdout).expect("test setup").lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        files.extend(path);
    }
    for f in files {
        let name = if f.to_string_lossy().contains("ld-linux") {
            "ld.so".into()
        } else {
            f.file_name().expect("test setup").to_owned()
        };
        fs_err::copy(&f, dir.join(name)).expect("test setup");
    }
}

/// The command lines of the running `ssh-agent`s whose arguments name a path under `dir`.
fn agents_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").expect("read /proc") {
        let path = entry.expect("read /proc").path().join("cmdline");
        let Ok(cmdline) = fs_err::read(&path) else {
            continue; // not a process, or it has just exited
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ssh-agent") && cmdline.contains(&dir) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn ssh_agents_reach_the_run() {
    let env = TestEnv::with_base("base:latest");
    let (host_key, host_fp) = keygen(env.dir(), "host-key");
    let (file_key, file_fp) = keygen(env.dir(), "file-key");
    let agent = HostAgent::start(env.dir());
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(&host_key)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .status()
        .expect("test setup");
    assert!(added.success());
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\n\
             RUN --mount=type=bind,source=x,target=/x --mount=type=ssh \
             test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock \
             && /x/ld.so --library-path /x /x/ssh-add -l > /default\n\
             RUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=byfile,target=/a.sock \
             --mount=type=ssh,id=bysock \
             echo \"$SSH_AUTH_SOCK\" > /sock2 && /x/ld.so --library-path /x /x/ssh-add -l > /byfile \
             && SSH_AUTH_SOCK=/run/buildkit/ssh_agent.1 /x/ld.so --library-path /x /x/ssh-add -l > /bysock\n\
             RUN --mount=type=ssh,id=absent test ! -e /run/buildkit/ssh_agent.0 && touch /none\n\
             RUN --mount=type=ssh,id=bysock,uid=1000,gid=50,mode=0660 \
             stat -c '%a %u %g' \"$SSH_AUTH_SOCK\" > /owner && mkdir -m 777 /o\n\
             USER app\n\
             RUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=bysock,uid=1000 \
             /x/ld.so --library-path /x /x/ssh-add -l > /o/asuser\n\
             RUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=bysock \
             /x/ld.so --library-path /x /x/ssh-add -l > /o/denied 2>&1; echo $? > /o/denied_rc\n",
        )],
    );
    copy_ssh_add(&ctx.join("x"));
    let out = env.dir().join("out");
    let built = env
        .command(["build", "-q", "--ssh", "default"])
        .arg("--ssh")
        .arg(format!("byfile={}", file_key.display()))
        .arg("--ssh")
        .arg(format!("bysock={}", agent.socket.display()))
        .arg("-o")
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&ctx)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .expect("test setup");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(read(out.join("sock")), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read(out.join("sock2")), "/a.sock\n");
    let listed = read(out.join("default"));
    assert!(
        listed.contains(&host_fp) && !listed.contains(&file_fp),
        "{listed}"
    );
    let listed = read(out.join("byfile"));
    assert!(
        listed.contains(&file_fp) && !listed.contains(&host_fp),
        "{listed}"
    );
    assert!(read(out.join("bysock")).contains(&host_fp));
    assert!(out.join("none").exists());
    // The step's socket has the mount's owner and mode: uid= lets a user in, the default
    // (root's, 0600) keeps it out.
    assert_eq!(read(out.join("owner")), "660 1000 50\n");
    assert!(read(out.join("o/asuser")).contains(&host_fp));
    assert_ne!(read(out.join("o/denied_rc")), "0\n");
    assert!(!read(out.join("o/denied")).contains(&host_fp));
    // The build's own agent (its socket is under the store root) is gone; the test's is
    // found, so the search sees agents.
    assert_eq!(agents_under(&env.root()), Vec::<String>::new());
    assert_eq!(agents_under(env.dir()).len(), 1);

    let stderr = env.fails([
        "build",
        "-q",
        "--ssh",
        "k=/nonexistent/key",
        ctx.to_str().expect("test setup"),
    ]);
    assert!(stderr.contains("--ssh k: cannot use its path"), "{stderr}");
    let out = env
        .command(["build", "-q", "--ssh", "default"])
        .arg(&ctx)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("--ssh default: no agent socket or key file (is SSH_AUTH_SOCK set?)"),
        "{stderr}"
    );
    let required = env.context(
        "required",
        &[(
            "Dockerfile",
            "FROM base\nRUN --mount=type=ssh,id=deploy,required=true true\n",
        )],
    );
    let stderr = env.fails(["build", "-q", required.to_str().unwrap()]);
    assert!(
        stderr.contains("Dockerfile:2")
            && stderr.contains("ssh agent deploy is required but was not provided"),
        "{stderr}"
    );
}

#[test]
fn tmpfs_mounts_are_sized_and_left_out_of_the_layer() {
    let env = TestEnv::with_base("base:latest");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\n\
             RUN --mount=type=tmpfs,target=/t,size=64k echo hi > /t/f \
             && { dd if=/dev/zero of=/t/big bs=1k count=128 2> /err; echo $? > /rc; } \
             && df -k /t | tail -1 | awk '{print $2}' > /size\n",
        )],
    );
    let out = env.dir().join("out");
    env.ok([
        "build",
        "-q",
        "-o",
        &format!("type=local,dest={}", out.display()),
        ctx.to_str().expect("test setup"),
    ]);
    assert_ne!(read(out.join("rc")), "0\n");
    assert!(read(out.join("err")).contains("No space left on device"));
    assert_eq!(read(out.join("size")), "64\n");
    assert!(!out.join("t/f").exists() && !out.join("t/big").exists());
}
