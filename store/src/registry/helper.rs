//! Docker credential helpers (`docker-credential-<name>`: pass, secretservice, osxkeychain,
//! ecr-login, desktop …), which hold the passwords when docker's config names one in
//! `credsStore` (for every registry) or `credHelpers` (per registry). The protocol is docker's
//! (`docker-credential-helpers`): `get` reads a server URL on stdin and prints
//! `{"ServerURL","Username","Secret"}`; `store` reads that JSON; `erase` reads the URL. A
//! helper that fails `get` has no credentials for the server.
//!
//! Hand-written: the protocol is three subprocess calls, and the crates that speak it either
//! find docker's config themselves (from the environment) or only `get`.

use crate::registry::credentials::Credentials;
use crate::registry::error::RegistryError;
use std::io::Write;
use std::process::{Command, Stdio};

/// The program of helper `name`, found on `PATH` as docker finds it.
fn program(name: &str) -> String {
    format!("docker-credential-{name}")
}

/// docker's marker for an identity token (an OAuth refresh token) instead of a password: we
/// cannot use one as basic credentials, so such an answer counts as none.
const IDENTITY_TOKEN_USER: &str = "<token>";

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

fn run(name: &str, action: &'static str, input: &[u8]) -> Result<std::process::Output, String> {
    let mut child = Command::new(program(name))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program(name)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .map_err(|e| format!("{} {action} failed: {e}", program(name)))
}

/// The credentials helper `name` holds for `server`; `None` when it has none or cannot run.
pub(crate) fn get(name: &str, server: &str) -> Option<Credentials> {
    let out = run(name, "get", server.as_bytes()).ok()?;
    if !out.status.success() {
        return None;
    }
    let answer: HelperCredentials = serde_json::from_slice(&out.stdout).ok()?;
    if answer.username.is_empty() || answer.username == IDENTITY_TOKEN_USER {
        return None;
    }
    Some(Credentials {
        username: answer.username,
        password: answer.secret,
    })
}

fn failed(name: &str, action: &'static str, reason: String) -> RegistryError {
    RegistryError::Helper {
        helper: program(name),
        action,
        reason,
    }
}

/// Gives `credentials` for `server` to helper `name` to keep.
pub(crate) fn store(
    name: &str,
    server: &str,
    credentials: &Credentials,
) -> Result<(), RegistryError> {
    let input = serde_json::to_vec(&HelperCredentials {
        server_url: server.to_owned(),
        username: credentials.username.clone(),
        secret: credentials.password.clone(),
    })
    .expect("credentials serialise");
    let out = run(name, "store", &input).map_err(|e| failed(name, "store", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(name, "store", helper_message(&out)))
    }
}

/// Asks helper `name` to forget `server`; whether it had something to forget is not known.
pub(crate) fn erase(name: &str, server: &str) -> Result<(), RegistryError> {
    let out = run(name, "erase", server.as_bytes()).map_err(|e| failed(name, "erase", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(name, "erase", helper_message(&out)))
    }
}

/// What a failing helper said, shortened (helpers print their error on stdout).
fn helper_message(out: &std::process::Output) -> String {
    let text = if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text);
    let text = crate::untrusted::shorten(text.trim());
    if text.is_empty() {
        format!("it exited with {}", out.status)
    } else {
        text
    }
}
