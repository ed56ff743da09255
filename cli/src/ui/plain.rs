//! `--progress=plain`: BuildKit's `#N` lines, which CI logs and people grep.
//!
//! ```text
//! #3 [build 2/4] RUN make
//! #3 0.104 cc -o app main.c
//! #3 DONE 1.2s
//! #4 [build 3/4] COPY . /src
//! #4 CACHED
//! ```

use super::{Out, Render};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Instant;
use strata_build::Event;

pub(crate) struct Plain {
    out: Out,
    numbers: HashMap<u32, usize>,
    started: HashMap<u32, Instant>,
}

impl Plain {
    pub(crate) fn new(out: Out) -> Self {
        Self {
            out,
            numbers: HashMap::new(),
            started: HashMap::new(),
        }
    }

    /// Steps are numbered in the order they first show up, from 1.
    fn number(&mut self, node: u32) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(node).or_insert(next)
    }
}

impl Render for Plain {
    fn event(&mut self, event: &Event) {
        // Formatted first and written at once: stderr is unbuffered, so `writeln!` on it is a
        // write per piece (six for a cached step), and a reader of a pipe wakes for each.
        let mut text = String::new();
        let _ = match event {
            Event::Started { node, label } => {
                let n = self.number(*node);
                self.started.insert(*node, Instant::now());
                writeln!(text, "#{n} {}", crate::report::clip(label))
            }
            Event::Cached { node, label } => {
                let n = self.number(*node);
                let label = crate::report::clip(label);
                writeln!(text, "#{n} {label}\n#{n} CACHED")
            }
            Event::Log { node, line, .. } => {
                let n = self.number(*node);
                let offset = self
                    .started
                    .get(node)
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                writeln!(text, "#{n} {offset:.3} {line}")
            }
            Event::Finished { node, elapsed, .. } => {
                let n = self.number(*node);
                writeln!(text, "#{n} DONE {:.1}s", elapsed.as_secs_f64())
            }
            Event::Failed { node, error } => {
                let n = self.number(*node);
                writeln!(
                    text,
                    "#{n} ERROR: {}",
                    crate::report::clip(&error.to_string())
                )
            }
            Event::Miss { node, reason, .. } => {
                let n = self.number(*node);
                writeln!(text, "#{n} MISS: {reason}")
            }
        };
        let _ = self.out.write_all(text.as_bytes());
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use strata_build::{Phase, Stream};

    /// Each `write` call it gets, as it got it.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<String>>>);
    impl std::io::Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let text = String::from_utf8(b.to_vec()).expect("utf-8");
            self.0.lock().expect("test writes").push(text);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prints_buildkit_style_numbered_lines() {
        let writes = Writes::default();
        let mut p = Plain::new(Box::new(writes.clone()));
        for e in [
            Event::Cached {
                node: 7,
                label: "[build 2/4] COPY . /src".into(),
            },
            Event::Started {
                node: 3,
                label: "[build 3/4] RUN make".into(),
            },
            Event::Log {
                node: 3,
                stream: Stream::Stdout,
                line: "cc -o app".into(),
            },
            Event::Finished {
                node: 3,
                elapsed: Duration::from_millis(1234),
                // For tools (rawjson) only: plain lines do not show it.
                phases: vec![(Phase::Process, Duration::from_millis(1200))],
            },
            Event::Started {
                node: 9,
                label: "[build 4/4] RUN exit 3".into(),
            },
            Event::Failed {
                node: 9,
                error: "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
                    .into(),
            },
        ] {
            p.event(&e);
        }
        p.finish();
        let text = writes.0.lock().expect("writes").concat();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [build 2/4] COPY . /src");
        assert_eq!(lines[1], "#1 CACHED");
        assert_eq!(lines[2], "#2 [build 3/4] RUN make");
        assert!(lines[3].starts_with("#2 0.0") && lines[3].ends_with(" cc -o app"));
        assert_eq!(lines[4], "#2 DONE 1.2s");
        assert_eq!(lines[5], "#3 [build 4/4] RUN exit 3");
        assert_eq!(
            lines[6],
            "#3 ERROR: process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
        );
    }

    #[test]
    fn an_event_is_one_write_of_whole_lines() {
        // Standard error is unbuffered: a line written in pieces costs a syscall a piece and
        // can be split by another writer (the warnings, `--push`'s lines).
        let writes = Writes::default();
        let mut p = Plain::new(Box::new(writes.clone()));
        p.event(&Event::Cached {
            node: 4,
            label: "[2/3] COPY . /app".into(),
        });
        p.event(&Event::Started {
            node: 5,
            label: "[3/3] RUN make".into(),
        });
        p.event(&Event::Finished {
            node: 5,
            elapsed: Duration::from_millis(300),
            phases: vec![],
        });
        p.finish();
        assert_eq!(
            *writes.0.lock().expect("test writes"),
            [
                "#1 [2/3] COPY . /app\n#1 CACHED\n",
                "#2 [3/3] RUN make\n",
                "#2 DONE 0.3s\n"
            ]
        );
    }
}
