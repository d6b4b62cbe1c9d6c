//! When memory runs short, the heap profile that explains it is taken at
//! once rather than at the next profile interval, which may come after
//! the OOM kill.
//!
//! A sample calls for one when RSS or the heap reaches a new high above
//! the configured share of the memory limit (the cgroup's `memory.max`,
//! `RLIMIT_AS`, or physical memory: the smallest there is), or when the
//! cgroup counts new memory events (`high`, `max`, `oom`). At most one
//! such profile is taken per [`PRESSURE_EVERY`].

use std::time::{Duration, Instant};

use heaptide_wire::metric;

use crate::process::Metrics;

/// The least time between two pressure profiles.
pub(crate) const PRESSURE_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Pressure {
    share: f64,
    high_rss: f64,
    high_heap: f64,
    events: Option<f64>,
    last: Option<Instant>,
}

/// The memory limit the process runs into first.
fn limit(m: &Metrics) -> Option<f64> {
    let physical = m.get(metric::LIMIT_PHYSICAL_MEMORY).copied();
    [metric::LIMIT_MEMORY_MAX, metric::LIMIT_AS]
        .iter()
        .filter_map(|k| m.get(*k).copied())
        // A cgroup limit above physical memory is no limit.
        .filter(|v| physical.is_none_or(|p| *v < p))
        .chain(physical)
        .reduce(f64::min)
}

impl Pressure {
    pub(crate) fn new(share: f64) -> Self {
        Pressure {
            share,
            high_rss: 0.0,
            high_heap: 0.0,
            events: None,
            last: None,
        }
    }

    /// Whether this sample calls for a pressure profile now; marks the
    /// sample (`agent.pressure`) when it does.
    pub(crate) fn observe(&mut self, now: Instant, m: &mut Metrics) -> bool {
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        let events: f64 = [
            metric::CGROUP_EVENTS_HIGH,
            metric::CGROUP_EVENTS_MAX,
            metric::CGROUP_EVENTS_OOM,
        ]
        .iter()
        .map(|k| get(k))
        .sum();
        let new_events = self.events.is_some_and(|e| events > e);
        self.events = Some(events);
        let edge = limit(m).map_or(f64::INFINITY, |l| l * self.share);
        let (rss, heap) = (get(metric::RSS), get(metric::HEAP_ALLOCATED));
        let new_high =
            (rss >= edge && rss > self.high_rss) || (heap >= edge && heap > self.high_heap);
        self.high_rss = self.high_rss.max(rss);
        self.high_heap = self.high_heap.max(heap);
        let due = self
            .last
            .is_none_or(|l| now.duration_since(l) >= PRESSURE_EVERY);
        let take = (new_high || new_events) && due;
        if take {
            self.last = Some(now);
            m.insert(metric::AGENT_PRESSURE.into(), 1.0);
        }
        take
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rss: f64, events: f64) -> Metrics {
        [
            (metric::RSS, rss),
            (metric::LIMIT_MEMORY_MAX, 1000.0),
            (metric::LIMIT_PHYSICAL_MEMORY, 64_000.0),
            (metric::CGROUP_EVENTS_MAX, events),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn new_highs_above_the_share_and_new_events_take_a_profile_rate_limited() {
        let mut p = Pressure::new(0.8);
        let t0 = Instant::now();
        assert!(!p.observe(t0, &mut sample(700.0, 0.0)), "below 80%");
        let mut m = sample(810.0, 0.0);
        assert!(
            p.observe(t0 + Duration::from_secs(1), &mut m),
            "a new high above 80%"
        );
        assert_eq!(m[metric::AGENT_PRESSURE], 1.0);
        assert!(
            !p.observe(t0 + Duration::from_secs(2), &mut sample(900.0, 0.0)),
            "rate-limited"
        );
        assert!(
            !p.observe(t0 + Duration::from_secs(20), &mut sample(850.0, 0.0)),
            "not a new high"
        );
        assert!(
            p.observe(t0 + Duration::from_secs(21), &mut sample(850.0, 3.0)),
            "new events"
        );
        // A cgroup limit above physical memory is none: physical counts.
        let mut m = sample(900.0, 3.0);
        m.insert(metric::LIMIT_MEMORY_MAX.into(), 1e12);
        assert!(!Pressure::new(0.8).observe(t0, &mut m));
    }
}
