//! The service page's view model: a service's instances (all, or those
//! with a label), heap and fds per instance on shared axes, and the
//! allocation sites growing across them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use heaptide_ui::{format, Chart, InstanceSummary, Series, ServiceView, SiteRow, Unit};
use heaptide_wire::metric;

use crate::continuous::Kept;
use crate::error::Result;
use crate::select::Selector;
use crate::store::{InstanceInfo, Store};

/// Instances drawn per chart: more lines than this cannot be told apart.
const DRAWN: usize = 8;

/// The page of `sel.service` over `sel`'s window, for the instances with
/// `label` (`key:value`) when given; `None` when the service is unknown.
pub fn service(
    store: &dyn Store,
    sel: &Selector,
    label: Option<&str>,
) -> Result<Option<ServiceView>> {
    let service = sel.service.clone().unwrap_or_default();
    let filter = label
        .map(|l| crate::read::flames::parse_label("label", l))
        .transpose()?;
    let all = crate::read::views::current(store, Some(&service))?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut labels = BTreeSet::new();
    // Each version with when it was first seen, so the oldest comes first.
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    for (i, _) in &all {
        labels.extend(i.labels.iter().map(|(k, v)| format!("{k}:{v}")));
        if let Some(v) = i.labels.get("version") {
            let first = versions.entry(v.clone()).or_insert(i.first_seen_ms);
            *first = (*first).min(i.first_seen_ms);
        }
    }
    let mut versions: Vec<(String, i64)> = versions.into_iter().collect();
    versions.sort_by_key(|(_, first)| *first);
    let versions: Vec<String> = versions.into_iter().map(|(v, _)| v).collect();
    let members: Vec<_> = all
        .into_iter()
        .filter(|(i, _)| {
            filter
                .as_ref()
                .is_none_or(|(k, v)| i.labels.get(k) == Some(v))
        })
        .collect();
    let sites = growing_sites(&members);
    let instances = crate::read::views::summaries(store, members)?;
    let (heap, not_drawn) =
        per_instance(store, sel, &instances, metric::HEAP_ALLOCATED, |r| &r.heap)?;
    let (fds, _) = per_instance(store, sel, &instances, metric::FDS, |r| &r.fds)?;
    let chart = |id: &str, title: &str, unit, series| Chart {
        id: id.into(),
        title: title.into(),
        unit,
        series,
        limit: None,
        projection: None,
        events: vec![],
    };
    Ok(Some(ServiceView {
        sites,
        service,
        label: label.map(str::to_owned),
        labels: labels.into_iter().collect(),
        versions,
        from_ms: sel.from_ms,
        to_ms: sel.to_ms,
        instances,
        charts: vec![
            chart("heap", "heap allocated, per instance", Unit::Bytes, heap),
            chart("fds", "file descriptors, per instance", Unit::Fds, fds),
        ],
        not_drawn,
    }))
}

/// One series of `metric` for each of the [`DRAWN`] instances whose
/// sparkline (kept by continuous evaluation) ends highest, as the
/// envelope's peaks in 150 buckets, so that a day of a large fleet reads a
/// few thousand rows; and how many instances were left out.
fn per_instance(
    store: &dyn Store,
    sel: &Selector,
    rows: &[InstanceSummary],
    metric: &str,
    sparkline: impl Fn(&InstanceSummary) -> &[(i64, f64)],
) -> Result<(Vec<Series>, usize)> {
    let last = |r: &InstanceSummary| sparkline(r).last().map_or(0.0, |p| p.1);
    let mut chosen: Vec<&InstanceSummary> = rows.iter().collect();
    chosen.sort_by(|a, b| last(b).total_cmp(&last(a)));
    let left_out = chosen.len().saturating_sub(DRAWN);
    chosen.truncate(DRAWN);
    // By name, so that each instance keeps its colour from chart to chart.
    chosen.sort_by(|a, b| a.instance.cmp(&b.instance));
    let bucket_ms = (sel.span_ms() / 150).max(1000);
    let mut series = Vec::with_capacity(chosen.len());
    for r in chosen {
        let one = sel.for_instance(&r.service, &r.instance);
        let points = store
            .envelope(&one, metric, bucket_ms)?
            .into_iter()
            .map(|b| (b.ts_ms, b.max))
            .collect();
        series.push(Series {
            name: r.instance.clone(),
            points,
        });
    }
    Ok((series, left_out))
}

/// The heap sites growing in the findings of `members`, their rates
/// summed over instances, fastest first.
fn growing_sites(members: &[(InstanceInfo, Kept)]) -> Vec<SiteRow> {
    let mut sites: HashMap<String, (f64, usize)> = HashMap::new();
    for (_, kept) in members {
        for f in kept.findings.iter().filter(|f| f.verdict.alarms()) {
            for s in &f.sites {
                let e = sites.entry(s.name().to_owned()).or_default();
                e.0 += s.slope_per_hour;
                e.1 += 1;
            }
        }
    }
    let mut rows: Vec<(String, f64, usize)> =
        sites.into_iter().map(|(n, (r, c))| (n, r, c)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.into_iter()
        .take(10)
        .map(|(name, rate, instances)| SiteRow {
            name,
            rate: format::rate_per_hour(Unit::Bytes, rate),
            instances,
        })
        .collect()
}
