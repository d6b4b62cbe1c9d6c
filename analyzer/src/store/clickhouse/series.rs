//! Reads of metric series: points, envelopes (from rollups where a tier
//! serves them, `store::rollup`) and latest values, for one instance or a
//! whole service in one statement.

use std::collections::HashMap;

use super::read::{point, Scope};
use super::rowbinary::{lit, str_list};
use super::settle::{self, Settled};
use super::ClickHouseStore;
use crate::error::Result;
use crate::store::rollup;
use crate::store::*;

impl ClickHouseStore {
    /// The samples of `metrics` in `sel`, one row per stored point with
    /// replays folded: `metric, segment, res, ts_ms, value, lo, hi, k`.
    fn points_sql(&self, scope: &Scope, sel: &Selector, metrics: &[&str]) -> String {
        let times = format!("ts_ms >= {} AND ts_ms <= {}", sel.from_ms, sel.to_ms);
        points_in(scope, metrics, &times)
    }

    pub(super) fn read_series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        let scope = Scope::of(sel);
        let mut points = self.rows(
            &format!(
                "SELECT segment, instance_name, ts_ms, value, lo, hi FROM ({}) {} ORDER BY ts_ms",
                self.points_sql(&scope, sel, &[metric]),
                scope.join
            ),
            point,
        )?;
        points.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.ts_ms.cmp(&b.ts_ms)));
        Ok(points)
    }

    pub(super) fn read_envelope(
        &self,
        sel: &Selector,
        metric: &str,
        bucket_ms: i64,
    ) -> Result<Vec<EnvelopeBucket>> {
        let mut each = self.read_envelope_each(sel, &[metric], bucket_ms)?;
        Ok(each.remove(metric).unwrap_or_default())
    }

    /// Every metric's envelope in one statement: rollups for the whole
    /// buckets of the window where a tier serves it ([`rollup::plan`]),
    /// raw samples for the rest, merged in ClickHouse.
    pub(super) fn read_envelope_each(
        &self,
        sel: &Selector,
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<HashMap<String, Vec<EnvelopeBucket>>> {
        self.envelopes_in(&Scope::of(sel), sel, metrics, bucket_ms)
    }

    /// [`Self::read_envelope_each`] of several instances in one statement,
    /// split by instance.
    pub(super) fn read_envelopes_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<ByInstance<Vec<EnvelopeBucket>>> {
        let scope = Scope::of_instances(sel, instances);
        let mut out: ByInstance<Vec<EnvelopeBucket>> = by_instance(instances);
        for (metric, buckets) in self.envelopes_in(&scope, sel, metrics, bucket_ms)? {
            for b in buckets {
                if let Some(mine) = out.get_mut(&b.instance) {
                    mine.entry(metric.clone()).or_default().push(b);
                }
            }
        }
        Ok(out)
    }

    /// Every metric's envelope over `scope`'s segments in `sel`'s window.
    fn envelopes_in(
        &self,
        scope: &Scope,
        sel: &Selector,
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<HashMap<String, Vec<EnvelopeBucket>>> {
        let w = bucket_ms.max(1);
        let parts = match rollup::plan(sel.from_ms, sel.to_ms, w, crate::select::now_ms()) {
            None => raw_parts(&self.points_sql(scope, sel, metrics), w),
            Some(pieces) => {
                let settled = if pieces.iter().any(|p| p.res_ms() == Some(settle::RES_MS)) {
                    self.settled()?
                } else {
                    Settled::default()
                };
                plan_parts(
                    &Arms {
                        scope,
                        metrics,
                        settled: &settled,
                        w,
                    },
                    &pieces,
                )
            }
        };
        // The arms' parts of one envelope bucket are merged here
        // (`rollup::merge`): grouping them in ClickHouse again took a
        // quarter of a cohort's day (docs/benchmarks.md).
        let rows = self.rows(
            &format!(
                "SELECT metric, segment, service_name, instance_name, t0, t1, lo, hi, k
                 FROM ({parts}) {}",
                scope.join
            ),
            |r| {
                let (metric, segment) = (r.string()?, r.i64()?);
                let part = rollup::Part {
                    service: r.string()?,
                    instance: r.string()?,
                    segment,
                    first_ms: r.i64()?,
                    last_ms: r.i64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                    samples: r.u64()? as i64,
                };
                Ok((metric, part))
            },
        )?;
        let mut by_metric: HashMap<String, Vec<rollup::Part>> = metrics
            .iter()
            .map(|m| ((*m).to_owned(), Vec::new()))
            .collect();
        for (metric, p) in rows {
            by_metric.entry(metric).or_default().push(p);
        }
        Ok(by_metric
            .into_iter()
            .map(|(m, parts)| (m, rollup::merge(parts, w)))
            .collect())
    }

    pub(super) fn read_latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        let scope = Scope::of(sel);
        let rows = self.rows(
            &format!(
                "SELECT segment, instance_name, ts_ms, value, vmin, vmax FROM (
                   SELECT segment, ts_ms, value, vmin, vmax FROM samples
                   WHERE {} AND metric = {} AND ts_ms >= {} AND ts_ms <= {}
                   ORDER BY ts_ms DESC LIMIT 1) {}",
                scope.filter,
                lit(metric),
                sel.from_ms,
                sel.to_ms,
                scope.join
            ),
            point,
        )?;
        Ok(rows.into_iter().next())
    }

    pub(super) fn read_latest_each(
        &self,
        sel: &Selector,
        metrics: &[&str],
    ) -> Result<HashMap<String, Point>> {
        let scope = Scope::of(sel);
        let rows = self.rows(
            &format!(
                "SELECT metric, segment, instance_name, ts, v, lo, hi FROM (
                   SELECT metric, s AS segment, ts, v, lo, hi FROM (
                     SELECT metric, argMax(segment, ts_ms) AS s, max(ts_ms) AS ts,
                         argMax(value, ts_ms) AS v, argMax(vmin, ts_ms) AS lo,
                         argMax(vmax, ts_ms) AS hi
                     FROM samples WHERE {} AND metric IN ({}) AND ts_ms >= {} AND ts_ms <= {}
                     GROUP BY metric)) {}",
                scope.filter,
                str_list(metrics),
                sel.from_ms,
                sel.to_ms,
                scope.join
            ),
            |r| Ok((r.string()?, point(r)?)),
        )?;
        Ok(rows.into_iter().collect())
    }

    /// The latest point of each metric of each of `instances`: one read of
    /// the `latest` table ([`super::latest`]) when the window reaches the
    /// newest data, as the engine's does; else the raw samples, the last
    /// hour first, which holds a live instance's latest points in a
    /// fraction of the window's rows, then the whole window for the
    /// metrics that some instance lacked there.
    pub(super) fn read_latest_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
    ) -> Result<ByInstance<Point>> {
        let mut out: ByInstance<Point> = by_instance(instances);
        let scope = Scope::of_instances(sel, instances);
        let newest = self.rows(&super::latest::sql(&scope, sel, metrics), |r| {
            Ok((r.string()?, point(r)?))
        })?;
        if newest.iter().all(|(_, p)| p.ts_ms <= sel.to_ms) {
            for (metric, p) in newest {
                keep_newest(&mut out, &metric, p);
            }
            return Ok(out);
        }
        let recent = sel.starting(sel.from_ms.max(sel.to_ms - 3_600_000));
        self.latest_into(&recent, instances, metrics, &mut out)?;
        let missing: Vec<&str> = metrics
            .iter()
            .copied()
            .filter(|m| out.values().any(|p| !p.contains_key(*m)))
            .collect();
        if recent.from_ms > sel.from_ms && !missing.is_empty() {
            // Only the missing metrics are asked for, so nothing newer is
            // displaced.
            self.latest_into(sel, instances, &missing, &mut out)?;
        }
        Ok(out)
    }

    /// Adds to `out` each of `instances`' newest point of each metric in
    /// `sel`, from the raw samples.
    fn latest_into(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        out: &mut ByInstance<Point>,
    ) -> Result<()> {
        let scope = Scope::of_instances(sel, instances);
        let rows = self.rows(
            &format!(
                "SELECT metric, segment, instance_name, ts, v, lo, hi FROM (
                   SELECT metric, segment, max(ts_ms) AS ts, argMax(value, ts_ms) AS v,
                       argMax(vmin, ts_ms) AS lo, argMax(vmax, ts_ms) AS hi
                   FROM samples WHERE {} AND metric IN ({}) AND ts_ms >= {} AND ts_ms <= {}
                   GROUP BY metric, segment) {}",
                scope.filter,
                str_list(metrics),
                sel.from_ms,
                sel.to_ms,
                scope.join
            ),
            |r| Ok((r.string()?, point(r)?)),
        )?;
        for (metric, p) in rows {
            keep_newest(out, &metric, p);
        }
        Ok(())
    }
}

/// The samples of `metrics` in `scope` whose times meet `times`, one row
/// per stored point with replays folded: `metric, segment, res, ts_ms,
/// value, lo, hi, k`.
fn points_in(scope: &Scope, metrics: &[&str], times: &str) -> String {
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
fn raw_parts(points: &str, w: i64) -> String {
    format!(
        "SELECT metric, segment, min(ts_ms) AS t0, max(ts_ms) AS t1, min(lo) AS lo,
            max(hi) AS hi, toUInt64(sum(k)) AS k
         FROM ({points}) GROUP BY metric, segment, intDiv(ts_ms, {w})"
    )
}

/// What every arm of one envelope read shares.
struct Arms<'a> {
    scope: &'a Scope,
    metrics: &'a [&'a str],
    settled: &'a Settled,
    /// The envelope's bucket width.
    w: i64,
}

/// The statement's arms for a plan's pieces. A tier's buckets and the
/// raw samples after them are one arm of the tier through its current
/// bucket, and the raw samples of the series that tier cannot serve
/// ([`through_tail`]).
fn plan_parts(a: &Arms, pieces: &[rollup::Piece]) -> String {
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
            settle::ids(&s.pending)
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
/// with samples after `to` in it. Those are looked for only among the
/// series whose newest sample (`latest`) is after `to`, so that a window
/// that ends now reads no raw row. The raw quarter hour at a window's end
/// was most of an envelope's cost, and the current bucket in an arm of its
/// own a quarter of what was left (docs/benchmarks.md).
fn through_tail(a: &Arms, (res, first, last, to): (i64, i64, i64, i64)) -> String {
    let whole = tier_parts(a, (res, first, last + res), Some(to));
    let (scope, metrics) = (a.scope, a.metrics);
    let newer = format!(
        "SELECT segment FROM latest WHERE {} AND metric IN ({}) AND day_ms >= {}
         GROUP BY segment, metric HAVING maxMerge(ts) > {to}",
        scope.filter,
        str_list(metrics),
        last.div_euclid(86_400_000) * 86_400_000
    );
    // The series with samples after `to` in the last bucket, as the filter
    // of the raw read's leading key column.
    let later = format!(
        "SELECT segment, metric FROM {} WHERE segment IN ({newer}) AND {} AND metric IN ({})
           AND bucket = {last}
         GROUP BY segment, metric HAVING maxMerge(last_ms) > {to}",
        super::rollups::table(res),
        scope.filter,
        str_list(metrics),
    );
    let narrowed = Scope {
        filter: format!("segment IN (SELECT segment FROM ({later}))"),
        join: String::new(),
    };
    let times = format!("ts_ms >= {last} AND ts_ms <= {to} AND (segment, metric) IN ({later})");
    format!(
        "{whole} UNION ALL {}",
        raw_parts(&points_in(&narrowed, metrics, &times), a.w)
    )
}
