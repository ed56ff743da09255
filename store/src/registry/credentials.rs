//! Credentials in docker's config file (`~/.docker/config.json`), so that a user who ran
//! `docker login` is logged in for strata too, and `strata login` is visible to docker: a
//! credential helper when the file names one for the registry (`credHelpers`, else
//! `credsStore`; see `helper.rs`), else the `auths` map (`auth` = base64 of `user:password`, or
//! `username` + `password`). The CLI finds the file (`$DOCKER_CONFIG`, `$HOME`); this module
//! only gets its path.
//!
//! Hand-written rather than the `docker_credential` crate: that crate reads the same map but
//! finds the file itself from the environment (libraries here never read it) and cannot
//! write, which `login` and `logout` need.

use crate::durable::write_atomic;
use crate::registry::error::RegistryError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Docker's config file, read once: the credentials of its `auths` map and the helpers it
/// names. What a helper answers is asked once per registry and kept.
#[derive(Debug, Default)]
pub(crate) struct DockerConfig {
    path: Option<PathBuf>,
    auths: Vec<(String, Credentials)>,
    doc: Map<String, Value>,
    from_helpers: Mutex<HashMap<String, Option<Credentials>>>,
}

/// The helper docker's config `doc` names for registry `host`: its `credHelpers` entry, else
/// `credsStore`.
fn helper_in(doc: &Map<String, Value>, host: &str) -> Option<String> {
    let per_registry = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|m| m.iter().find(|(k, _)| host_of(k) == host))
        .and_then(|(_, v)| v.as_str());
    per_registry
        .or_else(|| doc.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
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
            doc,
            from_helpers: Mutex::default(),
        })
    }

    /// The credentials for `registry` (`localhost:5000`, `docker.io`), if any: from its
    /// credential helper, else from `auths`.
    pub(crate) fn credentials(&self, registry: &str) -> Option<Credentials> {
        let host = host_of(registry);
        if let Some(helper) = helper_in(&self.doc, &host) {
            let mut cache = self
                .from_helpers
                .lock()
                .expect("no thread panics holding the lock");
            let answer = cache
                .entry(host.clone())
                .or_insert_with(|| crate::registry::helper::get(&helper, &config_key(&host)));
            if let Some(c) = answer {
                return Some(c.clone());
            }
        }
        self.auths
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, c)| c.clone())
    }

    /// How to say where credentials for `registry` came from, for error messages.
    pub(crate) fn describe(&self, registry: &str) -> String {
        let helper = helper_in(&self.doc, &host_of(registry));
        match (&self.path, self.credentials(registry)) {
            (Some(_), Some(c)) if helper.is_some() => format!(
                "tried the credentials of user {:?} from docker-credential-{}",
                c.username,
                helper.unwrap_or_default()
            ),
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
/// 0600, every other field kept), or into the credential helper it names for `server`, as
/// `docker login` does.
pub fn save_credentials(
    path: &Path,
    server: &str,
    credentials: &Credentials,
) -> Result<(), RegistryError> {
    let mut doc = read_document(path)?;
    let doc_helpers = doc.clone();
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
    let entry = match helper_in(&doc_helpers, &host) {
        // The helper keeps the password; docker writes an empty entry to list the login.
        Some(helper) => {
            crate::registry::helper::store(&helper, &config_key(&host), credentials)?;
            serde_json::json!({})
        }
        None => serde_json::json!({
            "auth": BASE64.encode(format!("{}:{}", credentials.username, credentials.password))
        }),
    };
    auths.insert(config_key(&host), entry);
    write_document(path, &doc)
}

/// Removes the credentials for `server` from the docker config at `path` (and its credential
/// helper); returns whether the file listed a login (`docker logout` says "Not logged in"
/// otherwise).
pub fn remove_credentials(path: &Path, server: &str) -> Result<bool, RegistryError> {
    let mut doc = read_document(path)?;
    let host = host_of(server);
    if let Some(helper) = helper_in(&doc, &host) {
        crate::registry::helper::erase(&helper, &config_key(&host))?;
    }
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
        assert_eq!(read.credentials("localhost:5000"), Some(creds.clone()));

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

    #[test]
    fn a_registry_s_own_helper_wins_over_the_store_for_all() {
        let doc: Map<String, Value> = serde_json::from_str(
            r#"{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud","https://index.docker.io/v1/":"hub"}}"#,
        )
        .unwrap();
        assert_eq!(helper_in(&doc, "gcr.io").as_deref(), Some("gcloud"));
        assert_eq!(helper_in(&doc, "docker.io").as_deref(), Some("hub"));
        assert_eq!(
            helper_in(&doc, "localhost:5000").as_deref(),
            Some("desktop")
        );
        let none: Map<String, Value> = serde_json::from_str(r#"{"credsStore":""}"#).unwrap();
        assert_eq!(helper_in(&none, "gcr.io"), None);
    }
}
