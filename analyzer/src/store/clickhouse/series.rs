//! Reads of metric series: points, envelopes (from rollups where a tier
//! serves them, `store::rollup`) and latest values, for one instance or a
//! whole service in one statement.

use std::collections::HashMap;
use std::sync::Arc;

use super::arms::{self, points_in, raw_parts, Arms};
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
            // By segment first, an integer, and then by instance once per
            // segment: hashing each bucket's instance name was a tenth of
            // judging a fleet.
            let mut by_segment: fnv::FnvHashMap<i64, Vec<EnvelopeBucket>> = Default::default();
            for b in buckets {
                by_segment.entry(b.segment).or_default().push(b);
            }
            for (_, seg) in by_segment {
                let Some(mine) = out.get_mut(&*seg[0].instance) else {
                    continue;
                };
                let all = mine.entry(metric.clone()).or_default();
                let restarted = !all.is_empty();
                all.extend(seg);
                if restarted {
                    all.sort_by_key(|b| (b.ts_ms, b.segment));
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
            Some(pieces) => self.plan_sql(scope, metrics, &pieces, w)?,
        };
        // The arms' parts of one envelope bucket are merged here
        // (`rollup::merge`): grouping them in ClickHouse again took a
        // quarter of a cohort's day (docs/benchmarks.md). A row names its
        // metric by its place in `metrics` and its series by segment
        // alone: a cohort's day is a hundred thousand rows, and their
        // names were half of its bytes.
        let rows = self.rows(
            &format!(
                "SELECT toUInt32(indexOf([{}], metric)), segment, t0, t1, lo, hi, k
                 FROM ({parts})",
                str_list(metrics)
            ),
            |r| {
                Ok((
                    r.u32()?,
                    r.i64()?,
                    r.i64()?,
                    r.i64()?,
                    r.f64()?,
                    r.f64()?,
                    r.u64()?,
                ))
            },
        )?;
        let mut segments: Vec<i64> = rows.iter().map(|r| r.1).collect();
        segments.sort_unstable();
        segments.dedup();
        let by_metric = named_parts(rows, &self.segment_names(&segments)?, metrics.len());
        Ok(metrics
            .iter()
            .zip(by_metric)
            .map(|(m, parts)| ((*m).to_owned(), rollup::merge(parts, w)))
            .collect())
    }

    /// The statement of a plan's arms, with what they need read first:
    /// how far settling has come, and which series run past the window.
    fn plan_sql(
        &self,
        scope: &Scope,
        metrics: &[&str],
        pieces: &[rollup::Piece],
        w: i64,
    ) -> Result<String> {
        let settled = if pieces.iter().any(|p| p.res_ms() == Some(settle::RES_MS)) {
            self.settled()?
        } else {
            Settled::default()
        };
        let later = match arms::tail_of(pieces) {
            Some(tail) => self.rows(&arms::later_sql(scope, metrics, tail), |r| {
                Ok((r.i64()?, r.string()?))
            })?,
            None => Vec::new(),
        };
        let arms = Arms {
            scope,
            metrics,
            settled: &settled,
            w,
            later: &later,
        };
        Ok(arms::plan_parts(&arms, pieces))
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

/// An envelope row: the metric's place in the read's list (from 1),
/// segment, first and last time, floor, peak and count.
type Row = (u32, i64, i64, i64, f64, f64, u64);

/// `rows` as parts by metric, each with its segment's names (empty for a
/// segment the store no longer holds).
fn named_parts(
    rows: Vec<Row>,
    names: &fnv::FnvHashMap<i64, rollup::Names>,
    metrics: usize,
) -> Vec<Vec<rollup::Part>> {
    let unknown: rollup::Names = (Arc::from(""), Arc::from(""));
    let mut by_metric: Vec<Vec<rollup::Part>> = vec![Vec::new(); metrics];
    for (m, segment, first_ms, last_ms, min, max, k) in rows {
        let Some(parts) = (m as usize)
            .checked_sub(1)
            .and_then(|m| by_metric.get_mut(m))
        else {
            continue;
        };
        let (service, instance) = names.get(&segment).unwrap_or(&unknown).clone();
        parts.push(rollup::Part {
            service,
            instance,
            segment,
            first_ms,
            last_ms,
            min,
            max,
            samples: k as i64,
        });
    }
    by_metric
}
