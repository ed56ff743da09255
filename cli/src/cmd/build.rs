//! `strata build`: the command line of the build pipeline. Turns the flags into a
//! [`BuildRequest`], runs [`strata_build::build`], renders its events and prints the summary.
//!
//! Everything the libraries must not do happens here, once: resolving `-f`, the context and
//! every output path against the current directory, reading `SOURCE_DATE_EPOCH` and bare
//! `--build-arg K` values from the environment, choosing the store root, catching Ctrl-C,
//! writing `--iidfile` and `--metadata-file`.

use crate::GlobalArgs;
use crate::diag;
use crate::dockerfile::{self, absolute};
use crate::ui::{self, Progress};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use strata_build::{
    BuildError, BuildRequest, CacheTo, Dockerfile, Entitlement, OutputSpec, PushEvent, Resources,
    SecretFlag, SecretSource, SolveError, SshSource, parse_cache_from, parse_ssh_flag,
};
use strata_frontend::Diagnostic;
use strata_graph::{NetworkMode, SourceRange};
use strata_store::Reference;
use tokio_util::sync::CancellationToken;

/// Arguments of `strata build`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Name and tag the image (`name:tag`); may be given several times
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// The Dockerfile (`-` reads standard input) [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "FILE|-")]
    file: Option<String>,
    /// A build argument, `KEY=VALUE` (or `KEY` to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last)
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Add a label to the image
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The platform to build for (only this machine's: there is no emulation)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// How to show progress
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// The network of RUN steps without their own `--network`
    #[arg(long, value_enum, default_value_t = Network::Default)]
    network: Network,
    /// A security option of RUN steps: `no-new-privileges` (setuid binaries gain nothing)
    #[arg(long = "security-opt", value_name = "OPTION")]
    security_opts: Vec<String>,
    /// Most processes alive at once in the build's RUN steps (a fork bomb fails its step)
    /// [default: 8192; none rootless, see docs/rootless.md]
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,
    /// Memory limit of the build's RUN steps, together (`512m`, `2g`)
    #[arg(short = 'm', long, value_name = "BYTES", value_parser = crate::units::parse_size)]
    memory: Option<u64>,
    /// CPU time of the build's RUN steps per CPU period, in microseconds (CFS quota)
    #[arg(long, value_name = "MICROSECONDS")]
    cpu_quota: Option<u64>,
    /// The CPU period of --cpu-quota, in microseconds [default: 100000]
    #[arg(long, value_name = "MICROSECONDS")]
    cpu_period: Option<u64>,
    /// CPU shares of the build's RUN steps, relative weight (1024: normal)
    #[arg(short = 'c', long, value_name = "SHARES")]
    cpu_shares: Option<u64>,
    /// At most this many steps run at once [default: no limit, every ready step runs, as in
    /// BuildKit]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of every base image
    #[arg(long)]
    pull: bool,
    /// Grant an entitlement: `security.insecure` (for `RUN --security=insecure`) or
    /// `network.host`
    #[arg(long, value_name = "ENTITLEMENT")]
    allow: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR` (`id=ID`
    /// alone: the variable ID if set, else the file ID); may be given several times. An ADD
    /// from an http(s) git remote sends `GIT_AUTH_TOKEN.<host[:port]>` (else `GIT_AUTH_TOKEN`)
    /// as a token, or `GIT_AUTH_HEADER[.<host[:port]>]` as the Authorization header, as BuildKit
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` (or `ID`) for $SSH_AUTH_SOCK,
    /// `ID=SOCKET`, or `ID=KEYFILE[,KEYFILE]` (loaded into an ssh-agent of the build's own);
    /// may be given several times
    #[arg(long = "ssh", value_name = "SPEC")]
    ssh: Vec<String>,
    /// Run the steps of these stages, ignoring the build cache
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    no_cache_filter: Vec<String>,
    /// Print the build graph in Graphviz DOT and exit without building
    #[arg(long)]
    print_graph: bool,
    /// Say, for each step that runs, why it missed the cache
    #[arg(long)]
    explain: bool,
    /// Print only the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Where the result goes: `type=image[,name=NAME][,push=true]` (default),
    /// `type=registry[,name=NAME]`, `type=oci|docker|tar,dest=FILE`, `type=local,dest=DIR`;
    /// `-o DIR` is short for `type=local,dest=DIR`
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Push the image to the registry of each of its names (short for `--output type=registry`)
    #[arg(long)]
    push: bool,
    /// Export the build cache: `type=local,dest=DIR` or `type=registry,ref=REF`,
    /// `[,mode=min|max][,compression=zstd|gzip][,cache-mounts=true]`
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Option<String>,
    /// Import a build cache: `type=local,src=DIR` or `type=registry,ref=REF`; may be given
    /// several times
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Write the image digest, config digest and cache statistics to this file as JSON
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// The build context directory (`-`: none, the Dockerfile comes from standard input)
    #[arg(value_name = "CONTEXT|-")]
    context: String,
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Network {
    /// A network namespace of the step's own, with outbound access through NAT.
    Default,
    /// The host's network.
    Host,
    /// Only loopback.
    None,
}

fn parse_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// The `--secret` flags: their sources, each variable read here, once.
fn secrets(flags: &[String]) -> anyhow::Result<BTreeMap<String, SecretSource>> {
    use std::os::unix::ffi::OsStringExt as _;
    #[expect(
        clippy::disallowed_methods,
        reason = "a --secret env=VAR is read from the environment, as in BuildKit"
    )]
    let var = |name: &str| std::env::var_os(name).map(std::ffi::OsString::into_vec);
    let mut secrets = BTreeMap::new();
    for spec in flags {
        let flag = SecretFlag::parse(spec)?;
        let source = match (flag.src, flag.env) {
            (Some(src), _) => SecretSource::File(absolute(src)),
            (None, Some(env)) => SecretSource::Env {
                value: var(&env),
                var: env,
            },
            (None, None) => match var(&flag.id) {
                Some(value) => SecretSource::Env {
                    var: flag.id.clone(),
                    value: Some(value),
                },
                None => SecretSource::File(absolute(PathBuf::from(&flag.id))),
            },
        };
        secrets.insert(flag.id, source);
    }
    Ok(secrets)
}

/// The `--ssh` flags; an id without paths is the agent of `$SSH_AUTH_SOCK`, read here.
fn ssh(flags: &[String]) -> anyhow::Result<BTreeMap<String, SshSource>> {
    #[expect(
        clippy::disallowed_methods,
        reason = "--ssh default is the agent of SSH_AUTH_SOCK, as in BuildKit"
    )]
    let auth_sock = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    let mut agents = BTreeMap::new();
    for spec in flags {
        let (id, mut paths) = parse_ssh_flag(spec)?;
        if paths.is_empty() {
            paths.extend(auth_sock.clone().map(PathBuf::from));
        }
        let paths = paths.into_iter().map(absolute).collect();
        agents.insert(id, SshSource { paths });
    }
    Ok(agents)
}

fn request(
    args: &Args,
    global: &GlobalArgs,
    dockerfile: Dockerfile,
    context: Option<PathBuf>,
) -> anyhow::Result<BuildRequest> {
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(Reference::parse_tag(t).with_context(|| format!("invalid tag {t:?}"))?);
    }
    let mut outputs = Vec::new();
    for o in &args.outputs {
        outputs.push(OutputSpec::parse(o)?.map_path(absolute));
    }
    if args.push {
        outputs.push(OutputSpec::registry());
    }
    let cache_to = match args.cache_to.as_deref() {
        Some(spec) => {
            let mut to = CacheTo::parse(spec)?;
            to.dest = to.dest.map_path(absolute);
            Some(to)
        }
        None => None,
    };
    let cache_from = args
        .cache_from
        .iter()
        .map(|spec| Ok(parse_cache_from(spec)?.map_path(absolute)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    #[expect(
        clippy::disallowed_methods,
        reason = "SOURCE_DATE_EPOCH comes from the environment, as in BuildKit"
    )]
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let mut request = BuildRequest::new(global.store_root(), dockerfile, context);
    request.build_args = dockerfile::build_args(&args.build_args);
    request.target = args.target.clone();
    request.labels = parse_labels(&args.labels);
    request.platform = args.platform.clone();
    request.network = match args.network {
        Network::Default => NetworkMode::Default,
        Network::Host => NetworkMode::Host,
        Network::None => NetworkMode::None,
    };
    request.tags = tags;
    request.outputs = outputs;
    request.cache_from = cache_from;
    request.cache_to = cache_to;
    request.no_cache = args.no_cache;
    request.pull = args.pull;
    request.secrets = secrets(&args.secrets)?;
    request.ssh = ssh(&args.ssh)?;
    request.no_cache_filter = args.no_cache_filter.clone();
    request.allow = args
        .allow
        .iter()
        .map(|a| Entitlement::parse(a).context("invalid --allow"))
        .collect::<anyhow::Result<_>>()?;
    for opt in &args.security_opts {
        match opt.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                request.no_new_privileges = true;
            }
            "no-new-privileges=false" | "no-new-privileges:false" => {
                request.no_new_privileges = false;
            }
            other => bail!("invalid --security-opt {other:?}: only no-new-privileges is supported"),
        }
    }
    request.resources = resources(args)?;
    request.jobs = args.jobs;
    request.download_timeout = crate::registry::download_timeout()?;
    request.explain = args.explain;
    request.source_date_epoch = source_date_epoch;
    request.stdout = Some(Box::new(std::io::stdout()));
    request.registry = Some(std::sync::Arc::new(crate::registry::client()?));
    if !args.quiet {
        request.on_push = Some(Box::new(print_push_event));
    }
    Ok(request)
}

/// The build's cgroup limits. Rootless strata has no cgroup it may write (cgroup v1 has no
/// delegation to users): the default pids limit is then skipped, and a limit asked for is an
/// error rather than a limit silently not applied (docs/rootless.md).
fn resources(args: &Args) -> anyhow::Result<Option<Resources>> {
    if crate::rootless::active() {
        let asked = [
            ("--pids-limit", args.pids_limit.is_some()),
            ("--memory", args.memory.is_some()),
            ("--cpu-quota", args.cpu_quota.is_some()),
            ("--cpu-period", args.cpu_period.is_some()),
            ("--cpu-shares", args.cpu_shares.is_some()),
        ];
        if let Some((flag, _)) = asked.iter().find(|(_, given)| *given) {
            bail!(
                "{flag} needs a cgroup, which rootless strata cannot make: run the build as \
                 root to limit its resources (see docs/rootless.md)"
            );
        }
        return Ok(None);
    }
    Ok(Some(Resources {
        pids_limit: args.pids_limit.unwrap_or(strata_build::DEFAULT_PIDS_LIMIT),
        memory: args.memory,
        cpu_quota: args.cpu_quota,
        cpu_period: args.cpu_period,
        cpu_shares: args.cpu_shares,
    }))
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let context = if args.context == "-" {
        None
    } else {
        let dir = std::path::absolute(&args.context)
            .and_then(fs_err::canonicalize)
            .with_context(|| format!("build context {} not found", args.context))?;
        if !dir.is_dir() {
            bail!("build context {} is not a directory", dir.display());
        }
        Some(dir)
    };
    let dockerfile = dockerfile::read(args.file.as_deref().map(Path::new), context.as_deref())?;
    let shown = Dockerfile {
        name: dockerfile.name.clone(),
        bytes: dockerfile.bytes.clone(),
        path: None,
    };
    let mut request = request(&args, global, dockerfile, context)?;

    if args.print_graph {
        let lowered = match strata_build::lower(&request) {
            Ok(lowered) => lowered,
            Err(err) => return report(&shown, err),
        };
        if !args.quiet {
            for d in lowered.warnings.iter() {
                eprint_diag(&shown, d);
            }
        }
        std::io::stdout()
            .lock()
            .write_all(lowered.graph.to_dot().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }

    let progress = if args.quiet {
        Progress::Plain
    } else {
        args.progress
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // The Dockerfile's warnings, printed after the build as docker does.
    let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (quiet, warned) = (args.quiet, std::sync::Arc::clone(&found));
    let build = async move {
        let cancel = CancellationToken::new();
        request.cancel = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => {}
            }
            cancel.cancel();
        });
        let render = if quiet {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            request.progress = Some(tx);
            let warn = move |d: &Diagnostic| {
                warned
                    .lock()
                    .expect("the warnings list is never poisoned")
                    .push(d.clone());
            };
            Some(tokio::spawn(ui::drive(rx, ui::renderer(progress), warn)))
        };
        let result = strata_build::build(request).await;
        if let Some(render) = render {
            let _ = render.await;
        }
        result
    };
    // The build runs as a task of the runtime, not as `block_on`'s future on this thread:
    // the tasks it wakes (its steps' results, the renderer) are then woken on a worker, most
    // often the same one, instead of each wake crossing to this thread and back. A no-op of
    // 40 cached steps: context switches 353 -> 204, CPU 12.4 -> 10.9 ms (issue 15). A panic
    // in it is this thread's again.
    let built = match runtime.block_on(runtime.spawn(build)) {
        Ok(built) => built,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => return Err(e).context("the build task ended before the build"),
        },
    };
    let warnings = std::mem::take(&mut *found.lock().expect("the warnings list is never poisoned"));
    let built = match built {
        Ok(built) => built,
        Err(err) => {
            eprint_warning_summary(&warnings);
            return report(&shown, err);
        }
    };

    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&built.metadata()).expect("metadata is plain JSON");
        fs_err::write(path, text + "\n").context("failed to write --metadata-file")?;
    }
    let image_id = built.image.as_ref().map(|image| &image.id);
    if let (Some(path), Some(id)) = (&args.iidfile, image_id) {
        fs_err::write(path, id.to_string()).context("failed to write --iidfile")?;
    }
    let gc = auto_gc(global, built.executed > 0);
    if args.quiet {
        if let Some(id) = image_id {
            writeln!(std::io::stdout().lock(), "{id}")?;
        }
    } else {
        // Written at once: standard error is unbuffered, `writeln!` on it is a write a piece.
        let mut err = String::new();
        writeln!(
            err,
            "cache: {} steps cached, {} run; {:.1}s saved; built in {:.1}s",
            built.cached,
            built.executed,
            built.time_saved.as_secs_f64(),
            built.elapsed.as_secs_f64()
        )?;
        if let Some(id) = image_id {
            writeln!(err, "writing image {id}")?;
        }
        for name in &built.names {
            writeln!(err, "naming to {name}")?;
        }
        match gc {
            Ok(Some(report)) => writeln!(
                err,
                "cache gc: removed {} build cache objects, reclaimed {}",
                report.removed.len(),
                crate::cmd::images::human_size(report.reclaimed)
            )?,
            Ok(None) => {}
            Err(e) => writeln!(err, "warning: automatic build cache gc failed: {e:#}")?,
        }
        std::io::stderr().lock().write_all(err.as_bytes())?;
        eprint_warning_summary(&warnings);
    }
    // Everything the build started has ended ([`strata_build::build`] returns only then), and
    // what is written after it (the files above, the GC) was written on this thread. What is
    // left in the runtime is idle threads and the Ctrl-C task: dropping it would wake and join
    // each thread (0.02–0.15 ms of a no-op at load 3, its p90 0.4–0.5 ms); they end with the
    // process instead.
    runtime.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

/// The build cache GC after a successful build (the config's `builder.gc`, docs/cache.md):
/// its failure is a warning, never the build's. `ran_steps`: whether the build ran a step
/// (one that ran none may skip the check, see `gc_after_build`).
fn auto_gc(
    global: &GlobalArgs,
    ran_steps: bool,
) -> anyhow::Result<Option<strata_build::CachePruneReport>> {
    let root = global.store_root();
    let policy = crate::config::Config::load()?.gc_policy(&root)?;
    Ok(strata_build::gc_after_build(&root, &policy, ran_steps)?)
}

/// docker's summary of the build checks' findings after a build: a count, then one line
/// per finding, `- Rule: message (line N)`.
fn eprint_warning_summary(warnings: &[Diagnostic]) {
    if let Some(text) = warning_summary(warnings) {
        let _ = write!(std::io::stderr().lock(), "{text}");
    }
}

fn warning_summary(warnings: &[Diagnostic]) -> Option<String> {
    if warnings.is_empty() {
        return None;
    }
    let n = warnings.len();
    let mut text = format!(
        "\n {n} warning{} found (use strata check for details):\n",
        if n == 1 { "" } else { "s" }
    );
    for d in warnings {
        let rule = d.rule.map_or("", |r| r.name);
        text.push_str(&format!(" - {rule}: {} (line {})\n", d.text(), d.loc.line));
    }
    Some(text)
}

/// `--push`'s progress, on standard error (standard output may carry `-o -`), in the lines
/// `strata push` prints.
fn print_push_event(event: PushEvent) {
    let mut err = std::io::stderr().lock();
    let _ = match event {
        PushEvent::Started(reference) => writeln!(
            err,
            "The push refers to repository [{}]",
            reference.familiar_name()
        ),
        PushEvent::Layer(event) => match crate::registry::event_line(&event) {
            Some(line) => writeln!(err, "{line}"),
            None => Ok(()),
        },
        PushEvent::Pushed(_, pushed) => writeln!(
            err,
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        ),
    };
}

/// A failed build: the Dockerfile's errors each at its line, a failed step with its place,
/// anything else as an error chain.
fn report(dockerfile: &Dockerfile, err: BuildError) -> anyhow::Result<ExitCode> {
    match err {
        BuildError::Dockerfile(diags) => {
            for d in diags.iter() {
                eprint_diag(dockerfile, d);
            }
            Ok(ExitCode::from(1))
        }
        BuildError::Solve(err) => Err(solve_failure(dockerfile, err)),
        // The store's error itself (BuildError::Store is transparent), so that its hint is
        // found (a read-only store, another user's).
        BuildError::Store(err) => Err(err.into()),
        err => Err(err.into()),
    }
}

fn eprint_diag(dockerfile: &Dockerfile, d: &Diagnostic) {
    let text = diag::render(&dockerfile.name, &dockerfile.bytes, d);
    let _ = write!(std::io::stderr().lock(), "{text}");
}

/// A failed solve as an error for [`crate::report`]: the step's label on top, the worker's
/// chain below, the Dockerfile line of the step.
fn solve_failure(dockerfile: &Dockerfile, err: SolveError) -> anyhow::Error {
    let step = err.to_string();
    match err.loc() {
        Some(SourceRange { start, .. }) => {
            let inner: Box<dyn std::error::Error + Send + Sync> = match err {
                SolveError::Command { source, .. } | SolveError::Step { source, .. } => {
                    Box::new(source)
                }
                other => Box::new(other),
            };
            anyhow::Error::new(crate::report::AtDockerfile {
                file: dockerfile.name.clone(),
                source: dockerfile.bytes.clone(),
                loc: start,
                error: inner,
            })
            .context(step)
        }
        None => anyhow::Error::new(err),
    }
}
