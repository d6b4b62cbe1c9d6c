//! Numbers as people read them: bytes, counts, rates and durations. The
//! one place that formats them, for the dashboards and the CLI alike.

use heaptide_wire::Unit;

const KIB: f64 = 1024.0;
const MIB: f64 = KIB * 1024.0;
const GIB: f64 = MIB * 1024.0;

/// `1.5 MiB`, `312 B`, `2.0 GiB`.
pub fn bytes(v: f64) -> String {
    let a = v.abs();
    let (div, unit) = if a >= GIB {
        (GIB, "GiB")
    } else if a >= MIB {
        (MIB, "MiB")
    } else if a >= KIB {
        (KIB, "KiB")
    } else {
        return format!("{v:.0} B");
    };
    format!("{:.1} {unit}", v / div)
}

/// A count as people read it: `940`, `12,480`, `270k`, `1.2M`, `3.4G`,
/// with one decimal below 100 when it has a fraction.
pub fn count(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    let scaled = |div: f64, suffix: &str| {
        let x = a / div;
        if x < 10.0 {
            format!("{sign}{x:.1}{suffix}")
        } else {
            format!("{sign}{x:.0}{suffix}")
        }
    };
    if a >= 1e9 {
        scaled(1e9, "G")
    } else if a >= 1e6 {
        scaled(1e6, "M")
    } else if a >= 100_000.0 {
        scaled(1e3, "k")
    } else if a >= 100.0 || a.fract() == 0.0 {
        format!("{sign}{}", grouped(a.round() as u64))
    } else {
        format!("{sign}{a:.1}")
    }
}

/// `12480` as `12,480`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An amount in `unit`: `1.5 MiB`, `40`, `12,480`, `3.2 ms`.
pub fn amount(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => bytes(v),
        Unit::Millis => format!("{v:.1} ms"),
        Unit::Percent => format!("{v:.1}%"),
        _ => count(v.round()),
    }
}

/// A measured amount with two decimals for counts, as budgets compare
/// them: `1.5 MiB`, `0.25 fds`, `12.0 ms`.
pub fn precise(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes | Unit::Millis => amount(unit, v),
        _ => format!("{v:.2} {}", unit.as_str()),
    }
}

/// A signed rate per hour: `+12.3 MiB/h`, `+40.0 fds/h`.
pub fn rate_per_hour(unit: Unit, v: f64) -> String {
    let sign = if v >= 0.0 { "+" } else { "-" };
    match unit {
        Unit::Bytes => format!("{sign}{}/h", bytes(v.abs())),
        _ => format!("{sign}{} {}/h", count(v.abs()), unit.as_str()),
    }
}

/// A compact axis label: `512 KiB`, `12.5k`, `3.0 ms`.
pub fn axis(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => {
            let a = v.abs();
            if a >= GIB {
                format!("{:.1} GiB", v / GIB)
            } else if a >= MIB {
                format!("{:.1} MiB", v / MIB)
            } else if a >= KIB {
                format!("{:.0} KiB", v / KIB)
            } else {
                format!("{v:.0} B")
            }
        }
        Unit::Millis => format!("{v:.1} ms"),
        Unit::Percent => format!("{v:.0}%"),
        _ => count(v),
    }
}

/// `3h 20m`, `45s`, `2d 4h`; `never` past a century.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs > 3.0e9 {
        return "never".into();
    }
    let s = secs.max(0.0) as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A span as people write it on a command line: `7d`, `12h`, `90m`, `45s`
/// when whole, else as [`duration`].
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s as f64 != secs.max(0.0) || s == 0 {
        return duration(secs);
    }
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// Unix milliseconds as RFC 3339 UTC, to the second.
pub fn clock(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let (y, mo, d) = civil(days);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's
/// civil-from-days algorithm): a date without a calendar crate.
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (y, mo, d)
}

/// Text safe for a terminal or a Markdown comment: control characters,
/// the ESC of an escape sequence among them, become U+FFFD, so that a
/// frame name cannot recolour, retitle or rewrite a user's terminal.
/// Newlines and tabs stay.
pub fn printable(s: String) -> String {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_not_printable() {
        assert_eq!(
            printable("a\x1b]0;pwned\x07b\u{9b}2J\n\tc".into()),
            "a\u{fffd}]0;pwned\u{fffd}b\u{fffd}2J\n\tc"
        );
        assert_eq!(printable("plain".into()), "plain");
    }

    #[test]
    fn units_read_well() {
        assert_eq!(bytes(12.3 * MIB), "12.3 MiB");
        assert_eq!(bytes(100.0), "100 B");
        assert_eq!(duration(3.0 * 3600.0 + 20.0 * 60.0), "3h 20m");
        assert_eq!(duration(2.0 * 86400.0 + 5.0 * 3600.0), "2d 5h");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(rate_per_hour(Unit::Fds, 40.0), "+40 fds/h");
        assert_eq!(rate_per_hour(Unit::Fds, 269_823.8), "+270k fds/h");
        assert_eq!(rate_per_hour(Unit::Threads, 2.5), "+2.5 threads/h");
        assert_eq!(count(12_480.0), "12,480");
        assert_eq!(count(1_234_567.0), "1.2M");
        assert_eq!(count(-150_000.0), "-150k");
        assert_eq!(amount(Unit::Fds, 1023.6), "1,024");
        assert_eq!(precise(Unit::Threads, 0.25), "0.25 threads");
        assert_eq!(clock(1_800_000_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(span(7.0 * 86_400.0), "7d");
        assert_eq!(span(90.0 * 60.0), "90m");
    }
}
