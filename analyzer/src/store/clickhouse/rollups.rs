//! The rollups on ClickHouse: each tier's buckets as aggregate states in an
//! `AggregatingMergeTree` of its own (`rollups_60000`, `rollups_900000`),
//! filled by a materialized view from the raw samples as they are
//! inserted, folded by merges and by `-Merge` on read
//! ([`crate::store::rollup`] has the plan that reads them).
//!
//! A bucket's count must not grow when a batch is replayed, which the views
//! see again. Minimum and maximum are the same either way; the count is of
//! the **seconds that hold a sample**, kept as bit masks (`groupBitOr`, one
//! 64-bit word per minute of the bucket, 60 bits used), which a replay sets
//! again to the same bits; a tier's table has as many words as its bucket
//! has minutes. A count of distinct sample times (`uniqExact`)
//! is exact at any pace, but its state holds every time, so a day's
//! envelope merged every sample again: it was most of a fleet's judgement
//! on ClickHouse (docs/benchmarks.md). Masks merge in a few words a
//! bucket. The cost: two samples within one second count once, which only
//! an agent configured to sample faster than once a second sees
//! (docs/detection.md). ClickHouse 18.16 has neither `bitCount` nor
//! `groupBitmap`, so the count is a SWAR population count.

use super::http::Client;
use super::ChError;
use crate::store::rollup::TIERS;

/// Mask words in a bucket of `res_ms`: one per minute.
fn words(res_ms: i64) -> usize {
    (res_ms / 60_000).max(1) as usize
}

/// The table of the tier of `res_ms`, named by its sorting key. The
/// settled tier's is sorted by bucket ([`super::settle`]): settling reads
/// the fleet's newest buckets, and a read of a cohort from it only the
/// buckets not yet settled, each a range of the sorting key rather than a
/// piece of every series' granules. The minute tier's is sorted by series
/// in small granules: a cohort's last hour (the overview's sparklines) is
/// 60 rows of each series, which in granules of the default 8,192 rows
/// read most of the day's table (docs/benchmarks.md).
pub(super) fn table(res_ms: i64) -> String {
    if res_ms == super::settle::RES_MS {
        format!("rollups_by_time_{res_ms}")
    } else {
        format!("rollups_by_series_{res_ms}")
    }
}

/// The tier of a rollup table or of the settled buckets' table, by name.
pub(super) fn tier_of(table_name: &str) -> Option<i64> {
    TIERS
        .iter()
        .map(|t| t.res_ms)
        .find(|r| table(*r) == table_name)
        .or((table_name == super::settle::TABLE).then_some(super::settle::RES_MS))
}

/// The sorting key and settings of the tier of `res_ms`'s table.
fn order(res_ms: i64) -> &'static str {
    if res_ms == super::settle::RES_MS {
        "(bucket, segment, metric)"
    } else {
        "(segment, metric, bucket) SETTINGS index_granularity = 256"
    }
}

/// Each tier's table and its view, in creation order.
pub(super) fn ddl() -> Vec<String> {
    let mut out = Vec::new();
    for t in TIERS {
        let r = t.res_ms;
        let masks: Vec<String> = (0..words(r))
            .map(|j| format!("s{j} AggregateFunction(groupBitOr, UInt64)"))
            .collect();
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (segment Int64, metric String, bucket Int64,
                vmin AggregateFunction(min, Float64), vmax AggregateFunction(max, Float64),
                first_ms AggregateFunction(min, Int64), last_ms AggregateFunction(max, Int64),
                {})
             ENGINE = AggregatingMergeTree PARTITION BY toDate(intDiv(bucket, 1000))
             ORDER BY {}",
            table(r),
            masks.join(", "),
            order(r)
        ));
        // The raw rows are picked in a subquery, as ClickHouse 18.16 would
        // otherwise feed the view every row inserted.
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {t}_view TO {t} AS
             SELECT segment, metric, intDiv(ts_ms, {r}) * {r} AS bucket,
                minState(value) AS vmin, maxState(value) AS vmax, minState(ts_ms) AS first_ms,
                maxState(ts_ms) AS last_ms, {}
             FROM (SELECT segment, metric, ts_ms, value FROM samples WHERE res = 0)
             GROUP BY segment, metric, bucket",
            states(r, "ts_ms"),
            t = table(r)
        ));
    }
    out
}

/// The mask states of a tier of `res_ms`, for the sample time `ts`: the
/// bit of its second within its minute, in its minute's word. `-If` skips
/// the other minutes' rows, which is cheaper to insert than an OR of zero.
fn states(res_ms: i64, ts: &str) -> String {
    // Not `%`: ClickHouse 18.16 types `Int64 % UInt16` too narrowly.
    let second = format!("toUInt64(intDiv({ts} - intDiv({ts}, {res_ms}) * {res_ms}, 1000))");
    (0..words(res_ms))
        .map(|j| {
            format!(
                "groupBitOrStateIf(bitShiftLeft(toUInt64(1), {second} % 60),
                    intDiv({second}, 60) = {j}) AS s{j}"
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The merged masks of a group of one bucket's rows of the tier of
/// `res_ms`, as columns `m0`, `m1`, ... for [`count`].
pub(super) fn merged(res_ms: i64) -> String {
    (0..words(res_ms))
        .map(|j| format!("groupBitOrMerge(s{j}) AS m{j}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The count of one bucket of the tier of `res_ms`, from its [`merged`]
/// masks: the seconds set in them. ClickHouse 18.16 has no `bitCount`;
/// the length of `bitmaskToArray` is a third of the envelope statement's
/// time cheaper than counting the bits with shifts and masks, whose long
/// expression cost more to analyze than to run (docs/benchmarks.md).
pub(super) fn count(res_ms: i64) -> String {
    (0..words(res_ms))
        .map(|j| format!("length(bitmaskToArray(m{j}))"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Builds the rollups again from the samples, for a store whose rollups
/// are missing (schema 1) or of an older shape (schema 2: one table for
/// both tiers, counting distinct times): the old views and table are
/// dropped, the tiers' made anew, and filled. A downsampled row stands for
/// `n` samples of its `res`; they are spread evenly over it, a second apart
/// at least, so that the count is right; a replayed row sets the same
/// seconds again.
pub(super) fn rebuild(c: &Client) -> Result<(), ChError> {
    for name in TIERS
        .iter()
        .flat_map(|t| [table(t.res_ms), format!("rollups_{}", t.res_ms)])
    {
        // Schema 2's views had the names the tiers' tables had until 6.
        c.query(&format!("DROP TABLE IF EXISTS {name}_view"))?;
        c.query(&format!("DROP TABLE IF EXISTS {name}"))?;
    }
    c.query("DROP TABLE IF EXISTS rollups")?;
    for statement in ddl() {
        c.query(&statement)?;
    }
    let spread = "ts_ms + toInt64(k) * intDiv(toInt64(greatest(res, 1000)), toInt64(n))";
    for t in TIERS {
        c.query(&format!(
            "INSERT INTO {} SELECT segment, metric, intDiv(t, {r}) * {r} AS bucket,
                minState(lo), maxState(hi), minState(t), maxState(t), {}
             FROM (SELECT segment, metric, vmin AS lo, vmax AS hi, {spread} AS t
                   FROM samples ARRAY JOIN range(n) AS k)
             GROUP BY segment, metric, bucket",
            table(t.res_ms),
            states(t.res_ms, "t"),
            r = t.res_ms
        ))?;
    }
    Ok(())
}

/// Moves a store of schemas 3 to 5, whose tiers' tables were
/// `rollups_<res>`, all sorted by series in the default granules, to the
/// tables of [`table`]: the new tables and views first, then the old rows
/// copied and the old tables dropped. A batch inserted meanwhile reaches
/// both tables and may be copied again, which changes nothing: minimum,
/// maximum and masks take a row twice as once.
pub(super) fn reorder(c: &Client) -> Result<(), ChError> {
    for statement in ddl() {
        c.query(&statement)?;
    }
    for t in TIERS {
        let old = format!("rollups_{}", t.res_ms);
        // A store whose old tables are gone already (a move that stopped
        // before recording the version) has nothing to copy.
        let exists = c.query(&format!("EXISTS TABLE {old} FORMAT RowBinary"))?;
        if exists.first() != Some(&1) {
            continue;
        }
        c.query(&format!(
            "INSERT INTO {} SELECT * FROM {old}",
            table(t.res_ms)
        ))?;
        c.query(&format!("DROP TABLE IF EXISTS {old}_view"))?;
        c.query(&format!("DROP TABLE IF EXISTS {old}"))?;
    }
    Ok(())
}
