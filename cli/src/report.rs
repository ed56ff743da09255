//! Errors for people: `error:` with the top message, `caused by:` per source, and a `hint:`
//! when one applies.

use std::io::Write;

/// Prints `err` and its chain to stderr.
pub(crate) fn print_error(err: &anyhow::Error) {
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(out, "caused by: {cause}");
    }
}
