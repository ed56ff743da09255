//! `--progress=tty`: one live line per running step with its timer; finished steps fold into
//! a single line each (`=> [build 2/4] RUN make  1.2s`, `=> CACHED [build 1/4] ...`), as
//! BuildKit draws it. Output of a failed step is printed in full under it.

use super::Render;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::time::Duration;
use strata_build::Event;

/// Lines of output kept per step, shown when it fails.
const KEEP_LINES: usize = 200;

pub(crate) struct Tty {
    multi: MultiProgress,
    misses: Vec<(String, String)>,
    bars: HashMap<u32, ProgressBar>,
    logs: HashMap<u32, Vec<String>>,
    labels: HashMap<u32, String>,
}

impl Tty {
    pub(crate) fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            misses: Vec::new(),
            bars: HashMap::new(),
            logs: HashMap::new(),
            labels: HashMap::new(),
        }
    }

    fn running_style() -> ProgressStyle {
        ProgressStyle::with_template(" {spinner:.cyan} {wide_msg} {elapsed_precise:.dim}")
            .expect("the template is valid")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
    }

    fn done_style() -> ProgressStyle {
        ProgressStyle::with_template(" => {wide_msg}").expect("the template is valid")
    }
}

impl Render for Tty {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Miss { label, reason, .. } => {
                self.misses.push((label.clone(), reason.clone()));
            }
            Event::Started { node, label } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(Self::running_style());
                bar.set_message(label.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bars.insert(*node, bar);
                self.labels.insert(*node, label.clone());
            }
            Event::Cached { label, .. } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(Self::done_style());
                bar.finish_with_message(format!("CACHED {label}"));
            }
            Event::Log { node, line, .. } => {
                let log = self.logs.entry(*node).or_default();
                if log.len() == KEEP_LINES {
                    log.remove(0);
                }
                log.push(line.clone());
                if let Some(bar) = self.bars.get(node) {
                    let label = self.labels.get(node).map_or("", String::as_str);
                    bar.set_message(format!("{label}  {line}"));
                }
            }
            Event::Finished { node, elapsed, .. } => {
                if let Some(bar) = self.bars.remove(node) {
                    let label = self.labels.get(node).map_or("", String::as_str);
                    bar.set_style(Self::done_style());
                    bar.finish_with_message(format!("{label}  {:.1}s", elapsed.as_secs_f64()));
                }
            }
            Event::Failed { node, error } => {
                if let Some(bar) = self.bars.remove(node) {
                    let label = self.labels.get(node).map_or("", String::as_str);
                    bar.set_style(Self::done_style());
                    bar.finish_with_message(format!("ERROR {label}"));
                }
                let error = crate::report::clip(&error.to_string()).into_owned();
                let _ = self.multi.println(format!("------\n > {error}"));
                for line in self.logs.get(node).into_iter().flatten() {
                    let _ = self.multi.println(format!(" | {line}"));
                }
            }
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.abandon();
        }
        if !self.misses.is_empty() {
            let _ = self.multi.println("why steps ran:");
            for (label, reason) in self.misses.drain(..) {
                let _ = self.multi.println(format!("  {label}: {reason}"));
            }
        }
    }
}
