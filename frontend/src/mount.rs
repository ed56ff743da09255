//! `RUN --mount=...`: the CSV field syntax, the keys each mount type takes, and their
//! defaults, as BuildKit reads them (`instructions/commands_runmount.go`).
//!
//! A mount's field values are expanded with the variables in scope before they are read
//! (`--mount=type=cache,target=$DIR`), so parsing takes an expander; `from=` is the exception
//! and may not hold a variable at all.

use strata_graph::CacheSharing;

/// The kinds of `--mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// `type=bind` (the default).
    Bind,
    /// `type=cache`.
    Cache,
    /// `type=tmpfs`.
    Tmpfs,
    /// `type=secret`.
    Secret,
    /// `type=ssh`.
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// One parsed `--mount`, before defaults that depend on the stage (paths, ids) are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// The type.
    pub kind: MountType,
    /// `from=`: a stage name or index, or an image; `None` is the build context (bind) or an
    /// empty directory (cache).
    pub from: Option<String>,
    /// `source=`/`src=`: the path inside `from`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`.
    pub target: Option<String>,
    /// `readonly`/`ro` (bind, secret and ssh default to read-only, cache and tmpfs not).
    pub readonly: bool,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=` (cache only).
    pub sharing: Option<CacheSharing>,
    /// `required` (secret and ssh only).
    pub required: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` (tmpfs only), bytes.
    pub size: Option<u64>,
    /// `env=` (secret only): expose the secret as this variable.
    pub env: Option<String>,
}

impl RunMount {
    fn new() -> Self {
        Self {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            id: None,
            sharing: None,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            env: None,
        }
    }
}

const ALL_KEYS: [&str; 18] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "size",
];

/// Parses one `--mount` value, expanding each field value with `expand` (not `from`).
pub(crate) fn parse_mount(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<RunMount, String> {
    let fields = parse_csv_record(value)?;
    let mut m = RunMount::new();
    let mut ro_auto = true;
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let val = if key == "from" {
            if has_variable(val) {
                return Err(format!(
                    "'{key}' doesn't support variable expansion, define alias stage instead"
                ));
            }
            val.to_owned()
        } else {
            expand(val)?
        };
        let parse_bool =
            |v: &str| parse_go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
        match key.as_str() {
            "type" => {
                m.kind = match val.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let hint = crate::diagnostic::suggest(
                            &val,
                            ["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        );
                        return Err(with_hint(format!("unsupported mount type {val:?}"), hint));
                    }
                }
            }
            "from" => m.from = Some(val),
            "source" | "src" => m.source = Some(val),
            "target" | "dst" | "destination" => m.target = Some(val),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&val)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&val)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                m.required = parse_bool(&val)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                m.size = Some(
                    parse_ram_bytes(&val)
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?,
                );
            }
            "id" => m.id = Some(val),
            "sharing" => {
                m.sharing = Some(match val.to_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        let hint =
                            crate::diagnostic::suggest(&val, ["shared", "private", "locked"], true);
                        return Err(with_hint(
                            format!("unsupported sharing value {val:?}"),
                            hint,
                        ));
                    }
                })
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| format!("invalid value {val} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    val.parse()
                        .map_err(|_| format!("invalid value {val} for gid"))?,
                )
            }
            "env" => {
                if m.kind != MountType::Secret {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.name()
                    ));
                }
                m.env = Some(val)
            }
            _ => {
                let hint =
                    crate::diagnostic::suggest(&key, ALL_KEYS.into_iter().chain(["env"]), true);
                return Err(with_hint(
                    format!("unexpected key '{key}' in '{field}'"),
                    hint,
                ));
            }
        }
    }
    validate(&mut m, ro_auto)?;
    Ok(m)
}

fn with_hint(message: String, hint: Option<String>) -> String {
    match hint {
        Some(h) => format!("{message} (did you mean {h}?)"),
        None => message,
    }
}

fn validate(m: &mut RunMount, ro_auto: bool) -> Result<(), String> {
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (set, name) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.name()
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            m.kind.name()
        ));
    }
    Ok(())
}

/// BuildKit refuses `$` followed by anything in `from=` (it would need a stage alias).
fn has_variable(s: &str) -> bool {
    s.find('$').is_some_and(|i| i + 1 < s.len())
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: a number with an optional binary unit (`64m`, `1.5GiB`).
pub fn parse_ram_bytes(s: &str) -> Option<u64> {
    parse_unit_bytes(s, 1024.0)
}

/// docker/go-units `FromHumanSize`: as [`parse_ram_bytes`] with decimal units (`10k` is
/// 10,000 bytes); docker reads a json-file log's `max-size` with it.
pub fn parse_human_size(s: &str) -> Option<u64> {
    parse_unit_bytes(s, 1000.0)
}

/// A number, one optional space, an optional unit `k`, `m`, `g`, `t`, `p` (any case, then an
/// optional `i` and an optional `b`): go-units' grammar, a power of `base`. The one reader of
/// sizes (Dockerfile mounts, `--shm-size`, `--log-opt max-size`, `builder.gc`'s keep storage).
fn parse_unit_bytes(s: &str, base: f64) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => base,
        "m" => base.powi(2),
        "g" => base.powi(3),
        "t" => base.powi(4),
        "p" => base.powi(5),
        _ => return None,
    };
    let bytes = num * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// One record of Go's `encoding/csv` reader: fields separated by `,`, a field may be quoted
/// with `"` (and `""` inside is a quote).
pub fn parse_csv_record(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "failed to parse csv mounts: extraneous or missing \" in quoted-field"
                                .into(),
                        );
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => {
                    return Err(
                        "failed to parse csv mounts: extraneous or missing \" in quoted-field"
                            .into(),
                    );
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(
                            "failed to parse csv mounts: bare \" in non-quoted-field".into()
                        );
                    }
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RunMount, String> {
        parse_mount(s, &mut |v: &str| Ok(v.replace("$DIR", "/cache")))
    }

    #[test]
    fn sizes_as_go_units_reads_them() {
        for (text, ram, human) in [
            ("0", 0, 0),
            ("512", 512, 512),
            ("1k", 1024, 1000),
            ("1KB", 1024, 1000),
            ("10GB", 10 << 30, 10_000_000_000),
            ("1.5m", 3 << 19, 1_500_000),
            ("2 MiB", 2 << 20, 2_000_000),
            ("3b", 3, 3),
        ] {
            assert_eq!(parse_ram_bytes(text), Some(ram), "{text}");
            assert_eq!(parse_human_size(text), Some(human), "{text}");
        }
        for bad in [
            "",
            "GB",
            "1x",
            "-1",
            "1..2k",
            "99999999999P",
            "1  k",
            "1kbb",
            "1ik",
        ] {
            assert_eq!(parse_ram_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_per_type() {
        let bind = parse("target=/src").unwrap();
        assert_eq!((bind.kind, bind.readonly), (MountType::Bind, true));
        let cache = parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(
            (cache.kind, cache.readonly, cache.sharing),
            (MountType::Cache, false, None)
        );
        let tmpfs = parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!((tmpfs.readonly, tmpfs.size), (false, Some(64 << 20)));
        let secret = parse("type=secret,id=npmrc,required").unwrap();
        assert_eq!(
            (secret.readonly, secret.required, secret.id.as_deref()),
            (true, true, Some("npmrc"))
        );
        let rw = parse("type=bind,source=.,target=/src,rw").unwrap();
        assert!(!rw.readonly);
    }

    #[test]
    fn all_keys_are_read_and_expanded() {
        let m = parse("type=cache,id=conf,target=$DIR,sharing=locked,mode=0700,uid=1000,gid=50,from=builder,source=/x,ro=false").unwrap();
        assert_eq!(m.target.as_deref(), Some("/cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o700), Some(1000), Some(50)));
        assert_eq!(m.from.as_deref(), Some("builder"));
        assert!(!m.readonly);
        let quoted = parse("\"type=bind\",\"target=/a,b\"").unwrap();
        assert_eq!(quoted.target.as_deref(), Some("/a,b"));
    }

    #[test]
    fn errors_as_buildkit_words_them() {
        for (input, want) in [
            (
                "type=cahce",
                "unsupported mount type \"cahce\" (did you mean cache?)",
            ),
            (
                "target=/x,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=secret,from=x,id=a",
                "secret mount should not have a from",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=cache,target=/x,sharing=never",
                "unsupported sharing value \"never\"",
            ),
            (
                "type=bind,target=/x,sharing=locked",
                "invalid cache sharing set for bind mount",
            ),
            (
                "target=/x,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "target=/x,trget=/y",
                "unexpected key 'trget' in 'trget=/y' (did you mean target?)",
            ),
            ("type=cache,target=/x,uid=me", "invalid value me for uid"),
            ("target", "invalid field 'target' must be a key=value pair"),
            (
                "from=$STAGE,target=/x",
                "'from' doesn't support variable expansion, define alias stage instead",
            ),
            (
                "target=/x,size=1g",
                "unexpected key 'size' for mount type 'bind'",
            ),
        ] {
            assert_eq!(parse(input).unwrap_err(), want, "{input}");
        }
    }
}
