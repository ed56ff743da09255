//! `strata ps`: docker's container table (CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS,
//! PORTS, NAMES), newest first, with its status wording ("Up 3 seconds", "Exited (0) 2
//! minutes ago", "Created").

use crate::GlobalArgs;
use crate::cmd::images::{human_duration, human_since, parse_time, write_table};
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
    /// Filter: `status=`, `name=`, `ancestor=`, `exited=`, `id=` (the same key again: either;
    /// different keys: both)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
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
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in shown {
        let command = c.config.argv().join(" ");
        let command = if args.no_trunc {
            command
        } else {
            ellipsis(&command, 20)
        };
        rows.push(vec![
            if args.no_trunc {
                c.config.id.clone()
            } else {
                c.config.short_id().to_owned()
            },
            crate::report::clip(&c.config.image).into_owned(),
            crate::report::clip(&format!("{command:?}")).into_owned(),
            parse_time(&c.config.created).map_or_else(String::new, |t| human_since(t, now)),
            status(c, now),
            String::new(),
            c.config.name.clone(),
        ]);
    }
    write_table(&mut out, &rows)?;
    Ok(ExitCode::SUCCESS)
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
        ContainerStatus::Running => format!("Up {}", human_duration(since(&c.state.started_at))),
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
