//! A token server for docker-registry's token auth on 127.0.0.1, shared by the registry tests
//! (`registry.rs`) and the fault tests (`faults.rs`).

use crate::registry::openssl;
use base64::Engine as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub(crate) const TOKEN_SERVICE: &str = "strata-test-registry";
pub(crate) const TOKEN_ISSUER: &str = "strata-test-issuer";

/// How long after a token's `exp` docker-registry still accepts it (distribution's `Leeway`,
/// for clock skew).
const REGISTRY_LEEWAY: u64 = 60;

/// A token server for docker-registry's token auth, on 127.0.0.1: it grants what each token
/// request's scopes ask for to `user` with `password` (basic auth), and nothing to anyone
/// else. Tokens are JWTs signed RS256 by `openssl dgst` with a self-signed key the registry
/// trusts (its certificate in `x5c`). Every request is logged in `requests`.
pub(crate) struct TokenServer {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    /// The certificate the registry must trust (`rootcertbundle`).
    pub(crate) cert: PathBuf,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Tokens the registry accepts for five minutes, as the answers say.
    pub(crate) fn start(user: &'static str, password: &'static str) -> TokenServer {
        TokenServer::start_with(user, password, Duration::from_secs(300))
    }

    /// Tokens the registry accepts for `valid` only, while the answers still say five
    /// minutes (`expires_in`): a token server whose clock is ahead of the registry's, or that
    /// revokes tokens; the client learns of the expiry from a 401.
    pub(crate) fn start_expiring(
        user: &'static str,
        password: &'static str,
        valid: Duration,
    ) -> TokenServer {
        TokenServer::start_with(user, password, valid)
    }

    fn start_with(user: &'static str, password: &'static str, valid: Duration) -> TokenServer {
        let dir = tempfile::tempdir().expect("create a temp dir");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=strata test tokens",
            ],
        );
        openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "token.crt",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
        );
        let der = fs_err::read(dir.path().join("token.der")).expect("token.der");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&requests);
        let work = dir.path().to_owned();
        std::thread::spawn(move || {
            let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = std::io::BufRead::read_line(&mut reader, &mut line);
                let target = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut authorized = false;
                loop {
                    let mut header = String::new();
                    if std::io::BufRead::read_line(&mut reader, &mut header).is_err()
                        || header.trim().is_empty()
                    {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        authorized = v.trim() == expected;
                    }
                }
                log.lock()
                    .expect("log")
                    .push(format!("{target} authorized={authorized}"));
                // scope=repository:NAME:ACTIONS, one parameter per scope.
                let access: Vec<serde_json::Value> = target
                    .split(['?', '&'])
                    .filter_map(|p| p.strip_prefix("scope="))
                    .map(|s| {
                        s.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ",")
                    })
                    .filter(|_| authorized)
                    .filter_map(|s| {
                        let mut parts = s.splitn(3, ':');
                        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({
                            "type": kind, "name": name,
                            "actions": actions.split(',').collect::<Vec<_>>(),
                        }))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_secs();
                let header = serde_json::json!({
                    "alg": "RS256", "typ": "JWT",
                    "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
                });
                let claims = serde_json::json!({
                    "iss": TOKEN_ISSUER, "sub": if authorized { user } else { "" },
                    "aud": TOKEN_SERVICE, "exp": now + valid.as_secs() - REGISTRY_LEEWAY, "nbf": now - 10, "iat": now,
                    "jti": format!("token-{n}"), "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url.encode(header.to_string()),
                    b64url.encode(claims.to_string())
                );
                let input = work.join(format!("input-{n}"));
                fs_err::write(&input, &signing_input).expect("write the signing input");
                let signature = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign", "token.key"])
                    .arg(&input)
                    .current_dir(&work)
                    .output()
                    .expect("run openssl dgst");
                let token = format!("{signing_input}.{}", b64url.encode(&signature.stdout));
                let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
                let _ = std::io::Write::write_all(
                    &mut stream,
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        TokenServer {
            port,
            cert: dir.path().join("token.crt"),
            requests,
            _dir: dir,
        }
    }

    /// Every token request so far: `TARGET authorized=BOOL`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("log").clone()
    }
}
