//! Attaching to a container (`run -i`/`-t`, `attach`, `start -a -i`): the monitor owns the
//! container's stdio and serves it on `containers/<id>/attach.sock` (mode 0600), one
//! connection per attached client; [`Attached`] is the client's side.
//!
//! Why a socket of the monitor's, not the client's own pipes: the client may come and go
//! (detach with ctrl-p ctrl-q, attach again from another terminal) while the container runs,
//! and no daemon is there to hold its terminal meanwhile. `run -it` in the foreground is the
//! same path: a detached monitor that waits for its first client before it starts the
//! command, so that no output is missed and the terminal has the caller's size from the start.
//!
//! The protocol is frames: one byte of kind, four of length (big-endian), the payload.
//! Client to monitor: [`HELLO`] first (whether it sends input, its window's rows and columns),
//! then [`INPUT`], [`INPUT_END`], [`RESIZE`]. Monitor to client: [`OUTPUT`], [`ERROR_OUTPUT`]
//! (docker's stdout and stderr), and [`EXIT`] with the exit code when the command ends, after
//! which the monitor closes the connection. Detach keys are the client's: it stops sending
//! and hangs up, and the container runs on.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;
use strata_store::{Container, ContainerStatus, ContainerStdio};
use strata_worker::terminal;
pub use tokio::signal::unix::SignalKind;

/// Client to monitor: the first frame; payload: input (0 or 1), rows, columns (u16 each, 0:
/// unknown).
const HELLO: u8 = 0;
/// Client to monitor: input bytes.
const INPUT: u8 = 1;
/// Client to monitor: the client's input ended.
const INPUT_END: u8 = 2;
/// Client to monitor: the window's new rows and columns.
const RESIZE: u8 = 3;
/// Monitor to client: output bytes (stdout, or the terminal).
const OUTPUT: u8 = 1;
/// Monitor to client: stderr bytes.
const ERROR_OUTPUT: u8 = 2;
/// Monitor to client: the command exited with this code (i32); the last frame.
const EXIT: u8 = 3;
/// The largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;
/// Input kept for a command that has not started yet (beyond it, input is dropped).
const MAX_PENDING: usize = 1 << 20;
/// Output frames queued for a client before the container's output waits for it.
const QUEUE: usize = 256;
/// How long a write to a client may block: a client whose socket stays full this long (it
/// stopped reading, its connection is stuck) is let go. Until then a slow client slows the
/// container's output down, as docker's attach does, and misses none of it.
const STUCK: Duration = Duration::from_secs(30);
/// The socket's name in the container's directory.
const SOCKET: &str = "attach.sock";

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// It does not run (docker's words).
    #[error("You cannot attach to a stopped container, start it first")]
    NotRunning,
    /// `--detach-keys` is not docker's format.
    #[error("invalid detach keys ({0}) provided")]
    DetachKeys(String),
    /// The monitor's socket could not be reached or used.
    #[error("failed to attach to container {name}")]
    Socket {
        /// The container's name.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// The next frame; `None` at end of file.
fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let _ = write_frame(&mut f, kind, payload);
    f
}

fn size_of(payload: &[u8]) -> Option<(u16, u16)> {
    let rows = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    let cols = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
    (rows > 0 && cols > 0).then_some((rows, cols))
}

fn size_payload(size: Option<(u16, u16)>) -> [u8; 4] {
    let (r, c) = size.unwrap_or((0, 0));
    let (r, c) = (r.to_be_bytes(), c.to_be_bytes());
    [r[0], r[1], c[0], c[1]]
}

/// Binds or connects to `dir/name` through a descriptor of `dir`: a socket's path is limited
/// to 108 bytes, which a store's path may exceed.
fn via_dir<T>(dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let d = fs_err::File::open(dir)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(d.file());
    f(&PathBuf::from(format!("/proc/self/fd/{fd}/{SOCKET}")))
}

/// Where the container's input goes now.
enum Input {
    /// The command has not started (or is between runs): input is kept for it; `true` once
    /// the client that closes stdin ended its input.
    Pending(Vec<u8>, bool),
    /// Its stdin pipe's write end, or its terminal's master.
    Open(std::fs::File),
    /// Closed for good (`stdin_once` after the input ended).
    Closed,
}

struct Client {
    id: u64,
    out: mpsc::SyncSender<Vec<u8>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct HubInner {
    stdio: ContainerStdio,
    clients: Mutex<Vec<Client>>,
    input: Mutex<Input>,
    /// The terminal's master of the current run, for window sizes.
    master: Mutex<Option<OwnedFd>>,
    /// The last window size a client gave.
    size: Mutex<Option<(u16, u16)>>,
    next_id: AtomicU64,
    /// Told once the first client has said hello.
    first: Mutex<Option<mpsc::Sender<()>>>,
    /// The first client with input has ended it (`stdin_once`).
    input_ended: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The monitor's side: the container's stdio as attached clients see it. Dropping it removes
/// the socket.
pub(crate) struct Hub {
    inner: Arc<HubInner>,
    path: PathBuf,
    first: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Hub {
    /// Listens on `c`'s `attach.sock` (a stale one from a dead monitor is replaced).
    pub(crate) fn listen(c: &Container) -> io::Result<Hub> {
        let path = c.dir.join(SOCKET);
        let _ = fs_err::remove_file(&path);
        let listener = via_dir(&c.dir, |p| {
            let l = UnixListener::bind(p)?;
            fs_err::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            Ok(l)
        })?;
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(HubInner {
            stdio: c.config.stdio,
            clients: Mutex::new(Vec::new()),
            input: Mutex::new(Input::Pending(Vec::new(), false)),
            master: Mutex::new(None),
            size: Mutex::new(None),
            next_id: AtomicU64::new(0),
            first: Mutex::new(Some(tx)),
            input_ended: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("strata-attach".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else {
                        // Out of descriptors, say: try again later rather than spin.
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let hub = Arc::clone(&accepting);
                    let _ = std::thread::Builder::new()
                        .name("strata-attach-client".into())
                        .spawn(move || serve(&hub, conn));
                }
            })?;
        Ok(Hub {
            inner,
            path,
            first: Mutex::new(Some(rx)),
        })
    }

    /// Waits until a first client has said hello, for at most `timeout`; whether one did.
    pub(crate) async fn wait_first(&self, timeout: Duration) -> bool {
        let Some(rx) = lock(&self.first).take() else {
            return false;
        };
        tokio::task::spawn_blocking(move || rx.recv_timeout(timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// The window size to open the terminal with: the last a client gave.
    pub(crate) fn size(&self) -> Option<(u16, u16)> {
        *lock(&self.inner.size)
    }

    /// A run starts: `input` is where input goes now (its pipe, or a copy of its terminal's
    /// master; `None`: no stdin), `master` the terminal for window sizes. Input kept meanwhile
    /// is written first, by a thread of its own: the command may not read it all before its
    /// output is read.
    pub(crate) fn run_started(&self, input: Option<OwnedFd>, master: Option<OwnedFd>) {
        if let (Some(master), Some(size)) = (&master, self.size()) {
            let _ = terminal::set_window_size(master.as_fd(), size.0, size.1);
        }
        *lock(&self.inner.master) = master;
        let Some(fd) = input else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let flushing = std::thread::Builder::new()
            .name("strata-attach-in".into())
            .spawn(move || {
                let mut now = lock(&inner.input);
                let mut file = std::fs::File::from(fd);
                if let Input::Pending(kept, ended) = &*now {
                    let ok = file.write_all(kept).is_ok();
                    if *ended && inner.stdio.stdin_once {
                        end_input(&mut file, inner.stdio.tty);
                        *now = Input::Closed;
                        return;
                    }
                    if !ok {
                        *now = Input::Closed;
                        return;
                    }
                }
                if !matches!(*now, Input::Closed) {
                    *now = Input::Open(file);
                }
            });
        drop(flushing);
    }

    /// Output of the command, to every client (with `newline` a line without its `\n`).
    pub(crate) fn output(&self, stderr: bool, data: &[u8], newline: bool) {
        let clients: Vec<_> = lock(&self.inner.clients)
            .iter()
            .map(|c| c.out.clone())
            .collect();
        if clients.is_empty() {
            return;
        }
        let kind = if stderr { ERROR_OUTPUT } else { OUTPUT };
        let f = if newline {
            frame(kind, &[data, b"\n"].concat())
        } else {
            frame(kind, data)
        };
        for out in clients {
            // Waits while its queue is full; a client let go (its writer ended) takes no more.
            let _ = out.send(f.clone());
        }
    }

    /// A run ended with `code`: every client is told and let go (as docker's attach ends
    /// when the container stops); input is kept again for a next run.
    pub(crate) fn run_ended(&self, code: i32) {
        *lock(&self.inner.master) = None;
        {
            let mut input = lock(&self.inner.input);
            if !matches!(*input, Input::Closed) {
                *input = Input::Pending(Vec::new(), false);
            }
        }
        let clients = std::mem::take(&mut *lock(&self.inner.clients));
        let last = frame(EXIT, &code.to_be_bytes());
        for mut c in clients {
            // Blocking: the exit code must reach it (its writer has a write timeout).
            let _ = c.out.send(last.clone());
            drop(c.out);
            if let Some(w) = c.writer.take() {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

/// The container's input ended: a pipe is closed (by dropping it); a terminal gets its
/// end-of-file character, as `exec -it` sends it.
fn end_input(file: &mut std::fs::File, tty: bool) {
    if tty {
        let _ = file.write_all(&[4]);
    }
}

/// One client, until it hangs up.
fn serve(hub: &Arc<HubInner>, conn: UnixStream) {
    let mut reader = conn;
    let Ok(Some((HELLO, hello))) = read_frame(&mut reader) else {
        return;
    };
    let sends_input = hello.first() == Some(&1) && hub.stdio.open_stdin;
    if let Some(size) = hello.get(1..).and_then(size_of) {
        resize(hub, size);
    }
    let Ok(mut writer) = reader.try_clone() else {
        return;
    };
    let _ = writer.set_write_timeout(Some(STUCK));
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let writing = std::thread::Builder::new()
        .name("strata-attach-out".into())
        .spawn(move || {
            while let Ok(f) = rx.recv() {
                let last = f.first() == Some(&EXIT);
                if writer.write_all(&f).is_err() || last {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    lock(&hub.clients).push(Client {
        id,
        out: tx,
        writer: writing.ok(),
    });
    if let Some(first) = lock(&hub.first).take() {
        let _ = first.send(());
    }
    while let Ok(Some((kind, payload))) = read_frame(&mut reader) {
        match kind {
            INPUT if sends_input => input(hub, &payload),
            INPUT_END
                if sends_input
                    && hub.stdio.stdin_once
                    && !hub.input_ended.swap(true, Ordering::SeqCst) =>
            {
                close_input(hub);
            }
            RESIZE => {
                if let Some(size) = size_of(&payload) {
                    resize(hub, size);
                }
            }
            _ => {}
        }
    }
    // Hung up (or detached): forget it; the container runs on.
    lock(&hub.clients).retain(|c| c.id != id);
}

fn input(hub: &HubInner, data: &[u8]) {
    let mut now = lock(&hub.input);
    match &mut *now {
        Input::Pending(kept, _) => {
            if kept.len() + data.len() <= MAX_PENDING {
                kept.extend_from_slice(data);
            }
        }
        Input::Open(file) => {
            if file.write_all(data).is_err() {
                *now = Input::Closed;
            }
        }
        Input::Closed => {}
    }
}

fn close_input(hub: &HubInner) {
    let mut now = lock(&hub.input);
    match &mut *now {
        Input::Pending(_, ended) => *ended = true,
        Input::Open(file) => {
            end_input(file, hub.stdio.tty);
            *now = Input::Closed;
        }
        Input::Closed => {}
    }
}

fn resize(hub: &HubInner, size: (u16, u16)) {
    *lock(&hub.size) = Some(size);
    if let Some(master) = &*lock(&hub.master) {
        let _ = terminal::set_window_size(master.as_fd(), size.0, size.1);
    }
}

/// `--detach-keys` in docker's format: comma-separated keys, each one character or `ctrl-`
/// and one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, AttachError> {
    let bad = || AttachError::DetachKeys(keys.to_owned());
    let mut out = Vec::new();
    for key in keys.split(',') {
        let b = match key.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => match k.as_bytes()[0] {
                c @ b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            },
            _ if key.len() == 1 => key.as_bytes()[0],
            _ => return Err(bad()),
        };
        out.push(b);
    }
    Ok(out)
}

/// Finds the detach keys in the client's input, as docker's escape proxy: bytes that may
/// start the sequence are held back until it is complete (detach: they are never sent) or
/// broken (they are sent).
#[derive(Debug, Clone)]
pub(crate) struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    pub(crate) fn new(keys: Vec<u8>) -> DetachFilter {
        DetachFilter { keys, matched: 0 }
    }

    /// Appends to `out` what of `input` goes to the container; `true` when the sequence is
    /// complete (what follows it is dropped).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The command exited with this code.
    Exited(i32),
    /// The client detached (the detach keys); the container runs on.
    Detached,
    /// The monitor hung up without an exit code (it died, or another start replaced it).
    Lost,
}

/// What the client sends and how.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Send this process's stdin (`-i`; not `--no-stdin`).
    pub stdin: bool,
    /// The detach keys, parsed ([`parse_detach_keys`]); empty: none.
    pub detach_keys: Vec<u8>,
}

/// The client's side of an attached session, connected and introduced.
#[derive(Debug)]
pub struct Attached {
    sock: UnixStream,
    name: String,
    stdin: bool,
    tty: bool,
    keys: Vec<u8>,
}

impl Attached {
    /// Connects to running container `c`'s monitor (or one that waits for its first client:
    /// `starting`) and says hello with this process's window size.
    pub fn connect(
        c: &Container,
        opts: &AttachOptions,
        starting: bool,
    ) -> Result<Attached, AttachError> {
        if !starting && c.state.status != ContainerStatus::Running {
            return Err(AttachError::NotRunning);
        }
        let name = c.config.name.clone();
        let err = |source| AttachError::Socket {
            name: name.clone(),
            source,
        };
        let mut sock = via_dir(&c.dir, |p| UnixStream::connect(p)).map_err(err)?;
        let stdin = opts.stdin && c.config.stdio.open_stdin;
        let mut hello = vec![u8::from(stdin)];
        hello.extend_from_slice(&size_payload(window()));
        write_frame(&mut sock, HELLO, &hello).map_err(err)?;
        Ok(Attached {
            sock,
            name,
            stdin,
            tty: c.config.stdio.tty,
            keys: opts.detach_keys.clone(),
        })
    }

    /// Relays this process's stdin to the container and its output to this process's stdout
    /// and stderr until the command exits or the detach keys are typed. With a terminal on
    /// both sides, this process's is raw meanwhile (restored on every way out) and its window
    /// size follows SIGWINCH.
    pub fn relay(self) -> Result<AttachEnd, AttachError> {
        let err = |source| AttachError::Socket {
            name: self.name.clone(),
            source,
        };
        let stdin = io::stdin();
        let _raw = (self.tty && self.stdin)
            .then(|| terminal::RawTerminal::enter(stdin.as_fd()))
            .flatten();
        let detached = Arc::new(AtomicBool::new(false));
        let sender = Arc::new(Mutex::new(self.sock.try_clone().map_err(err)?));
        if self.stdin {
            let (sender, detached) = (Arc::clone(&sender), Arc::clone(&detached));
            let keys = self.keys.clone();
            let _ = std::thread::Builder::new()
                .name("strata-attach-in".into())
                .spawn(move || send_input(&sender, &detached, keys));
        }
        if self.tty {
            let sender = Arc::clone(&sender);
            let _ = std::thread::Builder::new()
                .name("strata-attach-winch".into())
                .spawn(move || follow_window(&sender));
        }
        let mut reader = self.sock;
        let (mut out, mut errout) = (io::stdout(), io::stderr());
        loop {
            match read_frame(&mut reader) {
                Ok(Some((OUTPUT, data))) => {
                    let _ = out.write_all(&data).and_then(|()| out.flush());
                }
                Ok(Some((ERROR_OUTPUT, data))) => {
                    let _ = errout.write_all(&data).and_then(|()| errout.flush());
                }
                Ok(Some((EXIT, code))) => {
                    let code = code
                        .get(..4)
                        .map_or(255, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    return Ok(AttachEnd::Exited(code));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) if detached.load(Ordering::SeqCst) => {
                    return Ok(AttachEnd::Detached);
                }
                Ok(None) => return Ok(AttachEnd::Lost),
                Err(e) => return Err(err(e)),
            }
        }
    }
}

/// The caller's window: its stdin's terminal, else its stdout's.
fn window() -> Option<(u16, u16)> {
    terminal::window_size(io::stdin().as_fd())
        .or_else(|| terminal::window_size(io::stdout().as_fd()))
}

fn send_input(sock: &Mutex<UnixStream>, detached: &AtomicBool, keys: Vec<u8>) {
    let mut filter = DetachFilter::new(keys);
    let mut buf = [0u8; 8192];
    let mut stdin = io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => {
                let _ = write_frame(&mut *lock(sock), INPUT_END, &[]);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut out = Vec::new();
        let detach = filter.feed(&buf[..n], &mut out);
        let s = &mut *lock(sock);
        if !out.is_empty() && write_frame(s, INPUT, &out).is_err() {
            return;
        }
        if detach {
            detached.store(true, Ordering::SeqCst);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Sends the window's size on each SIGWINCH.
fn follow_window(sock: &Mutex<UnixStream>) {
    on_signals(
        &[SignalKind::window_change()],
        || {},
        |_| {
            let size = size_payload(window());
            write_frame(&mut *lock(sock), RESIZE, &size).is_ok()
        },
    );
}

/// The signals `--sig-proxy` sends on to a container, as docker's: every one a process can
/// catch but SIGCHLD, SIGPIPE, SIGURG and SIGWINCH ([`strata_worker::process::proxied_signals`]).
pub fn proxied_signals() -> Vec<SignalKind> {
    strata_worker::process::proxied_signals()
        .into_iter()
        .map(SignalKind::from_raw)
        .collect()
}

/// Calls `each` with every signal of `kinds` this process gets (their default actions are
/// replaced, then `listening` is called) until it returns `false`; blocking, so run it on a
/// thread of its own. A client attached to a container follows SIGWINCH, and with
/// `--sig-proxy` sends the [`proxied_signals`] on to it.
pub fn on_signals(
    kinds: &[SignalKind],
    listening: impl FnOnce(),
    mut each: impl FnMut(SignalKind) -> bool,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        for &kind in kinds {
            let Ok(mut stream) = tokio::signal::unix::signal(kind) else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(kind).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        listening();
        while let Some(kind) = rx.recv().await {
            if !each(kind) {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_read_as_docker_reads_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("ctrl-@,a,ctrl-_").unwrap(), [0, b'a', 31]);
        assert_eq!(parse_detach_keys("ctrl-\\").unwrap(), [28]);
        for bad in ["ctrl-", "ctrl-1", "ab", "", "ctrl-pq", "ctrl-P"] {
            let e = parse_detach_keys(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid detach keys ({bad}) provided")
            );
        }
    }

    fn filter(keys: &[u8], chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut f = DetachFilter::new(keys.to_vec());
        let mut out = Vec::new();
        for c in chunks {
            if f.feed(c, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn detach_keys_are_held_back_until_complete_or_broken() {
        assert_eq!(
            filter(&[16, 17], &[b"ab\x10\x11cd"]),
            (b"ab".to_vec(), true)
        );
        // Split across reads.
        assert_eq!(
            filter(&[16, 17], &[b"a\x10", b"\x11"]),
            (b"a".to_vec(), true)
        );
        // Broken: the held byte goes through.
        assert_eq!(filter(&[16, 17], &[b"\x10x"]), (b"\x10x".to_vec(), false));
        // Broken by the first key again.
        assert_eq!(
            filter(&[16, 17], &[b"\x10\x10\x11"]),
            (b"\x10".to_vec(), true)
        );
        assert_eq!(filter(&[], &[b"\x10\x11"]), (b"\x10\x11".to_vec(), false));
        assert_eq!(filter(b"x", &[b"abxc"]), (b"ab".to_vec(), true));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, INPUT, b"hi").unwrap();
        write_frame(&mut buf, INPUT_END, b"").unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r).unwrap(), Some((INPUT, b"hi".to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), Some((INPUT_END, Vec::new())));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let huge = [INPUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice()).is_err());
        assert_eq!(size_of(&size_payload(Some((24, 80)))), Some((24, 80)));
        assert_eq!(size_of(&size_payload(None)), None);
    }
}
