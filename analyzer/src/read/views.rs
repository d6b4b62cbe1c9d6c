//! The dashboards' view models, built from the store and the same engine
//! the CLI and the API use. `heaptide-ui` draws them; nothing here draws.

use heaptide_ui::{
    format, AlertView, Chart, FindingView, HistoryEntry, InstanceSummary, InstanceView, Mark,
    MarkKind, PauseView, Series, Status, Unit,
};
use heaptide_wire::metric;

use crate::continuous::Kept;
use crate::detect::{self, Analysis, Finding, LeakVerdict, Resource, Severity, Subject};
use crate::error::Result;
use crate::read::query;
use crate::select::{now_ms, Selector};
use crate::store::{InstanceInfo, Store};

const HOUR_MS: i64 = 3_600_000;

fn points(store: &dyn Store, sel: &Selector, m: &str) -> Result<Vec<(i64, f64)>> {
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
                Kept {
                    evaluated_ms: now,
                    findings: analysis(store, &day)?.findings,
                    heap: spark(metric::HEAP_ALLOCATED)?,
                    fds: spark(metric::FDS)?,
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
    let charts = charts(store, sel, &analysis, &pause_events)?;
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

/// The series of `prefix.*` metrics with any value, largest last value
/// first, at most `keep`.
fn by_prefix(
    store: &dyn Store,
    sel: &Selector,
    names: &[String],
    prefix: &str,
    keep: usize,
) -> Result<Vec<Series>> {
    let mut out: Vec<Series> = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.starts_with(prefix) && n.len() > prefix.len())
        // Kinds and states, not the targets counted under the same root.
        .filter(|n| metric::is_target(prefix) || !metric::is_target(n))
    {
        let s = Series {
            name: n[prefix.len()..].to_owned(),
            points: points(store, sel, n)?,
        };
        if s.points.iter().any(|p| p.1 > 0.0) {
            out.push(s);
        }
    }
    let last = |s: &Series| s.points.last().map_or(0.0, |p| p.1);
    out.sort_by(|a, b| last(b).total_cmp(&last(a)));
    out.truncate(keep);
    Ok(out)
}

/// What the charts of one page share: the store, the window, the
/// instance's metric names and the engine's findings.
struct ChartSource<'a> {
    store: &'a dyn Store,
    sel: &'a Selector,
    names: Vec<String>,
    analysis: &'a Analysis,
}

impl ChartSource<'_> {
    fn series(&self, label: &str, m: &str) -> Result<Series> {
        Ok(Series {
            name: label.to_owned(),
            points: points(self.store, self.sel, m)?,
        })
    }

    /// `total` of `m`, then its `keep` largest `prefix.*` parts.
    fn with_parts(&self, m: &str, prefix: &str, keep: usize) -> Result<Vec<Series>> {
        let mut out = vec![self.series("total", m)?];
        out.extend(by_prefix(self.store, self.sel, &self.names, prefix, keep)?);
        Ok(out)
    }

    /// A chart of `r`, with its limit (heap has none of its own) and the
    /// projected path of its leak.
    fn chart(&self, id: &str, title: &str, series: Vec<Series>, r: Option<Resource>) -> Chart {
        let finding = r.and_then(|r| self.analysis.findings.iter().find(|f| f.resource == r));
        Chart {
            id: id.into(),
            title: title.into(),
            unit: r.map_or(Unit::Millis, Resource::unit),
            series,
            limit: finding
                .filter(|f| f.resource != Resource::Heap)
                .and_then(|f| Some((format!("limit ({})", f.limit_source.as_deref()?), f.limit?))),
            projection: finding.and_then(|f| f.projection(self.sel.to_ms, self.sel.span_ms() / 4)),
            events: Vec::new(),
        }
    }

    /// A pool, queue or runtime's tasks against its capacity (an
    /// unbounded queue and the tasks have none), with a pool's waiters.
    fn gauge_chart(&self, s: &Subject) -> Result<Chart> {
        let mut series = vec![self.series(s.resource.unit().as_str(), &s.metric)?];
        if s.resource == Resource::Pool {
            if let Some(w) = s.sibling(metric::POOL_WAITING) {
                series.push(self.series("waiting", &w)?);
            }
        }
        let capacity = match s.sibling(metric::CAPACITY) {
            Some(c) => points(self.store, self.sel, &c)?.last().map(|p| p.1),
            None => None,
        };
        let finding = self.analysis.findings.iter().find(|f| f.metric == s.metric);
        Ok(Chart {
            id: s.metric.replace('.', "-"),
            title: match (capacity, s.resource) {
                (Some(_), _) => format!("{}, against its capacity", s.label()),
                (None, Resource::Tasks) => "tokio tasks alive".to_owned(),
                (None, _) => format!("{}, unbounded", s.label()),
            },
            unit: s.resource.unit(),
            series,
            limit: capacity.map(|c| ("capacity".to_owned(), c)),
            projection: finding.and_then(|f| f.projection(self.sel.to_ms, self.sel.span_ms() / 4)),
            events: Vec::new(),
        })
    }
}

fn charts(
    store: &dyn Store,
    sel: &Selector,
    analysis: &Analysis,
    pauses: &[crate::store::StoredPause],
) -> Result<Vec<Chart>> {
    let service = sel.service.as_deref().unwrap_or_default();
    let names = store.metric_names(service, sel.instance.as_deref())?;
    let c = ChartSource {
        store,
        sel,
        names,
        analysis,
    };
    let heap = vec![
        c.series("allocated", metric::HEAP_ALLOCATED)?,
        c.series("active", metric::HEAP_ACTIVE)?,
        c.series("resident", metric::HEAP_RESIDENT)?,
    ];
    let sockets = by_prefix(store, sel, &c.names, metric::TCP_STATE_PREFIX, 6)?;
    let mut pause = c.chart(
        "pauses",
        "pauses: p99 and max per interval, events as dots",
        vec![
            c.series("p99", metric::PAUSE_P99_MS)?,
            c.series("max", metric::PAUSE_MAX_MS)?,
        ],
        None,
    );
    pause.events = pauses.iter().map(|p| (p.start_ms, p.duration_ms)).collect();
    let mut sockets = c.chart(
        "sockets",
        "TCP sockets by state",
        sockets,
        Some(Resource::Sockets),
    );
    // Sockets are judged, but their chart shows states, not a limit.
    (sockets.limit, sockets.projection) = (None, None);
    [
        c.chart("heap", "heap (jemalloc)", heap, Some(Resource::Heap)),
        c.chart(
            "rss",
            "resident set size, and its parts",
            c.with_parts(metric::RSS, metric::RSS_PART_PREFIX, 7)?,
            Some(Resource::Rss),
        ),
        c.chart(
            "fds",
            "file descriptors by kind",
            c.with_parts(metric::FDS, metric::FDS_KIND_PREFIX, 5)?,
            Some(Resource::Fds),
        ),
        c.chart(
            "threads",
            "threads by name",
            c.with_parts(metric::THREADS, metric::THREADS_NAME_PREFIX, 5)?,
            Some(Resource::Threads),
        ),
        sockets,
    ]
    .into_iter()
    .map(Ok)
    .chain(
        Subject::gauges_among(&c.names)
            .iter()
            .map(|s| c.gauge_chart(s)),
    )
    .chain([Ok(pause)])
    .collect()
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
