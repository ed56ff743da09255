//! Stages: which ones the target needs, what each is built on, its platform and base image,
//! and the walk through one stage's instructions.

use super::context::{DEFAULT_PATH, Dispatch, fresh_dispatch, prefix_label, refresh_env_index};
use super::path::normalize_workdir;
use super::source::Source;
use super::{Lowering, ResolvedImage};
use crate::diagnostic::{Diagnostic, suggest};
use crate::instruction::{Command, Instr};
use crate::platform::Platform;
use crate::reference::normalize_reference;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use strata_graph::ImageConfig;

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
    pub(super) cmd: Command,
    pub(super) onbuild: bool,
}

/// A stage as planned before it is lowered: its base, platform, instructions (triggers
/// first) and the stages and images it reads from.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) base: Base,
    pub(super) platform: Option<Platform>,
    pub(super) commands: Vec<Pending>,
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
                        match normalize_reference(&base) {
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
                for (source, counts) in self.command_sources(&c.instr) {
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
    pub(super) fn undefined_from_args(&mut self, word: &str, at: strata_graph::SourceLoc) {
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
    pub(super) fn declared_global(&self, name: &str) -> bool {
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

    pub(super) fn stage_platform(&self, i: usize) -> Platform {
        self.platforms[i].clone()
    }

    pub(super) fn resolve_stage_images(&mut self, i: usize) {
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

    pub(super) fn resolve(
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

    pub(super) fn dispatch_stage(&mut self, i: usize) {
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
    pub(super) fn inherit(&mut self, b: usize) -> Option<Dispatch> {
        self.heirs[b] = self.heirs[b].saturating_sub(1);
        if self.heirs[b] == 0 && self.target != Some(b) {
            self.done[b].take()
        } else {
            self.done[b].clone()
        }
    }
}
