//! Human output of `leaks` and `predict`: fits an 80-column terminal and
//! speaks in human units (from [`heaptide_ui::format`], which the
//! dashboards share).

use std::fmt::Write;

use crate::detect::{Analysis, Finding, LeakVerdict, Severity};
use heaptide_ui::format;

/// A value in the finding's unit.
pub fn amount(f: &Finding, v: f64) -> String {
    format::amount(f.unit, v)
}

/// A rate per hour in the finding's unit: `+12.3 MiB/h`, `+40.0 fds/h`.
pub fn rate(f: &Finding, v: f64) -> String {
    format::rate_per_hour(f.unit, v)
}

fn window(a: &Analysis) -> String {
    format::duration((a.to_ms - a.from_ms) as f64 / 1000.0)
}

/// What grows inside a resource, as ` (fd kind file)`, or nothing.
pub fn detail(f: &Finding) -> String {
    // A pool's or queue's name is in its label already.
    let Some(d) = f.detail.as_ref().filter(|_| !f.resource.is_gauge()) else {
        return String::new();
    };
    let mut parts: Vec<String> = ["fd_kind", "tcp_state", "rss_part"]
        .iter()
        .filter_map(|k| Some(format!("{} {}", k.replace('_', " "), d.get(*k)?)))
        .collect();
    if let Some(to) = d.get("peer").or(d.get("fd_target")) {
        parts.push(format!("to {}", to.trim_start_matches("tcp:")));
    }
    let mut out = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    if let Some(also) = &f.also_seen_as {
        out.push_str(&format!("; also seen as {also}"));
    }
    out
}

/// The `leaks` table.
pub fn leaks_table(a: &Analysis, insufficient: &[Finding]) -> String {
    let mut out = String::new();
    let leaks: Vec<&Finding> = a.findings.iter().filter(|f| f.verdict.alarms()).collect();
    let _ = writeln!(
        out,
        "{} suspected leak{} in the last {}",
        leaks.len(),
        if leaks.len() == 1 { "" } else { "s" },
        window(a)
    );
    // Grouped by severity, each group worst first (the engine's order).
    let mut rank = 0;
    for sev in [Severity::Critical, Severity::Warning, Severity::Info] {
        let group: Vec<&&Finding> = leaks.iter().filter(|f| f.severity == Some(sev)).collect();
        if group.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n{}: {}\n",
            sev.name().to_uppercase(),
            severity_meaning(sev)
        );
        for f in group {
            rank += 1;
            leak_lines(&mut out, rank, f);
        }
    }
    for d in &a.deaths {
        let _ = writeln!(out, "\n{}/{}, pid {}", d.service, d.instance, d.pid);
        let _ = writeln!(out, "   {}", d.summary);
        if let Some(t) = d.pressure_profile_ms {
            let _ = writeln!(
                out,
                "   last heap profile under pressure: {}",
                format::clock(t)
            );
        }
    }
    for f in insufficient {
        let _ = writeln!(
            out,
            "\n{}/{} {}: not enough data ({})",
            f.service,
            f.instance,
            f.label(),
            f.reason
        );
    }
    out
}

fn severity_meaning(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "exhausted within a day",
        Severity::Warning => "exhausted within a week",
        Severity::Info => "growing, not exhausted within a week",
    }
}

/// One leak of the `leaks` table: what grows, how fast, until when, and
/// where.
fn leak_lines(out: &mut String, rank: usize, f: &Finding) {
    let _ = writeln!(out);
    let detail = detail(f);
    let _ = writeln!(
        out,
        "{}. {}/{}  {}{detail}",
        rank,
        f.service,
        f.instance,
        f.label()
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
    let limit = match (f.limit, f.limit_source.as_deref()) {
        (Some(l), Some(src)) => format!(" of {} ({src})", amount(f, l)),
        _ => String::new(),
    };
    let since = f
        .started_ms
        .map(|s| format!("since {}, ", format::clock(s)))
        .unwrap_or_default();
    let _ = writeln!(out, "   {since}now {now}{limit}");
    match (
        f.time_to_exhaustion_seconds,
        f.time_to_exhaustion_bounds_seconds,
    ) {
        _ if f.verdict == LeakVerdict::Exhausted => {
            let _ = writeln!(out, "   exhausted now: at its limit");
        }
        (Some(t), Some([lo, hi])) => {
            let _ = writeln!(
                out,
                "   exhausted in {} ({} to {})",
                format::duration(t),
                format::duration(lo),
                format::duration(hi)
            );
        }
        _ => {
            let _ = writeln!(out, "   no known limit: time to exhaustion unknown");
        }
    }
    for s in &f.sites {
        let name = s.name();
        let _ = writeln!(
            out,
            "   {:>3.0}%  {}  {}",
            s.share * 100.0,
            rate(f, s.slope_per_hour),
            format::truncate(name, 56)
        );
        if let Some(loc) = &s.app_location {
            let _ = writeln!(out, "         at {}", format::truncate(loc, 68));
        }
    }
}

/// The `predict` table.
pub fn predict_table(a: &Analysis, horizon_secs: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "exhaustion within {} (from the last {})\n",
        format::duration(horizon_secs),
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
            LeakVerdict::Leak => f
                .slope_per_hour
                .map(|s| rate(f, s).replace(&format!(" {}", f.unit.as_str()), ""))
                .unwrap_or_default(),
            _ => "-".into(),
        };
        let when = match (
            f.verdict,
            f.time_to_exhaustion_seconds,
            f.time_to_exhaustion_bounds_seconds,
        ) {
            (LeakVerdict::Leak, Some(t), Some([lo, hi])) if t <= horizon_secs => {
                // Compact, so a line fits 80 columns: `3h20m (2h58m-3h45m)`.
                let d = |s: f64| format::duration(s).replace(' ', "");
                format!("{} ({}-{})", d(t), d(lo), d(hi))
            }
            (LeakVerdict::Leak, Some(_), _) => "beyond horizon".into(),
            (LeakVerdict::Leak, None, _) => "no known limit".into(),
            (LeakVerdict::Exhausted, ..) => "now: at its limit".into(),
            (LeakVerdict::Bounded, ..) => "no: levels off".into(),
            (LeakVerdict::Flat, ..) => "no growth".into(),
            (LeakVerdict::InsufficientData, ..) => "too little data".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:>9} {:>9} {:>11}  {}",
            format::truncate(&format!("{}/{}", f.service, f.instance), 16),
            f.label(),
            now,
            limit,
            growth,
            when
        );
    }
    out
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
            unit: heaptide_wire::Unit::Bytes,
            verdict: LeakVerdict::Leak,
            severity: Some(crate::detect::Severity::Warning),
            reason: "grows steadily".into(),
            slope_per_hour: Some(123.4 * 1048576.0),
            slope_ci: Some([120.0 * 1048576.0, 126.0 * 1048576.0]),
            confidence: Some(0.9999),
            started_ms: Some(1_800_000_000_000),
            current: Some(912.3 * 1048576.0),
            limit: Some(15.5 * 1073741824.0),
            limit_source: Some("cgroup memory.max".into()),
            time_to_exhaustion_seconds: Some(3.0 * 86400.0 + 5.0 * 3600.0),
            time_to_exhaustion_bounds_seconds: Some([2.9 * 86400.0, 3.3 * 86400.0]),
            detail: None,
            instances_growing: 1,
            instances: 1,
            sites: vec![],
            also_seen_as: None,
        };
        let a = Analysis {
            from_ms: 0,
            to_ms: 86_400_000,
            findings: vec![f],
            deaths: vec![crate::detect::Death {
                service: "checkout-service".into(),
                instance: "checkout-7f9c4d".into(),
                pid: 4_194_304,
                last_seen_ms: 1_800_000_000_000,
                cause: "oom_killed".into(),
                memory: Some(1.9 * 1073741824.0),
                limit: Some(2.0 * 1073741824.0),
                limit_source: Some("cgroup memory.max".into()),
                pressure_profile_ms: Some(1_799_999_990_000),
                summary: "died: OOM-killed at 1.9 GiB of 2.0 GiB (cgroup memory.max)".into(),
            }],
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
}
