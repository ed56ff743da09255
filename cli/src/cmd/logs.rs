//! `strata logs [-f] [--tail N] [-t] CONTAINER`: the container's json-file log, each line to
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
    let store = Store::open_read_only(global.store_root())?;
    let c = store.container(&args.container)?;
    let path = c.log_path();
    let file = match fs_err::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let Some(file) = file else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut reader = std::io::BufReader::new(file);
    let show = |line: &[u8]| -> anyhow::Result<()> {
        // A line torn by a crash of the monitor, or not ours, is skipped.
        let Ok(entry) = serde_json::from_slice::<LogLine>(line) else {
            return Ok(());
        };
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
    let mut buf = Vec::new();
    match tail {
        None => loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            show(&buf)?;
        },
        Some(n) => {
            let mut last = std::collections::VecDeque::with_capacity(n.min(4096));
            loop {
                let mut line = Vec::new();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if n > 0 {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
            }
            for line in last {
                show(&line)?;
            }
        }
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pending = Vec::new();
    loop {
        let running = match store.container(&c.config.id) {
            Ok(now) => now.state.status == ContainerStatus::Running,
            Err(_) => false,
        };
        // Read to the end after seeing it stopped: nothing more comes once it has.
        loop {
            let n = reader.read_until(b'\n', &mut pending)?;
            if n == 0 {
                break;
            }
            if pending.last() == Some(&b'\n') {
                show(&pending)?;
                pending.clear();
            }
        }
        std::io::stdout().flush()?;
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
