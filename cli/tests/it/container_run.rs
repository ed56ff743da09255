//! More of `run` and `create` (issue 14): `-v` binds and volumes, `--mount`, `--tmpfs`,
//! `--read-only`, `rm -v`, `inspect`'s `Mounts`, and `strata volume`, with docker's output,
//! errors and exit codes; bytes and modes checked on the host.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::containers::Env;
use crate::support::{chown_tree, test_user};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

/// A host directory `name` in the test's scratch dir, the test user's in the rootless pass.
fn host_dir(env: &Env, name: &str) -> PathBuf {
    let dir = env.0.dir().join(name);
    fs_err::create_dir_all(&dir).unwrap();
    if let Some(user) = test_user() {
        chown_tree(&dir, user);
    }
    dir
}

/// Builds `tag` from `dockerfile` with a context of one file `s` holding `s`.
pub(crate) fn build(env: &Env, tag: &str, dockerfile: &str, s: &str) {
    let ctx = env
        .0
        .context("ctx", &[("Dockerfile", dockerfile), ("s", s)]);
    let built = env
        .0
        .command(["build", "-t", tag])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{err}");
}

fn volumes(env: &Env) -> Vec<String> {
    env.0
        .ok(["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bind_mount_writes_reach_the_host_and_ro_refuses_them() {
    let env = Env::new();
    let dir = host_dir(&env, "shared");
    fs_err::write(dir.join("in"), "from host\n").unwrap();
    let rw = format!("{}:/data", dir.display());
    let (code, out, err) = env.run(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "base",
        "sh",
        "-c",
        "cat /data/in && echo hi > /data/out && chmod 640 /data/out",
    ]);
    assert_eq!((code, out.as_str()), (0, "from host\n"), "{err}");
    assert_eq!(fs_err::read_to_string(dir.join("out")).unwrap(), "hi\n");
    let mode = fs_err::metadata(dir.join("out"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode, 0o100640);

    let ro = format!("{}:/data:ro", dir.display());
    let (code, _, err) = env.run(&["run", "--rm", "-v", &ro, "base", "touch", "/data/no"]);
    assert_eq!(code, 1);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!dir.join("no").exists());
}

#[test]
fn a_named_volume_is_filled_from_the_image_and_outlives_its_container() {
    let env = Env::new();
    build(&env, "seeded", "FROM base\nCOPY s /seed/s\n", "seeded\n");

    // First mount: the image's /seed is copied into the empty volume.
    let (code, out, err) = env.run(&[
        "run",
        "--name",
        "w",
        "-v",
        "data:/seed",
        "seeded",
        "sh",
        "-c",
        "cat /seed/s && echo more > /seed/t",
    ]);
    assert_eq!((code, out.as_str()), (0, "seeded\n"), "{err}");
    let data = env.0.root().join("volumes/data/_data");
    assert_eq!(fs_err::read_to_string(data.join("s")).unwrap(), "seeded\n");
    assert_eq!(fs_err::read_to_string(data.join("t")).unwrap(), "more\n");

    // The copy is made when a container is created, as docker's: a volume emptied later
    // stays empty when that container starts again.
    fs_err::remove_file(data.join("s")).unwrap();
    fs_err::remove_file(data.join("t")).unwrap();
    let (code, out, _) = env.run(&["start", "-a", "w"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(fs_err::read_dir(&data).unwrap().next().is_none());
    fs_err::write(data.join("t"), "more\n").unwrap();

    // In use: refused, named in docker's words.
    let err = env.0.fails(["volume", "rm", "data"]);
    assert!(err.contains("remove data: volume is in use - ["), "{err}");
    env.0.ok(["rm", "-v", "w"]);
    // A named volume survives `rm -v` and is mounted as it was left (no second copy-up).
    let (code, out, _) = env.run(&["run", "--rm", "-v", "data:/seed", "base", "cat", "/seed/t"]);
    assert_eq!((code, out.as_str()), (0, "more\n"));
    assert_eq!(
        env.0.ok(["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     data\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&env.0.ok(["volume", "inspect", "data"])).unwrap();
    assert_eq!(inspect[0]["Name"], "data");
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Mountpoint"], data.to_str().unwrap());
    assert_eq!(env.0.ok(["volume", "rm", "data"]), "data\n");
    assert!(volumes(&env).is_empty());
    let err = env.0.fails(["volume", "inspect", "data"]);
    assert!(err.contains("get data: no such volume"), "{err}");
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_with_rm() {
    let env = Env::new();
    let id = env.0.ok(["create", "-v", "/scratch", "base", "true"]);
    let id = id.trim();
    let names = volumes(&env);
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].len(), 64);
    let mounts = &env.inspect(id)["Mounts"];
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], names[0].as_str());
    assert_eq!(mounts[0]["Destination"], "/scratch");
    assert_eq!(mounts[0]["RW"], true);
    env.0.ok(["rm", "-v", id]);
    assert!(volumes(&env).is_empty());

    let (code, out, err) = env.run(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "base",
        "sh",
        "-c",
        "echo x > /scratch/f && cat /scratch/f",
    ]);
    assert_eq!((code, out.as_str()), (0, "x\n"), "{err}");
    assert!(volumes(&env).is_empty());

    // `volume prune` takes unused anonymous volumes, keeps named ones unless -a.
    env.0.ok(["volume", "create", "keep"]);
    let id = env.0.ok(["create", "-v", "/scratch", "base", "true"]);
    env.0.ok(["rm", id.trim()]);
    let anon = volumes(&env).into_iter().find(|n| n != "keep").unwrap();
    let out = env.0.ok(["volume", "prune", "-f"]);
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n")
    );
    assert_eq!(volumes(&env), ["keep"]);
}

#[test]
fn bad_mounts_fail_as_docker_and_leave_nothing() {
    let env = Env::new();
    let (code, _, err) = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/no/such/dir,target=/x",
        "base",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        ),
        "{err}"
    );
    let (code, _, err) = env.run(&["create", "-v", "data:relative", "base", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("invalid volume specification: 'data:relative'"),
        "{err}"
    );
    let (code, _, err) = env.run(&["create", "-v", "/a", "--tmpfs", "/a", "base", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("Duplicate mount point: /a"), "{err}");
    // A name in use: the anonymous volume made for it goes too.
    env.0.ok(["create", "--name", "taken", "base", "true"]);
    let (code, _, _) = env.run(&["create", "--name", "taken", "-v", "/v", "base", "true"]);
    assert_eq!(code, 125);
    assert!(volumes(&env).is_empty());
    assert_eq!(env.0.ok(["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn read_only_root_refuses_writes_but_mounts_take_them() {
    let env = Env::new();
    let (code, out, err) = env.run(&[
        "run",
        "--rm",
        "--read-only",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m",
        "-v",
        "/v",
        "base",
        "sh",
        "-c",
        "touch /x; echo $?; touch /t/a /v/a && df -k /t | tail -n 1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"));
    // The tmpfs has the size asked for: 1024 blocks of 1 KiB.
    let df: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(df[1], "1024", "{out}");
    // inspect says so.
    let id = env.0.ok(["create", "--read-only", "base", "true"]);
    assert_eq!(env.inspect(id.trim())["HostConfig"]["ReadonlyRootfs"], true);
}

#[test]
fn inspect_shows_mounts_as_docker() {
    let env = Env::new();
    let dir = host_dir(&env, "h");
    let bind = format!("{}:/h:ro", dir.display());
    let id = env.0.ok([
        "create",
        "-v",
        &bind,
        "-v",
        "named:/n",
        "--mount",
        "type=tmpfs,destination=/t",
        "base",
        "true",
    ]);
    let volume = env.0.root().join("volumes/named/_data");
    assert_eq!(
        env.inspect(id.trim())["Mounts"],
        json!([
            {"Type": "bind", "Source": dir, "Destination": "/h", "Mode": "ro", "RW": false,
             "Propagation": "rprivate"},
            {"Type": "volume", "Name": "named", "Source": volume, "Destination": "/n",
             "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""},
            {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": true,
             "Propagation": ""},
        ])
    );
}

#[test]
fn json_log_rotates_at_max_size_keeping_max_file_files_and_logs_reads_them_in_order() {
    let env = Env::new();
    let (code, _, err) = env.run(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "base",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo \"line $i\"; i=$((i+1)); done",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = env.inspect("chatty")["Id"].as_str().unwrap().to_owned();
    let dir = env.0.root().join("containers").join(&id);
    let mut logs: Vec<String> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("json.log"))
        .collect();
    logs.sort();
    assert_eq!(logs, ["json.log", "json.log.1", "json.log.2"]);
    for name in &logs {
        let size = fs_err::metadata(dir.join(name)).unwrap().len();
        assert!(size <= 1000, "{name} has {size} bytes");
    }
    // Full files are full: the next line would not have fit.
    assert!(fs_err::metadata(dir.join("json.log.1")).unwrap().len() > 900);
    // Every line kept, oldest file first: a run of consecutive lines ending with the last.
    let out = env.0.ok(["logs", "chatty"]);
    let numbers: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 199);
    assert!(
        numbers.len() > 20 && numbers.len() < 200,
        "{}",
        numbers.len()
    );
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{out}");
    assert_eq!(
        env.0.ok(["logs", "--tail", "2", "chatty"]),
        "line 198\nline 199\n"
    );
    assert_eq!(
        env.inspect("chatty")["HostConfig"]["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "1k"}})
    );

    let (code, _, err) = env.run(&["create", "--log-opt", "max-file=2", "base", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("max-file cannot be set when max-size is not set"),
        "{err}"
    );
}

#[test]
fn logs_since_and_until_select_lines_by_their_time() {
    let env = Env::new();
    env.0.ok([
        "run",
        "--name",
        "abc",
        "base",
        "sh",
        "-c",
        "echo a; echo b; echo c",
    ]);
    let stamped = env.0.ok(["logs", "-t", "abc"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split_once(' ').unwrap().0)
        .collect();
    assert_eq!(times.len(), 3, "{stamped}");
    assert_eq!(env.0.ok(["logs", "--since", times[1], "abc"]), "b\nc\n");
    assert_eq!(env.0.ok(["logs", "--until", times[1], "abc"]), "a\nb\n");
    assert_eq!(
        env.0
            .ok(["logs", "--since", times[1], "--tail", "1", "abc"]),
        "c\n"
    );
    assert_eq!(env.0.ok(["logs", "--since", "10m", "abc"]), "a\nb\nc\n");
    assert_eq!(env.0.ok(["logs", "--since", "4000000000", "abc"]), "");
    let err = env.0.fails(["logs", "--since", "yesterday", "abc"]);
    assert!(err.contains("invalid time \"yesterday\""), "{err}");
}

#[test]
fn ps_format_labels_and_sizes_as_docker() {
    let env = Env::new();
    let web = env.0.ok([
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=front",
        "--label",
        "app",
        "base",
        "sleep",
        "100",
    ]);
    let web = web.trim();
    env.0
        .ok(["create", "--name", "db", "-l", "tier=back", "base", "true"]);
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "-a"];
        all.extend_from_slice(args);
        env.0.ok(all)
    };
    assert_eq!(
        names(&["--filter", "label=tier=front", "--format", "{{.Names}}"]),
        "web\n"
    );
    assert_eq!(
        names(&["--filter", "label=app", "--format", "{{.Names}}"]),
        "web\n"
    );
    assert_eq!(
        names(&[
            "--filter",
            "label=tier",
            "--format",
            "{{.Names}} {{.Label \"tier\"}}"
        ]),
        "db back\nweb front\n"
    );
    assert_eq!(
        names(&[
            "--filter",
            "label=tier",
            "--filter",
            "label=app",
            "--format",
            "{{.Names}}"
        ]),
        "web\n"
    );
    assert_eq!(
        env.0
            .ok(["ps", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.State}}"]),
        format!(
            "CONTAINER ID   NAMES     STATE\n{}   web       running\n",
            &web[..12]
        )
    );
    let line = names(&["--filter", "name=web", "--format", "{{json .}}"]);
    let row: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(row["Names"], "web");
    assert_eq!(row["ID"], &web[..12]);
    assert_eq!(row["Labels"], "app=,tier=front");
    assert_eq!(row["Command"], "\"sleep 100\"");
    assert_eq!(row["Image"], "base");
    assert!(row["Status"].as_str().unwrap().starts_with("Up "), "{line}");
    assert_eq!(
        env.inspect("web")["Config"]["Labels"],
        json!({"app": "", "tier": "front"})
    );
    let (code, _, err) = env.run(&["ps", "--format", "{{.Nope}}"]);
    assert_eq!(code, 1);
    assert!(err.contains("can't evaluate field Nope"), "{err}");

    // -s: the writable layer's size, and with the image's.
    env.0.ok([
        "run",
        "--name",
        "big",
        "base",
        "sh",
        "-c",
        "head -c 5000 /dev/zero > /f",
    ]);
    let size = names(&["--filter", "name=big", "--format", "{{.Size}}"]);
    let (rw, virt) = size.trim().split_once(" (virtual ").unwrap();
    assert_eq!(rw, "5kB");
    assert!(virt.ends_with("MB)") || virt.ends_with("kB)"), "{size}");
    let table = names(&["-s", "--filter", "name=big"]);
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("NAMES     SIZE"), "{table}");
}

#[test]
fn init_is_always_pid_1_so_init_is_recorded_and_the_command_is_not_pid_1() {
    let env = Env::new();
    for extra in [&["--init"][..], &[][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["base", "sh", "-c", "echo $$"]);
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 0, "{err}");
        let pid: u32 = out.trim().parse().unwrap();
        assert!(pid > 1, "the command is PID {pid} with {extra:?}");
    }
    let id = env.0.ok(["create", "--init", "base", "true"]);
    assert_eq!(env.inspect(id.trim())["HostConfig"]["Init"], true);
}

#[test]
fn an_images_volume_gets_an_anonymous_volume_filled_from_the_image() {
    let env = Env::new();
    build(
        &env,
        "withvol",
        "FROM base\nCOPY s /data/s\nVOLUME /data\n",
        "from the image\n",
    );
    let id = env.0.ok([
        "create",
        "withvol",
        "sh",
        "-c",
        "cat /data/s; echo new > /data/n",
    ]);
    let id = id.trim();
    let mounts = &env.inspect(id)["Mounts"];
    assert_eq!(mounts.as_array().unwrap().len(), 1);
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/data");
    let name = mounts[0]["Name"].as_str().unwrap().to_owned();
    assert_eq!(env.0.ok(["start", "-a", id]), "from the image\n");
    let data = env.0.root().join("volumes").join(&name).join("_data");
    assert_eq!(fs_err::read_to_string(data.join("n")).unwrap(), "new\n");
    env.0.ok(["rm", "-v", id]);
    assert!(volumes(&env).is_empty());
    // A mount of the user's on that path replaces it.
    let dir = host_dir(&env, "mine");
    let bind = format!("{}:/data", dir.display());
    let (code, out, err) = env.run(&["run", "--rm", "-v", &bind, "withvol", "ls", "/data"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(volumes(&env).is_empty());
}
