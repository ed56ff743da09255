//! RUN: the command line (shell form, heredocs), its mounts, its label and history text.

use super::Lowering;
use super::config::with_shell;
use super::context::{Dispatch, uppercase_cmd};
use super::mount::{base_name, secret_id};
use super::path::absolute_in;
use crate::expand::Lexer;
use crate::history;
use crate::instruction::{Command, CommandLine, RunInstr, chomp_heredoc, heredoc_marker};
use crate::mount::{MountType, parse_mount};
use std::collections::HashMap;
use strata_graph::{ExecOp, Mount, MountKind, Op};

impl Lowering<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &Command,
        r: &RunInstr,
    ) -> Result<(), String> {
        let CommandLine {
            args,
            prepend_shell,
            files,
        } = &r.cmd;
        let mut args = args.clone();
        let mut mounts = Vec::new();
        let mut summary = None;
        if !files.is_empty() {
            if heredoc_marker(&args[0]).is_some() {
                let f = &files[0];
                let data = if f.chomp {
                    chomp_heredoc(&f.data)
                } else {
                    f.data.clone()
                };
                if data.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", f.name);
                    mounts.push(Mount {
                        target: path.clone(),
                        kind: MountKind::File {
                            contents: data,
                            mode: 0o755,
                        },
                    });
                    args = vec![path];
                } else {
                    args = vec![data];
                }
                summary = Some(summarize_heredoc(&f.data));
            } else {
                let mut text = args[0].clone();
                for f in files {
                    text.push('\n');
                    text.push_str(&f.data);
                    text.push_str(&f.name);
                }
                args = vec![text];
            }
        }
        if *prepend_shell {
            args = with_shell(&d.config, &args);
        }

        // Mounts, their values expanded with the variables in scope.
        let mut inputs = vec![d.node];
        let mut secret_envs = Vec::new();
        let mut ssh_index = 0;
        for (raw, at) in &r.mounts {
            let lex = self.lex;
            let env = &d.env;
            let m = parse_mount(raw, &mut |v| lex.expand(v, env).map_err(|e| e.to_string()))
                .map_err(|e| format!("{e} (at {at})"))?;
            let kind = self.mount_kind(stage, d, &m, &mut inputs, &mut ssh_index)?;
            let target = match (&m.kind, &m.target) {
                (MountType::Secret, t) => match (t, &m.env) {
                    (Some(t), _) => absolute_in(&d.workdir, t),
                    (None, Some(_)) => String::new(),
                    (None, None) => {
                        let id = secret_id(&m).unwrap_or_default();
                        format!("/run/secrets/{}", base_name(&id))
                    }
                },
                (MountType::Ssh, t) => match t {
                    Some(t) => absolute_in(&d.workdir, t),
                    None => format!("/run/buildkit/ssh_agent.{}", ssh_index - 1),
                },
                (_, Some(t)) => absolute_in(&d.workdir, t),
                (_, None) => return Err(format!("invalid mount target \"\" in {raw}")),
            };
            if target == "/" {
                return Err(format!("invalid mount target {target:?}"));
            }
            if let Some(e) = &m.env {
                secret_envs.push(e.clone());
            }
            mounts.push(Mount { target, kind });
        }

        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env: d.env.to_vec(),
            cwd: d.workdir.clone(),
            user: d.user.clone(),
            network: r.network.unwrap_or(self.opts.network),
            security: r.security,
            mounts,
        });
        let masked;
        let label_env = if secret_envs.is_empty() {
            &d.env
        } else {
            let mut env = d.env.clone();
            for e in &secret_envs {
                env.set(e, "****");
            }
            masked = env;
            &masked
        };
        let lex = Lexer::new(self.stages.escape)
            .raw_quotes(true)
            .skip_unset(true);
        let mut text = lex
            .expand(&cmd.source, label_env)
            .unwrap_or_else(|_| cmd.source.clone());
        if let Some(s) = summary {
            text.push_str(&format!(" ({s})"));
        }
        let label = d.next_label(&uppercase_cmd(&text));
        d.node = self.graph.add(op, inputs, label, Some(cmd.range));
        self.order.push(d.node);

        // Each build arg once, in the order first declared, with its value now.
        let mut seen: Vec<(&str, &str)> = Vec::with_capacity(d.build_args.len());
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(d.build_args.len());
        for (k, v) in &d.build_args {
            let value = d
                .env
                .get(k)
                .unwrap_or_else(|| v.as_deref().unwrap_or_default());
            match position.get(k.as_str()) {
                Some(&i) => seen[i].1 = value,
                None => {
                    position.insert(k, seen.len());
                    seen.push((k, value));
                }
            }
        }
        d.history.push(history::entry(
            format!("RUN {}", history::run_command(&args, &seen)),
            true,
            true,
        ));
        Ok(())
    }
}

/// A heredoc's first line, with `...` when there are more.
pub(super) fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let normalized = doc.replace("\r\n", "\n");
    let mut lines = normalized.split('\n');
    let first = lines.next().unwrap_or("").to_owned();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}
