//! The Dockerfile frontend: bytes in, a build [`strata_graph::Graph`] out. Owns Dockerfile
//! syntax (the nom parser and BuildKit's dump format), parser directives and heredocs, the
//! typed instruction model, word expansion, ARG/ENV scoping, stage resolution, `.dockerignore`
//! matching and lowering. Does no I/O: callers pass the Dockerfile's bytes and whatever it
//! needs to know about base images. Image references and platforms are the store's words
//! ([`strata_store::Reference`], [`Platform`]); the frontend uses their parsers, never the
//! store's disk.
#![warn(missing_docs)]

// Syntax: the raw parse (BuildKit's parser and dump format). Start at [`parse`].
mod ast;
mod dump;
mod parser;
mod quote;
mod rune;
pub use ast::{
    Arg, Args, Comment, Directive, Dockerfile, Flag, Heredoc, Instruction, KeyValue, Keyword, Text,
    Warning, WarningKind,
};
pub use dump::{dump, dump_instruction};
pub use parser::{ParseError, ParseErrorKind, parse};
pub use quote::go_quote;

// Semantics: expansion, typed instructions, scoping, .dockerignore, lowering. Start at
// [`lower`] (a parsed Dockerfile to a graph) or [`check`] (every problem in a Dockerfile);
// the context walker uses [`IgnoreMatcher`], `import --change` [`apply_changes`].
mod change;
mod diagnostic;
mod dockerignore;
mod duration;
mod expand;
mod history;
mod instruction;
mod lower;
mod mount;
pub mod rule;
mod scope;
mod stage;

pub use change::{CHANGE_INSTRUCTIONS, ChangeError, apply_changes};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use dockerignore::{
    IgnoreError, IgnoreFileSource, IgnoreMatcher, dockerfile_ignore_name, pick_ignore_file,
};
pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use expand::{
    ExpandError, ExpandErrorKind, Expansion, Lexer, MAX_GROWTH, MAX_NESTING, NoVars, Vars, expand,
};
pub use instruction::{
    ArgDecl, CommandLine, CopyInstruction, FromInstruction, InlineFile, InstructionKind, NameValue,
    RunInstruction, SourceContent, TypedInstruction,
};
pub use lower::{BuildOptions, ImageResolver, Lowered, ResolvedImage, check, lower};
pub use mount::{MountType, RunMount, parse_csv_record, parse_human_size, parse_ram_bytes};
pub use rule::{CheckConfig, RULES, Rule};
pub use scope::{EnvList, PROXY_ARGS};
pub use stage::{Stage, Stages};
pub use strata_graph::pattern::{DirVisit, ParentMatches, PatternMatcher};
/// The platform words are the store's: one type for `--platform`, `FROM --platform` and images.
pub use strata_store::{Platform, PlatformError};
