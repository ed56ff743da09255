//! RUN: the command line (shell form, heredocs), its mounts, its label and history text.

use super::Lowering;
use super::config::with_shell;
use super::context::{Dispatch, uppercase_cmd};
use super::error::LowerError;
use super::mount::RunMounts;
use crate::history;
use crate::instruction::{
    CommandLine, RunInstruction, TypedInstruction, chomp_heredoc, heredoc_marker,
};
use std::collections::HashMap;
use strata_graph::{ExecOp, Mount, MountKind, Op};

/// What a RUN executes once its heredocs are in place.
struct RunArgs {
    /// The argv (the SHELL in front for the shell form).
    args: Vec<String>,
    /// A heredoc script with a `#!` line, mounted as a file and run as the command.
    script: Option<Mount>,
    /// A heredoc's first line, for the label.
    summary: Option<String>,
}

impl Lowering<'_> {
    /// A RUN: an exec node over the stage and its mounts' sources, and a layer in history.
    pub(super) fn dispatch_run(
        &mut self,
        stage: usize,
        d: &mut Dispatch,
        cmd: &TypedInstruction,
        r: &RunInstruction,
    ) -> Result<(), LowerError> {
        let RunArgs {
            args,
            script,
            summary,
        } = run_args(d, &r.cmd);
        let RunMounts {
            mounts,
            inputs,
            secret_envs,
        } = self.run_mounts(stage, d, r, cmd.range.start)?;
        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env: d.env.to_vec(),
            cwd: d.workdir.clone(),
            user: d.user.clone(),
            network: r.network.unwrap_or(self.opts.network),
            security: r.security,
            mounts: script.into_iter().chain(mounts).collect(),
        });
        let label = self.run_label(d, cmd, &secret_envs, summary);
        d.node = self.graph.add(op, inputs, label, Some(cmd.range));
        self.order.push(d.node);
        d.history.push(history::entry(
            format!("RUN {}", history::run_command(&args, &build_args(d))),
            true,
            true,
        ));
        Ok(())
    }

    /// `[stage i/n] RUN ...`: the command with variables expanded, secrets given in variables
    /// masked, and a heredoc's first line.
    fn run_label(
        &self,
        d: &mut Dispatch,
        cmd: &TypedInstruction,
        secret_envs: &[String],
        summary: Option<String>,
    ) -> String {
        let masked;
        let label_env = if secret_envs.is_empty() {
            &d.env
        } else {
            let mut env = d.env.clone();
            for e in secret_envs {
                env.set(e, "****");
            }
            masked = env;
            &masked
        };
        let mut text = self.label_text(label_env, &cmd.source, true);
        if let Some(s) = summary {
            text.push_str(&format!(" ({s})"));
        }
        d.next_label(&uppercase_cmd(&text))
    }
}

/// The argv of a RUN: a heredoc command becomes the script (or the text given to the
/// shell), heredoc bodies of other commands are appended to the text.
fn run_args(d: &Dispatch, line: &CommandLine) -> RunArgs {
    let CommandLine {
        args,
        prepend_shell,
        files,
    } = line;
    let mut args = args.clone();
    let mut script = None;
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
                script = Some(Mount {
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
    RunArgs {
        args,
        script,
        summary,
    }
}

/// Each build arg once, in the order first declared, with its value now (RUN's history
/// text, `RUN |2 A=1 B=2 ...`).
fn build_args(d: &Dispatch) -> Vec<(&str, &str)> {
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
    seen
}

/// A heredoc's first line, with `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
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
