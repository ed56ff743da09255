//! Errors for people, one format for every command: [`report`] prints `error:` with the top
//! message, `caused by:` for each source in the chain, the Dockerfile line with a caret when
//! the error happened at one ([`AtDockerfile`]), and a `hint:` line where the fix is known.
//!
//! ```text
//! error: [2/3] RUN exit 3 failed
//! caused by: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3
//!  --> Dockerfile:3:1
//! 3 | RUN exit 3
//!   | ^
//! ```
//!
//! Frontend findings (a Dockerfile that does not parse or lower, warnings) are not errors of
//! a run: `diag.rs` renders those, and this module borrows its snippet for the place.

use crate::diag;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use strata_graph::SourceLoc;
use strata_store::{RegistryError, StoreError};

/// An error that happened at a place in a Dockerfile. Transparent: it shows its cause's
/// message and chain; [`report`] adds the line it points at.
#[derive(Debug)]
pub(crate) struct AtDockerfile {
    /// The Dockerfile's name as the user gave it (`Dockerfile`, `ci/app.Dockerfile`).
    pub(crate) file: String,
    /// Its bytes, for the line under the message.
    pub(crate) source: Vec<u8>,
    /// Where the failing instruction starts.
    pub(crate) loc: SourceLoc,
    /// What went wrong there.
    pub(crate) error: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for AtDockerfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for AtDockerfile {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Prints `err` for people on stderr and gives the exit status: 1, or 0 when the only problem
/// is that whoever read our output stopped reading (`strata images | head`: a closed pipe is
/// not an error, and says nothing).
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    if is_closed_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let _ = std::io::stderr().lock().write_all(render(err).as_bytes());
    ExitCode::from(1)
}

/// The most characters of one message (or step label) printed: a 200000-line RUN is a 400 KB
/// command, which its step's label, its error and its cause would each repeat whole.
pub(crate) const MAX_SHOWN: usize = 1000;

/// `text` made fit for a terminal: control characters other than line breaks and tabs
/// (a NUL from a Dockerfile, an escape sequence from an image's config) shown as `\u{fffd}`,
/// and its middle cut out when it is over [`MAX_SHOWN`] characters: the start says what it is
/// about, the end how it failed (`exit code: 2`).
pub(crate) fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    let text: std::borrow::Cow<'_, str> = if text.contains(unsafe_char) {
        text.replace(unsafe_char, "\u{fffd}").into()
    } else {
        text.into()
    };
    let chars = text.chars().count();
    if chars <= MAX_SHOWN {
        return text;
    }
    let (head, tail) = (MAX_SHOWN * 7 / 10, MAX_SHOWN * 3 / 10);
    let start = text.char_indices().nth(head).map_or(text.len(), |(i, _)| i);
    let end = text
        .char_indices()
        .nth(chars - tail)
        .map_or(text.len(), |(i, _)| i);
    format!(
        "{} …({} bytes cut)… {}",
        &text[..start],
        end - start,
        &text[end..]
    )
    .into()
}

/// The text [`report`] prints.
fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {}\n", clip(&err.to_string()));
    for cause in err.chain().skip(1) {
        out.push_str(&format!("caused by: {}\n", clip(&cause.to_string())));
    }
    if let Some(at) = err.chain().find_map(|e| e.downcast_ref::<AtDockerfile>()) {
        out.push_str(&diag::render_place(&at.file, &at.source, at.loc));
    }
    if let Some(hint) = hint(err, running_as_root() || crate::rootless::active()) {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// A write to our own stdout or stderr that failed because the reader went away: the error is
/// the bare `io::Error` (commands add no context to their output writes).
fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().count() == 1
        && err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The fix for the errors whose fix we know, judged on the whole chain.
fn hint(err: &anyhow::Error, root: bool) -> Option<&'static str> {
    for cause in err.chain() {
        if let Some(store) = cause.downcast_ref::<StoreError>() {
            match store {
                StoreError::ImageNotFound(_) => {
                    return Some(
                        "`strata images` lists what this store has; bring an image in with \
                         `strata pull NAME` (from a registry), `strata load -i FILE` (a docker \
                         or OCI archive) or `strata import FILE NAME` (a rootfs tarball)",
                    );
                }
                StoreError::ForeignOwner { .. } => {
                    return Some(
                        "what strata writes in a store belongs to the user it runs as: as root, \
                         in a user's store, files that user could not remove. Give strata a \
                         store of its own (--root DIR or STRATA_ROOT), or run it as the store's \
                         owner",
                    );
                }
                StoreError::NotWritable { source, .. }
                    if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
                {
                    return Some(
                        "images, inspect, history, save and system check read a read-only store; \
                         the other commands need a writable one (--root DIR or STRATA_ROOT)",
                    );
                }
                StoreError::Version { .. } => {
                    return Some(
                        "this store was written by another version of strata: give this one \
                         a store of its own with --root DIR (or STRATA_ROOT)",
                    );
                }
                _ => {}
            }
        }
        if let Some(registry) = cause.downcast_ref::<RegistryError>() {
            match registry {
                RegistryError::Unauthorized { .. } => {
                    return Some(
                        "log in with `strata login REGISTRY -u USER --password-stdin` (or \
                         `docker login`: strata reads docker's config file)",
                    );
                }
                RegistryError::Transport { .. }
                    if err.chain().any(|c| c.to_string().contains("certificate")) =>
                {
                    return Some(
                        "to trust a registry's own CA, put it in \
                         /etc/docker/certs.d/HOST:PORT/ca.crt (as for docker)",
                    );
                }
                RegistryError::Timeout { .. } => {
                    return Some(
                        "the registry accepted the connection but went silent; if it is only \
                         slow, STRATA_REGISTRY_TIMEOUT=DURATION (60s by default) waits longer",
                    );
                }
                RegistryError::Transport { .. } => {
                    return Some(
                        "check the registry's address and that it is up; strata speaks plain \
                         HTTP only to registries on this machine (127.0.0.1, localhost) and to \
                         those in \"insecure-registries\" of strata's config",
                    );
                }
                RegistryError::PlainHttp { .. } => {
                    return Some(
                        "if you trust the network to this registry, list it as \
                         \"insecure-registries\": [\"HOST:PORT\"] in strata's config \
                         ($STRATA_CONFIG, else /etc/strata/config.json as root, else \
                         ~/.config/strata/config.json), as in docker's daemon.json",
                    );
                }
                _ => {}
            }
        }
        // EPERM and EACCES both.
        let denied = cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        if denied && !root {
            return Some(
                "strata needs root for builds and containers (namespaces, mounts, file \
                 owners): run it as root, for example with sudo",
            );
        }
    }
    None
}

/// Whether this process runs as root of the host (the effective uid, read without unsafe
/// code; root of strata's own user namespace is not, see `rootless.rs`).
pub(crate) fn running_as_root() -> bool {
    if crate::rootless::active() {
        return false;
    }
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn the_chain_then_the_dockerfile_line() {
        let at = AtDockerfile {
            file: "Dockerfile".into(),
            source: b"FROM base\n\nRUN exit 3\n".to_vec(),
            loc: SourceLoc::new(3, 1),
            error: Box::new(std::io::Error::other(
                "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3",
            )),
        };
        let err = anyhow::Error::new(at).context("[2/2] RUN exit 3 failed");
        assert_eq!(
            render(&err),
            "error: [2/2] RUN exit 3 failed\n\
             caused by: process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3\n \
             --> Dockerfile:3:1\n3 | RUN exit 3\n  | ^\n"
        );
    }

    #[test]
    fn a_huge_command_is_shown_as_its_start_and_end() {
        let command = format!("echo {}", "x ".repeat(200_000));
        let err = anyhow::Error::msg(format!("process \"{command}\" could not be started"))
            .context(format!("[2/2] RUN {command} failed"));
        let out = render(&err);
        assert!(out.len() < 3 * MAX_SHOWN, "{} bytes", out.len());
        assert!(out.starts_with("error: [2/2] RUN echo x x "), "{out}");
        assert!(out.contains("x …(399022 bytes cut)… "), "{out}");
        assert!(
            out.contains("x  failed\ncaused by: process \"echo x "),
            "{out}"
        );
        assert!(out.ends_with(" x x \" could not be started\n"), "{out}");
    }

    #[test]
    fn control_characters_are_shown_not_sent_to_the_terminal() {
        assert_eq!(clip("a\0b\x1b[2Jc\nd\te"), "a\u{fffd}b\u{fffd}[2Jc\nd\te");
        assert!(matches!(clip("plain"), std::borrow::Cow::Borrowed("plain")));
    }

    #[test]
    fn a_missing_image_says_how_to_get_one() {
        let err = anyhow::Error::new(StoreError::ImageNotFound("app:1".into()));
        let text = render(&err);
        assert!(
            text.starts_with("error: no such image: app:1\nhint: "),
            "{text}"
        );
        assert!(text.contains("strata load -i FILE"), "{text}");
    }

    #[test]
    fn permission_denied_hints_at_root_only_for_others() {
        let err = Err::<(), _>(std::io::Error::from_raw_os_error(1))
            .context("failed to create the sandbox")
            .unwrap_err();
        assert!(hint(&err, false).is_some_and(|h| h.contains("run it as root")));
        assert_eq!(hint(&err, true), None);
    }

    #[test]
    fn a_closed_pipe_is_quiet_success_but_only_on_our_own_output() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_closed_pipe(&anyhow::Error::new(pipe())));
        let wrapped = Err::<(), _>(pipe()).context("failed to push").unwrap_err();
        assert!(!is_closed_pipe(&wrapped));
    }
}
