//! The dashboards' view models, built from the store and the same engine
//! the CLI and the API use. `heaptide-ui` draws them; nothing here draws.

use heaptide_ui::{
    format, AlertView, FindingView, HistoryEntry, InstanceSummary, InstanceView, Mark, MarkKind,
    PauseView, Status,
};
use heaptide_wire::metric;

use crate::continuous::Kept;
use crate::detect::{self, Analysis, Finding, LeakVerdict, Severity};
use crate::error::Result;
use crate::read::query;
use crate::select::{now_ms, Selector};
use crate::store::{InstanceInfo, Store};

const HOUR_MS: i64 = 3_600_000;

pub(super) fn points(store: &dyn Store, sel: &Selector, m: &str) -> Result<Vec<(i64, f64)>> {
    Ok(store
        .series(sel, m)?
        .into_iter()
        .map(|p| (p.ts_ms, p.value))
        .collect())
}

fn analysis(store: &dyn Store, sel: &Selector) -> Result<Analysis> {
    detect::analyze(store, sel, &detect::Options::default())
}

/// Every instance with its status over the last day and sparklines of its
/// last hour, from what continuous evaluation keeps.
pub fn overview(store: &dyn Store) -> Result<Vec<InstanceSummary>> {
    summaries(store, current(store, None)?)
}

/// Each instance of `service` (or of all) with what continuous evaluation
/// kept of it, judged here only for an instance it has not reached yet.
pub fn current(store: &dyn Store, service: Option<&str>) -> Result<Vec<(InstanceInfo, Kept)>> {
    let now = now_ms();
    let mut kept = crate::continuous::kept_by_instance(store, service)?;
    let mut out = Vec::new();
    for i in store.instances(service)? {
        let key = (i.service.clone(), i.instance.clone());
        // Kept findings serve until the next pass, except a verdict of too
        // little data on an instance that has sent more since (one that
        // started just before a pass): judging it now costs little.
        let kept = kept.remove(&key).filter(|k| {
            k.evaluated_ms >= i.last_seen_ms
                || k.findings
                    .iter()
                    .any(|f| f.verdict != LeakVerdict::InsufficientData)
        });
        let k = match kept {
            Some(k) => k,
            None => {
                let day =
                    Selector::all(now - 24 * HOUR_MS, now).for_instance(&i.service, &i.instance);
                let spark =
                    |m| crate::continuous::sparkline(store, &i.service, &i.instance, m, now);
                let a = analysis(store, &day)?;
                Kept {
                    evaluated_ms: now,
                    findings: a.findings,
                    heap: spark(metric::HEAP_ALLOCATED)?,
                    fds: spark(metric::FDS)?,
                    deaths: a.deaths,
                }
            }
        };
        out.push((i, k));
    }
    Ok(out)
}

/// The overview's rows of `instances`, with their alerts.
pub(crate) fn summaries(
    store: &dyn Store,
    instances: Vec<(InstanceInfo, Kept)>,
) -> Result<Vec<InstanceSummary>> {
    let now = now_ms();
    let mut alerts = alerts_by_instance(store)?;
    Ok(instances
        .into_iter()
        .map(|(i, k)| InstanceSummary {
            status: status(&k.findings, now - i.last_seen_ms),
            exhaustion: soonest(&k.findings),
            alerts: alerts
                .remove(&(i.service.clone(), i.instance.clone()))
                .unwrap_or_default(),
            heap: k.heap,
            fds: k.fds,
            service: i.service,
            instance: i.instance,
            last_seen_ms: i.last_seen_ms,
        })
        .collect())
}

/// The pending and firing alerts, by (service, instance), firing first.
fn alerts_by_instance(
    store: &dyn Store,
) -> Result<std::collections::HashMap<(String, String), Vec<AlertView>>> {
    let mut out: std::collections::HashMap<_, Vec<AlertView>> = Default::default();
    let mut active = crate::continuous::alerts::active(store)?;
    // Firing first, the most severe first; a warning is left out where a
    // critical alert of the same resource says more.
    active.sort_by(|a, b| {
        let rank = |a: &crate::continuous::alerts::Alert| {
            (
                a.state != crate::continuous::alerts::State::Firing,
                a.severity != "critical",
            )
        };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.key.resource.cmp(&b.key.resource))
    });
    let critical: std::collections::HashSet<_> = active
        .iter()
        .filter(|a| a.key.alertname == crate::continuous::alerts::rules::name::LEAK_CRITICAL)
        .map(|a| {
            (
                a.key.service.clone(),
                a.key.instance.clone(),
                a.key.resource.clone(),
            )
        })
        .collect();
    active.retain(|a| {
        a.key.alertname != crate::continuous::alerts::rules::name::LEAK_WARNING
            || !critical.contains(&(
                a.key.service.clone(),
                a.key.instance.clone(),
                a.key.resource.clone(),
            ))
    });
    for a in active {
        out.entry((a.key.service.clone(), a.key.instance.clone()))
            .or_default()
            .push(AlertView {
                name: a.key.alertname,
                severity: a.severity,
                state: a.state.name().to_owned(),
                resource: a.key.resource,
                summary: a.summary,
                since_ms: a.starts_at_ms.unwrap_or(a.active_since_ms),
            });
    }
    Ok(out)
}

/// The soonest time to exhaustion among an instance's leaks, and of what.
fn soonest(findings: &[Finding]) -> Option<(String, f64)> {
    findings
        .iter()
        .filter(|f| f.verdict.alarms())
        .filter_map(|f| Some((f.label(), f.time_to_exhaustion_seconds?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn status(findings: &[Finding], silent_ms: i64) -> Status {
    let leaking = findings.iter().any(|f| f.verdict.alarms());
    if silent_ms > query::STALE_AFTER_MS {
        Status::Stale
    } else if findings
        .iter()
        .any(|f| f.severity == Some(Severity::Critical))
    {
        // Exhausting soon: a critical leak, gone within a day.
        Status::ExhaustingSoon
    } else if leaking {
        Status::Leaking
    } else {
        Status::Healthy
    }
}

/// The instance page of one instance over `sel`'s window; `None` when the
/// store has never heard of it.
pub fn instance(store: &dyn Store, sel: &Selector) -> Result<Option<InstanceView>> {
    let (service, inst) = (
        sel.service.clone().unwrap_or_default(),
        sel.instance.clone().unwrap_or_default(),
    );
    let segments = store.segments(&service, &inst)?;
    if segments.is_empty() {
        return Ok(None);
    }
    let analysis = analysis(store, sel)?;
    let pause_events = store.pauses(sel)?;
    let alerts = alerts_by_instance(store)?
        .remove(&(service.clone(), inst.clone()))
        .unwrap_or_default();
    let history: Vec<HistoryEntry> = store
        .transitions(&service, &inst, 50)?
        .into_iter()
        .map(|t| HistoryEntry {
            at_ms: t.at_ms,
            subject: t.subject,
            resource: t.resource.name().to_owned(),
            state: t.state.name().to_owned(),
            severity: t.severity.map(|s| s.name().to_owned()),
            summary: t.summary,
        })
        .collect();
    let charts = super::charts::charts(store, sel, &analysis, &pause_events)?;
    Ok(Some(InstanceView {
        service,
        instance: inst,
        from_ms: sel.from_ms,
        to_ms: sel.to_ms,
        marks: marks(&segments, &history),
        charts,
        pauses: pause_events
            .into_iter()
            .map(|p| PauseView {
                start_ms: p.start_ms,
                duration_ms: p.duration_ms,
                source: p.source,
                name: p.name,
            })
            .collect(),
        findings: finding_views(&analysis),
        profiles: store.profiles(sel)?.into_iter().map(|p| p.ts_ms).collect(),
        alerts,
        history,
        deaths: analysis
            .deaths
            .iter()
            .map(|d| heaptide_ui::DeathView {
                last_seen_ms: d.last_seen_ms,
                pid: d.pid,
                summary: d.summary.clone(),
                pressure_profile_ms: d.pressure_profile_ms,
            })
            .collect(),
    }))
}

/// Restarts (a deploy when the `version` label changed) and alerts that
/// fired, to mark on the charts.
fn marks(segments: &[crate::store::Segment], history: &[HistoryEntry]) -> Vec<Mark> {
    let mut out: Vec<Mark> = segments
        .windows(2)
        .map(|w| {
            let (before, after) = (w[0].labels.get("version"), w[1].labels.get("version"));
            match after.filter(|v| before != Some(*v)) {
                Some(v) => Mark {
                    at_ms: w[1].start_time_ms,
                    kind: MarkKind::Deploy,
                    label: format!("deploy {v}"),
                },
                None => Mark {
                    at_ms: w[1].start_time_ms,
                    kind: MarkKind::Restart,
                    label: format!("restart (pid {} -> {})", w[0].pid, w[1].pid),
                },
            }
        })
        .collect();
    out.extend(
        history
            .iter()
            .filter(|h| h.subject != "finding" && h.state == "firing")
            .map(|h| Mark {
                at_ms: h.at_ms,
                kind: MarkKind::Alert,
                label: format!("{} fired: {}", h.subject, h.summary),
            }),
    );
    out
}

fn finding_views(analysis: &Analysis) -> Vec<FindingView> {
    analysis
        .findings
        .iter()
        .filter(|f| f.verdict.alarms())
        .map(|f| {
            let rate = f
                .slope_per_hour
                .map(|s| format::rate_per_hour(f.unit, s))
                .unwrap_or_default();
            let tte = f
                .time_to_exhaustion_seconds
                .map(|t| format!(", exhausted in {}", format::duration(t)))
                .unwrap_or_default();
            FindingView {
                severity: f.severity.map(|s| s.name().to_owned()),
                started_ms: f.started_ms,
                top_site: f.sites.first().map(|s| s.name().to_owned()),
                resource: f.label(),
                summary: format!(
                    "{rate}{}, confidence {:.1}%{tte}",
                    crate::read::report::detail(f),
                    f.confidence.unwrap_or(0.0) * 100.0
                ),
                sites: f.sites.iter().map(|s| site_view(f, s)).collect(),
            }
        })
        .collect()
}

/// A site's share and rate, then its frames from the code to look at.
fn site_view(f: &Finding, s: &detect::Site) -> (String, Vec<String>) {
    let head = format!(
        "{:.0}% of the growth, {}",
        s.share * 100.0,
        format::rate_per_hour(f.unit, s.slope_per_hour)
    );
    let frames = s
        .frames
        .iter()
        .enumerate()
        .skip(s.app_frame.unwrap_or(0))
        .take(6)
        .map(|(k, name)| {
            if Some(k) == s.app_frame {
                format!(
                    "{name}   <== {}",
                    s.app_location.clone().unwrap_or_default()
                )
            } else {
                name.clone()
            }
        })
        .collect();
    (head, frames)
}
