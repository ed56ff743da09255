//! Docker's units on the command line and in the config file: sizes (`--keep-storage 10GB`,
//! `defaultKeepStorage`) and ages (`--filter until=24h`).

use std::time::{Duration, SystemTime};

/// docker's `units.RAMInBytes`, which `--keep-storage` and daemon.json's sizes go through:
/// a number (decimals allowed), an optional space, then `k`, `m`, `g`, `t` or `p`
/// (any case), an optional `i` and an optional `b`; powers of 1024 (`10GB` is 10 GiB).
/// Hand-written because no crate we have speaks exactly this grammar (bytesize reads `GB`
/// as 10^9).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size: {text:?}");
    let s = text.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(end);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(invalid()),
    };
    let bytes = number * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
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
    fn sizes_as_docker_reads_them() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("1k", 1024),
            ("1KB", 1024),
            ("10GB", 10 << 30),
            ("1.5m", 3 << 19),
            ("2 MiB", 2 << 20),
            ("3b", 3),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "GB", "1x", "-1", "1..2k", "99999999999P"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

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
