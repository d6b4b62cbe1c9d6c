//! Settled buckets: the quarter-hour tier's buckets that are over, their
//! aggregate states merged once into plain numbers, so that a fleet's day
//! is read as numbers rather than merged again by every read.
//!
//! The rollups' states are what makes a replayed batch count once, and
//! merging them was most of what a cohort's envelope cost: fifteen mask
//! words and four states a bucket, for 96 buckets of every series
//! (docs/benchmarks.md). A bucket no longer changes once its quarter hour
//! and [`SETTLE_LAG_MS`] have passed, so each evaluation pass of shard 0
//! settles the buckets that ended since its last: one `INSERT … SELECT`
//! inside ClickHouse from the tier's table, which is sorted by bucket so
//! that this reads only the newest buckets ([`super::rollups::table`]).
//! `settles` records how far settling has come (`through_ms`) and when it
//! began (`at_ms`).
//!
//! A read takes the buckets before `through_ms` from the settled table and
//! the rest from the rollups, so what it returns is the same whether or
//! not a bucket has settled yet.
//!
//! A batch that arrives after its buckets settled (an agent's retries
//! after an outage, a backfill) leaves a mark in `late` once its samples
//! are in. Until the next pass has settled them again, reads take that
//! segment's buckets from the rollups alone. Settling them again writes a
//! second row for each bucket, which replaces the first
//! (`ReplacingMergeTree` by `settled_ms`), folded by `OPTIMIZE … FINAL` on
//! the days written before the pass is recorded, so reads need no `FINAL`.
//! Two analyzers settling at once (only shard 0 should) is found the same
//! way and folded too.

use super::rowbinary::id_list;
use super::ClickHouseStore;
use crate::error::Result;
use crate::store::rollup::{bucket_start, QUARTER_HOUR_MS};

/// The tier whose buckets are settled.
pub(crate) const RES_MS: i64 = QUARTER_HOUR_MS;

/// The settled buckets' table.
pub(super) const TABLE: &str = "settled_900000";

/// How long after a bucket's end it is settled. An agent's batch arrives
/// within seconds of its samples; one that arrives later is marked late.
pub(crate) const SETTLE_LAG_MS: i64 = 60_000;

/// More late segments than this and reads leave the settled buckets aside
/// until the next settle, rather than name them all in each statement.
const MAX_PENDING: usize = 1000;

/// The settled table's granules are small: a series' day is 96 rows, and
/// a cohort's series are spread over the fleet's, so granules of the
/// default 8,192 rows read most of the table for any cohort.
pub(super) const DDL: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS settled_900000 (segment Int64, metric String, bucket Int64,
        vmin Float64, vmax Float64, first_ms Int64, last_ms Int64, n UInt32, settled_ms Int64)
     ENGINE = ReplacingMergeTree(settled_ms) PARTITION BY toDate(intDiv(bucket, 1000))
     ORDER BY (segment, metric, bucket) SETTINGS index_granularity = 256",
    "CREATE TABLE IF NOT EXISTS settles (through_ms Int64, at_ms Int64)
     ENGINE = MergeTree PARTITION BY toDate(intDiv(at_ms, 1000)) ORDER BY at_ms",
    "CREATE TABLE IF NOT EXISTS late (segment Int64, from_ms Int64, at_ms Int64)
     ENGINE = MergeTree PARTITION BY toDate(intDiv(at_ms, 1000)) ORDER BY (at_ms, segment)",
];

/// How far settling has come, as a read sees it.
#[derive(Debug, Clone, Default)]
pub(super) struct Settled {
    /// Buckets starting before this are settled (0: none).
    pub through_ms: i64,
    /// Segments with a late batch since the last settle: their buckets are
    /// read from the rollups.
    pub pending: Vec<i64>,
}

/// The oldest bucket of `oldest_ms`'s sample that may already be settled
/// when a batch is stored at `now_ms`, if it may: the batch is then late.
pub(super) fn late_from(oldest_ms: i64, now_ms: i64) -> Option<i64> {
    (oldest_ms < bucket_start(now_ms - SETTLE_LAG_MS, RES_MS))
        .then(|| bucket_start(oldest_ms, RES_MS))
}

/// The days, as the settled table's partitions name them, of the buckets
/// in `[from, to)`.
fn days(from: i64, to: i64) -> Vec<String> {
    const DAY: i64 = 86_400_000;
    (from.div_euclid(DAY)..=(to - 1).div_euclid(DAY))
        .filter_map(|d| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis((d * DAY) as u64);
            let text = humantime::format_rfc3339_seconds(t).to_string();
            text.get(0..10).map(str::to_owned)
        })
        .collect()
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
    /// The last settle's `through_ms` and `at_ms` (zeros before the first).
    fn last_settle(&self) -> Result<(i64, i64)> {
        let rows = self.rows("SELECT max(through_ms), max(at_ms) FROM settles", |r| {
            Ok((r.i64()?, r.i64()?))
        })?;
        Ok(rows.first().copied().unwrap_or_default())
    }

    /// Settles the buckets that ended [`SETTLE_LAG_MS`] before `now_ms`, and
    /// settles again those of segments marked late since the last settle.
    /// No later than the clock: a bucket is settled once it is over, and
    /// ingest marks a batch late by the same clock. A store opened by a
    /// read command is left as it is.
    pub(super) fn settle_buckets(&self, now_ms: i64) -> Result<()> {
        if self.flusher.is_none() {
            return Ok(());
        }
        // Marks are stamped by the clock, so the settle is too.
        let started = crate::select::now_ms();
        let (through, at) = self.last_settle()?;
        let next = bucket_start(now_ms.min(started) - SETTLE_LAG_MS, RES_MS).max(through);
        let mut again = Vec::new();
        if at > 0 {
            again = self.resettle(through, at, started)?;
        } else {
            // Settling from nothing settles every bucket: rows left from
            // before a record that retention dropped would count twice.
            self.exec(&format!("TRUNCATE TABLE IF EXISTS {TABLE}"))?;
        }
        if next > through {
            self.exec(&finalized(
                &format!("bucket >= {through} AND bucket < {next}"),
                started,
            ))?;
            // Another analyzer that settled meanwhile wrote the same
            // buckets: folded below like a settle's second row.
            let others = self.rows(
                &format!("SELECT count() FROM settles WHERE at_ms > {at} AND at_ms != {started}"),
                |r| r.u64(),
            )?;
            if others.first().is_some_and(|n| *n > 0) {
                again.extend(days(through, next));
            }
        }
        // Until the second rows of a bucket are folded into one, the
        // marks that caused them keep their segments out of the settled
        // buckets' reads: the settle is recorded last.
        again.sort_unstable();
        again.dedup();
        for day in again {
            self.exec(&format!("OPTIMIZE TABLE {TABLE} PARTITION '{day}' FINAL"))?;
        }
        self.exec(&format!("INSERT INTO settles VALUES ({next}, {started})"))
    }

    /// Settles again, stamped `started`, the buckets before `through` of the
    /// segments marked late since the settle at `at`; returns the days
    /// (`YYYY-MM-DD`) it wrote.
    fn resettle(&self, through: i64, at: i64, started: i64) -> Result<Vec<String>> {
        let oldest = self.rows(
            &format!("SELECT min(from_ms), count() FROM late WHERE at_ms >= {at}"),
            |r| Ok((r.i64()?, r.u64()?)),
        )?;
        let Some((from, marks)) = oldest.first().copied().filter(|(_, n)| *n > 0) else {
            return Ok(Vec::new());
        };
        if from >= through {
            return Ok(Vec::new());
        }
        self.exec(&finalized(
            &format!(
                "bucket >= {from} AND bucket < {through}
                 AND segment IN (SELECT segment FROM late WHERE at_ms >= {at})"
            ),
            started,
        ))?;
        tracing::debug!(marks, from, "settled late batches' buckets again");
        Ok(days(from, through))
    }

    /// How far settling has come, for a read.
    pub(super) fn settled(&self) -> Result<Settled> {
        let (through_ms, at) = self.last_settle()?;
        if through_ms == 0 {
            return Ok(Settled::default());
        }
        let pending = self.rows(
            &format!(
                "SELECT DISTINCT segment FROM late WHERE at_ms >= {at} LIMIT {}",
                MAX_PENDING + 1
            ),
            |r| r.i64(),
        )?;
        if pending.len() > MAX_PENDING {
            return Ok(Settled::default());
        }
        Ok(Settled {
            through_ms,
            pending,
        })
    }
}

/// The arm of a read over the settled buckets `[from, to)` of `metrics` in
/// `filter` (the scope), by envelope bucket of width `w`, in the columns of
/// the rollups' arm; `upto`, when given, leaves out a bucket whose last
/// sample is after it. A bucket has one row once settled (a second, from a
/// late batch, is folded before the settle is recorded), so the rows are
/// read as they are: `FINAL` took half of a cohort's day
/// (docs/benchmarks.md).
pub(super) fn arm(
    filter: &str,
    metrics: &str,
    (from, to): (i64, i64),
    w: i64,
    pending: &[i64],
    upto: Option<i64>,
) -> String {
    let mut cond =
        format!("{filter} AND metric IN ({metrics}) AND bucket >= {from} AND bucket < {to}");
    if !pending.is_empty() {
        cond.push_str(&format!(" AND segment NOT IN ({})", id_list(pending)));
    }
    if let Some(t) = upto {
        cond.push_str(&format!(" AND last_ms <= {t}"));
    }
    if w == RES_MS {
        return format!(
            "SELECT metric, segment, first_ms AS t0, last_ms AS t1, vmin AS lo, vmax AS hi,
                toUInt64(n) AS k
             FROM {TABLE} WHERE {cond}"
        );
    }
    format!(
        "SELECT metric, segment, min(first_ms) AS t0, max(last_ms) AS t1, min(vmin) AS lo,
            max(vmax) AS hi, toUInt64(sum(n)) AS k
         FROM {TABLE} WHERE {cond}
         GROUP BY metric, segment, intDiv(bucket, {w})"
    )
}
