//! The HTML pages. Styles are inline and there is no script but inferno's
//! own inside the flamegraph SVGs: the UI works with no network at all.

use std::fmt::Write;

use crate::format::{axis, clock, duration};
use crate::svg::{chart, esc, sparkline};
use crate::{AlertView, InstanceSummary, InstanceView, Status, Unit};

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#111827;background:#f9fafb}
header{background:#0f172a;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 24px;max-width:1100px}table{border-collapse:collapse;background:#fff}
td,th{padding:6px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:middle}
.status{font-weight:600;border-radius:4px;padding:2px 6px;font-size:12px}
.healthy{background:#dcfce7;color:#166534}.leaking{background:#fef3c7;color:#92400e}
.exhausting{background:#fee2e2;color:#991b1b}.stale{background:#e5e7eb;color:#374151}
.chart{background:#fff;border:1px solid #e5e7eb;margin:6px 0;display:block}
.chart text{font-size:11px;fill:#374151}.chart .title{font-size:13px;font-weight:600}
nav a{margin-right:10px}.finding{background:#fff;border:1px solid #fde68a;padding:8px 12px;margin:8px 0}
.finding pre{margin:4px 0 4px 12px;font-size:12px;white-space:pre-wrap}code{font-size:12px}
.empty{color:#6b7280}.alert{font-size:12px;border-radius:4px;padding:2px 6px;margin-right:4px;white-space:nowrap}
.alert.pending{background:#e0e7ff;color:#3730a3}.alert.firing.warning{background:#fef3c7;color:#92400e}
.alert.firing.critical{background:#fee2e2;color:#991b1b;font-weight:600}
.warn{background:#fee2e2;color:#991b1b;padding:6px 10px;border-radius:4px}
#tooltip{position:absolute;background:#111827;color:#fff;padding:4px 8px;border-radius:4px;font-size:12px;pointer-events:none;z-index:10;white-space:nowrap}
#tooltip .tip-time{color:#cbd5e1}svg.chart{cursor:crosshair}#range input{font:inherit}
#range label{margin-left:10px}";

pub(crate) fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The path of an instance's page, as links and alerts' `generatorURL`
/// give it.
pub fn instance_path(service: &str, instance: &str) -> String {
    format!(
        "/ui/instance?service={}&instance={}",
        url(service),
        url(instance)
    )
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · heaptide</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"/favicon.ico\"><style>{STYLE}</style></head>\
         <body><header><a href=\"/\">heaptide</a></header><main>{body}</main><script>{SCRIPT}</script></body></html>",
        esc(title)
    )
}

/// The page script: local time, the range picker, auto-refresh, and hover,
/// a shared cursor and drag to zoom on charts. Pages read without it.
pub const SCRIPT: &str = include_str!("page.js");

/// A time as pages show it: UTC in the markup, local time once the script
/// runs, UTC on hover.
pub(crate) fn time(ms: i64) -> String {
    let utc = clock(ms);
    format!(
        "<time datetime=\"{utc}\">{} UTC</time>",
        utc.trim_end_matches('Z').replace('T', " ")
    )
}

pub fn message(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p class=\"empty\">{}</p>",
            esc(title),
            esc(message)
        ),
    )
}

/// The sign-in form: one token field, then back to `next`.
pub fn login(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"bad\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "sign in",
        &format!(
            "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus required></label> \
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"empty\">The analyzer's token or its read token.</p>",
            esc(next)
        ),
    )
}

/// The overview: every instance with its status, alerts and sparklines;
/// `webhook_failures` notifications that no webhook took are called out.
pub fn overview(rows: &[InstanceSummary], now: i64, webhook_failures: u64) -> String {
    if rows.is_empty() {
        return page(
            "services",
            "<h1>Services</h1><p class=\"empty\">No agent has reported yet. Link heaptide-agent into a service and point HEAPTIDE_ENDPOINT here.</p>",
        );
    }
    let mut b = String::from("<h1>Services</h1>");
    if webhook_failures > 0 {
        let _ = write!(
            b,
            "<p class=\"warn\" id=\"webhook-failures\">{webhook_failures} alert notification(s) could not be delivered; see heaptide_webhook_notifications_total on /metrics.</p>"
        );
    }
    b.push_str(&instance_rows(rows, now));
    page("services", &b)
}

/// The table of instances under their services' names (each linking to
/// its service page): status, alerts, last report and sparklines.
pub fn instance_rows(rows: &[InstanceSummary], now: i64) -> String {
    let mut b = String::from("<table id=\"services\"><tr><th>service / instance</th><th>status</th><th>alerts</th><th>last seen</th><th>heap</th><th>fds</th></tr>");
    let mut last_service = "";
    for r in rows {
        if r.service != last_service {
            let _ = write!(
                b,
                "<tr class=\"service\"><th colspan=\"6\"><a href=\"/ui/service?service={}\">{}</a></th></tr>",
                url(&r.service),
                esc(&r.service)
            );
            last_service = &r.service;
        }
        instance_row(&mut b, r, now);
    }
    b.push_str("</table>");
    b
}

fn instance_row(b: &mut String, r: &InstanceSummary, now: i64) {
    let (class, label) = match r.status {
        Status::Healthy => ("healthy", "healthy"),
        Status::Leaking => ("leaking", "leaking"),
        Status::ExhaustingSoon => ("exhausting", "exhausting soon"),
        Status::Stale => ("stale", "not reporting"),
    };
    let tte = r
        .exhaustion
        .as_ref()
        .map(|(what, s)| {
            format!(
                " <span class=\"tte\">{} exhausted in {}</span>",
                esc(what),
                duration(*s)
            )
        })
        .unwrap_or_default();
    let _ = write!(
        b,
        "<tr class=\"instance\" data-status=\"{class}\"><td><a href=\"{}\">{}</a></td>\
         <td><span class=\"status {class}\">{label}</span>{tte}</td><td>{}</td><td>{} ago</td><td>{}</td><td>{}</td></tr>",
        esc(&instance_path(&r.service, &r.instance)),
        esc(&r.instance),
        alert_badges(&r.alerts, Some(now)),
        duration(((now - r.last_seen_ms) / 1000) as f64),
        sparkline(&r.heap),
        sparkline(&r.fds)
    );
}

pub fn instance(v: &InstanceView, window: &str) -> String {
    let q = format!(
        "service={}&amp;instance={}",
        url(&v.service),
        url(&v.instance)
    );
    // The service's name links to its page: its other instances and its
    // merged flamegraph are one click away.
    let mut b = format!(
        "<h1><a href=\"/ui/service?service={}\">{}</a> / {}</h1><nav id=\"windows\">",
        url(&v.service),
        esc(&v.service),
        esc(&v.instance)
    );
    for w in ["1h", "6h", "24h", "7d"] {
        let cur = if w == window {
            " style=\"font-weight:700\""
        } else {
            ""
        };
        let _ = write!(b, "<a href=\"/ui/instance?{q}&amp;since={w}\"{cur}>{w}</a>");
    }
    range_form(
        &mut b,
        "/ui/instance",
        &[("service", &v.service), ("instance", &v.instance)],
        v.from_ms,
        v.to_ms,
    );
    current_alerts(&mut b, v);
    deaths(&mut b, v);
    findings(&mut b, v);
    let has_data = v
        .charts
        .iter()
        .any(|c| c.series.iter().any(|s| !s.points.is_empty()));
    if !has_data {
        b.push_str("<p class=\"empty\">No data in this window. Try a longer one.</p>");
        return page(&format!("{}/{}", v.service, v.instance), &b);
    }
    // Leave a quarter of the width for the projected path.
    let ahead = if v.charts.iter().any(|c| c.projection.is_some()) {
        (v.to_ms - v.from_ms) / 4
    } else {
        0
    };
    b.push_str("<h2>Resources</h2>");
    for c in &v.charts {
        b.push_str(&chart(c, v.from_ms, v.to_ms + ahead, &v.marks));
    }
    pauses(&mut b, v);
    history(&mut b, v);
    profiles(&mut b, v, &q);
    page(&format!("{}/{}", v.service, v.instance), &b)
}

/// Each alert as a badge: severity, resource and for how long (since when,
/// without `now`), with the rule, its start and its summary on hover.
fn alert_badges(alerts: &[AlertView], now: Option<i64>) -> String {
    let mut b = String::new();
    for a in alerts {
        let how_long = match now {
            Some(now) => duration(((now - a.since_ms).max(0) / 1000) as f64),
            None => format!("since {}", time(a.since_ms)),
        };
        let _ = write!(
            b,
            "<span class=\"alert {} {}\" data-alert=\"{}\" title=\"{} {} since {}: {}\">{} {} · {} {how_long}</span> ",
            esc(&a.state),
            esc(&a.severity),
            esc(&a.name),
            esc(&a.name),
            esc(&a.state),
            clock(a.since_ms),
            esc(&a.summary),
            esc(&a.severity),
            esc(&a.resource),
            esc(&a.state),
        );
    }
    b
}

/// Absolute start and end (UTC without the script, local time with it)
/// for the page at `action`, keeping its `hidden` parameters, and the
/// auto-refresh toggle; it closes the page's `<nav>`.
pub(crate) fn range_form(
    b: &mut String,
    action: &str,
    hidden: &[(&str, &str)],
    from_ms: i64,
    to_ms: i64,
) {
    let minute = |ms: i64| clock(ms)[..16].to_owned();
    let _ = write!(
        b,
        "<form id=\"range\" style=\"display:inline\" action=\"{action}\">"
    );
    for (k, v) in hidden {
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            esc(v)
        );
    }
    let _ = write!(
        b,
        " from <input type=\"datetime-local\" name=\"from\" value=\"{}\" data-ms=\"{from_ms}\"> to <input type=\"datetime-local\" name=\"to\" value=\"{}\" data-ms=\"{to_ms}\"> <button>show</button>\
         <label><input type=\"checkbox\" id=\"autorefresh\"> auto-refresh</label></form></nav>",
        minute(from_ms),
        minute(to_ms),
    );
}

/// The instance's pending and firing alerts, first on its page.
fn current_alerts(b: &mut String, v: &InstanceView) {
    if !v.alerts.is_empty() {
        let _ = write!(b, "<p id=\"alerts\">{}</p>", alert_badges(&v.alerts, None));
    }
}

/// When its leaks began, changed and ended, and its alerts fired and
/// resolved, newest first.
fn history(b: &mut String, v: &InstanceView) {
    b.push_str("<h2>History</h2>");
    if v.history.is_empty() {
        b.push_str("<p class=\"empty\">No leak or alert yet.</p>");
        return;
    }
    b.push_str("<table id=\"history\"><tr><th>when</th><th>what</th><th>resource</th><th>state</th><th>severity</th><th>summary</th></tr>");
    for h in &v.history {
        let _ = write!(
            b,
            "<tr data-state=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.state),
            time(h.at_ms),
            esc(&h.subject),
            esc(&h.resource),
            esc(&h.state),
            esc(h.severity.as_deref().unwrap_or("")),
            esc(&h.summary)
        );
    }
    b.push_str("</table>");
}

/// Processes that memory ended, with the last profile taken under
/// pressure before each.
fn deaths(b: &mut String, v: &InstanceView) {
    for d in &v.deaths {
        let _ = write!(
            b,
            "<div class=\"death\"><span class=\"alert firing critical\">died</span> pid {} at {}: {}",
            d.pid,
            time(d.last_seen_ms),
            esc(&d.summary)
        );
        if let Some(at) = d.pressure_profile_ms {
            let _ = write!(
                b,
                " · <a class=\"pressure-profile\" href=\"/ui/flame?service={}&amp;instance={}&amp;at={at}\">the heap under pressure, {}</a>",
                url(&v.service),
                url(&v.instance),
                time(at)
            );
        }
        b.push_str("</div>");
    }
}

/// The instance's leaks, each with its growing sites.
fn findings(b: &mut String, v: &InstanceView) {
    if v.findings.is_empty() {
        return;
    }
    b.push_str("<h2>Leaks</h2>");
    for f in &v.findings {
        let severity = f.severity.as_deref().unwrap_or("info");
        let _ = write!(
            b,
            "<div class=\"finding\" data-resource=\"{}\"><span class=\"alert firing {severity}\">{severity}</span> <b>{}</b>: {}",
            esc(&f.resource),
            esc(&f.resource),
            esc(&f.summary)
        );
        if let Some(start) = f.started_ms {
            let _ = write!(b, "<br>growing since {}", time(start));
            if let Some(site) = &f.top_site {
                let _ = write!(b, ", most of it at <code>{}</code>", esc(site));
            }
            if f.resource == "heap" {
                let _ = write!(
                    b,
                    " · <a class=\"regime-flame\" href=\"/ui/flame?service={}&amp;instance={}&amp;kind=growth&amp;from={start}&amp;to={}\">growth flamegraph of this regime</a>",
                    url(&v.service),
                    url(&v.instance),
                    v.to_ms
                );
            }
        }
        for (head, frames) in &f.sites {
            let _ = write!(
                b,
                "<pre>{}\n{}</pre>",
                esc(head),
                esc(&frames.join("\n  <- "))
            );
        }
        b.push_str("</div>");
    }
}

/// The pause events, newest first.
fn pauses(b: &mut String, v: &InstanceView) {
    b.push_str("<h2>Pauses</h2>");
    if v.pauses.is_empty() {
        b.push_str("<p class=\"empty\">No pause over the threshold in this window.</p>");
    } else {
        b.push_str("<table id=\"pauses\"><tr><th>when</th><th>duration</th><th>source</th><th>name</th></tr>");
        for p in v.pauses.iter().rev().take(50) {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(p.start_ms),
                axis(Unit::Millis, p.duration_ms),
                p.source.as_str(),
                esc(&p.name)
            );
        }
        b.push_str("</table>");
    }
}

/// Links to the flamegraphs and downloads of the window's profiles.
fn profiles(b: &mut String, v: &InstanceView, q: &str) {
    b.push_str("<h2>Heap profiles</h2>");
    match (v.profiles.first(), v.profiles.last()) {
        (Some(first), Some(last)) => {
            let _ = write!(
                b,
                "<p>{} profiles. <a id=\"flame-live\" href=\"/ui/flame?{q}&amp;kind=live&amp;at={last}\">live heap flamegraph</a> · \
                 <a id=\"flame-growth\" href=\"/ui/flame?{q}&amp;kind=growth&amp;from={first}&amp;to={last}\">growth flamegraph</a> · \
                 <a href=\"/ui/flame?{q}&amp;kind=growth&amp;from={first}&amp;to={last}&amp;value=objects\">growth in objects</a> · \
                 <a id=\"flame-old\" href=\"/ui/flame?{q}&amp;kind=old&amp;at={last}\">old live memory</a> · \
                 <a id=\"flame-alloc\" href=\"/ui/flame?{q}&amp;kind=alloc&amp;from={first}&amp;to={last}\">allocations</a> · \
                 <a href=\"/v1/profile?{q}&amp;at={last}&amp;format=pprof\">pprof</a> · \
                 <a href=\"/v1/profile?{q}&amp;at={last}&amp;format=folded\">folded</a></p>",
                v.profiles.len()
            );
        }
        _ => b.push_str("<p class=\"empty\">No heap profiles in this window.</p>"),
    }
}
