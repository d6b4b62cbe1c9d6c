//! Every read. A selector first becomes the ids of its segments (a small
//! query on `segments`), and each data query then reads those segments'
//! rows by the tables' sorting keys. Replayed rows are folded by a
//! `GROUP BY` on the sorting key before anything is counted, and every
//! envelope is computed in ClickHouse: only buckets cross the network.

use std::collections::HashMap;

use super::rowbinary::{id_list, lit, str_list, RowReader};
use super::{ChError, ClickHouseStore};
use crate::error::{Error, Result};
use crate::store::rollup;
use crate::store::*;
use heaptide_wire::pprof::Frame;

/// The segments of a selector, as SQL: a filter on a `segment` column,
/// and a join that names each segment's service and instance. Both are
/// subqueries of the one statement, so a read is one round trip.
struct Scope {
    filter: String,
    join: String,
}

impl Scope {
    fn of(sel: &Selector) -> Scope {
        let names = names_clause(sel.service.as_deref(), sel.instance.as_deref());
        Scope {
            // A segment heard from before the window holds nothing of it;
            // one first heard from after it may (a backfill), as in SQLite.
            filter: format!(
                "segment IN (SELECT id FROM segments WHERE {names} GROUP BY id
                   HAVING max(last_seen_ms) >= {})",
                sel.from_ms
            ),
            join: format!(
                "ANY LEFT JOIN (SELECT id AS segment, any(service) AS service_name,
                   any(instance) AS instance_name FROM segments WHERE {names} GROUP BY id)
                 USING segment"
            ),
        }
    }
}

fn names_clause(service: Option<&str>, instance: Option<&str>) -> String {
    let mut c = vec!["1".to_owned()];
    if let Some(s) = service {
        c.push(format!("service = {}", lit(s)));
    }
    if let Some(i) = instance {
        c.push(format!("instance = {}", lit(i)));
    }
    c.join(" AND ")
}

/// `segment, instance_name, ts_ms, value, min, max`.
fn point(r: &mut RowReader) -> Result<Point, ChError> {
    let segment = r.i64()?;
    Ok(Point {
        instance: r.string()?,
        segment,
        ts_ms: r.i64()?,
        value: r.f64()?,
        min: r.f64()?,
        max: r.f64()?,
    })
}

fn site_point(r: &mut RowReader) -> Result<SitePoint, ChError> {
    Ok(SitePoint {
        profile_id: r.i64()?,
        ts_ms: r.i64()?,
        stack_id: r.i64()?,
        bytes: r.i64()?,
        objects: r.i64()?,
    })
}

/// One row of `instances`: the newest segment's fields, with the
/// instance's first-seen time and segment count.
fn instance_row(r: &mut RowReader) -> Result<InstanceInfo, ChError> {
    let (service, instance, host) = (r.string()?, r.string()?, r.string()?);
    let (pid, start_time_ms, agent_version) = (r.u32()?, r.i64()?, r.string()?);
    let labels = r.string()?;
    let (first_seen_ms, last_seen_ms, segments) = (r.i64()?, r.i64()?, r.u64()?);
    let (heap_profiling, reason, stats) = (r.u8()?, r.opt_string()?, r.string()?);
    Ok(InstanceInfo {
        service,
        instance,
        host,
        pid,
        start_time_ms,
        agent_version,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        first_seen_ms,
        last_seen_ms,
        segments: segments as u32,
        heap_profiling: heap_profiling != 0,
        heap_profiling_reason: reason,
        agent_stats: serde_json::from_str(&stats).unwrap_or_default(),
    })
}

impl ClickHouseStore {
    pub(super) fn read_instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.rows(
            &format!(
                "SELECT service, instance, argMax(h, ls), argMax(p, ls), argMax(st, ls),
                    argMax(v, ls), argMax(lb, ls), min(fs), max(ls), count(),
                    argMax(hp, ls), argMax(hr, ls), argMax(stats, ls)
                 FROM (SELECT service, instance, id, argMax(host, last_seq) AS h,
                         argMax(pid, last_seq) AS p, argMax(start_time_ms, last_seq) AS st,
                         argMax(agent_version, last_seq) AS v, argMax(labels, last_seq) AS lb,
                         min(first_seen_ms) AS fs, max(last_seen_ms) AS ls,
                         argMax(heap_profiling, last_seq) AS hp,
                         argMax(heap_profiling_reason, last_seq) AS hr,
                         argMax(agent_stats, last_seq) AS stats
                       FROM segments WHERE {} GROUP BY service, instance, id)
                 GROUP BY service, instance ORDER BY service, instance",
                names_clause(service, None)
            ),
            instance_row,
        )
    }

    pub(super) fn read_segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>> {
        self.rows(
            &format!(
                "SELECT id, argMax(pid, last_seq), argMax(start_time_ms, last_seq),
                    min(first_seen_ms) AS fs, max(last_seen_ms), argMax(labels, last_seq)
                 FROM segments WHERE {} GROUP BY id ORDER BY fs",
                names_clause(Some(service), Some(instance))
            ),
            |r| {
                let (id, pid, start_time_ms) = (r.i64()?, r.u32()?, r.i64()?);
                let (first_seen_ms, last_seen_ms, labels) = (r.i64()?, r.i64()?, r.string()?);
                Ok(Segment {
                    id,
                    pid,
                    start_time_ms,
                    first_seen_ms,
                    last_seen_ms,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                })
            },
        )
    }

    pub(super) fn read_metric_names(
        &self,
        service: &str,
        instance: Option<&str>,
    ) -> Result<Vec<String>> {
        let scope = Scope::of(&Selector {
            service: Some(service.to_owned()),
            instance: instance.map(str::to_owned),
            from_ms: 0,
            to_ms: i64::MAX,
        });
        self.rows(
            &format!(
                "SELECT DISTINCT metric FROM samples WHERE {} ORDER BY metric",
                scope.filter
            ),
            |r| r.string(),
        )
    }

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
        let scope = Scope::of(sel);
        let w = bucket_ms.max(1);
        let plan = rollup::plan(sel.from_ms, sel.to_ms, w, crate::select::now_ms());
        let parts = match &plan {
            None => raw_parts(&self.points_sql(&scope, sel, metrics), w),
            Some(p) => {
                let mut parts = vec![rollup_parts(&scope, metrics, p, w)];
                for (a, b) in &p.edges {
                    let times = format!("ts_ms >= {a} AND ts_ms <= {b}");
                    parts.push(raw_parts(&points_in(&scope, metrics, &times), w));
                }
                parts.join(" UNION ALL ")
            }
        };
        let rows = self.rows(
            &format!(
                "SELECT metric, segment, service_name, instance_name, f0, f1, flo, fhi, fk FROM (
                   SELECT metric, segment, min(t0) AS f0, max(t1) AS f1, min(lo) AS flo,
                       max(hi) AS fhi, sum(k) AS fk
                   FROM ({parts}) GROUP BY metric, segment, intDiv(t0, {w}))
                 {}",
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

    /// The latest point of each metric of each instance: the last hour
    /// first, which holds a live instance's latest points in a fraction of
    /// the window's rows, then the whole window for the metrics that some
    /// instance lacked there. Two statements at most.
    pub(super) fn read_latest_by_instance(
        &self,
        sel: &Selector,
        metrics: &[&str],
    ) -> Result<HashMap<String, HashMap<String, Point>>> {
        let mut out: HashMap<String, HashMap<String, Point>> = HashMap::new();
        let recent = sel.starting(sel.from_ms.max(sel.to_ms - 3_600_000));
        self.latest_into(&recent, metrics, &mut out)?;
        let instances = self.read_instances(sel.service.as_deref())?;
        let instances: Vec<_> = instances
            .iter()
            .filter(|i| sel.instance.as_deref().is_none_or(|x| x == i.instance))
            .collect();
        let missing: Vec<&str> = metrics
            .iter()
            .copied()
            .filter(|m| {
                instances
                    .iter()
                    .any(|i| out.get(&i.instance).is_none_or(|p| !p.contains_key(*m)))
            })
            .collect();
        if recent.from_ms > sel.from_ms && !missing.is_empty() {
            let mut older = HashMap::new();
            self.latest_into(sel, &missing, &mut older)?;
            for (instance, points) in older {
                let have = out.entry(instance).or_default();
                for (m, p) in points {
                    have.entry(m).or_insert(p);
                }
            }
        }
        for i in instances {
            out.entry(i.instance.clone()).or_default();
        }
        Ok(out)
    }

    /// Adds to `out` each instance's newest point of each metric in `sel`.
    fn latest_into(
        &self,
        sel: &Selector,
        metrics: &[&str],
        out: &mut HashMap<String, HashMap<String, Point>>,
    ) -> Result<()> {
        let scope = Scope::of(sel);
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
            let slot = out.entry(p.instance.clone()).or_default();
            match slot.get(&metric) {
                Some(have) if have.ts_ms >= p.ts_ms => {}
                _ => {
                    slot.insert(metric, p);
                }
            }
        }
        Ok(())
    }

    pub(super) fn read_pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        let scope = Scope::of(sel);
        self.rows(
            &format!(
                "SELECT instance_name, start_ms, duration_ms, source, name FROM (
                   SELECT DISTINCT segment, start_ms, duration_ms, source, name FROM pauses
                   WHERE {} AND start_ms >= {} AND start_ms <= {}
                   ORDER BY start_ms LIMIT 10000) {} ORDER BY start_ms",
                scope.filter, sel.from_ms, sel.to_ms, scope.join
            ),
            |r| {
                let instance = r.string()?;
                let (start_ms, duration_ms, source) = (r.i64()?, r.f64()?, r.string()?);
                Ok(StoredPause {
                    instance,
                    start_ms,
                    duration_ms,
                    source: heaptide_wire::PauseSource::parse(&source).ok_or_else(|| {
                        ChError::Decode(format!("unknown pause source {source:?}"))
                    })?,
                    name: r.string()?,
                })
            },
        )
    }

    fn profile_rows(&self, scope: &Scope, filter: &str) -> Result<Vec<StoredProfile>> {
        self.rows(
            &format!(
                "SELECT id, instance_name, segment, ts_ms, sp, tb, tob FROM (
                   SELECT id, segment, ts_ms, any(sample_period) AS sp, any(total_bytes) AS tb,
                       any(total_objects) AS tob
                   FROM profiles WHERE {} AND {filter} GROUP BY id, segment, ts_ms) {}",
                scope.filter, scope.join
            ),
            |r| {
                Ok(StoredProfile {
                    id: r.i64()?,
                    instance: r.string()?,
                    segment: r.i64()?,
                    ts_ms: r.i64()?,
                    sample_period_bytes: r.u64()?,
                    total_bytes: r.i64()?,
                    total_objects: r.i64()?,
                })
            },
        )
    }

    pub(super) fn read_profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        let filter = format!("ts_ms >= {} AND ts_ms <= {}", sel.from_ms, sel.to_ms);
        let mut out = self.profile_rows(&Scope::of(sel), &filter)?;
        out.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.ts_ms.cmp(&b.ts_ms)));
        Ok(out)
    }

    pub(super) fn read_profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>> {
        let scope = Scope::of(&Selector::all(0, i64::MAX).for_instance(service, instance));
        let filter = format!(
            "ts_ms = (SELECT ts_ms FROM profiles WHERE {} ORDER BY abs(ts_ms - {at_ms}) LIMIT 1)",
            scope.filter
        );
        Ok(self.profile_rows(&scope, &filter)?.into_iter().next())
    }

    /// Where a profile's rows are: its segment and time, which lead the
    /// sorting key of the per-stack tables.
    fn profile_place(&self, profile_id: i64) -> Result<Option<(i64, i64)>> {
        let rows = self.rows(
            &format!("SELECT segment, ts_ms FROM profiles WHERE id = {profile_id} LIMIT 1"),
            |r| Ok((r.i64()?, r.i64()?)),
        )?;
        Ok(rows.into_iter().next())
    }

    pub(super) fn read_profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>> {
        let Some((seg, ts)) = self.profile_place(profile_id)? else {
            return Ok(Vec::new());
        };
        self.rows(
            &format!(
                "SELECT stack, any(bytes), any(objects) FROM profile_stacks
                 WHERE segment = {seg} AND ts_ms = {ts} AND profile = {profile_id} GROUP BY stack"
            ),
            |r| {
                Ok(StackValue {
                    stack_id: r.i64()?,
                    bytes: r.i64()?,
                    objects: r.i64()?,
                })
            },
        )
    }

    pub(super) fn read_profile_ages(&self, profile_id: i64) -> Result<HashMap<i64, Ages>> {
        let Some((seg, ts)) = self.profile_place(profile_id)? else {
            return Ok(HashMap::new());
        };
        let rows = self.rows(
            &format!(
                "SELECT stack, any(ages) FROM profile_ages
                 WHERE segment = {seg} AND ts_ms = {ts} AND profile = {profile_id} GROUP BY stack"
            ),
            |r| Ok((r.i64()?, r.u64s()?)),
        )?;
        // A row of another length is skipped, not fatal: ages only refine
        // the ranking.
        Ok(rows
            .into_iter()
            .filter_map(|(id, v)| Ages::try_from(v.as_slice()).ok().map(|a| (id, a)))
            .collect())
    }

    pub(super) fn read_profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>> {
        let raw = self.rows(
            &format!("SELECT pprof FROM profile_raw WHERE id = {profile_id} LIMIT 1"),
            |r| Ok(r.bytes()?.to_vec()),
        )?;
        if let Some(bytes) = raw.into_iter().next() {
            return Ok(Some(bytes));
        }
        match self.profile_place(profile_id)? {
            Some(_) => Ok(None),
            None => Err(Error::NotFound(format!("profile {profile_id}"))),
        }
    }

    pub(super) fn read_site_points(
        &self,
        sel: &Selector,
        stack: Option<i64>,
    ) -> Result<Vec<SitePoint>> {
        let scope = Scope::of(sel);
        let one = stack.map_or(String::new(), |s| format!("AND stack = {s}"));
        self.rows(
            &format!(
                "SELECT profile, ts_ms, stack, any(bytes), any(objects) FROM profile_stacks
                 WHERE {} AND ts_ms >= {} AND ts_ms <= {} {one}
                 GROUP BY segment, ts_ms, stack, profile ORDER BY ts_ms",
                scope.filter, sel.from_ms, sel.to_ms
            ),
            site_point,
        )
    }

    pub(super) fn read_stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>> {
        let mut found: HashMap<i64, Vec<Frame>> = HashMap::new();
        // Bounded statements: a flamegraph may ask for many thousands.
        for chunk in ids.chunks(10_000) {
            let rows = self.rows(
                &format!(
                    "SELECT id, any(frames) FROM stacks WHERE id IN ({}) GROUP BY id",
                    id_list(chunk)
                ),
                |r| Ok((r.i64()?, r.string()?)),
            )?;
            for (id, json) in rows {
                found.insert(id, serde_json::from_str(&json).unwrap_or_default());
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| found.remove(id).map(|f| (*id, f)))
            .collect())
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

/// A plan's rollup buckets by metric, segment and envelope bucket of width
/// `w`, in the columns of [`raw_parts`].
fn rollup_parts(scope: &Scope, metrics: &[&str], p: &rollup::Plan, w: i64) -> String {
    format!(
        "SELECT metric, segment, minMerge(first_ms) AS t0, maxMerge(last_ms) AS t1,
            minMerge(vmin) AS lo, maxMerge(vmax) AS hi, toUInt64(uniqExactMerge(n)) AS k
         FROM rollups WHERE {} AND metric IN ({}) AND res = {} AND bucket >= {}
           AND bucket < {}
         GROUP BY metric, segment, intDiv(bucket, {w})",
        scope.filter,
        str_list(metrics),
        p.res_ms,
        p.from_ms,
        p.to_ms
    )
}
