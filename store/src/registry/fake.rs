//! A scripted HTTP server on 127.0.0.1 for the client's unit tests: each request is recorded
//! and answered by a closure, so a test can play a token server, a flaky registry or a
//! registry that sends schema 1. (The real registry is `docker-registry`, in the CLI's tests.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// Path and query, as sent.
    pub(crate) target: String,
    pub(crate) authorization: Option<String>,
    /// The `Range` header.
    pub(crate) range: Option<String>,
    /// The `Content-Range` header.
    pub(crate) content_range: Option<String>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

/// An answer: status, extra headers (a `Content-Length` larger than the body makes a dropped
/// connection), body.
pub(crate) type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// The server; it stops serving when the test process ends.
pub(crate) struct FakeServer {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    /// Starts serving; `answer` gets each request and the list of those before it.
    pub(crate) fn start(answer: impl Fn(&Seen, &[Seen]) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("a local address").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(read_half) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(read_half);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let mut authorization = None;
                let mut range = None;
                let mut content_range = None;
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "authorization" => authorization = Some(v.trim().to_owned()),
                            "range" => range = Some(v.trim().to_owned()),
                            "content-range" => content_range = Some(v.trim().to_owned()),
                            "content-length" => length = v.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let request = Seen {
                    method,
                    target,
                    authorization,
                    range,
                    content_range,
                    body,
                };
                let before = log.lock().expect("the log lock").clone();
                let (status, headers, body) = answer(&request, &before);
                log.lock().expect("the log lock").push(request);
                // A test may announce more than it sends: a connection that drops midway.
                let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                if !headers.iter().any(|(k, _)| *k == "Content-Length") {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        FakeServer { port, seen }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the log lock").clone()
    }
}
