//! kill -9 torture (issue 12 §6, research fault cases X01–X04): a seeded random sequence of
//! `build`, `load`, `save -o` and the prunes, each killed with SIGKILL after a random delay
//! within its measured duration, so that kills land in RUN, in a layer commit, in the image
//! commit, in an archive being written or read, in a garbage collection. After each kill:
//! `system check` is clean; once the next build ran, nothing of the dead process is left (no
//! process in its cgroup, no cgroup, no mount under the store, nothing in `tmp/` after the
//! command after it); a `save` output is absent or a whole archive; and the same build, run
//! to completion, gives the reference build's digests, as a load of the reference archive
//! gives its image ID. Every other kill on average is followed by a simulated reboot (what
//! was not synced is dropped at the next open): the same holds.
//!
//! The seed is printed; `STRATA_TORTURE_SEED=<n>` replays a sequence,
//! `STRATA_TORTURE_ITERATIONS=<n>` changes its length (default 100: about 35 s on a busy
//! two-core machine).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use crate::support::TestEnv;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Three RUN steps writing a few hundred kilobytes each and a COPY of the context: long
/// enough for kills to land inside a RUN, a layer commit and the image commit.
const DOCKERFILE: &str = "FROM base\n\
COPY ctx/ /ctx/\n\
RUN mkdir /out && i=0; while [ $i -lt 40 ]; do echo \"line $i of a RUN\" >> /out/a; i=$((i+1)); done\n\
RUN yes 0123456789abcdef | head -c 400000 > /out/b && cat /ctx/* > /out/c\n\
RUN cp /out/b /out/d && sed s/0/x/g /out/b > /out/e && echo done > /out/f\n\
CMD [\"cat\", \"/out/f\"]\n";

/// What the user sees of an image: its ID, its manifest's digest and its layers' diff IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digests {
    id: String,
    manifest: String,
    layers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Build,
    Load,
    Save,
    BuilderPrune,
    SystemPrune,
}

/// Each kind with its weight: builds most (their kills land in the most places).
const KINDS: [(Kind, usize); 5] = [
    (Kind::Build, 4),
    (Kind::Load, 2),
    (Kind::Save, 2),
    (Kind::BuilderPrune, 1),
    (Kind::SystemPrune, 1),
];

fn pick(rng: &mut fastrand::Rng) -> Kind {
    let total: usize = KINDS.iter().map(|(_, w)| w).sum();
    let mut n = rng.usize(..total);
    for (kind, weight) in KINDS {
        if n < weight {
            return kind;
        }
        n -= weight;
    }
    unreachable!("n < total")
}

struct Torture {
    env: TestEnv,
    ctx: PathBuf,
    archive: PathBuf,
    meta: PathBuf,
}

impl Torture {
    fn new() -> Torture {
        let env = TestEnv::with_base("base");
        let ctx = env.context(
            "project",
            &[
                ("Dockerfile", DOCKERFILE),
                ("ctx/one.txt", "one\n"),
                ("ctx/two.txt", "two\n"),
            ],
        );
        fs_err::write(
            ctx.join("ctx/filler.bin"),
            crate::support::incompressible(200_000),
        )
        .unwrap();
        let archive = env.dir().join("reference.tar");
        let meta = env.dir().join("meta.json");
        Torture {
            env,
            ctx,
            archive,
            meta,
        }
    }

    /// The command of one kind, not yet started (output to /dev/null).
    fn command(&self, kind: Kind, out: &Path) -> Command {
        let mut c = match kind {
            Kind::Build => {
                let mut c = self
                    .env
                    .command(["build", "-q", "--no-cache", "-t", "torture:1"]);
                c.arg(&self.ctx);
                c
            }
            Kind::Load => {
                let mut c = self.env.command(["load", "-i"]);
                c.arg(&self.archive);
                c
            }
            Kind::Save => {
                let mut c = self.env.command(["save", "-o"]);
                c.arg(out).arg("torture:1");
                c
            }
            Kind::BuilderPrune => self.env.command(["builder", "prune", "-a", "-f"]),
            Kind::SystemPrune => self.env.command(["system", "prune", "-f"]),
        };
        c.env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `kind` to completion; returns how long it took.
    fn run_whole(&self, kind: Kind, out: &Path) -> Duration {
        let started = Instant::now();
        let done = self.command(kind, out).output().unwrap();
        assert!(
            done.status.success(),
            "{kind:?} failed: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        started.elapsed()
    }

    /// The build run to completion (cache allowed), and the digests of what it made.
    fn build(&self) -> Digests {
        let out = self
            .env
            .command(["build", "-q", "-t", "torture:1", "--metadata-file"])
            .arg(&self.meta)
            .arg(&self.ctx)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the build after a kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(&self.meta).unwrap()).unwrap();
        let mut digests = self.digests("torture:1");
        digests.manifest = meta["containerimage.digest"].as_str().unwrap().to_owned();
        digests
    }

    /// ID and diff IDs from `inspect` (the manifest digest is left empty).
    fn digests(&self, name: &str) -> Digests {
        let v: serde_json::Value = serde_json::from_str(&self.env.ok(["inspect", name])).unwrap();
        Digests {
            id: v[0]["Id"].as_str().unwrap().to_owned(),
            manifest: String::new(),
            layers: v[0]["RootFS"]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect(),
        }
    }

    /// `load -i archive`: succeeds and names the reference image; returns its ID.
    fn load(&self, archive: &Path) -> String {
        let out = self.env.ok([
            std::ffi::OsStr::new("load"),
            "-i".as_ref(),
            archive.as_os_str(),
        ]);
        assert_eq!(out, "Loaded image: torture:1\n");
        self.digests("torture:1").id
    }
}

/// The inode of this process's PID namespace, as strata names its cgroups (`<ns>-<pid>-<n>`).
fn pid_namespace() -> String {
    let link = fs_err::read_link("/proc/self/ns/pid").unwrap();
    let link = link.to_str().unwrap();
    link.strip_prefix("pid:[")
        .and_then(|l| l.strip_suffix(']'))
        .unwrap()
        .to_owned()
}

/// The cgroups of strata process `pid` left anywhere strata makes them (v2, or each v1
/// hierarchy under this process's own cgroup there).
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{}-{pid}-", pid_namespace());
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup/strata")];
    let own = fs_err::read_to_string("/proc/self/cgroup").unwrap();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        for c in controllers.split(',') {
            parents.push(
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(path.trim_start_matches('/'))
                    .join("strata"),
            );
        }
    }
    let mut found = Vec::new();
    for parent in parents {
        let Ok(entries) = fs_err::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(e.path());
            }
        }
    }
    found
}

/// Processes (pid, command line) in a cgroup of strata process `pid`.
fn processes_of(pid: u32) -> Vec<(String, String)> {
    let needle = format!("/strata/{}-{pid}-", pid_namespace());
    let mut found = Vec::new();
    for e in fs_err::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cgroup) = fs_err::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        if cgroup.contains(&needle) {
            let cmdline = fs_err::read(e.path().join("cmdline")).unwrap_or_default();
            found.push((name, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Mount points under `root` in this mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&root)))
        .map(str::to_owned)
        .collect()
}

#[expect(
    clippy::disallowed_methods,
    reason = "whoever runs the test may replay a seed"
)]
fn knob(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn issue_12_kill_9_at_random_points_leaves_a_sound_store_and_the_same_digests() {
    let seed = knob("STRATA_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let iterations = knob("STRATA_TORTURE_ITERATIONS").unwrap_or(100);
    eprintln!("kill -9 torture: STRATA_TORTURE_SEED={seed}, {iterations} iterations");
    let mut rng = fastrand::Rng::with_seed(seed);
    let t = Torture::new();
    let started = Instant::now();

    // The reference: a whole build, its archive, and how long each command takes here.
    let mut took = BTreeMap::new();
    let first = t.dir_out("first.tar");
    took.insert(Kind::Build, t.run_whole(Kind::Build, &first));
    let reference = t.build();
    took.insert(Kind::Save, t.run_whole(Kind::Save, &t.archive));
    t.env.ok(["rmi", "torture:1"]);
    took.insert(Kind::Load, t.run_whole(Kind::Load, &first));
    assert_eq!(t.load(&t.archive), reference.id);
    took.insert(Kind::BuilderPrune, t.run_whole(Kind::BuilderPrune, &first));
    assert_eq!(t.build(), reference);
    took.insert(Kind::SystemPrune, t.run_whole(Kind::SystemPrune, &first));
    assert_eq!(t.build(), reference);
    eprintln!("measured: {took:?}");

    let mut tally: BTreeMap<Kind, (u32, u32)> = BTreeMap::new();
    for i in 0..iterations {
        let kind = pick(&mut rng);
        let out = t.dir_out(&format!("saved-{i}.tar"));
        if kind == Kind::Load {
            // Something to load: the image gone, its layers with it unless the cache pins them.
            t.env.ok(["rmi", "torture:1"]);
        }
        let budget = took[&kind].as_micros() as u64;
        let delay = Duration::from_micros(rng.u64(0..=budget.max(1)));
        let context = format!("seed {seed}, iteration {i}: {kind:?} killed after {delay:?}");
        let mut child = t.command(kind, &out).spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let entry = tally.entry(kind).or_default();
        entry.0 += 1;
        if status.success() {
            entry.1 += 1; // finished before the kill
        } else if let Some(code) = status.code() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("{context}: exited {code} before the kill: {stderr}");
        }

        // Every other kill, on average, the machine "goes down" too: what was not synced yet
        // counts as lost (issue 15: a build syncs its blobs only before its index write). No
        // image may name what the next open then deletes.
        let context = if rng.bool() {
            t.reboot(i);
            format!("{context}, then a reboot")
        } else {
            context
        };
        let check = t.env.command(["system", "check"]).output().unwrap();
        assert!(
            check.status.success(),
            "{context}: system check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        if kind == Kind::Save && out.exists() {
            assert_eq!(t.load(&out), reference.id, "{context}: the saved archive");
        }
        if kind == Kind::Load {
            assert_eq!(t.load(&t.archive), reference.id, "{context}");
        }
        assert_eq!(t.build(), reference, "{context}");
        // The build's worker removed the dead one's cgroup (killing what is inside).
        assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new(), "{context}");
        assert_eq!(processes_of(pid), Vec::new(), "{context}");
        assert_eq!(
            mounts_under(&t.env.root()),
            Vec::<String>::new(),
            "{context}"
        );
        // Its staging area is gone once a command opened the store after the dead one's
        // sandbox ended (a RUN may write into it for a moment after the kill; the build's
        // worker killed whatever was left of it).
        assert!(
            t.env.ok(["system", "check"]).ends_with(": ok\n"),
            "{context}"
        );
        assert_eq!(
            crate::support::staging_entries(&t.env.root()),
            Vec::<String>::new(),
            "{context}: staging areas left"
        );
        let _ = fs_err::remove_file(&out);
    }
    assert_eq!(t.load(&t.archive), reference.id);
    assert!(t.env.ok(["system", "check"]).ends_with(": ok\n"));
    eprintln!(
        "kill -9 torture: {:?} (kind: (runs, finished before the kill)) in {:?}",
        tally,
        started.elapsed()
    );
}

impl Torture {
    fn dir_out(&self, name: &str) -> PathBuf {
        self.env.dir().join(name)
    }

    /// A machine crash as the store sees it: this boot's `unsettled/` markers become another
    /// boot's, so the next open deletes the blobs and snapshots they name (a real crash could
    /// have torn them).
    fn reboot(&self, n: u64) {
        let boot = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let unsettled = self.env.root().join("unsettled");
        let this_boot = unsettled.join(boot.trim());
        if this_boot.exists() {
            let other = unsettled.join(format!("00000000-dead-beef-0000-{n:012}"));
            fs_err::rename(this_boot, other).unwrap();
        }
    }
}
