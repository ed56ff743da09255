//! `--explain`: why a step missed the cache, in words a user can act on.
//!
//! The previous record of the same step (same Dockerfile, stage and position, see
//! [`crate::StepRef`]) keeps the parts of its key and the op's definition, so a miss is
//! explained by what differs: the instruction itself (which build arg or ENV value, the
//! command), the files it copies (by name, from the stored selection lists), or the step it
//! builds on.

use crate::checksum::Checksum;
use crate::key::KeyParts;
use crate::record::Record;
use crate::selection::SelectionSum;
use serde_json::Value;
use std::collections::BTreeMap;

/// Names listed before "and N more".
const MAX_NAMES: usize = 5;

/// Why the step whose key is made of `parts`, with op definition `definition`, missed, given
/// its `previous` record (if any) and a way to read stored selection lists.
pub fn explain_miss(
    parts: &KeyParts,
    definition: &Value,
    previous: Option<&Record>,
    selection: &dyn Fn(&Checksum) -> Option<SelectionSum>,
) -> String {
    let Some(prev) = previous else {
        return "no earlier build of this step".into();
    };
    if prev.parts == *parts {
        return "its earlier result is no longer in the store (pruned)".into();
    }
    if prev.parts.node != parts.node {
        match &prev.definition {
            Some(old) if old != definition => return definition_change(old, definition),
            Some(_) => {}
            None => return "its instruction changed".into(),
        }
    }
    if prev.parts.contents != parts.contents {
        let mut changes = Vec::new();
        for (i, now) in parts.contents.iter().enumerate() {
            let before = prev.parts.contents.get(i);
            if before == Some(now) {
                continue;
            }
            match (before.and_then(selection), selection(now)) {
                (Some(old), Some(new)) => {
                    let d = new.diff(&old);
                    if !d.changed.is_empty() {
                        changes.push(format!("changed {}", names(&d.changed)));
                    }
                    if !d.added.is_empty() {
                        changes.push(format!("added {}", names(&d.added)));
                    }
                    if !d.removed.is_empty() {
                        changes.push(format!("removed {}", names(&d.removed)));
                    }
                }
                _ => changes.push("the files it copies changed".into()),
            }
        }
        if !changes.is_empty() {
            return format!("source files changed: {}", changes.join("; "));
        }
    }
    if prev.parts.inputs.first() != parts.inputs.first() || prev.parts.node != parts.node {
        return "the step it builds on changed".into();
    }
    if prev.parts.inputs != parts.inputs {
        return "the stage or mount it copies from changed".into();
    }
    "its inputs changed".into()
}

fn names(paths: &[String]) -> String {
    let shown: Vec<&str> = paths.iter().take(MAX_NAMES).map(String::as_str).collect();
    match paths.len().saturating_sub(MAX_NAMES) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

fn short(v: &str) -> String {
    if v.chars().count() > 40 {
        format!("{}…", v.chars().take(40).collect::<String>())
    } else {
        v.to_owned()
    }
}

fn env_map(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// What differs between two op definitions (the graph's `Op` as JSON).
fn definition_change(old: &Value, new: &Value) -> String {
    if let (Some(o), Some(n)) = (old.get("exec"), new.get("exec")) {
        let (oe, ne) = (env_map(&o["env"]), env_map(&n["env"]));
        let mut env = Vec::new();
        for (k, v) in &ne {
            match oe.get(k) {
                Some(was) if was != v => {
                    env.push(format!("{k} changed ({} → {})", short(was), short(v)));
                }
                None => env.push(format!("{k} was set ({})", short(v))),
                _ => {}
            }
        }
        for k in oe.keys().filter(|k| !ne.contains_key(*k)) {
            env.push(format!("{k} was unset"));
        }
        if !env.is_empty() {
            return format!("build arg or ENV {}", env.join(", "));
        }
        for (field, what) in [
            ("args", "the command changed"),
            ("cwd", "its WORKDIR changed"),
            ("user", "its USER changed"),
            ("mounts", "its --mount options changed"),
            ("network", "its --network changed"),
            ("security", "its --security changed"),
        ] {
            if o[field] != n[field] {
                return what.into();
            }
        }
    }
    "its instruction changed".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryKind;
    use crate::key::CacheKey;
    use crate::selection::SelectedEntry;
    use std::time::UNIX_EPOCH;
    use strata_graph::NodeHash;

    fn parts(node: u8, input: u8, content: Option<u8>) -> KeyParts {
        KeyParts {
            node: NodeHash([node; 32]),
            inputs: vec![CacheKey([input; 32])],
            contents: content.map(|c| Checksum([c; 32])).into_iter().collect(),
        }
    }

    fn record(parts: KeyParts, definition: Value) -> Record {
        Record {
            layer: None,
            chain_id: None,
            diff_ids: vec![],
            created: UNIX_EPOCH,
            parts,
            step: None,
            definition: Some(definition),
            duration_ms: None,
        }
    }

    fn exec(env: &[&str], args: &[&str]) -> Value {
        serde_json::json!({"exec": {"args": args, "env": env, "cwd": "/", "user": ""}})
    }

    fn list(files: &[(&str, u8)]) -> SelectionSum {
        SelectionSum::new(
            files
                .iter()
                .map(|(p, d)| SelectedEntry {
                    path: (*p).into(),
                    kind: EntryKind::File,
                    digest: Checksum([*d; 32]),
                })
                .collect(),
        )
    }

    #[test]
    fn names_what_changed() {
        let none = |_: &Checksum| None;
        assert_eq!(
            explain_miss(&parts(1, 1, None), &exec(&[], &["x"]), None, &none),
            "no earlier build of this step"
        );
        let old = record(parts(1, 1, None), exec(&["V=one", "K=k"], &["x"]));
        assert_eq!(
            explain_miss(
                &parts(2, 1, None),
                &exec(&["V=two", "N=n"], &["x"]),
                Some(&old),
                &none
            ),
            "build arg or ENV N was set (n), V changed (one → two), K was unset"
        );
        assert_eq!(
            explain_miss(
                &parts(2, 1, None),
                &exec(&["V=one", "K=k"], &["y"]),
                Some(&old),
                &none
            ),
            "the command changed"
        );
        assert_eq!(
            explain_miss(
                &parts(1, 9, None),
                &exec(&["V=one", "K=k"], &["x"]),
                Some(&old),
                &none
            ),
            "the step it builds on changed"
        );
        assert_eq!(
            explain_miss(
                &parts(1, 1, None),
                &exec(&["V=one", "K=k"], &["x"]),
                Some(&old),
                &none
            ),
            "its earlier result is no longer in the store (pruned)"
        );
    }

    #[test]
    fn names_the_files_that_changed() {
        let before = list(&[("a.txt", 1), ("b.txt", 2), ("gone.txt", 3)]);
        let after = list(&[("a.txt", 9), ("b.txt", 2), ("new.txt", 4)]);
        let (b, a) = (before.checksum, after.checksum);
        let lists = move |c: &Checksum| {
            if *c == b {
                Some(before.clone())
            } else if *c == a {
                Some(after.clone())
            } else {
                None
            }
        };
        let def = serde_json::json!({"file": {}});
        let mut old_parts = parts(1, 1, None);
        old_parts.contents = vec![b];
        let mut new_parts = parts(1, 1, None);
        new_parts.contents = vec![a];
        let old = record(old_parts, def.clone());
        assert_eq!(
            explain_miss(&new_parts, &def, Some(&old), &lists),
            "source files changed: changed a.txt; added new.txt; removed gone.txt"
        );
        let many: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        assert_eq!(names(&many), "f0, f1, f2, f3, f4 and 3 more");
    }
}
