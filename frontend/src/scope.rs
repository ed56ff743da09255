//! Which variables an instruction sees: the ordered environment of a stage (image env, then
//! ARGs and ENVs as they come) and the global scope of FROM lines (the platform args and the
//! ARGs before the first FROM).
//!
//! Docker's rules, and why they matter for the cache: an ARG is invisible until declared; once
//! declared its value (the `--build-arg`, else its default, else the global value) joins the
//! stage's environment, so every later RUN sees it and its key changes with it; an ENV of the
//! same name overrides it. Undeclared build args are ignored, except the proxy variables,
//! which RUNs get without a declaration but which stay out of keys and history.

use crate::expand::Vars;
use std::collections::{BTreeMap, HashMap};
use strata_store::Platform;

/// An ordered `KEY=VALUE` list where setting a key again moves it to the end (LLB's
/// `EnvList`): the environment a RUN gets, in order. Lookups and updates are O(1): a removed
/// entry leaves a hole that `to_vec` skips, so a Dockerfile with thousands of ENVs stays linear.
/// Each entry is kept as the `KEY=VALUE` string a RUN's op holds, so that giving every RUN
/// its environment is a copy, not a format.
#[derive(Debug, Clone, Default)]
pub struct EnvList {
    /// `KEY=VALUE` and the length of `KEY` (a key may hold `=`, a value always may).
    entries: Vec<Option<(String, usize)>>,
    index: HashMap<String, usize>,
}

impl PartialEq for EnvList {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for EnvList {}

impl EnvList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, moving it to the end.
    pub fn set(&mut self, key: &str, value: &str) {
        if let Some(old) = self.index.remove(key) {
            self.entries[old] = None;
        }
        self.index.insert(key.to_owned(), self.entries.len());
        let mut entry = String::with_capacity(key.len() + 1 + value.len());
        entry.push_str(key);
        entry.push('=');
        entry.push_str(value);
        self.entries.push(Some((entry, key.len())));
        // Compact when holes dominate, so memory stays proportional to the live entries.
        if self.entries.len() > 64 && self.index.len() * 2 < self.entries.len() {
            self.entries.retain(Option::is_some);
            for (i, (entry, key_len)) in self.entries.iter().flatten().enumerate() {
                if let Some(slot) = self.index.get_mut(&entry[..*key_len]) {
                    *slot = i;
                }
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = *self.index.get(key)?;
        self.entries[i]
            .as_ref()
            .map(|(entry, key_len)| &entry[key_len + 1..])
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .flatten()
            .map(|(entry, key_len)| (&entry[..*key_len], &entry[key_len + 1..]))
    }

    /// `KEY=VALUE` strings, in order.
    pub fn to_vec(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.index.len());
        out.extend(
            self.entries
                .iter()
                .flatten()
                .map(|(entry, _)| entry.clone()),
        );
        out
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl Vars for EnvList {
    fn get(&self, name: &str) -> Option<&str> {
        EnvList::get(self, name)
    }
}

/// Build args that reach RUN without a declaration, in either case.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Build args BuildKit reads itself and never puts in the environment.
pub(crate) const NON_ENV_ARGS: [&str; 2] =
    ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// The automatic global args (BuildKit's `defaultArgs`), `--build-arg` overriding them.
pub(crate) fn default_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
    overrides: &BTreeMap<String, String>,
) -> EnvList {
    let pairs = [
        ("BUILDPLATFORM", build.format()),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.arch.clone()),
        ("BUILDVARIANT", build.variant.clone()),
        ("TARGETPLATFORM", target.format()),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.arch.clone()),
        ("TARGETVARIANT", target.variant.clone()),
        ("TARGETSTAGE", target_stage.to_owned()),
    ];
    let mut env = EnvList::new();
    for (k, v) in pairs {
        let v = overrides.get(k).cloned().unwrap_or(v);
        env.set(k, &v);
    }
    env
}

/// The proxy variables given as build args, as `KEY=VALUE` for both spellings of each
/// (what BuildKit's executor adds from `ProxyEnv`), sorted.
pub(crate) fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = BTreeMap::new();
    for (k, v) in build_args {
        let upper = k.to_uppercase();
        if PROXY_ARGS.contains(&upper.as_str()) {
            out.insert(upper.clone(), v.clone());
            out.insert(upper.to_lowercase(), v.clone());
        }
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_again_moves_to_the_end() {
        let mut env = EnvList::new();
        env.set("A", "1");
        env.set("B", "2");
        env.set("A", "3");
        assert_eq!(env.to_vec(), ["B=2", "A=3"]);
        assert_eq!(env.get("A"), Some("3"));
        // Many updates compact the holes without changing the order.
        for i in 0..200 {
            env.set("B", &i.to_string());
        }
        assert_eq!(env.to_vec(), ["A=3", "B=199"]);
        assert!(env.entries.len() <= 65, "holes are compacted");
    }

    #[test]
    fn platform_args_and_overrides() {
        let mut overrides = BTreeMap::new();
        overrides.insert("TARGETARCH".to_owned(), "custom".to_owned());
        let env = default_args(
            &Platform::linux_amd64(),
            &Platform::new("linux", "arm", "v7"),
            "final",
            &overrides,
        );
        assert_eq!(env.get("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(env.get("TARGETVARIANT"), Some("v7"));
        assert_eq!(env.get("TARGETARCH"), Some("custom"));
        assert_eq!(env.get("BUILDPLATFORM"), Some("linux/amd64"));
        assert_eq!(env.get("BUILDVARIANT"), Some(""));
        assert_eq!(env.get("TARGETSTAGE"), Some("final"));
    }

    #[test]
    fn proxies_in_both_cases() {
        let args: BTreeMap<String, String> = [
            ("http_proxy", "http://p:3128"),
            ("NO_PROXY", "localhost"),
            ("OTHER", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            proxy_env(&args),
            [
                "HTTP_PROXY=http://p:3128",
                "NO_PROXY=localhost",
                "http_proxy=http://p:3128",
                "no_proxy=localhost"
            ]
        );
    }
}
