//! Every read. A selector first becomes the ids of its segments (a small
//! query on `segments`), and each data query then reads those segments'
//! rows by the tables' sorting keys. Replayed rows are folded by a
//! `GROUP BY` on the sorting key before anything is counted, and every
//! envelope is computed in ClickHouse: only buckets cross the network.

use std::collections::HashMap;

use super::rowbinary::{id_list, lit, RowReader};
use super::{ChError, ClickHouseStore};
use crate::error::{Error, Result};
use crate::store::*;
use heaptide_wire::pprof::Frame;

/// A selected segment and the names it is shown under.
struct Seg {
    service: String,
    instance: String,
}

/// The segments of a selector, by id.
struct Segs(HashMap<i64, Seg>);

impl Segs {
    fn ids(&self) -> String {
        let ids: Vec<i64> = self.0.keys().copied().collect();
        id_list(&ids)
    }

    fn instance(&self, id: i64) -> String {
        self.0
            .get(&id)
            .map(|s| s.instance.clone())
            .unwrap_or_default()
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

fn point(segs: &Segs, r: &mut RowReader) -> Result<Point, ChError> {
    let segment = r.i64()?;
    Ok(Point {
        instance: segs.instance(segment),
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
    fn segs(&self, sel: &Selector) -> Result<Segs> {
        let rows = self.rows(
            &format!(
                "SELECT id, any(service), any(instance) FROM segments WHERE {}
                 GROUP BY id HAVING max(last_seen_ms) >= {} AND min(first_seen_ms) <= {}",
                names_clause(sel.service.as_deref(), sel.instance.as_deref()),
                sel.from_ms,
                sel.to_ms
            ),
            |r| {
                Ok((
                    r.i64()?,
                    Seg {
                        service: r.string()?,
                        instance: r.string()?,
                    },
                ))
            },
        )?;
        Ok(Segs(rows.into_iter().collect()))
    }

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
        let segs = self.segs(&Selector {
            service: Some(service.to_owned()),
            instance: instance.map(str::to_owned),
            from_ms: 0,
            to_ms: i64::MAX,
        })?;
        self.rows(
            &format!(
                "SELECT DISTINCT metric FROM samples WHERE segment IN ({}) ORDER BY metric",
                segs.ids()
            ),
            |r| r.string(),
        )
    }

    /// The samples of `metric` in `sel`, one row per stored point with
    /// replays folded: `segment, res, ts_ms, value, vmin, vmax, n`.
    fn points_sql(&self, segs: &Segs, sel: &Selector, metric: &str) -> String {
        format!(
            "SELECT segment, res, ts_ms, any(value) AS value, any(vmin) AS lo,
                any(vmax) AS hi, any(n) AS k
             FROM samples WHERE segment IN ({}) AND metric = {} AND ts_ms >= {} AND ts_ms <= {}
             GROUP BY segment, res, ts_ms",
            segs.ids(),
            lit(metric),
            sel.from_ms,
            sel.to_ms
        )
    }

    pub(super) fn read_series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        let segs = self.segs(sel)?;
        let mut points = self.rows(
            &format!(
                "SELECT segment, ts_ms, value, lo, hi FROM ({}) ORDER BY ts_ms",
                self.points_sql(&segs, sel, metric)
            ),
            |r| point(&segs, r),
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
        let segs = self.segs(sel)?;
        self.rows(
            &format!(
                "SELECT segment, intDiv(min(ts_ms) + max(ts_ms), 2) AS mid, min(ts_ms),
                    min(lo), max(hi), sum(k)
                 FROM ({}) GROUP BY segment, intDiv(ts_ms, {}) ORDER BY mid",
                self.points_sql(&segs, sel, metric),
                bucket_ms.max(1)
            ),
            |r| {
                let segment = r.i64()?;
                let seg = segs.0.get(&segment);
                Ok(EnvelopeBucket {
                    service: seg.map(|s| s.service.clone()).unwrap_or_default(),
                    instance: seg.map(|s| s.instance.clone()).unwrap_or_default(),
                    segment,
                    ts_ms: r.i64()?,
                    first_ms: r.i64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                    samples: r.u64()? as i64,
                })
            },
        )
    }

    pub(super) fn read_latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        let segs = self.segs(sel)?;
        let rows = self.rows(
            &format!(
                "SELECT segment, ts_ms, value, vmin, vmax FROM samples
                 WHERE segment IN ({}) AND metric = {} AND ts_ms >= {} AND ts_ms <= {}
                 ORDER BY ts_ms DESC LIMIT 1",
                segs.ids(),
                lit(metric),
                sel.from_ms,
                sel.to_ms
            ),
            |r| point(&segs, r),
        )?;
        Ok(rows.into_iter().next())
    }

    pub(super) fn read_pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        let segs = self.segs(sel)?;
        self.rows(
            &format!(
                "SELECT DISTINCT segment, start_ms, duration_ms, source, name FROM pauses
                 WHERE segment IN ({}) AND start_ms >= {} AND start_ms <= {}
                 ORDER BY start_ms LIMIT 10000",
                segs.ids(),
                sel.from_ms,
                sel.to_ms
            ),
            |r| {
                let segment = r.i64()?;
                let (start_ms, duration_ms, source) = (r.i64()?, r.f64()?, r.string()?);
                Ok(StoredPause {
                    instance: segs.instance(segment),
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

    fn profile_rows(&self, segs: &Segs, filter: &str) -> Result<Vec<StoredProfile>> {
        self.rows(
            &format!(
                "SELECT id, segment, ts_ms, any(sample_period), any(total_bytes), any(total_objects)
                 FROM profiles WHERE segment IN ({}) AND {filter}
                 GROUP BY id, segment, ts_ms",
                segs.ids()
            ),
            |r| {
                let (id, segment) = (r.i64()?, r.i64()?);
                Ok(StoredProfile {
                    id,
                    instance: segs.instance(segment),
                    segment,
                    ts_ms: r.i64()?,
                    sample_period_bytes: r.u64()?,
                    total_bytes: r.i64()?,
                    total_objects: r.i64()?,
                })
            },
        )
    }

    pub(super) fn read_profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        let segs = self.segs(sel)?;
        let filter = format!("ts_ms >= {} AND ts_ms <= {}", sel.from_ms, sel.to_ms);
        let mut out = self.profile_rows(&segs, &filter)?;
        out.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.ts_ms.cmp(&b.ts_ms)));
        Ok(out)
    }

    pub(super) fn read_profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>> {
        let segs = self.segs(&Selector::all(0, i64::MAX).for_instance(service, instance))?;
        let filter = format!(
            "ts_ms = (SELECT ts_ms FROM profiles WHERE segment IN ({}) ORDER BY abs(ts_ms - {at_ms}) LIMIT 1)",
            segs.ids()
        );
        Ok(self.profile_rows(&segs, &filter)?.into_iter().next())
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
        let segs = self.segs(sel)?;
        let one = stack.map_or(String::new(), |s| format!("AND stack = {s}"));
        self.rows(
            &format!(
                "SELECT profile, ts_ms, stack, any(bytes), any(objects) FROM profile_stacks
                 WHERE segment IN ({}) AND ts_ms >= {} AND ts_ms <= {} {one}
                 GROUP BY segment, ts_ms, stack, profile ORDER BY ts_ms",
                segs.ids(),
                sel.from_ms,
                sel.to_ms
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
