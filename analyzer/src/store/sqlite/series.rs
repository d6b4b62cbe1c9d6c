//! Reads of metric series: points, envelopes (from rollups where a tier
//! serves them, `store::rollup`) and latest values, for the instances a
//! selector picks or for a cohort of one service's instances at once.

use rusqlite::params;

use super::read::selector_clause;
use super::SqliteStore;
use crate::error::Result;
use crate::store::rollup;
use crate::store::*;

/// Whose samples a statement reads; either way the service binds as ?1
/// and the instance (or a JSON array of instances) as ?2.
enum Who<'a> {
    Sel(&'a Selector),
    Cohort { service: &'a str, names: String },
}

impl<'a> Who<'a> {
    fn cohort(service: &'a str, instances: &[&str]) -> Self {
        Who::Cohort {
            service,
            // Names are strings: serializing them cannot fail.
            names: serde_json::to_string(instances).unwrap_or_default(),
        }
    }

    fn clause(&self) -> &'static str {
        match self {
            Who::Sel(sel) => selector_clause(sel),
            Who::Cohort { .. } => {
                "i.service = ?1 AND i.instance IN (SELECT value FROM json_each(?2))"
            }
        }
    }

    fn binds(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Who::Sel(sel) => (sel.service.as_deref(), sel.instance.as_deref()),
            Who::Cohort { service, names } => (Some(service), Some(names)),
        }
    }
}

/// The samples of `who`'s instances, for the metric bound as ?3 and the
/// window from ?4: the FROM and the first conditions of a query. The
/// CROSS JOIN makes SQLite walk instances, then their segments alive in
/// the window, then each segment's samples by key, rather than scan
/// every sample of the window and filter.
fn samples_of(clause: &str) -> String {
    format!(
        "FROM instances i
        JOIN segments s ON s.instance_id = i.id
        CROSS JOIN samples x
        WHERE {clause} AND s.last_seen_ms >= ?4
          AND x.segment_id = s.id
          AND x.metric_id = (SELECT id FROM metrics WHERE name = ?3)"
    )
}

fn point_row(r: &rusqlite::Row) -> rusqlite::Result<Point> {
    Ok(Point {
        instance: r.get(0)?,
        segment: r.get(1)?,
        ts_ms: r.get(2)?,
        value: r.get(3)?,
        min: r.get(4)?,
        max: r.get(5)?,
    })
}

impl SqliteStore {
    pub(super) fn read_series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT i.instance, x.segment_id, x.ts_ms, x.value,
                    coalesce(x.vmin, x.value), coalesce(x.vmax, x.value)
                {}
                  AND x.ts_ms >= ?4 AND x.ts_ms <= ?5
                ORDER BY i.instance, x.ts_ms",
                samples_of(selector_clause(sel))
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, metric, sel.from_ms, sel.to_ms],
                point_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_envelope(
        &self,
        sel: &Selector,
        metric: &str,
        bucket_ms: i64,
    ) -> Result<Vec<EnvelopeBucket>> {
        self.envelope_for(&Who::Sel(sel), sel, metric, bucket_ms)
    }

    /// The envelopes of a cohort of one service's instances: one statement
    /// per metric and piece of the plan, whatever the cohort's size.
    pub(super) fn read_envelopes_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<ByInstance<Vec<EnvelopeBucket>>> {
        let service = sel.service.as_deref().unwrap_or_default();
        let who = Who::cohort(service, instances);
        let mut out: ByInstance<Vec<EnvelopeBucket>> = by_instance(instances);
        for m in metrics {
            for b in self.envelope_for(&who, sel, m, bucket_ms)? {
                if let Some(mine) = out.get_mut(&*b.instance) {
                    mine.entry((*m).to_owned()).or_default().push(b);
                }
            }
        }
        Ok(out)
    }

    /// An envelope from rollups where a tier serves it ([`rollup::plan`]),
    /// else from raw samples.
    fn envelope_for(
        &self,
        who: &Who,
        sel: &Selector,
        metric: &str,
        bucket_ms: i64,
    ) -> Result<Vec<EnvelopeBucket>> {
        let bucket_ms = bucket_ms.max(1);
        let pieces = rollup::plan(sel.from_ms, sel.to_ms, bucket_ms, crate::select::now_ms())
            .unwrap_or(vec![rollup::Piece::Raw {
                from_ms: sel.from_ms,
                to_ms: sel.to_ms,
            }]);
        let (p1, p2) = who.binds();
        let mut parts = Vec::new();
        for piece in pieces {
            let (sql, res, a, b) = match piece {
                rollup::Piece::Raw { from_ms, to_ms } => (raw_sql(who), 0, from_ms, to_ms),
                rollup::Piece::Tier {
                    res_ms,
                    from_ms,
                    to_ms,
                } => (rollup_sql(who), res_ms, from_ms, to_ms),
            };
            parts.extend(self.parts(
                &sql,
                params![p1, p2, metric, sel.from_ms, res, a, b, bucket_ms],
            )?);
        }
        Ok(rollup::merge(parts, bucket_ms))
    }

    fn parts(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<rollup::Part>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            // A segment's names are read once and shared by its parts.
            let mut names = rollup::NameCache::default();
            let rows = stmt.query_map(params, |r| {
                let segment = r.get(2)?;
                let (service, instance) = names.of(segment, || {
                    Ok::<_, rusqlite::Error>((r.get_ref(0)?.as_str()?, r.get_ref(1)?.as_str()?))
                })?;
                Ok(rollup::Part {
                    service,
                    instance,
                    segment,
                    first_ms: r.get(3)?,
                    last_ms: r.get(4)?,
                    min: r.get(5)?,
                    max: r.get(6)?,
                    samples: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        let mut each = self.latest_rows(&Who::Sel(sel), sel, metric)?;
        each.sort_by_key(|p| std::cmp::Reverse(p.ts_ms));
        Ok(each.into_iter().next())
    }

    /// The latest point of each metric of each of a cohort's instances:
    /// one statement per metric.
    pub(super) fn read_latest_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
    ) -> Result<ByInstance<Point>> {
        let service = sel.service.as_deref().unwrap_or_default();
        let who = Who::cohort(service, instances);
        let mut out: ByInstance<Point> = by_instance(instances);
        for m in metrics {
            for p in self.latest_rows(&who, sel, m)? {
                keep_newest(&mut out, m, p);
            }
        }
        Ok(out)
    }

    /// Each segment's newest point of `metric` in the window: its newest
    /// sample time by key (a MAX over the key is one probe), then that
    /// sample by key.
    fn latest_rows(&self, who: &Who, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        let (p1, p2) = who.binds();
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT m.instance, x.segment_id, x.ts_ms, x.value,
                    coalesce(x.vmin, x.value), coalesce(x.vmax, x.value)
                FROM (SELECT i.instance AS instance, s.id AS segment, (
                        SELECT max(y.ts_ms) FROM samples y
                        WHERE y.segment_id = s.id
                          AND y.metric_id = (SELECT id FROM metrics WHERE name = ?3)
                          AND y.ts_ms >= ?4 AND y.ts_ms <= ?5) AS ts
                      FROM instances i JOIN segments s ON s.instance_id = i.id
                      WHERE {} AND s.last_seen_ms >= ?4) m
                CROSS JOIN samples x
                WHERE x.segment_id = m.segment
                  AND x.metric_id = (SELECT id FROM metrics WHERE name = ?3)
                  AND x.ts_ms = m.ts",
                who.clause()
            ))?;
            let rows =
                stmt.query_map(params![p1, p2, metric, sel.from_ms, sel.to_ms], point_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// Raw samples of `who`'s instances with times in ?6..?7 (inclusive), by
/// segment and envelope bucket (?8); ?5, the tier, is bound but unused
/// (SQLite counts parameters by their highest index).
fn raw_sql(who: &Who) -> String {
    format!(
        "SELECT i.service, i.instance, x.segment_id, min(x.ts_ms), max(x.ts_ms),
                min(coalesce(x.vmin, x.value)), max(coalesce(x.vmax, x.value)), sum(x.n)
         {}
           AND x.ts_ms >= ?6 AND x.ts_ms <= ?7
         GROUP BY x.segment_id, x.ts_ms / ?8",
        samples_of(who.clause())
    )
}

/// The rollups of tier ?5 of `who`'s instances starting in ?6..?7
/// (exclusive), by segment and envelope bucket (?8).
fn rollup_sql(who: &Who) -> String {
    format!(
        "SELECT i.service, i.instance, r.segment_id, min(r.first_ms), max(r.last_ms),
                min(r.vmin), max(r.vmax), sum(r.n)
         FROM instances i
         JOIN segments s ON s.instance_id = i.id
         CROSS JOIN rollups r
         WHERE {} AND s.last_seen_ms >= ?4
           AND r.segment_id = s.id
           AND r.metric_id = (SELECT id FROM metrics WHERE name = ?3)
           AND r.res = ?5 AND r.bucket_ms >= ?6 AND r.bucket_ms < ?7
         GROUP BY r.segment_id, r.bucket_ms / ?8",
        who.clause()
    )
}
