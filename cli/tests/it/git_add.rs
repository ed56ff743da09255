//! `ADD` of a git repository, against a `git daemon` the test starts on 127.0.0.1.

use crate::support::{TestEnv, ran};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// `git daemon` serving every repository under its directory, killed on drop.
struct GitServer {
    child: Child,
    port: u16,
}

impl GitServer {
    fn start(base: &Path) -> GitServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        // `git-daemon` itself, not `git daemon`: killing the `git` wrapper would leave the
        // daemon running, holding the test harness's output open.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("run git --exec-path");
        let exec_path = String::from_utf8(exec_path.stdout).expect("utf-8 path");
        let mut child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .expect("start git daemon");
        // Ready once it accepts connections; a daemon that exited fails the test here.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().expect("wait for git daemon") {
                panic!("git daemon exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        GitServer { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git args` in `dir`, with a fixed author; its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .env("GIT_AUTHOR_DATE", "1600000000 +0000")
        .env("GIT_COMMITTER_DATE", "1600000000 +0000")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn write(path: &Path, contents: &str) {
    fs_err::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs_err::write(path, contents).expect("write");
}

/// A repository `x.git` with a first commit (tagged `v1`, annotated: `a.txt`, `sub/b.txt`,
/// symlinks pointing out) and a second on `main`; returns the two commits.
fn make_repo(base: &Path) -> (PathBuf, String, String) {
    let repo = base.join("x.git");
    fs_err::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "--initial-branch=main"]);
    write(&repo.join("a.txt"), "one\n");
    write(&repo.join("sub/b.txt"), "bee\n");
    std::os::unix::fs::symlink("/etc/passwd", repo.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("../../..", repo.join("up")).expect("symlink");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    write(&repo.join("a.txt"), "two\n");
    git(&repo, &["commit", "-q", "-am", "second"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    (repo, first, second)
}

#[test]
fn add_of_a_git_repository_at_a_branch_tag_subdir_and_query_keyed_by_its_commit() {
    let env = TestEnv::with_base("base:latest");
    let base = env.dir().join("git");
    let (repo, first, second) = make_repo(&base);
    let server = GitServer::start(&base);
    let url = server.url("x.git");
    // `#v1:up` names a subdir that is a symlink to `../../..`: it resolves inside the
    // checkout, to the repository's root, never to the host's directories.
    let dockerfile = format!(
        "FROM base\n\
         ADD {url}#v1 /tag\n\
         ADD {url}#v1:sub /sub\n\
         ADD \"{url}?ref=v1&keep-git-dir=1\" /kept\n\
         ADD --checksum={first} {url}#v1 /ck\n\
         ADD \"{url}?ref=v1&mtime=commit\" /mt\n\
         ADD {url}#v1:up /esc\n\
         ADD {url}#main /main\n"
    );
    let ctx = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    let ctx = ctx.to_str().expect("utf-8 path");
    env.build_events(["-t", "g:1", ctx]);
    let out = env.ok([
        "run",
        "--rm",
        "g:1",
        "sh",
        "-c",
        "cat /tag/a.txt /sub/b.txt /main/a.txt /ck/a.txt; ls -A /sub; ls -A /tag; \
         cat /kept/.git/HEAD; readlink /tag/passwd; readlink /tag/up; \
         test -e /main/.git || echo no-git; \
         stat -c %Y /mt/a.txt /mt/sub /mt/sub/b.txt; \
         test $(stat -c %Y /tag/a.txt) -gt 1600000000 && echo checkout-time; \
         ls -A /esc",
    ]);
    assert_eq!(
        out,
        format!(
            "one\nbee\ntwo\none\nb.txt\na.txt\npasswd\nsub\nup\n{first}\n/etc/passwd\n../../..\nno-git\n\
             1600000000\n1600000000\n1600000000\ncheckout-time\n\
             a.txt\npasswd\nsub\nup\n"
        )
    );
    assert_ne!(first, second);

    // Nothing moved: every step hits.
    let events = env.build_events(["-t", "g:1", ctx]);
    assert_eq!(ran(&events), Vec::<String>::new());

    // A new commit on main: only the step of main runs again, and has the new file.
    write(&repo.join("new.txt"), "new\n");
    git(&repo, &["add", "new.txt"]);
    git(&repo, &["commit", "-q", "-m", "third"]);
    let events = env.build_events(["-t", "g:2", ctx]);
    let again = ran(&events);
    assert!(
        again.len() == 1 && again[0].contains("#main /main"),
        "{again:?}"
    );
    let out = env.ok(["run", "--rm", "g:2", "cat", "/main/new.txt", "/tag/a.txt"]);
    assert_eq!(out, "new\none\n");
    drop(server);
}

#[test]
fn add_of_a_git_repository_with_the_wrong_checksum_fails_naming_both_commits() {
    let env = TestEnv::with_base("base:latest");
    let base = env.dir().join("git");
    let (_repo, first, second) = make_repo(&base);
    let server = GitServer::start(&base);
    let url = server.url("x.git");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM base\nADD --checksum={first} {url}#main /src\n"),
        )],
    );
    let err = env.fails(["build", ctx.to_str().expect("utf-8 path")]);
    assert!(
        err.contains(&format!(
            "{url}#main is commit {second}, but --checksum expects {first}"
        )),
        "{err}"
    );
}

/// `git http-backend` behind a minimal HTTP/1.1 server (one CGI run per request, then the
/// connection closes): the smart HTTP protocol, as a `https://host/o/r.git` remote speaks it.
/// With `authorization`, a request without exactly that `Authorization` header gets a 401
/// asking for Basic credentials, as a private repository's host answers.
fn start_http_backend(base: &Path, authorization: Option<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let base = base.to_owned();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (base, authorization) = (base.clone(), authorization.clone());
            std::thread::spawn(move || {
                let _ = serve_cgi(conn, &base, authorization.as_deref());
            });
        }
    });
    port
}

fn serve_cgi(conn: TcpStream, base: &Path, authorization: Option<&str>) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let len: usize = header("content-length").parse().unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    if let Some(expected) = authorization
        && header("authorization") != expected
    {
        let mut conn = conn;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return conn.flush();
    }
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", len.to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(&body)?;
    let out = child.wait_with_output()?.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&out[..i]).into_owned(),
            &out[i + n..],
        ),
        None => (String::new(), &out[..]),
    };
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            _ => response.push(h.to_owned()),
        }
    }
    let mut conn = conn;
    write!(conn, "HTTP/1.1 {status}\r\n")?;
    for h in response {
        write!(conn, "{h}\r\n")?;
    }
    write!(
        conn,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    conn.write_all(payload)?;
    conn.flush()
}

#[test]
fn add_of_a_git_repository_over_smart_http() {
    let env = TestEnv::with_base("base:latest");
    let base = env.dir().join("git");
    let (_repo, first, _second) = make_repo(&base);
    let port = start_http_backend(&base, None);
    let url = format!("http://127.0.0.1:{port}/x.git");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM base\nADD --keep-git-dir=true \"{url}#v1\" /src\nADD {url}#main:sub /sub\n"
            ),
        )],
    );
    env.build_events(["-t", "h:1", ctx.to_str().expect("utf-8 path")]);
    let out = env.ok([
        "run",
        "--rm",
        "h:1",
        "sh",
        "-c",
        "cat /src/a.txt /src/.git/HEAD /sub/b.txt",
    ]);
    assert_eq!(out, format!("one\n{first}\nbee\n"));
}

/// Every regular file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs_err::read_dir(&d).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file()
                && fs_err::read(&path)
                    .expect("read file")
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn add_of_a_private_git_repository_takes_git_auth_token_of_its_host() {
    use base64::Engine as _;
    let env = TestEnv::with_base("base:latest");
    let base = env.dir().join("git");
    let (_repo, first, _second) = make_repo(&base);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let token = format!("tok-git-{:x}-{nanos:x}", std::process::id());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let port = start_http_backend(&base, Some(format!("basic {basic}")));
    let url = format!("http://127.0.0.1:{port}/x.git");
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM base\nADD --keep-git-dir=true \"{url}#v1\" /src\n"),
        )],
    );
    let build = |secret: &str| {
        env.command(["build", "--progress=plain", "--explain", "-t", "p:1"])
            .args(["--secret", secret])
            .arg(&ctx)
            .env("TOK", &token)
            .env("HDR", format!("basic {basic}"))
            .output()
            .expect("run strata build")
    };

    // A secret for the host without its port is another host's: git gets no credentials, and
    // fails at once (no prompt), naming the remote.
    let denied = build("id=GIT_AUTH_TOKEN.127.0.0.1,env=TOK");
    let denied_err = String::from_utf8_lossy(&denied.stderr).into_owned();
    assert_eq!(denied.status.code(), Some(1), "{denied_err}");
    assert!(
        denied_err.contains(&format!("failed to list the refs of {url}"))
            && denied_err.contains("terminal prompts disabled"),
        "{denied_err}"
    );

    // BuildKit's id: the host as the URL names it, port included.
    let granted = build(&format!("id=GIT_AUTH_TOKEN.127.0.0.1:{port},env=TOK"));
    let granted_err = String::from_utf8_lossy(&granted.stderr).into_owned();
    assert!(granted.status.success(), "{granted_err}");
    let out = env.ok([
        "run",
        "--rm",
        "p:1",
        "sh",
        "-c",
        "cat /src/a.txt /src/.git/HEAD; grep url /src/.git/config",
    ]);
    assert_eq!(
        out,
        format!("one\n{first}\n\turl = {url}\n"),
        "{granted_err}"
    );

    // The same credentials as a raw header, under the any-host id: the key is the commit
    // alone, so the step is a cache hit.
    let again = env
        .command(["build", "--progress=rawjson", "-t", "p:1"])
        .args(["--secret", "id=GIT_AUTH_HEADER,env=HDR"])
        .arg(&ctx)
        .env("HDR", format!("basic {basic}"))
        .output()
        .expect("run strata build");
    let again_err = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "{again_err}");
    let events: Vec<serde_json::Value> = again_err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(ran(&events), Vec::<String>::new());

    // Neither the token nor its header is in anything printed or written.
    for needle in [token.as_str(), basic.as_str()] {
        for (what, text) in [
            ("denied", &denied_err),
            ("granted", &granted_err),
            ("again", &again_err),
        ] {
            assert!(!text.contains(needle), "{what}: {text}");
        }
        assert!(
            !String::from_utf8_lossy(&granted.stdout).contains(needle),
            "stdout"
        );
        let found = files_containing(env.dir(), needle.as_bytes());
        assert!(found.is_empty(), "{needle} in {found:?}");
    }
}

/// `sshd` on a free 127.0.0.1 port, in the foreground with a configuration of the test's own in
/// `dir` (a fresh host key; root logs in with a key in `authorized`); killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Sshd {
    fn start(dir: &Path, authorized: &Path) -> Sshd {
        let (host_key, _) = crate::secrets::keygen(dir, "host_key");
        // sshd checks that its privilege separation directory exists.
        fs_err::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let config = dir.join("sshd_config");
        write(
            &config,
            &format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
                host_key.display(),
                authorized.display()
            ),
        );
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sshd (openssh-server)");
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().expect("wait for sshd") {
                panic!("sshd exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Sshd { child, port }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_of_a_git_repository_over_ssh_uses_the_builds_ssh_agent() {
    let env = TestEnv::with_base("base:latest");
    let (repo, _, second) = make_repo(&env.dir().join("git"));
    let keys = env.dir().join("keys");
    fs_err::create_dir_all(&keys).expect("mkdir");
    let (user_key, _) = crate::secrets::keygen(&keys, "user_key");
    let authorized = keys.join("authorized_keys");
    fs_err::copy(keys.join("user_key.pub"), &authorized).expect("authorize the key");
    if let Some(user) = crate::support::test_user() {
        // The key (mode 0600) is the building user's own, as it would be; sshd's files stay
        // root's.
        crate::support::chown_tree(&user_key, user);
    }
    let sshd = Sshd::start(&keys, &authorized);
    let url = format!("ssh://root@127.0.0.1:{}{}", sshd.port, repo.display());
    let dockerfile = format!("FROM base\nADD {url}#main /src\n");
    let ctx = env.context("ctx", &[("Dockerfile", &dockerfile)]);
    let ctx = ctx.to_str().expect("utf-8 path");

    // The key reaches git through the agent strata starts for `--ssh default=KEY`; the
    // host's own agent (if any) is not used.
    let events = env.build_events([
        "--ssh",
        &format!("default={}", user_key.display()),
        "-t",
        "g:ssh",
        ctx,
    ]);
    assert_eq!(ran(&events), [format!("[2/2] ADD {url}#main /src")]);
    assert_eq!(
        env.ok(["run", "--rm", "g:ssh", "cat", "/src/a.txt"]),
        "two\n"
    );
    let head = env.ok(["run", "--rm", "g:ssh", "cat", "/src/sub/b.txt"]);
    assert_eq!(head, "bee\n", "commit {second}");

    // Without an agent the remote refuses, and the error names it (credentials taken out)
    // and says what was missing.
    let err = env.fails(["build", "--progress=plain", ctx]);
    let shown = format!("ssh://127.0.0.1:{}{}", sshd.port, repo.display());
    assert!(err.contains(&shown), "{err}");
    assert!(
        err.contains("Could not read from remote repository"),
        "{err}"
    );
    assert!(err.contains("`--ssh default`, and none was given"), "{err}");
}
