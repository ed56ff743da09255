//! `strata ps`: docker's container table (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS,
//! PORTS, NAMES), newest first, with its status wording ("Up 3 seconds", "Exited (0) 2
//! minutes ago", "Created").

use crate::GlobalArgs;
use crate::cmd::images::{human_duration, human_since, human_size, parse_time, write_table};
use std::io::Write;
use std::process::ExitCode;
use strata_store::{Container, ContainerStatus, Store};

/// Arguments of `strata ps`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show all containers (default: running ones)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only show IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate IDs and commands
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show the N last created containers (all states)
    #[arg(short = 'n', long = "last", value_name = "N")]
    last: Option<usize>,
    /// Show the latest created container (all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Filter: `status=`, `name=`, `ancestor=`, `exited=`, `id=`, `health=`, `label=KEY[=VALUE]` (the
    /// same key again: either; different keys: both; `label` given twice: both)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Show sizes: the writable layer's, and with the image's ("virtual")
    #[arg(short = 's', long)]
    size: bool,
    /// A Go template (`{{.ID}}`, `{{.Names}}`, `{{.Label "k"}}`, `{{json .}}`, `table ...`),
    /// or `json`, or `table`
    #[arg(long, value_name = "TEMPLATE")]
    format: Option<String>,
}

/// `--filter`s, by key.
#[derive(Debug, Default)]
struct Filters {
    status: Vec<ContainerStatus>,
    /// A status docker knows that strata never has (`paused`, `restarting`, `dead`...).
    status_never: bool,
    name: Vec<String>,
    ancestor: Vec<(String, Option<strata_store::Digest>)>,
    exited: Vec<i32>,
    id: Vec<String>,
    /// `label=KEY` or `label=KEY=VALUE`: all must match, as docker's.
    label: Vec<(String, Option<String>)>,
    /// `health=starting|healthy|unhealthy|none`.
    health: Vec<String>,
}

impl Filters {
    fn parse(store: &Store, args: &[String]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for arg in args {
            let Some((key, value)) = arg.split_once('=') else {
                anyhow::bail!("bad format of filter (expected name=value): {arg}");
            };
            match key {
                "status" => match value {
                    "created" => f.status.push(ContainerStatus::Created),
                    "running" => f.status.push(ContainerStatus::Running),
                    "exited" => f.status.push(ContainerStatus::Exited),
                    "restarting" | "removing" | "paused" | "dead" => f.status_never = true,
                    _ => anyhow::bail!("invalid filter 'status={value}'"),
                },
                "name" => f.name.push(value.to_owned()),
                "ancestor" => f
                    .ancestor
                    .push((value.to_owned(), store.resolve(value).ok())),
                "exited" => f.exited.push(
                    value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("invalid filter 'exited={value}'"))?,
                ),
                "id" => f.id.push(value.to_owned()),
                "health" => match value {
                    "starting" | "healthy" | "unhealthy" | "none" => {
                        f.health.push(value.to_owned())
                    }
                    _ => anyhow::bail!("unrecognized filter value for health: {value}"),
                },
                "label" => f.label.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (value.to_owned(), None),
                }),
                _ => anyhow::bail!("invalid filter '{key}'"),
            }
        }
        Ok(f)
    }

    /// Whether a status or exit code is asked for (then stopped containers are listed
    /// without `-a`, as docker does).
    fn names_states(&self) -> bool {
        !self.status.is_empty() || self.status_never || !self.exited.is_empty()
    }

    fn keeps(&self, c: &Container) -> bool {
        fn any<T>(v: &[T], f: impl Fn(&T) -> bool) -> bool {
            v.is_empty() || v.iter().any(f)
        }
        let status = if self.status.is_empty() {
            !self.status_never
        } else {
            self.status.contains(&c.state.status)
        };
        status
            && any(&self.name, |n| name_matches(n, &c.config.name))
            && any(&self.ancestor, |(name, id)| {
                *name == c.config.image || id.as_ref() == Some(&c.config.image_id)
            })
            && any(&self.exited, |code| {
                c.state.status == ContainerStatus::Exited && c.state.exit_code == *code
            })
            && any(&self.id, |id| c.config.id.starts_with(id.as_str()))
            && any(&self.health, |want| {
                *want
                    == c.state
                        .health
                        .as_ref()
                        .map_or("none", |h| h.status.as_str())
            })
            && self
                .label
                .iter()
                .all(|(k, v)| match (c.config.labels.get(k), v) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }
}

/// docker's `name=` filter: a substring of the name, `^` and `$` anchoring it.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, pattern) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, pattern) = match pattern.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    match (start, end) {
        (true, true) => name == pattern,
        (true, false) => name.starts_with(pattern),
        (false, true) => name.ends_with(pattern),
        (false, false) => name.contains(pattern),
    }
}

pub(crate) fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(global.store_root())?;
    let filters = Filters::parse(&store, &args.filter)?;
    let mut all = store.containers()?;
    all.reverse();
    let last = if args.latest { Some(1) } else { args.last };
    let shown: Vec<&Container> = match last {
        Some(n) => all.iter().filter(|c| filters.keeps(c)).take(n).collect(),
        None => all
            .iter()
            .filter(|c| {
                args.all || filters.names_states() || c.state.status == ContainerStatus::Running
            })
            .filter(|c| filters.keeps(c))
            .collect(),
    };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for c in shown {
            let id = if args.no_trunc {
                c.config.id.as_str()
            } else {
                c.config.short_id()
            };
            writeln!(out, "{id}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = jiff::Timestamp::now();
    let template = match args.format.as_deref() {
        None | Some("table") => None,
        Some(f) => Some(crate::template::Template::parse(f).map_err(anyhow::Error::msg)?),
    };
    // As docker's: a template that prints the size computes it without -s.
    let sizes = args.size || template.as_ref().is_some_and(|t| t.uses("Size"));
    let rows: Vec<Row<'_>> = shown
        .into_iter()
        .map(|c| Row::new(&store, c, now, args.no_trunc, sizes))
        .collect();
    if let Some(t) = template {
        if t.is_table() {
            let mut table = vec![
                t.header::<Row<'_>>()
                    .split('\t')
                    .map(str::to_owned)
                    .collect(),
            ];
            for row in &rows {
                let line = t.render(row).map_err(anyhow::Error::msg)?;
                table.push(line.split('\t').map(str::to_owned).collect());
            }
            write_table(&mut out, &table)?;
        } else {
            for row in &rows {
                writeln!(out, "{}", t.render(row).map_err(anyhow::Error::msg)?)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut columns = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if args.size {
        columns.push("SIZE");
    }
    let mut table = vec![columns.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in &rows {
        let mut line = vec![
            r.id.clone(),
            crate::report::clip(&r.c.config.image).into_owned(),
            crate::report::clip(&r.command).into_owned(),
            r.running_for.clone(),
            r.status.clone(),
            super::port::ports_column(r.c),
            r.c.config.name.clone(),
        ];
        if args.size {
            line.push(r.size.clone());
        }
        table.push(line);
    }
    write_table(&mut out, &table)?;
    Ok(ExitCode::SUCCESS)
}

/// A container as `ps` shows it, the fields docker's `--format` offers.
struct Row<'a> {
    c: &'a Container,
    id: String,
    /// The command quoted, cut to 20 characters unless `--no-trunc`.
    command: String,
    running_for: String,
    status: String,
    /// `-s`: "2B (virtual 1.5MB)"; empty without it.
    size: String,
}

impl<'a> Row<'a> {
    fn new(
        store: &Store,
        c: &'a Container,
        now: jiff::Timestamp,
        no_trunc: bool,
        sizes: bool,
    ) -> Row<'a> {
        let command = c.config.argv().join(" ");
        let command = if no_trunc {
            command
        } else {
            ellipsis(&command, 20)
        };
        let size = if sizes {
            let rw = strata_store::tree_size(&c.upper_dir());
            let image = store
                .image(c.config.image_id.as_str())
                .map_or(0, |i| i.size());
            format!("{} (virtual {})", human_size(rw), human_size(rw + image))
        } else {
            String::new()
        };
        Row {
            c,
            id: if no_trunc {
                c.config.id.clone()
            } else {
                c.config.short_id().to_owned()
            },
            command: format!("{command:?}"),
            running_for: parse_time(&c.config.created)
                .map_or_else(String::new, |t| human_since(t, now)),
            status: status(c, now),
            size,
        }
    }

    fn labels(&self) -> String {
        let labels: Vec<String> = self
            .c
            .config
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.join(",")
    }

    fn mounts(&self) -> String {
        let mounts: Vec<String> = self
            .c
            .config
            .mounts
            .iter()
            .map(|m| match m.kind {
                strata_store::MountKind::Volume => ellipsis(&m.name, 15),
                _ => m.source.display().to_string(),
            })
            .filter(|m| !m.is_empty())
            .collect();
        mounts.join(",")
    }

    /// docker's `CreatedAt`: `2026-12-07 14:17:59 +0000 UTC`.
    fn created_at(&self) -> String {
        parse_time(&self.c.config.created).map_or_else(String::new, |t| {
            t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
        })
    }
}

impl crate::template::Fields for Row<'_> {
    fn field(&self, name: &str) -> Option<String> {
        Some(match name {
            "ID" => self.id.clone(),
            "Names" => self.c.config.name.clone(),
            "Image" => self.c.config.image.clone(),
            "Command" => self.command.clone(),
            "CreatedAt" => self.created_at(),
            "RunningFor" => self.running_for.clone(),
            "Ports" => super::port::ports_column(self.c),
            "Status" => self.status.clone(),
            "State" => self.c.state.status.as_str().to_owned(),
            "Size" => self.size.clone(),
            "Labels" => self.labels(),
            "Mounts" => self.mounts(),
            "Networks" => self.c.config.network.clone(),
            "LocalVolumes" => self
                .c
                .config
                .mounts
                .iter()
                .filter(|m| m.kind == strata_store::MountKind::Volume)
                .count()
                .to_string(),
            _ => return None,
        })
    }

    fn label(&self, key: &str) -> String {
        self.c.config.labels.get(key).cloned().unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for name in [
            "Command",
            "CreatedAt",
            "ID",
            "Image",
            "Labels",
            "LocalVolumes",
            "Mounts",
            "Names",
            "Networks",
            "Ports",
            "RunningFor",
            "Size",
            "State",
            "Status",
        ] {
            if let Some(v) = self.field(name) {
                map.insert(name.to_owned(), v.into());
            }
        }
        map.into()
    }

    fn header(name: &str) -> String {
        match name {
            "ID" => "CONTAINER ID".to_owned(),
            "RunningFor" => "CREATED".to_owned(),
            "CreatedAt" => "CREATED AT".to_owned(),
            "LocalVolumes" => "LOCAL VOLUMES".to_owned(),
            other => other.to_uppercase(),
        }
    }
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The STATUS column.
pub(crate) fn status(c: &Container, now: jiff::Timestamp) -> String {
    let since = |t: &str| parse_time(t).map_or(0, |t| now.as_second() - t.as_second());
    match c.state.status {
        ContainerStatus::Created => "Created".to_owned(),
        ContainerStatus::Running if strata_build::container_paused(c) => {
            format!("Up {} (Paused)", human_duration(since(&c.state.started_at)))
        }
        ContainerStatus::Running => {
            let health = match c.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)".to_owned(),
                Some(status) => format!(" ({status})"),
                None => String::new(),
            };
            format!("Up {}{health}", human_duration(since(&c.state.started_at)))
        }
        ContainerStatus::Exited => format!(
            "Exited ({}) {} ago",
            c.state.exit_code,
            human_duration(since(&c.state.finished_at))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filters_match_substrings_and_anchors() {
        assert!(name_matches("eb", "web"));
        assert!(name_matches("^we", "web"));
        assert!(!name_matches("^eb", "web"));
        assert!(name_matches("eb$", "web"));
        assert!(name_matches("^web$", "web"));
        assert!(!name_matches("^web$", "web2"));
    }

    #[test]
    fn long_commands_are_cut_as_docker_cuts_them() {
        assert_eq!(ellipsis("sleep 100", 20), "sleep 100");
        assert_eq!(
            ellipsis("sh -c 'echo hello; sleep 1000'", 20),
            "sh -c 'echo hello; …"
        );
    }
}
