//! Entitlements: what a build may do beyond the sandbox's defaults only when the person
//! starting it says so (`--allow`), as BuildKit's. A Dockerfile alone never grants one.

use strata_frontend::{Diagnostic, Diagnostics};
use strata_graph::{Graph, NetworkMode, Op};

/// One thing `--allow` grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entitlement {
    /// `network.host`: RUN steps in the host's network namespace.
    NetworkHost,
    /// `security.insecure`: RUN steps with every capability.
    SecurityInsecure,
}

impl Entitlement {
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

/// Every RUN of `graph` that needs an entitlement `allow` lacks, as an error at its line.
/// (Only `network.host` is checked so far.)
pub(crate) fn check(graph: &Graph, allow: &[Entitlement]) -> Result<(), Diagnostics> {
    if allow.contains(&Entitlement::NetworkHost) {
        return Ok(());
    }
    let mut errors = Vec::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let Op::Exec(exec) = &node.op else { continue };
        if exec.network != NetworkMode::Host {
            continue;
        }
        let loc = node.loc.map(|r| r.start).unwrap_or_default();
        errors.push(Diagnostic::error(
            loc,
            "network mode host is not allowed: start the build with --allow network.host",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(errors))
    }
}
