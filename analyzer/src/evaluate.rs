//! Continuous evaluation: the engine judges every instance that sent data
//! since it was last judged, and the store keeps the latest findings, so
//! the overview, `/v1/leaks` and `analyzer leaks` read them instead of
//! judging a whole fleet per request. An instance that stopped reporting
//! is judged once more and then left alone.

use std::collections::HashMap;

use crate::detect::{self, Analysis, Finding};
use crate::error::{Error, Result};
use crate::select::Selector;
use crate::store::Store;
use heaptide_wire::metric;

/// How far back each evaluation looks: what the overview shows.
pub const WINDOW_MS: i64 = 24 * 3_600_000;

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
}

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
    const HOUR: i64 = 3_600_000;
    let hour = Selector::all(now_ms - HOUR, now_ms).for_instance(service, instance);
    let mut buckets = store.envelope(&hour, metric, HOUR / 30)?;
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

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pass {
    pub judged: usize,
    pub skipped: usize,
}

/// Judges every service with an instance whose data is newer than its
/// kept findings. A service is judged whole, so that findings keep their
/// corroboration across instances.
pub fn evaluate(store: &dyn Store, now_ms: i64) -> Result<Pass> {
    let kept: HashMap<(String, String), i64> = store
        .kept_findings(None)?
        .into_iter()
        .map(|k| ((k.service, k.instance), k.evaluated_ms))
        .collect();
    let mut stale: Vec<String> = Vec::new();
    let mut pass = Pass::default();
    for inst in store.instances(None)? {
        let key = (inst.service.clone(), inst.instance.clone());
        if kept.get(&key).is_some_and(|at| *at >= inst.last_seen_ms) {
            pass.skipped += 1;
        } else if stale.last() != Some(&inst.service) {
            stale.push(inst.service);
        }
    }
    let window = Selector::all(now_ms - WINDOW_MS, now_ms);
    for service in stale {
        let sel = Selector {
            service: Some(service.clone()),
            ..window.clone()
        };
        let analysis = detect::analyze(store, &sel, &detect::Options::default())?;
        let mut by_instance: HashMap<&str, Vec<&Finding>> = HashMap::new();
        for f in &analysis.findings {
            by_instance.entry(&f.instance).or_default().push(f);
        }
        for (instance, findings) in by_instance {
            let kept = Kept {
                evaluated_ms: now_ms,
                findings: findings.into_iter().cloned().collect(),
                heap: sparkline(store, &service, instance, metric::HEAP_ALLOCATED, now_ms)?,
                fds: sparkline(store, &service, instance, metric::FDS, now_ms)?,
            };
            let json = serde_json::to_string(&kept)
                .map_err(|e| Error::invalid("findings", e.to_string()))?;
            store.keep_findings(&service, instance, now_ms, &json)?;
            pass.judged += 1;
        }
    }
    Ok(pass)
}

/// What is kept of each instance of `service` (or of all), by (service,
/// instance).
pub fn kept_by_instance(
    store: &dyn Store,
    service: Option<&str>,
) -> Result<HashMap<(String, String), Kept>> {
    store
        .kept_findings(service)?
        .into_iter()
        .map(|r| {
            let kept: Kept = serde_json::from_str(&r.findings).map_err(|e| {
                Error::invalid("findings", format!("kept findings unreadable: {e}"))
            })?;
            Ok(((r.service, r.instance), kept))
        })
        .collect()
}

/// The kept findings of `service` (or of all), worst first, as one
/// analysis of the last day; `None` when nothing is kept yet.
pub fn kept(store: &dyn Store, service: Option<&str>, now_ms: i64) -> Result<Option<Analysis>> {
    let kept = kept_by_instance(store, service)?;
    if kept.is_empty() {
        return Ok(None);
    }
    let mut findings: Vec<Finding> = kept.into_values().flat_map(|k| k.findings).collect();
    detect::sort_worst_first(&mut findings);
    Ok(Some(Analysis {
        from_ms: now_ms - WINDOW_MS,
        to_ms: now_ms,
        findings,
    }))
}
