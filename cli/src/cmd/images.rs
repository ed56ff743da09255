//! `strata images`: the local images, one row per tag, as `docker images` prints them. Also the
//! table and human-readable size and time helpers the other image commands share.

use crate::GlobalArgs;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Reference, Store};

/// Arguments of `strata images`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show all images (intermediate images too; strata keeps none, so the same list)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Do not truncate output (full image IDs)
    #[arg(long)]
    no_trunc: bool,
    /// Output format: `table` (default) or `json` (one object per line)
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Only images of this repository (`name` or `name:tag`)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(global.store_root())?;
    let _ = args.all;
    let filter = match &args.filter {
        None => None,
        Some(f) => {
            let has_tag = f.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/'));
            let r = Reference::parse(f).with_context(|| format!("invalid filter {f:?}"))?;
            Some((r, has_tag))
        }
    };
    let now = jiff::Timestamp::now();
    let mut rows: Vec<Row> = Vec::new();
    for image in store.images()? {
        let id = if args.no_trunc {
            image.id.to_string()
        } else {
            image.id.short().to_owned()
        };
        let created = image.created.as_deref().and_then(parse_time);
        let base = Row {
            repository: "<none>".into(),
            tag: "<none>".into(),
            digest: image.manifest_digest.to_string(),
            id,
            created_since: created.map_or_else(|| "N/A".into(), |t| human_since(t, now)),
            created_at: created.map_or_else(String::new, go_time),
            size: human_size(image.size),
        };
        if image.tags.is_empty() {
            if filter.is_none() {
                rows.push(base);
            }
            continue;
        }
        for tag in &image.tags {
            if let Some((f, has_tag)) = &filter
                && (f.name() != tag.name() || (*has_tag && f.tag() != tag.tag()))
            {
                continue;
            }
            // The digest in the registry this repository was pulled from or pushed to (the
            // index, for a multi-platform image), as docker shows; else the local manifest's.
            let name = tag.name();
            let digest = image
                .repo_digests
                .iter()
                .find_map(|d| d.split_once('@').filter(|(n, _)| *n == name))
                .map_or_else(|| base.digest.clone(), |(_, d)| d.to_owned());
            rows.push(Row {
                repository: tag.familiar_name(),
                tag: tag.tag().unwrap_or("<none>").to_owned(),
                digest,
                ..base.clone()
            });
        }
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for r in &rows {
            writeln!(out, "{}", r.id)?;
        }
    } else if args.format.as_deref() == Some("json") {
        for r in &rows {
            // Docker prints these keys sorted (a Go map); serde_json's map sorts too.
            let v = serde_json::json!({
                "Containers": "N/A",
                "CreatedAt": r.created_at,
                "CreatedSince": r.created_since,
                "Digest": r.digest,
                "ID": r.id,
                "Repository": r.repository,
                "SharedSize": "N/A",
                "Size": r.size,
                "Tag": r.tag,
                "UniqueSize": "N/A",
                "VirtualSize": r.size,
            });
            writeln!(out, "{v}")?;
        }
    } else if let Some(f) = args.format.as_deref().filter(|f| *f != "table") {
        anyhow::bail!("unsupported --format {f:?}: use `table` or `json`");
    } else {
        let mut table = vec![if args.digests {
            vec!["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
                .into_iter()
                .map(String::from)
                .collect()
        } else {
            vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        }];
        for r in rows {
            let mut line = vec![r.repository, r.tag];
            if args.digests {
                line.push(r.digest);
            }
            line.extend([r.id, r.created_since, r.size]);
            table.push(line);
        }
        write_table(&mut out, &table)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone)]
struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created_since: String,
    created_at: String,
    size: String,
}

/// Writes rows as docker's tabwriter does (min width 10, padding 3, last column unpadded).
pub(crate) fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + 3).max(10);
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The last line of every docker prune: `Total reclaimed space: 1.2MB`.
pub(crate) fn write_reclaimed(out: &mut impl std::io::Write, bytes: u64) -> std::io::Result<()> {
    writeln!(out, "Total reclaimed space: {}", human_size(bytes))
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits
/// (its tables: images, history, prune).
pub(crate) fn human_size(bytes: u64) -> String {
    human_size_with_precision(bytes, 3)
}

/// Docker's `units.HumanSizeWithPrecision(size, digits)`: decimal units, `digits` significant
/// digits, no trailing zeros (`units.HumanSize`, its progress bars' sizes, is 4).
pub(crate) fn human_size_with_precision(bytes: u64, digits: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, digits), UNITS[unit])
}

/// `%.{digits}g` for 0 <= x < 1000, as Go prints it.
fn significant(x: f64, digits: i32) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Parses an RFC 3339 time from an image config.
pub(crate) fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// Go's `time.Time.String()` in UTC: `2024-01-01 00:00:00 +0000 UTC`.
pub(crate) fn go_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

/// Docker's `units.HumanDuration(now - t) + " ago"`.
pub(crate) fn human_since(t: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    format!("{} ago", human_duration(secs))
}

/// Docker's `units.HumanDuration` of `secs` seconds.
pub(crate) fn human_duration(secs: i64) -> String {
    let hours_f = secs as f64 / 3600.0;
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (hours_f + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (hours_f / 24.0 / 365.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_docker() {
        let sizes = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (4_261_000, "4.26MB"),
        ];
        for (n, s) in sizes {
            assert_eq!(human_size(n), s);
        }
        assert_eq!(human_size(12_500_000), "12.5MB");
        assert_eq!(human_size(125_000_000), "125MB");
        for (secs, s) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (120, "2 minutes"),
            (3600, "About an hour"),
            (7200, "2 hours"),
            (3 * 86400, "3 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(secs), s, "{secs}");
        }
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let rows = vec![
            vec!["REPOSITORY".to_string(), "TAG".into(), "SIZE".into()],
            vec!["busybox".to_string(), "latest".into(), "4.26MB".into()],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }
}
