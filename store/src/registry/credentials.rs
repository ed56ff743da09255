//! Credentials in docker's config file (`~/.docker/config.json`), so that a user who ran
//! `docker login` is logged in for strata too, and `strata login` is visible to docker. Only the
//! `auths` map for now (`auth` = base64 of `user:password`, or `username` + `password`);
//! `credsStore` and `credHelpers` are kept untouched when we write. The CLI finds the file
//! (`$DOCKER_CONFIG`, `$HOME`); this module only gets its path.
//!
//! Hand-written rather than the `docker_credential` crate: that crate reads the same map but
//! finds the file itself from the environment (libraries here never read it) and cannot
//! write, which `login` and `logout` need.

use crate::durable::write_atomic;
use crate::registry::error::RegistryError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub(crate) fn basic(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Docker's key for Docker Hub in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The key `docker login SERVER` writes for `registry`.
pub(crate) fn config_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// The registry host a key of `auths` (or a `login` argument) names: `https://HOST/v1/` and
/// `http://HOST` are `HOST`, as docker matches them.
pub(crate) fn host_of(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    if is_docker_hub(host) {
        "docker.io".to_owned()
    } else {
        host.to_owned()
    }
}

/// Docker's config file, read once: the credentials of its `auths` map.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerConfig {
    path: Option<PathBuf>,
    auths: Vec<(String, Credentials)>,
}

impl DockerConfig {
    /// Reads `path`; a missing file is an empty config.
    pub(crate) fn read(path: Option<&Path>) -> Result<DockerConfig, RegistryError> {
        let Some(path) = path else {
            return Ok(DockerConfig::default());
        };
        let doc = read_document(path)?;
        let mut auths = Vec::new();
        if let Some(map) = doc.get("auths").and_then(Value::as_object) {
            for (key, entry) in map {
                if let Some(c) = decode_entry(entry) {
                    auths.push((host_of(key), c));
                }
            }
        }
        Ok(DockerConfig {
            path: Some(path.to_owned()),
            auths,
        })
    }

    /// The credentials for `registry` (`localhost:5000`, `docker.io`), if any.
    pub(crate) fn credentials(&self, registry: &str) -> Option<&Credentials> {
        let host = host_of(registry);
        self.auths.iter().find(|(h, _)| *h == host).map(|(_, c)| c)
    }

    /// How to say where credentials for `registry` came from, for error messages.
    pub(crate) fn describe(&self, registry: &str) -> String {
        match (&self.path, self.credentials(registry)) {
            (Some(path), Some(c)) => format!(
                "tried the credentials of user {:?} for {registry} in {}",
                c.username,
                path.display()
            ),
            (Some(path), None) => format!(
                "tried no credentials: {} has none for {registry}",
                path.display()
            ),
            (None, _) => "tried no credentials".to_owned(),
        }
    }
}

fn decode_entry(entry: &Value) -> Option<Credentials> {
    if let Some(auth) = entry.get("auth").and_then(Value::as_str)
        && !auth.is_empty()
    {
        let bytes = BASE64.decode(auth.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    let username = entry.get("username").and_then(Value::as_str)?;
    let password = entry.get("password").and_then(Value::as_str)?;
    Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

fn read_document(path: &Path) -> Result<Map<String, Value>, RegistryError> {
    let bytes = match fs_err::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => {
            return Err(RegistryError::Config {
                action: "read",
                path: path.to_owned(),
                source: Box::new(e),
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Config {
        action: "parse",
        path: path.to_owned(),
        source: Box::new(e),
    })
}

fn write_document(path: &Path, doc: &Map<String, Value>) -> Result<(), RegistryError> {
    let config_error = |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::Config {
        action: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir).map_err(|e| config_error(Box::new(e)))?;
    }
    let mut bytes = serde_json::to_vec_pretty(doc).map_err(|e| config_error(Box::new(e)))?;
    bytes.push(b'\n');
    // A temp file in the same directory (created 0600 by tempfile), fsynced and renamed: the
    // file holds passwords, and a crash must not leave half of it.
    write_atomic(path, &bytes).map_err(|e| config_error(Box::new(e)))
}

/// Writes `credentials` for `server` into the docker config at `path` (created if missing, mode
/// 0600, every other field kept), as `docker login` does.
pub fn save_credentials(
    path: &Path,
    server: &str,
    credentials: &Credentials,
) -> Result<(), RegistryError> {
    let mut doc = read_document(path)?;
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths
        .as_object_mut()
        .expect("auths was just made an object");
    let host = host_of(server);
    auths.retain(|k, _| host_of(k) != host);
    auths.insert(
        config_key(&host),
        serde_json::json!({
            "auth": BASE64.encode(format!("{}:{}", credentials.username, credentials.password))
        }),
    );
    write_document(path, &doc)
}

/// Removes the credentials for `server` from the docker config at `path`; returns whether there
/// were any (`docker logout` says "Not logged in" otherwise).
pub fn remove_credentials(path: &Path, server: &str) -> Result<bool, RegistryError> {
    let mut doc = read_document(path)?;
    let host = host_of(server);
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| host_of(k) != host);
    if auths.len() == before {
        return Ok(false);
    }
    write_document(path, &doc)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_docker_logins_and_matches_hosts_as_docker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "http://localhost:5000":{"username":"u","password":"p"}},
                "credsStore":"desktop"}"#,
        )
        .unwrap();
        let config = DockerConfig::read(Some(&path)).unwrap();
        let hub = config.credentials("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        assert_eq!(config.credentials("localhost:5000").unwrap().username, "u");
        assert!(config.credentials("localhost:5001").is_none());
        assert_eq!(hub.basic(), "Basic aHViOnNlY3JldA==");
        assert!(!format!("{hub:?}").contains("secret"));
    }

    #[test]
    fn login_then_logout_keeps_the_rest_of_the_file_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".docker/config.json");
        let creds = Credentials {
            username: "alice".into(),
            password: "pw:with:colons".into(),
        };
        save_credentials(&path, "localhost:5000", &creds).unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let doc: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        assert_eq!(
            doc["auths"]["localhost:5000"]["auth"],
            BASE64.encode("alice:pw:with:colons")
        );
        let read = DockerConfig::read(Some(&path)).unwrap();
        assert_eq!(read.credentials("localhost:5000"), Some(&creds));

        // docker's own fields survive a login and a logout.
        let mut doc = read_document(&path).unwrap();
        doc.insert(
            "credHelpers".into(),
            serde_json::json!({"gcr.io": "gcloud"}),
        );
        write_document(&path, &doc).unwrap();
        save_credentials(&path, "https://index.docker.io/v1/", &creds).unwrap();
        assert!(remove_credentials(&path, "http://localhost:5000").unwrap());
        assert!(!remove_credentials(&path, "localhost:5000").unwrap());
        let doc: Value = serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        assert_eq!(doc["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(
            doc["auths"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["https://index.docker.io/v1/"]
        );
    }
}
