//! Timestamps: RFC 3339 in UTC, to the second, everywhere.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::error::{Error, Result};
use crate::validate::printable;

pub fn now() -> String {
    format(Utc::now())
}

pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 in UTC to the microsecond, for the few places where order within a second
/// matters (when a backup set was finished).
pub fn format_exact(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Rewrites an RFC 3339 timestamp in this crate's form (UTC, whole seconds); text
/// that does not parse is kept as it is.
pub fn normalise(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|at| format(at.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.to_string())
}

/// The current month as `YYYY-MM`.
pub fn current_month() -> String {
    Utc::now().format("%Y-%m").to_string()
}

/// A `--since` filter as the catalog compares it: the moment in canonical text.
pub fn parse_since(text: Option<&str>) -> Result<Option<String>> {
    text.map(parse_moment).transpose().map(|at| at.map(format))
}

/// Parses a moment given as RFC 3339, a date (`2026-11-01`, midnight UTC), or an age
/// before now (`90m`, `24h`, `7d`, `2w`).
pub fn parse_moment(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    if let Ok(age) = parse_duration(text) {
        return Ok(Utc::now() - age);
    }
    Err(Error::usage(format!("invalid time '{}'", printable(text)))
        .with_hint("use RFC 3339 (2026-11-01T12:00:00Z), a date (2026-11-01) or an age (24h, 7d)"))
}

/// Parses a duration such as `30s`, `15m`, `24h`, `90d`, `2w`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<chrono::Duration> {
    let invalid = || {
        Error::usage(format!("invalid duration '{}'", printable(text)))
            .with_hint("use a number with s, m, h, d or w, such as 30s or 90d")
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(invalid()),
    };
    amount
        .checked_mul(seconds_per_unit)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(chrono::Duration::seconds)
        .ok_or_else(invalid)
}

/// Parses how long something new lives (a key's `--expires-in`, a session's `--ttl`):
/// a duration above zero, since anything shorter would be born expired.
pub fn parse_lifetime(text: &str) -> Result<chrono::Duration> {
    let lifetime = parse_duration(text)?;
    if lifetime <= chrono::Duration::zero() {
        return Err(
            Error::usage(format!("a lifetime of '{}' has already ended", printable(text)))
                .with_hint("give a duration above zero, such as 12h or 90d"),
        );
    }
    Ok(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30").unwrap().num_seconds(), 30);
        assert_eq!(parse_duration("15m").unwrap().num_seconds(), 900);
        assert_eq!(parse_duration("90d").unwrap().num_days(), 90);
        for bad in ["", "d", "1x", "-1d", "1.5h", "99999999999999999999d", "1d2h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifetimes_must_be_above_zero() {
        assert_eq!(parse_lifetime("1s").unwrap().num_seconds(), 1);
        for bad in ["0", "0d", "0s", "-1d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn moments_accept_rfc3339_dates_and_ages() {
        assert_eq!(
            format(parse_moment("2026-11-01T12:00:00+01:00").unwrap()),
            "2026-11-01T11:00:00Z"
        );
        assert_eq!(
            format(parse_moment("2026-11-01").unwrap()),
            "2026-11-01T00:00:00Z"
        );
        assert!(parse_moment("7d").unwrap() < Utc::now());
        assert!(parse_moment("yesterday").is_err());
    }
}
