//! Sealed buckets: the quarter-hour tier's buckets that are over, their
//! aggregate states merged once into plain numbers, so that a fleet's day
//! is read as numbers rather than merged again by every read.
//!
//! The rollups' states are what makes a replayed batch count once, and
//! merging them was most of what a cohort's envelope cost: fifteen mask
//! words and four states a bucket, for 96 buckets of every series
//! (docs/benchmarks.md). A bucket no longer changes once its quarter hour
//! and [`SEAL_LAG_MS`] have passed, so each evaluation pass (and a fresh
//! `leaks`) seals the buckets that ended since the last: one
//! `INSERT … SELECT` inside ClickHouse from the tier's table, which is
//! sorted by bucket so that this reads only the newest buckets
//! ([`super::rollups::table`]). `seals` records how far sealing has come
//! (`through_ms`) and when (`at_ms`).
//!
//! A read takes the buckets before `through_ms` from the sealed table and
//! the rest from the rollups, so what it returns is the same whether or
//! not a bucket was sealed yet.
//!
//! A batch that arrives after its buckets were sealed (an agent's retries
//! after an outage, a backfill) leaves a mark in `late` once its samples
//! are in. Until the next seal, reads take that segment's buckets from the
//! rollups alone; the next seal merges its buckets again, and the newer
//! row replaces the older (`ReplacingMergeTree` by `sealed_ms`, read with
//! `FINAL`). Two analyzers sealing at once write the same numbers.

use super::ClickHouseStore;
use crate::error::Result;
use crate::store::rollup::{bucket_start, QUARTER_HOUR_MS};

/// The tier whose buckets are sealed.
pub(crate) const RES_MS: i64 = QUARTER_HOUR_MS;

/// The sealed buckets' table.
pub(super) const TABLE: &str = "sealed_900000";

/// How long after a bucket's end it is sealed. An agent's batch arrives
/// within seconds of its samples; one that arrives later is marked late.
pub(crate) const SEAL_LAG_MS: i64 = 60_000;

/// More late segments than this and reads leave the sealed buckets aside
/// until the next seal, rather than name them all in each statement.
const MAX_PENDING: usize = 1000;

pub(super) const DDL: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS sealed_900000 (segment Int64, metric String, bucket Int64,
        vmin Float64, vmax Float64, first_ms Int64, last_ms Int64, n UInt32, sealed_ms Int64)
     ENGINE = ReplacingMergeTree(sealed_ms) PARTITION BY toDate(intDiv(bucket, 1000))
     ORDER BY (segment, metric, bucket)",
    "CREATE TABLE IF NOT EXISTS seals (through_ms Int64, at_ms Int64)
     ENGINE = MergeTree PARTITION BY toDate(intDiv(at_ms, 1000)) ORDER BY at_ms",
    "CREATE TABLE IF NOT EXISTS late (segment Int64, from_ms Int64, at_ms Int64)
     ENGINE = MergeTree PARTITION BY toDate(intDiv(at_ms, 1000)) ORDER BY (at_ms, segment)",
];

/// How far sealing has come, as a read sees it.
#[derive(Debug, Clone, Default)]
pub(super) struct Sealed {
    /// Buckets starting before this are sealed (0: none).
    pub through_ms: i64,
    /// Segments with a late batch since the last seal: their buckets are
    /// read from the rollups.
    pub pending: Vec<i64>,
}

/// The oldest bucket of `oldest_ms`'s sample that may already be sealed
/// when a batch is stored at `now_ms`, if it may: the batch is then late.
pub(super) fn late_from(oldest_ms: i64, now_ms: i64) -> Option<i64> {
    (oldest_ms < bucket_start(now_ms - SEAL_LAG_MS, RES_MS)).then(|| bucket_start(oldest_ms, RES_MS))
}

/// A bucket's numbers from the tier's states, for the rows `filter` picks,
/// stamped `at_ms`.
fn finalized(filter: &str, at_ms: i64) -> String {
    use super::rollups::{count, merged, table};
    format!(
        "INSERT INTO {TABLE} SELECT segment, metric, bucket, lo, hi, f, l, toUInt32({}), {at_ms}
         FROM (SELECT segment, metric, bucket, minMerge(vmin) AS lo, maxMerge(vmax) AS hi,
                 minMerge(first_ms) AS f, maxMerge(last_ms) AS l, {}
               FROM {} WHERE {filter} GROUP BY segment, metric, bucket)",
        count(RES_MS),
        merged(RES_MS),
        table(RES_MS)
    )
}

impl ClickHouseStore {
    /// The last seal's `through_ms` and `at_ms` (zeros before the first).
    fn last_seal(&self) -> Result<(i64, i64)> {
        let rows = self.rows("SELECT max(through_ms), max(at_ms) FROM seals", |r| {
            Ok((r.i64()?, r.i64()?))
        })?;
        Ok(rows.first().copied().unwrap_or_default())
    }

    /// Seals the buckets that ended [`SEAL_LAG_MS`] before `now_ms`, and
    /// seals again those of segments marked late since the last seal.
    /// No later than the clock: a bucket is sealed once it is over, and
    /// ingest marks a batch late by the same clock. A store opened by a
    /// read command is left as it is.
    pub(super) fn seal_buckets(&self, now_ms: i64) -> Result<()> {
        if self.flusher.is_none() {
            return Ok(());
        }
        // Marks are stamped by the clock, so the seal is too.
        let started = crate::select::now_ms();
        let (through, at) = self.last_seal()?;
        let next = bucket_start(now_ms.min(started) - SEAL_LAG_MS, RES_MS).max(through);
        if at > 0 {
            let marked = format!("SELECT segment FROM late WHERE at_ms >= {at}");
            self.exec(&finalized(
                &format!(
                    "bucket >= (SELECT min(from_ms) FROM late WHERE at_ms >= {at})
                     AND bucket < {through} AND segment IN ({marked})"
                ),
                started,
            ))?;
        }
        if next > through {
            self.exec(&finalized(
                &format!("bucket >= {through} AND bucket < {next}"),
                started,
            ))?;
        }
        self.exec(&format!("INSERT INTO seals VALUES ({next}, {started})"))
    }

    /// How far sealing has come, for a read.
    pub(super) fn sealed(&self) -> Result<Sealed> {
        let (through_ms, at) = self.last_seal()?;
        if through_ms == 0 {
            return Ok(Sealed::default());
        }
        let pending = self.rows(
            &format!(
                "SELECT DISTINCT segment FROM late WHERE at_ms >= {at} LIMIT {}",
                MAX_PENDING + 1
            ),
            |r| r.i64(),
        )?;
        if pending.len() > MAX_PENDING {
            return Ok(Sealed::default());
        }
        Ok(Sealed {
            through_ms,
            pending,
        })
    }
}

/// The arm of a read over the sealed buckets `[from, to)` of `metrics` in
/// `filter` (the scope), by envelope bucket of width `w`, in the columns of
/// the rollups' arm; `upto`, when given, leaves out a bucket whose last
/// sample is after it.
pub(super) fn arm(
    filter: &str,
    metrics: &str,
    (from, to): (i64, i64),
    w: i64,
    pending: &[i64],
    upto: Option<i64>,
) -> String {
    let mut cond = format!("{filter} AND metric IN ({metrics}) AND bucket >= {from} AND bucket < {to}");
    if !pending.is_empty() {
        cond.push_str(&format!(" AND segment NOT IN ({})", ids(pending)));
    }
    if let Some(t) = upto {
        cond.push_str(&format!(" AND last_ms <= {t}"));
    }
    format!(
        "SELECT metric, segment, min(first_ms) AS t0, max(last_ms) AS t1, min(vmin) AS lo,
            max(vmax) AS hi, toUInt64(sum(n)) AS k
         FROM {TABLE} FINAL WHERE {cond}
         GROUP BY metric, segment, intDiv(bucket, {w})"
    )
}

/// `ids` as an SQL list.
pub(super) fn ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
