//! Text from untrusted sources (archive member names, tar headers, a registry's error body),
//! made fit for an error message: a 16 MiB file name or a junk header must not flood a
//! terminal or hide the message around it.

/// Text from an untrusted source, made fit for a message: control characters replaced and at
/// most 200 characters (a 16 MiB file name or a junk tar header must not flood a terminal).
pub fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

/// A tar parser error as a reason: tar-rs quotes the raw header bytes, which for junk input
/// are binary noise.
pub(crate) fn tar_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("when getting") || text.contains("numeric field") {
        "invalid tar header".to_owned()
    } else {
        shorten(&text)
    }
}
