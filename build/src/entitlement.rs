//! Entitlements (`strata build --allow`): what a Dockerfile may ask of the sandbox only when
//! whoever starts the build allows it, as BuildKit's `--allow`; and the RUN features the
//! frontend reads but the build cannot carry out yet (a secret given as a variable). Checked
//! on the steps of the target before anything runs, so a refusal points at its Dockerfile
//! line and a build that asks for more than it was allowed does nothing at all.

use strata_frontend::{Diagnostic, Diagnostics};
use strata_graph::{Graph, MountKind, NodeId, Op, SecurityMode};

/// One `--allow` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entitlement {
    /// `security.insecure`: `RUN --security=insecure` runs without the seccomp filter and
    /// with every capability.
    SecurityInsecure,
    /// `network.host`: accepted for BuildKit's command lines; `RUN --network=host` needs
    /// nothing here, as with `docker build`.
    NetworkHost,
}

/// The names `--allow` takes, as BuildKit names them.
pub const ENTITLEMENTS: [&str; 2] = ["security.insecure", "network.host"];

/// An `--allow` value that names no entitlement.
#[derive(Debug, thiserror::Error)]
#[error("unknown entitlement {0:?} (expected security.insecure or network.host)")]
pub struct EntitlementError(String);

impl Entitlement {
    /// Parses BuildKit's name (`security.insecure`, `network.host`).
    pub fn parse(s: &str) -> Result<Self, EntitlementError> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            "network.host" => Ok(Entitlement::NetworkHost),
            other => Err(EntitlementError(other.to_owned())),
        }
    }
}

/// Every step among `nodes` that needs an entitlement not in `allowed`, or a feature strata
/// does not have yet, as Dockerfile errors at the steps' places.
pub(crate) fn check(graph: &Graph, nodes: &[NodeId], allowed: &[Entitlement]) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for &id in nodes {
        let node = graph.node(id);
        let Op::Exec(exec) = &node.op else {
            continue;
        };
        let loc = node.loc.map(|r| r.start).unwrap_or_default();
        if exec.security == SecurityMode::Insecure
            && !allowed.contains(&Entitlement::SecurityInsecure)
        {
            diags.push(Diagnostic::error(
                loc,
                "RUN --security=insecure is not allowed: start the build with \
                 --allow security.insecure",
            ));
        }
        for m in &exec.mounts {
            if let MountKind::Secret { env: Some(var), .. } = &m.kind {
                diags.push(Diagnostic::error(
                    loc,
                    format!(
                        "RUN --mount=type=secret,env={var} is not supported yet: strata cannot pass build secrets"
                    ),
                ));
            }
        }
    }
    diags.sort();
    diags.dedup();
    diags
}
