//! The filesystems an instruction reads besides its own stage (`COPY --from`, `RUN
//! --mount=from=`, the build context) and the graph nodes that stand for them.

use super::mount::mount_type_and_from;
use super::{Lowering, ResolvedImage};
use crate::diagnostic::suggest;
use crate::expand::Lexer;
use crate::instruction::Instr;
use crate::mount::MountType;
use crate::reference::normalize_reference;
use crate::scope::EnvList;
use strata_graph::{ImageSource, NodeId, Op, SourceRange};

/// A reference from a command to another filesystem (`COPY --from`, `--mount from=`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Source {
    Stage(usize),
    Image(String),
    Scratch,
}

impl Lowering<'_> {
    /// The filesystems a command reads besides its own stage; the flag says whether BuildKit
    /// counts it as an extra (unregistered) stage.
    pub(super) fn command_sources(&self, instr: &Instr) -> Vec<(Result<Source, String>, bool)> {
        let mut out = Vec::new();
        match instr {
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

    pub(super) fn source_for(&self, from: &str, copy: bool) -> (Result<Source, String>, bool) {
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
        match normalize_reference(from) {
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

    pub(super) fn context_node(&mut self) -> NodeId {
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

    pub(super) fn image_node(
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

    pub(super) fn scratch_node(&mut self, label: String, range: Option<SourceRange>) -> NodeId {
        let id = self.graph.add(Op::Scratch, vec![], label, range);
        self.order.push(id);
        id
    }

    /// The node for a `--from`/`from=` source, or an error message.
    pub(super) fn source_node(
        &mut self,
        source: &Source,
        current: usize,
    ) -> Result<NodeId, String> {
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
}
