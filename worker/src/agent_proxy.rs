//! The socket a `RUN --mount=type=ssh` sees: made for that one step with the mount's owner and
//! mode, every connection to it forwarded to the build's agent, as BuildKit does. The agent
//! sees strata's user (which `ssh-agent` accepts), so a step of any user the mount allows can
//! use it, and the agent's own socket is never bound into a sandbox. Forwarding stops, and
//! every forwarded connection is closed, when the proxy is dropped at the end of the run.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

/// A listening socket forwarding to an agent; stops when dropped.
pub(crate) struct AgentProxy {
    task: tokio::task::JoinHandle<()>,
}

impl AgentProxy {
    /// Listens on `socket` (made with `mode`, `uid`, `gid`) and forwards to `agent`.
    pub(crate) fn start(
        socket: &Path,
        agent: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<Self> {
        let listener = UnixListener::bind(socket)
            .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", socket.display())))?;
        std::os::unix::fs::chown(socket, Some(uid), Some(gid))?;
        fs_err::set_permissions(socket, std::fs::Permissions::from_mode(mode))?;
        let task = tokio::spawn(async move {
            // Dropped with this task: aborts every connection still forwarded.
            let mut conns = JoinSet::new();
            while let Ok((mut inner, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let agent = agent.clone();
                conns.spawn(async move {
                    if let Ok(mut outer) = UnixStream::connect(&agent).await {
                        let _ = tokio::io::copy_bidirectional(&mut inner, &mut outer).await;
                    }
                });
            }
        });
        Ok(Self { task })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
