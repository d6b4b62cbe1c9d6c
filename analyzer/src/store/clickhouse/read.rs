//! Every read. A selector first becomes the ids of its segments (a small
//! query on `segments`), and each data query then reads those segments'
//! rows by the tables' sorting keys. Replayed rows are folded by a
//! `GROUP BY` on the sorting key before anything is counted, and every
//! envelope is computed in ClickHouse: only buckets cross the network.

use std::collections::HashMap;

use super::rowbinary::{id_list, lit, str_list, RowReader};
use super::{ChError, ClickHouseStore};
use crate::error::{Error, Result};
use crate::store::*;
use heaptide_wire::pprof::Frame;

/// The segments of a selector, as SQL: a filter on a `segment` column,
/// and a join that names each segment's service and instance. Both are
/// subqueries of the one statement, so a read is one round trip.
pub(super) struct Scope {
    pub(super) filter: String,
    pub(super) join: String,
}

impl Scope {
    pub(super) fn of(sel: &Selector) -> Scope {
        let names = names_clause(sel.service.as_deref(), sel.instance.as_deref());
        Self::named(sel, &names)
    }

    /// The segments of `instances` of the service `sel` names.
    pub(super) fn of_instances(sel: &Selector, instances: &[&str]) -> Scope {
        let mut names = names_clause(sel.service.as_deref(), None);
        names.push_str(&format!(" AND instance IN ({})", str_list(instances)));
        Self::named(sel, &names)
    }

    fn named(sel: &Selector, names: &str) -> Scope {
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
pub(super) fn point(r: &mut RowReader) -> Result<Point, ChError> {
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
    let segment = r.i64()?;
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
        segment,
    })
}

impl ClickHouseStore {
    pub(super) fn read_instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.rows(
            &format!(
                "SELECT service, instance, argMax(h, ls), argMax(p, ls), argMax(st, ls),
                    argMax(v, ls), argMax(lb, ls), min(fs), max(ls), count(),
                    argMax(hp, ls), argMax(hr, ls), argMax(stats, ls), argMax(id, ls)
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
        // `latest` holds a row per series and day of raw samples, and
        // expires with them: the same names as the samples, in far fewer
        // rows.
        self.rows(
            &format!(
                "SELECT DISTINCT metric FROM latest WHERE {} ORDER BY metric",
                scope.filter
            ),
            |r| r.string(),
        )
    }

    /// [`Self::read_metric_names`] of several instances in one statement.
    pub(super) fn read_metric_names_of(
        &self,
        service: &str,
        instances: &[&str],
    ) -> Result<HashMap<String, Vec<String>>> {
        let scope =
            Scope::of_instances(&Selector::all(0, i64::MAX).for_service(service), instances);
        let mut out: HashMap<String, Vec<String>> = instances
            .iter()
            .map(|i| ((*i).to_owned(), Vec::new()))
            .collect();
        let rows = self.rows(
            &format!(
                "SELECT instance_name, metric FROM (
                   SELECT DISTINCT segment, metric FROM latest WHERE {}) {}
                 ORDER BY instance_name, metric",
                scope.filter, scope.join
            ),
            |r| Ok((r.string()?, r.string()?)),
        )?;
        for (instance, metric) in rows {
            let names = out.entry(instance).or_default();
            if names.last() != Some(&metric) {
                names.push(metric);
            }
        }
        Ok(out)
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
            profile_row,
        )
    }

    pub(super) fn read_profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        let filter = format!("ts_ms >= {} AND ts_ms <= {}", sel.from_ms, sel.to_ms);
        let mut out = self.profile_rows(&Scope::of(sel), &filter)?;
        out.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.ts_ms.cmp(&b.ts_ms)));
        Ok(out)
    }

    /// [`Self::read_profiles`] of several instances in one statement.
    pub(super) fn read_profiles_of(
        &self,
        sel: &Selector,
        instances: &[&str],
    ) -> Result<HashMap<String, Vec<StoredProfile>>> {
        let filter = format!("ts_ms >= {} AND ts_ms <= {}", sel.from_ms, sel.to_ms);
        let mut out: HashMap<String, Vec<StoredProfile>> = instances
            .iter()
            .map(|i| ((*i).to_owned(), Vec::new()))
            .collect();
        for p in self.profile_rows(&Scope::of_instances(sel, instances), &filter)? {
            out.entry(p.instance.clone()).or_default().push(p);
        }
        out.values_mut().for_each(|v| v.sort_by_key(|p| p.ts_ms));
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

    /// The nearest profile of each instance in one statement: every
    /// profile's row of the service (one per profile, not per stack),
    /// the nearest kept per instance by `LIMIT 1 BY`.
    pub(super) fn read_profiles_nearest(
        &self,
        service: &str,
        instances: &[&str],
        at_ms: i64,
    ) -> Result<Vec<StoredProfile>> {
        let scope = Scope::of(&Selector::all(0, i64::MAX).for_service(service));
        let rows = self.rows(
            &format!(
                "SELECT id, instance_name, segment, ts_ms, sp, tb, tob FROM (
                   SELECT id, segment, ts_ms, any(sample_period) AS sp, any(total_bytes) AS tb,
                       any(total_objects) AS tob
                   FROM profiles WHERE {} GROUP BY id, segment, ts_ms) {}
                 ORDER BY instance_name, abs(ts_ms - {at_ms}) LIMIT 1 BY instance_name",
                scope.filter, scope.join
            ),
            profile_row,
        )?;
        Ok(rows
            .into_iter()
            .filter(|p| instances.contains(&p.instance.as_str()))
            .collect())
    }

    /// Stacks summed over many profiles inside ClickHouse, in chunks that
    /// keep each statement under its query size limit: first where each
    /// profile's rows are, then the sums by the per-stack table's key.
    pub(super) fn read_profile_sums(&self, profile_ids: &[i64]) -> Result<Vec<StackValue>> {
        let mut all = Vec::new();
        for chunk in profile_ids.chunks(500) {
            let places = self.rows(
                &format!(
                    "SELECT DISTINCT segment, ts_ms FROM profiles WHERE id IN ({})",
                    id_list(chunk)
                ),
                |r| Ok(format!("({}, {})", r.i64()?, r.i64()?)),
            )?;
            if places.is_empty() {
                continue;
            }
            all.extend(self.rows(
                &format!(
                    "SELECT stack, sum(b), sum(o), sum(ab), sum(ao) FROM (
                       SELECT profile, stack, any(bytes) AS b, any(objects) AS o,
                              any(alloc_bytes) AS ab, any(alloc_objects) AS ao
                       FROM profile_stacks WHERE (segment, ts_ms) IN ({}) AND profile IN ({})
                       GROUP BY profile, stack)
                     GROUP BY stack",
                    places.join(", "),
                    id_list(chunk)
                ),
                |r| {
                    Ok(StackValue {
                        stack_id: r.i64()?,
                        bytes: r.i64()?,
                        objects: r.i64()?,
                        alloc_bytes: r.i64()?,
                        alloc_objects: r.i64()?,
                    })
                },
            )?);
        }
        Ok(sum_stacks(all))
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
                "SELECT stack, any(bytes), any(objects), any(alloc_bytes), any(alloc_objects)
                 FROM profile_stacks
                 WHERE segment = {seg} AND ts_ms = {ts} AND profile = {profile_id} GROUP BY stack"
            ),
            |r| {
                Ok(StackValue {
                    stack_id: r.i64()?,
                    bytes: r.i64()?,
                    objects: r.i64()?,
                    alloc_bytes: r.i64()?,
                    alloc_objects: r.i64()?,
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

/// `id, instance_name, segment, ts_ms, sample_period, total_bytes,
/// total_objects`.
fn profile_row(r: &mut RowReader) -> Result<StoredProfile, ChError> {
    Ok(StoredProfile {
        id: r.i64()?,
        instance: r.string()?,
        segment: r.i64()?,
        ts_ms: r.i64()?,
        sample_period_bytes: r.u64()?,
        total_bytes: r.i64()?,
        total_objects: r.i64()?,
    })
}
