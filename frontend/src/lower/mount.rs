//! `RUN --mount`: each mount, once its value is expanded, as a graph mount and its inputs.

use super::Lowering;
use super::context::Dispatch;
use super::error::LowerError;
use super::path::{absolute_in, join_root};
use crate::instruction::RunInstruction;
use crate::mount::{MountType, RunMount, parse_mount};
use strata_graph::{Mount, MountKind, NodeId, SourceLoc};

/// The mounts of one RUN and what they read.
pub(super) struct RunMounts {
    /// The graph mounts, in the order written.
    pub(super) mounts: Vec<Mount>,
    /// The RUN's inputs: the stage's node first, then each filesystem a mount reads.
    pub(super) inputs: Vec<NodeId>,
    /// The variables secrets are given in (masked in the RUN's label).
    pub(super) secret_envs: Vec<String>,
}

impl Lowering<'_> {
    /// The `--mount`s of `r`, a RUN at `at` in stage `stage`, their values expanded with the
    /// variables in scope.
    pub(super) fn run_mounts(
        &mut self,
        stage: usize,
        d: &Dispatch,
        r: &RunInstruction,
        at: SourceLoc,
    ) -> Result<RunMounts, LowerError> {
        let mut out = RunMounts {
            mounts: Vec::new(),
            inputs: vec![d.node],
            secret_envs: Vec::new(),
        };
        let mut ssh_index = 0;
        for (raw, flag) in &r.mounts {
            let lex = self.lex;
            let env = &d.env;
            let m = parse_mount(raw, &mut |v| lex.expand(v, env).map_err(|e| e.to_string()))
                .map_err(|reason| LowerError::Mount {
                    at,
                    flag: *flag,
                    reason,
                })?;
            let kind = self.mount_kind(stage, &m, &mut out.inputs, &mut ssh_index, at)?;
            let target = mount_target(&m, &d.workdir, ssh_index, at)?;
            if let Some(e) = &m.env {
                out.secret_envs.push(e.clone());
            }
            out.mounts.push(Mount { target, kind });
        }
        Ok(out)
    }

    /// What `m` mounts; a filesystem it reads is added to `inputs` (once). `ssh_index`
    /// counts the ssh mounts so far.
    fn mount_kind(
        &mut self,
        stage: usize,
        m: &RunMount,
        inputs: &mut Vec<NodeId>,
        ssh_index: &mut usize,
        at: SourceLoc,
    ) -> Result<MountKind, LowerError> {
        let input_for = |this: &mut Self,
                         from: &Option<String>,
                         inputs: &mut Vec<NodeId>|
         -> Result<usize, LowerError> {
            let node = match from {
                None => this.context_node(),
                Some(f) => this.source_node_for(f, false, stage, at)?,
            };
            Ok(match inputs.iter().position(|n| *n == node) {
                Some(i) if i > 0 => i,
                _ => {
                    inputs.push(node);
                    inputs.len() - 1
                }
            })
        };
        Ok(match m.kind {
            MountType::Bind => {
                let input = input_for(self, &m.from, inputs)?;
                MountKind::Bind {
                    input,
                    source: join_root(m.source.as_deref().unwrap_or("")),
                    rw: !m.readonly,
                }
            }
            MountType::Cache => {
                let from = match &m.from {
                    None => None,
                    Some(_) => Some((
                        input_for(self, &m.from, inputs)?,
                        join_root(m.source.as_deref().unwrap_or("")),
                    )),
                };
                MountKind::Cache {
                    // BuildKit: an empty id is the target as written, cleaned.
                    id: m.id.clone().filter(|id| !id.is_empty()).unwrap_or_else(|| {
                        strata_graph::pattern::clean(m.target.as_deref().unwrap_or(""))
                    }),
                    sharing: m.sharing.unwrap_or_default(),
                    from,
                    readonly: m.readonly,
                    mode: m.mode.unwrap_or(0o755),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
            MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
            MountType::Secret => {
                let id = secret_id(m).ok_or(LowerError::SecretWithoutId { at })?;
                MountKind::Secret {
                    id,
                    env: m.env.clone(),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o400),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
            MountType::Ssh => {
                if m.source.is_some() {
                    return Err(LowerError::SshSource { at });
                }
                *ssh_index += 1;
                MountKind::Ssh {
                    id: m
                        .id
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    required: m.required,
                    mode: m.mode.unwrap_or(0o600),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                }
            }
        })
    }
}

/// Where `m` is mounted: its target (missing means `.`) against the working directory, or
/// where a secret or the `ssh_index`th ssh agent goes by default. Never `/`.
fn mount_target(
    m: &RunMount,
    workdir: &str,
    ssh_index: usize,
    at: SourceLoc,
) -> Result<String, LowerError> {
    let target = match (&m.kind, &m.target) {
        (MountType::Secret, t) => match (t, &m.env) {
            (Some(t), _) => absolute_in(workdir, t),
            (None, Some(_)) => String::new(),
            (None, None) => {
                let id = secret_id(m).unwrap_or_default();
                format!("/run/secrets/{}", base_name(&id))
            }
        },
        (MountType::Ssh, t) => match t {
            Some(t) => absolute_in(workdir, t),
            None => format!("/run/buildkit/ssh_agent.{}", ssh_index - 1),
        },
        // BuildKit joins a relative or missing target onto the working directory.
        (_, t) => absolute_in(workdir, t.as_deref().unwrap_or("")),
    };
    if target == "/" {
        return Err(LowerError::MountTargetRoot { at, target });
    }
    Ok(target)
}

/// The type and `from=` of a mount value, read without expanding anything.
pub(super) fn mount_type_and_from(raw: &str) -> (Option<MountType>, Option<String>) {
    let mut kind = Some(MountType::Bind);
    let mut from = None;
    for field in raw.split(',') {
        let field = field.trim_matches('"');
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        match k.to_lowercase().as_str() {
            "type" => {
                kind = match v.to_lowercase().as_str() {
                    "bind" => Some(MountType::Bind),
                    "cache" => Some(MountType::Cache),
                    "tmpfs" => Some(MountType::Tmpfs),
                    "secret" => Some(MountType::Secret),
                    "ssh" => Some(MountType::Ssh),
                    _ => None,
                }
            }
            "from" => from = Some(v.to_owned()),
            _ => {}
        }
    }
    (kind, from)
}

/// A secret's id: its `source` or `id`, else the name of its target.
fn secret_id(m: &RunMount) -> Option<String> {
    m.source
        .clone()
        .or_else(|| m.id.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| m.target.as_deref().map(base_name))
}

/// The last element of a path (Go's `path.Base`).
fn base_name(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some("") | None => "/".into(),
        Some(b) => b.into(),
    }
}
