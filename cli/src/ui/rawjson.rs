//! `--progress=rawjson`: one JSON object per event, with a timestamp, for tools.

use super::{Out, Render};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use strata_build::Event;

pub(crate) struct RawJson {
    out: Out,
}

impl RawJson {
    pub(crate) fn new(out: Out) -> Self {
        Self { out }
    }
}

#[derive(serde::Serialize)]
struct Line<'a> {
    time: f64,
    #[serde(flatten)]
    event: &'a Event,
}

impl Render for RawJson {
    fn event(&mut self, event: &Event) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Ok(mut json) = serde_json::to_string(&Line { time, event }) {
            // One write per line (stderr is unbuffered).
            json.push('\n');
            let _ = self.out.write_all(json.as_bytes());
        }
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}
