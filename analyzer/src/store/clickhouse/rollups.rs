//! The rollups on ClickHouse: each tier's buckets as aggregate states in an
//! `AggregatingMergeTree`, filled by a materialized view per tier from the
//! raw samples as they are inserted, folded by merges and by `-Merge` on
//! read ([`crate::store::rollup`] has the plan that reads them).
//!
//! A bucket's count must not grow when a batch is replayed, which the views
//! see again. Minimum and maximum are the same either way; the count is of
//! the **seconds that hold a sample**, kept as bit masks (`groupBitOr`, one
//! 64-bit word per minute of the bucket, 60 bits used), which a replay sets
//! again to the same bits. A count of distinct sample times (`uniqExact`)
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

/// Mask words per bucket: one per minute of the widest tier.
const WORDS: usize = (TIERS[TIERS.len() - 1].res_ms / 60_000) as usize;

/// The rollups table and one view per tier, in creation order.
pub(super) fn ddl() -> Vec<String> {
    let masks: Vec<String> = (0..WORDS)
        .map(|j| format!("s{j} AggregateFunction(groupBitOr, UInt64)"))
        .collect();
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS rollups (segment Int64, metric String, res UInt32,
            bucket Int64, vmin AggregateFunction(min, Float64),
            vmax AggregateFunction(max, Float64), first_ms AggregateFunction(min, Int64),
            last_ms AggregateFunction(max, Int64), {})
         ENGINE = AggregatingMergeTree PARTITION BY (toDate(intDiv(bucket, 1000)), res)
         ORDER BY (segment, metric, res, bucket)",
        masks.join(", ")
    )];
    // The raw rows are picked in a subquery: the output's `res` alias
    // would otherwise stand for the column in the filter.
    for t in TIERS {
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS rollups_{r} TO rollups AS
             SELECT segment, metric, toUInt32({r}) AS res, intDiv(ts_ms, {r}) * {r} AS bucket,
                minState(value) AS vmin, maxState(value) AS vmax, minState(ts_ms) AS first_ms,
                maxState(ts_ms) AS last_ms, {}
             FROM (SELECT segment, metric, ts_ms, value FROM samples WHERE res = 0)
             GROUP BY segment, metric, bucket",
            states(t.res_ms, "ts_ms"),
            r = t.res_ms
        ));
    }
    out
}

/// The mask states of a tier of `res_ms`, for the sample time `ts`: the
/// bit of its second within its minute, in its minute's word. Every word
/// is written (ClickHouse 18.16's views fill no defaults); those past the
/// tier's minutes are empty.
fn states(res_ms: i64, ts: &str) -> String {
    // Not `%`: ClickHouse 18.16 types `Int64 % UInt16` too narrowly.
    let second = format!("toUInt64(intDiv({ts} - intDiv({ts}, {res_ms}) * {res_ms}, 1000))");
    let minutes = (res_ms / 60_000).max(1) as usize;
    (0..WORDS)
        .map(|j| {
            // `-If` skips the other minutes' rows: cheaper to insert than
            // an OR of zero (docs/benchmarks.md).
            if j < minutes {
                format!(
                    "groupBitOrStateIf(bitShiftLeft(toUInt64(1), {second} % 60),
                        intDiv({second}, 60) = {j}) AS s{j}"
                )
            } else {
                format!("groupBitOrStateIf(toUInt64(0), 0) AS s{j}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The count of a group of one bucket's rows: the seconds set in its
/// merged masks.
pub(super) fn count() -> String {
    (0..WORDS)
        .map(|j| popcount(&format!("groupBitOrMerge(s{j})")))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The set bits of the `UInt64` expression `x` (Hacker's Delight 5-1).
/// Every step stays below 2^63, so ClickHouse's signed results of
/// subtraction and addition do not matter.
fn popcount(x: &str) -> String {
    let x1 = format!("toUInt64({x} - bitAnd(bitShiftRight({x}, 1), 6148914691236517205))");
    let x2 = format!(
        "toUInt64(bitAnd({x1}, 3689348814741910323) + bitAnd(bitShiftRight({x1}, 2), 3689348814741910323))"
    );
    format!(
        "bitShiftRight(toUInt64(bitAnd({x2} + bitShiftRight({x2}, 4), 1085102592571150095) * 72340172838076673), 56)"
    )
}

/// Builds the rollups again from the samples, for a store whose rollups
/// are missing (schema 1) or of an older shape (schema 2, which counted
/// distinct times): the views and the table are dropped, made anew, and
/// filled. A downsampled row stands for `n` samples of its `res`; they are
/// spread evenly over it, one second apart at least, so that the count is
/// right; a replayed row sets the same seconds again.
pub(super) fn rebuild(c: &Client) -> Result<(), ChError> {
    for t in TIERS {
        c.query(&format!("DROP TABLE IF EXISTS rollups_{}", t.res_ms))?;
    }
    c.query("DROP TABLE IF EXISTS rollups")?;
    for statement in ddl() {
        c.query(&statement)?;
    }
    let spread = "ts_ms + toInt64(k) * intDiv(toInt64(greatest(res, 1000)), toInt64(n))";
    for t in TIERS {
        c.query(&format!(
            "INSERT INTO rollups SELECT segment, metric, toUInt32({r}) AS res,
                intDiv(t, {r}) * {r} AS bucket, minState(lo), maxState(hi), minState(t),
                maxState(t), {}
             FROM (SELECT segment, metric, vmin AS lo, vmax AS hi, {spread} AS t
                   FROM samples ARRAY JOIN range(n) AS k)
             GROUP BY segment, metric, bucket",
            states(t.res_ms, "t"),
            r = t.res_ms
        ))?;
    }
    Ok(())
}
