//! `strata logs [-f] [--tail N] [-t] [--since T] [--until T] CONTAINER`: the container's
//! json-file log (its rotated files first, oldest first), each line to
//! the stream it came from (stdout or stderr), as docker prints it.

use crate::GlobalArgs;
use std::io::{BufRead as _, Write};
use std::process::ExitCode;
use std::time::Duration;
use strata_store::{ContainerStatus, LogLine, Store};

/// Arguments of `strata logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Follow the log until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines from the end (`all` for every line)
    #[arg(short = 'n', long, default_value = "all", value_name = "N")]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Only lines from this time on (RFC 3339, Unix seconds, or a duration back like 10m)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only lines up to this time (as --since)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// The container
    container: String,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(
            n.parse()
                .map_err(|_| anyhow::anyhow!("invalid value for --tail: {n:?}"))?,
        ),
    };
    let now = std::time::SystemTime::now();
    let since = args.since.as_deref().map(|t| point(t, now)).transpose()?;
    let until = args.until.as_deref().map(|t| point(t, now)).transpose()?;
    let store = Store::open_read_only(global.store_root())?;
    let c = store.container(&args.container)?;
    // Whether a line's time is in --since..--until (before --tail counts it, as docker).
    let wanted = |entry: &LogLine| match (since, until) {
        (None, None) => true,
        _ => entry
            .time
            .parse::<jiff::Timestamp>()
            .is_ok_and(|at| since.is_none_or(|s| at >= s) && until.is_none_or(|u| at <= u)),
    };
    let show = |line: &[u8]| -> anyhow::Result<()> {
        // A line torn by a crash of the monitor, or not ours, is skipped.
        let Ok(entry) = serde_json::from_slice::<LogLine>(line) else {
            return Ok(());
        };
        if !wanted(&entry) {
            return Ok(());
        }
        let text = if args.timestamps {
            format!("{} {}", entry.time, entry.log)
        } else {
            entry.log
        };
        if entry.stream == "stderr" {
            std::io::stderr().lock().write_all(text.as_bytes())?;
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
        Ok(())
    };
    // The rotated files, oldest first, then json.log, read as one stream.
    let mut reader = None;
    let mut last = std::collections::VecDeque::new();
    for path in c.log_files() {
        let file = match fs_err::File::open(&path) {
            Ok(f) => f,
            // Rotated away meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let mut r = std::io::BufReader::new(file);
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            match tail {
                None => show(&line)?,
                Some(0) => {}
                Some(_) if !serde_json::from_slice::<LogLine>(&line).is_ok_and(|e| wanted(&e)) => {}
                Some(n) => {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
            }
        }
        reader = Some(r);
    }
    for line in last {
        show(&line)?;
    }
    if !args.follow || until.is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    let path = c.log_path();
    let mut pending = Vec::new();
    loop {
        let running = match store.container(&c.config.id) {
            Ok(now) => now.state.status == ContainerStatus::Running,
            Err(_) => false,
        };
        // Read to the end after seeing it stopped: nothing more comes once it has.
        if let Some(r) = reader.as_mut() {
            loop {
                let n = r.read_until(b'\n', &mut pending)?;
                if n == 0 {
                    break;
                }
                if pending.last() == Some(&b'\n') {
                    show(&pending)?;
                    pending.clear();
                }
            }
        }
        // Rotated (json.log is another file now), or not there at first: read the new one
        // from its start.
        if rotated(reader.as_ref().map(|r| r.get_ref()), &path) {
            match fs_err::File::open(&path) {
                Ok(f) => {
                    reader = Some(std::io::BufReader::new(f));
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        std::io::stdout().flush()?;
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `path` is no longer the file being read.
fn rotated(reading: Option<&fs_err::File>, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(now) = fs_err::metadata(path) else {
        return false;
    };
    match reading.and_then(|f| f.metadata().ok()) {
        Some(open) => (open.dev(), open.ino()) != (now.dev(), now.ino()),
        None => true,
    }
}

/// `--since`/`--until`: a time (RFC 3339, Unix seconds) or a Go duration back from now.
fn point(text: &str, now: std::time::SystemTime) -> anyhow::Result<jiff::Timestamp> {
    let ago = crate::units::parse_until(text, now).map_err(|_| {
        anyhow::anyhow!(
            "invalid time {text:?}: expected a timestamp (RFC 3339 or Unix seconds) or a duration like 10m"
        )
    })?;
    let at = now.checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH);
    Ok(jiff::Timestamp::try_from(at)?)
}
