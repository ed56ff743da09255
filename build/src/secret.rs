//! A build's secrets and ssh agents (`--secret`, `--ssh`): BuildKit's flag syntax, and what a
//! build makes of them when it starts. Each secret's value is read once (a file here, or a
//! variable the caller read) into the backend's [`Secrets`], whose values never enter a key, a
//! record, a layer or an event. Each ssh id becomes one agent socket: the socket given, or,
//! for private key files, an `ssh-agent` of this build's own, stopped when the build ends.
//!
//! The per-build agent is the real `ssh-agent` plus `ssh-add` (openssh-client), not an agent
//! written here: parsing every private key format (and its passphrase prompt) is OpenSSH's
//! job, and its agent is the one the step's `ssh` client expects to talk to.

use crate::spec::{SpecError, fields, unknown_key};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use strata_solver::Secrets;
use strata_store::Store;

/// Where a secret's value comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// `src=FILE`: read when the build starts.
    File(PathBuf),
    /// `env=VAR`: the variable's value, read by the caller (`None`: the variable is not set).
    Env {
        /// The variable's name.
        var: String,
        /// Its value.
        value: Option<Vec<u8>>,
    },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Env { var, .. } => f.debug_struct("Env").field("var", var).finish(),
        }
    }
}

/// One `--secret` flag, parsed: `id=ID[,src=FILE|,env=VAR][,type=file|env]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFlag {
    /// The secret's id.
    pub id: String,
    /// `src=`/`source=`: a file, as given (the caller makes it absolute).
    pub src: Option<PathBuf>,
    /// `env=`: a variable.
    pub env: Option<String>,
}

impl SecretFlag {
    /// Parses a `--secret` value. With neither `src=` nor `env=`, BuildKit reads the variable
    /// named like the id when it is set and else the file of that name; the caller decides.
    pub fn parse(spec: &str) -> Result<Self, SpecError> {
        const FLAG: &str = "--secret";
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for (k, v) in fields(FLAG, spec)? {
            match k.to_ascii_lowercase().as_str() {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => src = Some(v.to_owned()),
                "env" => env = Some(v.to_owned()),
                "type" => match v {
                    "file" | "env" => kind = Some(v),
                    _ => {
                        return Err(SpecError::BadValue {
                            flag: FLAG,
                            key: "type",
                            value: v.to_owned(),
                            expected: "file or env",
                        });
                    }
                },
                _ => return Err(unknown_key(FLAG, spec, k)),
            }
        }
        if kind == Some("env") && env.is_none() {
            env = src.take();
        }
        let id = id.filter(|id| !id.is_empty()).ok_or(SpecError::Missing {
            flag: FLAG.to_owned(),
            needs: "id=ID",
        })?;
        Ok(Self {
            id,
            src: src.map(PathBuf::from),
            env,
        })
    }
}

/// Where an ssh id's agent is: one socket, or private key files to load into a fresh agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSource {
    /// Absolute paths.
    pub paths: Vec<PathBuf>,
}

/// Parses a `--ssh` value, `ID[=PATH[,PATH...]]`; no paths means the caller's agent
/// (`$SSH_AUTH_SOCK`), which the caller reads.
pub fn parse_ssh_flag(spec: &str) -> Result<(String, Vec<PathBuf>), SpecError> {
    let (id, paths) = match spec.split_once('=') {
        Some((id, paths)) => (
            id.trim(),
            paths
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        ),
        None => (spec.trim(), Vec::new()),
    };
    if id.is_empty() {
        return Err(SpecError::Missing {
            flag: "--ssh".to_owned(),
            needs: "an id (default|ID[=SOCKET|KEYFILE[,KEYFILE]])",
        });
    }
    Ok((id.to_owned(), paths))
}

/// Why a build's secrets or ssh agents could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A secret's file cannot be read.
    #[error("failed to read secret {id:?}")]
    Read {
        /// The secret's id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret's file holds more than [`MAX_SECRET_SIZE`].
    #[error("secret {id:?} in {} is larger than 500 KiB, the most a build takes", path.display())]
    TooBig {
        /// The secret's id.
        id: String,
        /// Its file.
        path: PathBuf,
    },
    /// A secret's variable is not set.
    #[error("secret {id:?}: environment variable {var} is not set")]
    EnvUnset {
        /// The secret's id.
        id: String,
        /// The variable.
        var: String,
    },
    /// An ssh id names no path (its default `$SSH_AUTH_SOCK` was not set).
    #[error("--ssh {id}: no agent socket or key file (is SSH_AUTH_SOCK set?)")]
    SshNoPath {
        /// The ssh id.
        id: String,
    },
    /// An ssh path cannot be read.
    #[error("--ssh {id}: cannot use its path")]
    SshPath {
        /// The ssh id.
        id: String,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An ssh id names a socket along with other paths.
    #[error("--ssh {id}: a socket must be the only path of its id")]
    SshSocketNotAlone {
        /// The ssh id.
        id: String,
    },
    /// A temporary directory for an agent cannot be made.
    #[error("failed to make a directory for the ssh agent of {id}")]
    AgentDir {
        /// The ssh id.
        id: String,
        /// Why.
        #[source]
        source: strata_store::StoreError,
    },
    /// `ssh-agent` or `ssh-add` cannot be started.
    #[error(
        "--ssh {id}: key files need {program} (from openssh-client), which could not be started"
    )]
    AgentProgram {
        /// The ssh id.
        id: String,
        /// `ssh-agent` or `ssh-add`.
        program: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ssh-agent` did not start, or `ssh-add` refused a key.
    #[error("--ssh {id}: {program} failed: {message}")]
    Agent {
        /// The ssh id.
        id: String,
        /// `ssh-agent` or `ssh-add`.
        program: &'static str,
        /// What it said on standard error.
        message: String,
    },
}

/// A build's secrets and agent sockets; the agents it started stop when it is dropped.
pub(crate) struct Session {
    /// Secret values by id.
    pub(crate) secrets: Secrets,
    /// Agent sockets by ssh id.
    pub(crate) ssh: BTreeMap<String, PathBuf>,
    /// The agents started for key files (killed on drop), then their directory.
    _agents: Vec<Agent>,
}

impl Session {
    /// Reads every secret and finds or starts every agent; an agent's socket is made in a
    /// fresh directory of `store`'s staging area.
    pub(crate) fn open(
        secrets: &BTreeMap<String, SecretSource>,
        ssh: &BTreeMap<String, SshSource>,
        store: &Store,
    ) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (id, source) in secrets {
            let value = match source {
                SecretSource::File(path) => read_secret_file(id, path)?,
                SecretSource::Env { var, value } => {
                    value.clone().ok_or_else(|| SecretError::EnvUnset {
                        id: id.clone(),
                        var: var.clone(),
                    })?
                }
            };
            values.insert(id.clone(), value);
        }
        let mut sockets = BTreeMap::new();
        let mut agents = Vec::new();
        for (id, source) in ssh {
            let socket = match agent_paths(id, &source.paths)? {
                AgentPaths::Socket(socket) => socket,
                AgentPaths::Keys(keys) => {
                    let agent = Agent::start(id, &keys, store)?;
                    let socket = agent.socket.clone();
                    agents.push(agent);
                    socket
                }
            };
            sockets.insert(id.clone(), socket);
        }
        Ok(Self {
            secrets: Secrets::new(values),
            ssh: sockets,
            _agents: agents,
        })
    }
}

/// The most a secret file may hold, as BuildKit (and swarm): 500 KiB.
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// The contents of secret `id`'s file, up to [`MAX_SECRET_SIZE`].
fn read_secret_file(id: &str, path: &Path) -> Result<Vec<u8>, SecretError> {
    let read_err = |source| SecretError::Read {
        id: id.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path).map_err(read_err)?;
    let mut value = Vec::new();
    file.take(MAX_SECRET_SIZE + 1)
        .read_to_end(&mut value)
        .map_err(read_err)?;
    if value.len() as u64 > MAX_SECRET_SIZE {
        return Err(SecretError::TooBig {
            id: id.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(value)
}

/// What the paths of an ssh id are.
enum AgentPaths {
    /// An agent's socket.
    Socket(PathBuf),
    /// Private key files, for an agent of the build's own.
    Keys(Vec<PathBuf>),
}

/// The one socket `paths` names, or else the key files they are.
fn agent_paths(id: &str, paths: &[PathBuf]) -> Result<AgentPaths, SecretError> {
    if paths.is_empty() {
        return Err(SecretError::SshNoPath { id: id.to_owned() });
    }
    let mut sockets = 0;
    for path in paths {
        let meta = fs_err::metadata(path).map_err(|source| SecretError::SshPath {
            id: id.to_owned(),
            path: path.clone(),
            source,
        })?;
        if meta.file_type().is_socket() {
            sockets += 1;
        }
    }
    match (sockets, paths) {
        (0, _) => Ok(AgentPaths::Keys(paths.to_vec())),
        (1, [socket]) => Ok(AgentPaths::Socket(socket.clone())),
        _ => Err(SecretError::SshSocketNotAlone { id: id.to_owned() }),
    }
}

/// An `ssh-agent -D` of this build's own, holding its key files; killed, and its directory
/// removed, when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Agent {
    fn start(id: &str, keys: &[PathBuf], store: &Store) -> Result<Self, SecretError> {
        let dir = store
            .temp_dir("ssh-")
            .map_err(|source| SecretError::AgentDir {
                id: id.to_owned(),
                source,
            })?;
        let socket = dir.join("agent.sock");
        let program_err = |program| {
            let id = id.to_owned();
            move |source| SecretError::AgentProgram {
                id,
                program,
                source,
            }
        };
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(program_err("ssh-agent"))?;
        // With -D, ssh-agent prints its variables once the socket listens.
        let mut line = String::new();
        let ready = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let agent = Self { child, socket, dir };
        if !matches!(ready, Some(Ok(n)) if n > 0) {
            let mut agent = agent;
            let _ = agent.child.kill();
            let mut message = String::new();
            if let Some(mut err) = agent.child.stderr.take() {
                let _ = err.read_to_string(&mut message);
            }
            return Err(SecretError::Agent {
                id: id.to_owned(),
                program: "ssh-agent",
                message: message.trim().to_owned(),
            });
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .env("SSH_ASKPASS_REQUIRE", "never")
                .stdin(Stdio::null())
                .output()
                .map_err(program_err("ssh-add"))?;
            if !out.status.success() {
                return Err(SecretError::Agent {
                    id: id.to_owned(),
                    program: "ssh-add",
                    message: format!(
                        "{}: {}",
                        key.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
        }
        Ok(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags_parse_as_buildx() {
        let f = SecretFlag::parse("id=tok,src=a/b").unwrap();
        assert_eq!(
            (f.id.as_str(), f.src, f.env),
            ("tok", Some("a/b".into()), None)
        );
        let f = SecretFlag::parse("id=tok,env=TOKEN").unwrap();
        assert_eq!(f.env.as_deref(), Some("TOKEN"));
        let f = SecretFlag::parse("type=env,id=tok,source=TOKEN").unwrap();
        assert_eq!((f.src, f.env.as_deref()), (None, Some("TOKEN")));
        let f = SecretFlag::parse("id=tok").unwrap();
        assert_eq!((f.src, f.env), (None, None));
        assert_eq!(
            SecretFlag::parse("src=x").unwrap_err().to_string(),
            "--secret needs id=ID"
        );
        assert_eq!(
            SecretFlag::parse("id=a,dst=x").unwrap_err().to_string(),
            "--secret \"id=a,dst=x\": unknown key \"dst\""
        );
        assert!(SecretFlag::parse("id=a,type=ssh").is_err());
    }

    #[test]
    fn ssh_flags_parse_as_buildx() {
        assert_eq!(
            parse_ssh_flag("default").unwrap(),
            ("default".into(), vec![])
        );
        assert_eq!(
            parse_ssh_flag("k=/a,/b").unwrap(),
            ("k".into(), vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert!(parse_ssh_flag("=/a").is_err());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = SecretSource::Env {
            var: "V".into(),
            value: Some(b"hunter2".to_vec()),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let secrets = Secrets::new([("id".to_owned(), b"hunter2".to_vec())].into());
        assert_eq!(format!("{secrets:?}"), "{\"id\"}");
    }
}
