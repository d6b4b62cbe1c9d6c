//! Human output of `leaks` and `predict`: fits an 80-column terminal and
//! speaks in human units.

use std::fmt::Write;

use crate::detect::{Analysis, Finding, Verdict};

/// `1.5 MiB`, `312 B`, `2.0 GiB`.
pub fn bytes(v: f64) -> String {
    let a = v.abs();
    let (div, unit) = if a >= 1024f64.powi(3) {
        (1024f64.powi(3), "GiB")
    } else if a >= 1024f64.powi(2) {
        (1024f64.powi(2), "MiB")
    } else if a >= 1024.0 {
        (1024.0, "KiB")
    } else {
        return format!("{v:.0} B");
    };
    format!("{:.1} {unit}", v / div)
}

/// A value in the finding's unit.
pub fn amount(f: &Finding, v: f64) -> String {
    if f.unit == "bytes" {
        bytes(v)
    } else {
        format!("{v:.0}")
    }
}

/// A rate per hour in the finding's unit: `+12.3 MiB/h`, `+40.0 fds/h`.
pub fn rate(f: &Finding, v: f64) -> String {
    let sign = if v >= 0.0 { "+" } else { "-" };
    if f.unit == "bytes" {
        format!("{sign}{}/h", bytes(v.abs()))
    } else {
        format!("{sign}{:.1} {}/h", v.abs(), f.unit)
    }
}

/// `3h 20m`, `45s`, `2d 4h`.
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

fn clock(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

fn window(a: &Analysis) -> String {
    duration((a.to_ms - a.from_ms) as f64 / 1000.0)
}

/// What grows inside a resource, as ` (fd kind file)`, or nothing.
pub fn detail(f: &Finding) -> String {
    f.detail
        .as_ref()
        .and_then(|d| {
            d.iter()
                .next()
                .map(|(k, v)| format!(" ({} {v})", k.replace('_', " ")))
        })
        .unwrap_or_default()
}

/// The function a site is named by: its first frame outside the runtime.
pub fn site_name(s: &crate::detect::Site) -> &str {
    s.app_frame
        .and_then(|i| s.frames.get(i))
        .or(s.frames.first())
        .map_or("?", String::as_str)
}

/// The `leaks` table.
pub fn leaks_table(a: &Analysis, insufficient: &[Finding]) -> String {
    let mut out = String::new();
    let leaks: Vec<&Finding> = a
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Leak)
        .collect();
    let _ = writeln!(
        out,
        "{} suspected leak{} in the last {}",
        leaks.len(),
        if leaks.len() == 1 { "" } else { "s" },
        window(a)
    );
    for (i, f) in leaks.iter().enumerate() {
        let _ = writeln!(out);
        let detail = detail(f);
        let _ = writeln!(
            out,
            "{}. {}/{}  {}{detail}",
            i + 1,
            f.service,
            f.instance,
            f.resource_name()
        );
        if let (Some(s), Some([lo, hi])) = (f.slope_per_hour, f.slope_ci) {
            let _ = writeln!(
                out,
                "   growth {} ({} to {}), confidence {:.1}%",
                rate(f, s),
                rate(f, lo),
                rate(f, hi),
                f.confidence.unwrap_or(0.0) * 100.0
            );
        }
        let now = f
            .current
            .map(|c| amount(f, c))
            .unwrap_or_else(|| "?".into());
        let limit = match (f.limit, f.limit_source) {
            (Some(l), Some(src)) => format!(" of {} ({src})", amount(f, l)),
            _ => String::new(),
        };
        let since = f
            .started_ms
            .map(|s| format!("since {}, ", clock(s)))
            .unwrap_or_default();
        let _ = writeln!(out, "   {since}now {now}{limit}");
        match (
            f.time_to_exhaustion_seconds,
            f.time_to_exhaustion_bounds_seconds,
        ) {
            (Some(t), Some([lo, hi])) => {
                let _ = writeln!(
                    out,
                    "   exhausted in {} ({} to {})",
                    duration(t),
                    duration(lo),
                    duration(hi)
                );
            }
            _ => {
                let _ = writeln!(out, "   no known limit: time to exhaustion unknown");
            }
        }
        for s in &f.sites {
            let name = site_name(s);
            let _ = writeln!(
                out,
                "   {:>3.0}%  {}  {}",
                s.share * 100.0,
                rate(f, s.slope_per_hour),
                truncate(name, 56)
            );
            if let Some(loc) = &s.app_location {
                let _ = writeln!(out, "         at {}", truncate(loc, 68));
            }
        }
    }
    for f in insufficient {
        let _ = writeln!(
            out,
            "\n{}/{} {}: not enough data ({})",
            f.service,
            f.instance,
            f.resource_name(),
            f.reason
        );
    }
    out
}

/// The `predict` table.
pub fn predict_table(a: &Analysis, horizon_secs: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "exhaustion within {} (from the last {})\n",
        duration(horizon_secs),
        window(a)
    );
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:>9} {:>9} {:>11}  EXHAUSTED",
        "INSTANCE", "RESOURCE", "NOW", "LIMIT", "GROWTH"
    );
    for f in &a.findings {
        let now = f
            .current
            .map(|c| amount(f, c))
            .unwrap_or_else(|| "-".into());
        let limit = f.limit.map(|l| amount(f, l)).unwrap_or_else(|| "-".into());
        let growth = match f.verdict {
            Verdict::Leak => f
                .slope_per_hour
                .map(|s| rate(f, s).replace(&format!(" {}", f.unit), ""))
                .unwrap_or_default(),
            _ => "-".into(),
        };
        let when = match (
            f.verdict,
            f.time_to_exhaustion_seconds,
            f.time_to_exhaustion_bounds_seconds,
        ) {
            (Verdict::Leak, Some(t), Some([lo, hi])) if t <= horizon_secs => {
                // Compact, so a line fits 80 columns: `3h20m (2h58m-3h45m)`.
                let d = |s: f64| duration(s).replace(' ', "");
                format!("{} ({}-{})", d(t), d(lo), d(hi))
            }
            (Verdict::Leak, Some(_), _) => "beyond horizon".into(),
            (Verdict::Leak, None, _) => "no known limit".into(),
            (Verdict::Bounded, ..) => "no: levels off".into(),
            (Verdict::Flat, ..) => "no growth".into(),
            (Verdict::InsufficientData, ..) => "too little data".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:>9} {:>9} {:>11}  {}",
            truncate(&format!("{}/{}", f.service, f.instance), 16),
            f.resource_name(),
            now,
            limit,
            growth,
            when
        );
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

impl Finding {
    pub fn resource_name(&self) -> &'static str {
        self.resource.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_80_columns() {
        use crate::detect::{Finding, Resource};
        let f = Finding {
            service: "checkout-service".into(),
            instance: "checkout-7f9c4d".into(),
            resource: Resource::Heap,
            metric: "heap.allocated".into(),
            unit: "bytes",
            verdict: Verdict::Leak,
            reason: "grows steadily".into(),
            slope_per_hour: Some(123.4 * 1048576.0),
            slope_ci: Some([120.0 * 1048576.0, 126.0 * 1048576.0]),
            confidence: Some(0.9999),
            started_ms: Some(1_800_000_000_000),
            current: Some(912.3 * 1048576.0),
            limit: Some(15.5 * 1073741824.0),
            limit_source: Some("cgroup memory.max"),
            time_to_exhaustion_seconds: Some(3.0 * 86400.0 + 5.0 * 3600.0),
            time_to_exhaustion_bounds_seconds: Some([2.9 * 86400.0, 3.3 * 86400.0]),
            detail: None,
            instances_growing: 1,
            instances: 1,
            sites: vec![],
        };
        let a = Analysis {
            from_ms: 0,
            to_ms: 86_400_000,
            findings: vec![f],
        };
        for table in [predict_table(&a, 7.0 * 86400.0), leaks_table(&a, &[])] {
            for line in table.lines() {
                assert!(
                    line.chars().count() <= 80,
                    "{} columns: {line}",
                    line.chars().count()
                );
            }
        }
    }

    #[test]
    fn units_read_well() {
        assert_eq!(bytes(12.3 * 1024.0 * 1024.0), "12.3 MiB");
        assert_eq!(bytes(100.0), "100 B");
        assert_eq!(duration(3.0 * 3600.0 + 20.0 * 60.0), "3h 20m");
        assert_eq!(duration(2.0 * 86400.0 + 5.0 * 3600.0), "2d 5h");
        assert_eq!(duration(42.0), "42s");
    }
}
