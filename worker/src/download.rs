//! ADD of a URL: fetched over HTTP(S) into a scratch file, checked against `--checksum`,
//! never extracted and never decoded (a `Content-Encoding: gzip` body is stored as sent, so
//! a compression bomb stays small). The file name is the URL path's last segment; the
//! server's `Content-Disposition` is ignored, as BuildKit does. The mtime comes from
//! `Last-Modified`.
//!
//! Redirects are followed here, not by the HTTP client: at most [`MAX_REDIRECTS`], and only to
//! `http` and `https` (a `Location: file:///etc/passwd` is an error naming it). A server that
//! goes silent, or dribbles a few bytes at a time, is given up after the worker's
//! `download_timeout` (see [`fetch`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_store::{Digest, HashingWriter};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed (connection, HTTP status, redirects, timeout).
    #[error("failed to download {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The body does not match `--checksum`.
    #[error("checksum of {url} is {actual}, expected {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// `--checksum`, lower-cased.
        expected: Digest,
        /// What the body hashes to.
        actual: Digest,
    },
    /// `--checksum` is not `sha256:<hex>`.
    #[error("unsupported --checksum {0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    /// The URL's path has no file name to use.
    #[error("cannot determine a file name from {0}")]
    NoFilename(String),
    /// A redirect led somewhere a download may not go, or went round too often.
    #[error("failed to download {url}: {reason}")]
    Redirect {
        /// The URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The server sent (almost) nothing for too long.
    #[error(
        "failed to download {url}: stalled: {bytes} bytes in {secs} s (at least {MIN_PROGRESS} expected)"
    )]
    Stalled {
        /// The URL.
        url: String,
        /// What arrived in the last window.
        bytes: u64,
        /// The window, in seconds.
        secs: u64,
    },
    /// The body is larger than the limit.
    #[error("{url} is larger than {limit} bytes")]
    TooBig {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Writing the scratch file failed.
    #[error("failed to store the download of {url}")]
    Write {
        /// The URL.
        url: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A downloaded file.
pub(crate) struct Fetched {
    pub(crate) path: PathBuf,
    pub(crate) filename: String,
    pub(crate) mtime: Option<i64>,
    pub(crate) size: u64,
}

/// The last segment of the URL's path.
pub(crate) fn filename(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    let name = path.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_owned())
}

/// The most redirects one download follows (Go's and BuildKit's limit).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// The bytes that must arrive in each `timeout` for a download to count as moving (curl's
/// `--speed-limit`): a server dribbling a byte a second is stalled, not slow.
const MIN_PROGRESS: u64 = 1024;

/// Where a redirect's `Location` leads from `base`: absolute, scheme-relative (`//host/p`),
/// path-absolute (`/p`) or relative (`p`). Hand-written: the workspace has no URL crate, and
/// these four forms are all a `Location` takes (RFC 9110 §10.2.2); `..` segments are left to
/// the server. Only `http` and `https` are allowed.
fn redirect_target(base: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let origin_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..origin_end]);
    let target = if let Some((s, _)) = location.split_once("://")
        && !s.contains(['/', '?', '#'])
    {
        location.to_owned()
    } else if let Some(r) = location.strip_prefix("//") {
        format!("{scheme}://{r}")
    } else if location.starts_with('/') {
        format!("{origin}{location}")
    } else if let Some((s, _)) = location.split_once(':')
        && !s.contains(['/', '?', '#'])
    {
        // `file:/etc/passwd`, `data:…`: a scheme without `//`.
        location.to_owned()
    } else {
        let path = &rest[origin_end..];
        let path = path.split(['?', '#']).next().unwrap_or("");
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{origin}{dir}/{location}")
    };
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(target)
    } else {
        Err(format!(
            "redirect to {}: only http and https are followed",
            strata_store::untrusted::shorten(&target)
        ))
    }
}

/// Downloads `url` into `into` (a new file). `timeout` is the longest the server may be
/// silent (to connect, to answer, between two reads), and also the window in which at least
/// [`MIN_PROGRESS`] bytes must arrive.
pub(crate) fn fetch(
    url: &str,
    checksum: Option<&str>,
    into: &Path,
    limit: u64,
    timeout: Duration,
) -> Result<Fetched, DownloadError> {
    let expected = match checksum {
        // BuildKit takes upper-case hex too.
        Some(c) => match c
            .strip_prefix("sha256:")
            .map(|hex| Digest::from_hex(&hex.to_ascii_lowercase()))
        {
            Some(Ok(d)) => Some(d),
            _ => return Err(DownloadError::BadChecksum(c.to_owned())),
        },
        None => None,
    };
    let filename = filename(url).ok_or_else(|| DownloadError::NoFilename(url.to_owned()))?;
    let http = |reason: String| DownloadError::Http {
        url: url.to_owned(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_global(Some(Duration::from_secs(3600)))
        .max_redirects(0)
        .build()
        .into();
    let mut current = url.to_owned();
    let mut redirects = 0;
    let mut resp = loop {
        let resp = agent
            .get(&current)
            .call()
            .map_err(|e| http(e.to_string()))?;
        if !resp.status().is_redirection() {
            break resp;
        }
        let redirect = |reason: String| DownloadError::Redirect {
            url: url.to_owned(),
            reason,
        };
        if redirects == MAX_REDIRECTS {
            return Err(redirect(format!("more than {MAX_REDIRECTS} redirects")));
        }
        redirects += 1;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| redirect(format!("{} without a Location", resp.status())))?;
        current = redirect_target(&current, location).map_err(redirect)?;
    };
    let mtime = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let write = |source| DownloadError::Write {
        url: url.to_owned(),
        source,
    };
    let mut out = HashingWriter::new(fs_err::File::create(into).map_err(write)?);
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let (mut window, mut window_bytes) = (Instant::now(), 0u64);
    loop {
        let n = reader.read(&mut buf).map_err(|e| http(e.to_string()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        window_bytes += n as u64;
        if window.elapsed() >= timeout {
            if window_bytes < MIN_PROGRESS {
                return Err(DownloadError::Stalled {
                    url: url.to_owned(),
                    bytes: window_bytes,
                    secs: timeout.as_secs(),
                });
            }
            (window, window_bytes) = (Instant::now(), 0);
        }
        if size > limit {
            return Err(DownloadError::TooBig {
                url: url.to_owned(),
                limit,
            });
        }
        out.write_all(&buf[..n]).map_err(write)?;
    }
    out.flush().map_err(write)?;
    let (_, actual, _) = out.finish();
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(DownloadError::Checksum {
            url: url.to_owned(),
            expected,
            actual,
        });
    }
    Ok(Fetched {
        path: into.to_owned(),
        filename,
        mtime,
        size,
    })
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the epoch.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let rest = s.split_once(", ").map_or(s, |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() != 5 || f[4] != "GMT" {
        return None;
    }
    let day: i64 = f[0].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == f[1])? as i64
        + 1;
    let year: i64 = f[2].parse().ok()?;
    let t: Vec<i64> = f[3]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if t.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sat, 29 Feb 2020 12:00:00 GMT"),
            Some(1_582_977_600)
        );
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn redirects_resolve_against_the_url_and_stay_on_http() {
        let base = "http://h:8/dl/a/file?x=1";
        for (location, want) in [
            ("https://o/x", "https://o/x"),
            ("//o/x", "http://o/x"),
            ("/x", "http://h:8/x"),
            ("y", "http://h:8/dl/a/y"),
            ("HTTP://O/x", "HTTP://O/x"),
        ] {
            assert_eq!(redirect_target(base, location).as_deref(), Ok(want));
        }
        for location in [
            "file:///etc/passwd",
            "file:/etc/passwd",
            "ftp://o/x",
            "data:,x",
        ] {
            let e = redirect_target(base, location).unwrap_err();
            assert!(e.starts_with(&format!("redirect to {location}")), "{e}");
        }
    }

    #[test]
    fn filenames_come_from_the_url_path_only() {
        assert_eq!(
            filename("http://h/dl/file.tar.gz?x=1").as_deref(),
            Some("file.tar.gz")
        );
        assert_eq!(
            filename("http://h/dl/content-disposition-traversal").as_deref(),
            Some("content-disposition-traversal")
        );
        assert_eq!(filename("http://h/"), None);
        assert_eq!(filename("http://h"), None);
        assert_eq!(filename("http://h/a/.."), None);
    }
}
