//! What the judgement of an instance reads from the store, fetched for one
//! instance, or for every instance of a service at once.
//!
//! The batch is what makes a fleet cheap to judge on a networked store: a
//! cohort's envelopes of every resource (RSS's recent peak among them) and
//! its latest values are two reads whatever its count of instances, where
//! one instance at a time they were three each. Then every instance is
//! judged in memory.

use std::collections::HashMap;

use super::stats::growth::MAX_BUCKETS;
use super::{Lifetime, Resource, Subject};
use crate::error::Result;
use crate::select::Selector;
use crate::store::{EnvelopeBucket, Store};
use heaptide_wire::metric;

/// How far back RSS's peak is taken, for its room.
pub(super) const PEAK_MS: i64 = 3_600_000;

/// The window of RSS's recent peak: the last [`PEAK_MS`], from the
/// quarter hour it began in (an hour to an hour and a quarter). A start on
/// a rollup tier's bucket reads no raw rows there, which was most of the
/// peak's read on ClickHouse (docs/benchmarks.md); a peak over a little
/// more than the hour is still the recent one.
pub(super) fn peak_window(sel: &Selector) -> Selector {
    use crate::store::rollup::{bucket_start, QUARTER_HOUR_MS};
    sel.starting(bucket_start(sel.to_ms - PEAK_MS, QUARTER_HOUR_MS))
}

/// The highest of `buckets` that start at `from_ms` or later.
fn peak_of(buckets: &[EnvelopeBucket], from_ms: i64) -> f64 {
    buckets
        .iter()
        .filter(|b| b.first_ms >= from_ms)
        .map(|b| b.max)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The envelope's bucket width for a window: the engine's resolution.
pub(super) fn bucket_ms(sel: &Selector) -> i64 {
    (sel.span_ms() / MAX_BUCKETS as i64).max(1000)
}

/// What the judgement of one instance reads of every resource: each
/// resource's envelope, the latest value of its metric, its limits and
/// what the heap's room needs, and RSS's recent peak.
pub(super) struct Reads {
    values: HashMap<String, f64>,
    envelopes: HashMap<String, Vec<EnvelopeBucket>>,
    /// RSS's peak over the last [`PEAK_MS`], when it was read with the
    /// rest; `None` reads it when needed.
    pub(super) rss_peak: Option<f64>,
    /// The instance's metric names, when they were read with the rest
    /// (what part of a leak grows is looked for among them); `None` reads
    /// them when needed.
    pub(super) names: Option<Vec<String>>,
}

/// The metrics whose latest values the judgement reads, with those of
/// the pools and queues (`gauges`) the service may have.
fn latest_metrics(gauges: &[Subject]) -> Vec<String> {
    let mut metrics: Vec<String> = [
        metric::AGENT_INTERVAL_SECONDS,
        metric::AGENT_URGENT,
        metric::CGROUP_MEMORY_CURRENT,
        metric::RSS,
        metric::HEAP_ALLOCATED,
    ]
    .map(String::from)
    .to_vec();
    for s in Resource::ALL.map(Subject::of).iter().chain(gauges) {
        metrics.extend(s.latest_metrics());
    }
    metrics.sort_unstable();
    metrics.dedup();
    metrics
}

fn resource_metrics(gauges: &[Subject]) -> Vec<&str> {
    let fixed = Resource::ALL.iter().map(|r| r.metric());
    fixed
        .chain(gauges.iter().map(|s| s.metric.as_str()))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

impl Reads {
    /// One instance's reads (`sel` names it), with those of the pools
    /// and queues in `gauges` that it has.
    pub(super) fn fetch(store: &dyn Store, sel: &Selector, gauges: &[Subject]) -> Result<Reads> {
        let points = store.latest_each(sel, &strs(&latest_metrics(gauges)))?;
        Ok(Reads {
            values: points.into_iter().map(|(m, p)| (m, p.value)).collect(),
            envelopes: store.envelope_each(sel, &resource_metrics(gauges), bucket_ms(sel))?,
            rss_peak: None,
            names: None,
        })
    }

    /// The reads of each of `instances` of the service `sel` names, all
    /// over `sel`'s whole window, by instance: four reads in all.
    pub(super) fn fetch_cohort(
        store: &dyn Store,
        sel: &Selector,
        instances: &[&str],
        gauges: &[Subject],
    ) -> Result<HashMap<String, Reads>> {
        let w = bucket_ms(sel);
        let mut envelopes = store.envelopes_of(sel, instances, &resource_metrics(gauges), w)?;
        let mut latest = store.latest_of(sel, instances, &strs(&latest_metrics(gauges)))?;
        // RSS's peak is the envelope's own when the peak's window is whole
        // buckets of it (a day's quarter hours), else a read of its own:
        // that read was a quarter of ClickHouse's time for a cohort.
        let recent = peak_window(sel);
        let within = recent.from_ms >= sel.from_ms && recent.from_ms % w == 0;
        let mut peaks = if within {
            None
        } else {
            Some(store.envelopes_of(&recent, instances, &[metric::RSS], PEAK_MS)?)
        };
        let service = sel.service.as_deref().unwrap_or_default();
        let mut names = store.metric_names_of(service, instances)?;
        Ok(instances
            .iter()
            .map(|i| {
                let envelopes = envelopes.remove(*i).unwrap_or_default();
                let peak = match peaks.as_mut() {
                    Some(p) => {
                        let rss = p.remove(*i).and_then(|mut m| m.remove(metric::RSS));
                        peak_of(&rss.unwrap_or_default(), 0)
                    }
                    None => peak_of(
                        envelopes.get(metric::RSS).map_or(&[], |e| e),
                        recent.from_ms,
                    ),
                };
                let reads = Reads {
                    values: latest
                        .remove(*i)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(m, p)| (m, p.value))
                        .collect(),
                    envelopes,
                    rss_peak: Some(peak),
                    names: Some(names.remove(*i).unwrap_or_default()),
                };
                ((*i).to_owned(), reads)
            })
            .collect())
    }

    /// Whether any sample of `metric` was read: a pool the instance has.
    pub(super) fn has(&self, metric: &str) -> bool {
        self.envelopes.get(metric).is_some_and(|e| !e.is_empty())
    }

    pub(super) fn get(&self, metric: &str) -> Option<f64> {
        self.values.get(metric).copied()
    }

    /// A resource's lifetimes, taken from what was read, each counting
    /// its samples at the agent's configured pace
    /// ([`Lifetime::at_pace`]).
    pub(super) fn lifetimes(&mut self, metric: &str) -> Vec<Lifetime> {
        let mut lives = super::analyze::split(self.envelopes.remove(metric).unwrap_or_default());
        if let Some(secs) = self.get(metric::AGENT_INTERVAL_SECONDS) {
            lives.iter_mut().for_each(|l| l.at_pace(secs / 3600.0));
        }
        lives
    }
}
