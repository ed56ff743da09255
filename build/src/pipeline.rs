//! The pipeline: check the request, parse and lower the Dockerfile, solve the target with the
//! local backend, then commit the image and write the outputs and the cache export.

use crate::cache_spec::{CacheRef, export_cache};
use crate::container::new_worker;
use crate::error::error_chain;
use crate::ignore::{IgnoreFilter, ignore_bytes, read_ignore};
use crate::output::{export_local, write_dest};
use crate::resolver::StoreResolver;
use crate::secret::Session;
use crate::{
    BuildError, BuildEvent, BuildRequest, BuildResult, BuiltImage, Dockerfile, OutputSpec,
    PushEvent,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use strata_cache::{CacheDb, CacheLocation, ImportedCache};
use strata_frontend::{BuildOptions, Diagnostic, Diagnostics, Lowered, Platform};
use strata_graph::Graph;
use strata_solver::{ContextSource, LocalBackend, LocalOptions, NoCache, Output, SolveOptions};
use strata_store::{Reference, RegistryClient, Store};

/// `strata check` (docker's `build --check`): every check on `source`, judging each base image
/// by the store's copy of it when the store at `store_root` has one (nothing is pulled, a
/// missing store is not made, a read-only one is read), else by a stand-in whose ENV the
/// checks do not rely on.
pub fn check(source: &[u8], opts: &BuildOptions, store_root: &Path) -> Diagnostics {
    let store = store_root
        .join("images.json")
        .is_file()
        .then(|| Store::open_read_only(store_root).ok())
        .flatten();
    let resolver = crate::resolver::CheckResolver {
        store: store.as_ref().map(|store| StoreResolver {
            store,
            registry: None,
            always_pull: false,
            pulled: Default::default(),
        }),
        known: Default::default(),
    };
    strata_frontend::check(source, opts, &resolver)
}

/// Parses and lowers the request's Dockerfile against the store's images, without building:
/// the graph `--print-graph` shows. Warnings are in the result, not sent.
pub fn lower(request: &BuildRequest) -> Result<Lowered, BuildError> {
    Ok(front(request)?.lowered)
}

/// Runs the build `request` asks for. Warnings and step events go to `request.progress`,
/// in order; the channel is closed once the steps are done, before the outputs are written.
///
/// Returns only once everything it started has ended, so that a caller may end the process,
/// and its runtime without joining the runtime's idle threads, as soon as it has the result:
/// every `spawn_blocking` of the build is awaited by the task that spawned it but one (the
/// local backend's early start of the sandbox helper for a RUN that will run, which starts a
/// process and writes nothing), the solver drains all of its tasks before it returns (on
/// failure too), and a `--explain` reason's detached task holds the event channel that is
/// drained to its end here; scoped threads are joined, and the threads left running (the
/// worker's janitor deleting scratch directories, the sandbox helper's reaper, a build blob's
/// writeback start, a hint to the kernel that the build's sync does not depend on, and a
/// thread per RUN waiting for its sandbox's namespaces to be torn down before handing its
/// scratch directory to the janitor) write nothing that must last: a scratch directory the
/// janitor has not deleted yet is inside this process's staging directory, which the next
/// opener of the store removes. What the build
/// wrote is durable as docs/STORE.md says by then.
pub async fn build(mut request: BuildRequest) -> Result<BuildResult, BuildError> {
    let started = Instant::now();
    let progress = request.progress.take();
    let Front {
        store,
        lowered,
        target_platform,
        epoch,
    } = front(&request)?;
    let mut imported = Vec::new();
    for from in &request.cache_from {
        let location = cache_location(from, request.registry.as_ref())?;
        // As BuildKit: a cache that cannot be imported is a warning, and the build goes on
        // without it (a missing one is simply empty).
        match ImportedCache::open_at(&location, &store) {
            Ok(cache) => imported.push(cache),
            Err(e) => {
                if let Some(progress) = &progress {
                    let _ = progress.send(BuildEvent::CacheWarning(format!(
                        "failed to import the cache from {from}: {}",
                        error_chain(&e)
                    )));
                }
            }
        }
    }
    if let Some(progress) = &progress {
        for d in lowered.warnings.iter() {
            let _ = progress.send(BuildEvent::Warning(d.clone()));
        }
    }
    let warnings = lowered.warnings;
    let graph = lowered.graph;
    let target = graph.targets.first().cloned().ok_or(BuildError::NoStage)?;
    let denied = crate::entitlement::check(&graph, &graph.closure([target.node]), &request.allow);
    if denied.has_errors() {
        return Err(BuildError::Dockerfile(denied));
    }
    let no_cache = no_cache(&request, &graph)?;

    let context_source = match &request.context {
        Some(dir) => Some(ContextSource {
            dir: dir.clone(),
            filter: Arc::new(IgnoreFilter(
                read_ignore(&request.dockerfile, dir).map_err(BuildError::Ignore)?,
            )),
        }),
        None => None,
    };
    let root = store.root().to_path_buf();
    // Lives to the end of the build: dropping it stops the agents it started.
    let session = {
        let (secrets, ssh, store) = (request.secrets.clone(), request.ssh.clone(), store.clone());
        tokio::task::spawn_blocking(move || Session::open(&secrets, &ssh, &store))
            .await
            .expect("opening the session does not panic")?
    };
    let cache = Arc::new(CacheDb::open(&root)?);
    let worker = new_worker(
        &root,
        request.no_new_privileges,
        request.resources.clone(),
        request.download_timeout,
    )?;
    let backend = Arc::new(LocalBackend::new(
        store.clone(),
        cache.clone(),
        worker,
        context_source,
        LocalOptions {
            source_date_epoch: epoch,
            proxy_env: graph.proxy_env.clone(),
            imported,
            build_id: build_id(&request.dockerfile, request.context.as_deref()),
            secrets: session.secrets.clone(),
            ssh: session.ssh.clone(),
            ..LocalOptions::default()
        },
    )?);

    let graph = Arc::new(graph);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Some(progress) = &progress {
                let _ = progress.send(BuildEvent::Step(event));
            }
        }
    });
    let solved = strata_solver::solve(
        backend.clone(),
        graph.clone(),
        &[target.node],
        SolveOptions {
            // No default cap, as BuildKit: RUN steps mostly wait (on processes, sleeps, the
            // network), and sharing the CPU among busy ones is the kernel's job. Capped at the
            // CPU count, four independent `sleep 1` stages took 2.74 s instead of 2.14 s on 2
            // CPUs (bench/build/README.md).
            jobs: request.jobs.unwrap_or(usize::MAX),
            no_cache,
            explain: request.explain,
        },
        tx,
        request.cancel.clone(),
    )
    .await;
    // Every event is delivered before the result is looked at; the forwarder ends (and
    // closes the progress channel) when the solver drops its sender.
    let _ = forward.await;
    let solved = solved.map_err(BuildError::Solve)?;

    for output in solved.outputs.values() {
        if let Output::Context(index) = output {
            backend.save_context_cache(index)?;
        }
    }
    let fs = match solved.outputs.get(&target.node) {
        Some(Output::Fs(fs)) => fs.clone(),
        _ => return Err(BuildError::NoFilesystem),
    };
    let mut outputs = std::mem::take(&mut request.outputs);
    if outputs.is_empty() {
        outputs.push(OutputSpec::Image {
            name: None,
            push: false,
        });
    }
    let mut tags = std::mem::take(&mut request.tags);
    let mut push = false;
    for out in &outputs {
        if let OutputSpec::Image { name, push: p } = out {
            push |= *p;
            if let Some(name) = name {
                let reference =
                    Reference::parse_tag(name).map_err(|source| BuildError::OutputName {
                        name: name.clone(),
                        source,
                    })?;
                if !tags.contains(&reference) {
                    tags.push(reference);
                }
            }
        }
    }
    if push && tags.is_empty() {
        return Err(BuildError::PushWithoutName);
    }
    let pushes = if push { tags.clone() } else { Vec::new() };
    let needs_image = !tags.is_empty() || outputs.iter().any(OutputSpec::needs_image);
    if let Some(to) = &request.cache_to {
        let location = cache_location(&to.dest, request.registry.as_ref())?;
        export_cache(&backend, &cache, &graph, &target, &solved, to, &location).map_err(
            |source| BuildError::CacheExport {
                dest: to.dest.to_string(),
                source,
            },
        )?;
    }
    let mut image = None;
    let mut names: Vec<String> = Vec::new();
    if needs_image {
        backend.ensure_layers(&fs)?;
        let new =
            strata_solver::new_image(&store, &graph, &target, &fs, &target_platform, epoch, tags)
                .map_err(BuildError::AssembleImage)?;
        names = new.tags.iter().map(ToString::to_string).collect();
        let committed = store
            .commit_image_with_manifest(new)
            .map_err(BuildError::CommitImage)?;
        image = Some(BuiltImage {
            id: committed.id,
            manifest_digest: committed.manifest_digest,
        });
    }
    let mut stdout = request.stdout.take();
    for out in &outputs {
        match out {
            OutputSpec::Image { .. } => {}
            OutputSpec::Oci(dest) | OutputSpec::Docker(dest) => {
                let id = &image
                    .as_ref()
                    .expect("an image was committed for this output")
                    .id;
                let refs: Vec<&str> = if names.is_empty() {
                    vec![id.as_str()]
                } else {
                    names.iter().map(String::as_str).collect()
                };
                write_dest(dest, &mut stdout, |w| Ok(store.save(&refs, w)?))
                    .map_err(BuildError::ImageArchive)?;
            }
            OutputSpec::Tar(dest) => {
                write_dest(dest, &mut stdout, |w| Ok(backend.export_rootfs(&fs, w)?))
                    .map_err(BuildError::RootfsTar)?;
            }
            OutputSpec::Local(dir) => {
                export_local(&backend, &fs, dir).map_err(|source| BuildError::LocalDir {
                    dir: dir.clone(),
                    source,
                })?;
            }
        }
    }
    if !pushes.is_empty() {
        push_image(
            &store,
            request.registry.as_deref(),
            &pushes,
            request.on_push.as_deref(),
        )?;
    }
    let result = BuildResult {
        image,
        names,
        cached: solved.cached,
        executed: solved.executed,
        time_saved: backend.time_saved(),
        elapsed: started.elapsed(),
        warnings,
    };
    // Releases the store lease before the caller goes on (`--iidfile`, the next build).
    drop(backend);
    Ok(result)
}

/// `--push`: each name of the committed image to its registry, as `strata push` does it (the
/// blocking client, between the build and its result, like the archive outputs).
fn push_image(
    store: &Store,
    registry: Option<&RegistryClient>,
    references: &[Reference],
    on_push: Option<&(dyn Fn(PushEvent) + Send + Sync)>,
) -> Result<(), BuildError> {
    let registry = registry.ok_or(BuildError::NoRegistry)?;
    let tell = |event| {
        if let Some(f) = on_push {
            f(event);
        }
    };
    let layer = |event| tell(PushEvent::Layer(event));
    for reference in references {
        tell(PushEvent::Started(reference.clone()));
        let pushed =
            registry
                .push(store, reference, &layer)
                .map_err(|source| BuildError::Push {
                    reference: reference.familiar(),
                    source,
                })?;
        tell(PushEvent::Pushed(reference.clone(), pushed));
    }
    Ok(())
}

/// What the pipeline knows before it builds.
struct Front {
    store: Store,
    lowered: Lowered,
    target_platform: Platform,
    epoch: Option<i64>,
}

/// The checks of the request, the parse and the lowering, on the store's images.
fn front(request: &BuildRequest) -> Result<Front, BuildError> {
    let target_platform = target_platform(request.platform.as_deref())?;
    let epoch = source_date_epoch(request)?;
    let df = strata_frontend::parse(&request.dockerfile.bytes).map_err(|err| {
        BuildError::Dockerfile(Diagnostics(vec![Diagnostic::error(
            err.loc,
            err.kind.to_string(),
        )]))
    })?;
    // The build's layers, configs and manifests are made durable by one `syncfs` before the
    // image is indexed, not by two fsyncs each (docs/STORE.md, invariant 1).
    let store = Store::open(&request.store_root)?.deferring_sync();
    let opts = BuildOptions {
        build_args: request.build_args.clone(),
        target: request.target.clone(),
        labels: request.labels.clone(),
        target_platform: target_platform.clone(),
        build_platform: host_platform(),
        network: request.network,
        all_stages: false,
        dockerignore: request
            .context
            .as_deref()
            .and_then(|dir| ignore_bytes(&request.dockerfile, dir)),
        base_config_unknown: false,
    };
    let lowered = strata_frontend::lower(
        &df,
        &opts,
        &StoreResolver {
            store: &store,
            registry: request.registry.as_deref(),
            always_pull: request.pull,
            pulled: Default::default(),
        },
    )
    .map_err(BuildError::Dockerfile)?;
    Ok(Front {
        store,
        lowered,
        target_platform,
        epoch,
    })
}

fn host_platform() -> Platform {
    Platform::host()
}

/// `--platform`, which must be this machine's: there is no emulation.
fn target_platform(platform: Option<&str>) -> Result<Platform, BuildError> {
    let host = host_platform();
    let target = match platform {
        Some(p) => Platform::parse(p, &host)?,
        None => host.clone(),
    };
    if target.os != host.os || target.arch != host.arch {
        return Err(BuildError::ForeignPlatform {
            target: target.format(),
            host: host.format(),
        });
    }
    Ok(target)
}

/// `SOURCE_DATE_EPOCH`: the build argument, else the environment's; empty is unset.
fn source_date_epoch(request: &BuildRequest) -> Result<Option<i64>, BuildError> {
    let Some(value) = request
        .build_args
        .get("SOURCE_DATE_EPOCH")
        .or(request.source_date_epoch.as_ref())
    else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let secs = value
        .parse::<i64>()
        .ok()
        .filter(|s| jiff::Timestamp::from_second(*s).is_ok())
        .ok_or_else(|| BuildError::SourceDateEpoch(value.clone()))?;
    Ok(Some(secs))
}

/// Where a `--cache-to`/`--cache-from` spec points, with the request's registry client.
fn cache_location(
    cache: &CacheRef,
    registry: Option<&Arc<RegistryClient>>,
) -> Result<CacheLocation, BuildError> {
    Ok(match cache {
        CacheRef::Local(dir) => CacheLocation::Dir(dir.clone()),
        CacheRef::Registry(reference) => CacheLocation::Registry {
            client: registry.ok_or(BuildError::NoRegistry)?.clone(),
            reference: reference.clone(),
        },
    })
}

/// `--no-cache` and `--no-cache-filter` as the solver takes them.
fn no_cache(request: &BuildRequest, graph: &Graph) -> Result<NoCache, BuildError> {
    if request.no_cache {
        return Ok(NoCache::All);
    }
    if request.no_cache_filter.is_empty() {
        return Ok(NoCache::Off);
    }
    let mut nodes = HashSet::new();
    for stage in &request.no_cache_filter {
        match graph.stage_nodes.get(&stage.to_lowercase()) {
            // The stage's own steps: its base image node is shared with other stages.
            Some(ids) => nodes.extend(
                ids.iter()
                    .copied()
                    .filter(|&id| graph.node(id).op.makes_layer()),
            ),
            None => return Err(BuildError::NoCacheFilter(stage.clone())),
        }
    }
    Ok(NoCache::Nodes(nodes))
}

/// The build's identity for `--explain`: stable across machines and checkout paths (the
/// context directory's name and the Dockerfile's path inside it), not absolute paths.
fn build_id(dockerfile: &Dockerfile, context: Option<&Path>) -> String {
    let ctx_name = context
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let df = match (&dockerfile.path, context) {
        (Some(p), Some(ctx)) => match p.strip_prefix(ctx) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        _ => "Dockerfile".to_owned(),
    };
    format!("{ctx_name}\0{df}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dockerfile(path: Option<&str>) -> Dockerfile {
        Dockerfile {
            name: "Dockerfile".into(),
            bytes: Vec::new(),
            path: path.map(Into::into),
        }
    }

    #[test]
    fn build_id_is_the_context_name_and_the_dockerfile_inside_it() {
        let ctx = Path::new("/home/me/app");
        assert_eq!(
            build_id(&dockerfile(Some("/home/me/app/ci/Dockerfile")), Some(ctx)),
            "app\0ci/Dockerfile"
        );
        assert_eq!(
            build_id(&dockerfile(Some("/elsewhere/Dockerfile.dev")), Some(ctx)),
            "app\0Dockerfile.dev"
        );
        assert_eq!(build_id(&dockerfile(None), None), "\0Dockerfile");
    }

    #[test]
    fn source_date_epoch_build_arg_wins_and_must_be_seconds() {
        let mut r = BuildRequest::new("/r".into(), dockerfile(None), None);
        r.source_date_epoch = Some("5".into());
        assert_eq!(source_date_epoch(&r).unwrap(), Some(5));
        r.build_args.insert("SOURCE_DATE_EPOCH".into(), "7".into());
        assert_eq!(source_date_epoch(&r).unwrap(), Some(7));
        r.build_args
            .insert("SOURCE_DATE_EPOCH".into(), String::new());
        assert_eq!(source_date_epoch(&r).unwrap(), None);
        r.build_args
            .insert("SOURCE_DATE_EPOCH".into(), "soon".into());
        assert_eq!(
            source_date_epoch(&r).unwrap_err().to_string(),
            "invalid SOURCE_DATE_EPOCH \"soon\": expected seconds"
        );
    }

    /// A request for `source` into a fresh store under `dir`.
    fn request(dir: &Path, source: &str) -> BuildRequest {
        let df = Dockerfile {
            name: "Dockerfile".into(),
            bytes: source.as_bytes().to_vec(),
            path: None,
        };
        BuildRequest::new(dir.join("root"), df, None)
    }

    fn build_now(request: BuildRequest) -> Result<BuildResult, BuildError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(build(request))
    }

    #[test]
    fn dockerfile_errors_come_back_as_diagnostics_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_now(request(dir.path(), "FROM scratch\nRUNN x\n")).unwrap_err();
        let BuildError::Dockerfile(diags) = err else {
            panic!("not a Dockerfile error: {err}");
        };
        let d = diags.errors().next().expect("an error");
        assert_eq!(d.loc, strata_graph::SourceLoc::new(2, 1));
        assert_eq!(d.text(), "unknown instruction: RUNN (did you mean RUN?)");
    }

    #[test]
    fn the_request_is_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = request(dir.path(), "FROM scratch AS a\nCOPY x /x\n");
        r.no_cache_filter = vec!["zzz".into()];
        let err = build_now(r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--no-cache-filter: no stage named \"zzz\" is built"
        );

        let mut r = request(dir.path(), "FROM scratch\n");
        let other = if Platform::host().arch == "s390x" {
            "linux/amd64"
        } else {
            "linux/s390x"
        };
        r.platform = Some(other.into());
        let err = build_now(r).unwrap_err();
        assert!(matches!(err, BuildError::ForeignPlatform { .. }), "{err}");
    }

    #[test]
    fn lower_gives_the_graph_and_the_warnings_without_building() {
        let dir = tempfile::tempdir().unwrap();
        let r = request(dir.path(), "FROM scratch AS a\nMAINTAINER me\n");
        let lowered = lower(&r).unwrap();
        assert_eq!(lowered.graph.targets.len(), 1);
        let rules: Vec<_> = lowered
            .warnings
            .iter()
            .filter_map(|d| d.rule.map(|r| r.name))
            .collect();
        assert_eq!(rules, ["MaintainerDeprecated"]);
    }

    #[test]
    fn the_contexts_dockerignore_reaches_the_copy_ignored_file_check() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        fs_err::create_dir_all(&context).unwrap();
        fs_err::write(context.join(".dockerignore"), "notes/\n").unwrap();
        let mut r = request(dir.path(), "FROM scratch\nCOPY notes/todo.txt /\n");
        r.context = Some(context);
        let lowered = lower(&r).unwrap();
        let found: Vec<String> = lowered.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            found,
            [
                "Dockerfile:2:1: Attempting to Copy file \"notes/todo.txt\" that is excluded by .dockerignore"
            ]
        );
    }
}
