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
/// that fill it; 3 counts a rollup's samples by the seconds that hold one
/// (`super::rollups`), and keeps each series' newest sample in `latest`;
/// 4 added `profile_stacks.alloc_bytes` and `alloc_objects`; 5 added
/// `symbols`, the names of build-ids' addresses; 6 sorts the quarter-hour
/// tier's table by bucket and settles its buckets (`super::settle`), and
/// keeps the minute tier in small granules (`super::rollups::table`).
pub(super) const SCHEMA_VERSION: i64 = 6;

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
    // The frames at each address of a build-id (its offset in the
    // object's file), resolved once for the whole fleet.
    "CREATE TABLE IF NOT EXISTS symbols (build_id String, offset UInt64, frames String)
     ENGINE = ReplacingMergeTree ORDER BY (build_id, offset)",
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
        stack Int64, bytes Int64, objects Int64,
        alloc_bytes Int64 DEFAULT 0, alloc_objects Int64 DEFAULT 0)
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
    // The rollups and their views come after these: `super::rollups`.
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

/// Adds `column` at the end of `table` unless it is there (18.16 has no
/// `ADD COLUMN IF NOT EXISTS`); rows written before read its default.
fn add_column(
    c: &Client,
    database: &str,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), ChError> {
    let has = c.query_server(&format!(
        "SELECT count() FROM system.columns WHERE database = {} AND table = {} AND name = {} FORMAT RowBinary",
        lit(database),
        lit(table),
        lit(column)
    ))?;
    if RowReader::new(&has).u64()? == 0 {
        c.query(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

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
    for t in super::latest::DDL.iter().chain(&super::settle::DDL) {
        c.query(t)?;
    }
    if (1..4).contains(&stored) {
        for column in ["alloc_bytes", "alloc_objects"] {
            add_column(c, database, "profile_stacks", column, "Int64 DEFAULT 0")?;
        }
    }
    if (1..3).contains(&stored) {
        super::rollups::rebuild(c)?;
        super::latest::backfill(c)?;
    } else if (3..6).contains(&stored) {
        super::rollups::reorder(c)?;
    } else {
        for t in super::rollups::ddl() {
            c.query(&t)?;
        }
    }
    c.query(&format!(
        "INSERT INTO meta VALUES ({}, {SCHEMA_VERSION})",
        lit("schema_version")
    ))?;
    Ok(())
}
