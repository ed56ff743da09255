//! TLS as docker sets it up for a registry: the system's CA bundle, plus what
//! `/etc/docker/certs.d/HOST:PORT/` holds: `*.crt` files are more CAs, a `NAME.cert` with its
//! `NAME.key` is a client certificate. A registry with such a directory is spoken to over
//! HTTPS even on a loopback address. Both paths come from the caller; the bundle is read on
//! the first HTTPS request (a build that pulls nothing never reads it).

use crate::registry::error::RegistryError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// The TLS settings of every registry, worked out once each.
#[derive(Debug, Default)]
pub(crate) struct Tls {
    certs_dir: Option<PathBuf>,
    ca_bundle: Option<PathBuf>,
    system: OnceLock<Result<Vec<Certificate<'static>>, String>>,
    configs: Mutex<HashMap<String, TlsConfig>>,
}

impl Tls {
    pub(crate) fn new(certs_dir: Option<PathBuf>, ca_bundle: Option<PathBuf>) -> Tls {
        Tls {
            certs_dir,
            ca_bundle,
            ..Tls::default()
        }
    }

    /// `certs.d/REGISTRY`, if it exists.
    fn dir(&self, registry: &str) -> Option<PathBuf> {
        let dir = self.certs_dir.as_ref()?.join(registry);
        dir.is_dir().then_some(dir)
    }

    /// Whether `registry` has a certs.d directory (then it is HTTPS, loopback or not).
    pub(crate) fn has_dir(&self, registry: &str) -> bool {
        self.dir(registry).is_some()
    }

    /// The TLS config for `registry`; `None` for ureq's default (Mozilla's roots), when there
    /// is neither a bundle nor a certs.d directory.
    pub(crate) fn config(&self, registry: &str) -> Result<Option<TlsConfig>, RegistryError> {
        let dir = self.dir(registry);
        if dir.is_none() && self.ca_bundle.is_none() {
            return Ok(None);
        }
        let mut configs = self
            .configs
            .lock()
            .expect("no thread panics holding the lock");
        if let Some(c) = configs.get(registry) {
            return Ok(Some(c.clone()));
        }
        let failed = |path: &Path, reason: String| RegistryError::Tls {
            registry: registry.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let mut roots = match self.system() {
            Ok(certs) => certs.clone(),
            Err(reason) => {
                let bundle = self.ca_bundle.as_deref().unwrap_or(Path::new("-"));
                return Err(failed(bundle, reason.clone()));
            }
        };
        let mut client = None;
        if let Some(dir) = &dir {
            let entries = fs_err::read_dir(dir).map_err(|e| failed(dir, e.to_string()))?;
            let mut names: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            names.sort();
            for path in names {
                match path.extension().and_then(|e| e.to_str()) {
                    Some("crt") => roots.extend(read_certs(&path).map_err(|r| failed(&path, r))?),
                    Some("cert") => {
                        let key_path = path.with_extension("key");
                        let chain = read_certs(&path).map_err(|r| failed(&path, r))?;
                        let key = fs_err::read(&key_path)
                            .map_err(|e| e.to_string())
                            .and_then(|pem| PrivateKey::from_pem(&pem).map_err(|e| e.to_string()))
                            .map_err(|r| failed(&key_path, r))?;
                        client = Some(ClientCert::new_with_certs(&chain, key));
                    }
                    _ => {}
                }
            }
        }
        let config = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .client_cert(client)
            .build();
        configs.insert(registry.to_owned(), config.clone());
        Ok(Some(config))
    }

    /// The system bundle's certificates, read once (none without a bundle).
    fn system(&self) -> &Result<Vec<Certificate<'static>>, String> {
        self.system.get_or_init(|| match &self.ca_bundle {
            Some(path) => read_certs(path),
            None => Ok(Vec::new()),
        })
    }
}

/// Every certificate of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = fs_err::read(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(out)
}
