//! HEALTHCHECK for running containers, as docker runs it. The healthcheck in effect (the
//! image's, with `run`'s `--health-*` flags over it) is resolved once at `create` and kept in
//! the container's config. While the container runs, its monitor probes it every interval: the
//! probe is `strata exec` itself (the monitor re-runs its own executable), so it enters the
//! container exactly as `exec` does, with the same namespaces, cgroup, user and environment.
//! Each result goes into `State.Health` through the store's locked state update: a success
//! makes it `healthy`; `retries` failures in a row past the start period make it `unhealthy`;
//! the last five probes are kept.

use crate::container::now;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_frontend::{DurationError, format_go_duration, parse_go_duration};
use strata_graph::Healthcheck;
use strata_store::{ContainerConfig, ContainerStatus, Health, HealthProbe, Store};
use tokio_util::sync::CancellationToken;

/// docker's defaults for an interval, a timeout or retries left at 0.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// How many probes `State.Health.Log` keeps, and how much output each (docker's).
const KEPT_PROBES: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// `run` and `create`'s healthcheck flags.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`: a shell command (`CMD-SHELL`).
    pub cmd: Option<String>,
    /// `--health-interval`, a Go duration.
    pub interval: Option<String>,
    /// `--health-timeout`, a Go duration.
    pub timeout: Option<String>,
    /// `--health-start-period`, a Go duration.
    pub start_period: Option<String>,
    /// `--health-retries`.
    pub retries: Option<i64>,
    /// `--no-healthcheck`.
    pub disable: bool,
}

/// Why the healthcheck flags are refused.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A duration Go would not read.
    #[error("invalid argument for --health-{flag}")]
    Duration {
        /// The flag, without `--health-`.
        flag: &'static str,
        /// Why.
        #[source]
        source: DurationError,
    },
    /// A negative duration or count.
    #[error("--health-{0} cannot be negative")]
    Negative(&'static str),
    /// `--no-healthcheck` with a `--health-*` flag.
    #[error("--no-healthcheck conflicts with --health-* options")]
    Conflict,
    /// The image's healthcheck could not be read back.
    #[error("the container's healthcheck is unreadable")]
    Unreadable(#[source] serde_json::Error),
}

/// The healthcheck a container gets: `image`'s with `opts` over it, as docker's
/// `Config.Healthcheck` JSON (`None`: the image has none and no flag gives one).
pub(crate) fn effective_healthcheck(
    image: Option<&Healthcheck>,
    opts: &HealthOptions,
) -> Result<Option<serde_json::Value>, HealthError> {
    let any_flag = opts.cmd.is_some()
        || opts.interval.is_some()
        || opts.timeout.is_some()
        || opts.start_period.is_some()
        || opts.retries.is_some();
    let hc = if opts.disable {
        if any_flag {
            return Err(HealthError::Conflict);
        }
        Healthcheck {
            test: vec!["NONE".to_owned()],
            ..Healthcheck::default()
        }
    } else {
        let Some(mut hc) = image
            .cloned()
            .or_else(|| any_flag.then(Healthcheck::default))
        else {
            return Ok(None);
        };
        if let Some(cmd) = &opts.cmd {
            hc.test = vec!["CMD-SHELL".to_owned(), cmd.clone()];
        }
        let duration = |flag: &'static str, text: &Option<String>, into: &mut i64| {
            if let Some(text) = text {
                let ns = parse_go_duration(text)
                    .map_err(|source| HealthError::Duration { flag, source })?;
                if ns < 0 {
                    return Err(HealthError::Negative(flag));
                }
                *into = ns;
            }
            Ok(())
        };
        duration("interval", &opts.interval, &mut hc.interval)?;
        duration("timeout", &opts.timeout, &mut hc.timeout)?;
        duration("start-period", &opts.start_period, &mut hc.start_period)?;
        if let Some(retries) = opts.retries {
            if retries < 0 {
                return Err(HealthError::Negative("retries"));
            }
            hc.retries = retries;
        }
        hc
    };
    serde_json::to_value(&hc)
        .map(Some)
        .map_err(HealthError::Unreadable)
}

/// A container's probe, resolved with docker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    argv: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    retries: u32,
}

impl Probe {
    /// The probe `config` asks for (`None`: no healthcheck, or `NONE`).
    pub(crate) fn of(config: &ContainerConfig) -> Result<Option<Probe>, HealthError> {
        let Some(value) = &config.healthcheck else {
            return Ok(None);
        };
        let hc: Healthcheck =
            serde_json::from_value(value.clone()).map_err(HealthError::Unreadable)?;
        let argv = match hc.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            Some((kind, [cmd])) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd.clone()]
            }
            _ => return Ok(None),
        };
        let or = |ns: i64, default: Duration| {
            if ns > 0 {
                Duration::from_nanos(ns.unsigned_abs())
            } else {
                default
            }
        };
        Ok(Some(Probe {
            argv,
            interval: or(hc.interval, DEFAULT_INTERVAL),
            timeout: or(hc.timeout, DEFAULT_TIMEOUT),
            start_period: or(hc.start_period, Duration::ZERO),
            retries: match u32::try_from(hc.retries) {
                Ok(n) if n > 0 => n,
                _ => DEFAULT_RETRIES,
            },
        }))
    }
}

/// The health a container starts each run with.
pub(crate) fn starting() -> Health {
    Health {
        status: "starting".to_owned(),
        failing_streak: 0,
        log: Vec::new(),
    }
}

/// Adds one probe's result to `health`, as docker does: a success is healthy and ends the
/// streak; a failure within the start period is only logged; else it lengthens the streak, and
/// `retries` in a row make it unhealthy.
fn record(health: &mut Health, result: HealthProbe, retries: u32, in_start_period: bool) {
    if result.exit_code == 0 {
        health.status = "healthy".to_owned();
        health.failing_streak = 0;
    } else if !in_start_period {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = "unhealthy".to_owned();
        }
    }
    health.log.push(result);
    let extra = health.log.len().saturating_sub(KEPT_PROBES);
    health.log.drain(..extra);
}

/// Probes container `id` every interval until `cancel`, from when `started` says it runs.
pub(crate) async fn probe_loop(
    store: &Store,
    id: &str,
    probe: &Probe,
    started: tokio::sync::oneshot::Receiver<u32>,
    cancel: CancellationToken,
) {
    tokio::select! {
        pid = started => if pid.is_err() { return },
        _ = cancel.cancelled() => return,
    }
    let since = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(probe.interval) => {}
            _ = cancel.cancelled() => return,
        }
        let start = now();
        let (exit_code, output) = run_probe(store.root(), id, probe).await;
        if cancel.is_cancelled() {
            // The container ended meanwhile: the probe failed because of that.
            return;
        }
        let result = HealthProbe {
            start,
            end: now(),
            exit_code,
            output,
        };
        let in_start_period = since.elapsed() < probe.start_period;
        let recorded = store.update_container_state(id, |c| {
            if c.state.status == ContainerStatus::Running {
                let health = c.state.health.get_or_insert_with(starting);
                record(health, result, probe.retries, in_start_period);
            }
            Ok(())
        });
        if recorded.is_err() {
            // Removed, or its records unwritable: nothing to keep probing for.
            return;
        }
    }
}

/// Runs the probe once as `strata exec` of this executable; its exit code and output (-1 and
/// docker's message when it timed out or could not start).
async fn run_probe(root: &Path, id: &str, probe: &Probe) -> (i32, String) {
    let child = tokio::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(root)
        .arg("exec")
        .arg(id)
        .args(&probe.argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return (-1, clip(format!("failed to start the healthcheck: {e}"))),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ran = tokio::time::timeout(probe.timeout, async {
        let (out, err, status) = tokio::join!(read_all(stdout), read_all(stderr), child.wait());
        (status, out + &err)
    })
    .await;
    match ran {
        Ok((Ok(status), output)) => (status.code().unwrap_or(-1), clip(output)),
        Ok((Err(e), _)) => (-1, clip(format!("failed to run the healthcheck: {e}"))),
        Err(_) => {
            // The command in the container first (its exec process is its parent until then),
            // then the exec process.
            if let Some(pid) = child.id() {
                let _ = strata_worker::process::kill_child_group(pid);
            }
            let _ = child.kill().await;
            (
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    format_go_duration(i64::try_from(probe.timeout.as_nanos()).unwrap_or(i64::MAX))
                ),
            )
        }
    }
}

/// A probe's output stream as text: its first [`MAX_OUTPUT`] bytes kept, the rest read and
/// dropped (constant memory, and the probe never blocks on a full pipe).
async fn read_all(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        let _ = (&mut stream)
            .take(MAX_OUTPUT as u64)
            .read_to_end(&mut bytes)
            .await;
        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// At most [`MAX_OUTPUT`] bytes, cut on a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> HealthProbe {
        HealthProbe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: code.to_string(),
        }
    }

    #[test]
    fn retries_failures_make_it_unhealthy_and_one_success_healthy() {
        let mut h = starting();
        record(&mut h, probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        record(&mut h, probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        record(&mut h, probe(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_and_the_log_keeps_five() {
        let mut h = starting();
        for code in 1..=7 {
            record(&mut h, probe(code), 1, true);
        }
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        let codes: Vec<i32> = h.log.iter().map(|p| p.exit_code).collect();
        assert_eq!(codes, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn flags_override_the_image_and_defaults_fill_the_rest() {
        let image = Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval: 5_000_000_000,
            ..Healthcheck::default()
        };
        let opts = HealthOptions {
            cmd: Some("test -f /ok".into()),
            retries: Some(2),
            ..HealthOptions::default()
        };
        let config = ContainerConfig {
            healthcheck: effective_healthcheck(Some(&image), &opts).unwrap(),
            ..serde_json::from_value(serde_json::json!({
                "id": "", "name": "", "created": "", "image": "", "image_id":
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "entrypoint": [], "cmd": [], "env": [], "working_dir": "", "user": "",
                "hostname": "", "network": "host", "stop_signal": "SIGTERM",
                "stop_timeout": null, "auto_remove": false, "restart": "no"
            }))
            .unwrap()
        };
        let p = Probe::of(&config).unwrap().unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(
            (p.interval, p.timeout, p.start_period, p.retries),
            (Duration::from_secs(5), DEFAULT_TIMEOUT, Duration::ZERO, 2)
        );
    }

    #[test]
    fn no_healthcheck_is_none_and_conflicts_with_flags() {
        let off = HealthOptions {
            disable: true,
            ..HealthOptions::default()
        };
        let value = effective_healthcheck(None, &off).unwrap().unwrap();
        assert_eq!(value["Test"], serde_json::json!(["NONE"]));
        let both = HealthOptions {
            retries: Some(1),
            ..off
        };
        assert!(matches!(
            effective_healthcheck(None, &both),
            Err(HealthError::Conflict)
        ));
        assert_eq!(
            effective_healthcheck(None, &HealthOptions::default()).unwrap(),
            None
        );
    }
}
