//! `RUN --mount`: each mount, once its value is expanded, as a graph mount and its inputs.

use super::Lowering;
use super::context::Dispatch;
use super::path::join_root;
use crate::mount::{MountType, RunMount};
use strata_graph::{MountKind, NodeId};

impl Lowering<'_> {
    pub(super) fn mount_kind(
        &mut self,
        stage: usize,
        d: &Dispatch,
        m: &RunMount,
        inputs: &mut Vec<NodeId>,
        ssh_index: &mut usize,
    ) -> Result<MountKind, String> {
        let input_for = |this: &mut Self,
                         from: &Option<String>,
                         inputs: &mut Vec<NodeId>|
         -> Result<usize, String> {
            let node = match from {
                None => this.context_node(),
                Some(f) => {
                    let (source, _) = this.source_for(f, false);
                    this.source_node(&source?, stage)?
                }
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
                    id: m
                        .id
                        .clone()
                        .or_else(|| m.target.clone())
                        .unwrap_or_default(),
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
                let id = secret_id(m).ok_or("one of source, target required")?;
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
                    return Err("ssh does not support source".into());
                }
                *ssh_index += 1;
                let _ = d;
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

pub(super) fn secret_id(m: &RunMount) -> Option<String> {
    m.source
        .clone()
        .or_else(|| m.id.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| m.target.as_deref().map(base_name))
}

pub(super) fn base_name(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some("") | None => "/".into(),
        Some(b) => b.into(),
    }
}
