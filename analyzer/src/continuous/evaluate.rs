//! Continuous evaluation: the engine judges every instance that sent data
//! since it was last judged, and the store keeps the latest findings, so
//! the overview, `/v1/leaks` and `analyzer leaks` read them instead of
//! judging a whole fleet per request. An instance that stopped reporting
//! is judged once more and then left alone.

use std::collections::HashMap;

use crate::detect::{self, Analysis, Finding};
use crate::error::{Error, Result};
use crate::select::Selector;
use crate::store::{KeptFindings, Shard, Store, Transition, TransitionState, Watched};
use heaptide_wire::metric;

/// How far back each evaluation looks: what the overview shows.
pub(crate) const WINDOW_MS: i64 = 24 * 3_600_000;

/// What is kept of one instance: its findings, and the last hour of heap
/// and fds for the overview's sparklines.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    /// When the engine judged it (the store's column, not in the JSON).
    #[serde(skip)]
    pub evaluated_ms: i64,
    pub findings: Vec<Finding>,
    pub heap: Vec<(i64, f64)>,
    pub fds: Vec<(i64, f64)>,
    /// How its processes of the window ended, when memory ended them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deaths: Vec<detect::Death>,
}

/// A sparkline's points: time and peak.
type Sparkline = Vec<(i64, f64)>;

/// What is kept of each instance, by (service, instance).
pub(crate) type KeptByInstance = HashMap<(String, String), Kept>;

/// The last hour of `metric` of one instance's newest segment, in 30
/// buckets (over the data, when the instance is younger than an hour),
/// each at its peak.
pub fn sparkline(
    store: &dyn Store,
    service: &str,
    instance: &str,
    metric: &str,
    now_ms: i64,
) -> Result<Vec<(i64, f64)>> {
    let hour = last_hour(now_ms).for_instance(service, instance);
    let buckets = store.envelope(&hour, metric, HOUR / 30)?;
    sparkline_from(store, &hour, metric, buckets, now_ms)
}

const HOUR: i64 = 3_600_000;

/// A sparkline's hour, from the minute it began in: a start on the minute
/// tier's bucket reads no raw rows there, as the engine's day and RSS's
/// peak do not (docs/benchmarks.md).
fn last_hour(now_ms: i64) -> Selector {
    use crate::store::rollup::{bucket_start, MINUTE_MS};
    Selector::all(bucket_start(now_ms - HOUR, MINUTE_MS), now_ms)
}

/// A sparkline from the hour's buckets of one instance (`hour` names it):
/// read again over its data when that spans less than half the hour.
fn sparkline_from(
    store: &dyn Store,
    hour: &Selector,
    metric: &str,
    mut buckets: Vec<crate::store::EnvelopeBucket>,
    now_ms: i64,
) -> Result<Vec<(i64, f64)>> {
    let first = buckets.iter().map(|b| b.first_ms).min();
    if let Some(first) = first.filter(|f| now_ms - f < HOUR / 2) {
        buckets = store.envelope(
            &hour.starting(first),
            metric,
            ((now_ms - first) / 30).max(1000),
        )?;
    }
    let newest = buckets.iter().map(|b| b.segment).max();
    Ok(buckets
        .into_iter()
        .filter(|b| Some(b.segment) == newest)
        .map(|b| (b.ts_ms, b.max))
        .collect())
}

/// The heap and fds sparklines of each of `instances` of `service`, read
/// a cohort at a time, as the engine reads.
fn sparklines(
    store: &dyn Store,
    service: &str,
    instances: &[&str],
    now_ms: i64,
) -> Result<HashMap<String, [Sparkline; 2]>> {
    const METRICS: [&str; 2] = [metric::HEAP_ALLOCATED, metric::FDS];
    let hour = last_hour(now_ms).for_service(service);
    let mut out = HashMap::new();
    for cohort in instances.chunks(detect::COHORT) {
        let mut read = store.envelopes_of(&hour, cohort, &METRICS, HOUR / 30)?;
        for instance in cohort {
            let mine = hour.for_instance(service, instance);
            let mut by_metric = read.remove(*instance).unwrap_or_default();
            let mut lines: [Sparkline; 2] = Default::default();
            for (line, m) in lines.iter_mut().zip(METRICS) {
                let buckets = by_metric.remove(m).unwrap_or_default();
                *line = sparkline_from(store, &mine, m, buckets, now_ms)?;
            }
            out.insert((*instance).to_owned(), lines);
        }
    }
    Ok(out)
}

/// What `leaks` and `predict` report, from the CLI and the API alike:
/// the kept findings when the question is the one continuous evaluation
/// answers (the last day of a service or of all, `kept_window`) and they
/// are current; else the engine, run now.
pub fn analysis(
    store: &dyn Store,
    sel: &Selector,
    kept_window: bool,
    now_ms: i64,
) -> Result<Analysis> {
    if kept_window && sel.instance.is_none() {
        if let Some(a) = kept(store, sel.service.as_deref(), now_ms)? {
            return Ok(a);
        }
    }
    detect::analyze(store, sel, &detect::Options::default())
}

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pass {
    pub judged: usize,
    pub skipped: usize,
}

/// Judges every service with an instance whose data is newer than its
/// kept findings, and records which leaks began, changed severity or
/// ended. A service is judged whole, so that findings keep their
/// corroboration across instances.
pub fn evaluate(store: &dyn Store, now_ms: i64) -> Result<Pass> {
    evaluate_shard(store, Shard::default(), now_ms)
}

/// [`evaluate`] for the services of one shard, when several analyzers
/// share a store.
pub(crate) fn evaluate_shard(store: &dyn Store, shard: Shard, now_ms: i64) -> Result<Pass> {
    // One analyzer of a fleet settles. Only what reads cost depends on it,
    // so a failure is not the pass's.
    if shard.index == 0 {
        if let Err(e) = store.settle(now_ms) {
            tracing::warn!("settling the quarter hours that are over failed: {e}");
        }
    }
    let kept = store.kept_times()?;
    let mut stale: Vec<String> = Vec::new();
    let mut pass = Pass::default();
    for inst in store.instances(None)? {
        if !shard.owns(&inst.service) {
            continue;
        }
        let key = (inst.service.clone(), inst.instance.clone());
        if kept.get(&key).is_some_and(|t| *t >= inst.last_seen_ms) {
            pass.skipped += 1;
        } else if stale.last() != Some(&inst.service) {
            stale.push(inst.service);
        }
    }
    pass.judged = judge_services(store, &stale, now_ms)?;
    Ok(pass)
}

/// Judges `services` now, out of schedule: an early pass for services
/// whose agents said a resource is about to run out.
pub(crate) fn evaluate_services(
    store: &dyn Store,
    services: &[String],
    now_ms: i64,
) -> Result<Pass> {
    Ok(Pass {
        judged: judge_services(store, services, now_ms)?,
        skipped: 0,
    })
}

/// Judges each of `services` whole, keeps the findings and records their
/// transitions against what was kept before; returns the instances
/// judged. One service is in memory at a time, whatever the fleet's size.
fn judge_services(store: &dyn Store, services: &[String], now_ms: i64) -> Result<usize> {
    let mut history = Vec::new();
    let mut judged = 0;
    for service in services {
        judged += judge_service(store, service, now_ms, &mut history)?;
    }
    store.record_transitions(&history)?;
    Ok(judged)
}

/// Judges one service, keeps its findings in one write, and adds its
/// transitions to `history`; returns the instances judged.
fn judge_service(
    store: &dyn Store,
    service: &str,
    now_ms: i64,
    history: &mut Vec<Transition>,
) -> Result<usize> {
    let mut kept = kept_by_instance(store, Some(service))?;
    let sel = Selector::all(now_ms - WINDOW_MS, now_ms).for_service(service);
    let analysis = detect::analyze(store, &sel, &background_options())?;
    let mut by_instance: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for f in &analysis.findings {
        by_instance.entry(&f.instance).or_default().push(f);
    }
    // In the stores' row order, as the engine's cohorts are.
    let order: HashMap<String, i64> = store
        .instances(Some(service))?
        .into_iter()
        .map(|i| (i.instance, i.segment))
        .collect();
    let mut names: Vec<&str> = by_instance.keys().copied().collect();
    names.sort_by_key(|n| (order.get(*n).copied().unwrap_or_default(), *n));
    let mut lines = sparklines(store, service, &names, now_ms)?;
    let mut rows = Vec::with_capacity(by_instance.len());
    for (instance, findings) in by_instance {
        let [heap, fds] = lines.remove(instance).unwrap_or_default();
        let next = Kept {
            evaluated_ms: now_ms,
            findings: findings.into_iter().cloned().collect(),
            heap,
            fds,
            deaths: analysis
                .deaths
                .iter()
                .filter(|d| d.instance == instance)
                .cloned()
                .collect(),
        };
        let before = kept.remove(&(service.to_owned(), instance.to_owned()));
        let before = before.as_ref().map_or(&[][..], |k| &k.findings[..]);
        history.extend(transitions(before, &next.findings, now_ms));
        rows.push(KeptFindings {
            service: service.to_owned(),
            instance: instance.to_owned(),
            evaluated_ms: now_ms,
            findings: serde_json::to_string(&next)
                .map_err(|e| Error::invalid("findings", e.to_string()))?,
        });
    }
    store.keep_findings_each(&rows)?;
    Ok(rows.len())
}

/// The engine's options for a pass: one worker fewer than the machine
/// has cores, so that ingest, which must answer agents promptly, always
/// has a core while the pass runs.
fn background_options() -> detect::Options {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    detect::Options {
        workers: Some(cores.saturating_sub(1).max(1)),
        ..detect::Options::default()
    }
}

/// Leaks that began, changed severity or ended between two judgements of
/// one instance.
fn transitions(before: &[Finding], after: &[Finding], now_ms: i64) -> Vec<Transition> {
    let leak = |fs: &[Finding], f: &Finding| {
        fs.iter()
            .find(|g| g.metric == f.metric && g.verdict.alarms())
            .map(|g| g.severity)
    };
    let record = |f: &Finding, state: TransitionState| Transition {
        at_ms: now_ms,
        service: f.service.clone(),
        instance: f.instance.clone(),
        subject: "finding".into(),
        resource: Watched::Resource(f.resource),
        state,
        severity: f.severity,
        summary: f.reason.clone(),
    };
    let mut out = Vec::new();
    for f in after.iter().filter(|f| f.verdict.alarms()) {
        match leak(before, f) {
            None => out.push(record(f, TransitionState::Began)),
            Some(s) if s != f.severity => out.push(record(f, TransitionState::Changed)),
            Some(_) => {}
        }
    }
    for f in before.iter().filter(|f| f.verdict.alarms()) {
        if leak(after, f).is_none() {
            out.push(record(f, TransitionState::Ended));
        }
    }
    out
}

/// What is kept of each instance of `service` (or of all), by (service,
/// instance).
pub(crate) fn kept_by_instance(store: &dyn Store, service: Option<&str>) -> Result<KeptByInstance> {
    store
        .kept_findings(service)?
        .into_iter()
        .map(|r| {
            let kept = Kept {
                evaluated_ms: r.evaluated_ms,
                ..serde_json::from_str(&r.findings).map_err(|e| {
                    Error::invalid("findings", format!("kept findings unreadable: {e}"))
                })?
            };
            Ok(((r.service, r.instance), kept))
        })
        .collect()
}

/// Kept findings older than this are not read as current: the store is
/// not being fed by a `serve` that evaluates at least this often.
pub(crate) const KEPT_CURRENT_MS: i64 = 5 * 60_000;

/// The kept findings of `service` (or of all), worst first, as one
/// analysis of the last day; `None` when nothing is kept, or the newest
/// is older than [`KEPT_CURRENT_MS`].
pub fn kept(store: &dyn Store, service: Option<&str>, now_ms: i64) -> Result<Option<Analysis>> {
    let kept = kept_by_instance(store, service)?;
    let newest = kept.values().map(|k| k.evaluated_ms).max();
    if newest.is_none_or(|t| now_ms - t > KEPT_CURRENT_MS) {
        return Ok(None);
    }
    let mut findings = Vec::new();
    let mut deaths = Vec::new();
    for k in kept.into_values() {
        findings.extend(k.findings);
        deaths.extend(k.deaths);
    }
    detect::sort_worst_first(&mut findings);
    deaths.sort_by_key(|d| std::cmp::Reverse(d.last_seen_ms));
    Ok(Some(Analysis {
        from_ms: now_ms - WINDOW_MS,
        to_ms: now_ms,
        findings,
        deaths,
    }))
}
