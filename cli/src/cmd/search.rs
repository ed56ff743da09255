//! `strata search [REGISTRY/]TERM`, with docker's flags, columns and `--format` placeholders.
//!
//! Docker asks the registry's v1 search API (`/v1/search?q=TERM&n=LIMIT`); Docker Hub serves
//! it, distribution's registry does not. strata lists the registry's catalog
//! (`/v2/_catalog`) instead and keeps the repositories whose name contains TERM; a catalog
//! has no descriptions, stars or official marks, so those columns are empty, `0` and empty.
//! Docker Hub has no catalog and strata does not speak its search API: searching it fails
//! with that said (see `strata_store::RegistryClient::catalog`). Names are printed with their
//! registry (`127.0.0.1:5000/app`), so that they can be pulled as printed.

use crate::GlobalArgs;
use crate::cmd::images::write_table;
use crate::registry::client;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `strata search`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    limit: i64,
    /// Pretty-print search using a Go-like template: `table`, `json`, or placeholders
    /// `{{.Name}}`, `{{.Description}}`, `{{.StarCount}}`, `{{.IsOfficial}}`, `{{.IsAutomated}}`
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// `[REGISTRY/]TERM`: the registry (a host with a `.` or `:`, or `localhost`) and what
    /// the names must contain
    #[arg(value_name = "TERM")]
    term: String,
}

/// Docker's default: `table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}`.
const DEFAULT_FORMAT: &str =
    "table {{.Name}}\\t{{.Description}}\\t{{.StarCount}}\\t{{.IsOfficial}}";

/// One result, as docker's search formatter sees it.
struct Found {
    name: String,
    description: String,
    stars: u64,
    official: bool,
    automated: bool,
}

impl Found {
    /// A placeholder's value (`Name`) and its table header (`NAME`), as docker renders them:
    /// booleans as `[OK]` or nothing, descriptions cut at 45 characters unless `--no-trunc`.
    fn field(&self, name: &str, no_trunc: bool) -> Option<(String, &'static str)> {
        let ok = |b: bool| if b { "[OK]".to_owned() } else { String::new() };
        Some(match name {
            "Name" => (self.name.clone(), "NAME"),
            "Description" => {
                let one_line = self.description.replace(['\n', '\r'], " ");
                let text = if no_trunc || one_line.chars().count() <= 45 {
                    one_line
                } else {
                    one_line.chars().take(44).chain(['…']).collect()
                };
                (text, "DESCRIPTION")
            }
            "StarCount" => (self.stars.to_string(), "STARS"),
            "IsOfficial" => (ok(self.official), "OFFICIAL"),
            "IsAutomated" => (ok(self.automated), "AUTOMATED"),
            _ => return None,
        })
    }
}

/// Splits `[REGISTRY/]TERM` as docker does: the part before the first `/` is a registry if it
/// has a `.` or a `:` or is `localhost`; else the registry is Docker Hub.
fn split_term(term: &str) -> (&str, &str) {
    match term.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => (host, rest),
        _ => ("docker.io", term),
    }
}

/// Renders `template`'s `{{.Field}}` placeholders with `value`; `\t` and `\n` written out in
/// the template are a tab and a newline, as in docker.
fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            anyhow::bail!("invalid --format {template:?}: unclosed {{{{");
        };
        let inner = after[..end].trim();
        let field = inner.strip_prefix('.').and_then(value).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid --format placeholder {{{{{inner}}}}}: search has .Name, .Description, .StarCount, .IsOfficial and .IsAutomated"
            )
        })?;
        out.push_str(&field);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !(1..=100).contains(&args.limit) {
        anyhow::bail!("limit {} is outside the range of [1, 100]", args.limit);
    }
    let (registry, term) = split_term(&args.term);
    let repositories = client()?.catalog(registry)?;
    let needle = term.to_lowercase();
    let found: Vec<Found> = repositories
        .into_iter()
        .filter(|r| r.to_lowercase().contains(&needle))
        .take(usize::try_from(args.limit).unwrap_or(usize::MAX))
        .map(|r| Found {
            name: format!("{registry}/{r}"),
            description: String::new(),
            stars: 0,
            official: false,
            automated: false,
        })
        .collect();

    let format = args.format.as_deref().unwrap_or(DEFAULT_FORMAT);
    let mut out = std::io::stdout().lock();
    if format == "json" {
        for f in &found {
            let mut object = serde_json::Map::new();
            for key in [
                "Description",
                "IsAutomated",
                "IsOfficial",
                "Name",
                "StarCount",
            ] {
                let (value, _) = f.field(key, args.no_trunc).expect("a known field");
                object.insert(key.to_owned(), value.into());
            }
            writeln!(out, "{}", serde_json::Value::Object(object))?;
        }
    } else if let Some(table) = format
        .strip_prefix("table")
        .filter(|t| t.is_empty() || t.starts_with(char::is_whitespace))
    {
        let table = if table.trim().is_empty() {
            &DEFAULT_FORMAT["table".len()..]
        } else {
            table
        };
        let table = table.trim();
        let header = render(table, &|name| found_header(name).map(str::to_owned))?;
        let mut rows = vec![header.split('\t').map(str::to_owned).collect::<Vec<_>>()];
        for f in &found {
            let line = render(table, &|name| f.field(name, args.no_trunc).map(|v| v.0))?;
            rows.push(line.split('\t').map(str::to_owned).collect());
        }
        write_table(&mut out, &rows)?;
    } else {
        for f in &found {
            let line = render(format, &|name| f.field(name, args.no_trunc).map(|v| v.0))?;
            writeln!(out, "{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A placeholder's table header.
fn found_header(name: &str) -> Option<&'static str> {
    let blank = Found {
        name: String::new(),
        description: String::new(),
        stars: 0,
        official: false,
        automated: false,
    };
    blank.field(name, true).map(|(_, header)| header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_is_named_as_docker_names_it() {
        assert_eq!(split_term("127.0.0.1:5000/app"), ("127.0.0.1:5000", "app"));
        assert_eq!(split_term("localhost/app"), ("localhost", "app"));
        assert_eq!(split_term("busybox"), ("docker.io", "busybox"));
        assert_eq!(split_term("team/app"), ("docker.io", "team/app"));
    }

    #[test]
    fn templates_render_placeholders_and_refuse_unknown_ones() {
        let value = |name: &str| (name == "Name").then(|| "app".to_owned());
        assert_eq!(
            render("{{.Name}}\\t{{ .Name }}!", &value).unwrap(),
            "app\tapp!"
        );
        assert_eq!(
            render("{{.Stars}}", &value).unwrap_err().to_string(),
            "invalid --format placeholder {{.Stars}}: search has .Name, .Description, .StarCount, .IsOfficial and .IsAutomated"
        );
    }
}
