//! What a question is about: one [`Selector`] and one window grammar,
//! shared by the CLI, the read API and the dashboards.
//!
//! The grammar: `since`, a duration back from now (`10m`, `24h`, `7d`), or
//! `from` and `to` in Unix milliseconds; `to` alone moves the end of a
//! `since` window back from now.

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which data a question is about: a service (or all), an instance (or
/// all of the service's), and a window of Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selector {
    pub service: Option<String>,
    pub instance: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Selector {
    /// Everything in the window.
    pub fn all(from_ms: i64, to_ms: i64) -> Selector {
        Selector {
            service: None,
            instance: None,
            from_ms,
            to_ms,
        }
    }

    /// One instance of one service, over this selector's window.
    pub fn for_instance(&self, service: &str, instance: &str) -> Selector {
        Selector {
            service: Some(service.to_owned()),
            instance: Some(instance.to_owned()),
            ..self.clone()
        }
    }

    /// Every instance of one service, over this selector's window.
    pub fn for_service(&self, service: &str) -> Selector {
        Selector {
            service: Some(service.to_owned()),
            instance: None,
            ..self.clone()
        }
    }

    /// The same data from `from_ms` on.
    pub fn starting(&self, from_ms: i64) -> Selector {
        Selector {
            from_ms,
            ..self.clone()
        }
    }

    /// The window's length in milliseconds.
    pub fn span_ms(&self) -> i64 {
        self.to_ms - self.from_ms
    }
}

/// Resolves the window grammar into `(from_ms, to_ms)`. `default` is the
/// length when neither `since` nor `from` is given.
pub fn window(
    since: Option<Duration>,
    from: Option<i64>,
    to: Option<i64>,
    default: Duration,
    now: i64,
) -> Result<(i64, i64)> {
    let to = to.unwrap_or(now);
    let back = |d: Duration| to.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64);
    let from = match (from, since) {
        (Some(f), _) => f,
        (None, Some(s)) => back(s),
        (None, None) => back(default),
    };
    if from >= to {
        return Err(Error::invalid(
            "from",
            "the window must start before it ends",
        ));
    }
    Ok((from, to))
}

/// Parses a point in time: Unix milliseconds, or a date and time in RFC
/// 3339 (`2026-11-28T08:00:00Z`), read as UTC when it names no offset, and
/// without seconds as a browser's date picker sends it
/// (`2026-11-28T08:00`). Names `field` on error.
pub(crate) fn parse_time(field: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    // A picker's minutes-only value gains its seconds.
    let full = if s.len() == 16 && s.as_bytes().get(13) == Some(&b':') {
        format!("{s}:00")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(ms)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{s:?} is not a time: give Unix milliseconds or a date and time like 2026-11-28T08:00:00Z"),
            )
        })
}

/// Parses `10m`, `24h` or `7d`, naming `field` on error: for durations
/// that arrive as text (query strings, config files).
pub fn parse_duration(field: &str, s: &str) -> Result<Duration> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        Error::invalid(
            field,
            format!("{s:?} is not a duration like 10m, 24h or 7d: {e}"),
        )
    })?;
    if d.is_zero() {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    Ok(d)
}

/// A duration written as text in a file, such as `"1m"` or `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl std::fmt::Display for Span {
    /// The shortest whole unit: `7d`, `1h`, `30s`, `250ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        match units.iter().find(|(n, _)| ms >= *n && (ms / n) * n == ms) {
            Some((n, unit)) => write!(f, "{}{unit}", ms / n),
            None => write!(f, "{ms}ms"),
        }
    }
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|e| format!("{s:?} is not a duration such as 90s or 7d: {e}"))
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn windows() {
        assert_eq!(
            window(Some(HOUR), None, None, HOUR, 10_000_000).unwrap(),
            (6_400_000, 10_000_000)
        );
        assert_eq!(window(None, Some(5), Some(9), HOUR, 100).unwrap(), (5, 9));
        assert!(window(None, Some(9), Some(5), HOUR, 100).is_err());
        assert_eq!(
            parse_time("from", "1800000000000").unwrap(),
            1_800_000_000_000
        );
        assert_eq!(
            parse_time("from", "2027-01-15T08:00:00Z").unwrap(),
            1_800_000_000_000
        );
        assert_eq!(
            parse_time("from", "2027-01-15T08:00").unwrap(),
            1_800_000_000_000
        );
        assert!(parse_time("to", "yesterday")
            .unwrap_err()
            .to_string()
            .starts_with("to:"));
        let e = parse_duration("since", "soon").unwrap_err();
        assert!(e.to_string().starts_with("since:"), "{e}");
        assert!(parse_duration("since", "0s").is_err());
    }
}
