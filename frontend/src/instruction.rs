//! Typed instructions: each raw [`ast::Instruction`] checked and turned into an [`InstructionKind`]
//! with its flags parsed, as BuildKit's `instructions/parse.go` does.
//!
//! This is where a Dockerfile that parsed can still be wrong: an unknown keyword, a flag the
//! instruction does not take, the wrong number of arguments, `ARG =x`, a non-JSON `SHELL`.
//! Values stay as written here (quotes included where the parser kept them): expansion needs
//! the variables in scope at that point of the build, so it happens during lowering.

use crate::ast::{self, Args, Keyword};
use crate::diagnostic::{Diagnostic, suggest};
use crate::duration::parse_go_duration;
use crate::rule;
use std::borrow::Cow;
use strata_graph::{Healthcheck, NetworkMode, SecurityMode, SourceLoc, SourceRange};

/// One typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedInstruction {
    /// The instruction.
    pub kind: InstructionKind,
    /// Its lines in the Dockerfile.
    pub range: SourceRange,
    /// The logical line, trimmed (BuildKit's `String()` of a command, used in labels).
    pub source: String,
}

/// The instructions that may appear inside a stage (FROM starts a [`crate::Stage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `RUN`.
    Run(RunInstruction),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT` (an empty JSON array clears it).
    Entrypoint(CommandLine),
    /// `HEALTHCHECK` (durations in ns).
    Healthcheck(Healthcheck),
    /// `SHELL` (JSON only).
    Shell(Vec<String>),
    /// `ENV`.
    Env(Vec<NameValue>),
    /// `LABEL`.
    Label(Vec<NameValue>),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `EXPOSE`, ports as written (sorted, as BuildKit sorts them before expansion).
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `ONBUILD`: the trigger text stored in the image.
    Onbuild(String),
    /// `ADD`.
    Add(CopyInstruction),
    /// `COPY`.
    Copy(CopyInstruction),
}

impl InstructionKind {
    /// The instruction's name (`RUN`).
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
        }
    }
}

/// A command line of RUN, CMD or ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the argv; shell form: one string, the command text.
    pub args: Vec<String>,
    /// Shell form: the SHELL is put in front when it runs.
    pub prepend_shell: bool,
    /// Heredoc bodies on the line (RUN only).
    pub files: Vec<InlineFile>,
}

/// A heredoc body given to a RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The terminator word.
    pub name: String,
    /// The body, as read.
    pub data: String,
    /// `<<-`: leading tabs are removed.
    pub chomp: bool,
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    /// The command.
    pub cmd: CommandLine,
    /// `--mount` values as written, with where each flag is (parsed during lowering, after
    /// expansion).
    pub mounts: Vec<(String, SourceLoc)>,
    /// `--network`, when given (otherwise the build's default applies).
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: SecurityMode,
}

/// One `key=value` of ENV or LABEL, as written (quotes kept; expansion removes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// One `name[=default]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub key: String,
    /// The default, as written.
    pub value: Option<String>,
}

/// ADD or COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    /// Source paths, globs or URLs, as written.
    pub sources: Vec<String>,
    /// Heredoc sources: files made from the body.
    pub contents: Vec<SourceContent>,
    /// The destination, as written.
    pub dest: String,
    /// `--from` (COPY).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY).
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--checksum` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: Option<bool>,
    /// `--unpack` (ADD).
    pub unpack: Option<bool>,
}

/// A COPY/ADD source written as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// The file name (the heredoc's terminator word).
    pub path: String,
    /// The body (tabs already removed for `<<-`).
    pub data: String,
    /// Whether variables in the body are expanded (the word was not quoted).
    pub expand: bool,
}

/// A `FROM` line, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstruction {
    /// The base: an image reference, a stage name, or `scratch`; not yet expanded.
    pub base: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform`, not yet expanded.
    pub platform: Option<String>,
}

/// What a raw instruction turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Typed {
    From(FromInstruction),
    Instruction(TypedInstruction),
}

/// Flag kinds, as BuildKit's `BFlags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// The flags an instruction was given, by name.
#[derive(Debug, Default)]
struct Flags {
    values: Vec<(&'static str, String, SourceLoc)>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| v.as_str())
    }

    fn loc(&self, name: &str) -> Option<SourceLoc> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, l)| *l)
    }

    fn strings(&self, name: &str) -> Vec<(String, SourceLoc)> {
        self.values
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, v, l)| (v.clone(), *l))
            .collect()
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// BuildKit's `BFlags.Parse`: every flag must be one the instruction takes, once (except
/// repeatable ones), with a value when it needs one.
fn parse_flags(
    i: &ast::Instruction,
    specs: &[(&'static str, FlagKind)],
) -> Result<Flags, Diagnostic> {
    let mut out = Flags::default();
    let mut used: Vec<&str> = Vec::new();
    for flag in &i.flags {
        let text = flag.text.to_string_lossy();
        let Some(word) = text.strip_prefix("--") else {
            return Err(Diagnostic::error(
                flag.loc,
                format!("arg should start with -- : {text}"),
            ));
        };
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        let Some(&(spec_name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            let hint = suggest(name, specs.iter().map(|(n, _)| *n), true);
            return Err(
                Diagnostic::error(flag.loc, format!("unknown flag: {name}")).with_suggestion(hint)
            );
        };
        if used.contains(&spec_name) && kind != FlagKind::Strings {
            return Err(Diagnostic::error(
                flag.loc,
                format!("duplicate flag specified: {name}"),
            ));
        }
        used.push(spec_name);
        let value = match kind {
            FlagKind::Bool => match value {
                Some("") => {
                    return Err(Diagnostic::error(
                        flag.loc,
                        format!("missing a value on flag: {name}"),
                    ));
                }
                None => "true".to_owned(),
                Some(v) => match v.to_lowercase().as_str() {
                    l @ ("true" | "false") => l.to_owned(),
                    _ => {
                        return Err(Diagnostic::error(
                            flag.loc,
                            format!("expecting boolean value for flag {name}, not: {v}"),
                        ));
                    }
                },
            },
            FlagKind::String | FlagKind::Strings => match value {
                Some(v) => v.to_owned(),
                None => {
                    return Err(Diagnostic::error(
                        flag.loc,
                        format!("missing a value on flag: {name}"),
                    ));
                }
            },
        };
        out.values.push((spec_name, value, flag.loc));
    }
    Ok(out)
}

/// Instruction names BuildKit knows, for "did you mean".
pub(crate) const INSTRUCTION_NAMES: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Checks one raw instruction and types it. Lint findings go to `warnings`.
pub(crate) fn type_instruction(
    i: &ast::Instruction,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Typed, Diagnostic> {
    let instr = match i.kind {
        Keyword::Unknown => return Err(unknown_instruction(i)),
        Keyword::From => return type_from(i, warnings).map(Typed::From),
        Keyword::Env | Keyword::Label => type_env_or_label(i, warnings)?,
        Keyword::Maintainer => {
            let author = exactly_one_argument(i)?;
            parse_flags(i, &[])?;
            warnings.push(Diagnostic::warning(
                i.loc(),
                &rule::MAINTAINER_DEPRECATED,
                "Maintainer instruction is deprecated in favor of using label",
            ));
            InstructionKind::Maintainer(author)
        }
        Keyword::Add | Keyword::Copy => type_copy(i, i.kind == Keyword::Add)?,
        Keyword::Onbuild => InstructionKind::Onbuild(type_onbuild(i, warnings)?),
        Keyword::Workdir => {
            let dir = exactly_one_argument(i)?;
            parse_flags(i, &[])?;
            InstructionKind::Workdir(dir)
        }
        Keyword::Run => InstructionKind::Run(type_run(i)?),
        Keyword::Cmd => {
            parse_flags(i, &[])?;
            InstructionKind::Cmd(command_line(i))
        }
        Keyword::Entrypoint => {
            parse_flags(i, &[])?;
            InstructionKind::Entrypoint(command_line(i))
        }
        Keyword::Healthcheck => InstructionKind::Healthcheck(type_healthcheck(i)?),
        Keyword::Expose => {
            let mut ports = at_least_one_argument(i)?;
            parse_flags(i, &[])?;
            ports.sort();
            InstructionKind::Expose(ports)
        }
        Keyword::User => {
            let user = exactly_one_argument(i)?;
            parse_flags(i, &[])?;
            InstructionKind::User(user)
        }
        Keyword::Volume => InstructionKind::Volume(type_volume(i)?),
        // BuildKit does not read STOPSIGNAL's flags at all.
        Keyword::Stopsignal => InstructionKind::StopSignal(exactly_one_argument(i)?),
        // Nor ARG's.
        Keyword::Arg => InstructionKind::Arg(type_arg(i)?),
        Keyword::Shell => InstructionKind::Shell(type_shell(i)?),
    };
    Ok(Typed::Instruction(TypedInstruction {
        kind: instr,
        range: i.range,
        source: instruction_source(i),
    }))
}

/// The logical line, trimmed ([`TypedInstruction::source`]).
fn instruction_source(i: &ast::Instruction) -> String {
    i.original.to_string_lossy().trim().to_owned()
}

/// `unknown instruction: RUNN`, at the keyword, with the nearest known one.
fn unknown_instruction(i: &ast::Instruction) -> Diagnostic {
    let word = i.keyword.to_string_lossy();
    let hint = suggest(&word, INSTRUCTION_NAMES, false);
    Diagnostic::error(i.keyword_loc, format!("unknown instruction: {word}")).with_suggestion(hint)
}

/// The only argument of an instruction that takes one (MAINTAINER, WORKDIR, USER, STOPSIGNAL).
fn exactly_one_argument(i: &ast::Instruction) -> Result<String, Diagnostic> {
    let args = strings(&i.args);
    match <[String; 1]>::try_from(args) {
        Ok([arg]) => Ok(arg),
        Err(_) => Err(Diagnostic::error(
            i.loc(),
            format!("{} requires exactly one argument", i.kind),
        )),
    }
}

/// The arguments of an instruction that needs at least one (EXPOSE, VOLUME, SHELL).
fn at_least_one_argument(i: &ast::Instruction) -> Result<Vec<String>, Diagnostic> {
    let args = strings(&i.args);
    if args.is_empty() {
        return Err(Diagnostic::error(
            i.loc(),
            format!("{} requires at least one argument", i.kind),
        ));
    }
    Ok(args)
}

/// `FROM base [AS name]`, with BuildKit's lints on the stage name.
fn type_from(
    i: &ast::Instruction,
    warnings: &mut Vec<Diagnostic>,
) -> Result<FromInstruction, Diagnostic> {
    let loc = i.loc();
    let words = strings(&i.args);
    let name = match words.as_slice() {
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            Some(stage_name(i, as_word, name, warnings)?)
        }
        [_] => None,
        _ => {
            return Err(Diagnostic::error(
                loc,
                "FROM requires either one or three arguments",
            ));
        }
    };
    let flags = parse_flags(i, &[("platform", FlagKind::String)])?;
    Ok(FromInstruction {
        base: words[0].clone(),
        name,
        platform: flags.string("platform").map(str::to_owned),
    })
}

/// The `name` of `FROM base AS name`, lower-cased: it must be a valid stage name; lints on its
/// casing and on reserved names.
fn stage_name(
    i: &ast::Instruction,
    as_word: &str,
    name: &str,
    warnings: &mut Vec<Diagnostic>,
) -> Result<String, Diagnostic> {
    let loc = i.loc();
    let lower = name.to_lowercase();
    if !valid_stage_name(&lower) {
        return Err(Diagnostic::error(
            loc,
            format!(
                "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
            ),
        ));
    }
    let keyword = i.keyword.to_string_lossy();
    if is_lower(&keyword) != is_lower(as_word) {
        warnings.push(Diagnostic::warning(
            loc,
            &rule::FROM_AS_CASING,
            format!("'{as_word}' and '{keyword}' keywords' casing do not match"),
        ));
    }
    if name != lower {
        warnings.push(Diagnostic::warning(
            loc,
            &rule::STAGE_NAME_CASING,
            format!("Stage name '{name}' should be lowercase"),
        ));
    }
    if lower == "scratch" || lower == "context" {
        warnings.push(Diagnostic::warning(
            loc,
            &rule::RESERVED_STAGE_NAME,
            format!("Stage name should not use the same name as reserved stage {lower:?}"),
        ));
    }
    Ok(lower)
}

/// ENV or LABEL: `key=value` pairs (the legacy `key value` form is linted).
fn type_env_or_label(
    i: &ast::Instruction,
    warnings: &mut Vec<Diagnostic>,
) -> Result<InstructionKind, Diagnostic> {
    let keyword = i.kind;
    parse_flags(i, &[])?;
    let pairs = match &i.args {
        Args::Pairs(pairs) if !pairs.is_empty() => pairs,
        _ => {
            return Err(Diagnostic::error(
                i.loc(),
                format!("{keyword} requires at least one argument"),
            ));
        }
    };
    let mut out = Vec::new();
    for p in pairs {
        if p.key.text.is_empty() {
            return Err(Diagnostic::error(
                p.key.loc,
                format!("{keyword} names can not be blank"),
            ));
        }
        if p.legacy {
            warnings.push(Diagnostic::warning(
                i.loc(),
                &rule::LEGACY_KEY_VALUE_FORMAT,
                format!("\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"),
            ));
        }
        out.push(NameValue {
            key: p.key.text.to_string_lossy().into_owned(),
            value: p.value.text.to_string_lossy().into_owned(),
            legacy: p.legacy,
        });
    }
    Ok(if keyword == Keyword::Env {
        InstructionKind::Env(out)
    } else {
        InstructionKind::Label(out)
    })
}

/// ONBUILD: the trigger's text. A trigger that cannot be typed only fails in the images built
/// FROM this one, so here it is a warning.
fn type_onbuild(
    i: &ast::Instruction,
    warnings: &mut Vec<Diagnostic>,
) -> Result<String, Diagnostic> {
    let err = |msg: String| Diagnostic::error(i.loc(), msg);
    parse_flags(i, &[])?;
    let Args::Onbuild(inner) = &i.args else {
        return Err(err("ONBUILD requires at least one argument".into()));
    };
    match inner.kind {
        Keyword::Onbuild => {
            return Err(err(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()
            ));
        }
        Keyword::From | Keyword::Maintainer => {
            return Err(err(format!(
                "{} isn't allowed as an ONBUILD trigger",
                inner.kind
            )));
        }
        _ => {}
    }
    let mut inner_warnings = Vec::new();
    if let Err(d) = type_instruction(inner, &mut inner_warnings) {
        warnings.push(Diagnostic::warning(
            d.loc,
            &rule::INVALID_ONBUILD_TRIGGER,
            format!(
                "ONBUILD trigger will fail in images built from this one: {}",
                d.text()
            ),
        ));
    }
    Ok(onbuild_expression(i))
}

/// RUN: its flags, the command line, and the mounts that need no variables checked now.
fn type_run(i: &ast::Instruction) -> Result<RunInstruction, Diagnostic> {
    let flags = parse_flags(
        i,
        &[
            ("mount", FlagKind::Strings),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
        ],
    )?;
    let network = run_network(i, &flags)?;
    let security = run_security(i, &flags)?;
    let cmdline = command_line(i);
    if !cmdline.files.is_empty() && (cmdline.args.len() != 1 || !cmdline.prepend_shell) {
        return Err(Diagnostic::error(
            i.loc(),
            format!(
                "parsing produced an invalid run command: {:?}",
                cmdline.args
            ),
        ));
    }
    // Check mount syntax now when it needs no variables; values with `$` are checked
    // once they are expanded.
    let mounts = flags.strings("mount");
    for (value, at) in &mounts {
        if !value.contains('$') {
            crate::mount::parse_mount(value, &mut |v| Ok(v.to_owned()))
                .map_err(|m| Diagnostic::error(*at, m))?;
        }
    }
    Ok(RunInstruction {
        cmd: cmdline,
        mounts,
        network,
        security,
    })
}

/// `RUN --network`.
fn run_network(i: &ast::Instruction, flags: &Flags) -> Result<Option<NetworkMode>, Diagnostic> {
    Ok(match flags.string("network") {
        None => None,
        Some("default") => Some(NetworkMode::Default),
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(other) => {
            let at = flags.loc("network").unwrap_or(i.loc());
            return Err(
                Diagnostic::error(at, format!("unsupported network mode {other:?}"))
                    .with_suggestion(suggest(other, ["default", "none", "host"], true)),
            );
        }
    })
}

/// `RUN --security`.
fn run_security(i: &ast::Instruction, flags: &Flags) -> Result<SecurityMode, Diagnostic> {
    Ok(match flags.string("security") {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            let at = flags.loc("security").unwrap_or(i.loc());
            return Err(
                Diagnostic::error(at, format!("unsupported security mode {other:?}"))
                    .with_suggestion(suggest(other, ["sandbox", "insecure"], true)),
            );
        }
    })
}

/// VOLUME: the paths, none of them blank.
fn type_volume(i: &ast::Instruction) -> Result<Vec<String>, Diagnostic> {
    let args = at_least_one_argument(i)?;
    parse_flags(i, &[])?;
    let mut vols = Vec::new();
    for v in args {
        let v = v.trim();
        if v.is_empty() {
            return Err(Diagnostic::error(
                i.loc(),
                "VOLUME specified can not be an empty string",
            ));
        }
        vols.push(v.to_owned());
    }
    Ok(vols)
}

/// ARG: `name[=default]` declarations.
fn type_arg(i: &ast::Instruction) -> Result<Vec<ArgDecl>, Diagnostic> {
    let words = strings(&i.args);
    if words.is_empty() {
        return Err(Diagnostic::error(
            i.loc(),
            "ARG requires at least one argument",
        ));
    }
    let mut decls = Vec::new();
    for w in words {
        let decl = match w.split_once('=') {
            Some(("", _)) => return Err(Diagnostic::error(i.loc(), "ARG names can not be blank")),
            Some((k, v)) => ArgDecl {
                key: k.to_owned(),
                value: Some(v.to_owned()),
            },
            None => ArgDecl {
                key: w,
                value: None,
            },
        };
        decls.push(decl);
    }
    Ok(decls)
}

/// SHELL: a JSON array only.
fn type_shell(i: &ast::Instruction) -> Result<Vec<String>, Diagnostic> {
    parse_flags(i, &[])?;
    let args = at_least_one_argument(i)?;
    if !i.is_json() {
        return Err(Diagnostic::error(
            i.loc(),
            format!(
                "SHELL requires the arguments to be in JSON form: {}",
                instruction_source(i)
            ),
        ));
    }
    Ok(args)
}

/// The flags ADD takes.
const ADD_FLAGS: [(&str, FlagKind); 7] = [
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("exclude", FlagKind::Strings),
    ("unpack", FlagKind::Bool),
];

/// The flags COPY takes.
const COPY_FLAGS: [(&str, FlagKind); 6] = [
    ("chown", FlagKind::String),
    ("from", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

/// COPY/ADD sources: paths as written, and heredoc markers (not in JSON form) with their
/// bodies.
fn copy_sources(i: &ast::Instruction, srcs: &[String]) -> (Vec<String>, Vec<SourceContent>) {
    let mut sources = Vec::new();
    let mut contents = Vec::new();
    for src in srcs {
        match heredoc_marker(src).filter(|_| !i.is_json()) {
            Some((hname, chomp)) => {
                let body = i
                    .heredocs
                    .iter()
                    .find(|h| h.name.to_string_lossy() == hname)
                    .map(|h| (h.content.to_string_lossy().into_owned(), h.expand));
                let (data, expand) = body.unwrap_or_default();
                contents.push(SourceContent {
                    path: hname,
                    data: if chomp { chomp_heredoc(&data) } else { data },
                    expand,
                });
            }
            None => sources.push(src.clone()),
        }
    }
    (sources, contents)
}

fn type_copy(i: &ast::Instruction, is_add: bool) -> Result<InstructionKind, Diagnostic> {
    let name = if is_add { "ADD" } else { "COPY" };
    let loc = i.loc();
    let args = strings(&i.args);
    if args.len() < 2 {
        return Err(Diagnostic::error(
            loc,
            format!(
                "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
        ));
    }
    let flags = parse_flags(i, if is_add { &ADD_FLAGS } else { &COPY_FLAGS })?;
    let (srcs, dest) = args.split_at(args.len() - 1);
    let dest = dest[0].clone();
    if heredoc_marker(&dest).is_some() && !i.is_json() {
        return Err(Diagnostic::error(
            loc,
            format!("{name} cannot accept a heredoc as a destination"),
        ));
    }
    let (sources, contents) = copy_sources(i, srcs);
    if let Some(chmod) = flags.string("chmod")
        && !chmod.contains('$')
        && !valid_chmod(chmod)
    {
        return Err(Diagnostic::error(
            flags.loc("chmod").unwrap_or(loc),
            format!(
                "invalid chmod parameter: '{chmod}'. it should be octal string and between 0 and 07777"
            ),
        ));
    }
    Ok(CopyInstruction {
        sources,
        contents,
        dest,
        from: flags.string("from").map(str::to_owned),
        chown: flags
            .string("chown")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        chmod: flags
            .string("chmod")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        excludes: flags
            .strings("exclude")
            .into_iter()
            .map(|(v, _)| v)
            .collect(),
        checksum: flags
            .string("checksum")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool("unpack"),
    })
    .map(|c| {
        if is_add {
            InstructionKind::Add(c)
        } else {
            InstructionKind::Copy(c)
        }
    })
}

/// An octal mode up to 07777, or a symbolic one (`u+x,go-w`).
pub(crate) fn valid_chmod(s: &str) -> bool {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return u32::from_str_radix(s, 8).is_ok_and(|m| m <= 0o7777);
    }
    s.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        !ops.is_empty()
            && ops.split_inclusive(['+', '-', '=']).count() > 0
            && ops.starts_with(['+', '-', '='])
            && ops.chars().all(|c| "+-=rwxXstugo".contains(c))
    })
}

fn type_healthcheck(i: &ast::Instruction) -> Result<Healthcheck, Diagnostic> {
    let loc = i.loc();
    let Args::Healthcheck { kind, command } = &i.args else {
        return Err(Diagnostic::error(
            loc,
            "HEALTHCHECK requires at least one argument",
        ));
    };
    let typ = kind.text.to_string_lossy().to_uppercase();
    if typ == "NONE" {
        if !matches!(**command, Args::None) {
            return Err(Diagnostic::error(
                loc,
                "HEALTHCHECK NONE takes no arguments",
            ));
        }
        // BuildKit does not look at the flags of HEALTHCHECK NONE.
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        });
    }
    let flags = parse_flags(
        i,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if typ != "CMD" {
        return Err(Diagnostic::error(
            loc,
            format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"),
        ));
    }
    let (args, json) = match &**command {
        Args::Json(items) => (
            items
                .iter()
                .map(|a| a.text.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            true,
        ),
        Args::Text(a) => (vec![a.text.to_string_lossy().into_owned()], false),
        _ => (Vec::new(), false),
    };
    if args.is_empty() {
        return Err(Diagnostic::error(
            loc,
            "Missing command after HEALTHCHECK CMD",
        ));
    }
    let mut test = vec![if json {
        "CMD".to_owned()
    } else {
        "CMD-SHELL".to_owned()
    }];
    test.extend(args);
    let retries = healthcheck_retries(&flags, loc)?;
    Ok(Healthcheck {
        test,
        interval: healthcheck_duration(&flags, "interval", loc)?,
        timeout: healthcheck_duration(&flags, "timeout", loc)?,
        start_period: healthcheck_duration(&flags, "start-period", loc)?,
        start_interval: healthcheck_duration(&flags, "start-interval", loc)?,
        retries,
    })
}

/// A HEALTHCHECK duration flag in ns (0 when not given); at least 1ms when not 0.
fn healthcheck_duration(flags: &Flags, name: &str, loc: SourceLoc) -> Result<i64, Diagnostic> {
    let Some(v) = flags.string(name) else {
        return Ok(0);
    };
    let at = flags.loc(name).unwrap_or(loc);
    if v.is_empty() {
        return Ok(0);
    }
    let d = parse_go_duration(v).map_err(|e| Diagnostic::error(at, e.to_string()))?;
    if d != 0 && d < 1_000_000 {
        return Err(Diagnostic::error(
            at,
            format!("Interval {name:?} cannot be less than 1ms"),
        ));
    }
    Ok(d)
}

/// HEALTHCHECK `--retries` (0 when not given), not negative.
fn healthcheck_retries(flags: &Flags, loc: SourceLoc) -> Result<i64, Diagnostic> {
    let Some(v) = flags.string("retries").filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let at = flags.loc("retries").unwrap_or(loc);
    let n: i32 = v.parse().map_err(|_| {
        Diagnostic::error(
            at,
            format!("strconv.ParseInt: parsing {v:?}: invalid syntax"),
        )
    })?;
    if n < 0 {
        return Err(Diagnostic::error(
            at,
            format!("--retries cannot be negative ({n})"),
        ));
    }
    Ok(i64::from(n))
}

/// The argument strings BuildKit's node chain holds, for instructions whose arguments are a
/// list (JSON, words or one text).
fn strings(args: &Args) -> Vec<String> {
    match args {
        Args::Json(items) | Args::Words(items) => items
            .iter()
            .map(|a| a.text.to_string_lossy().into_owned())
            .collect(),
        Args::Text(a) => vec![a.text.to_string_lossy().into_owned()],
        _ => Vec::new(),
    }
}

/// CMD/ENTRYPOINT/RUN: exec form as is, shell form as one string (BuildKit's
/// `handleJSONArgs`).
fn command_line(i: &ast::Instruction) -> CommandLine {
    let args = strings(&i.args);
    let json = i.is_json();
    let args = if json || args.is_empty() {
        args
    } else {
        vec![args.join(" ")]
    };
    CommandLine {
        args,
        prepend_shell: !json,
        files: i
            .heredocs
            .iter()
            .map(|h| InlineFile {
                name: h.name.to_string_lossy().into_owned(),
                data: h.content.to_string_lossy().into_owned(),
                chomp: h.chomp,
            })
            .collect(),
    }
}

/// The text stored for an ONBUILD trigger: the line without `ONBUILD` and the spaces after it,
/// then each heredoc body and terminator.
fn onbuild_expression(i: &ast::Instruction) -> String {
    let original = i.original.to_string_lossy();
    let trimmed = original.trim_start();
    let rest = if trimmed.len() >= 7 && trimmed[..7].eq_ignore_ascii_case("onbuild") {
        trimmed[7..].trim_start()
    } else {
        trimmed
    };
    let mut out = rest.to_owned();
    for h in &i.heredocs {
        out.push('\n');
        out.push_str(&h.content.to_string_lossy());
        out.push_str(&h.name.to_string_lossy());
    }
    out
}

/// BuildKit's casing test: a word counts as lower case when lower-casing leaves it unchanged.
fn is_lower(word: &str) -> bool {
    if word.is_ascii() {
        return !word.bytes().any(|b| b.is_ascii_uppercase());
    }
    word.to_lowercase() == word
}

/// BuildKit's `ConsistentInstructionCasing` lint: keywords should follow the file's majority
/// case.
pub(crate) fn instruction_casing(
    instructions: &[ast::Instruction],
    warnings: &mut Vec<Diagnostic>,
) {
    let words: Vec<(Cow<'_, str>, SourceLoc)> = instructions
        .iter()
        .filter(|i| i.kind != Keyword::Unknown)
        .map(|i| (i.keyword.to_string_lossy(), i.keyword_loc))
        .collect();
    let is_upper = |w: &str| {
        if w.is_ascii() {
            !w.bytes().any(|b| b.is_ascii_lowercase())
        } else {
            w.to_uppercase() == w
        }
    };
    let lower = words.iter().filter(|(w, _)| is_lower(w)).count();
    let upper = words.iter().filter(|(w, _)| is_upper(w)).count();
    let (majority_lower, name) = if lower > upper {
        (true, "lowercase")
    } else {
        (false, "uppercase")
    };
    for (w, at) in words {
        let fits = if majority_lower {
            is_lower(&w)
        } else {
            is_upper(&w)
        };
        if !fits {
            warnings.push(Diagnostic::warning(
                at,
                &rule::CONSISTENT_INSTRUCTION_CASING,
                format!("Command '{w}' should match the case of the command majority ({name})"),
            ));
        }
    }
}

/// `^[a-z][a-z0-9-_.]*$`.
pub(crate) fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<EOF`): its name and whether it chomps.
pub(crate) fn heredoc_marker(word: &str) -> Option<(String, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    if rest.contains('<') {
        return None;
    }
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let name: String = rest.chars().filter(|c| *c != '\'' && *c != '"').collect();
    let name = name.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| (name.to_owned(), chomp))
}

/// `<<-`: leading tabs are removed from every line.
pub(crate) fn chomp_heredoc(data: &str) -> String {
    data.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        for ok in ["a", "build", "my-stage_1.x"] {
            assert!(valid_stage_name(ok), "{ok}");
        }
        for bad in ["", "1st", "-x", "a/b", "a b", "A"] {
            assert!(!valid_stage_name(bad), "{bad}");
        }
    }

    #[test]
    fn heredoc_markers() {
        assert_eq!(heredoc_marker("<<EOF"), Some(("EOF".into(), false)));
        assert_eq!(heredoc_marker("<<-'EOT'"), Some(("EOT".into(), true)));
        assert_eq!(
            heredoc_marker("3<<\"x.txt\""),
            Some(("x.txt".into(), false))
        );
        assert_eq!(heredoc_marker("file.txt"), None);
        assert_eq!(heredoc_marker("<<"), None);
        assert_eq!(chomp_heredoc("\t\ta\n\tb\nc\t\n"), "a\nb\nc\t\n");
    }

    #[test]
    fn chmod_values() {
        for ok in ["755", "0644", "4755", "7777", "u+x", "go-w,u=rwx", "a+X"] {
            assert!(valid_chmod(ok), "{ok}");
        }
        for bad in ["8", "10000", "rwx", "u", "u+q", ""] {
            assert!(!valid_chmod(bad), "{bad}");
        }
    }
}
