//! Build progress for people and machines: `--progress auto|tty|plain|rawjson`.
//!
//! The solver sends [`Event`]s; a renderer turns them into lines. `plain` prints BuildKit's
//! `#N` format for CI logs, `tty` draws one live line per running step with indicatif and folds
//! finished steps, `rawjson` prints one JSON object per event.

pub(crate) mod layers;
mod plain;
mod rawjson;
mod tty;

use std::io::{IsTerminal, Write};
use strata_build::{BuildEvent, Event};
use strata_frontend::Diagnostic;
use tokio::sync::mpsc::UnboundedReceiver;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Progress {
    /// `tty` on a terminal, `plain` otherwise.
    #[default]
    Auto,
    /// Live lines (indicatif).
    Tty,
    /// `#N` lines, as BuildKit prints for CI.
    Plain,
    /// One JSON event per line.
    Rawjson,
}

/// Something that shows events.
pub(crate) trait Render: Send {
    /// Shows one event.
    fn event(&mut self, event: &Event);
    /// The build ended; flush and tidy up.
    fn finish(&mut self);
}

/// Builds the renderer for `mode`, writing to stderr.
pub(crate) fn renderer(mode: Progress) -> Box<dyn Render> {
    let stderr = std::io::stderr();
    let mode = match mode {
        Progress::Auto if stderr.is_terminal() => Progress::Tty,
        Progress::Auto => Progress::Plain,
        m => m,
    };
    match mode {
        Progress::Tty => Box::new(tty::Tty::new()),
        Progress::Rawjson => Box::new(rawjson::RawJson::new(Box::new(stderr))),
        _ => Box::new(plain::Plain::new(Box::new(stderr))),
    }
}

/// Drains `rx` into `render` (steps) and `warn` (the Dockerfile's warnings, which come
/// first) until every sender is gone.
pub(crate) async fn drive(
    mut rx: UnboundedReceiver<BuildEvent>,
    mut render: Box<dyn Render>,
    warn: impl Fn(&Diagnostic),
) {
    while let Some(event) = rx.recv().await {
        match event {
            BuildEvent::Warning(d) => warn(&d),
            BuildEvent::Step(event) => render.event(&event),
            BuildEvent::CacheWarning(message) => {
                let _ = writeln!(std::io::stderr().lock(), "WARNING: {message}");
            }
        }
    }
    render.finish();
}

/// A writer the renderers share: stderr in the binary, a buffer in tests.
pub(crate) type Out = Box<dyn Write + Send>;
