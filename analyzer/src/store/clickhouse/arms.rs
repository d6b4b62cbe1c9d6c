//! The arms of one envelope statement on ClickHouse, one per piece of the
//! plan (`store::rollup::plan`): settled buckets, rollup states, raw
//! samples. Each arm yields parts (`metric, segment, t0, t1, lo, hi, k`) of
//! envelope buckets, which the caller merges (`rollup::merge`).

use super::read::Scope;
use super::rowbinary::{id_list, lit, str_list};
use super::settle::{self, Settled};
use crate::store::rollup;

/// The samples of `metrics` in `scope` whose times meet `times`, one row
/// per stored point with replays folded: `metric, segment, res, ts_ms,
/// value, lo, hi, k`.
pub(super) fn points_in(scope: &Scope, metrics: &[&str], times: &str) -> String {
    format!(
        "SELECT metric, segment, res, ts_ms, any(value) AS value, any(vmin) AS lo,
            any(vmax) AS hi, any(n) AS k
         FROM samples WHERE {} AND metric IN ({}) AND {times}
         GROUP BY metric, segment, res, ts_ms",
        scope.filter,
        str_list(metrics),
    )
}

/// Points (from [`points_in`]) by metric, segment and envelope bucket of
/// width `w`: `metric, segment, t0, t1, lo, hi, k`.
pub(super) fn raw_parts(points: &str, w: i64) -> String {
    format!(
        "SELECT metric, segment, min(ts_ms) AS t0, max(ts_ms) AS t1, min(lo) AS lo,
            max(hi) AS hi, toUInt64(sum(k)) AS k
         FROM ({points}) GROUP BY metric, segment, intDiv(ts_ms, {w})"
    )
}

/// What every arm of one envelope read shares.
pub(super) struct Arms<'a> {
    pub scope: &'a Scope,
    pub metrics: &'a [&'a str],
    pub settled: &'a Settled,
    /// The envelope's bucket width.
    pub w: i64,
    /// The series with samples after the window's end in its last bucket
    /// ([`later_sql`]), read before the statement.
    pub later: &'a [(i64, String)],
}

/// The statement's arms for a plan's pieces. A tier's buckets and the
/// raw samples after them are one arm of the tier through its current
/// bucket, and the raw samples of the series that tier cannot serve
/// ([`through_tail`]).
pub(super) fn plan_parts(a: &Arms, pieces: &[rollup::Piece]) -> String {
    let mut arms = Vec::with_capacity(pieces.len());
    let mut tier = None;
    for p in pieces {
        match *p {
            rollup::Piece::Tier {
                res_ms,
                from_ms,
                to_ms,
            } => tier = Some((res_ms, from_ms, to_ms)),
            rollup::Piece::Raw { from_ms, to_ms } => match tier.take() {
                Some((res, first, last)) if from_ms == last => {
                    arms.push(through_tail(a, (res, first, last, to_ms)));
                }
                earlier => {
                    let times = format!("ts_ms >= {from_ms} AND ts_ms <= {to_ms}");
                    arms.extend(earlier.map(|t| tier_parts(a, t, None)));
                    arms.push(raw_parts(&points_in(a.scope, a.metrics, &times), a.w));
                }
            },
        }
    }
    arms.extend(tier.map(|t| tier_parts(a, t, None)));
    arms.join(" UNION ALL ")
}

/// A tier's buckets of width `res` starting in `[from, to)`, by metric,
/// segment and envelope bucket, in the columns of [`raw_parts`]: those
/// settled from the settled table ([`settle::arm`]), the rest from the
/// rollups. `upto`, when given, leaves out a bucket whose last sample is
/// after it.
fn tier_parts(a: &Arms, (res, from, to): (i64, i64, i64), upto: Option<i64>) -> String {
    let s = a.settled;
    let mid = s.through_ms.clamp(from, to);
    if res != settle::RES_MS || mid == from {
        return rollup_parts(a, (res, from, to), upto, "");
    }
    let settled = settle::arm(
        &a.scope.filter,
        &str_list(a.metrics),
        (from, mid),
        a.w,
        &s.pending,
        upto,
    );
    // The late segments' settled buckets are read from the rollups too.
    let rest = if s.pending.is_empty() {
        (mid < to).then(|| rollup_parts(a, (res, mid, to), upto, ""))
    } else {
        let or_late = format!(
            "AND (bucket >= {mid} OR segment IN ({}))",
            id_list(&s.pending)
        );
        Some(rollup_parts(a, (res, from, to), upto, &or_late))
    };
    match rest {
        Some(r) => format!("{settled} UNION ALL {r}"),
        None => settled,
    }
}

/// A tier's rollup buckets of width `res` starting in `[from, to)` (and
/// meeting `and`), by metric, segment and envelope bucket of width `w`, in
/// the columns of [`raw_parts`].
/// Each tier bucket's count is taken before buckets are summed into
/// envelope buckets: its masks mark seconds of its own span. The masks are
/// merged in one `SELECT` and counted in the next: counting inside the
/// aggregate's `SELECT` took over a quarter of the tier's read
/// (docs/benchmarks.md).
fn rollup_parts(
    a: &Arms,
    (res, from, to): (i64, i64, i64),
    upto: Option<i64>,
    and: &str,
) -> String {
    let having = upto.map_or(String::new(), |t| format!("HAVING b1 <= {t}"));
    format!(
        "SELECT metric, segment, min(b0) AS t0, max(b1) AS t1, min(blo) AS lo, max(bhi) AS hi,
            toUInt64(sum({})) AS k
         FROM (SELECT metric, segment, bucket, minMerge(first_ms) AS b0,
                 maxMerge(last_ms) AS b1, minMerge(vmin) AS blo, maxMerge(vmax) AS bhi, {}
               FROM {} WHERE {} AND metric IN ({}) AND bucket >= {} AND bucket < {} {and}
               GROUP BY metric, segment, bucket {having})
         GROUP BY metric, segment, intDiv(bucket, {})",
        super::rollups::count(res),
        super::rollups::merged(res),
        super::rollups::table(res),
        a.scope.filter,
        str_list(a.metrics),
        from,
        to,
        a.w
    )
}

/// A tier's buckets `[first, last)` and the window's last, partial one,
/// `[last, to]`, of width `res`, in one arm: the tier's buckets through the
/// current one for each series whose last sample in it is no later than
/// `to` (then it holds exactly the window's samples: a window that ends
/// now, as the engine's does); and an arm of the raw samples of the series
/// with samples after `to` in it ([`Arms::later`]), when there are any. The
/// raw quarter hour at a window's end was most of an envelope's cost, and
/// the current bucket in an arm of its own a quarter of what was left; the
/// later series looked for inside the statement, when there were none,
/// half of what was left after settling (docs/benchmarks.md).
fn through_tail(a: &Arms, (res, first, last, to): (i64, i64, i64, i64)) -> String {
    let whole = tier_parts(a, (res, first, last + res), Some(to));
    if a.later.is_empty() {
        return whole;
    }
    let segments: Vec<i64> = a.later.iter().map(|(s, _)| *s).collect();
    let pairs: Vec<String> = a
        .later
        .iter()
        .map(|(s, m)| format!("({s}, {})", lit(m)))
        .collect();
    let narrowed = Scope {
        filter: format!("segment IN ({})", id_list(&segments)),
        join: String::new(),
    };
    let times = format!(
        "ts_ms >= {last} AND ts_ms <= {to} AND (segment, metric) IN ({})",
        pairs.join(", ")
    );
    format!(
        "{whole} UNION ALL {}",
        raw_parts(&points_in(&narrowed, a.metrics, &times), a.w)
    )
}

/// The window's last tier bucket `last` of width `res` and its end `to`,
/// when the plan reads the tier through its current bucket.
pub(super) fn tail_of(pieces: &[rollup::Piece]) -> Option<(i64, i64, i64)> {
    pieces.windows(2).find_map(|w| match (w[0], w[1]) {
        (
            rollup::Piece::Tier {
                res_ms,
                to_ms: last,
                ..
            },
            rollup::Piece::Raw { from_ms, to_ms },
        ) if from_ms == last => Some((res_ms, last, to_ms)),
        _ => None,
    })
}

/// The series of `scope` with samples after `to` in the bucket `last` of
/// the tier of `res`: `segment, metric`. On the tier sorted by bucket that
/// bucket is a range of its own; on the other, the series are first
/// narrowed to those whose newest sample (`latest`) is after `to`.
pub(super) fn later_sql(
    scope: &Scope,
    metrics: &[&str],
    (res, last, to): (i64, i64, i64),
) -> String {
    let narrowed = if res == settle::RES_MS {
        String::new()
    } else {
        format!(
            "segment IN (SELECT segment FROM latest WHERE {} AND metric IN ({}) AND day_ms >= {}
               GROUP BY segment, metric HAVING maxMerge(ts) > {to}) AND",
            scope.filter,
            str_list(metrics),
            last.div_euclid(86_400_000) * 86_400_000
        )
    };
    format!(
        "SELECT segment, metric FROM {} WHERE {narrowed} {} AND metric IN ({})
           AND bucket = {last}
         GROUP BY segment, metric HAVING maxMerge(last_ms) > {to}",
        super::rollups::table(res),
        scope.filter,
        str_list(metrics),
    )
}
