//! What a build's steps may do beyond the default sandbox, checked on the lowered graph before
//! anything runs, so a refusal points at its Dockerfile line: BuildKit's entitlements
//! (`RUN --security=insecure` needs `--allow security.insecure`).

use crate::BuildError;
use strata_frontend::Diagnostics;
use strata_graph::{Graph, Op, SecurityMode, SourceLoc};

/// The entitlement `RUN --security=insecure` needs.
pub const SECURITY_INSECURE: &str = "security.insecure";

/// The entitlements `--allow` takes, as BuildKit names them (`network.host` is granted to
/// every build already).
pub const ENTITLEMENTS: [&str; 2] = [SECURITY_INSECURE, "network.host"];

/// Every step of `graph` that needs an entitlement `allow` lacks, as one error per step.
pub(crate) fn check(graph: &Graph, allow: &[String]) -> Result<(), BuildError> {
    let mut diags = Diagnostics::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let Op::Exec(exec) = &node.op else {
            continue;
        };
        let at = node.loc.map_or(SourceLoc::new(1, 1), |r| r.start);
        if exec.security == SecurityMode::Insecure && !allow.iter().any(|a| a == SECURITY_INSECURE)
        {
            diags.error(
                at,
                format!(
                    "RUN --security=insecure needs the {SECURITY_INSECURE} entitlement: build with --allow {SECURITY_INSECURE}"
                ),
            );
        }
    }
    diags.sort();
    diags.dedup();
    if diags.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Dockerfile(diags))
    }
}
