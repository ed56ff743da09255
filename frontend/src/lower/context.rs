//! The expansion context: the state of a stage as its instructions are applied (variables,
//! image config, working directory, user, history) and the labels its steps get.

use super::Lowering;
use super::error::LowerError;
use crate::diagnostic::{Diagnostic, suggest};
use crate::expand::Lexer;
use crate::rule;
use crate::scope::EnvList;
use crate::scope::NON_ENV_ARGS;
use std::collections::HashMap;
use strata_graph::{History, ImageConfig, NodeId, SourceLoc};
use strata_store::Platform;

/// The PATH a stage gets when its base sets none (BuildKit always sets one).
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of a stage as its instructions are applied (BuildKit's `dispatchState`).
#[derive(Debug, Clone)]
pub(super) struct Dispatch {
    pub(super) node: NodeId,
    pub(super) env: EnvList,
    pub(super) config: ImageConfig,
    pub(super) history: Vec<History>,
    pub(super) build_args: Vec<(String, Option<String>)>,
    pub(super) workdir: String,
    pub(super) user: String,
    pub(super) platform: Platform,
    pub(super) author: Option<String>,
    pub(super) cmd_set: bool,
    /// Where CMD, ENTRYPOINT and HEALTHCHECK were last set in this stage (lint).
    pub(super) used_once: [Option<strata_graph::SourceLoc>; 3],
    /// A WORKDIR was set in this stage or a stage it is built on (lint).
    pub(super) workdir_set: bool,
    /// Position of each key in `config.env`, so ENV stays O(1) however many there are.
    pub(super) config_env_index: HashMap<String, usize>,
    pub(super) cmd_index: usize,
    pub(super) cmd_total: usize,
    pub(super) label_name: String,
    pub(super) onbuild: bool,
    /// Built on an image whose config is a stand-in ([`super::BuildOptions::base_config_unknown`]):
    /// a variable may come from the image's ENV, so none is reported undefined.
    pub(super) base_env_unknown: bool,
}

impl Dispatch {
    /// `[name i/n] text`, numbering the step (BuildKit's `prefixCommand`).
    pub(super) fn next_label(&mut self, text: &str) -> String {
        if self.cmd_total == 0 {
            return text.to_owned();
        }
        self.cmd_index += 1;
        prefix_label(
            &self.label_name,
            self.cmd_index,
            self.cmd_total,
            self.onbuild,
            text,
        )
    }
}

impl Lowering<'_> {
    /// `word` expanded with the stage's variables; errors are at `at`. A variable neither
    /// set nor declared by an ARG of the stage is BuildKit's `UndefinedVar` (at `at`).
    pub(super) fn expand(
        &self,
        d: &Dispatch,
        word: &str,
        at: SourceLoc,
    ) -> Result<String, LowerError> {
        let e = self
            .lex
            .process(word, &d.env)
            .map_err(|error| LowerError::Expand { at, error })?;
        for name in &e.unmatched {
            if d.base_env_unknown
                || d.build_args.iter().any(|(k, _)| k == name)
                || NON_ENV_ARGS.contains(&name.as_str())
            {
                continue;
            }
            let hint = suggest(name, d.env.keys().collect::<Vec<_>>(), true);
            self.undefined_vars.borrow_mut().push(
                Diagnostic::warning(
                    at,
                    &rule::UNDEFINED_VAR,
                    format!("Usage of undefined variable '${name}'"),
                )
                .with_suggestion(hint.map(|h| format!("${h}"))),
            );
        }
        Ok(e.value)
    }

    /// The instruction text as a progress label shows it: variables of `env` expanded where
    /// set (with `raw_quotes`, as RUN's label: quotes kept, unset variables left as written).
    pub(super) fn label_text(&self, env: &EnvList, source: &str, raw_quotes: bool) -> String {
        let lex = if raw_quotes {
            Lexer::new(self.stages.escape)
                .raw_quotes(true)
                .skip_unset(true)
        } else {
            self.lex
        };
        lex.expand(source, env)
            .unwrap_or_else(|_| source.to_owned())
    }
}

/// The state of a stage built on `config` (an image's, or empty), before its instructions.
pub(super) fn fresh_dispatch(
    node: NodeId,
    config: ImageConfig,
    platform: Platform,
    cmd_total: usize,
    label_name: String,
) -> Dispatch {
    Dispatch {
        node,
        env: EnvList::new(),
        config,
        history: Vec::new(),
        build_args: Vec::new(),
        workdir: "/".into(),
        user: String::new(),
        platform,
        author: None,
        cmd_set: false,
        used_once: [None; 3],
        workdir_set: false,
        config_env_index: HashMap::new(),
        cmd_index: 0,
        cmd_total,
        label_name,
        onbuild: false,
        base_env_unknown: false,
    }
}

/// `ImageConfig::env_set` with an index: replaces in place (Docker keeps the position) or
/// appends.
pub(super) fn set_config_env(
    config: &mut ImageConfig,
    index: &mut HashMap<String, usize>,
    key: &str,
    value: &str,
) {
    refresh_env_index(config, index);
    let entry = format!("{key}={value}");
    match index.get(key) {
        Some(&i) => config.env[i] = entry,
        None => {
            index.insert(key.to_owned(), config.env.len());
            config.env.push(entry);
        }
    }
}

/// Rebuilds `index` (each key of `config.env` to its position) when it is out of date.
pub(super) fn refresh_env_index(config: &ImageConfig, index: &mut HashMap<String, usize>) {
    if index.len() != config.env.len() {
        index.clear();
        for (i, kv) in config.env.iter().enumerate() {
            index
                .entry(strata_graph::env_key(kv).to_owned())
                .or_insert(i);
        }
    }
}

/// `[name i/n] text` (`%*d`: the index is padded to the width of the total); without a number
/// (`total == 0`) `[name] text`, or just the text for an unnamed stage.
pub(super) fn prefix_label(
    name: &str,
    index: usize,
    total: usize,
    onbuild: bool,
    text: &str,
) -> String {
    let mut out = String::new();
    if total > 0 {
        out.push('[');
        if !name.is_empty() {
            out.push_str(name);
            out.push(' ');
        }
        let width = total.to_string().len();
        out.push_str(&format!("{index:>width$}/{total}] "));
    } else if !name.is_empty() {
        out.push_str(&format!("[{name}] "));
    }
    if onbuild {
        out.push_str("ONBUILD ");
    }
    out.push_str(text);
    out
}

/// The first word upper-cased (`run echo` → `RUN echo`).
pub(super) fn uppercase_cmd(s: &str) -> String {
    match s.split_once(' ') {
        Some((first, rest)) => format!("{} {rest}", first.to_uppercase()),
        None => s.to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_padded_like_buildkit() {
        assert_eq!(
            prefix_label("build", 2, 9, false, "RUN make"),
            "[build 2/9] RUN make"
        );
        assert_eq!(prefix_label("", 3, 12, false, "RUN x"), "[ 3/12] RUN x");
        assert_eq!(
            prefix_label("stage-1", 1, 3, true, "RUN echo on"),
            "[stage-1 1/3] ONBUILD RUN echo on"
        );
        assert_eq!(
            prefix_label("build", 0, 0, false, "ENV A=b"),
            "[build] ENV A=b"
        );
        assert_eq!(prefix_label("", 0, 0, false, "ENV A=b"), "ENV A=b");
    }
}
