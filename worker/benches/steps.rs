//! Per-step cost of the worker alone: `RUN true` and a small COPY, each step on its own new
//! layer over all the previous ones, including the layer diff of the step's upper dir.
//! Run by `bench/worker/run.sh`, which times BuildKit and `docker run` beside it. This binary
//! is its own `__sandbox` helper, like the strata binary.
#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark binary: it prints its figures and stops at the first failure"
)]

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_graph::{ExecOp, FileAction, FileOp, NetworkMode, SecurityMode};
use strata_worker::{
    DiffOptions, FileRequest, FileSource, Resources, RunRequest, Worker, WorkerConfig, write_layer,
};

fn base_layer(dir: &Path) {
    use std::os::unix::fs::symlink;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static");
    fs_err::create_dir_all(dir.join("bin")).unwrap();
    fs_err::copy(busybox, dir.join("bin/busybox")).unwrap();
    for a in ["sh", "true", "cat", "ls", "echo"] {
        symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    fs_err::create_dir_all(dir.join("etc")).unwrap();
    fs_err::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs_err::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    fs_err::create_dir_all(dir.join("tmp")).unwrap();
}

struct Hasher(sha2::Sha256);

impl std::io::Write for Hasher {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn diff(upper: &Path) {
    let mut h = Hasher(sha2::Sha256::new());
    write_layer(upper, &mut h, &DiffOptions::default()).unwrap();
}

fn summary(name: &str, samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let total: f64 = ms.iter().sum();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = ms[ms.len() / 2];
    let p90 = ms[(ms.len() * 9 / 10).min(ms.len() - 1)];
    format!(
        "{{\"measure\":\"{name}\",\"steps\":{},\"total_ms\":{total:.1},\"mean_ms\":{:.2},\"median_ms\":{median:.2},\"p90_ms\":{p90:.2},\"min_ms\":{:.2}}}",
        ms.len(),
        total / ms.len() as f64,
        ms[0]
    )
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("__sandbox") {
        return strata_worker::sandbox_main();
    }
    // `cargo bench` passes --bench; a number sets the step count.
    let steps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let tmp = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // As a build runs them: in a cgroup of the build's own, with the default limits.
    let mut config = WorkerConfig::new(dir.join("state"), std::env::current_exe().unwrap());
    config.resources = Some(Resources::default());
    let worker = Worker::new(config).unwrap();
    let base = dir.join("base");
    base_layer(&base);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // `--network=none` (the default here), `default` or `host`; `--host-net` is the old
    // spelling of `default`.
    let network = match std::env::args().find_map(|a| {
        a.strip_prefix("--network=")
            .map(str::to_owned)
            .or((a == "--host-net").then(|| "default".to_owned()))
    }) {
        Some(n) if n == "default" => NetworkMode::Default,
        Some(n) if n == "host" => NetworkMode::Host,
        _ => NetworkMode::None,
    };
    let net_name = format!("{network:?}").to_lowercase();

    let mut lowers: Vec<PathBuf> = vec![base.clone()];
    let mut run_samples = Vec::new();
    for i in 0..steps {
        let upper = dir.join(format!("run-{i}"));
        fs_err::create_dir(&upper).unwrap();
        let exec = ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network,
            security: SecurityMode::Sandbox,
            mounts: vec![],
        };
        let req = RunRequest {
            exec,
            lowers: lowers.clone(),
            upper: upper.clone(),
            mounts: vec![],
            hostname: None,
            binds: Vec::new(),
            read_only_root: false,
            container_network: false,
        };
        let t0 = Instant::now();
        rt.block_on(worker.run(req, |_, _| {}, tokio_util::sync::CancellationToken::new()))
            .unwrap();
        diff(&upper);
        run_samples.push(t0.elapsed());
        lowers.insert(0, upper);
    }

    let ctx = dir.join("ctx");
    fs_err::create_dir(&ctx).unwrap();
    let mut lowers: Vec<PathBuf> = vec![base.clone()];
    let mut copy_samples = Vec::new();
    for i in 0..steps {
        fs_err::write(ctx.join(format!("f{i}")), vec![b'x'; 1024]).unwrap();
        let upper = dir.join(format!("copy-{i}"));
        fs_err::create_dir(&upper).unwrap();
        let op = FileOp {
            actions: vec![FileAction::Copy {
                from: 1,
                sources: vec![format!("f{i}")],
                dest: format!("/app/f{i}"),
                dest_is_dir: false,
                chown: None,
                chmod: None,
                link: false,
                parents: false,
                exclude: vec![],
                unpack: false,
            }],
        };
        let inputs = vec![
            None,
            Some(FileSource::Context {
                dir: ctx.clone(),
                exclude: None,
            }),
        ];
        let t0 = Instant::now();
        worker
            .apply_file_op(FileRequest {
                op,
                lowers: lowers.clone(),
                upper: upper.clone(),
                inputs,
                git_auth: Default::default(),
                previous: None,
            })
            .unwrap();
        diff(&upper);
        copy_samples.push(t0.elapsed());
        lowers.insert(0, upper);
    }
    println!(
        "{}",
        summary(
            &format!("strata-worker RUN true --network={net_name}"),
            &run_samples
        )
    );
    println!("{}", summary("strata-worker COPY 1KiB", &copy_samples));
    std::process::ExitCode::SUCCESS
}
