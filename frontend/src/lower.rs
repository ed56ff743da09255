//! Lowering: a typed Dockerfile becomes build graph nodes, each target's image config and its
//! history, following BuildKit's `dockerfile2llb` step by step.
//!
//! What a user relies on here: only the stages the target needs are resolved and built
//! (`FROM` chains, `COPY --from`, `RUN --mount=from=`); every instruction sees exactly the
//! variables Docker would give it (image env, declared ARGs, ENVs so far); the image config
//! comes out as Docker writes it (ENTRYPOINT resets an inherited CMD, labels are inherited,
//! EXPOSE ranges are expanded, ONBUILD triggers of a base run in the child); and node labels
//! and history texts read as BuildKit's do (`[build 2/5] RUN make`, `RUN |1 V=2 /bin/sh -c
//! make # buildkit`). RUN, COPY, ADD and WORKDIR's mkdir are graph nodes that make layers;
//! the other instructions are config nodes that nothing depends on.
//!
//! The frontend does no I/O: base images come from the caller's [`ImageResolver`].

use crate::ast::{self};
use crate::diagnostic::{Diagnostic, Diagnostics, Severity, suggest};
use crate::expand::{ExpandError, Lexer};
use crate::history;
use crate::instruction::{
    Command, CommandLine, CopyInstr, Instr, Typed, chomp_heredoc, heredoc_marker, type_instruction,
};
use crate::mount::{MountType, RunMount, parse_mount};
use crate::scope::{EnvList, NON_ENV_ARGS, default_args, proxy_env};
use crate::stage::Stages;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use strata_graph::{
    Chown, ExecOp, FileAction, FileOp, Graph, History, ImageConfig, ImageSource, Mount, MountKind,
    NetworkMode, NodeId, Op, SourceRange, Target,
};
use strata_store::{Platform, Reference};

/// What the caller decided for this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// `--label K=V`, added to the target's labels.
    pub labels: BTreeMap<String, String>,
    /// The platform to build for (`--platform`).
    pub target_platform: Platform,
    /// The platform the build runs on.
    pub build_platform: Platform,
    /// `--network`: the default for RUNs without `--network`.
    pub network: NetworkMode,
    /// Lower every stage, reachable or not (`strata check`).
    pub all_stages: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            target_platform: Platform::linux_amd64(),
            build_platform: Platform::linux_amd64(),
            network: NetworkMode::Default,
            all_stages: false,
        }
    }
}

/// A base image the caller found for a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The normalised reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image ID (`sha256:` of its config).
    pub id: String,
    /// Its platform.
    pub platform: Platform,
    /// Its config (Env, WorkingDir, User, OnBuild, ... feed the stage built on it).
    pub config: ImageConfig,
}

/// Where base images come from (the store, a registry, or a stub for `strata check`).
pub trait ImageResolver {
    /// Finds `reference` (already normalised) for `platform`; the error says why not.
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String>;
}

/// A lowered Dockerfile.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The graph, with one target: the stage to build.
    pub graph: Graph,
    /// Lint warnings found on the way (the build goes on).
    pub warnings: Diagnostics,
    /// The stage names and whether each was lowered, in order (for `--print-graph` and tests).
    pub stages: Vec<(String, bool)>,
}

/// Lowers a parsed Dockerfile. Every problem found is returned, not just the first.
pub fn lower(
    df: &ast::Dockerfile,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, Diagnostics> {
    let mut diags = Diagnostics::new();
    let stages = Stages::from_ast(df, &mut diags);
    let mut l = Lowering::new(stages, opts, resolver, diags);
    l.run();
    let Lowering {
        mut diags,
        graph,
        stage_done,
        stages,
        ..
    } = l;
    diags.sort();
    diags.dedup();
    if let Some(check) = df.directive("check") {
        apply_check_directive(&check.value.to_string_lossy(), &mut diags);
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let names = stages
        .stages
        .iter()
        .zip(stage_done)
        .map(|(s, done)| (s.display_name(), done))
        .collect();
    Ok(Lowered {
        graph,
        warnings: diags,
        stages: names,
    })
}

/// Parses and lowers `source`, returning every problem found (parse errors, instruction errors,
/// expansion and lowering errors, lint warnings) in source order. Empty means clean.
pub fn check(source: &[u8], opts: &BuildOptions, resolver: &dyn ImageResolver) -> Diagnostics {
    let df = match crate::parse(source) {
        Ok(df) => df,
        Err(e) => {
            let mut d = Diagnostics::new();
            d.error(e.loc, e.kind.to_string());
            return d;
        }
    };
    let mut diags = Diagnostics::new();
    for w in &df.warnings {
        if w.kind == ast::WarningKind::EmptyContinuationLine {
            diags.push(Diagnostic::warning(
                w.loc,
                "NoEmptyContinuation",
                "Empty continuation line found in: instruction continues after an empty line",
            ));
        }
    }
    match lower(&df, opts, resolver) {
        Ok(l) => diags.extend(l.warnings),
        Err(d) => diags.extend(d),
    }
    diags.sort();
    diags.dedup();
    if let Some(check) = df.directive("check") {
        apply_check_directive(&check.value.to_string_lossy(), &mut diags);
    }
    diags
}

/// The `# check=skip=<rules|all>;error=<bool>` directive: skipped rules are dropped, and with
/// `error=true` the remaining lint warnings fail the build as BuildKit does.
fn apply_check_directive(value: &str, diags: &mut Diagnostics) {
    let mut skip_all = false;
    let mut skip: Vec<String> = Vec::new();
    let mut error = false;
    for part in value.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_lowercase().as_str() {
            "skip" => {
                for rule in v.split(',').map(str::trim) {
                    if rule.eq_ignore_ascii_case("all") {
                        skip_all = true;
                    } else {
                        skip.push(rule.to_lowercase());
                    }
                }
            }
            "error" => error = crate::mount::parse_go_bool(v.trim()).unwrap_or(false),
            _ => {}
        }
    }
    diags.0.retain(|d| {
        d.severity == Severity::Error
            || !(skip_all || d.rule.is_some_and(|r| skip.contains(&r.to_lowercase())))
    });
    if error {
        for d in &mut diags.0 {
            if d.severity == Severity::Warning {
                d.severity = Severity::Error;
                d.message = format!("lint violation: {}", d.message);
            }
        }
    }
}

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    Scratch,
    Stage(usize),
    Image(String),
    /// The base could not be worked out (already reported).
    Invalid,
}

/// A reference from a command to another filesystem (`COPY --from`, `--mount from=`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Stage(usize),
    Image(String),
    Scratch,
}

#[derive(Debug, Clone)]
struct Pending {
    cmd: Command,
    onbuild: bool,
}

#[derive(Debug, Clone)]
struct Plan {
    base: Base,
    platform: Option<Platform>,
    commands: Vec<Pending>,
    deps: BTreeSet<Source>,
    triggers_added: bool,
}

/// The state of a stage as its instructions are applied (BuildKit's `dispatchState`).
#[derive(Debug, Clone)]
struct Dispatch {
    node: NodeId,
    env: EnvList,
    config: ImageConfig,
    history: Vec<History>,
    build_args: Vec<(String, Option<String>)>,
    workdir: String,
    user: String,
    platform: Platform,
    author: Option<String>,
    cmd_set: bool,
    /// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in this stage (lint).
    used_once: [Option<strata_graph::SourceLoc>; 3],
    /// A WORKDIR was set in this stage or a stage it is built on (lint).
    workdir_set: bool,
    /// Position of each key in `config.env`, so ENV stays O(1) however many there are.
    config_env_index: HashMap<String, usize>,
    cmd_index: usize,
    cmd_total: usize,
    label_name: String,
    onbuild: bool,
}

struct Lowering<'a> {
    stages: Rc<Stages>,
    opts: &'a BuildOptions,
    resolver: &'a dyn ImageResolver,
    diags: Diagnostics,
    graph: Graph,
    lex: Lexer,
    global: EnvList,
    plans: Vec<Plan>,
    /// Each stage's platform, once the stages are planned.
    platforms: Vec<Platform>,
    /// The last stage of each name (names are lower case), for `--from` and `from=`.
    by_name: HashMap<String, usize>,
    /// The names the global ARGs declare.
    global_names: HashSet<String>,
    images: HashMap<(String, String), Option<ResolvedImage>>,
    image_nodes: HashMap<String, NodeId>,
    context: Option<NodeId>,
    /// The state of each stage once dispatched, kept while a stage built on it, or the
    /// target, still needs it: the last stage built on a stage takes its state over instead
    /// of copying it, so a chain of stages costs no more than one long stage.
    done: Vec<Option<Dispatch>>,
    /// How many stages still to be dispatched are built on each stage.
    heirs: Vec<usize>,
    /// The last node of each dispatched stage (what `--from` and `from=` read).
    stage_nodes: Vec<Option<NodeId>>,
    stage_done: Vec<bool>,
    target: Option<usize>,
    order: Vec<NodeId>,
    multi_stage: bool,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl<'a> Lowering<'a> {
    fn new(
        stages: Stages,
        opts: &'a BuildOptions,
        resolver: &'a dyn ImageResolver,
        diags: Diagnostics,
    ) -> Self {
        let n = stages.stages.len();
        let by_name = stages
            .stages
            .iter()
            .filter_map(|s| Some((s.name.clone()?, s.index)))
            .collect();
        let global_names = stages
            .meta_args
            .iter()
            .map(|(d, _)| d.key.clone())
            .collect();
        Self {
            lex: Lexer::new(stages.escape),
            stages: Rc::new(stages),
            opts,
            resolver,
            diags,
            graph: Graph::new(),
            global: EnvList::new(),
            plans: Vec::new(),
            platforms: Vec::new(),
            by_name,
            global_names,
            images: HashMap::new(),
            image_nodes: HashMap::new(),
            context: None,
            done: vec![None; n],
            heirs: vec![0; n],
            stage_nodes: vec![None; n],
            stage_done: vec![false; n],
            target: None,
            order: Vec::new(),
            multi_stage: false,
        }
    }

    fn run(&mut self) {
        if self.stages.stages.is_empty() {
            return;
        }
        // The target, and the global scope FROM lines see.
        let target = match &self.opts.target {
            None => Some(self.stages.stages.len() - 1),
            Some(t) => match self.stages.find(t) {
                Some(s) => Some(s.index),
                None => {
                    let hint = suggest(t, self.stages.names(), true);
                    let at = self.stages.stages[0].range.start;
                    self.diags.push(
                        Diagnostic::error(at, format!("target stage {t:?} could not be found"))
                            .with_suggestion(hint),
                    );
                    None
                }
            },
        };
        let target_name = match target {
            Some(i) => self.stages.stages[i].name.clone().unwrap_or_default(),
            None => String::new(),
        };
        self.global = default_args(
            &self.opts.build_platform,
            &self.opts.target_platform,
            &target_name,
            &self.opts.build_args,
        );
        for (decl, range) in self.stages.meta_args.clone() {
            let value = match self.opts.build_args.get(&decl.key) {
                Some(v) => Some(v.clone()),
                None => match &decl.value {
                    Some(v) => match self.lex.expand(v, &self.global) {
                        Ok(x) => Some(x),
                        Err(e) => {
                            self.diags.error(range.start, e.to_string());
                            None
                        }
                    },
                    None => None,
                },
            };
            if let Some(v) = value {
                self.global.set(&decl.key, &v);
            }
        }
        self.plan_stages();
        let Some(target) = target.or(self.opts.all_stages.then_some(self.stages.stages.len() - 1))
        else {
            return;
        };
        self.target = Some(target);

        // Reachable stages; ONBUILD triggers of their bases may add more.
        let mut reachable;
        loop {
            reachable = if self.opts.all_stages {
                vec![true; self.plans.len()]
            } else {
                self.reachable_from(target)
            };
            for i in (0..self.plans.len()).filter(|&i| reachable[i]) {
                self.resolve_stage_images(i);
            }
            let mut grew = false;
            for i in (0..self.plans.len()).filter(|&i| reachable[i]) {
                if self.add_triggers(i) {
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        for i in (0..self.plans.len()).filter(|&i| reachable[i]) {
            if let Base::Stage(b) = self.plans[i].base {
                self.heirs[b] += 1;
            }
        }

        for i in (0..self.plans.len()).filter(|&i| reachable[i]) {
            let start = self.order.len();
            self.dispatch_stage(i);
            let added = self.order[start..].to_vec();
            let stage = &self.stages.stages[i];
            if let Some(name) = &stage.name {
                self.graph.stage_nodes.insert(name.clone(), added.clone());
            }
            self.graph
                .stage_nodes
                .insert(stage.index.to_string(), added);
        }

        if let Some(d) = self.done[target].take() {
            let mut config = d.config;
            for (k, v) in &self.opts.labels {
                config.labels.insert(k.clone(), v.clone());
            }
            let mut seen = BTreeSet::new();
            let nodes = self
                .order
                .iter()
                .copied()
                .filter(|n| seen.insert(*n))
                .collect();
            let stage = &self.stages.stages[target];
            self.graph.targets.push(Target {
                stage: stage
                    .name
                    .clone()
                    .unwrap_or_else(|| stage.index.to_string()),
                node: d.node,
                config,
                history: d.history,
                nodes,
                author: d.author,
            });
            self.graph.proxy_env = proxy_env(&self.opts.build_args);
        }
    }

    /// Expands FROM lines, works out each stage's base and dependencies.
    fn plan_stages(&mut self) {
        let all = Rc::clone(&self.stages);
        let stages = &all.stages;
        let mut unregistered = 0;
        // The stages named so far: `FROM name` means the last one defined above.
        let mut named_above: HashMap<&str, usize> = HashMap::new();
        for stage in stages {
            let mut plan = Plan {
                base: Base::Invalid,
                platform: None,
                commands: stage
                    .commands
                    .iter()
                    .map(|c| Pending {
                        cmd: c.clone(),
                        onbuild: false,
                    })
                    .collect(),
                deps: BTreeSet::new(),
                triggers_added: false,
            };
            let at = stage.range.start;
            self.undefined_from_args(&stage.base, at);
            if let Some(p) = &stage.platform {
                self.undefined_from_args(p, at);
            }
            match self.lex.expand(&stage.base, &self.global) {
                Err(e) => self.diags.error(at, e.to_string()),
                Ok(base) if base.is_empty() => {
                    self.diags.error(
                        at,
                        format!("base name ({}) should not be blank", stage.base),
                    );
                }
                Ok(base) => {
                    plan.base = if base == "scratch" {
                        Base::Scratch
                    } else if let Some(&s) = named_above.get(base.as_str()) {
                        Base::Stage(s)
                    } else {
                        match Reference::parse(&base).map(|r| r.to_string()) {
                            Ok(r) => Base::Image(r),
                            Err(e) => {
                                let hint = suggest(&base, self.stages.names(), false);
                                self.diags.push(
                                    Diagnostic::error(
                                        at,
                                        format!("failed to parse stage name {base:?}: {e}"),
                                    )
                                    .with_suggestion(hint),
                                );
                                Base::Invalid
                            }
                        }
                    };
                }
            }
            if let Some(p) = &stage.platform {
                match self.lex.expand(p, &self.global) {
                    Err(e) => self
                        .diags
                        .error(at, format!("failed to process arguments for platform: {e}")),
                    Ok(v) if v.is_empty() => self
                        .diags
                        .error(at, format!("empty platform value from expression {p}")),
                    Ok(v) => match Platform::parse(&v, &self.opts.target_platform) {
                        Ok(p) => plan.platform = Some(p),
                        Err(e) => self
                            .diags
                            .error(at, format!("failed to parse platform {p}: {e}")),
                    },
                }
            }
            for c in &stage.commands {
                for (source, counts) in self.command_sources(&c.cmd_ref()) {
                    match source {
                        Ok(s) => {
                            if counts {
                                unregistered += 1;
                            }
                            plan.deps.insert(s);
                        }
                        Err(e) => self.diags.error(c.range.start, e),
                    }
                }
            }
            self.plans.push(plan);
            if let Some(name) = &stage.name {
                named_above.insert(name, stage.index);
            }
        }
        self.multi_stage = stages.len() + unregistered > 1;
        // A stage's platform: its own `--platform`, else its base stage's, else the target's
        // (a base stage always comes earlier, so one pass in order sees it first).
        for i in 0..self.plans.len() {
            let platform = match (&self.plans[i].platform, &self.plans[i].base) {
                (Some(p), _) => p.clone(),
                (None, Base::Stage(b)) => self.platforms[*b].clone(),
                (None, _) => self.opts.target_platform.clone(),
            };
            self.platforms.push(platform);
        }
    }

    /// BuildKit's `UndefinedArgInFrom` lint: a FROM line names a variable no global ARG
    /// declares (and that is not a platform arg).
    fn undefined_from_args(&mut self, word: &str, at: strata_graph::SourceLoc) {
        let Ok(e) = self.lex.process(word, &self.global) else {
            return;
        };
        for name in e.unmatched {
            if !self.declared_global(&name) {
                let hint = suggest(&name, self.global.keys().collect::<Vec<_>>(), true);
                self.diags.push(
                    Diagnostic::warning(
                        at,
                        "UndefinedArgInFrom",
                        format!("FROM argument '{name}' is not declared"),
                    )
                    .with_suggestion(hint),
                );
            }
        }
    }

    /// Whether a global ARG (before the first FROM) declares `name`.
    fn declared_global(&self, name: &str) -> bool {
        self.global_names.contains(name)
    }

    /// The last stage called `name` (any case).
    fn find_stage(&self, name: &str) -> Option<usize> {
        self.by_name.get(name.to_lowercase().as_str()).copied()
    }

    /// The filesystems a command reads besides its own stage; the flag says whether BuildKit
    /// counts it as an extra (unregistered) stage.
    fn command_sources(&self, cmd: &CommandRef<'_>) -> Vec<(Result<Source, String>, bool)> {
        let mut out = Vec::new();
        match cmd.instr {
            Instr::Copy(c) => {
                if let Some(from) = &c.from {
                    out.push(self.source_for(from, true));
                }
            }
            Instr::Run(r) => {
                for (raw, _) in &r.mounts {
                    let (kind, from) = mount_type_and_from(raw);
                    match (kind, from) {
                        (Some(MountType::Tmpfs), _) => {}
                        (Some(MountType::Cache), None) => out.push((Ok(Source::Scratch), true)),
                        (_, Some(from)) => out.push(self.source_for(&from, false)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn source_for(&self, from: &str, copy: bool) -> (Result<Source, String>, bool) {
        if copy && from.contains('$') {
            let changed = Lexer::new(self.stages.escape)
                .expand(from, &EnvList::new())
                .map_or(true, |r| r != from);
            if changed {
                return (
                    Err("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".into()),
                    false,
                );
            }
        }
        if let Ok(index) = from.parse::<i64>() {
            return match self.stages.resolve_ref(from) {
                Ok(Some(i)) => (Ok(Source::Stage(i)), false),
                _ => (Err(format!("invalid stage index {index}")), false),
            };
        }
        if let Some(s) = self.find_stage(from) {
            return (Ok(Source::Stage(s)), false);
        }
        if from == "scratch" {
            return (Ok(Source::Scratch), true);
        }
        match Reference::parse(from).map(|r| r.to_string()) {
            Ok(r) => (Ok(Source::Image(r)), true),
            Err(e) => {
                let hint = suggest(from, self.stages.names(), false);
                let msg = format!("{from:?} is neither a stage nor a valid image reference: {e}");
                (
                    Err(match hint {
                        Some(h) => format!("{msg} (did you mean {h}?)"),
                        None => msg,
                    }),
                    false,
                )
            }
        }
    }

    /// Which stages `target` needs, by index.
    fn reachable_from(&self, target: usize) -> Vec<bool> {
        let mut seen = vec![false; self.plans.len()];
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if let Base::Stage(b) = self.plans[i].base {
                stack.push(b);
            }
            for d in &self.plans[i].deps {
                if let Source::Stage(s) = d {
                    stack.push(*s);
                }
            }
        }
        seen
    }

    fn stage_platform(&self, i: usize) -> Platform {
        self.platforms[i].clone()
    }

    fn resolve_stage_images(&mut self, i: usize) {
        let platform = self.stage_platform(i);
        let at = self.stages.stages[i].range.start;
        if let Base::Image(r) = self.plans[i].base.clone() {
            self.resolve(&r, &platform, at);
        }
        let deps: Vec<Source> = self.plans[i].deps.iter().cloned().collect();
        for d in deps {
            if let Source::Image(r) = d {
                self.resolve(&r, &self.opts.target_platform.clone(), at);
            }
        }
    }

    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        at: strata_graph::SourceLoc,
    ) -> Option<ResolvedImage> {
        let key = (reference.to_owned(), platform.format());
        if let Some(r) = self.images.get(&key) {
            return r.clone();
        }
        let result = match self.resolver.resolve(reference, platform) {
            Ok(img) => Some(img),
            Err(e) => {
                let short = reference.trim_start_matches("docker.io/library/");
                let short = short.strip_suffix(":latest").unwrap_or(short);
                let hint = suggest(short, self.stages.names(), false);
                self.diags.push(
                    Diagnostic::error(
                        at,
                        format!("failed to resolve source metadata for {reference}: {e}"),
                    )
                    .with_suggestion(hint),
                );
                None
            }
        };
        self.images.insert(key, result.clone());
        result
    }

    /// Adds the ONBUILD triggers a stage inherits (from its base image's config, or from its
    /// base stage's ONBUILD instructions) in front of its commands. True when they brought in
    /// a stage that was not reachable before.
    fn add_triggers(&mut self, i: usize) -> bool {
        if self.plans[i].triggers_added {
            return false;
        }
        self.plans[i].triggers_added = true;
        let texts: Vec<String> = match self.plans[i].base.clone() {
            Base::Image(r) => {
                let platform = self.stage_platform(i);
                self.images
                    .get(&(r, platform.format()))
                    .cloned()
                    .flatten()
                    .map(|img| img.config.on_build)
                    .unwrap_or_default()
            }
            Base::Stage(b) => self.stages.stages[b]
                .commands
                .iter()
                .filter_map(|c| match &c.instr {
                    Instr::Onbuild(e) => Some(e.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if texts.is_empty() {
            return false;
        }
        let range = self.stages.stages[i].range;
        let mut triggers = Vec::new();
        for text in texts {
            match parse_trigger(&text, range) {
                Ok(cmd) => triggers.push(Pending { cmd, onbuild: true }),
                Err(msg) => self.diags.error(
                    range.start,
                    format!("failed to process ONBUILD trigger {text:?}: {msg}"),
                ),
            }
        }
        let before: BTreeSet<Source> = self.plans[i].deps.clone();
        for t in &triggers {
            for (s, _) in self.command_sources(&t.cmd.cmd_ref()) {
                match s {
                    Ok(s) => {
                        self.plans[i].deps.insert(s);
                    }
                    Err(e) => self.diags.error(range.start, e),
                }
            }
        }
        let grew = self.plans[i].deps != before;
        triggers.append(&mut self.plans[i].commands);
        self.plans[i].commands = triggers;
        grew
    }

    fn context_node(&mut self) -> NodeId {
        if let Some(c) = self.context {
            return c;
        }
        let id = self.graph.add(
            Op::Context {
                name: "context".into(),
            },
            vec![],
            "[internal] load build context",
            None,
        );
        self.context = Some(id);
        self.order.push(id);
        id
    }

    fn image_node(
        &mut self,
        img: &ResolvedImage,
        label: String,
        range: Option<SourceRange>,
    ) -> NodeId {
        if let Some(n) = self.image_nodes.get(&img.id) {
            return *n;
        }
        let op = Op::Image(ImageSource {
            reference: img.reference.clone(),
            id: img.id.clone(),
            platform: img.platform.format(),
        });
        let id = self.graph.add(op, vec![], label, range);
        self.image_nodes.insert(img.id.clone(), id);
        self.order.push(id);
        id
    }

    fn scratch_node(&mut self, label: String, range: Option<SourceRange>) -> NodeId {
        let id = self.graph.add(Op::Scratch, vec![], label, range);
        self.order.push(id);
        id
    }

    /// The node for a `--from`/`from=` source, or an error message.
    fn source_node(&mut self, source: &Source, current: usize) -> Result<NodeId, String> {
        match source {
            Source::Scratch => Ok(self.scratch_node("scratch".into(), None)),
            Source::Stage(s) if *s == current => Err(format!(
                "circular dependency detected on stage: {}",
                self.stages.stages[current].display_name()
            )),
            Source::Stage(s) => match self.stage_nodes[*s] {
                Some(node) => Ok(node),
                None if *s > current => Err(format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                    self.stages.stages[*s].display_name(),
                    self.stages.stages[current].display_name()
                )),
                None => Err(format!(
                    "stage {:?} could not be built",
                    self.stages.stages[*s].display_name()
                )),
            },
            Source::Image(r) => {
                let platform = self.opts.target_platform.clone();
                match self
                    .images
                    .get(&(r.clone(), platform.format()))
                    .cloned()
                    .flatten()
                {
                    Some(img) => Ok(self.image_node(&img, format!("FROM {}", img.reference), None)),
                    None => Err(format!("image {r} could not be resolved")),
                }
            }
        }
    }

    fn dispatch_stage(&mut self, i: usize) {
        let all = Rc::clone(&self.stages);
        let stage = &all.stages[i];
        let plan = Plan {
            commands: std::mem::take(&mut self.plans[i].commands),
            ..self.plans[i].clone()
        };
        let cmd_total = usize::from(matches!(plan.base, Base::Image(_)))
            + plan
                .commands
                .iter()
                .filter(|p| {
                    p.onbuild
                        || matches!(
                            p.cmd.instr,
                            Instr::Run(_) | Instr::Copy(_) | Instr::Add(_) | Instr::Workdir(_)
                        )
                })
                .count();
        let label_name = if self.multi_stage {
            stage.display_name()
        } else {
            String::new()
        };
        let platform = self.stage_platform(i);
        let mut d = match &plan.base {
            Base::Stage(b) => match self.inherit(*b) {
                Some(mut parent) => {
                    parent.config.on_build.clear();
                    Dispatch {
                        cmd_set: false,
                        used_once: [None; 3],
                        cmd_index: 0,
                        cmd_total,
                        label_name,
                        onbuild: false,
                        ..parent
                    }
                }
                None => return,
            },
            Base::Scratch => {
                let node = self.scratch_node(
                    prefix_label(&label_name, 0, 0, false, "FROM scratch"),
                    Some(stage.range),
                );
                fresh_dispatch(
                    node,
                    ImageConfig::default(),
                    platform,
                    cmd_total,
                    label_name,
                )
            }
            Base::Image(r) => {
                let Some(img) = self
                    .images
                    .get(&(r.clone(), platform.format()))
                    .cloned()
                    .flatten()
                else {
                    return;
                };
                let label = prefix_label(
                    &label_name,
                    1,
                    cmd_total,
                    false,
                    &format!("FROM {}", img.reference),
                );
                let node = self.image_node(&img, label, Some(stage.range));
                let mut d =
                    fresh_dispatch(node, img.config.clone(), platform, cmd_total, label_name);
                d.cmd_index = 1;
                d.config.on_build.clear();
                for kv in &img.config.env {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    d.env.set(k, v);
                }
                if !img.config.working_dir.is_empty() {
                    d.workdir = normalize_workdir("/", &img.config.working_dir);
                }
                d.user = img.config.user.clone();
                d
            }
            Base::Invalid => return,
        };
        // BuildKit makes sure PATH is always set.
        refresh_env_index(&d.config, &mut d.config_env_index);
        if !d.config_env_index.contains_key("PATH") && d.platform.os != "windows" {
            d.config.env.push(format!("PATH={DEFAULT_PATH}"));
            d.env.set("PATH", DEFAULT_PATH);
        }

        for p in &plan.commands {
            d.onbuild = p.onbuild;
            if let Err(msg) = self.dispatch(i, &mut d, &p.cmd) {
                self.diags.error(p.cmd.range.start, msg);
            }
        }
        d.onbuild = false;
        self.stage_nodes[i] = Some(d.node);
        self.done[i] = Some(d);
        self.stage_done[i] = true;
    }

    /// The state of base stage `b` for a stage built on it: taken over by the last such stage
    /// (unless `b` is the target), copied for the others.
    fn inherit(&mut self, b: usize) -> Option<Dispatch> {
        self.heirs[b] = self.heirs[b].saturating_sub(1);
        if self.heirs[b] == 0 && self.target != Some(b) {
            self.done[b].take()
        } else {
            self.done[b].clone()
        }
    }

    fn expand(&self, d: &Dispatch, word: &str) -> Result<String, String> {
        self.lex
            .expand(word, &d.env)
            .map_err(|e: ExpandError| e.to_string())
    }

    /// An instruction that changes only the image config: its history entry (no layer) and
    /// its config node.
    fn config_step(&mut self, d: &mut Dispatch, text: String, range: SourceRange) {
        d.history.push(history::entry(text.clone(), false, false));
        self.config_node(d, text, range);
    }

    fn config_node(&mut self, d: &mut Dispatch, text: String, range: SourceRange) {
        let label = prefix_label(&d.label_name, 0, 0, d.onbuild, &text);
        let id = self.graph.add(
            Op::Config { instruction: text },
            vec![d.node],
            label,
            Some(range),
        );
        self.order.push(id);
    }

    /// Applies one instruction to the stage.
    fn dispatch(&mut self, stage: usize, d: &mut Dispatch, cmd: &Command) -> Result<(), String> {
        let range = cmd.range;
        match &cmd.instr {
            Instr::Env(pairs) => {
                // Every value is expanded with the variables from before this ENV.
                let mut expanded = Vec::new();
                for p in pairs {
                    expanded.push((self.expand(d, &p.key)?, self.expand(d, &p.value)?));
                }
                let mut text = String::from("ENV");
                for (k, v) in &expanded {
                    text.push_str(&format!(" {k}={v}"));
                    d.env.set(k, v);
                    set_config_env(&mut d.config, &mut d.config_env_index, k, v);
                }
                self.config_step(d, text, range);
            }
            Instr::Label(pairs) => {
                let mut expanded = Vec::new();
                for p in pairs {
                    expanded.push((self.expand(d, &p.key)?, self.expand(d, &p.value)?));
                }
                let mut text = String::from("LABEL");
                for (k, v) in expanded {
                    text.push_str(&format!(" {k}={v}"));
                    d.config.labels.insert(k, v);
                }
                self.config_step(d, text, range);
            }
            Instr::Maintainer(m) => {
                d.author = Some(m.clone());
                let text = format!("MAINTAINER {m}");
                self.config_step(d, text, range);
            }
            Instr::Arg(decls) => {
                let mut parts = Vec::new();
                for decl in decls {
                    let given = self.opts.build_args.get(&decl.key).cloned();
                    let mut value = decl.value.clone();
                    if value.is_none() && given.is_none() {
                        value = self.global.get(&decl.key).map(str::to_owned);
                    } else if let Some(v) = given {
                        value = Some(v);
                    } else if let Some(v) = &decl.value {
                        value = Some(self.expand(d, v)?);
                    }
                    if let Some(v) = &value
                        && !NON_ENV_ARGS.contains(&decl.key.as_str())
                    {
                        d.env.set(&decl.key, v);
                    }
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", decl.key),
                        None => decl.key.clone(),
                    });
                    d.build_args.push((decl.key.clone(), value));
                }
                let text = format!("ARG {}", parts.join(" "));
                self.config_step(d, text, range);
            }
            Instr::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    words.extend(
                        self.lex
                            .expand_words(p, &d.env)
                            .map_err(|e| e.to_string())?,
                    );
                }
                let mut specs = Vec::new();
                for w in &words {
                    specs.extend(parse_port_spec(w)?);
                }
                for s in &specs {
                    d.config.exposed_ports.insert(s.clone(), Default::default());
                }
                let text = format!("EXPOSE {}", history::go_list(&specs));
                self.config_step(d, text, range);
            }
            Instr::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let e = self.expand(d, v)?;
                    if e.is_empty() {
                        return Err("VOLUME specified can not be an empty string".into());
                    }
                    out.push(e);
                }
                for v in &out {
                    d.config.volumes.insert(v.clone(), Default::default());
                }
                let text = format!("VOLUME {}", history::go_list(&out));
                self.config_step(d, text, range);
            }
            Instr::StopSignal(sig) => {
                let sig = self.expand(d, sig)?;
                check_signal(&sig)?;
                d.config.stop_signal = sig.clone();
                let text = format!("STOPSIGNAL {sig}");
                self.config_step(d, text, range);
            }
            Instr::User(u) => {
                let u = self.expand(d, u)?;
                d.user = u.clone();
                d.config.user = u.clone();
                let text = format!("USER {u}");
                self.config_step(d, text, range);
            }
            Instr::Shell(shell) => {
                d.config.shell = shell.clone();
                let text = format!("SHELL {}", history::go_list(shell));
                self.config_step(d, text, range);
            }
            Instr::Cmd(c) => {
                self.json_args_recommended(d, c, "CMD", range);
                self.used_once(d, 0, "CMD", range);
                let args = shell_args(&d.config, c);
                d.config.cmd = Some(args.clone());
                d.config.args_escaped = true;
                d.cmd_set = true;
                let text = format!("CMD {}", history::go_quoted_list(&args));
                self.config_step(d, text, range);
            }
            Instr::Entrypoint(c) => {
                self.json_args_recommended(d, c, "ENTRYPOINT", range);
                self.used_once(d, 1, "ENTRYPOINT", range);
                let args = shell_args(&d.config, c);
                d.config.entrypoint = (!args.is_empty()).then(|| args.clone());
                if !d.cmd_set {
                    d.config.cmd = None;
                }
                let text = format!("ENTRYPOINT {}", history::go_quoted_list(&args));
                self.config_step(d, text, range);
            }
            Instr::Healthcheck(h) => {
                self.used_once(d, 2, "HEALTHCHECK", range);
                d.config.healthcheck = Some(h.clone());
                let text = history::healthcheck(h);
                self.config_step(d, text, range);
            }
            Instr::Onbuild(expr) => {
                d.config.on_build.push(expr.clone());
                self.config_node(d, format!("ONBUILD {expr}"), range);
            }
            Instr::Workdir(w) => {
                let w = self.expand(d, w)?;
                if !d.workdir_set && !w.starts_with('/') && !d.onbuild {
                    self.diags.push(Diagnostic::warning(
                        range.start,
                        "WorkdirRelativePath",
                        format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                    ));
                }
                d.workdir_set = true;
                let wd = normalize_workdir(&d.workdir, &w);
                d.workdir = wd.clone();
                d.config.working_dir = wd.clone();
                let layer = wd != "/";
                if layer {
                    let label =
                        d.next_label(&uppercase_cmd(&self.label_text(d, &cmd.source, false)));
                    let chown = (!d.user.is_empty()).then(|| parse_chown(&d.user));
                    let op = Op::File(FileOp {
                        actions: vec![FileAction::Mkdir {
                            path: wd.clone(),
                            mode: 0o755,
                            chown,
                        }],
                    });
                    d.node = self.graph.add(op, vec![d.node], label, Some(range));
                    self.order.push(d.node);
                } else {
                    self.config_node(d, format!("WORKDIR {wd}"), range);
                }
                d.history
                    .push(history::entry(format!("WORKDIR {wd}"), layer, false));
            }
            Instr::Run(r) => self.dispatch_run(stage, d, cmd, r)?,
            Instr::Copy(c) => self.dispatch_copy(stage, d, cmd, c, false)?,
            Instr::Add(c) => self.dispatch_copy(stage, d, cmd, c, true)?,
        }
        Ok(())
    }

    /// BuildKit's `MultipleInstructionsDisallowed` lint: only the last CMD, ENTRYPOINT or
    /// HEALTHCHECK of a stage counts.
    fn used_once(&mut self, d: &mut Dispatch, slot: usize, name: &str, range: SourceRange) {
        if d.onbuild {
            return;
        }
        if let Some(previous) = d.used_once[slot] {
            self.diags.push(Diagnostic::warning(
                previous,
                "MultipleInstructionsDisallowed",
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
            ));
        }
        d.used_once[slot] = Some(range.start);
    }

    /// BuildKit's `JSONArgsRecommended` lint: shell-form CMD/ENTRYPOINT without a SHELL.
    fn json_args_recommended(
        &mut self,
        d: &Dispatch,
        c: &CommandLine,
        name: &str,
        range: SourceRange,
    ) {
        if c.prepend_shell && d.config.shell.is_empty() && !d.onbuild {
            self.diags.push(Diagnostic::warning(
                range.start,
                "JSONArgsRecommended",
                format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                ),
            ));
        }
    }

    /// The instruction text as a progress label shows it: variables expanded where set.
    fn label_text(&self, d: &Dispatch, source: &str, raw_quotes: bool) -> String {
        let lex = if raw_quotes {
            Lexer::new(self.stages.escape)
                .raw_quotes(true)
                .skip_unset(true)
        } else {
            self.lex
        };
        lex.expand(source, &d.env)
            .unwrap_or_else(|_| source.to_owned())
    }

    fn dispatch_run(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &Command,
        r: &crate::instruction::RunInstr,
    ) -> Result<(), String> {
        let CommandLine {
            args,
            prepend_shell,
            files,
        } = &r.cmd;
        let mut args = args.clone();
        let mut mounts = Vec::new();
        let mut summary = None;
        if !files.is_empty() {
            if heredoc_marker(&args[0]).is_some() {
                let f = &files[0];
                let data = if f.chomp {
                    chomp_heredoc(&f.data)
                } else {
                    f.data.clone()
                };
                if data.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", f.name);
                    mounts.push(Mount {
                        target: path.clone(),
                        kind: MountKind::File {
                            contents: data,
                            mode: 0o755,
                        },
                    });
                    args = vec![path];
                } else {
                    args = vec![data];
                }
                summary = Some(summarize_heredoc(&f.data));
            } else {
                let mut text = args[0].clone();
                for f in files {
                    text.push('\n');
                    text.push_str(&f.data);
                    text.push_str(&f.name);
                }
                args = vec![text];
            }
        }
        if *prepend_shell {
            args = with_shell(&d.config, &args);
        }

        // Mounts, their values expanded with the variables in scope.
        let mut inputs = vec![d.node];
        let mut secret_envs = Vec::new();
        let mut ssh_index = 0;
        for (raw, at) in &r.mounts {
            let lex = self.lex;
            let env = &d.env;
            let m = parse_mount(raw, &mut |v| lex.expand(v, env).map_err(|e| e.to_string()))
                .map_err(|e| format!("{e} (at {at})"))?;
            let kind = self.mount_kind(stage, d, &m, &mut inputs, &mut ssh_index)?;
            let target = match (&m.kind, &m.target) {
                (MountType::Secret, t) => match (t, &m.env) {
                    (Some(t), _) => absolute_in(&d.workdir, t),
                    (None, Some(_)) => String::new(),
                    (None, None) => {
                        let id = secret_id(&m).unwrap_or_default();
                        format!("/run/secrets/{}", base_name(&id))
                    }
                },
                (MountType::Ssh, t) => match t {
                    Some(t) => absolute_in(&d.workdir, t),
                    None => format!("/run/buildkit/ssh_agent.{}", ssh_index - 1),
                },
                (_, Some(t)) => absolute_in(&d.workdir, t),
                (_, None) => return Err(format!("invalid mount target \"\" in {raw}")),
            };
            if target == "/" {
                return Err(format!("invalid mount target {target:?}"));
            }
            if let Some(e) = &m.env {
                secret_envs.push(e.clone());
            }
            mounts.push(Mount { target, kind });
        }

        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env: d.env.to_vec(),
            cwd: d.workdir.clone(),
            user: d.user.clone(),
            network: r.network.unwrap_or(self.opts.network),
            security: r.security,
            mounts,
        });
        let masked;
        let label_env = if secret_envs.is_empty() {
            &d.env
        } else {
            let mut env = d.env.clone();
            for e in &secret_envs {
                env.set(e, "****");
            }
            masked = env;
            &masked
        };
        let lex = Lexer::new(self.stages.escape)
            .raw_quotes(true)
            .skip_unset(true);
        let mut text = lex
            .expand(&cmd.source, label_env)
            .unwrap_or_else(|_| cmd.source.clone());
        if let Some(s) = summary {
            text.push_str(&format!(" ({s})"));
        }
        let label = d.next_label(&uppercase_cmd(&text));
        d.node = self.graph.add(op, inputs, label, Some(cmd.range));
        self.order.push(d.node);

        // Each build arg once, in the order first declared, with its value now.
        let mut seen: Vec<(&str, &str)> = Vec::with_capacity(d.build_args.len());
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(d.build_args.len());
        for (k, v) in &d.build_args {
            let value = d
                .env
                .get(k)
                .unwrap_or_else(|| v.as_deref().unwrap_or_default());
            match position.get(k.as_str()) {
                Some(&i) => seen[i].1 = value,
                None => {
                    position.insert(k, seen.len());
                    seen.push((k, value));
                }
            }
        }
        d.history.push(history::entry(
            format!("RUN {}", history::run_command(&args, &seen)),
            true,
            true,
        ));
        Ok(())
    }

    fn mount_kind(
        &mut self,
        stage: usize,
        d: &Dispatch,
        m: &RunMount,
        inputs: &mut Vec<NodeId>,
        ssh_index: &mut usize,
    ) -> Result<MountKind, String> {
        let input_for = |this: &mut Self,
                         from: &Option<String>,
                         inputs: &mut Vec<NodeId>|
         -> Result<usize, String> {
            let node = match from {
                None => this.context_node(),
                Some(f) => {
                    let (source, _) = this.source_for(f, false);
                    this.source_node(&source?, stage)?
                }
            };
            Ok(match inputs.iter().position(|n| *n == node) {
                Some(i) if i > 0 => i,
                _ => {
                    inputs.push(node);
                    inputs.len() - 1
                }
            })
        };
        Ok(match m.kind {
            MountType::Bind => {
                let input = input_for(self, &m.from, inputs)?;
                MountKind::Bind {
                    input,
                    source: join_root(m.source.as_deref().unwrap_or("")),
                    rw: !m.readonly,
                }
            }
            MountType::Cache => {
                let from = match &m.from {
                    None => None,
                    Some(_) => Some((
                        input_for(self, &m.from, inputs)?,
                        join_root(m.source.as_deref().unwrap_or("")),
                    )),
                };
                MountKind::Cache {
                    id: m
                        .id
                        .clone()
                        .or_else(|| m.target.clone())
                        .unwrap_or_default(),
                    sharing: m.sharing.unwrap_or_default(),
                    from,
                    readonly: m.readonly,
                    mode: m.mode.unwrap_or(0o755),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
            MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
            MountType::Secret => {
                let id = secret_id(m).ok_or("one of source, target required")?;
                MountKind::Secret {
                    id,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
            MountType::Ssh => {
                if m.source.is_some() {
                    return Err("ssh does not support source".into());
                }
                *ssh_index += 1;
                let _ = d;
                MountKind::Ssh {
                    id: m
                        .id
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o600),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
        })
    }

    fn dispatch_copy(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &Command,
        c: &CopyInstr,
        is_add: bool,
    ) -> Result<(), String> {
        let name = if is_add { "ADD" } else { "COPY" };
        let chown_raw = match &c.chown {
            Some(v) => Some(self.expand(d, v)?),
            None => None,
        };
        let chown_raw = chown_raw.filter(|s| !s.is_empty());
        let checksum = match &c.checksum {
            Some(v) => Some(self.expand(d, v)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.expand(d, s)?);
        }
        let dest_raw = self.expand(d, &c.dest)?;
        let dest = path_relative_to_workdir(&d.workdir, &dest_raw);
        let dest_is_dir = dest.ends_with('/');
        let chown = chown_raw.as_deref().map(parse_chown);

        if let Some(ck) = &checksum {
            if !is_add {
                return Err("checksum can't be specified for COPY".into());
            }
            if c.sources.len() != 1 {
                return Err("checksum can't be specified for multiple sources".into());
            }
            if !is_http(&sources[0]) && !is_git(&sources[0]) {
                return Err("checksum requires HTTP(S) or Git sources".into());
            }
            check_digest(ck)?;
        }

        let mut text = String::from(name);
        if c.parents {
            text.push_str(" --parents");
        }
        if let Some(ch) = &chown_raw {
            text.push_str(&format!(" --chown={ch}"));
        }
        if let Some(m) = &c.chmod {
            text.push_str(&format!(" --chmod={m}"));
        }

        let mut inputs = vec![d.node];
        let mut actions = Vec::new();
        let mut local = Vec::new();
        for src in &sources {
            text.push(' ');
            text.push_str(src);
            if is_git(src) {
                return Err(if is_add {
                    "ADD from a git repository is not supported yet".into()
                } else {
                    "source can't be a git ref for COPY".into()
                });
            }
            if is_http(src) {
                if !is_add {
                    return Err("source can't be a URL for COPY".into());
                }
                actions.push(FileAction::Download {
                    url: src.clone(),
                    dest: dest.clone(),
                    dest_is_dir,
                    checksum: checksum.clone(),
                    chown: chown.clone(),
                    chmod: c.chmod.clone(),
                });
                continue;
            }
            local.push(if c.parents {
                clean_keep_pivot(src)
            } else {
                join_root(src)
            });
        }
        if !local.is_empty() {
            let source_node = match &c.from {
                Some(f) => {
                    let (s, _) = self.source_for(f, true);
                    self.source_node(&s?, stage)?
                }
                None => self.context_node(),
            };
            inputs.push(source_node);
            actions.insert(
                0,
                FileAction::Copy {
                    from: 1,
                    sources: local,
                    dest: dest.clone(),
                    dest_is_dir,
                    chown: chown.clone(),
                    chmod: c.chmod.clone(),
                    link: c.link && c.chmod.is_none(),
                    parents: c.parents,
                    exclude: c.excludes.clone(),
                    unpack: is_add && c.unpack.unwrap_or(true),
                },
            );
        }
        for content in &c.contents {
            text.push_str(&format!(" <<{}", content.path));
            let data = if content.expand {
                Lexer::new('\\')
                    .skip_process_quotes(true)
                    .expand(&content.data, &d.env)
                    .map_err(|e| e.to_string())?
            } else {
                content.data.clone()
            };
            let path = if dest_is_dir {
                format!("{dest}{}", content.path)
            } else {
                dest.clone()
            };
            let mode = match &c.chmod {
                Some(m) => apply_chmod(0o644, m)
                    .ok_or_else(|| format!("invalid chmod parameter: '{m}'"))?,
                None => 0o644,
            };
            actions.push(FileAction::MkFile {
                path,
                contents: data,
                mode,
                chown: chown.clone(),
            });
        }
        text.push(' ');
        text.push_str(&dest_raw);

        let label_text = uppercase_cmd(&self.label_text(d, &cmd.source, false));
        let label = d.next_label(&label_text);
        d.node = self
            .graph
            .add(Op::File(FileOp { actions }), inputs, label, Some(cmd.range));
        self.order.push(d.node);
        d.history.push(history::entry(text, true, true));
        Ok(())
    }
}

/// A reference to a command, for source discovery.
struct CommandRef<'a> {
    instr: &'a Instr,
}

impl Command {
    fn cmd_ref(&self) -> CommandRef<'_> {
        CommandRef { instr: &self.instr }
    }
}

impl Dispatch {
    /// `[name i/n] text`, numbering the step (BuildKit's `prefixCommand`).
    fn next_label(&mut self, text: &str) -> String {
        if self.cmd_total == 0 {
            return text.to_owned();
        }
        self.cmd_index += 1;
        prefix_label(
            &self.label_name,
            self.cmd_index,
            self.cmd_total,
            self.onbuild,
            text,
        )
    }
}

/// `ImageConfig::env_set` with an index: replaces in place (Docker keeps the position) or
/// appends.
fn set_config_env(
    config: &mut ImageConfig,
    index: &mut HashMap<String, usize>,
    key: &str,
    value: &str,
) {
    refresh_env_index(config, index);
    let entry = format!("{key}={value}");
    match index.get(key) {
        Some(&i) => config.env[i] = entry,
        None => {
            index.insert(key.to_owned(), config.env.len());
            config.env.push(entry);
        }
    }
}

/// Rebuilds `index` (each key of `config.env` to its position) when it is out of date.
fn refresh_env_index(config: &ImageConfig, index: &mut HashMap<String, usize>) {
    if index.len() != config.env.len() {
        index.clear();
        for (i, kv) in config.env.iter().enumerate() {
            let k = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            index.entry(k.to_owned()).or_insert(i);
        }
    }
}

fn fresh_dispatch(
    node: NodeId,
    config: ImageConfig,
    platform: Platform,
    cmd_total: usize,
    label_name: String,
) -> Dispatch {
    Dispatch {
        node,
        env: EnvList::new(),
        config,
        history: Vec::new(),
        build_args: Vec::new(),
        workdir: "/".into(),
        user: String::new(),
        platform,
        author: None,
        cmd_set: false,
        used_once: [None; 3],
        workdir_set: false,
        config_env_index: HashMap::new(),
        cmd_index: 0,
        cmd_total,
        label_name,
        onbuild: false,
    }
}

/// `[name i/n] text` (`%*d`: the index is padded to the width of the total); without a number
/// (`total == 0`) `[name] text`, or just the text for an unnamed stage.
fn prefix_label(name: &str, index: usize, total: usize, onbuild: bool, text: &str) -> String {
    let mut out = String::new();
    if total > 0 {
        out.push('[');
        if !name.is_empty() {
            out.push_str(name);
            out.push(' ');
        }
        let width = total.to_string().len();
        out.push_str(&format!("{index:>width$}/{total}] "));
    } else if !name.is_empty() {
        out.push_str(&format!("[{name}] "));
    }
    if onbuild {
        out.push_str("ONBUILD ");
    }
    out.push_str(text);
    out
}

/// Parses an ONBUILD trigger's text into one command (it may not be FROM).
fn parse_trigger(text: &str, range: SourceRange) -> Result<Command, String> {
    let df = crate::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    if df.instructions.len() != 1 {
        return Err("onbuild trigger should be a single expression".into());
    }
    let mut warnings = Vec::new();
    match type_instruction(&df.instructions[0], &mut warnings).map_err(|d| d.text())? {
        Typed::From(_) => Err("FROM isn't allowed as an ONBUILD trigger".into()),
        Typed::Command(mut c) => {
            c.range = range;
            Ok(c)
        }
    }
}

/// The type and `from=` of a mount value, read without expanding anything.
fn mount_type_and_from(raw: &str) -> (Option<MountType>, Option<String>) {
    let mut kind = Some(MountType::Bind);
    let mut from = None;
    for field in raw.split(',') {
        let field = field.trim_matches('"');
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        match k.to_lowercase().as_str() {
            "type" => {
                kind = match v.to_lowercase().as_str() {
                    "bind" => Some(MountType::Bind),
                    "cache" => Some(MountType::Cache),
                    "tmpfs" => Some(MountType::Tmpfs),
                    "secret" => Some(MountType::Secret),
                    "ssh" => Some(MountType::Ssh),
                    _ => None,
                }
            }
            "from" => from = Some(v.to_owned()),
            _ => {}
        }
    }
    (kind, from)
}

fn secret_id(m: &RunMount) -> Option<String> {
    m.source
        .clone()
        .or_else(|| m.id.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| m.target.as_deref().map(base_name))
}

fn base_name(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some("") | None => "/".into(),
        Some(b) => b.into(),
    }
}

/// A CMD or ENTRYPOINT as it runs: the shell form behind the SHELL, the exec form as is.
fn shell_args(config: &ImageConfig, c: &CommandLine) -> Vec<String> {
    if c.prepend_shell {
        with_shell(config, &c.args)
    } else {
        c.args.clone()
    }
}

/// `shell` (or `/bin/sh -c`) followed by the command text.
fn with_shell(config: &ImageConfig, args: &[String]) -> Vec<String> {
    let mut out = if config.shell.is_empty() {
        vec!["/bin/sh".to_owned(), "-c".to_owned()]
    } else {
        config.shell.clone()
    };
    out.push(args.join(" "));
    out
}

/// The first word upper-cased (`run echo` → `RUN echo`).
fn uppercase_cmd(s: &str) -> String {
    match s.split_once(' ') {
        Some((first, rest)) => format!("{} {rest}", first.to_uppercase()),
        None => s.to_uppercase(),
    }
}

/// A heredoc's first line, with `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let normalized = doc.replace("\r\n", "\n");
    let mut lines = normalized.split('\n');
    let first = lines.next().unwrap_or("").to_owned();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

/// `path.Join("/", p)`.
fn join_root(p: &str) -> String {
    strata_graph::pattern::clean(&format!("/{p}"))
}

/// A `--parents` source cleaned on each side of its `/./` pivot.
fn clean_keep_pivot(p: &str) -> String {
    match p.split_once("/./") {
        Some((parent, rest)) => format!(
            "{}/./{}",
            join_root(parent),
            join_root(rest).trim_start_matches('/')
        ),
        None => join_root(p),
    }
}

/// `target` made absolute against the working directory.
fn absolute_in(workdir: &str, target: &str) -> String {
    if target.starts_with('/') {
        strata_graph::pattern::clean(target)
    } else {
        strata_graph::pattern::clean(&format!("{workdir}/{target}"))
    }
}

/// BuildKit's `NormalizeWorkdir`: relative paths build on the current directory.
fn normalize_workdir(current: &str, requested: &str) -> String {
    if requested.is_empty() {
        return current.to_owned();
    }
    absolute_in(current, requested)
}

/// A COPY destination against the working directory, keeping a trailing slash (it means
/// "into this directory").
fn path_relative_to_workdir(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let joined = absolute_in(workdir, dest);
    if (dest.ends_with('/') || dest.ends_with("/.")) && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

/// `user[:group]`.
fn parse_chown(s: &str) -> Chown {
    match s.split_once(':') {
        Some((u, g)) => Chown {
            user: u.to_owned(),
            group: Some(g.to_owned()),
        },
        None => Chown {
            user: s.to_owned(),
            group: None,
        },
    }
}

fn is_http(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !is_git(s)
}

/// Git sources as BuildKit recognises them (`git@host:repo`, `git://`, `https://….git`).
fn is_git(s: &str) -> bool {
    if s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://") {
        return true;
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        let path = s.split(['#', '?']).next().unwrap_or(s);
        return path.ends_with(".git");
    }
    false
}

fn check_digest(d: &str) -> Result<(), String> {
    let (algo, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("invalid checksum digest format {d:?}"))?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {algo:?}")),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("invalid checksum digest format {d:?}"));
    }
    Ok(())
}

/// A mode after `--chmod` (octal, or symbolic applied to `base`).
fn apply_chmod(base: u32, spec: &str) -> Option<u32> {
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return u32::from_str_radix(spec, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut mode = base;
    for clause in spec.split(',') {
        let who_end = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(who_end);
        let mut mask = 0;
        for w in if who.is_empty() {
            "a".chars()
        } else {
            who.chars()
        } {
            mask |= match w {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return None,
            };
        }
        let op = rest.chars().next()?;
        let mut bits = 0;
        for p in rest[1..].chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if mode & 0o111 != 0 => 0o111,
                'X' => 0,
                's' => 0o6000,
                't' => 0o1000,
                _ => return None,
            };
        }
        let bits = bits & mask;
        mode = match op {
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => (mode & !mask) | bits,
        };
    }
    Some(mode)
}

/// `EXPOSE` specs (`80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80`) to `port/proto` keys.
fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let container = parts[parts.len() - 1];
    let host = if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        ""
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        p => return Err(format!("invalid proto: {p}")),
    };
    let range = |s: &str| -> Option<(u16, u16)> {
        match s.split_once('-') {
            None => s.parse().ok().map(|p| (p, p)),
            Some((a, b)) => {
                let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
                (b >= a).then_some((a, b))
            }
        }
    };
    let (start, end) = range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host.is_empty() {
        let (hs, he) = range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
        if end - start != he - hs && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host}"
            ));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `moby/sys/signal.ParseSignal`: a number, or a name with or without `SIG`.
fn check_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<i64>() {
        return if !(1..=64).contains(&n) {
            Err(format!("Invalid signal: {s}"))
        } else {
            Ok(())
        };
    }
    let name = s.to_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const NAMES: [&str; 36] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    let rt = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    if NAMES.contains(&name) || rt("RTMIN+", 15) || rt("RTMAX-", 14) {
        Ok(())
    } else {
        Err(format!("Invalid signal: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records what was resolved; images named `missing…` do not exist; `onbuild-base` has
    /// triggers and `app-base` a config with env, workdir, user, cmd and labels.
    #[derive(Default)]
    struct Store {
        asked: RefCell<Vec<String>>,
    }

    impl ImageResolver for Store {
        fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
            self.asked.borrow_mut().push(reference.to_owned());
            if reference.contains("missing") {
                return Err("not found".into());
            }
            let mut config = ImageConfig::default();
            if reference.contains("onbuild-base") {
                config.on_build = vec!["RUN echo from-base".into(), "ENV FROM_BASE=1".into()];
            }
            if reference.contains("app-base") {
                config.env = vec!["PATH=/app/bin".into(), "MODE=base".into()];
                config.working_dir = "/app".into();
                config.user = "app".into();
                config.cmd = Some(vec!["serve".into()]);
                config.labels.insert("from".into(), "base".into());
            }
            Ok(ResolvedImage {
                reference: reference.to_owned(),
                id: format!("sha256:{}", reference.len()),
                platform: platform.clone(),
                config,
            })
        }
    }

    fn lower_src(src: &str, opts: &BuildOptions, store: &Store) -> Result<Lowered, Diagnostics> {
        lower(&crate::parse(src.as_bytes()).expect("parses"), opts, store)
    }

    fn ok(src: &str) -> Lowered {
        lower_src(src, &BuildOptions::default(), &Store::default())
            .unwrap_or_else(|d| panic!("{d}"))
    }

    fn errors(src: &str) -> Vec<String> {
        match lower_src(src, &BuildOptions::default(), &Store::default()) {
            Ok(_) => Vec::new(),
            Err(d) => d.errors().map(|e| e.to_string()).collect(),
        }
    }

    fn labels(l: &Lowered) -> Vec<String> {
        l.graph
            .node_ids()
            .map(|i| l.graph.node(i).label.clone())
            .collect()
    }

    fn exec(l: &Lowered, label_part: &str) -> ExecOp {
        l.graph
            .node_ids()
            .map(|i| l.graph.node(i))
            .find(|n| n.label.contains(label_part))
            .and_then(|n| match &n.op {
                Op::Exec(e) => Some(e.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no RUN labelled {label_part}"))
    }

    fn history(l: &Lowered) -> Vec<String> {
        l.graph.targets[0]
            .history
            .iter()
            .map(|h| h.created_by.clone())
            .collect()
    }

    #[test]
    fn only_needed_stages_are_resolved_and_lowered() {
        let store = Store::default();
        let src = "FROM missing-image AS unused\nRUN exit 1\nFROM alpine AS used\nRUN true\nFROM used\nCOPY --from=used /a /b\n";
        let l = lower_src(src, &BuildOptions::default(), &store).unwrap();
        assert_eq!(*store.asked.borrow(), ["docker.io/library/alpine:latest"]);
        assert_eq!(
            l.stages,
            [
                ("unused".into(), false),
                ("used".into(), true),
                ("stage-2".into(), true)
            ]
        );
        // With --target the later stages are not even looked at.
        let store = Store::default();
        let opts = BuildOptions {
            target: Some("USED".into()),
            ..BuildOptions::default()
        };
        let l = lower_src(src, &opts, &store).unwrap();
        assert_eq!(l.graph.targets[0].stage, "used");
    }

    #[test]
    fn base_image_config_feeds_the_stage() {
        let l = ok(
            "FROM app-base\nRUN echo $MODE\nENV MODE=child\nENTRYPOINT [\"run\"]\nLABEL mine=1\n",
        );
        let run = exec(&l, "RUN echo");
        assert_eq!(run.env, ["PATH=/app/bin", "MODE=base"]);
        assert_eq!((run.cwd.as_str(), run.user.as_str()), ("/app", "app"));
        let cfg = &l.graph.targets[0].config;
        // PATH is already set, so no default PATH; ENV replaces in place.
        assert_eq!(cfg.env, ["PATH=/app/bin", "MODE=child"]);
        // ENTRYPOINT resets the inherited CMD; labels are inherited.
        assert_eq!(cfg.cmd, None);
        assert_eq!(cfg.entrypoint, Some(vec!["run".to_owned()]));
        assert_eq!(cfg.labels.len(), 2);
        // A CMD set in the same stage survives a later ENTRYPOINT.
        let l = ok("FROM app-base\nCMD [\"x\"]\nENTRYPOINT [\"run\"]\n");
        assert_eq!(l.graph.targets[0].config.cmd, Some(vec!["x".to_owned()]));
    }

    #[test]
    fn args_are_scoped_like_docker() {
        let mut opts = BuildOptions::default();
        opts.build_args.insert("V".into(), "cli".into());
        opts.build_args.insert("UNDECLARED".into(), "x".into());
        opts.build_args
            .insert("https_proxy".into(), "http://p".into());
        let src = "ARG V=global\nARG G=g\nFROM alpine\nRUN echo 1\nARG V\nARG G\nARG D=d-$V\nRUN echo 2\nENV D=env\nRUN echo 3\n";
        let l = lower_src(src, &opts, &Store::default()).unwrap();
        let path = format!("PATH={DEFAULT_PATH}");
        assert_eq!(exec(&l, "RUN echo 1").env, std::slice::from_ref(&path));
        assert_eq!(
            exec(&l, "RUN echo 2").env,
            [path.clone(), "V=cli".into(), "G=g".into(), "D=d-cli".into()]
        );
        assert_eq!(
            exec(&l, "RUN echo 3").env,
            [path, "V=cli".into(), "G=g".into(), "D=env".into()]
        );
        // ARGs are not in the image config; proxies reach RUN outside the env and keys.
        assert_eq!(l.graph.targets[0].config.env.len(), 2);
        assert_eq!(
            l.graph.proxy_env,
            ["HTTPS_PROXY=http://p", "https_proxy=http://p"]
        );
        assert_eq!(
            history(&l),
            [
                "RUN /bin/sh -c echo 1 # buildkit",
                "ARG V=cli",
                "ARG G=g",
                "ARG D=d-cli",
                "RUN |3 V=cli G=g D=d-cli /bin/sh -c echo 2 # buildkit",
                "ENV D=env",
                "RUN |3 V=cli G=g D=env /bin/sh -c echo 3 # buildkit",
            ]
        );
    }

    #[test]
    fn global_args_only_reach_from_lines() {
        let l = ok("ARG IMG=alpine\nFROM $IMG\nENV SEEN=[$IMG]\n");
        assert_eq!(l.graph.targets[0].config.env_get("SEEN"), Some("[]"));
        let l = ok(
            "FROM alpine\nARG TARGETPLATFORM\nARG BUILDARCH\nENV T=$TARGETPLATFORM B=$BUILDARCH N=$TARGETOS\n",
        );
        let cfg = &l.graph.targets[0].config;
        assert_eq!(
            (cfg.env_get("T"), cfg.env_get("B"), cfg.env_get("N")),
            (Some("linux/amd64"), Some("amd64"), Some(""))
        );
    }

    #[test]
    fn workdir_creates_the_directory_as_the_user() {
        let l = ok("FROM alpine\nUSER app\nWORKDIR /data/app\nUSER root\nWORKDIR /\nWORKDIR rel\n");
        let mkdirs: Vec<FileAction> = l
            .graph
            .node_ids()
            .filter_map(|i| match &l.graph.node(i).op {
                Op::File(f) => Some(f.actions[0].clone()),
                _ => None,
            })
            .collect();
        let app = Some(Chown {
            user: "app".into(),
            group: None,
        });
        let root = Some(Chown {
            user: "root".into(),
            group: None,
        });
        assert_eq!(
            mkdirs,
            [
                FileAction::Mkdir {
                    path: "/data/app".into(),
                    mode: 0o755,
                    chown: app
                },
                FileAction::Mkdir {
                    path: "/rel".into(),
                    mode: 0o755,
                    chown: root
                },
            ]
        );
        assert_eq!(history(&l)[3], "WORKDIR /");
        assert!(l.graph.targets[0].history[3].empty_layer);
    }

    #[test]
    fn onbuild_triggers_of_a_base_image_run_first() {
        let l = ok("FROM onbuild-base\nRUN echo own\n");
        let names = labels(&l);
        assert_eq!(names[1], "[2/4] ONBUILD RUN echo from-base");
        assert_eq!(names[2], "ONBUILD ENV FROM_BASE=1");
        assert_eq!(names[3], "[3/4] RUN echo own");
        assert_eq!(
            exec(&l, "RUN echo own").env.last().map(String::as_str),
            Some("FROM_BASE=1")
        );
        // The base's triggers do not stay in the child's config.
        assert!(l.graph.targets[0].config.on_build.is_empty());
    }

    #[test]
    fn labels_number_layer_steps_like_buildkit() {
        let l = ok(
            "FROM alpine\nENV A=1\nRUN --mount=type=cache,target=/c true\nWORKDIR /\nRUN echo $A \"q\"\n",
        );
        assert_eq!(
            labels(&l),
            [
                "[stage-0 1/4] FROM docker.io/library/alpine:latest",
                "[stage-0] ENV A=1",
                "[stage-0 2/4] RUN --mount=type=cache,target=/c true",
                "[stage-0] WORKDIR /",
                "[stage-0 3/4] RUN echo 1 \"q\"",
            ]
        );
    }

    #[test]
    fn stage_reference_errors() {
        assert_eq!(
            errors(
                "FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\nFROM scratch\nCOPY --from=a / /\n"
            ),
            [
                "Dockerfile:2:1: cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
            ]
        );
        assert_eq!(
            errors("FROM alpine\nCOPY --from=3 /x /y\n"),
            ["Dockerfile:2:1: invalid stage index 3"]
        );
        assert_eq!(
            errors("FROM alpine AS a\nRUN --mount=from=a,target=/m true\n"),
            ["Dockerfile:2:1: circular dependency detected on stage: a"]
        );
        assert_eq!(
            errors("FROM alpine\nARG S=x\nCOPY --from=$S /x /y\n"),
            [
                "Dockerfile:3:1: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
            ]
        );
        assert_eq!(
            errors("FROM missing-imag AS x\nFROM alpine AS missing-image\nFROM x\n"),
            [
                "Dockerfile:1:1: failed to resolve source metadata for docker.io/library/missing-imag:latest: not found (did you mean missing-image?)"
            ]
        );
        assert_eq!(
            errors("FROM Alpine\n"),
            [
                "Dockerfile:1:1: failed to parse stage name \"Alpine\": invalid reference format: repository name (library/Alpine) must be lowercase"
            ]
        );
        assert_eq!(
            errors("ARG B\nFROM $B\n"),
            ["Dockerfile:2:1: base name ($B) should not be blank"]
        );
    }

    #[test]
    fn copy_forms_and_their_history() {
        let l = ok(
            "FROM alpine\nWORKDIR /w\nENV U=app\nCOPY --chown=$U:staff --chmod=640 a b sub/\nADD https://x.test/f.tgz /opt/\nCOPY <<EOF out.txt\n$U\nEOF\n",
        );
        assert_eq!(
            history(&l)[2..],
            [
                "COPY --chown=app:staff --chmod=640 a b sub/ # buildkit",
                "ADD https://x.test/f.tgz /opt/ # buildkit",
                "COPY <<EOF out.txt # buildkit",
            ]
        );
        let files: Vec<FileAction> = l
            .graph
            .node_ids()
            .filter_map(|i| match &l.graph.node(i).op {
                Op::File(f) => Some(f.actions.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(
            matches!(&files[1], FileAction::Copy { sources, dest, dest_is_dir: true, chown: Some(c), .. }
            if sources == &["/a", "/b"] && dest == "/w/sub/" && c.group.as_deref() == Some("staff"))
        );
        assert!(
            matches!(&files[2], FileAction::Download { dest, dest_is_dir: true, .. } if dest == "/opt/")
        );
        assert_eq!(
            files[3],
            FileAction::MkFile {
                path: "/w/out.txt".into(),
                contents: "app\n".into(),
                mode: 0o644,
                chown: None
            }
        );
        assert_eq!(
            errors("FROM alpine\nCOPY https://x.test/f /f\n"),
            ["Dockerfile:2:1: source can't be a URL for COPY"]
        );
        assert_eq!(
            errors("FROM alpine\nADD --checksum=sha256:abc a /a\n"),
            ["Dockerfile:2:1: checksum requires HTTP(S) or Git sources"]
        );
    }

    #[test]
    fn equal_steps_share_a_node_across_stages() {
        let l = ok(
            "FROM alpine AS a\nRUN make\nFROM alpine AS b\nRUN make\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /x /y\n",
        );
        let runs: BTreeSet<_> = l
            .graph
            .node_ids()
            .filter(|i| matches!(l.graph.node(*i).op, Op::Exec(_)))
            .collect();
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn lint_warnings_like_buildkit() {
        let all = BuildOptions {
            all_stages: true,
            ..BuildOptions::default()
        };
        let src = "ARG TAG=1\nFROM alpine${TAGG} as Build\nCMD a\nCMD [\"b\"]\nWORKDIR rel\nWORKDIR again\nrun true\nFROM alpine AS scratch\n";
        let l = lower_src(src, &all, &Store::default()).unwrap();
        let got: Vec<String> = l
            .warnings
            .iter()
            .map(|w| format!("{}:{} {}", w.loc.line, w.rule.unwrap_or(""), w.text()))
            .collect();
        assert_eq!(
            got,
            [
                "2:FromAsCasing 'as' and 'FROM' keywords' casing do not match",
                "2:StageNameCasing Stage name 'Build' should be lowercase",
                "2:UndefinedArgInFrom FROM argument 'TAGG' is not declared (did you mean TAG?)",
                "3:JSONArgsRecommended JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
                "3:MultipleInstructionsDisallowed Multiple CMD instructions should not be used in the same stage because only the last one will be used",
                "5:WorkdirRelativePath Relative workdir \"rel\" can have unexpected results if the base image changes",
                "7:ConsistentInstructionCasing Command 'run' should match the case of the command majority (uppercase)",
                "8:ReservedStageName 'scratch' is reserved and should not be used as a stage name",
            ]
        );
    }

    #[test]
    fn check_directive_skips_rules_or_makes_them_errors() {
        let src = "FROM alpine\nMAINTAINER me\nENV A b\n";
        assert_eq!(ok(src).warnings.len(), 2);
        let skipped = ok(&format!("# check=skip=MaintainerDeprecated\n{src}"));
        assert_eq!(
            skipped
                .warnings
                .iter()
                .filter_map(|w| w.rule)
                .collect::<Vec<_>>(),
            ["LegacyKeyValueFormat"]
        );
        assert!(ok(&format!("# check=skip=all\n{src}")).warnings.is_empty());
        assert_eq!(
            errors(&format!(
                "# check=error=true;skip=LegacyKeyValueFormat\n{src}"
            )),
            [
                "Dockerfile:3:1: lint violation: Maintainer instruction is deprecated in favor of using label"
            ]
        );
    }

    #[test]
    fn labels_are_padded_like_buildkit() {
        assert_eq!(
            prefix_label("build", 2, 9, false, "RUN make"),
            "[build 2/9] RUN make"
        );
        assert_eq!(prefix_label("", 3, 12, false, "RUN x"), "[ 3/12] RUN x");
        assert_eq!(
            prefix_label("stage-1", 1, 3, true, "RUN echo on"),
            "[stage-1 1/3] ONBUILD RUN echo on"
        );
        assert_eq!(
            prefix_label("build", 0, 0, false, "ENV A=b"),
            "[build] ENV A=b"
        );
        assert_eq!(prefix_label("", 0, 0, false, "ENV A=b"), "ENV A=b");
    }

    #[test]
    fn destinations() {
        assert_eq!(path_relative_to_workdir("/work", "."), "/work/");
        assert_eq!(
            path_relative_to_workdir("/work", "renamed.txt"),
            "/work/renamed.txt"
        );
        assert_eq!(path_relative_to_workdir("/work", "sub/"), "/work/sub/");
        assert_eq!(path_relative_to_workdir("/", "/a/b/c/"), "/a/b/c/");
        assert_eq!(path_relative_to_workdir("/w", "deep/er/"), "/w/deep/er/");
        assert_eq!(path_relative_to_workdir("/w", "/x/../y"), "/y");
        assert_eq!(normalize_workdir("/a", "b/../c"), "/a/c");
        assert_eq!(normalize_workdir("/a", "/"), "/");
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port_spec("8000-8002/udp").unwrap(),
            ["8000/udp", "8001/udp", "8002/udp"]
        );
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("99999").is_err());
        assert!(parse_port_spec("9-1").is_err());
    }

    #[test]
    fn signals_and_modes() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1"] {
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "RTMIN+16", ""] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(apply_chmod(0o644, "0755"), Some(0o755));
        assert_eq!(apply_chmod(0o644, "u+x"), Some(0o744));
        assert_eq!(apply_chmod(0o644, "go-r"), Some(0o600));
        assert_eq!(apply_chmod(0o644, "a=rx"), Some(0o555));
    }
}
