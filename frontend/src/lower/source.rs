//! The filesystems an instruction reads besides its own stage (`COPY --from`, `RUN
//! --mount=from=`, the build context) and the graph nodes that stand for them.

use super::error::LowerError;
use super::mount::mount_type_and_from;
use super::{Lowering, ResolvedImage};
use crate::diagnostic::suggest;
use crate::expand::Lexer;
use crate::instruction::InstructionKind;
use crate::mount::MountType;
use crate::scope::EnvList;
use strata_graph::{ImageSource, NodeId, Op, SourceLoc, SourceRange};
use strata_store::Reference;

/// A reference from a command to another filesystem (`COPY --from`, `--mount from=`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Source {
    Stage(usize),
    Image(String),
    Scratch,
}

impl Lowering<'_> {
    /// The filesystems a command reads besides its own stage; the flag says whether BuildKit
    /// counts it as an extra (unregistered) stage. Errors are at `at`, the command's place.
    pub(super) fn command_sources(
        &self,
        instr: &InstructionKind,
        at: SourceLoc,
    ) -> Vec<(Result<Source, LowerError>, bool)> {
        let mut out = Vec::new();
        match instr {
            InstructionKind::Copy(c) => {
                if let Some(from) = &c.from {
                    out.push(self.source_for(from, true, at));
                }
            }
            InstructionKind::Run(r) => {
                for (raw, _) in &r.mounts {
                    let (kind, from) = mount_type_and_from(raw);
                    match (kind, from) {
                        (Some(MountType::Tmpfs), _) => {}
                        (Some(MountType::Cache), None) => out.push((Ok(Source::Scratch), true)),
                        (_, Some(from)) => out.push(self.source_for(&from, false, at)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// What `from` (of `COPY --from` when `copy`, else of `--mount from=`) names; the flag
    /// says whether BuildKit counts it as an extra stage.
    fn source_for(
        &self,
        from: &str,
        copy: bool,
        at: SourceLoc,
    ) -> (Result<Source, LowerError>, bool) {
        if copy && from.contains('$') {
            let changed = Lexer::new(self.stages.escape)
                .expand(from, &EnvList::new())
                .map_or(true, |r| r != from);
            if changed {
                return (Err(LowerError::FromVariable { at }), false);
            }
        }
        if let Ok(index) = from.parse::<i64>() {
            return match self.stages.resolve_ref(from) {
                Ok(Some(i)) => (Ok(Source::Stage(i)), false),
                _ => (Err(LowerError::StageIndex { at, index }), false),
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
            Err(error) => {
                let hint = suggest(from, self.stages.names(), false);
                let e = LowerError::NotStageOrImage {
                    at,
                    from: from.to_owned(),
                    error,
                    hint,
                };
                (Err(e), false)
            }
        }
    }

    /// The build context's node (made once).
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

    /// The node of a resolved image (one per image ID).
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

    /// A new empty filesystem node.
    pub(super) fn scratch_node(&mut self, label: String, range: Option<SourceRange>) -> NodeId {
        let id = self.graph.add(Op::Scratch, vec![], label, range);
        self.order.push(id);
        id
    }

    /// The node for what `from` (of `COPY --from` when `copy`, else of `--mount from=`)
    /// names, read by a command of stage `current` at `at`.
    pub(super) fn source_node_for(
        &mut self,
        from: &str,
        copy: bool,
        current: usize,
        at: SourceLoc,
    ) -> Result<NodeId, LowerError> {
        let (source, _) = self.source_for(from, copy, at);
        self.source_node(&source?, current, at)
    }

    /// The node for a `--from`/`from=` source.
    fn source_node(
        &mut self,
        source: &Source,
        current: usize,
        at: SourceLoc,
    ) -> Result<NodeId, LowerError> {
        let name = |s: usize| self.stages.stages[s].display_name();
        match source {
            Source::Scratch => Ok(self.scratch_node("scratch".into(), None)),
            Source::Stage(s) if *s == current => Err(LowerError::CircularDependency {
                at,
                stage: name(current),
            }),
            Source::Stage(s) => match self.stage_nodes[*s] {
                Some(node) => Ok(node),
                None if *s > current => Err(LowerError::StageDefinedLater {
                    at,
                    stage: name(*s),
                    current: name(current),
                }),
                None => Err(LowerError::StageNotBuilt {
                    at,
                    stage: name(*s),
                }),
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
                    None => Err(LowerError::ImageNotResolved {
                        at,
                        reference: r.clone(),
                    }),
                }
            }
        }
    }
}
