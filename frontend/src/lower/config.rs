//! Per-instruction lowering, and the instructions that only change the image config (ENV,
//! LABEL, ARG, EXPOSE, CMD, ...): a history entry and a config node each. WORKDIR also makes
//! its directory.

use super::Lowering;
use super::context::{Dispatch, prefix_label, set_config_env, uppercase_cmd};
use super::copy::parse_chown;
use super::path::normalize_workdir;
use crate::diagnostic::Diagnostic;
use crate::history;
use crate::instruction::{Command, CommandLine, Instr};
use crate::scope::NON_ENV_ARGS;
use strata_graph::{FileAction, FileOp, ImageConfig, Op, SourceRange};

impl Lowering<'_> {
    /// Applies one instruction to the stage.
    pub(super) fn dispatch(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &Command,
    ) -> Result<(), String> {
        let range = cmd.range;
        match &cmd.instr {
            Instr::Env(pairs) => {
                // Every value is expanded with the variables from before this ENV.
                let mut expanded = Vec::new();
                for p in pairs {
                    expanded.push((self.expand(d, &p.key)?, self.expand(d, &p.value)?));
                }
                let mut text = String::from("ENV");
                for (k, v) in &expanded {
                    text.push_str(&format!(" {k}={v}"));
                    d.env.set(k, v);
                    set_config_env(&mut d.config, &mut d.config_env_index, k, v);
                }
                self.config_step(d, text, range);
            }
            Instr::Label(pairs) => {
                let mut expanded = Vec::new();
                for p in pairs {
                    expanded.push((self.expand(d, &p.key)?, self.expand(d, &p.value)?));
                }
                let mut text = String::from("LABEL");
                for (k, v) in expanded {
                    text.push_str(&format!(" {k}={v}"));
                    d.config.labels.insert(k, v);
                }
                self.config_step(d, text, range);
            }
            Instr::Maintainer(m) => {
                d.author = Some(m.clone());
                let text = format!("MAINTAINER {m}");
                self.config_step(d, text, range);
            }
            Instr::Arg(decls) => {
                let mut parts = Vec::new();
                for decl in decls {
                    let given = self.opts.build_args.get(&decl.key).cloned();
                    let mut value = decl.value.clone();
                    if value.is_none() && given.is_none() {
                        value = self.global.get(&decl.key).map(str::to_owned);
                    } else if let Some(v) = given {
                        value = Some(v);
                    } else if let Some(v) = &decl.value {
                        value = Some(self.expand(d, v)?);
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
                let text = format!("ARG {}", parts.join(" "));
                self.config_step(d, text, range);
            }
            Instr::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    words.extend(
                        self.lex
                            .expand_words(p, &d.env)
                            .map_err(|e| e.to_string())?,
                    );
                }
                let mut specs = Vec::new();
                for w in &words {
                    specs.extend(parse_port_spec(w)?);
                }
                for s in &specs {
                    d.config.exposed_ports.insert(s.clone(), Default::default());
                }
                let text = format!("EXPOSE {}", history::go_list(&specs));
                self.config_step(d, text, range);
            }
            Instr::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let e = self.expand(d, v)?;
                    if e.is_empty() {
                        return Err("VOLUME specified can not be an empty string".into());
                    }
                    out.push(e);
                }
                for v in &out {
                    d.config.volumes.insert(v.clone(), Default::default());
                }
                let text = format!("VOLUME {}", history::go_list(&out));
                self.config_step(d, text, range);
            }
            Instr::StopSignal(sig) => {
                let sig = self.expand(d, sig)?;
                check_signal(&sig)?;
                d.config.stop_signal = sig.clone();
                let text = format!("STOPSIGNAL {sig}");
                self.config_step(d, text, range);
            }
            Instr::User(u) => {
                let u = self.expand(d, u)?;
                d.user = u.clone();
                d.config.user = u.clone();
                let text = format!("USER {u}");
                self.config_step(d, text, range);
            }
            Instr::Shell(shell) => {
                d.config.shell = shell.clone();
                let text = format!("SHELL {}", history::go_list(shell));
                self.config_step(d, text, range);
            }
            Instr::Cmd(c) => {
                self.json_args_recommended(d, c, "CMD", range);
                self.used_once(d, 0, "CMD", range);
                let args = shell_args(&d.config, c);
                d.config.cmd = Some(args.clone());
                d.config.args_escaped = true;
                d.cmd_set = true;
                let text = format!("CMD {}", history::go_quoted_list(&args));
                self.config_step(d, text, range);
            }
            Instr::Entrypoint(c) => {
                self.json_args_recommended(d, c, "ENTRYPOINT", range);
                self.used_once(d, 1, "ENTRYPOINT", range);
                let args = shell_args(&d.config, c);
                d.config.entrypoint = (!args.is_empty()).then(|| args.clone());
                if !d.cmd_set {
                    d.config.cmd = None;
                }
                let text = format!("ENTRYPOINT {}", history::go_quoted_list(&args));
                self.config_step(d, text, range);
            }
            Instr::Healthcheck(h) => {
                self.used_once(d, 2, "HEALTHCHECK", range);
                d.config.healthcheck = Some(h.clone());
                let text = history::healthcheck(h);
                self.config_step(d, text, range);
            }
            Instr::Onbuild(expr) => {
                d.config.on_build.push(expr.clone());
                self.config_node(d, format!("ONBUILD {expr}"), range);
            }
            Instr::Workdir(w) => {
                let w = self.expand(d, w)?;
                if !d.workdir_set && !w.starts_with('/') && !d.onbuild {
                    self.diags.push(Diagnostic::warning(
                        range.start,
                        "WorkdirRelativePath",
                        format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                    ));
                }
                d.workdir_set = true;
                let wd = normalize_workdir(&d.workdir, &w);
                d.workdir = wd.clone();
                d.config.working_dir = wd.clone();
                let layer = wd != "/";
                if layer {
                    let label =
                        d.next_label(&uppercase_cmd(&self.label_text(d, &cmd.source, false)));
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
            }
            Instr::Run(r) => self.dispatch_run(stage, d, cmd, r)?,
            Instr::Copy(c) => self.dispatch_copy(stage, d, cmd, c, false)?,
            Instr::Add(c) => self.dispatch_copy(stage, d, cmd, c, true)?,
        }
        Ok(())
    }

    /// An instruction that changes only the image config: its history entry (no layer) and
    /// its config node.
    pub(super) fn config_step(&mut self, d: &mut Dispatch, text: String, range: SourceRange) {
        d.history.push(history::entry(text.clone(), false, false));
        self.config_node(d, text, range);
    }

    pub(super) fn config_node(&mut self, d: &mut Dispatch, text: String, range: SourceRange) {
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
    pub(super) fn used_once(
        &mut self,
        d: &mut Dispatch,
        slot: usize,
        name: &str,
        range: SourceRange,
    ) {
        if d.onbuild {
            return;
        }
        if let Some(previous) = d.used_once[slot] {
            self.diags.push(Diagnostic::warning(
                previous,
                "MultipleInstructionsDisallowed",
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
            ));
        }
        d.used_once[slot] = Some(range.start);
    }

    /// BuildKit's `JSONArgsRecommended` lint: shell-form CMD/ENTRYPOINT without a SHELL.
    pub(super) fn json_args_recommended(
        &mut self,
        d: &Dispatch,
        c: &CommandLine,
        name: &str,
        range: SourceRange,
    ) {
        if c.prepend_shell && d.config.shell.is_empty() && !d.onbuild {
            self.diags.push(Diagnostic::warning(
                range.start,
                "JSONArgsRecommended",
                format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                ),
            ));
        }
    }
}

/// A CMD or ENTRYPOINT as it runs: the shell form behind the SHELL, the exec form as is.
pub(super) fn shell_args(config: &ImageConfig, c: &CommandLine) -> Vec<String> {
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

/// `EXPOSE` specs (`80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80`) to `port/proto` keys.
pub(super) fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let container = parts[parts.len() - 1];
    let host = if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        ""
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        p => return Err(format!("invalid proto: {p}")),
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
    let (start, end) = range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host.is_empty() {
        let (hs, he) = range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
        if end - start != he - hs && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host}"
            ));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `moby/sys/signal.ParseSignal`: a number, or a name with or without `SIG`.
pub(super) fn check_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<i64>() {
        return if !(1..=64).contains(&n) {
            Err(format!("Invalid signal: {s}"))
        } else {
            Ok(())
        };
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
    if NAMES.contains(&name) || rt("RTMIN+", 15) || rt("RTMAX-", 14) {
        Ok(())
    } else {
        Err(format!("Invalid signal: {s}"))
    }
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
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "RTMIN+16", ""] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
    }
}
