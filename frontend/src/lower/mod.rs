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
//!
//! Here: the entry points and the walk over the needed stages. `stage` plans each stage (its
//! base, platform, image) and applies its instructions in the expansion `context`; `onbuild`
//! brings in inherited triggers; `source` finds what `--from` and `from=` name; `config`
//! lowers each instruction (the config-only ones itself), `run`, `mount` and `copy` the ones
//! that make layers; `path` cleans paths inside the image; `error` says what went wrong
//! where.

mod config;
mod context;
mod copy;
mod error;
mod git;
mod mount;
mod onbuild;
mod path;
mod run;
mod source;
mod stage;
#[cfg(test)]
mod tests;

use crate::ast::{self};
use crate::diagnostic::{Diagnostic, Diagnostics, Severity, suggest};
use crate::expand::Lexer;
use crate::rule;
use crate::rule::{CHECK_BUILD_ARG, CheckConfig};
use crate::scope::{EnvList, default_args, proxy_env};
use crate::stage::Stages;
use context::Dispatch;
use error::LowerError;
use stage::{Base, Plan};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use strata_graph::{Graph, ImageConfig, NetworkMode, NodeId, SourceLoc, Target};
use strata_store::Platform;

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
    /// The bytes of the `.dockerignore` that applies to the context, if any: BuildKit's
    /// `CopyIgnoredFile` warns about COPY and ADD sources it excludes.
    pub dockerignore: Option<Vec<u8>>,
    /// The resolver's base images are stand-ins with an empty config (`strata check` looks
    /// no image up): the checks that read an image's ENV (`UndefinedVar`, and
    /// `WorkdirRelativePath` of a WORKDIR with a variable) leave stages built on one alone.
    pub base_config_unknown: bool,
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
            dockerignore: None,
            base_config_unknown: false,
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

    /// Whether the config [`ImageResolver::resolve`] gave for `reference` is the image's own,
    /// or a stand-in with nothing in it (`strata check` of an image it does not have): then
    /// the checks that need the base image's ENV stay quiet on its stages, as with
    /// [`BuildOptions::base_config_unknown`].
    fn config_known(&self, _reference: &str) -> bool {
        true
    }
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
    empty_continuations(df, &mut diags);
    let stages = Stages::from_ast(df, &mut diags);
    let mut l = Lowering::new(stages, opts, resolver, diags);
    l.run();
    let Lowering {
        mut diags,
        graph,
        stage_done,
        stages,
        undefined_vars,
        ..
    } = l;
    diags.0.extend(undefined_vars.into_inner());
    diags.sort();
    diags.dedup();
    apply_check_config(df, opts, &mut diags);
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
    match lower(&df, opts, resolver) {
        Ok(l) => l.warnings,
        Err(d) => d,
    }
}

/// BuildKit's `NoEmptyContinuation`, on the last line of the instruction with the empty line.
fn empty_continuations(df: &ast::Dockerfile, diags: &mut Diagnostics) {
    for w in &df.warnings {
        if w.kind != ast::WarningKind::EmptyContinuationLine {
            continue;
        }
        let line = w.loc.line;
        let end = df
            .instructions
            .iter()
            .find(|i| i.range.start.line <= line && line <= i.range.end.line)
            .map_or(w.loc, |i| SourceLoc::new(i.range.end.line, 1));
        diags.push(Diagnostic::warning(
            end,
            &rule::NO_EMPTY_CONTINUATION,
            "Empty continuation line",
        ));
    }
}

/// Applies the check configuration (the build argument `BUILDKIT_DOCKERFILE_CHECK` if given,
/// else the `# check=` directive): findings of rules it leaves out are dropped, and with
/// `error=true` any finding left fails the build with BuildKit's "lint violation" error.
fn apply_check_config(df: &ast::Dockerfile, opts: &BuildOptions, diags: &mut Diagnostics) {
    let directive = df.directive("check");
    let at = directive.map_or(SourceLoc::new(1, 1), |d| d.loc);
    let parsed = match opts.build_args.get(CHECK_BUILD_ARG) {
        Some(v) => CheckConfig::parse(v)
            .map_err(|e| format!("failed to parse build-arg:{CHECK_BUILD_ARG}: {e}")),
        None => CheckConfig::parse(
            &directive
                .map(|d| d.value.to_string_lossy())
                .unwrap_or_default(),
        )
        .map_err(|e| format!("failed to parse check options: {e}")),
    };
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            diags.push(Diagnostic::error(at, e));
            return;
        }
    };
    // A `# check=` comment right above an instruction adds to the file's configuration for
    // the findings on that instruction's lines.
    let local: Vec<(u32, u32, CheckConfig)> = df
        .instructions
        .iter()
        .filter_map(|i| {
            let c = i
                .comments
                .iter()
                .find_map(|c| CheckConfig::from_comment(&c.text.to_string_lossy()))?;
            Some((i.range.start.line, i.range.end.line, config.merged(&c)))
        })
        .collect();
    diags.0.retain(|d| {
        let Some(rule) = d.rule.filter(|_| d.severity == Severity::Warning) else {
            return true;
        };
        let line = d.loc.line;
        match local
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&line))
        {
            Some((_, _, c)) => c.enabled(rule),
            None => config.enabled(rule),
        }
    });
    if config.error {
        let mut rules: Vec<&str> = diags
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .filter_map(|d| d.rule.map(|r| r.name))
            .collect();
        rules.sort_unstable();
        rules.dedup();
        if !rules.is_empty() {
            diags.push(Diagnostic::error(
                at,
                format!("lint violation found for rules: {}", rules.join(", ")),
            ));
        }
    }
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
    /// `UndefinedVar` findings, recorded while expanding (which borrows the lowering shared).
    undefined_vars: std::cell::RefCell<Vec<Diagnostic>>,
}

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
            undefined_vars: std::cell::RefCell::default(),
        }
    }

    /// Lowers the stages the target needs, then the target's image config and history.
    fn run(&mut self) {
        if self.stages.stages.is_empty() {
            return;
        }
        let target = self.find_target();
        self.global_scope(target);
        self.plan_stages();
        let Some(target) = target.or(self.opts.all_stages.then_some(self.stages.stages.len() - 1))
        else {
            return;
        };
        self.target = Some(target);
        let reachable = self.reachable_stages(target);
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
        self.finish_target(target);
    }

    /// The stage `--target` names (default: the last one).
    fn find_target(&mut self) -> Option<usize> {
        let Some(t) = &self.opts.target else {
            return Some(self.stages.stages.len() - 1);
        };
        if let Some(s) = self.stages.find(t) {
            return Some(s.index);
        }
        let hint = suggest(t, self.stages.names(), true);
        let at = self.stages.stages[0].range.start;
        self.report(LowerError::TargetNotFound {
            at,
            target: t.clone(),
            hint,
        });
        None
    }

    /// The global scope FROM lines see: the platform args, then the ARGs before the first
    /// FROM (`--build-arg` wins over their defaults). The scope without build arguments is
    /// checked too (`InvalidDefaultArgInFrom`).
    fn global_scope(&mut self, target: Option<usize>) {
        let target_name = match target {
            Some(i) => self.stages.stages[i].name.clone().unwrap_or_default(),
            None => String::new(),
        };
        let (defaults, _) = self.meta_scope(&target_name, false);
        self.invalid_default_args_in_from(&defaults);
        let (global, errors) = self.meta_scope(&target_name, true);
        self.global = global;
        for e in errors {
            self.report(e);
        }
    }

    /// The platform args and the global ARGs, with the build arguments or (`with_build_args`
    /// false) the ARGs' defaults only; and the errors expanding the defaults.
    fn meta_scope(&self, target_name: &str, with_build_args: bool) -> (EnvList, Vec<LowerError>) {
        let mut global = default_args(
            &self.opts.build_platform,
            &self.opts.target_platform,
            target_name,
            &self.opts.build_args,
        );
        let mut errors = Vec::new();
        for (decl, range) in &self.stages.meta_args {
            let given = with_build_args
                .then(|| self.opts.build_args.get(&decl.key))
                .flatten();
            let value = match (given, &decl.value) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(v)) => match self.lex.expand(v, &global) {
                    Ok(x) => Some(x),
                    Err(error) => {
                        errors.push(LowerError::Expand {
                            at: range.start,
                            error,
                        });
                        None
                    }
                },
                (None, None) => None,
            };
            if let Some(v) = value {
                global.set(&decl.key, &v);
            }
        }
        (global, errors)
    }

    /// The stages `target` needs (all with `--all-stages`), their images resolved; the
    /// ONBUILD triggers of their bases may add more.
    fn reachable_stages(&mut self, target: usize) -> Vec<bool> {
        loop {
            let reachable = if self.opts.all_stages {
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
                return reachable;
            }
        }
    }

    /// The graph's target: the target stage's last node, its config (with `--label`s), its
    /// history, and every node the build needs in order.
    fn finish_target(&mut self, target: usize) {
        let Some(d) = self.done[target].take() else {
            return;
        };
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

    /// Records a problem; lowering goes on where it safely can.
    fn report(&mut self, e: LowerError) {
        self.diags.push(e.into());
    }
}
