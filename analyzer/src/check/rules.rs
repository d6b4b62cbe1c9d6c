//! The budget keys `check` judges: each growth rate and each ceiling, with
//! the metric it reads and the unit it is measured in.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use crate::check::budget::Budget;
use heaptide_wire::{metric, Unit};

/// What a budget line measures against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// A level: a peak or a pause.
    Level,
    Hour,
    ThousandRequests,
}

/// The unit of a budget line: `bytes/h`, `fds/1k requests`, `ms`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub unit: Unit,
    pub per: Per,
}

impl Measure {
    pub fn as_string(&self) -> String {
        let u = self.unit.as_str();
        match self.per {
            Per::Level => u.to_owned(),
            Per::Hour => format!("{u}/h"),
            Per::ThousandRequests => format!("{u}/1k requests"),
        }
    }
}

impl Serialize for Measure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

/// A growth budget key: one of [`GROWTH`], or a named pool's or queue's
/// ([`gauge_rules`]).
pub struct GrowthRule {
    pub name: Cow<'static, str>,
    pub metric: Cow<'static, str>,
    pub measure: Measure,
    pub get: fn(&Budget) -> Option<f64>,
}

const fn growth(
    name: &'static str,
    metric: &'static str,
    unit: Unit,
    per: Per,
    get: fn(&Budget) -> Option<f64>,
) -> GrowthRule {
    GrowthRule {
        name: Cow::Borrowed(name),
        metric: Cow::Borrowed(metric),
        measure: Measure { unit, per },
        get,
    }
}

pub const GROWTH: &[GrowthRule] = &[
    growth(
        "heap_growth_per_hour",
        metric::HEAP_ALLOCATED,
        Unit::Bytes,
        Per::Hour,
        |b| b.heap_growth_per_hour.map(|s| s.0),
    ),
    growth(
        "rss_growth_per_hour",
        metric::RSS,
        Unit::Bytes,
        Per::Hour,
        |b| b.rss_growth_per_hour.map(|s| s.0),
    ),
    growth(
        "fds_growth_per_hour",
        metric::FDS,
        Unit::Fds,
        Per::Hour,
        |b| b.fds_growth_per_hour,
    ),
    growth(
        "threads_growth_per_hour",
        metric::THREADS,
        Unit::Threads,
        Per::Hour,
        |b| b.threads_growth_per_hour,
    ),
    growth(
        "heap_growth_per_1k_requests",
        metric::HEAP_ALLOCATED,
        Unit::Bytes,
        Per::ThousandRequests,
        |b| b.heap_growth_per_1k_requests.map(|s| s.0),
    ),
    growth(
        "rss_growth_per_1k_requests",
        metric::RSS,
        Unit::Bytes,
        Per::ThousandRequests,
        |b| b.rss_growth_per_1k_requests.map(|s| s.0),
    ),
    growth(
        "fds_growth_per_1k_requests",
        metric::FDS,
        Unit::Fds,
        Per::ThousandRequests,
        |b| b.fds_growth_per_1k_requests,
    ),
    growth(
        "threads_growth_per_1k_requests",
        metric::THREADS,
        Unit::Threads,
        Per::ThousandRequests,
        |b| b.threads_growth_per_1k_requests,
    ),
    growth(
        "alloc_per_1k_requests",
        metric::HEAP_ALLOC_BYTES,
        Unit::Bytes,
        Per::ThousandRequests,
        |b| b.alloc_per_1k_requests.map(|s| s.0),
    ),
    growth(
        "alloc_per_hour",
        metric::HEAP_ALLOC_BYTES,
        Unit::Bytes,
        Per::Hour,
        |b| b.alloc_per_hour.map(|s| s.0),
    ),
    growth(
        "tasks_growth_per_hour",
        metric::TOKIO_TASKS_ALIVE,
        Unit::Tasks,
        Per::Hour,
        |b| b.tasks_growth_per_hour,
    ),
];

/// The growth rules of the pools and queues a budget names
/// (`pool_growth_per_hour.db`, `queue_growth_per_hour.jobs`), each with
/// its limit.
pub fn gauge_rules(b: &Budget) -> Vec<(GrowthRule, f64)> {
    let kinds = [
        (
            "pool_growth_per_hour",
            &b.pool_growth_per_hour,
            Unit::Slots,
            metric::pool as fn(&str, &str) -> String,
            metric::POOL_IN_USE,
        ),
        (
            "queue_growth_per_hour",
            &b.queue_growth_per_hour,
            Unit::Items,
            metric::queue,
            metric::QUEUE_DEPTH,
        ),
    ];
    let mut out = Vec::new();
    for (key, limits, unit, gauge, part) in kinds {
        for (name, limit) in limits.iter().flatten() {
            let rule = GrowthRule {
                name: format!("{key}.{name}").into(),
                metric: gauge(&heaptide_wire::gauge_name(name), part).into(),
                measure: Measure {
                    unit,
                    per: Per::Hour,
                },
                get: |_| None,
            };
            out.push((rule, *limit));
        }
    }
    out
}

/// A ceiling budget key: the peak of a metric.
pub struct PeakRule {
    pub name: &'static str,
    pub metric: &'static str,
    pub unit: Unit,
    pub get: fn(&Budget) -> Option<f64>,
}

pub const PEAKS: &[PeakRule] = &[
    PeakRule {
        name: "peak_heap",
        metric: metric::HEAP_ALLOCATED,
        unit: Unit::Bytes,
        get: |b| b.peak_heap.map(|s| s.0),
    },
    PeakRule {
        name: "peak_rss",
        metric: metric::RSS,
        unit: Unit::Bytes,
        get: |b| b.peak_rss.map(|s| s.0),
    },
    PeakRule {
        name: "peak_fds",
        metric: metric::FDS,
        unit: Unit::Fds,
        get: |b| b.peak_fds,
    },
    PeakRule {
        name: "peak_threads",
        metric: metric::THREADS,
        unit: Unit::Threads,
        get: |b| b.peak_threads,
    },
];
