//! ONBUILD: the triggers a stage inherits from its base image or base stage, run before its
//! own instructions.

use super::Lowering;
use super::error::{LowerError, TriggerError};
use super::source::Source;
use super::stage::{Base, Pending};
use crate::instruction::{InstructionKind, Typed, TypedInstruction, type_instruction};
use std::collections::BTreeSet;
use strata_graph::SourceRange;

impl Lowering<'_> {
    /// Adds the ONBUILD triggers a stage inherits (from its base image's config, or from its
    /// base stage's ONBUILD instructions) in front of its commands. True when they brought in
    /// a stage that was not reachable before.
    pub(super) fn add_triggers(&mut self, i: usize) -> bool {
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
                .instructions
                .iter()
                .filter_map(|c| match &c.kind {
                    InstructionKind::Onbuild(e) => Some(e.clone()),
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
                Err(error) => self.report(LowerError::Trigger {
                    at: range.start,
                    text,
                    error,
                }),
            }
        }
        let before: BTreeSet<Source> = self.plans[i].deps.clone();
        for t in &triggers {
            for (s, _) in self.command_sources(&t.cmd.kind, range.start) {
                match s {
                    Ok(s) => {
                        self.plans[i].deps.insert(s);
                    }
                    Err(e) => self.report(e),
                }
            }
        }
        let grew = self.plans[i].deps != before;
        triggers.append(&mut self.plans[i].instructions);
        self.plans[i].instructions = triggers;
        grew
    }
}

/// Parses an ONBUILD trigger's text into one command (it may not be FROM).
fn parse_trigger(text: &str, range: SourceRange) -> Result<TypedInstruction, TriggerError> {
    let df = crate::parse(text.as_bytes()).map_err(TriggerError::Parse)?;
    if df.instructions.len() != 1 {
        return Err(TriggerError::NotSingle);
    }
    let mut warnings = Vec::new();
    match type_instruction(&df.instructions[0], &mut warnings).map_err(TriggerError::Invalid)? {
        Typed::From(_) => Err(TriggerError::From),
        Typed::Instruction(mut c) => {
            c.range = range;
            Ok(c)
        }
    }
}
