//! A container's json-file log as its monitor writes it: one JSON object per line in
//! `json.log`, rotated by size as docker's `json-file` driver does with `--log-opt
//! max-size=10m,max-file=3`: when `json.log` has reached `max-size`, `json.log.1` becomes
//! `json.log.2` (and so on, the oldest dropped), `json.log` becomes `json.log.1`, and a new
//! `json.log` is started. `max-file` counts the files, `json.log` included (1: `json.log` is
//! emptied instead); without `max-size` the log grows without limit. Readers
//! ([`strata_store::Container::log_files`]) read the files oldest first.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a `--log-opt` was refused, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogOptError {
    /// Not `KEY=VALUE`.
    #[error("invalid key value pair format in log options: {0}")]
    Format(String),
    /// A key the json-file driver does not take.
    #[error("unknown log opt '{0}' for json-file log driver")]
    Unknown(String),
    /// `max-size` that does not read as a size.
    #[error("invalid max-size: {0}")]
    MaxSize(String),
    /// `max-file` that is not a number of at least 1.
    #[error("max-file cannot be less than 1: {0}")]
    MaxFile(String),
    /// `max-file` without `max-size`.
    #[error("max-file cannot be set when max-size is not set")]
    MaxFileWithoutSize,
}

/// How big a container's log may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// `max-size` in bytes (`None`: no limit).
    pub max_size: Option<u64>,
    /// `max-file`: how many files, `json.log` included (1 unless given).
    pub max_file: u32,
}

/// `--log-opt KEY=VALUE` values into the map a container's config keeps; checked here so
/// that a bad one fails `create`, not the monitor.
pub fn parse_log_opts(opts: &[String]) -> Result<BTreeMap<String, String>, LogOptError> {
    let mut map = BTreeMap::new();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| LogOptError::Format(o.clone()))?;
        map.insert(k.to_owned(), v.to_owned());
    }
    LogLimits::from_opts(&map)?;
    Ok(map)
}

impl LogLimits {
    /// The limits a container's log options set.
    pub fn from_opts(opts: &BTreeMap<String, String>) -> Result<LogLimits, LogOptError> {
        let mut limits = LogLimits {
            max_size: None,
            max_file: 1,
        };
        for (k, v) in opts {
            match k.as_str() {
                // go-units' FromHumanSize, as docker's json-file driver: decimal units.
                "max-size" => {
                    limits.max_size = Some(
                        strata_frontend::parse_human_size(v)
                            .filter(|n| *n > 0)
                            .ok_or_else(|| LogOptError::MaxSize(v.clone()))?,
                    )
                }
                "max-file" => {
                    limits.max_file = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| LogOptError::MaxFile(v.clone()))?
                }
                // Accepted as docker does; strata writes neither compressed files nor tags.
                "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
                _ => return Err(LogOptError::Unknown(k.clone())),
            }
        }
        if limits.max_file > 1 && limits.max_size.is_none() {
            return Err(LogOptError::MaxFileWithoutSize);
        }
        Ok(limits)
    }
}

/// The open `json.log` of a running container, rotated as its limits say.
pub(crate) struct JsonLog {
    path: PathBuf,
    file: fs_err::File,
    size: u64,
    limits: LogLimits,
}

impl JsonLog {
    /// Opens (appends to) the log at `path`.
    pub(crate) fn open(path: &Path, limits: LogLimits) -> std::io::Result<JsonLog> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: path.to_owned(),
            file,
            size,
            limits,
        })
    }

    /// Appends one entry (a whole line), rotating first when the log is full.
    pub(crate) fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if let Some(max) = self.limits.max_size
            && self.size > 0
            && self.size + line.len() as u64 > max
        {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let n = self.limits.max_file;
        if n <= 1 {
            self.file.file().set_len(0)?;
        } else {
            let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
            match fs_err::remove_file(name(n - 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for i in (1..n - 1).rev() {
                match fs_err::rename(name(i), name(i + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs_err::rename(&self.path, name(1))?;
            self.file = fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<LogLimits, LogOptError> {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        LogLimits::from_opts(&parse_log_opts(&owned)?)
    }

    #[test]
    fn log_opts_read_as_the_json_file_driver() {
        assert_eq!(
            opts(&["max-size=10k", "max-file=3"]),
            Ok(LogLimits {
                max_size: Some(10_000),
                max_file: 3
            })
        );
        assert_eq!(opts(&["max-size=1.5MB"]).unwrap().max_size, Some(1_500_000));
        assert_eq!(opts(&["max-file=2"]), Err(LogOptError::MaxFileWithoutSize));
        assert_eq!(
            opts(&["max-file=0", "max-size=1k"]),
            Err(LogOptError::MaxFile("0".into()))
        );
        assert_eq!(
            opts(&["colour=red"]),
            Err(LogOptError::Unknown("colour".into()))
        );
        assert_eq!(
            opts(&["max-size"]),
            Err(LogOptError::Format("max-size".into()))
        );
        assert!(opts(&["max-size=lots"]).is_err());
    }

    #[test]
    fn rotation_keeps_max_file_files_of_at_most_about_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("json.log");
        let limits = LogLimits {
            max_size: Some(100),
            max_file: 3,
        };
        let mut log = JsonLog::open(&path, limits).unwrap();
        for i in 0..40 {
            log.write(format!("line {i:04} of the log\n").as_bytes())
                .unwrap();
        }
        let read = |p: &Path| fs_err::read_to_string(p).unwrap();
        let mut names: Vec<String> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["json.log", "json.log.1", "json.log.2"]);
        // 21 bytes a line: four fit in 100; the newest lines, in order across the files.
        let all = read(&path.with_extension("log.2"))
            + &read(&path.with_extension("log.1"))
            + &read(&path);
        assert!(all.ends_with("line 0039 of the log\n"), "{all}");
        assert!(all.starts_with("line 0028 of the log\n"), "{all}");
        assert_eq!(read(&path.with_extension("log.1")).len(), 84);
    }
}
