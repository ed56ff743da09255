//! Stages: which ones the target needs, what each is built on, its platform and base image,
//! and the walk through one stage's instructions.

use super::context::{DEFAULT_PATH, Dispatch, fresh_dispatch, prefix_label, refresh_env_index};
use super::error::LowerError;
use super::path::normalize_workdir;
use super::source::Source;
use super::{Lowering, ResolvedImage};
use crate::diagnostic::{Diagnostic, suggest};
use crate::instruction::{InstructionKind, TypedInstruction};
use crate::rule;
use crate::scope::EnvList;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use strata_graph::{ImageConfig, SourceLoc};
use strata_store::{Platform, Reference};

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    Scratch,
    Stage(usize),
    Image(String),
    /// The base could not be worked out (already reported).
    Invalid,
}

/// An instruction still to apply to a stage; `onbuild` when it is an inherited trigger.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) cmd: TypedInstruction,
    pub(super) onbuild: bool,
}

/// A stage as planned before it is lowered: its base, platform, instructions (triggers
/// first) and the stages and images it reads from.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) base: Base,
    pub(super) platform: Option<Platform>,
    pub(super) instructions: Vec<Pending>,
    pub(super) deps: BTreeSet<Source>,
    pub(super) triggers_added: bool,
}

impl Lowering<'_> {
    /// Expands FROM lines, works out each stage's base and dependencies.
    pub(super) fn plan_stages(&mut self) {
        let all = Rc::clone(&self.stages);
        let stages = &all.stages;
        let mut unregistered = 0;
        // The stages named so far: `FROM name` means the last one defined above.
        let mut named_above: HashMap<&str, usize> = HashMap::new();
        for stage in stages {
            let at = stage.range.start;
            self.undefined_from_args(&stage.base, at);
            if let Some(p) = &stage.platform {
                self.undefined_from_args(p, at);
                self.platform_lints(p, stage.name.as_deref().unwrap_or(""), at);
            }
            let base = self.stage_base(&stage.base, &named_above, at);
            let platform = match &stage.platform {
                Some(p) => self.platform_flag(p, at),
                None => None,
            };
            let mut deps = BTreeSet::new();
            for c in &stage.instructions {
                for (source, counts) in self.command_sources(&c.kind, c.range.start) {
                    match source {
                        Ok(s) => {
                            if counts {
                                unregistered += 1;
                            }
                            deps.insert(s);
                        }
                        Err(e) => self.report(e),
                    }
                }
            }
            self.plans.push(Plan {
                base,
                platform,
                instructions: stage
                    .instructions
                    .iter()
                    .map(|c| Pending {
                        cmd: c.clone(),
                        onbuild: false,
                    })
                    .collect(),
                deps,
                triggers_added: false,
            });
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

    /// What `FROM written` (at `at`) builds on: `scratch`, a stage named above, or an image.
    fn stage_base(
        &mut self,
        written: &str,
        named_above: &HashMap<&str, usize>,
        at: SourceLoc,
    ) -> Base {
        let base = match self.lex.expand(written, &self.global) {
            Err(error) => {
                self.report(LowerError::Expand { at, error });
                return Base::Invalid;
            }
            Ok(base) if base.is_empty() => {
                self.report(LowerError::BlankBase {
                    at,
                    base: written.to_owned(),
                });
                return Base::Invalid;
            }
            Ok(base) => base,
        };
        if base == "scratch" {
            return Base::Scratch;
        }
        if let Some(&s) = named_above.get(base.as_str()) {
            return Base::Stage(s);
        }
        match Reference::parse(&base).map(|r| r.to_string()) {
            Ok(r) => Base::Image(r),
            Err(error) => {
                let hint = suggest(&base, self.stages.names(), false);
                self.report(LowerError::InvalidBase {
                    at,
                    base,
                    error,
                    hint,
                });
                Base::Invalid
            }
        }
    }

    /// The platform `FROM --platform=expression` (at `at`) asks for.
    fn platform_flag(&mut self, expression: &str, at: SourceLoc) -> Option<Platform> {
        let error = match self.lex.expand(expression, &self.global) {
            Err(error) => LowerError::PlatformArgs { at, error },
            Ok(v) if v.is_empty() => LowerError::EmptyPlatform {
                at,
                expression: expression.to_owned(),
            },
            Ok(v) => match Platform::parse(&v, &self.opts.target_platform) {
                Ok(p) => return Some(p),
                Err(error) => LowerError::InvalidPlatform {
                    at,
                    expression: expression.to_owned(),
                    error,
                },
            },
        };
        self.report(error);
        None
    }

    /// BuildKit's `UndefinedArgInFrom` lint: a FROM line names a variable no global ARG
    /// declares (and that is not a platform arg).
    fn undefined_from_args(&mut self, word: &str, at: SourceLoc) {
        let Ok(e) = self.lex.process(word, &self.global) else {
            return;
        };
        for name in e.unmatched {
            if !self.declared_global(&name) {
                let hint = suggest(&name, self.global.keys().collect::<Vec<_>>(), true);
                self.diags.push(
                    Diagnostic::warning(
                        at,
                        &rule::UNDEFINED_ARG_IN_FROM,
                        format!("FROM argument '{name}' is not declared"),
                    )
                    .with_suggestion(hint),
                );
            }
        }
    }

    /// BuildKit's `RedundantTargetPlatform` and `FromPlatformFlagConstDisallowed` on the
    /// `--platform` expression of the stage `stage_name` (lower case, maybe empty).
    fn platform_lints(&mut self, expression: &str, stage_name: &str, at: SourceLoc) {
        let Ok(e) = self.lex.process(expression, &self.global) else {
            return;
        };
        let mut matched = e.matched.clone();
        matched.sort_unstable();
        matched.dedup();
        if matched == ["TARGETPLATFORM"]
            && e.unmatched.is_empty()
            && self.global.get("TARGETPLATFORM") == Some(e.value.as_str())
        {
            self.diags.push(Diagnostic::warning(
                at,
                &rule::REDUNDANT_TARGET_PLATFORM,
                format!(
                    "Setting platform to predefined {expression} in FROM is redundant as this is the default behavior"
                ),
            ));
        }
        if !matched.is_empty() || !e.unmatched.is_empty() {
            return;
        }
        let Ok(p) = Platform::parse(&e.value, &self.opts.target_platform) else {
            return;
        };
        if stage_name.contains(p.os.as_str()) || stage_name.contains(p.arch.as_str()) {
            return;
        }
        self.diags.push(Diagnostic::warning(
            at,
            &rule::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
            format!(
                "FROM --platform flag should not use constant value {:?}",
                e.value
            ),
        ));
    }

    /// BuildKit's `InvalidDefaultArgInFrom`: with no build argument given (the global ARGs'
    /// defaults only), a FROM line must still name a valid image.
    pub(super) fn invalid_default_args_in_from(&mut self, defaults: &EnvList) {
        let all = Rc::clone(&self.stages);
        for stage in &all.stages {
            let Ok(base) = self.lex.expand(&stage.base, defaults) else {
                return;
            };
            if base != "scratch" && Reference::parse(&base).is_err() {
                self.diags.push(Diagnostic::warning(
                    stage.range.start,
                    &rule::INVALID_DEFAULT_ARG_IN_FROM,
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        stage.base
                    ),
                ));
            }
        }
    }

    /// Whether a global ARG (before the first FROM) declares `name`.
    fn declared_global(&self, name: &str) -> bool {
        self.global_names.contains(name)
    }

    /// The last stage called `name` (any case).
    pub(super) fn find_stage(&self, name: &str) -> Option<usize> {
        self.by_name.get(name.to_lowercase().as_str()).copied()
    }

    /// Which stages `target` needs, by index.
    pub(super) fn reachable_from(&self, target: usize) -> Vec<bool> {
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

    /// Stage `i`'s platform (once planned).
    pub(super) fn stage_platform(&self, i: usize) -> Platform {
        self.platforms[i].clone()
    }

    /// Resolves stage `i`'s base image and the images its commands read.
    pub(super) fn resolve_stage_images(&mut self, i: usize) {
        let platform = self.stage_platform(i);
        let at = self.stages.stages[i].range.start;
        if let Base::Image(r) = self.plans[i].base.clone()
            && let Some(image) = self.resolve(&r, &platform, at)
            && (image.platform.os != platform.os || image.platform.arch != platform.arch)
        {
            let written = &self.stages.stages[i].base;
            let name = self.lex.expand(written, &self.global).unwrap_or(r);
            self.diags.push(Diagnostic::warning(
                at,
                &rule::INVALID_BASE_IMAGE_PLATFORM,
                format!(
                    "Base image {name} was pulled with platform {:?}, expected {:?} for current build",
                    image.platform.format(),
                    platform.format()
                ),
            ));
        }
        let deps: Vec<Source> = self.plans[i].deps.iter().cloned().collect();
        for d in deps {
            if let Source::Image(r) = d {
                self.resolve(&r, &self.opts.target_platform.clone(), at);
            }
        }
    }

    /// The image `reference` for `platform`, asked of the resolver once; a failure is
    /// reported at `at`.
    pub(super) fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        at: SourceLoc,
    ) -> Option<ResolvedImage> {
        let key = (reference.to_owned(), platform.format());
        if let Some(r) = self.images.get(&key) {
            return r.clone();
        }
        let result = match self.resolver.resolve(reference, platform) {
            Ok(img) => Some(img),
            Err(reason) => {
                let short = reference.trim_start_matches("docker.io/library/");
                let short = short.strip_suffix(":latest").unwrap_or(short);
                let hint = suggest(short, self.stages.names(), false);
                self.report(LowerError::Resolve {
                    at,
                    reference: reference.to_owned(),
                    reason,
                    hint,
                });
                None
            }
        };
        self.images.insert(key, result.clone());
        result
    }

    /// Lowers stage `i`: its base, then each instruction (inherited triggers first).
    pub(super) fn dispatch_stage(&mut self, i: usize) {
        let plan = Plan {
            instructions: std::mem::take(&mut self.plans[i].instructions),
            ..self.plans[i].clone()
        };
        // The steps a label numbers: the base image, layers, and every trigger.
        let cmd_total = usize::from(matches!(plan.base, Base::Image(_)))
            + plan
                .instructions
                .iter()
                .filter(|p| {
                    p.onbuild
                        || matches!(
                            p.cmd.kind,
                            InstructionKind::Run(_)
                                | InstructionKind::Copy(_)
                                | InstructionKind::Add(_)
                                | InstructionKind::Workdir(_)
                        )
                })
                .count();
        let Some(mut d) = self.start_stage(i, &plan.base, cmd_total) else {
            return;
        };
        // BuildKit makes sure PATH is always set.
        refresh_env_index(&d.config, &mut d.config_env_index);
        if !d.config_env_index.contains_key("PATH") && d.platform.os != "windows" {
            d.config.env.push(format!("PATH={DEFAULT_PATH}"));
            d.env.set("PATH", DEFAULT_PATH);
        }

        for p in &plan.instructions {
            d.onbuild = p.onbuild;
            if let Err(e) = self.dispatch(i, &mut d, &p.cmd) {
                self.report(e);
            }
        }
        d.onbuild = false;
        self.stage_nodes[i] = Some(d.node);
        self.done[i] = Some(d);
        self.stage_done[i] = true;
    }

    /// The state stage `i` starts in: its base stage's, or a fresh one on scratch or on its
    /// base image (whose env, working directory and user it takes). `None` when the base is
    /// not there (already reported).
    fn start_stage(&mut self, i: usize, base: &Base, cmd_total: usize) -> Option<Dispatch> {
        let all = Rc::clone(&self.stages);
        let stage = &all.stages[i];
        let label_name = if self.multi_stage {
            stage.display_name()
        } else {
            String::new()
        };
        let platform = self.stage_platform(i);
        Some(match base {
            Base::Stage(b) => {
                let mut parent = self.inherit(*b)?;
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
                let img = self
                    .images
                    .get(&(r.clone(), platform.format()))
                    .cloned()
                    .flatten()?;
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
                d.base_env_unknown =
                    self.opts.base_config_unknown || !self.resolver.config_known(&img.reference);
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
            Base::Invalid => return None,
        })
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
}
