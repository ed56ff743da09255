//! `--format`: the subset of Go's text/template that docker users write for listings:
//! `{{.Field}}`, `{{.Label "key"}}`, `{{json .}}`, `{{json .Field}}`, text between them, `\t`
//! and `\n` escapes, and a `table ` prefix (a header row of the columns' names, the rows laid
//! out as docker's tabwriter does). `json` alone is `{{json .}}`. Anything else (`if`,
//! `range`, pipes) is refused with a message rather than printed wrong.

use serde_json::Value;

/// What a listing's row offers a template.
pub(crate) trait Fields {
    /// The text of field `name` (`None`: no such field).
    fn field(&self, name: &str) -> Option<String>;
    /// The value of label `key` (empty when not set).
    fn label(&self, key: &str) -> String;
    /// The row as `{{json .}}` prints it.
    fn json(&self) -> Value;
    /// The column header of field `name` in a `table`.
    fn header(name: &str) -> String;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    Label(String),
    Json(Option<String>),
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    table: bool,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error says what is not supported.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let text = if text == "json" { "{{json .}}" } else { text };
        let (table, body) = match text.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start_matches(' ')),
            None => (false, text),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("template: unclosed action in {text:?}"))?;
            parts.push(action(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { table, parts })
    }

    /// Whether it prints field `name` (alone or in `{{json .}}`): a listing computes a costly
    /// field (a size) only then.
    pub(crate) fn uses(&self, name: &str) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Field(f) | Part::Json(Some(f)) => f == name,
            Part::Json(None) => true,
            _ => false,
        })
    }

    /// Whether it is a `table` (a header row, tabwriter columns).
    pub(crate) fn is_table(&self) -> bool {
        self.table
    }

    /// The header row of a `table`.
    pub(crate) fn header<F: Fields>(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Field(f) | Part::Json(Some(f)) => F::header(f),
                Part::Label(_) => "LABEL".to_owned(),
                Part::Json(None) => String::new(),
            })
            .collect()
    }

    /// One row, as the template prints it (without a final newline).
    pub(crate) fn render(&self, row: &impl Fields) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&field(row, f)?),
                Part::Label(k) => out.push_str(&row.label(k)),
                Part::Json(None) => out.push_str(&row.json().to_string()),
                Part::Json(Some(f)) => {
                    out.push_str(&Value::String(field(row, f)?).to_string());
                }
            }
        }
        Ok(out)
    }
}

fn field(row: &impl Fields, name: &str) -> Result<String, String> {
    row.field(name).ok_or_else(|| {
        format!("template: :1: executing \"\" at <.{name}>: can't evaluate field {name}")
    })
}

fn action(a: &str) -> Result<Part, String> {
    if let Some(name) = a.strip_prefix('.')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Ok(Part::Field(name.to_owned()));
    }
    if let Some(key) = a.strip_prefix(".Label ") {
        let key = key.trim();
        if let Some(k) = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
            return Ok(Part::Label(k.to_owned()));
        }
    }
    if let Some(arg) = a.strip_prefix("json ") {
        let arg = arg.trim();
        if arg == "." {
            return Ok(Part::Json(None));
        }
        if let Some(name) = arg.strip_prefix('.')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Ok(Part::Json(Some(name.to_owned())));
        }
    }
    Err(format!(
        "unsupported template action {{{{{a}}}}}: strata takes {{{{.Field}}}}, {{{{.Label \"key\"}}}}, {{{{json .}}}} and {{{{json .Field}}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row;

    impl Fields for Row {
        fn field(&self, name: &str) -> Option<String> {
            match name {
                "ID" => Some("abc".into()),
                "Names" => Some("web".into()),
                _ => None,
            }
        }
        fn label(&self, key: &str) -> String {
            if key == "tier" {
                "front".into()
            } else {
                String::new()
            }
        }
        fn json(&self) -> Value {
            serde_json::json!({"ID": "abc"})
        }
        fn header(name: &str) -> String {
            name.to_uppercase()
        }
    }

    #[test]
    fn renders_fields_labels_and_json() {
        let t =
            Template::parse("{{.ID}}: {{.Names}} {{.Label \"tier\"}}|{{.Label \"x\"}}").unwrap();
        assert_eq!(t.render(&Row).unwrap(), "abc: web front|");
        assert_eq!(
            Template::parse("json").unwrap().render(&Row).unwrap(),
            "{\"ID\":\"abc\"}"
        );
        assert_eq!(
            Template::parse("{{json .Names}}")
                .unwrap()
                .render(&Row)
                .unwrap(),
            "\"web\""
        );
        let t = Template::parse("table {{.ID}}\\t{{.Names}}").unwrap();
        assert!(t.is_table());
        assert_eq!(t.header::<Row>(), "ID\tNAMES");
        assert_eq!(t.render(&Row).unwrap(), "abc\tweb");
    }

    #[test]
    fn refuses_what_it_does_not_do() {
        assert!(Template::parse("{{if .ID}}x{{end}}").is_err());
        assert!(Template::parse("{{.ID").is_err());
        let t = Template::parse("{{.Nope}}").unwrap();
        assert!(
            t.render(&Row)
                .unwrap_err()
                .contains("can't evaluate field Nope")
        );
    }
}
