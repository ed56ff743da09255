//! What a COPY/ADD's cache key covers is what the copy writes: for each COPY/ADD from the
//! build context, the entries the key hashes (`ContextIndex::placements`, over the stat
//! index) are, path for path, the entries the worker writes into the layer (over the real
//! directory). Both sides run `strata_graph::resolver`; this shows they agree on the
//! conformance corpus and on the two cases issue 10 named.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unreadable corpus must fail loudly"
)]

use fs_err as fs;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_cache::{ContextFilter, ContextIndex, EntryKind, ScanOptions, Selection};
use strata_frontend::{
    BuildOptions, IgnoreMatcher, ImageResolver, Platform, ResolvedImage, lower, parse,
};
use strata_graph::pattern::{DirVisit, PatternMatcher};
use strata_graph::{FileAction, FileOp, ImageConfig, Op};
use strata_worker::{ExcludeFn, FileRequest, FileSource, Worker, WorkerConfig};

/// Every base image is an empty one: only COPY/ADD from the context are looked at.
struct AnyBase;

impl ImageResolver for AnyBase {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: "sha256:8eaba85521188ec21c91a3c08151334fca8fd5f40d066e8412449650d5b46263".into(),
            platform: platform.clone(),
            config: ImageConfig::default(),
        })
    }
}

/// `.dockerignore` for the context scan (the key's side).
struct Ignore(Arc<PatternMatcher>);

impl ContextFilter for Ignore {
    fn excluded(&self, rel: &str, _is_dir: bool) -> bool {
        self.0.is_excluded(rel)
    }

    fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        self.0.dir_visit(rel_dir, true) == DirVisit::WalkExcluded
    }
}

/// `.dockerignore` for the copy (the worker's side), as the solver hands it.
fn exclude_fn(m: Arc<PatternMatcher>) -> ExcludeFn {
    Arc::new(move |rel: &Path, is_dir: bool| {
        let rel = rel.to_str().unwrap();
        if !m.is_excluded(rel) {
            DirVisit::Include
        } else if is_dir && m.dir_visit(rel, true) == DirVisit::WalkExcluded {
            DirVisit::WalkExcluded
        } else {
            DirVisit::Skip
        }
    })
}

/// What differs between key and copy for each COPY/ADD from the context of `dockerfile`.
struct Checker {
    worker: Worker,
    work: tempfile::TempDir,
    checked: usize,
    misses: Vec<String>,
}

impl Checker {
    fn new() -> Checker {
        let work = tempfile::Builder::new()
            .prefix("strata-copy-sources-")
            .tempdir()
            .unwrap();
        let worker = Worker::new(WorkerConfig::new(
            work.path().join("state"),
            std::env::current_exe().unwrap(),
        ))
        .unwrap();
        Checker {
            worker,
            work,
            checked: 0,
            misses: Vec::new(),
        }
    }

    fn dockerfile(&mut self, name: &str, dockerfile: &[u8], opts: &BuildOptions, ctx: &Path) {
        let df = parse(dockerfile).unwrap();
        let graph = match lower(&df, opts, &AnyBase) {
            Ok(l) => l.graph,
            Err(d) => return self.misses.push(format!("{name}: lowering failed: {d}")),
        };
        let ignore = fs::read(ctx.join(".dockerignore")).unwrap_or_default();
        let ignore = Arc::new(IgnoreMatcher::parse(&ignore).unwrap().into_matcher());
        let filter = Ignore(ignore.clone());
        let scan = ScanOptions {
            filter: &filter,
            ..ScanOptions::default()
        };
        let index = ContextIndex::scan(ctx, &scan).unwrap();
        for id in graph.node_ids() {
            let node = graph.node(id);
            let Op::File(op) = &node.op else { continue };
            for action in &op.actions {
                let FileAction::Copy { from, .. } = action else {
                    continue;
                };
                let input = node.inputs.get(*from).map(|i| &graph.node(*i).op);
                if matches!(input, Some(Op::Context { .. })) {
                    let what = format!("{name}: {}", node.label);
                    self.action(&what, action, &index, ctx, &ignore);
                }
            }
        }
    }

    fn action(
        &mut self,
        what: &str,
        action: &FileAction,
        index: &ContextIndex,
        ctx: &Path,
        ignore: &Arc<PatternMatcher>,
    ) {
        let FileAction::Copy {
            sources,
            dest,
            exclude,
            parents,
            ..
        } = action
        else {
            unreachable!("only copies are checked")
        };
        let sel = Selection::copy(sources.iter().cloned())
            .excluding(exclude.iter().cloned())
            .with_parents(*parents);
        let keyed = index.placements(&sel);
        // The copy, alone on an empty filesystem; what differs from the step is irrelevant to
        // which entries are read: no owner names to look up, no archive unpacked (ADD's
        // unpacking happens after the resolve, on the resolved file).
        let mut alone = action.clone();
        if let FileAction::Copy {
            from,
            chown,
            unpack,
            link,
            ..
        } = &mut alone
        {
            *from = 1;
            *chown = None;
            *unpack = false;
            *link = false;
        }
        self.checked += 1;
        let upper = self.work.path().join(format!("layer-{}", self.checked));
        fs::create_dir_all(&upper).unwrap();
        let copied = self.worker.apply_file_op(FileRequest {
            op: FileOp {
                actions: vec![alone],
            },
            lowers: Vec::new(),
            upper: upper.clone(),
            inputs: vec![
                None,
                Some(FileSource::Context {
                    dir: ctx.to_owned(),
                    exclude: Some(exclude_fn(ignore.clone())),
                }),
            ],
            git_auth: Default::default(),
            previous: None,
        });
        let keyed = match (keyed, copied) {
            (Ok(k), Ok(_)) => k,
            (Err(_), Err(_)) => return, // both refuse it (fail-copy-missing)
            (k, c) => {
                return self.misses.push(format!(
                    "{what}: key {:?} but copy {:?}",
                    k.map(|_| ()),
                    c.map(|_| ())
                ));
            }
        };
        // What the key says is written, relative to the destination; and what may be there
        // besides: the directories on the way (made, not copied).
        let mut want = BTreeSet::new();
        let mut made = BTreeSet::new();
        for p in &keyed {
            let into = if p.source && p.kind == EntryKind::Dir {
                &mut made
            } else {
                &mut want
            };
            into.insert(p.dest.clone());
        }
        for p in want.clone().iter().chain(made.clone().iter()) {
            let mut d = p.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                made.insert(parent.to_owned());
                d = parent;
            }
        }
        let dest_dir = upper.join(dest.trim_start_matches('/'));
        let got = if dest_dir.is_dir() {
            listing(&dest_dir)
        } else if dest_dir.symlink_metadata().is_ok() && want.len() == 1 {
            // A lone file written as the destination itself.
            want.clone()
        } else {
            BTreeSet::new()
        };
        let missing: Vec<&String> = want.difference(&got).collect();
        let extra: Vec<&String> = got
            .iter()
            .filter(|p| !want.contains(*p) && !made.contains(*p))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            self.misses.push(format!(
                "{what}: keyed but not written {missing:?}, written but not keyed {extra:?}"
            ));
        }
    }

    fn assert_agree(&self, at_least: usize) {
        assert!(
            self.misses.is_empty(),
            "{} of {} copies disagree:\n{}",
            self.misses.len(),
            self.checked,
            self.misses.join("\n")
        );
        assert!(
            self.checked >= at_least,
            "only {} copies checked",
            self.checked
        );
    }
}

/// The paths below `dir`, `/`-separated.
fn listing(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                todo.push(rel.clone());
            }
            out.insert(rel.to_str().unwrap().to_owned());
        }
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/diff/cases");
    assert!(
        dir.is_dir(),
        "the diff corpus is missing at {}",
        dir.display()
    );
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    out.sort();
    out
}

fn options(case: &Path) -> BuildOptions {
    let mut opts = BuildOptions::default();
    if let Ok(text) = fs::read_to_string(case.join("buildargs")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').unwrap();
            opts.build_args.insert(k.to_owned(), v.to_owned());
        }
    }
    if let Ok(t) = fs::read_to_string(case.join("target")) {
        opts.target = Some(t.trim().to_owned());
    }
    opts
}

/// The case's context as the harness prepares it (`lib/common.sh`'s `prepare_case`).
fn prepare(case: &Path, into: &Path) -> PathBuf {
    let ctx = into.join("context");
    fs::create_dir_all(into).unwrap();
    if case.join("context").is_dir() {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(case.join("context"))
            .arg(&ctx)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying {}", case.display());
    } else {
        fs::create_dir_all(&ctx).unwrap();
    }
    if case.join("prepare.sh").is_file() {
        let ok = std::process::Command::new("sh")
            .arg(case.join("prepare.sh"))
            .current_dir(&ctx)
            .env("CASE_SRC", case)
            .env("PYTHON", "python3")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{}/prepare.sh failed", case.display());
    }
    ctx
}

#[test]
fn shared_every_context_copy_of_the_corpus_writes_what_its_key_covers() {
    let mut c = Checker::new();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = c.work.path().join(format!("case-{name}"));
        let ctx = prepare(&case, &dir);
        let dockerfile = fs::read(case.join("Dockerfile")).unwrap();
        c.dockerfile(&name, &dockerfile, &options(&case), &ctx);
    }
    c.assert_agree(40);
}

/// Issue 10's two disagreements: a wildcard matching nothing (keyed as nothing, copied as
/// nothing: current BuildKit succeeds), and `--parents` with `--exclude` (matched below the
/// `/./` pivot on both sides).
#[test]
fn wildcards_matching_nothing_and_parents_excludes_key_what_is_copied() {
    let mut c = Checker::new();
    let ctx = c.work.path().join("ctx");
    for (path, text) in [
        ("x/a/keep.txt", "k"),
        ("x/a/drop.log", "d"),
        ("x/a/sub/deep.txt", "s"),
        ("x/b/other.txt", "o"),
        ("top.txt", "t"),
        ("ignored.txt", "i"),
    ] {
        let p = ctx.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    fs::write(ctx.join(".dockerignore"), "ignored.txt\n").unwrap();
    let dockerfile = b"FROM scratch\n\
        COPY nomatch* /none/\n\
        COPY nomatch* top.txt x/zz*/q /some/\n\
        COPY --parents --exclude=a/*.log --exclude=a/sub x/./a /p1/\n\
        COPY --parents --exclude=*/sub --exclude=b x/./* /p2/\n\
        COPY --parents x/a/keep.txt /p3/\n\
        COPY --exclude=sub x/a /plain/\n\
        COPY . /all/\n";
    c.dockerfile("issue-10", dockerfile, &BuildOptions::default(), &ctx);
    c.assert_agree(7);
}
