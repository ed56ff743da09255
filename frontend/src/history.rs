//! The `created_by` texts of image history entries, written exactly as BuildKit writes them.
//!
//! `docker history` shows these, and tools compare them, so they follow BuildKit's Go
//! formatting to the byte: `CMD ["/bin/sh" "-c" "x"]` is Go's `%q` of a string slice,
//! `VOLUME [/a /b]` its `%v`, `HEALTHCHECK {Test:[…] Interval:5s …}` a struct's `%+v` with Go
//! durations, and a RUN lists the ARGs it saw (`RUN |2 A=1 B=2 /bin/sh -c make`).

use crate::duration::format_go_duration;
use crate::quote::go_quote;
use strata_graph::{Healthcheck, History};

/// The comment BuildKit puts on every entry it writes.
pub(crate) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// An entry for a step; `exec_like` steps (RUN, COPY, ADD) get BuildKit's ` # buildkit` mark.
pub(crate) fn entry(mut created_by: String, layer: bool, exec_like: bool) -> History {
    if exec_like {
        created_by.push_str(" # buildkit");
    }
    History {
        created_by,
        empty_layer: !layer,
        comment: Some(HISTORY_COMMENT.to_owned()),
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s.as_bytes())).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub(crate) fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `HEALTHCHECK {Test:[CMD-SHELL x] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}`.
pub(crate) fn healthcheck(h: &Healthcheck) -> String {
    format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(&h.test),
        format_go_duration(h.interval),
        format_go_duration(h.timeout),
        format_go_duration(h.start_period),
        format_go_duration(h.start_interval),
        h.retries
    )
}

/// A RUN's text: `|N K=V ...` for the N build args in scope (their current value, which an
/// ENV may have overridden), then the command as it runs.
pub(crate) fn run_command(args: &[String], build_args: &[(&str, &str)]) -> String {
    let mut out = String::new();
    if !build_args.is_empty() {
        out.push('|');
        out.push_str(&build_args.len().to_string());
        for (k, v) in build_args {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
    }
    for arg in args {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            go_quoted_list(&v(&["/bin/sh", "-c", "echo \"hi\""])),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_quoted_list(&[]), "[]");
        assert_eq!(go_list(&v(&["/v", "[/w]"])), "[/v [/w]]");
        let h = Healthcheck {
            test: v(&["CMD-SHELL", "true"]),
            interval: 5_000_000_000,
            ..Healthcheck::default()
        };
        assert_eq!(
            healthcheck(&h),
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
        );
        assert_eq!(
            run_command(
                &v(&["/bin/sh", "-c", "make"]),
                &[("X", "1"), ("HTTP_PROXY", "http://p:1")]
            ),
            "|2 X=1 HTTP_PROXY=http://p:1 /bin/sh -c make"
        );
        assert_eq!(
            entry("RUN x".into(), true, true).created_by,
            "RUN x # buildkit"
        );
    }
}
