//! strata's own config file: the registry settings of docker's `daemon.json`, under the same
//! keys so that a user can copy theirs. Read once per command, by [`Config::load`].
//!
//! ```json
//! {
//!   "insecure-registries": ["registry.lan:5000", "10.0.0.0/8"],
//!   "registry-mirrors": ["https://mirror.example"],
//!   "builder": { "gc": { "enabled": true, "defaultKeepStorage": "10GB" } }
//! }
//! ```
//!
//! `builder.gc` is the automatic build cache GC after each build (docs/cache.md): off with
//! `"enabled": false`; `defaultKeepStorage` in docker's sizes (powers of 1024), by default
//! BuildKit's: 10% of the store's filesystem, at most 10 GB.
//!
//! Where: `$STRATA_CONFIG`, else `/etc/strata/config.json` as root, else
//! `$XDG_CONFIG_HOME/strata/config.json` (`~/.config/strata/config.json`). A missing file is
//! the defaults; other keys of `daemon.json` are ignored; a file that is not valid JSON, or
//! whose known keys have the wrong type, is an error naming the file, the line and the column.

use std::path::{Path, PathBuf};

/// The settings of the config file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Config {
    /// Registries (`host[:port]`, CIDR ranges) spoken to without verified TLS.
    #[serde(default)]
    pub(crate) insecure_registries: Vec<String>,
    /// Mirrors of Docker Hub (`https://host[:port]`), tried in order for its images.
    #[serde(default)]
    pub(crate) registry_mirrors: Vec<String>,
    /// daemon.json's `builder` section (only `gc`).
    #[serde(default)]
    pub(crate) builder: BuilderConfig,
    /// The file it was read from, for error messages (`None`: the defaults, no file).
    #[serde(skip)]
    pub(crate) path: Option<PathBuf>,
}

/// daemon.json's `builder` section.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct BuilderConfig {
    /// The automatic garbage collection of the build cache.
    #[serde(default)]
    pub(crate) gc: GcConfig,
}

/// daemon.json's `builder.gc` (its camelCase keys).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GcConfig {
    /// Whether the GC runs after builds (default: yes).
    pub(crate) enabled: Option<bool>,
    /// The unshared cache to keep, in docker's sizes (`10GB`).
    pub(crate) default_keep_storage: Option<String>,
}

impl Config {
    /// The GC policy for the store at `root`: the file's, else BuildKit's default.
    pub(crate) fn gc_policy(&self, root: &Path) -> anyhow::Result<strata_build::GcPolicy> {
        let gc = &self.builder.gc;
        let mut policy = match &gc.default_keep_storage {
            Some(size) => strata_build::GcPolicy {
                enabled: true,
                keep_storage: crate::units::parse_size(size).map_err(|e| {
                    let file = self.path.as_deref().unwrap_or(Path::new("(defaults)"));
                    anyhow::anyhow!("{e} in builder.gc.defaultKeepStorage of {}", file.display())
                })?,
            },
            None => strata_build::GcPolicy::default_for(root)?,
        };
        policy.enabled = gc.enabled.unwrap_or(true);
        Ok(policy)
    }
}

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// It exists but cannot be read.
    #[error("failed to read strata's config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It is not JSON, or a known key has the wrong type.
    #[error("invalid strata config {}:{line}:{column}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl Config {
    /// The file this user's commands read (see the module's doc).
    pub(crate) fn path() -> PathBuf {
        #[expect(
            clippy::disallowed_methods,
            reason = "the CLI reads the environment once"
        )]
        let explicit = std::env::var_os("STRATA_CONFIG").filter(|v| !v.is_empty());
        if let Some(path) = explicit {
            return PathBuf::from(path);
        }
        if crate::report::running_as_root() {
            return PathBuf::from("/etc/strata/config.json");
        }
        crate::user_dir("XDG_CONFIG_HOME", ".config").join("strata/config.json")
    }

    /// Reads [`Config::path`]; a missing file is the defaults.
    pub(crate) fn load() -> Result<Config, ConfigError> {
        Config::read(&Config::path())
    }

    /// Reads `path`; a missing file is the defaults.
    pub(crate) fn read(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match fs_err::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut config: Config =
            serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_daemon_json_keys_and_ignores_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"insecure-registries": ["r.lan:5000", "10.0.0.0/8"], "log-driver": "json-file",
                "registry-mirrors": ["https://mirror.example"]}"#,
        )
        .unwrap();
        let config = Config::read(&path).unwrap();
        assert_eq!(config.insecure_registries, ["r.lan:5000", "10.0.0.0/8"]);
        assert_eq!(config.registry_mirrors, ["https://mirror.example"]);
        assert_eq!(config.builder.gc.enabled, None);
        assert_eq!(config.path.as_deref(), Some(path.as_path()));
        let missing = Config::read(&dir.path().join("none.json")).unwrap();
        assert!(missing.insecure_registries.is_empty() && missing.path.is_none());
    }

    #[test]
    fn builder_gc_is_read_as_daemon_json_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"builder": {"gc": {"enabled": false, "defaultKeepStorage": "2GB"}}}"#,
        )
        .unwrap();
        let policy = Config::read(&path).unwrap().gc_policy(dir.path()).unwrap();
        assert_eq!((policy.enabled, policy.keep_storage), (false, 2 << 30));
        fs_err::write(
            &path,
            r#"{"builder": {"gc": {"defaultKeepStorage": "lots"}}}"#,
        )
        .unwrap();
        let err = Config::read(&path)
            .unwrap()
            .gc_policy(dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("defaultKeepStorage"), "{err}");
    }

    #[test]
    fn a_malformed_file_is_named_with_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(&path, "{\n  \"insecure-registries\": [\"a\",]\n}\n").unwrap();
        let err = Config::read(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid strata config {}:2:31", path.display())
        );
        fs_err::write(&path, r#"{"registry-mirrors": "https://m"}"#).unwrap();
        let err = Config::read(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("invalid strata config {}:1:", path.display())),
            "{err}"
        );
    }
}
