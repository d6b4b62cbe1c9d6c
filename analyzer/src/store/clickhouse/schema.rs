//! The ClickHouse schema, made at start and versioned in `meta`.
//!
//! Every table that grows with time is a `ReplacingMergeTree` partitioned
//! by day: a replayed batch writes rows with the same sorting key, which
//! merges fold into one and reads fold with `GROUP BY` or `DISTINCT`
//! before then. ClickHouse 18.16 has no `TTL` (it came in 19.6), so
//! retention drops whole day partitions ([`super::retention`]), which is
//! what a TTL on a day-partitioned table does.

use super::http::Client;
use super::rowbinary::{lit, RowReader};
use super::ChError;

/// 1 is the first ClickHouse schema; 2 added `rollups` and the views
/// that fill it.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// The day of a millisecond column, the partition of every timed table.
macro_rules! day {
    ($col:literal) => {
        concat!("toDate(intDiv(", $col, ", 1000))")
    };
}

pub(super) const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key String, value Int64)
     ENGINE = ReplacingMergeTree ORDER BY key",
    // One row per batch, folded to the newest `last_seq` per process.
    "CREATE TABLE IF NOT EXISTS segments (id Int64, service String, instance String,
        pid UInt32, start_time_ms Int64, host String, agent_version String, labels String,
        first_seen_ms Int64, last_seen_ms Int64, last_seq UInt64, heap_profiling UInt8,
        heap_profiling_reason Nullable(String), agent_stats String)
     ENGINE = ReplacingMergeTree(last_seq) ORDER BY (service, instance, id)",
    // res is the bucket width in ms, 0 for raw samples; tiers are their
    // own partitions, so a day's raw samples go in one DROP PARTITION.
    concat!(
        "CREATE TABLE IF NOT EXISTS samples (segment Int64, metric String, res UInt32,
        ts_ms Int64, value Float64, vmin Float64, vmax Float64, n UInt32)
     ENGINE = ReplacingMergeTree PARTITION BY (",
        day!("ts_ms"),
        ", res) ORDER BY (segment, metric, res, ts_ms)"
    ),
    concat!(
        "CREATE TABLE IF NOT EXISTS pauses (segment Int64, start_ms Int64, source String,
        name String, duration_ms Float64)
     ENGINE = ReplacingMergeTree PARTITION BY ",
        day!("start_ms"),
        " ORDER BY (segment, start_ms, source, name)"
    ),
    "CREATE TABLE IF NOT EXISTS stacks (id Int64, frames String)
     ENGINE = ReplacingMergeTree ORDER BY id",
    concat!(
        "CREATE TABLE IF NOT EXISTS profiles (id Int64, segment Int64, ts_ms Int64,
        sample_period UInt64, total_bytes Int64, total_objects Int64)
     ENGINE = ReplacingMergeTree PARTITION BY ",
        day!("ts_ms"),
        " ORDER BY (segment, ts_ms)"
    ),
    // The pprof as received, by the hour: kept an hour by default.
    "CREATE TABLE IF NOT EXISTS profile_raw (id Int64, ts_ms Int64, pprof String)
     ENGINE = ReplacingMergeTree PARTITION BY intDiv(ts_ms, 3600000) ORDER BY id",
    concat!(
        "CREATE TABLE IF NOT EXISTS profile_stacks (segment Int64, ts_ms Int64, profile Int64,
        stack Int64, bytes Int64, objects Int64)
     ENGINE = ReplacingMergeTree PARTITION BY ",
        day!("ts_ms"),
        " ORDER BY (segment, ts_ms, stack)"
    ),
    concat!(
        "CREATE TABLE IF NOT EXISTS profile_ages (segment Int64, ts_ms Int64, profile Int64,
        stack Int64, ages Array(UInt64))
     ENGINE = ReplacingMergeTree PARTITION BY ",
        day!("ts_ms"),
        " ORDER BY (segment, ts_ms, stack)"
    ),
    // Rollups (`store::rollup`): each tier's buckets as aggregate states,
    // folded by merges and by `-Merge` on read. The count is of distinct
    // sample times, so a replayed batch, which the views see again, does
    // not count twice; minimum and maximum are the same either way. The
    // raw rows are picked in a subquery: the output's `res` alias would
    // otherwise stand for the column in the filter.
    concat!(
        "CREATE TABLE IF NOT EXISTS rollups (segment Int64, metric String, res UInt32,
        bucket Int64, vmin AggregateFunction(min, Float64),
        vmax AggregateFunction(max, Float64), n AggregateFunction(uniqExact, Int64),
        first_ms AggregateFunction(min, Int64), last_ms AggregateFunction(max, Int64))
     ENGINE = AggregatingMergeTree PARTITION BY (",
        day!("bucket"),
        ", res) ORDER BY (segment, metric, res, bucket)"
    ),
    "CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_60000 TO rollups AS
     SELECT segment, metric, toUInt32(60000) AS res, intDiv(ts_ms, 60000) * 60000 AS bucket,
        minState(value) AS vmin, maxState(value) AS vmax, uniqExactState(ts_ms) AS n,
        minState(ts_ms) AS first_ms, maxState(ts_ms) AS last_ms
     FROM (SELECT segment, metric, ts_ms, value FROM samples WHERE res = 0)
     GROUP BY segment, metric, bucket",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_900000 TO rollups AS
     SELECT segment, metric, toUInt32(900000) AS res, intDiv(ts_ms, 900000) * 900000 AS bucket,
        minState(value) AS vmin, maxState(value) AS vmax, uniqExactState(ts_ms) AS n,
        minState(ts_ms) AS first_ms, maxState(ts_ms) AS last_ms
     FROM (SELECT segment, metric, ts_ms, value FROM samples WHERE res = 0)
     GROUP BY segment, metric, bucket",
    "CREATE TABLE IF NOT EXISTS findings (service String, instance String,
        evaluated_ms Int64, findings String, version UInt64)
     ENGINE = ReplacingMergeTree(version) ORDER BY (service, instance)",
    // Each evaluation writes its shard's active alerts as a generation;
    // the newest generation of each shard is what is active.
    concat!(
        "CREATE TABLE IF NOT EXISTS alerts (shard String, generation Int64,
        alert_key String, alert String)
     ENGINE = MergeTree PARTITION BY ",
        day!("generation"),
        " ORDER BY (shard, generation, alert_key)"
    ),
    concat!(
        "CREATE TABLE IF NOT EXISTS transitions (at_ms Int64, service String,
        instance String, subject String, resource String, state String,
        severity Nullable(String), summary String)
     ENGINE = MergeTree PARTITION BY ",
        day!("at_ms"),
        " ORDER BY (service, instance, at_ms)"
    ),
];

/// The stored schema version, 0 when the database is new.
pub(super) fn stored_version(c: &Client, database: &str) -> Result<i64, ChError> {
    let exists = c.query_server(&format!(
        "SELECT count() FROM system.tables WHERE database = {} AND name = 'meta' FORMAT RowBinary",
        lit(database)
    ))?;
    if RowReader::new(&exists).u64()? == 0 {
        return Ok(0);
    }
    let sql = format!(
        "SELECT argMax(value, value) FROM meta WHERE key = {} FORMAT RowBinary",
        lit("schema_version")
    );
    let rows = c.query(&sql)?;
    Ok(RowReader::new(&rows).i64().unwrap_or(0))
}

/// Creates the database and its tables, upgrades what an older version
/// made (`stored`), and records the version.
pub(super) fn create(c: &Client, database: &str, stored: i64) -> Result<(), ChError> {
    // The name was checked to be an identifier when the URL was parsed.
    c.query_server(&format!("CREATE DATABASE IF NOT EXISTS {database}"))?;
    for t in TABLES {
        c.query(t)?;
    }
    if stored == 1 {
        backfill_rollups(c)?;
    }
    c.query(&format!(
        "INSERT INTO meta VALUES ({}, {SCHEMA_VERSION})",
        lit("schema_version")
    ))?;
    Ok(())
}

/// Fills the rollups of a store written before they existed, from its
/// samples. A downsampled row stands for `n` samples at distinct times;
/// it is counted as `n` distinct times (its time plus 0 to n-1 ms, which
/// no other row of its bucket holds), so that the count is right and a
/// second run, or a batch the views saw meanwhile, does not add to it.
fn backfill_rollups(c: &Client) -> Result<(), ChError> {
    for t in crate::store::rollup::TIERS {
        c.query(&format!(
            "INSERT INTO rollups SELECT segment, metric, toUInt32({r}) AS res,
                intDiv(ts_ms, {r}) * {r} AS bucket, minState(vmin), maxState(vmax),
                uniqExactState(ts_ms + toInt64(k)), minState(ts_ms), maxState(ts_ms)
             FROM samples ARRAY JOIN range(n) AS k
             GROUP BY segment, metric, bucket",
            r = t.res_ms
        ))?;
    }
    Ok(())
}
