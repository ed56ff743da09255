//! `strata build --print-graph`: the graph in Graphviz DOT, each node labelled with its
//! instruction and Dockerfile line.

use crate::graph::Graph;
use std::fmt::Write;

impl Graph {
    /// Renders the graph in DOT. Node names are the first 12 hex characters of their hash.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph strata {\n  rankdir=TB;\n  node [shape=box];\n");
        for id in self.node_ids() {
            let node = self.node(id);
            let mut label = if node.label.is_empty() {
                node.op.kind().to_string()
            } else {
                node.label.clone()
            };
            if let Some(loc) = node.loc {
                let _ = write!(label, "\nDockerfile:{}", loc.start.line);
                if loc.end.line != loc.start.line {
                    let _ = write!(label, "-{}", loc.end.line);
                }
            }
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\"];",
                node.hash.short(),
                escape(&label)
            );
        }
        for id in self.node_ids() {
            let node = self.node(id);
            for input in &node.inputs {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\";",
                    self.node(*input).hash.short(),
                    node.hash.short()
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}
