//! `pull` and `push` progress as docker shows it: on a terminal, one line per layer redrawn in
//! place (`ID: Downloading [=====>     ]  12.3MB/45.6MB`, then `Extracting`, then
//! `Pull complete`); elsewhere, one `ID: Status` line per change, without the byte counts
//! docker only draws as bars.

use crate::registry::event_line;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use strata_store::{Digest, LayerEvent, LayerStatus};

/// Docker's bar: 50 columns of `=` up to a `>`.
const BAR_WIDTH: u64 = 50;

/// Docker draws the bar only on a terminal wider than this (the counts always).
const BAR_MIN_COLUMNS: u16 = 110;

/// Where layer events go for one command.
pub(crate) enum LayerDisplay {
    /// `-q`: nothing.
    Quiet,
    /// Not a terminal: docker's plain lines on stdout.
    Plain,
    /// A terminal: a live line per layer.
    Tty(Live),
}

/// The live lines, one per layer in the order they first appear.
pub(crate) struct Live {
    multi: MultiProgress,
    lines: Mutex<HashMap<Digest, ProgressBar>>,
    /// Whether the terminal is wide enough for bars.
    bars: bool,
}

impl LayerDisplay {
    /// The display for stdout: live lines if it is a terminal (the check the build's
    /// `--progress auto` makes on stderr), plain lines otherwise, nothing when `quiet`.
    pub(crate) fn stdout(quiet: bool) -> Self {
        if quiet {
            LayerDisplay::Quiet
        } else if std::io::stdout().is_terminal() {
            let columns = console::Term::stdout().size_checked().map_or(0, |(_, c)| c);
            LayerDisplay::Tty(Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10)),
                lines: Mutex::new(HashMap::new()),
                bars: columns > BAR_MIN_COLUMNS,
            })
        } else {
            LayerDisplay::Plain
        }
    }

    /// Shows one event (called from the transfer threads).
    pub(crate) fn event(&self, event: LayerEvent) {
        match self {
            LayerDisplay::Quiet => {}
            LayerDisplay::Plain => {
                if let Some(line) = event_line(&event) {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                }
            }
            LayerDisplay::Tty(live) => {
                let mut lines = live
                    .lines
                    .lock()
                    .expect("no thread panics holding the lock");
                let bar = lines.entry(event.layer.clone()).or_insert_with(|| {
                    let bar = live.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{msg}").expect("the template is valid"),
                    );
                    bar
                });
                bar.set_message(live_line(&event, live.bars));
            }
        }
    }

    /// Leaves every layer's last line on the screen, before the summary lines are printed.
    pub(crate) fn finish(&self) {
        if let LayerDisplay::Tty(live) = self {
            let mut lines = live
                .lines
                .lock()
                .expect("no thread panics holding the lock");
            for (_, bar) in lines.drain() {
                bar.finish();
            }
        }
    }
}

/// Docker's terminal line for an event: `ID: Status`, with byte counts (and a bar, if `bars`)
/// for the statuses that move bytes.
pub(crate) fn live_line(event: &LayerEvent, bars: bool) -> String {
    let id = &event.layer.hex()[..12];
    let (word, current, total) = match &event.status {
        LayerStatus::Downloading { current, total } => ("Downloading", *current, *total),
        LayerStatus::Extracting { current, total } => ("Extracting", *current, *total),
        LayerStatus::Pushing { current, total } => ("Pushing", *current, *total),
        _ => {
            return event_line(event).unwrap_or_else(|| format!("{id}: {:?}", event.status));
        }
    };
    format!("{id}: {word} {}", progress(current, total, bars))
}

/// Docker's progress (`[====>    ]  12.3MB/45.6MB`): the bar is `current/total` in halves
/// of a percent, the counts are right-aligned in 8 columns; no counts past the total, no bar
/// for an unknown total or without `bars`.
fn progress(current: u64, total: u64, bars: bool) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let bar = if bars {
        let filled = (current.min(total) * 100 / total / 2).min(BAR_WIDTH);
        format!(
            "[{}>{}] ",
            "=".repeat(filled as usize),
            " ".repeat((BAR_WIDTH - filled) as usize)
        )
    } else {
        String::new()
    };
    if current > total {
        return bar;
    }
    format!("{bar}{:>8}/{}", human_size(current), human_size(total))
}

/// A size as docker's progress bars write it (go-units' `HumanSize`): four significant
/// digits, decimal units, no trailing zeros (`527B`, `1.234kB`, `12.3MB`, `500MB`).
pub(crate) fn human_size(bytes: u64) -> String {
    crate::cmd::images::human_size_with_precision(bytes, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: LayerStatus) -> LayerEvent {
        LayerEvent {
            layer: Digest::of(b"layer"),
            status,
        }
    }

    #[test]
    fn sizes_read_as_dockers() {
        let cases = [
            (0, "0B"),
            (527, "527B"),
            (1234, "1.234kB"),
            (12_300_000, "12.3MB"),
            (29_540_000, "29.54MB"),
            (500_000_000, "500MB"),
            (524_288_000, "524.3MB"),
            (999_960, "1000kB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn live_lines_draw_dockers_bars() {
        let layer = Digest::of(b"layer");
        let id = &layer.hex()[..12];
        let line = |s| live_line(&event(s), true);
        assert_eq!(
            line(LayerStatus::Downloading {
                current: 12_300_000,
                total: 45_600_000
            }),
            format!(
                "{id}: Downloading [=============>{}]   12.3MB/45.6MB",
                " ".repeat(37)
            )
        );
        assert_eq!(
            line(LayerStatus::Extracting {
                current: 45_600_000,
                total: 45_600_000
            }),
            format!("{id}: Extracting [{}>]   45.6MB/45.6MB", "=".repeat(50))
        );
        assert_eq!(
            line(LayerStatus::Pushing {
                current: 0,
                total: 527
            }),
            format!("{id}: Pushing [>{}]       0B/527B", " ".repeat(50))
        );
        assert_eq!(
            line(LayerStatus::PullComplete),
            format!("{id}: Pull complete")
        );
        assert_eq!(line(LayerStatus::Waiting), format!("{id}: Waiting"));
        // A terminal of 110 columns or fewer: the counts only, as docker.
        let narrow = live_line(
            &event(LayerStatus::Downloading {
                current: 12_300_000,
                total: 45_600_000,
            }),
            false,
        );
        assert_eq!(narrow, format!("{id}: Downloading   12.3MB/45.6MB"));
    }
}
