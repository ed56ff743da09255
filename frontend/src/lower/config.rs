//! Per-instruction lowering, and the instructions that only change the image config (ENV,
//! LABEL, ARG, EXPOSE, CMD, ...): a history entry and a config node each. WORKDIR also makes
//! its directory.

use super::Lowering;
use super::context::{Dispatch, prefix_label, set_config_env, uppercase_cmd};
use super::copy::parse_chown;
use super::error::{LowerError, PortError};
use super::path::normalize_workdir;
use crate::diagnostic::Diagnostic;
use crate::history;
use crate::instruction::{ArgDecl, CommandLine, InstructionKind, NameValue, TypedInstruction};
use crate::rule;
use crate::scope::NON_ENV_ARGS;
use strata_graph::{FileAction, FileOp, ImageConfig, Op, SourceLoc, SourceRange};

impl Lowering<'_> {
    /// Applies one instruction to the stage.
    pub(super) fn dispatch(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &TypedInstruction,
    ) -> Result<(), LowerError> {
        let range = cmd.range;
        let at = range.start;
        // The config-only instructions give their history text; the others make nodes.
        let text = match &cmd.kind {
            InstructionKind::Env(pairs) => self.env(d, pairs, at)?,
            InstructionKind::Label(pairs) => self.label(d, pairs, at)?,
            InstructionKind::Maintainer(m) => {
                d.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            InstructionKind::Arg(decls) => self.arg(d, decls, at)?,
            InstructionKind::Expose(ports) => self.expose(d, ports, at)?,
            InstructionKind::Volume(vols) => self.volume(d, vols, at)?,
            InstructionKind::StopSignal(sig) => {
                let sig = self.expand(d, sig, at)?;
                if !valid_signal(&sig) {
                    return Err(LowerError::InvalidSignal { at, signal: sig });
                }
                d.config.stop_signal = sig.clone();
                format!("STOPSIGNAL {sig}")
            }
            InstructionKind::User(u) => {
                let u = self.expand(d, u, at)?;
                d.user = u.clone();
                d.config.user = u.clone();
                format!("USER {u}")
            }
            InstructionKind::Shell(shell) => {
                d.config.shell = shell.clone();
                format!("SHELL {}", history::go_list(shell))
            }
            InstructionKind::Cmd(c) => self.cmd(d, c, at),
            InstructionKind::Entrypoint(c) => self.entrypoint(d, c, at),
            InstructionKind::Healthcheck(h) => {
                self.used_once(d, 2, "HEALTHCHECK", at);
                d.config.healthcheck = Some(h.clone());
                history::healthcheck(h)
            }
            InstructionKind::Onbuild(expr) => {
                d.config.on_build.push(expr.clone());
                self.config_node(d, format!("ONBUILD {expr}"), range);
                return Ok(());
            }
            InstructionKind::Workdir(w) => return self.workdir(d, cmd, w),
            InstructionKind::Run(r) => return self.dispatch_run(stage, d, cmd, r),
            InstructionKind::Copy(c) => return self.dispatch_copy(stage, d, cmd, c, false),
            InstructionKind::Add(c) => return self.dispatch_copy(stage, d, cmd, c, true),
        };
        self.config_step(d, text, range);
        Ok(())
    }

    /// ENV: every value is expanded with the variables from before this ENV.
    fn env(
        &mut self,
        d: &mut Dispatch,
        pairs: &[NameValue],
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let expanded = self.expand_pairs(d, pairs, at)?;
        let mut text = String::from("ENV");
        for (k, v) in &expanded {
            self.secret_key_lint("ENV", k, at);
            text.push_str(&format!(" {k}={v}"));
            d.env.set(k, v);
            set_config_env(&mut d.config, &mut d.config_env_index, k, v);
        }
        Ok(text)
    }

    /// LABEL: into the config's labels.
    fn label(
        &self,
        d: &mut Dispatch,
        pairs: &[NameValue],
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let mut text = String::from("LABEL");
        for (k, v) in self.expand_pairs(d, pairs, at)? {
            text.push_str(&format!(" {k}={v}"));
            d.config.labels.insert(k, v);
        }
        Ok(text)
    }

    /// The keys and values of ENV or LABEL, expanded (all with the variables from before).
    fn expand_pairs(
        &self,
        d: &Dispatch,
        pairs: &[NameValue],
        at: SourceLoc,
    ) -> Result<Vec<(String, String)>, LowerError> {
        pairs
            .iter()
            .map(|p| Ok((self.expand(d, &p.key, at)?, self.expand(d, &p.value, at)?)))
            .collect()
    }

    /// ARG: the value given with `--build-arg`, else the default (expanded), else the global
    /// ARG's value; a variable for the rest of the stage (not in the image config).
    fn arg(
        &mut self,
        d: &mut Dispatch,
        decls: &[ArgDecl],
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let mut parts = Vec::new();
        for decl in decls {
            self.secret_key_lint("ARG", &decl.key, at);
            let given = self.opts.build_args.get(&decl.key).cloned();
            let mut value = decl.value.clone();
            if value.is_none() && given.is_none() {
                value = self.global.get(&decl.key).map(str::to_owned);
            } else if let Some(v) = given {
                value = Some(v);
            } else if let Some(v) = &decl.value {
                value = Some(self.expand(d, v, at)?);
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
        Ok(format!("ARG {}", parts.join(" ")))
    }

    /// EXPOSE: each word a port spec, ranges expanded.
    fn expose(
        &mut self,
        d: &mut Dispatch,
        ports: &[String],
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let mut words = Vec::new();
        for p in ports {
            words.extend(
                self.lex
                    .expand_words(p, &d.env)
                    .map_err(|error| LowerError::Expand { at, error })?,
            );
        }
        let mut specs = Vec::new();
        for w in &words {
            self.expose_lints(w, at);
            specs.extend(parse_port_spec(w).map_err(|error| LowerError::Port { at, error })?);
        }
        for s in &specs {
            d.config.exposed_ports.insert(s.clone(), Default::default());
        }
        Ok(format!("EXPOSE {}", history::go_list(&specs)))
    }

    /// BuildKit's `SecretsUsedInArgOrEnv`: an ARG or ENV whose name says it holds a secret.
    fn secret_key_lint(&mut self, instruction: &str, key: &str, at: SourceLoc) {
        if names_a_secret(key) {
            self.diags.push(Diagnostic::warning(
                at,
                &rule::SECRETS_USED_IN_ARG_OR_ENV,
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})"
                ),
            ));
        }
    }

    /// BuildKit's `ExposeProtoCasing` and `ExposeInvalidFormat` on one port spec.
    fn expose_lints(&mut self, raw: &str, at: SourceLoc) {
        // BuildKit's split: `[ip:]host:port`, where the ip may hold colons itself.
        let parts: Vec<&str> = raw.split(':').collect();
        let container = parts[parts.len() - 1];
        let (ip, host) = match parts.len() {
            1 => (String::new(), ""),
            n => (parts[..n - 2].join(":"), parts[n - 2]),
        };
        let proto = container.split_once('/').map_or("", |(_, p)| p);
        if proto != proto.to_lowercase() {
            self.diags.push(Diagnostic::warning(
                at,
                &rule::EXPOSE_PROTO_CASING,
                format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
            ));
        }
        if !ip.is_empty() || !host.is_empty() {
            self.diags.push(Diagnostic::warning(
                at,
                &rule::EXPOSE_INVALID_FORMAT,
                format!(
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"
                ),
            ));
        }
    }

    /// VOLUME: no path may expand to nothing.
    fn volume(
        &self,
        d: &mut Dispatch,
        vols: &[String],
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let mut out = Vec::new();
        for v in vols {
            let e = self.expand(d, v, at)?;
            if e.is_empty() {
                return Err(LowerError::EmptyVolume { at });
            }
            out.push(e);
        }
        for v in &out {
            d.config.volumes.insert(v.clone(), Default::default());
        }
        Ok(format!("VOLUME {}", history::go_list(&out)))
    }

    /// CMD: the shell form behind the SHELL; survives a later ENTRYPOINT of this stage.
    fn cmd(&mut self, d: &mut Dispatch, c: &CommandLine, at: SourceLoc) -> String {
        self.json_args_recommended(d, c, "CMD", at);
        self.used_once(d, 0, "CMD", at);
        let args = shell_args(&d.config, c);
        d.config.cmd = Some(args.clone());
        d.config.args_escaped = true;
        d.cmd_set = true;
        format!("CMD {}", history::go_quoted_list(&args))
    }

    /// ENTRYPOINT: resets a CMD inherited from the base.
    fn entrypoint(&mut self, d: &mut Dispatch, c: &CommandLine, at: SourceLoc) -> String {
        self.json_args_recommended(d, c, "ENTRYPOINT", at);
        self.used_once(d, 1, "ENTRYPOINT", at);
        let args = shell_args(&d.config, c);
        d.config.entrypoint = (!args.is_empty()).then(|| args.clone());
        if !d.cmd_set {
            d.config.cmd = None;
        }
        format!("ENTRYPOINT {}", history::go_quoted_list(&args))
    }

    /// WORKDIR: against the current one; made (as the user) unless it is `/`.
    fn workdir(
        &mut self,
        d: &mut Dispatch,
        cmd: &TypedInstruction,
        w: &str,
    ) -> Result<(), LowerError> {
        let range = cmd.range;
        // A variable of an image strata check did not look up may make the path absolute.
        let maybe_from_image = d.base_env_unknown && w.contains('$');
        let w = self.expand(d, w, range.start)?;
        let judged = !(d.workdir_set || d.onbuild || maybe_from_image);
        if judged && !is_absolute_for(&w, &d.platform.os) {
            self.diags.push(Diagnostic::warning(
                range.start,
                &rule::WORKDIR_RELATIVE_PATH,
                format!(
                    "Relative workdir {w:?} can have unexpected results if the base image changes"
                ),
            ));
        }
        d.workdir_set = true;
        let wd = normalize_workdir(&d.workdir, &w);
        d.workdir = wd.clone();
        d.config.working_dir = wd.clone();
        let layer = wd != "/";
        if layer {
            let label = d.next_label(&uppercase_cmd(&self.label_text(&d.env, &cmd.source, false)));
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
        Ok(())
    }

    /// An instruction that changes only the image config: its history entry (no layer) and
    /// its config node.
    fn config_step(&mut self, d: &mut Dispatch, text: String, range: SourceRange) {
        d.history.push(history::entry(text.clone(), false, false));
        self.config_node(d, text, range);
    }

    /// A node for a config instruction: nothing depends on it, it shows in progress.
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

    /// BuildKit's `MultipleInstructionsDisallowed` lint: only the last CMD, ENTRYPOINT or
    /// HEALTHCHECK of a stage counts.
    fn used_once(&mut self, d: &mut Dispatch, slot: usize, name: &str, at: SourceLoc) {
        if d.onbuild {
            return;
        }
        if let Some(previous) = d.used_once[slot] {
            self.diags.push(Diagnostic::warning(
                previous,
                &rule::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
            ));
        }
        d.used_once[slot] = Some(at);
    }

    /// BuildKit's `JSONArgsRecommended` lint: shell-form CMD/ENTRYPOINT without a SHELL.
    fn json_args_recommended(&mut self, d: &Dispatch, c: &CommandLine, name: &str, at: SourceLoc) {
        if c.prepend_shell && d.config.shell.is_empty() && !d.onbuild {
            self.diags.push(Diagnostic::warning(
                at,
                &rule::JSON_ARGS_RECOMMENDED,
                format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                ),
            ));
        }
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
pub(super) fn with_shell(config: &ImageConfig, args: &[String]) -> Vec<String> {
    let mut out = if config.shell.is_empty() {
        vec!["/bin/sh".to_owned(), "-c".to_owned()]
    } else {
        config.shell.clone()
    };
    out.push(args.join(" "));
    out
}

/// Whether `path` is absolute on `os` (BuildKit's `system.IsAbs`): on Windows a leading
/// slash or backslash, or a drive (`C:\`, `c:/`), counts too.
fn is_absolute_for(path: &str, os: &str) -> bool {
    if os != "windows" {
        return path.starts_with('/');
    }
    let b = path.as_bytes();
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':';
    path.starts_with(['/', '\\']) || (drive && matches!(b[2], b'/' | b'\\'))
}

/// Whether a variable name says it holds a secret, by BuildKit's words: one of its
/// `_`-separated parts (any case) is a secret word and none is an allowed one
/// (`GITHUB_TOKEN`, `db_password` yes; `PUBLIC_KEY`, `KEY_FILE` no).
fn names_a_secret(key: &str) -> bool {
    const SECRET: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOWED: [&str; 3] = ["public", "file", "version"];
    let has = |words: &[&str]| {
        key.split('_')
            .any(|part| words.iter().any(|w| part.eq_ignore_ascii_case(w)))
    };
    has(&SECRET) && !has(&ALLOWED)
}

/// `EXPOSE` specs (`80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80`) to `port/proto` keys.
fn parse_port_spec(raw: &str) -> Result<Vec<String>, PortError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let container = parts[parts.len() - 1];
    let host = if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        ""
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(PortError::NoPort(raw.to_owned()));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        p => return Err(PortError::Proto(p.to_owned())),
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
    let (start, end) = range(port).ok_or_else(|| PortError::ContainerPort(port.to_owned()))?;
    if !host.is_empty() {
        let (hs, he) = range(host).ok_or_else(|| PortError::HostPort(host.to_owned()))?;
        if end - start != he - hs && end != start {
            return Err(PortError::Ranges {
                port: port.to_owned(),
                host: host.to_owned(),
            });
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `moby/sys/signal.ParseSignal`: a number, or a name with or without `SIG`.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i64>() {
        return (1..=64).contains(&n);
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
    NAMES.contains(&name) || rt("RTMIN+", 15) || rt("RTMAX-", 14)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["SIGFOO", "0", "RTMIN+16", ""] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }
}
