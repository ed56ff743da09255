//! `--change`: Dockerfile instructions applied to an image config, as `docker import --change`
//! and `docker commit --change` apply them. The changes are read as one Dockerfile (docker
//! joins them with newlines) and lowered on top of an image whose config is the given one, so
//! they are parsed, expanded (with the config's `ENV`) and applied by the very code a build
//! uses: `EXPOSE 8000-8002` exposes three ports, `ENV A="x $B"` expands `$B`.

use crate::ast::Keyword;
use crate::{BuildOptions, Diagnostic, Diagnostics, ImageResolver, Platform, ResolvedImage};
use strata_graph::{ImageConfig, SourceLoc};

/// The instructions docker accepts in a `--change`.
pub const CHANGE_INSTRUCTIONS: [Keyword; 11] = [
    Keyword::Cmd,
    Keyword::Entrypoint,
    Keyword::Env,
    Keyword::Expose,
    Keyword::Healthcheck,
    Keyword::Label,
    Keyword::Onbuild,
    Keyword::Stopsignal,
    Keyword::User,
    Keyword::Volume,
    Keyword::Workdir,
];

/// A `--change` that does not apply: which one, and the problem, its location relative to
/// that change's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .diagnostic.text())]
pub struct ChangeError {
    /// The index of the change in the list given.
    pub change: usize,
    /// What is wrong, and where in the change.
    pub diagnostic: Diagnostic,
}

/// The base image the changes are lowered on: `config`, with no ONBUILD triggers to run.
struct ConfigImage(ImageConfig);

/// The reference the changes' `FROM` names; resolved to the config, never looked up.
const BASE: &str = "strata-change-base";

impl ImageResolver for ConfigImage {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            id: String::new(),
            platform: platform.clone(),
            config: self.0.clone(),
        })
    }
}

/// Applies `changes` in order to `config`, as `docker import --change` does; `platform` is
/// the image's (for the default shell).
pub fn apply_changes(
    config: &ImageConfig,
    changes: &[&str],
    platform: &Platform,
) -> Result<ImageConfig, ChangeError> {
    if changes.is_empty() {
        return Ok(config.clone());
    }
    // Line 1 is the FROM; change `i` starts at line `first_line[i]`.
    let mut text = format!("FROM {BASE}\n");
    let mut first_line = Vec::new();
    let mut line = 2u32;
    for change in changes {
        first_line.push(line);
        let lines = u32::try_from(change.split('\n').count()).unwrap_or(u32::MAX);
        line = line.saturating_add(lines);
        text.push_str(change);
        text.push('\n');
    }
    // Where `loc` (in `text`) is: the change and the place in it.
    let place = |loc: SourceLoc| -> (usize, SourceLoc) {
        let change = first_line.iter().rposition(|&l| l <= loc.line).unwrap_or(0);
        let line = loc.line.saturating_sub(first_line[change]) + 1;
        (change, SourceLoc::new(line, loc.column))
    };
    let error = |loc: SourceLoc, message: String| {
        let (change, loc) = place(loc);
        ChangeError {
            change,
            diagnostic: Diagnostic::error(loc, message),
        }
    };

    let df = crate::parse(text.as_bytes()).map_err(|e| error(e.loc, e.kind.to_string()))?;
    for i in df.instructions.iter().skip(1) {
        if !CHANGE_INSTRUCTIONS.contains(&i.kind) {
            let names: Vec<&str> = CHANGE_INSTRUCTIONS
                .iter()
                .map(|k| k.as_uppercase())
                .collect();
            return Err(error(
                i.keyword_loc,
                format!(
                    "{} is not a valid change command (only {})",
                    i.keyword.to_string_lossy().to_uppercase(),
                    names.join(", ")
                ),
            ));
        }
    }
    let base = ImageConfig {
        on_build: Vec::new(),
        ..config.clone()
    };
    let lower = |df: &crate::Dockerfile| {
        let opts = BuildOptions {
            target_platform: platform.clone(),
            build_platform: platform.clone(),
            ..BuildOptions::default()
        };
        let lowered = crate::lower(df, &opts, &ConfigImage(base.clone()))?;
        Ok::<_, Diagnostics>(lowered.graph.targets.into_iter().next().map(|t| t.config))
    };
    let lowered = lower(&df).map_err(|diags| {
        let d = diags
            .errors()
            .next()
            .cloned()
            .unwrap_or_else(|| Diagnostic::error(SourceLoc::new(2, 1), "invalid change"));
        let (change, loc) = place(d.loc);
        ChangeError {
            change,
            diagnostic: Diagnostic { loc, ..d },
        }
    })?;
    let Some(mut out) = lowered else {
        return Err(error(SourceLoc::new(2, 1), "no image config".into()));
    };
    // What a build's FROM adds and docker's changes do not (PATH, when the image has none):
    // the entries a bare FROM adds, where no change set them otherwise.
    let from_only = crate::parse(format!("FROM {BASE}\n").as_bytes())
        .ok()
        .and_then(|df| lower(&df).ok().flatten());
    if let Some(from_only) = from_only {
        let added: Vec<&String> = from_only
            .env
            .iter()
            .filter(|kv| !config.env.contains(kv))
            .collect();
        out.env.retain(|kv| !added.contains(&kv));
    }
    // A build marks CMD and ENTRYPOINT as escaped; docker's changes do so only on Windows.
    out.args_escaped = config.args_escaped;
    // The triggers already there stay, before the new ones.
    let mut on_build = config.on_build.clone();
    on_build.append(&mut out.on_build);
    out.on_build = on_build;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(changes: &[&str]) -> Result<serde_json::Value, ChangeError> {
        let config = apply_changes(&ImageConfig::default(), changes, &Platform::linux_amd64())?;
        Ok(serde_json::to_value(config).unwrap())
    }

    #[test]
    fn expose_ranges_expand_as_in_docker() {
        assert_eq!(
            apply(&["EXPOSE 8000-8002", "EXPOSE 53/udp"]).unwrap(),
            json!({"ExposedPorts": {"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "53/udp": {}}})
        );
    }

    #[test]
    fn env_quotes_and_expansion_from_earlier_changes() {
        assert_eq!(
            apply(&[
                "ENV A=1 B=\"two words\"",
                "ENV C=\"$B and ${A}\" D='$A'",
                "ENV E 3 4",
                "ENV A=5",
            ])
            .unwrap(),
            json!({"Env": ["A=5", "B=two words", "C=two words and 1", "D=$A", "E=3 4"]})
        );
    }

    #[test]
    fn every_docker_change_instruction_applies() {
        let got = apply(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /entry.sh",
            "LABEL org.x=y 'q r'=s",
            "VOLUME [\"/data\"]",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN make",
            "HEALTHCHECK --interval=5s CMD true",
            "ENV PATH=/bin",
        ])
        .unwrap();
        assert_eq!(got["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(got["Entrypoint"], json!(["/bin/sh", "-c", "/entry.sh"]));
        assert_eq!(got["Labels"], json!({"org.x": "y", "q r": "s"}));
        assert_eq!(got["Volumes"], json!({"/data": {}}));
        assert_eq!(got["WorkingDir"], "/srv/app");
        assert_eq!(got["User"], "1000:1000");
        assert_eq!(got["StopSignal"], "SIGINT");
        assert_eq!(got["OnBuild"], json!(["RUN make"]));
        assert_eq!(got["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(got["Env"], json!(["PATH=/bin"]));
        assert_eq!(got.get("ArgsEscaped"), None);
    }

    #[test]
    fn the_config_s_env_expands_and_its_triggers_stay() {
        let config = ImageConfig {
            env: vec!["HOME=/root".into()],
            on_build: vec!["RUN a".into()],
            ..ImageConfig::default()
        };
        let out = apply_changes(
            &config,
            &["WORKDIR $HOME/src", "ONBUILD RUN b"],
            &Platform::linux_amd64(),
        )
        .unwrap();
        assert_eq!(out.working_dir, "/root/src");
        assert_eq!(out.env, ["HOME=/root"]);
        assert_eq!(out.on_build, ["RUN a", "RUN b"]);
    }

    #[test]
    fn errors_name_the_change_and_the_instruction() {
        let err = apply(&["ENV A=1", "RUN true"]).unwrap_err();
        assert_eq!(err.change, 1);
        assert_eq!(
            err.to_string(),
            "RUN is not a valid change command (only CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, \
             LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"
        );
        assert_eq!(err.diagnostic.loc, SourceLoc::new(1, 1));
        let err = apply(&["ENV A=1", "EXPOSE 80", "STOPSIGNAL NOPE"]).unwrap_err();
        assert_eq!(err.change, 2, "{err}");
        assert!(apply(&["FROM x"]).is_err());
        assert!(apply(&["EXPOSE 99999"]).is_err());
    }
}
