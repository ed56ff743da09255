//! The HTTP side of the client: one `ureq` agent, the scheme of each registry, authentication
//! (see `auth.rs`), retries and timeouts. Every request goes through [`RegistryClient::send`].

use crate::progress::ProgressReader;
use crate::registry::auth::{Challenge, TokenCache, TokenResponse, parse_challenge};
use crate::registry::credentials::{Credentials, DockerConfig};
use crate::registry::endpoint::{self, Insecure, Mirror};
use crate::registry::error::RegistryError;
use crate::registry::tls::Tls;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{Response, StatusCode};
use ureq::tls::TlsConfig;

/// How the client behaves. The defaults are docker's.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Docker's config file (`~/.docker/config.json`) for credentials; `None` for anonymous
    /// access only. The CLI resolves it (`$DOCKER_CONFIG`, `$HOME`).
    pub docker_config: Option<PathBuf>,
    /// Docker's `insecure-registries`: registries (`host[:port]`, or CIDR ranges such as
    /// `10.0.0.0/8`) tried over HTTPS without verifying the certificate and then over plain
    /// HTTP, as docker does. Loopback registries are plain HTTP without being listed.
    pub insecure: Vec<String>,
    /// Docker's `registry-mirrors` (`https://mirror.example`): Docker Hub's images are pulled
    /// from each in turn, then from Docker Hub (see [`RegistryClient::pull`]). Pushes and
    /// logins never use them.
    pub mirrors: Vec<String>,
    /// Docker's per-registry TLS directory (`/etc/docker/certs.d`): `HOST:PORT/*.crt` are more
    /// CAs, `*.cert` + `*.key` a client certificate; a registry with a directory there is
    /// HTTPS even on loopback.
    pub certs_dir: Option<PathBuf>,
    /// The system's CA bundle (`/etc/ssl/certs/ca-certificates.crt`); `None`: Mozilla's roots
    /// built into the client.
    pub ca_bundle: Option<PathBuf>,
    /// The longest the registry may be silent: to accept a connection, to answer a request,
    /// between two reads or writes of a body. A document (not a blob) must also arrive whole
    /// within it; a blob's transfer has no overall deadline, so a slow registry that keeps
    /// sending is never cut off, and one that stalls is given up after this long.
    pub timeout: Duration,
    /// How many times a request is retried after a 429, a 5xx or a connection error.
    pub retries: u32,
    /// The first backoff; it doubles on each retry (a `Retry-After` replaces it).
    pub backoff: Duration,
    /// Layers downloaded at once (docker: 3).
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once (docker: 5).
    pub max_concurrent_uploads: usize,
    /// Upload blobs larger than this in `PATCH` chunks of this size (for registries or proxies
    /// that limit a request's body); `None`: one `PUT` per blob.
    pub upload_chunk_size: Option<u64>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            docker_config: None,
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: None,
            ca_bundle: None,
            timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_millis(250),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            upload_chunk_size: None,
        }
    }
}

/// The longest we wait because a registry said `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client for OCI / Docker registries, shared by the threads of one pull or push.
#[derive(Debug)]
pub struct RegistryClient {
    agent: ureq::Agent,
    options: RegistryOptions,
    config: DockerConfig,
    /// Registry → what its last `401` asked for.
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<TokenCache>,
    /// Credentials given for this client only (`login` before they are saved).
    explicit: Option<(String, Credentials)>,
    tls: Tls,
    insecure: Vec<Insecure>,
    mirrors: Vec<Mirror>,
    /// Registry → how it is spoken to, worked out on its first request.
    modes: Mutex<HashMap<String, Mode>>,
}

/// How a registry is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTPS, verified.
    Https,
    /// An insecure registry: HTTPS without verification, until a request fails to connect.
    UnverifiedHttps,
    /// Plain HTTP: loopback, or an insecure registry that did not speak HTTPS.
    Http,
}

/// A request body that can be sent again on a retry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A stored blob (read as its bytes, whole or pieced), and who hears how many of its
    /// bytes went out (from 0 again on a retry).
    Blob(&'a crate::Store, &'a crate::Digest, Option<Sent<'a>>),
}

/// Told the bytes of a file body sent so far, every [`crate::progress::STEP`] and at the end.
#[derive(Clone, Copy)]
pub(crate) struct Sent<'a>(pub(crate) &'a (dyn Fn(u64) + Sync));

impl std::fmt::Debug for Sent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sent")
    }
}

/// One request: the registry, the repository scope it needs, and the HTTP parts.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'static str,
    pub(crate) registry: &'a str,
    /// `repository:NAME:pull` or `…:pull,push`; empty for `/v2/` itself.
    pub(crate) scope: String,
    /// A path (`/v2/…`) or an absolute URL (an upload `Location`).
    pub(crate) target: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body<'a>,
    /// Whether a blob is sent or received: no overall deadline, only the timeout between
    /// reads and writes (see [`RegistryOptions::timeout`]); a document must arrive whole
    /// within the timeout.
    pub(crate) blob: bool,
    /// Whether [`RegistryClient::send`] may send the request again after its connection
    /// failed. Not an upload session's `PUT` or `PATCH`: part of the body may have reached the
    /// registry, and the session is spoiled; the caller starts a new one.
    pub(crate) resend: bool,
    /// Whether [`RegistryClient::send`] authenticates the request to its registry (sends what
    /// the registry asked for, answers its `401`); not a token server's request, which carries
    /// its own credentials.
    pub(crate) authenticate: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn new(
        method: &'static str,
        registry: &'a str,
        scope: String,
        target: String,
    ) -> Self {
        Request {
            method,
            registry,
            scope,
            target,
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            blob: false,
            resend: true,
            authenticate: true,
        }
    }

    /// The path, for error messages.
    pub(crate) fn path(&self) -> String {
        match self.target.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
            None => self.target.clone(),
        }
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
    }
}

/// Whether `registry` is this machine (`localhost`, `127.0.0.0/8`, `::1`), with any port.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = endpoint::host_part(registry);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl RegistryClient {
    /// A client with `options`; reads the docker config file once, here.
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let config = DockerConfig::read(options.docker_config.as_deref())?;
        let insecure = options
            .insecure
            .iter()
            .map(|e| Insecure::parse(e))
            .collect::<Result<_, _>>()?;
        let mirrors = options
            .mirrors
            .iter()
            .map(|m| Mirror::parse(m))
            .collect::<Result<_, _>>()?;
        let tls = Tls::new(options.certs_dir.clone(), options.ca_bundle.clone());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.timeout))
            .timeout_send_request(Some(options.timeout))
            .timeout_recv_response(Some(options.timeout))
            // A stall anywhere, a blob's body included, ends after this much silence.
            .timeout_per_read(Some(options.timeout))
            .timeout_per_write(Some(options.timeout))
            // Blob downloads are redirected to storage (S3, a CDN): follow, without our
            // `Authorization` (ureq drops it on redirects).
            .max_redirects(10)
            .build()
            .into();
        Ok(RegistryClient {
            agent,
            options,
            config,
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(TokenCache::default()),
            explicit: None,
            tls,
            insecure,
            mirrors,
            modes: Mutex::new(HashMap::new()),
        })
    }

    /// Uses `credentials` for `registry` instead of the config file's (`login` checks them
    /// before saving).
    pub fn with_credentials(mut self, registry: &str, credentials: Credentials) -> Self {
        self.explicit = Some((registry.to_owned(), credentials));
        self
    }

    pub(crate) fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The mirrors' registry keys (`host[:port]`), in the order to try them.
    pub(crate) fn mirror_hosts(&self) -> impl Iterator<Item = &str> {
        self.mirrors.iter().map(|m| m.host.as_str())
    }

    /// How `registry` is spoken to now.
    fn mode(&self, registry: &str) -> Mode {
        let mut modes = self
            .modes
            .lock()
            .expect("no thread panics holding the lock");
        *modes.entry(registry.to_owned()).or_insert_with(|| {
            if let Some(mirror) = self.mirrors.iter().find(|m| m.host == registry) {
                return if mirror.scheme == "http" {
                    Mode::Http
                } else {
                    Mode::Https
                };
            }
            if self.tls.has_dir(registry) {
                Mode::Https
            } else if is_loopback(registry) {
                Mode::Http
            } else if endpoint::is_insecure(&self.insecure, registry) {
                Mode::UnverifiedHttps
            } else {
                Mode::Https
            }
        })
    }

    fn set_mode(&self, registry: &str, mode: Mode) {
        self.modes
            .lock()
            .expect("no thread panics holding the lock")
            .insert(registry.to_owned(), mode);
    }

    fn credentials(&self, registry: &str) -> Option<Credentials> {
        match &self.explicit {
            Some((r, c)) if r == registry => Some(c.clone()),
            _ => self.config.credentials(registry),
        }
    }

    /// What we tried for `registry`, for a 401 or 403 message.
    pub(crate) fn tried(&self, registry: &str) -> String {
        match &self.explicit {
            Some((r, c)) if r == registry => {
                format!("tried the credentials of user {:?}", c.username)
            }
            _ => self.config.describe(registry),
        }
    }

    /// `scheme://host` for a registry: Docker Hub's API host for `docker.io`; a mirror's own
    /// scheme; plain HTTP for loopback registries (unless certs.d has a directory for them)
    /// and for insecure ones once HTTPS failed; HTTPS for every other.
    pub(crate) fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let scheme = match self.mode(registry) {
            Mode::Http => "http",
            Mode::Https | Mode::UnverifiedHttps => "https",
        };
        format!("{scheme}://{host}")
    }

    /// Why an HTTPS request to `registry` failed after connecting: if the registry answers
    /// plain HTTP, that (and what to do about it); else `None`.
    fn plain_http_instead(&self, registry: &str, source: &ureq::Error) -> Option<RegistryError> {
        // A refused certificate is TLS spoken by both sides; so is a server that could not be
        // reached at all.
        let handshake_garbled = !matches!(
            source,
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_)
        ) && !source.to_string().contains("certificate");
        if !handshake_garbled || registry == "docker.io" || self.mode(registry) != Mode::Https {
            return None;
        }
        // The registry API over plain HTTP answers `/v2/` with 200 or 401 (an HTTPS server
        // asked in plain HTTP answers 400).
        let answer = self
            .agent
            .get(format!("http://{registry}/v2/"))
            .config()
            .timeout_global(Some(self.options.timeout.min(Duration::from_secs(10))))
            .build()
            .call()
            .ok()?;
        matches!(answer.status().as_u16(), 200 | 401).then(|| RegistryError::PlainHttp {
            registry: registry.to_owned(),
        })
    }

    fn url(&self, req: &Request<'_>) -> String {
        if req.target.contains("://") {
            req.target.clone()
        } else {
            format!("{}{}", self.base_url(req.registry), req.target)
        }
    }

    /// The `Authorization` header we would send now, from what the registry asked before.
    fn authorization(&self, registry: &str, scope: &str) -> Option<String> {
        let challenge = self
            .challenges
            .lock()
            .expect("no thread panics holding the lock")
            .get(registry)
            .cloned()?;
        match challenge {
            Challenge::Basic => self.credentials(registry).as_ref().map(Credentials::basic),
            Challenge::Bearer { .. } => self
                .tokens
                .lock()
                .expect("no thread panics holding the lock")
                .get(registry, scope)
                .map(|t| format!("Bearer {t}")),
        }
    }

    /// Answers a `401`: remembers the challenge and, for a bearer one, fetches a token.
    /// Returns whether retrying can help.
    fn authenticate(&self, req: &Request<'_>, header: Option<&str>) -> Result<bool, RegistryError> {
        let Some(challenge) = header.and_then(parse_challenge) else {
            return Ok(false);
        };
        self.challenges
            .lock()
            .expect("no thread panics holding the lock")
            .insert(req.registry.to_owned(), challenge.clone());
        match challenge {
            Challenge::Basic => Ok(self.credentials(req.registry).is_some()),
            Challenge::Bearer { realm, service } => {
                self.fetch_token(req.registry, &req.scope, &realm, service.as_deref())?;
                Ok(true)
            }
        }
    }

    fn fetch_token(
        &self,
        registry: &str,
        scope: &str,
        realm: &str,
        service: Option<&str>,
    ) -> Result<(), RegistryError> {
        let token_error = |reason: String| RegistryError::Token {
            realm: realm.to_owned(),
            scope: scope.to_owned(),
            reason,
        };
        let realm_host = realm
            .split_once("://")
            .map_or(realm, |(_, r)| r)
            .split('/')
            .next()
            .unwrap_or_default();
        if realm.starts_with("http://") && !is_loopback(realm_host) && !is_loopback(registry) {
            return Err(token_error(
                "the token server is plain HTTP: refusing to send credentials".into(),
            ));
        }
        // Through `send`, retried as any request is; errors name the token server's host.
        let mut req = Request::new("GET", realm_host, String::new(), realm.to_owned());
        req.authenticate = false;
        if let Some(service) = service {
            req.query.push(("service", service.to_owned()));
        }
        // Several scopes (a mount reads another repository) go as several parameters.
        for scope in scope.split(' ').filter(|s| !s.is_empty()) {
            req.query.push(("scope", scope.to_owned()));
        }
        if let Some(c) = self.credentials(registry) {
            req.headers.push(("Authorization", c.basic()));
        }
        let mut response = self.send(&req)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // Wrong credentials: the caller reports the 401 with the reference.
            return Ok(());
        }
        if !response.status().is_success() {
            return Err(token_error(format!("HTTP {}", response.status().as_u16())));
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(crate::blob::MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| token_error(format!("reading the answer failed: {e}")))?;
        let answer: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| token_error(format!("invalid answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("the answer has no token".into()))?;
        self.tokens
            .lock()
            .expect("no thread panics holding the lock")
            .put(registry, scope, token, answer.expires_in);
        Ok(())
    }

    fn send_once(
        &self,
        req: &Request<'_>,
        authorization: Option<&str>,
        tls: Option<&TlsConfig>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut url = self.url(req);
        for (i, (k, v)) in req.query.iter().enumerate() {
            url.push(if i == 0 && !url.contains('?') {
                '?'
            } else {
                '&'
            });
            url.push_str(k);
            url.push('=');
            url.push_str(&percent_encode(v));
        }
        let mut builder = ureq::http::Request::builder().method(req.method).uri(url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        match req.body {
            Body::Empty => self.run(builder.body(ureq::SendBody::none())?, req, tls),
            Body::Bytes(bytes) => self.run(builder.body(bytes)?, req, tls),
            Body::Blob(store, digest, sent) => {
                let blob = store.open_blob(digest).map_err(std::io::Error::other)?;
                let len = blob.len();
                let sent = sent.map_or(&(|_| ()) as &(dyn Fn(u64) + Sync), |s| s.0);
                let mut reader = ProgressReader::new(blob, len, sent);
                // A length set here keeps the body length-delimited, not chunked.
                let builder = builder.header("Content-Length", len);
                let body = ureq::SendBody::from_reader(&mut reader);
                self.run(builder.body(body)?, req, tls)
            }
        }
    }

    fn run(
        &self,
        request: ureq::http::Request<impl ureq::AsSendBody>,
        req: &Request<'_>,
        tls: Option<&TlsConfig>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let whole = (!req.blob).then_some(self.options.timeout);
        let mut config = self.agent.configure_request(request).timeout_global(whole);
        if let Some(tls) = tls {
            config = config.tls_config(tls.clone());
        }
        let request = config.build();
        self.agent.run(request)
    }

    /// Sends `req`, authenticating on a `401` and retrying (with backoff) on a `429`, a `5xx`
    /// or a connection error. Returns the last response, whatever its status.
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response<ureq::Body>, RegistryError> {
        let mut authenticated = false;
        let mut attempt = 0;
        // An upload `Location` on another host (a storage backend) gets no credentials.
        let own_host = !req.target.contains("://")
            || req
                .target
                .starts_with(&format!("{}/", self.base_url(req.registry)));
        let authenticate = own_host && req.authenticate;
        loop {
            let unverified = own_host && self.mode(req.registry) == Mode::UnverifiedHttps;
            let tls = if unverified {
                Some(TlsConfig::builder().disable_verification(true).build())
            } else if own_host {
                self.tls.config(req.registry)?
            } else {
                None
            };
            let authorization = self
                .authorization(req.registry, &req.scope)
                .filter(|_| authenticate);
            let result = self
                .send_once(req, authorization.as_deref(), tls.as_ref())
                .and_then(|response| read_document(req, response));
            let wait = match result {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && authenticate && !authenticated {
                        authenticated = true;
                        let header = response
                            .headers()
                            .get("www-authenticate")
                            .and_then(|v| v.to_str().ok());
                        if self.authenticate(req, header)? {
                            continue;
                        }
                        return Ok(response);
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || attempt >= self.options.retries {
                        return Ok(response);
                    }
                    retry_after(&response)
                }
                Err(source) => {
                    if unverified && !req.target.contains("://") {
                        // Docker's order for an insecure registry: HTTPS, then plain HTTP.
                        self.set_mode(req.registry, Mode::Http);
                        continue;
                    }
                    // Bytes that are not the protocol (a plain HTTP answer to a TLS hello)
                    // would come again: not retried.
                    let retryable = matches!(
                        source,
                        ureq::Error::Io(ref e) if e.kind() != std::io::ErrorKind::InvalidData
                    ) || matches!(
                        source,
                        ureq::Error::ConnectionFailed
                            | ureq::Error::HostNotFound
                            | ureq::Error::Timeout(_)
                    );
                    if !retryable || !req.resend || attempt >= self.options.retries {
                        if own_host && let Some(e) = self.plain_http_instead(req.registry, &source)
                        {
                            return Err(e);
                        }
                        let (registry, method, path) =
                            (req.registry.to_owned(), req.method, req.path());
                        return Err(match source {
                            ureq::Error::Timeout(_) => RegistryError::Timeout {
                                registry,
                                method,
                                path,
                                timeout: self.options.timeout,
                                source: Box::new(source),
                            },
                            _ => RegistryError::Transport {
                                registry,
                                method,
                                path,
                                source: Box::new(source),
                            },
                        });
                    }
                    None
                }
            };
            let backoff = self.options.backoff.saturating_mul(1 << attempt.min(8));
            std::thread::sleep(wait.unwrap_or(backoff).min(MAX_RETRY_AFTER));
            attempt += 1;
        }
    }

    /// Sends `req` and turns a failure into an error: `on_404` for a 404 (the caller knows what
    /// is missing: a manifest, a blob), the others as [`RegistryClient::check`] does.
    pub(crate) fn send_checked(
        &self,
        req: &Request<'_>,
        reference: &str,
        action: &'static str,
        on_404: impl FnOnce() -> RegistryError,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let response = self.send(req)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(on_404());
        }
        self.check(req, response, reference, action)
    }

    /// A response's status as an error naming what was asked (`reference`, `action`), or the
    /// response if it is a success.
    pub(crate) fn check(
        &self,
        req: &Request<'_>,
        mut response: Response<ureq::Body>,
        reference: &str,
        action: &'static str,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let registry = req.registry.to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                reference: reference.to_owned(),
                registry,
                action,
                tried: self.tried(req.registry),
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                reference: reference.to_owned(),
                registry,
                tried: self.tried(req.registry),
            },
            _ => RegistryError::Status {
                registry,
                method: req.method,
                path: req.path(),
                status: status.as_u16(),
                detail: error_detail(&mut response),
            },
        })
    }
}

/// Reads the body of a successful answer that is not a blob (a manifest, a tag list, an upload
/// session's answer) into memory, at most one byte over [`crate::blob::MAX_DOCUMENT`] (the
/// caller says what is too long). It is read in [`RegistryClient::send`]'s loop so that a
/// connection that breaks while a document arrives is retried like one that breaks before.
fn read_document(
    req: &Request<'_>,
    response: Response<ureq::Body>,
) -> Result<Response<ureq::Body>, ureq::Error> {
    if req.blob || !response.status().is_success() {
        return Ok(response);
    }
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    body.as_reader()
        .take(crate::blob::MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)?;
    Ok(Response::from_parts(
        parts,
        ureq::Body::builder().data(bytes),
    ))
}

/// How long a `Retry-After` header says to wait.
fn retry_after(response: &Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, jiff::Timestamp::now())
}

/// `Retry-After`'s two forms: seconds (`120`), or an HTTP date (`Sun, 06 Nov 1994 08:49:37
/// GMT`), which is read as RFC 2822 and counted from `now` (a past date: no wait).
fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = date.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The first message of a registry's error body (`{"errors":[{"code":…,"message":…}]}`).
pub(crate) fn error_detail(response: &mut Response<ureq::Body>) -> Option<String> {
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let first = doc.get("errors")?.as_array()?.first()?;
    let code = first
        .get("code")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    let message = first
        .get("message")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    Some(crate::untrusted::shorten(&format!("{code}: {message}")))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let client = RegistryClient::new(RegistryOptions {
            insecure: vec!["registry.lan:5000".into()],
            ..RegistryOptions::default()
        })
        .unwrap();
        for (registry, url) in [
            ("localhost:5000", "http://localhost:5000"),
            ("127.0.0.1:41234", "http://127.0.0.1:41234"),
            ("[::1]:5000", "http://[::1]:5000"),
            // Listed as insecure: HTTPS (unverified) first, plain HTTP once that fails.
            ("registry.lan:5000", "https://registry.lan:5000"),
            ("registry.lan:5001", "https://registry.lan:5001"),
            ("localhost.evil.com", "https://localhost.evil.com"),
            ("docker.io", "https://registry-1.docker.io"),
        ] {
            assert_eq!(client.base_url(registry), url, "{registry}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now: jiff::Timestamp = "1994-11-06T08:49:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:48:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    use crate::reference::Reference;
    use crate::registry::fake::FakeServer;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

    fn quick() -> RegistryOptions {
        RegistryOptions {
            backoff: Duration::ZERO,
            ..RegistryOptions::default()
        }
    }

    fn manifest_answer() -> crate::registry::fake::Answer {
        (
            200,
            vec![("Content-Type", crate::media_type::OCI_MANIFEST.to_owned())],
            MANIFEST.as_bytes().to_vec(),
        )
    }

    #[test]
    fn a_bearer_challenge_gets_a_token_for_the_repository_and_reuses_it() {
        let realm = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
        let answer_realm = std::sync::Arc::clone(&realm);
        let server = FakeServer::start(move |req, _| {
            if req.target.starts_with("/token") {
                return (200, vec![], br#"{"token":"T1","expires_in":300}"#.to_vec());
            }
            if req.authorization.as_deref() == Some("Bearer T1") {
                return manifest_answer();
            }
            let challenge = format!(
                r#"Bearer realm="{}",service="fake registry""#,
                answer_realm.get().expect("set before the first request")
            );
            (401, vec![("WWW-Authenticate", challenge)], Vec::new())
        });
        realm
            .set(format!("http://{}/token", server.host()))
            .expect("set once");
        let client = RegistryClient::new(quick()).unwrap();
        let reference = Reference::parse(&format!("{}/team/app:1", server.host())).unwrap();
        let scope = "repository:team/app:pull";
        for _ in 0..2 {
            let fetched = client.fetch_manifest(&reference, "1", scope).unwrap();
            assert_eq!(
                fetched.digest,
                crate::digest::Digest::of(MANIFEST.as_bytes())
            );
        }
        let seen: Vec<(String, Option<String>)> = server
            .seen()
            .into_iter()
            .map(|s| (s.target, s.authorization))
            .collect();
        assert_eq!(
            seen,
            [
                ("/v2/team/app/manifests/1".to_owned(), None),
                (
                    "/token?service=fake%20registry&scope=repository%3Ateam%2Fapp%3Apull"
                        .to_owned(),
                    None
                ),
                (
                    "/v2/team/app/manifests/1".to_owned(),
                    Some("Bearer T1".to_owned())
                ),
                (
                    "/v2/team/app/manifests/1".to_owned(),
                    Some("Bearer T1".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn a_busy_token_server_is_retried_and_a_silent_one_named() {
        let realm = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
        let answer_realm = std::sync::Arc::clone(&realm);
        let server = FakeServer::start(move |req, before| {
            if req.target.starts_with("/token") {
                let tries = before
                    .iter()
                    .filter(|s| s.target.starts_with("/token"))
                    .count();
                if tries == 0 {
                    return (503, vec![("Retry-After", "0".to_owned())], Vec::new());
                }
                return (200, vec![], br#"{"token":"T1"}"#.to_vec());
            }
            if req.authorization.as_deref() == Some("Bearer T1") {
                return manifest_answer();
            }
            let challenge = format!(
                r#"Bearer realm="{}",service="fake""#,
                answer_realm.get().expect("set before the first request")
            );
            (401, vec![("WWW-Authenticate", challenge)], Vec::new())
        });
        realm
            .set(format!("http://{}/token", server.host()))
            .expect("set once");
        let client = RegistryClient::new(quick()).unwrap();
        let reference = Reference::parse(&format!("{}/app:1", server.host())).unwrap();
        client
            .fetch_manifest(&reference, "1", "repository:app:pull")
            .unwrap();
        let targets: Vec<String> = server
            .seen()
            .into_iter()
            .map(|s| s.target.split('?').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            targets,
            [
                "/v2/app/manifests/1",
                "/token",
                "/token",
                "/v2/app/manifests/1"
            ]
        );

        // A token server that does not answer: the error names it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_host = silent.local_addr().unwrap().to_string();
        let registry = FakeServer::start(move |_, _| {
            let challenge = format!(r#"Bearer realm="http://{silent_host}/token""#);
            (401, vec![("WWW-Authenticate", challenge)], Vec::new())
        });
        let client = RegistryClient::new(RegistryOptions {
            timeout: Duration::from_millis(200),
            retries: 0,
            ..quick()
        })
        .unwrap();
        let reference = Reference::parse(&format!("{}/app:1", registry.host())).unwrap();
        let err = client
            .fetch_manifest(&reference, "1", "repository:app:pull")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} did not answer GET /token within 200ms",
                silent.local_addr().unwrap()
            )
        );
    }

    #[test]
    fn busy_and_failing_registries_are_retried_then_reported() {
        // Two 503s (one with Retry-After), then the manifest.
        let server = FakeServer::start(|_, before| match before.len() {
            0 => (503, vec![("Retry-After", "0".to_owned())], Vec::new()),
            1 => (429, vec![], Vec::new()),
            _ => manifest_answer(),
        });
        let client = RegistryClient::new(quick()).unwrap();
        let reference = Reference::parse(&format!("{}/app", server.host())).unwrap();
        client.fetch_manifest(&reference, "latest", "").unwrap();
        let methods: Vec<String> = server.seen().into_iter().map(|s| s.method).collect();
        assert_eq!(methods, ["GET", "GET", "GET"]);

        let always = FakeServer::start(|_, _| {
            (
                500,
                vec![],
                br#"{"errors":[{"code":"UNKNOWN","message":"disk full"}]}"#.to_vec(),
            )
        });
        let client = RegistryClient::new(RegistryOptions {
            retries: 2,
            ..quick()
        })
        .unwrap();
        let reference = Reference::parse(&format!("{}/app", always.host())).unwrap();
        let err = client.fetch_manifest(&reference, "latest", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} answered 500 to GET /v2/app/manifests/latest: UNKNOWN: disk full",
                always.host()
            )
        );
        assert_eq!(always.seen().len(), 3, "one try and two retries");
    }

    #[test]
    fn a_document_whose_connection_drops_midway_is_asked_for_again() {
        let server = FakeServer::start(|_, before| {
            let (status, mut headers, body) = manifest_answer();
            if before.is_empty() {
                // Announces the whole manifest, sends ten bytes, closes.
                headers.push(("Content-Length", MANIFEST.len().to_string()));
                return (status, headers, body[..10].to_vec());
            }
            (status, headers, body)
        });
        let client = RegistryClient::new(quick()).unwrap();
        let reference = Reference::parse(&format!("{}/app", server.host())).unwrap();
        let fetched = client.fetch_manifest(&reference, "latest", "").unwrap();
        assert_eq!(fetched.bytes, MANIFEST.as_bytes());
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn refusals_name_the_reference_and_what_was_tried() {
        let server = FakeServer::start(|req, _| {
            if req.target.contains("/secret/") {
                (
                    401,
                    vec![("WWW-Authenticate", r#"Basic realm="x""#.to_owned())],
                    Vec::new(),
                )
            } else {
                (403, vec![], Vec::new())
            }
        });
        let client = RegistryClient::new(quick()).unwrap();
        let host = server.host();
        let secret = Reference::parse(&format!("{host}/secret/app:1")).unwrap();
        let err = client.fetch_manifest(&secret, "1", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{host} refused to let us pull {host}/secret/app:1: authentication required (tried no credentials)"
            )
        );
        let denied = Reference::parse(&format!("{host}/other:1")).unwrap();
        let err = client.fetch_manifest(&denied, "1", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{host} denied access to {host}/other:1 (tried no credentials)")
        );
        // Basic credentials are sent once the registry asked for them.
        let client = RegistryClient::new(quick()).unwrap().with_credentials(
            &host,
            crate::registry::Credentials {
                username: "u".into(),
                password: "p".into(),
            },
        );
        let _ = client.fetch_manifest(&secret, "1", "");
        let last = server.seen().pop().unwrap();
        assert_eq!(last.authorization.as_deref(), Some("Basic dTpw"));
    }

    #[test]
    fn schema_1_and_wrong_digests_are_refused_by_name() {
        let server = FakeServer::start(|_, _| {
            (
                200,
                vec![(
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws".to_owned(),
                )],
                br#"{"schemaVersion":1,"name":"old","fsLayers":[]}"#.to_vec(),
            )
        });
        let client = RegistryClient::new(quick()).unwrap();
        let reference = Reference::parse(&format!("{}/old:1", server.host())).unwrap();
        let err = client.fetch_manifest(&reference, "1", "").unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}/old:1 is a schema 1 manifest (application/vnd.docker.distribution.manifest.v1+prettyjws), which strata does not support"
            , server.host())),
            "{err}"
        );
        let pinned = format!("sha256:{}", "0".repeat(64));
        let err = client.fetch_manifest(&reference, &pinned, "").unwrap_err();
        assert!(
            matches!(err, RegistryError::ManifestDigest { ref expected, .. } if expected.as_str() == pinned),
            "{err}"
        );
    }
}
