//! The newest sample of each series, kept by a materialized view as each
//! sample arrives, so that a cohort's latest values are a row per series
//! rather than a scan of the last hour: a series' last hour sits inside a
//! granule of 8,192 raw rows, so 256 instances' latest values read
//! millions of rows (docs/benchmarks.md).
//!
//! The table is an `AggregatingMergeTree` of `argMax` states, partitioned
//! by the day of the sample like the raw samples, so retention drops its
//! days with theirs and each series has a row per day at most. A replay
//! writes the same newest sample again, which changes nothing. A row per
//! series and day also makes it the index of which metrics an instance
//! has (`metric_names`).

use super::http::Client;
use super::read::Scope;
use super::rowbinary::str_list;
use super::ChError;
use crate::select::Selector;

pub(super) const DDL: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS latest (segment Int64, metric String, day_ms Int64,
        ts AggregateFunction(max, Int64), value AggregateFunction(argMax, Float64, Int64),
        lo AggregateFunction(argMax, Float64, Int64), hi AggregateFunction(argMax, Float64, Int64))
     ENGINE = AggregatingMergeTree PARTITION BY toDate(intDiv(day_ms, 1000))
     ORDER BY (segment, metric, day_ms)",
    // The raw rows are picked in a subquery, as for the rollups.
    "CREATE MATERIALIZED VIEW IF NOT EXISTS latest_view TO latest AS
     SELECT segment, metric, intDiv(ts_ms, 86400000) * 86400000 AS day_ms,
        maxState(ts_ms) AS ts, argMaxState(value, ts_ms) AS value,
        argMaxState(vmin, ts_ms) AS lo, argMaxState(vmax, ts_ms) AS hi
     FROM (SELECT segment, metric, ts_ms, value, vmin, vmax FROM samples WHERE res = 0)
     GROUP BY segment, metric, day_ms",
];

/// Fills the table from the samples of a store written before it existed:
/// the downsampled rows too, so that every day still kept has its names
/// (`metric_names` reads them here); they are older than any raw sample of
/// their series, so no newest sample is displaced.
pub(super) fn backfill(c: &Client) -> Result<(), ChError> {
    c.query(
        "INSERT INTO latest SELECT segment, metric, intDiv(ts_ms, 86400000) * 86400000 AS day_ms,
            maxState(ts_ms), argMaxState(value, ts_ms), argMaxState(vmin, ts_ms),
            argMaxState(vmax, ts_ms)
         FROM samples GROUP BY segment, metric, day_ms",
    )?;
    Ok(())
}

/// The newest sample of each of `metrics` of each segment of `scope` in
/// `sel`'s window, when that is the series' newest overall: `metric,
/// segment, instance_name, ts, value, lo, hi`, and the newest time of any
/// series, so that the caller can tell a window that ends before the
/// data does (whose latest values this table cannot give).
pub(super) fn sql(scope: &Scope, sel: &Selector, metrics: &[&str]) -> String {
    let first_day = sel.from_ms.div_euclid(86_400_000) * 86_400_000;
    format!(
        "SELECT metric, segment, instance_name, t, v, l, h FROM (
           SELECT metric, segment, maxMerge(ts) AS t, argMaxMerge(value) AS v,
               argMaxMerge(lo) AS l, argMaxMerge(hi) AS h
           FROM latest WHERE {} AND metric IN ({}) AND day_ms >= {first_day}
           GROUP BY metric, segment HAVING t >= {}) {}",
        scope.filter,
        str_list(metrics),
        sel.from_ms,
        scope.join
    )
}
