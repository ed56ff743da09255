//! Stages: a Dockerfile typed into its global ARGs and its `FROM` sections, and how a stage
//! is named from elsewhere (`FROM build`, `COPY --from=1`, `RUN --mount=from=Build`).

use crate::ast;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::instruction::{ArgDecl, InstructionKind, Typed, TypedInstruction, type_instruction};
use crate::rule::{self, CheckConfig};
use std::collections::HashSet;
use strata_graph::SourceRange;

/// A Dockerfile after instruction checks: global ARGs, then stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARGs before the first FROM (usable in FROM lines).
    pub meta_args: Vec<(ArgDecl, SourceRange)>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
}

/// One `FROM` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in the file, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base as written (image, stage name or `scratch`), not expanded.
    pub base: String,
    /// `--platform` as written, not expanded.
    pub platform: Option<String>,
    /// The FROM line, trimmed.
    pub source: String,
    /// Where the FROM line is.
    pub range: SourceRange,
    /// The instructions after FROM, up to the next FROM.
    pub instructions: Vec<TypedInstruction>,
}

impl Stage {
    /// The name BuildKit shows in progress for a stage of a multi-stage build: its name, or
    /// `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

impl Stages {
    /// Types every instruction of `df`, recording problems in `diags` and going on without
    /// the instruction that had one.
    pub fn from_ast(df: &ast::Dockerfile, diags: &mut Diagnostics) -> Self {
        let mut out = Stages {
            meta_args: Vec::new(),
            stages: Vec::new(),
            escape: char::from(df.escape),
        };
        let mut warnings = Vec::new();
        // The stage names seen so far.
        let mut named: HashSet<String> = HashSet::new();
        // After a FROM that is wrong, the instructions up to the next FROM are still checked
        // but belong to no stage (not to the stage before).
        let mut orphaned = false;
        for i in &df.instructions {
            misplaced_directives(i, diags);
            match type_instruction(i, &mut warnings) {
                Err(d) => {
                    orphaned |= i.kind == ast::Keyword::From;
                    diags.push(d);
                }
                Ok(Typed::Instruction(cmd)) if orphaned => arg_description(i, &cmd, diags),
                Ok(Typed::From(from)) => {
                    orphaned = false;
                    if let Some(name) = &from.name {
                        definition_description(i, "FROM", std::slice::from_ref(name), diags);
                    }
                    let index = out.stages.len();
                    if let Some(name) = &from.name
                        && !named.insert(name.clone())
                    {
                        diags.push(Diagnostic::warning(
                            i.loc(),
                            &rule::DUPLICATE_STAGE_NAME,
                            format!("Duplicate stage name {name:?}, stage names should be unique"),
                        ));
                    }
                    out.stages.push(Stage {
                        index,
                        name: from.name,
                        base: from.base,
                        platform: from.platform,
                        source: i.original.to_string_lossy().trim().to_owned(),
                        range: i.range,
                        instructions: Vec::new(),
                    });
                }
                Ok(Typed::Instruction(cmd)) => {
                    arg_description(i, &cmd, diags);
                    match out.stages.last_mut() {
                        Some(stage) => stage.instructions.push(cmd),
                        None => match cmd.kind {
                            InstructionKind::Arg(decls) => out
                                .meta_args
                                .extend(decls.into_iter().map(|d| (d, cmd.range))),
                            _ => diags.error(i.loc(), "no build stage in current context"),
                        },
                    }
                }
            }
        }
        crate::instruction::instruction_casing(&df.instructions, &mut warnings);
        for w in warnings {
            diags.push(w);
        }
        if out.stages.is_empty() && !diags.has_errors() {
            diags.error(df.range.start, "dockerfile contains no stages to build");
        }
        out
    }

    /// The stage called `name` (case-insensitive), the latest definition winning as in
    /// BuildKit, or the stage at index `name`.
    pub fn find(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_lowercase();
        self.stages
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// Resolves a stage reference as `COPY --from` does: a number is an index, a name a stage.
    /// `Ok(None)` means it is not a stage (an image). `before` limits named lookups to stages
    /// defined before that index (BuildKit resolves `FROM name` when it reaches the line).
    pub fn resolve_ref(&self, name: &str) -> Result<Option<usize>, String> {
        if let Ok(index) = name.parse::<i64>() {
            return match usize::try_from(index)
                .ok()
                .filter(|i| *i < self.stages.len())
            {
                Some(i) => Ok(Some(i)),
                None => Err(format!("invalid stage index {index}")),
            };
        }
        Ok(self.find(name).map(|s| s.index))
    }

    /// The stage names, for "did you mean".
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().filter_map(|s| s.name.as_deref())
    }
}

/// [`definition_description`] for an ARG.
fn arg_description(i: &ast::Instruction, cmd: &TypedInstruction, diags: &mut Diagnostics) {
    if let InstructionKind::Arg(decls) = &cmd.kind {
        let keys: Vec<String> = decls.iter().map(|d| d.key.clone()).collect();
        definition_description(i, "ARG", &keys, diags);
    }
}

/// BuildKit's experimental `InvalidDefinitionDescription`: the comment right above a named
/// stage or an ARG describes it (`--call=outline`), so it starts with its name.
fn definition_description(
    i: &ast::Instruction,
    instruction: &str,
    keys: &[String],
    diags: &mut Diagnostics,
) {
    let Some(last) = i.comments.last() else {
        return;
    };
    let text = last.text.to_string_lossy();
    let first = text.trim().split(' ').next().unwrap_or("");
    if keys.is_empty() || keys.iter().any(|k| k == first) {
        return;
    }
    let example = match keys {
        [one] => one.as_str(),
        _ => "<arg_key>",
    };
    diags.push(Diagnostic::warning(
        i.loc(),
        &rule::INVALID_DEFINITION_DESCRIPTION,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    ));
}

/// A comment that looks like a parser directive but comes after the directive area is an
/// ordinary comment to BuildKit; warn, since the author surely meant it.
fn misplaced_directives(i: &ast::Instruction, diags: &mut Diagnostics) {
    for c in &i.comments {
        let text = c.text.to_string_lossy();
        // BuildKit drops the first byte of a comment line, so an indented comment keeps its
        // `#`; either way the author wrote `# name=value`.
        let text = text.trim_start_matches('#');
        let Some((name, _)) = text.split_once('=') else {
            continue;
        };
        let name = name.trim().to_lowercase();
        // `# check=skip=...` right above an instruction configures that instruction's checks;
        // `error=` there is ignored (BuildKit merges skips and experimental rules only).
        let applies =
            CheckConfig::from_comment(&c.text.to_string_lossy()).is_some_and(|c| !c.error);
        if matches!(name.as_str(), "syntax" | "escape" | "check") && !applies {
            diags.push(Diagnostic::warning(
                c.loc,
                &rule::MISPLACED_PARSER_DIRECTIVE,
                format!(
                    "parser directive {name:?} is ignored here: directives must come before any other line, comment or blank line"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_after_a_bad_from_belong_to_no_stage() {
        let df =
            crate::parse(b"FROM a AS one\nRUN x\nFROM b AS 2bad\nRUN y\nFROM c AS three\nRUN z\n")
                .unwrap();
        let mut diags = Diagnostics::new();
        let stages = Stages::from_ast(&df, &mut diags);
        assert_eq!(diags.errors().count(), 1);
        let counts: Vec<(Option<&str>, usize)> = stages
            .stages
            .iter()
            .map(|s| (s.name.as_deref(), s.instructions.len()))
            .collect();
        assert_eq!(counts, [(Some("one"), 1), (Some("three"), 1)]);
        assert_eq!(stages.find("THREE").map(|s| s.index), Some(1));
        assert_eq!(stages.resolve_ref("1"), Ok(Some(1)));
        assert_eq!(stages.resolve_ref("5"), Err("invalid stage index 5".into()));
        assert_eq!(stages.resolve_ref("alpine"), Ok(None));
    }

    #[test]
    fn directives_out_of_place_are_warned_about_where_they_are() {
        let df = crate::parse(
            b"# syntax=a/b\n# hello\n# escape=`\nFROM x\n# check=error=true\n\n  # syntax=c\nRUN y\n# check=skip=all\nRUN z\n",
        )
        .unwrap();
        // `# check=skip=all` above RUN z configures RUN z's checks (BuildKit): no warning;
        // `error=true` there would be ignored: a warning.
        let mut diags = Diagnostics::new();
        Stages::from_ast(&df, &mut diags);
        let found: Vec<String> = diags
            .iter()
            .map(|d| format!("{}: {}", d.loc, d.message))
            .collect();
        let warning = |loc: &str, name: &str| {
            format!(
                "{loc}: parser directive {name:?} is ignored here: directives must come before any other line, comment or blank line"
            )
        };
        assert_eq!(
            found,
            [
                warning("3:1", "escape"),
                warning("5:1", "check"),
                warning("7:3", "syntax")
            ]
        );
    }

    #[test]
    fn meta_args_and_commands_before_from() {
        let df = crate::parse(b"ARG A=1 B\nRUN nope\nFROM x\n").unwrap();
        let mut diags = Diagnostics::new();
        let stages = Stages::from_ast(&df, &mut diags);
        let keys: Vec<&str> = stages
            .meta_args
            .iter()
            .map(|(d, _)| d.key.as_str())
            .collect();
        assert_eq!(keys, ["A", "B"]);
        assert_eq!(
            diags.to_string(),
            "Dockerfile:2:1: no build stage in current context"
        );
    }
}
