//! `strata build`: read the Dockerfile and the context, lower, solve with the local backend,
//! commit the image into the store and name it.
//!
//! Everything the libraries must not do happens here, once: resolving `-f` and the context
//! against the current directory, reading `.dockerignore`, `SOURCE_DATE_EPOCH` and bare
//! `--build-arg K` values from the environment, choosing the store root, catching Ctrl-C.

mod cache_spec;
mod output;

use crate::GlobalArgs;
use crate::diag;
use crate::ui::{self, Progress};
use anyhow::{Context as _, bail};
use cache_spec::{CacheMode, CacheTo};
use output::{Dest, OutputSpec};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use strata_cache::{CacheDb, ContextFilter};
use strata_frontend::{
    BuildOptions, Diagnostic, DirVisit, IgnoreMatcher, ImageResolver, Platform, ResolvedImage,
    dockerfile_ignore_name, pick_ignore_file,
};
use strata_graph::{ImageConfig, NetworkMode, SourceRange};
use strata_solver::{
    ContextSource, LocalBackend, LocalOptions, NoCache, Output, SolveError, SolveOptions,
};
use strata_store::{Reference, Store};
use strata_worker::{Worker, WorkerConfig};
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
    /// At most this many steps run at once [default: no limit, every ready step runs, as in
    /// BuildKit]
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    no_cache: bool,
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
    /// Where the result goes: `type=image` (default), `type=oci|docker|tar,dest=FILE`,
    /// `type=local,dest=DIR`; `-o DIR` is short for `type=local,dest=DIR`
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Export the build cache: `type=local,dest=DIR[,mode=min|max][,compression=zstd|gzip]`
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Option<String>,
    /// Import a build cache: `type=local,src=DIR`; may be given several times
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
    /// The host's network (as `host`).
    Default,
    /// The host's network.
    Host,
    /// Only loopback.
    None,
}

/// Base images come from the store.
struct StoreResolver<'a> {
    store: &'a Store,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = self.store.image(reference).map_err(|e| {
            format!("{e} (strata does not pull yet: `strata load` or `strata import` it first)")
        })?;
        let config: ImageConfig = match &image.config.config {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("image {reference} has an unreadable config: {e}"))?,
            None => ImageConfig::default(),
        };
        let image_platform = image.config.platform();
        if !image.config.architecture.is_empty() && image_platform.arch != platform.arch {
            return Err(format!(
                "image {reference} is for {}, not {}",
                image_platform.format(),
                platform.format()
            ));
        }
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: image.id.to_string(),
            platform: image_platform,
            config,
        })
    }
}

/// `.dockerignore` as the context walker and the COPY source filter see it.
struct IgnoreFilter(IgnoreMatcher);

impl ContextFilter for IgnoreFilter {
    fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
        self.0.is_excluded(rel)
    }

    fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        self.0.dir_visit(rel_dir, true) == DirVisit::WalkExcluded
    }
}

struct Dockerfile {
    /// As the user named it, for messages.
    name: String,
    bytes: Vec<u8>,
    /// Where it is on disk (`None` for standard input).
    path: Option<PathBuf>,
}

fn read_dockerfile(args: &Args, context: Option<&Path>) -> anyhow::Result<Dockerfile> {
    let file = match (&args.file, context) {
        (Some(f), _) => f.clone(),
        (None, Some(ctx)) => ctx.join("Dockerfile").display().to_string(),
        (None, None) => "-".to_owned(),
    };
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("failed to read the Dockerfile from standard input")?;
        return Ok(Dockerfile {
            name: "Dockerfile".into(),
            bytes,
            path: None,
        });
    }
    let path = PathBuf::from(&file);
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.file.is_none() => {
            // docker accepts a lower-case `dockerfile` when `Dockerfile` is missing.
            let lower = path.with_file_name("dockerfile");
            match fs_err::read(&lower) {
                Ok(b) => b,
                Err(_) => bail!(
                    "failed to read the Dockerfile: {} does not exist (give one with -f)",
                    path.display()
                ),
            }
        }
        Err(e) => return Err(e).context("failed to read the Dockerfile"),
    };
    let name = if args.file.is_some() {
        file
    } else {
        "Dockerfile".to_owned()
    };
    Ok(Dockerfile {
        name,
        bytes,
        path: Some(path),
    })
}

/// `.dockerignore`: `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's.
fn read_ignore(dockerfile: &Dockerfile, context: &Path) -> anyhow::Result<IgnoreMatcher> {
    let beside = dockerfile.path.as_ref().and_then(|p| {
        let name = dockerfile_ignore_name(&p.display().to_string());
        fs_err::read(p.with_file_name(name)).ok()
    });
    let at_root = fs_err::read(context.join(".dockerignore")).ok();
    match pick_ignore_file(beside.as_deref(), at_root.as_deref()) {
        Some((_, bytes)) => IgnoreMatcher::parse(bytes).context("invalid .dockerignore"),
        None => IgnoreMatcher::parse(b"").context("invalid .dockerignore"),
    }
}

/// `--build-arg K=V`, and `--build-arg K` taken from the environment (skipped when unset).
pub(crate) fn build_args(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None =>
            {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "docker reads a bare --build-arg from the environment"
                )]
                if let Some(v) = std::env::var_os(arg) {
                    out.insert(arg.clone(), v.to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Ok((l.clone(), String::new())),
        })
        .collect()
}

fn source_date_epoch(build_args: &BTreeMap<String, String>) -> anyhow::Result<Option<i64>> {
    #[expect(
        clippy::disallowed_methods,
        reason = "SOURCE_DATE_EPOCH comes from the environment, as in BuildKit"
    )]
    let env = std::env::var("SOURCE_DATE_EPOCH").ok();
    let Some(value) = build_args.get("SOURCE_DATE_EPOCH").cloned().or(env) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let secs = value
        .parse::<i64>()
        .ok()
        .filter(|s| jiff::Timestamp::from_second(*s).is_ok())
        .with_context(|| format!("invalid SOURCE_DATE_EPOCH {value:?}: expected seconds"))?;
    Ok(Some(secs))
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
    let dockerfile = read_dockerfile(&args, context.as_deref())?;
    let host = Platform::host();
    let target_platform = match &args.platform {
        Some(p) => Platform::parse(p, &host)?,
        None => host.clone(),
    };
    if target_platform.os != host.os || target_platform.arch != host.arch {
        bail!(
            "cannot build for {}: strata builds only for this machine's platform, {} \
             (there is no emulation)",
            target_platform.format(),
            host.format()
        );
    }
    let build_args = build_args(&args.build_args);
    let epoch = source_date_epoch(&build_args)?;
    let mut outputs = args
        .outputs
        .iter()
        .map(|o| OutputSpec::parse(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if outputs.is_empty() {
        outputs.push(OutputSpec::Image);
    }
    let cache_to = args.cache_to.as_deref().map(CacheTo::parse).transpose()?;
    let mut imported = Vec::new();
    for spec in &args.cache_from {
        let dir = cache_spec::parse_cache_from(spec)?;
        imported.push(
            strata_cache::ImportedCache::open(&dir)
                .with_context(|| format!("failed to import the cache in {}", dir.display()))?,
        );
    }
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(Reference::parse_tag(t).with_context(|| format!("invalid tag {t:?}"))?);
    }

    let df = match strata_frontend::parse(&dockerfile.bytes) {
        Ok(df) => df,
        Err(err) => {
            let d = Diagnostic::error(err.loc, err.kind.to_string());
            eprint_diag(&dockerfile, &d);
            return Ok(ExitCode::from(1));
        }
    };
    let store = Store::open(global.store_root())?;
    let opts = BuildOptions {
        build_args,
        target: args.target.clone(),
        labels: parse_labels(&args.labels)?,
        target_platform: target_platform.clone(),
        build_platform: host,
        network: match args.network {
            Network::Default => NetworkMode::Default,
            Network::Host => NetworkMode::Host,
            Network::None => NetworkMode::None,
        },
        all_stages: false,
    };
    let lowered = match strata_frontend::lower(&df, &opts, &StoreResolver { store: &store }) {
        Ok(l) => l,
        Err(diags) => {
            for d in diags.iter() {
                eprint_diag(&dockerfile, d);
            }
            return Ok(ExitCode::from(1));
        }
    };
    if !args.quiet {
        for d in lowered.warnings.iter() {
            eprint_diag(&dockerfile, d);
        }
    }
    let graph = lowered.graph;
    if args.print_graph {
        std::io::stdout()
            .lock()
            .write_all(graph.to_dot().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(target) = graph.targets.first().cloned() else {
        bail!("the Dockerfile has no stage to build");
    };

    let no_cache = if args.no_cache {
        NoCache::All
    } else if args.no_cache_filter.is_empty() {
        NoCache::Off
    } else {
        let mut nodes = HashSet::new();
        for stage in &args.no_cache_filter {
            match graph.stage_nodes.get(&stage.to_lowercase()) {
                // The stage's own steps: its base image node is shared with other stages.
                Some(ids) => nodes.extend(
                    ids.iter()
                        .copied()
                        .filter(|&id| graph.node(id).op.makes_layer()),
                ),
                None => bail!("--no-cache-filter: no stage named {stage:?} is built"),
            }
        }
        NoCache::Nodes(nodes)
    };

    let context_source = match &context {
        Some(dir) => Some(ContextSource {
            dir: dir.clone(),
            filter: Arc::new(IgnoreFilter(read_ignore(&dockerfile, dir)?)),
        }),
        None => None,
    };
    let root = store.root().to_path_buf();
    let cache = Arc::new(CacheDb::open(&root)?);
    // The build's identity for `--explain`: stable across machines and checkout paths (the
    // context directory's name and the Dockerfile's path inside it), not absolute paths.
    let build_id = {
        let ctx_name = context
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let df = match (&dockerfile.path, &context) {
            (Some(p), Some(ctx)) => {
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                match abs.strip_prefix(ctx) {
                    Ok(rel) => rel.display().to_string(),
                    Err(_) => abs
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                }
            }
            _ => "Dockerfile".to_owned(),
        };
        format!("{ctx_name}\0{df}")
    };
    let mut worker_config = WorkerConfig::new(root.join("worker"), "/proc/self/exe");
    // As in Docker: a RUN may gain privileges (sudo, setuid helpers).
    worker_config.no_new_privs = false;
    let worker = Worker::new(worker_config)?;
    let backend = Arc::new(LocalBackend::new(
        store.clone(),
        cache.clone(),
        worker,
        context_source,
        LocalOptions {
            source_date_epoch: epoch,
            proxy_env: graph.proxy_env.clone(),
            imported,
            build_id,
            ..LocalOptions::default()
        },
    )?);
    // No default cap, as BuildKit: RUN steps mostly wait (on processes, sleeps, the network),
    // and sharing the CPU among busy ones is the kernel's job. Capped at the CPU count, four
    // independent `sleep 1` stages took 2.74 s instead of 2.14 s on 2 CPUs
    // (bench/build/README.md).
    let jobs = args.jobs.unwrap_or(usize::MAX);
    let progress = if args.quiet {
        Progress::Plain
    } else {
        args.progress
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let graph = Arc::new(graph);
    let started = std::time::Instant::now();
    let solved = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => {}
            }
            on_signal.cancel();
        });
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let render = if args.quiet {
            None
        } else {
            Some(tokio::spawn(ui::drive(rx, ui::renderer(progress))))
        };
        let result = strata_solver::solve(
            backend.clone(),
            graph.clone(),
            &[target.node],
            SolveOptions {
                jobs,
                no_cache,
                explain: args.explain,
            },
            tx,
            cancel,
        )
        .await;
        if let Some(render) = render {
            let _ = render.await;
        }
        result
    });
    let solved = match solved {
        Ok(s) => s,
        Err(err) => {
            report_solve_error(&dockerfile, &err);
            return Ok(ExitCode::from(1));
        }
    };

    for output in solved.outputs.values() {
        if let Output::Context(index) = output {
            backend.save_context_cache(index)?;
        }
    }
    let fs = match solved.outputs.get(&target.node) {
        Some(Output::Fs(fs)) => fs.clone(),
        _ => bail!("internal error: the target stage produced no filesystem"),
    };
    let saved = backend.time_saved();
    let summary = format!(
        "cache: {} steps cached, {} run; {:.1}s saved; built in {:.1}s",
        solved.cached,
        solved.executed,
        saved.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let needs_image = !tags.is_empty()
        || outputs.iter().any(|o| {
            matches!(
                o,
                OutputSpec::Image | OutputSpec::Oci(_) | OutputSpec::Docker(_)
            )
        });
    let mut image_id = None;
    let mut names: Vec<String> = Vec::new();
    if let Some(to) = &cache_to {
        export_cache(&backend, &store, &cache, &graph, &target, &solved, to)
            .with_context(|| format!("failed to export the cache to {}", to.dest.display()))?;
    }
    if needs_image {
        backend.ensure_layers(&fs)?;
        let image =
            strata_solver::new_image(&store, &graph, &target, &fs, &target_platform, epoch, tags)
                .context("failed to assemble the image")?;
        names = image.tags.iter().map(ToString::to_string).collect();
        let id = store
            .commit_image(image)
            .context("failed to store the image")?;
        image_id = Some(id);
    }
    for out in &outputs {
        match out {
            OutputSpec::Image => {}
            OutputSpec::Oci(dest) | OutputSpec::Docker(dest) => {
                let id = image_id
                    .as_ref()
                    .expect("an image was committed for this output");
                let refs: Vec<&str> = if names.is_empty() {
                    vec![id.as_str()]
                } else {
                    names.iter().map(String::as_str).collect()
                };
                write_dest(dest, |w| Ok(store.save(&refs, w)?))
                    .context("failed to write the image archive")?;
            }
            OutputSpec::Tar(dest) => {
                write_dest(dest, |w| Ok(backend.export_rootfs(&fs, w)?))
                    .context("failed to write the filesystem tar")?;
            }
            OutputSpec::Local(dir) => export_local(&backend, &fs, dir)
                .with_context(|| format!("failed to write the filesystem to {}", dir.display()))?,
        }
    }
    if let Some(path) = &args.metadata_file {
        let mut meta = serde_json::json!({
            "strata.cache": {
                "cached": solved.cached,
                "executed": solved.executed,
                "seconds": started.elapsed().as_secs_f64(),
                "seconds_saved": saved.as_secs_f64(),
            }
        });
        if let Some(id) = &image_id {
            let image = store.image(id.as_str())?;
            meta["containerimage.digest"] = image.manifest_digest.to_string().into();
            meta["containerimage.config.digest"] = id.to_string().into();
            if !names.is_empty() {
                meta["image.name"] = names.join(",").into();
            }
        }
        let text = serde_json::to_string_pretty(&meta).expect("metadata is plain JSON");
        fs_err::write(path, text + "\n").context("failed to write --metadata-file")?;
    }
    drop(backend);
    if let (Some(path), Some(id)) = (&args.iidfile, &image_id) {
        fs_err::write(path, id.to_string()).context("failed to write --iidfile")?;
    }
    if args.quiet {
        if let Some(id) = &image_id {
            writeln!(std::io::stdout().lock(), "{id}")?;
        }
    } else {
        let mut err = std::io::stderr().lock();
        writeln!(err, "{summary}")?;
        if let Some(id) = &image_id {
            writeln!(err, "writing image {id}")?;
        }
        for name in names {
            writeln!(err, "naming to {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--cache-to`: the records of the final image's steps (`min`) or of every step (`max`).
fn export_cache(
    backend: &LocalBackend,
    store: &Store,
    db: &CacheDb,
    graph: &strata_graph::Graph,
    target: &strata_graph::Target,
    solved: &strata_solver::Solved<Output>,
    to: &CacheTo,
) -> anyhow::Result<()> {
    let nodes: Vec<strata_graph::NodeId> = match to.mode {
        CacheMode::Min => {
            let mut chain = Vec::new();
            let mut id = Some(target.node);
            while let Some(n) = id {
                chain.push(n);
                id = graph.node(n).inputs.first().copied();
            }
            chain
        }
        CacheMode::Max => solved.keys.keys().copied().collect(),
    };
    let mut records = Vec::new();
    for node in nodes {
        if !graph.node(node).op.makes_layer() {
            continue;
        }
        let (Some(key), Some(Output::Fs(fs))) = (solved.keys.get(&node), solved.outputs.get(&node))
        else {
            continue;
        };
        if let Some(record) = backend.record_for(key)? {
            backend.ensure_layers(fs)?;
            records.push((*key, record));
        }
    }
    records.sort_by_key(|(k, _)| *k);
    strata_cache::export(
        &to.dest,
        store,
        db,
        &records,
        &strata_cache::ExportOptions {
            compression: to.compression,
        },
    )?;
    Ok(())
}

/// Writes to `dest`: a file replaced atomically (temp file beside it, fsync, rename), or stdout.
fn write_dest(
    dest: &Dest,
    write: impl FnOnce(&mut (dyn std::io::Write + Send)) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Dest::Stdout => {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            write(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Dest::File(path) => {
            let path = std::path::absolute(path)?;
            let dir = path.parent().unwrap_or(Path::new("/"));
            let mut tmp = strata_store::durable::temp_file_in(dir)?;
            {
                let mut w = std::io::BufWriter::new(tmp.as_file_mut());
                write(&mut w)?;
                w.flush()
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
            strata_store::durable::persist(tmp, &path)?;
            Ok(())
        }
    }
}

/// `type=local`: the final filesystem unpacked into `dir` (created if missing), owners and
/// modes kept, streamed through a pipe from the exporter.
fn export_local(backend: &LocalBackend, fs: &strata_solver::Fs, dir: &Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir)?;
    let (reader, writer) = std::io::pipe()?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let w = std::io::BufWriter::new(writer);
            backend.export_rootfs(fs, w)
        });
        let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let unpacked = archive.unpack(dir);
        drop(archive);
        let produced = producer
            .join()
            .map_err(|_| anyhow::anyhow!("the filesystem exporter panicked"))?;
        produced?;
        unpacked?;
        Ok(())
    })
}

fn eprint_diag(dockerfile: &Dockerfile, d: &Diagnostic) {
    let text = diag::render(&dockerfile.name, &dockerfile.bytes, d);
    let _ = write!(std::io::stderr().lock(), "{text}");
}

/// `error: [build 2/3] RUN exit 3 failed`, the cause chain, then the Dockerfile lines.
fn report_solve_error(dockerfile: &Dockerfile, err: &SolveError) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let _ = writeln!(out, "caused by: {cause}");
        source = cause.source();
    }
    if let Some(SourceRange { start, .. }) = err.loc() {
        let _ = write!(
            out,
            "{}",
            diag::render_place(&dockerfile.name, &dockerfile.bytes, start)
        );
    }
}
