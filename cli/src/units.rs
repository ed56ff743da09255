//! Docker's units on the command line and in the config file: sizes (`--keep-storage 10GB`,
//! `defaultKeepStorage`) and ages (`--filter until=24h`).

use std::time::{Duration, SystemTime};

/// A size as docker's command line reads it (`--keep-storage 10GB`, `-m 512m`, the config's
/// `defaultKeepStorage`): go-units' `RAMInBytes`, powers of 1024
/// ([`strata_frontend::parse_ram_bytes`], the one reader of sizes).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    strata_frontend::parse_ram_bytes(text).ok_or_else(|| {
        format!("invalid size {text:?} (expected bytes, or a number with k, m, g, t or p)")
    })
}

/// The `until=` of docker's prune filters: a Go duration (`24h`, `1h30m`, `90s`) back from
/// now, or a timestamp (RFC 3339 or Unix seconds). Returns how long ago that is.
pub(crate) fn parse_until(text: &str, now: SystemTime) -> Result<Duration, String> {
    let invalid =
        || format!("invalid until filter {text:?}: expected a duration like 24h or a timestamp");
    if let Ok(d) = text.parse::<jiff::SignedDuration>() {
        return Duration::try_from(d).map_err(|_| invalid());
    }
    let at = match text.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => {
            let secs: i64 = text.parse().map_err(|_| invalid())?;
            jiff::Timestamp::from_second(secs).map_err(|_| invalid())?
        }
    };
    let at = SystemTime::from(at);
    Ok(now.duration_since(at).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_duration_or_a_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_until("24h", now), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_until("1h30m", now), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_until("999000", now), Ok(Duration::from_secs(1000)));
        assert_eq!(
            parse_until("1970-01-12T13:46:00Z", now),
            Ok(Duration::from_secs(40))
        );
        assert!(parse_until("yesterday", now).is_err());
    }
}
