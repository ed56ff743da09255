//! Entitlements (`strata build --allow`): what a Dockerfile may ask of the sandbox only when
//! whoever starts the build allows it, as BuildKit's `--allow`; a Dockerfile alone never
//! grants one. Checked on the steps of the target before anything runs, so a
//! refusal points at its Dockerfile line and a build that asks for more than it was allowed
//! does nothing at all.

use strata_frontend::{Diagnostic, Diagnostics};
use strata_graph::{Graph, NetworkMode, NodeId, Op, SecurityMode};

/// One `--allow` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entitlement {
    /// `network.host`: RUN steps in the host's network namespace (`RUN --network=host`,
    /// `strata build --network=host`).
    NetworkHost,
    /// `security.insecure`: `RUN --security=insecure` runs without the seccomp filter and
    /// with every capability.
    SecurityInsecure,
}

/// An `--allow` value that names no entitlement.
#[derive(Debug, thiserror::Error)]
#[error("unknown entitlement {0:?} (expected network.host or security.insecure)")]
pub struct EntitlementError(String);

impl Entitlement {
    /// Parses BuildKit's name (`network.host`, `security.insecure`).
    pub fn parse(s: &str) -> Result<Self, EntitlementError> {
        match s {
            "network.host" => Ok(Entitlement::NetworkHost),
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            other => Err(EntitlementError(other.to_owned())),
        }
    }

    /// The name `--allow` takes.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }
}

impl std::fmt::Display for Entitlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every step among `nodes` that needs an entitlement not in `allowed`, as Dockerfile errors
/// at the steps' places.
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
        if exec.network == NetworkMode::Host && !allowed.contains(&Entitlement::NetworkHost) {
            diags.push(Diagnostic::error(
                loc,
                "network mode host is not allowed: start the build with --allow network.host",
            ));
        }
    }
    diags.sort();
    diags.dedup();
    diags
}
