//! Entitlements (`strata build --allow`): what a Dockerfile may ask of the sandbox only when
//! whoever starts the build allows it, as BuildKit's `--allow`. Checked on the graph before
//! anything runs, so a build that asks for more than it was allowed does nothing at all.

use strata_frontend::{Diagnostic, Diagnostics};
use strata_graph::{Graph, NodeId, Op, SecurityMode};

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

/// Every step among `nodes` that needs an entitlement not in `allowed`, as Dockerfile errors
/// at the steps' places.
pub(crate) fn check(graph: &Graph, nodes: &[NodeId], allowed: &[Entitlement]) -> Diagnostics {
    let mut diags = Diagnostics::new();
    if allowed.contains(&Entitlement::SecurityInsecure) {
        return diags;
    }
    for &id in nodes {
        let node = graph.node(id);
        if let Op::Exec(exec) = &node.op
            && exec.security == SecurityMode::Insecure
        {
            let loc = node.loc.map(|r| r.start).unwrap_or_default();
            diags.push(Diagnostic::error(
                loc,
                "RUN --security=insecure is not allowed: start the build with \
                 --allow security.insecure",
            ));
        }
    }
    diags
}
