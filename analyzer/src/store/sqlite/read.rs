//! Every read but the series': instances, pauses, profiles and stacks.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::*;
use heaptide_wire::pprof::Frame;

/// The clause that picks a selector's instances, binding the service as
/// ?1 and the instance as ?2. One statement per shape rather than
/// `(?1 IS NULL OR ...)`: with plain equalities SQLite walks from the
/// instance to its segments and samples by key, where the `OR` form makes
/// it scan every sample in the time range.
pub(super) fn selector_clause(sel: &Selector) -> &'static str {
    clause(sel.service.is_some(), sel.instance.is_some())
}

pub(super) fn clause(service: bool, instance: bool) -> &'static str {
    match (service, instance) {
        (true, true) => "i.service = ?1 AND i.instance = ?2",
        (true, false) => "i.service = ?1 AND ?2 IS NULL",
        (false, true) => "?1 IS NULL AND i.instance = ?2",
        (false, false) => "?1 IS NULL AND ?2 IS NULL",
    }
}

impl SqliteStore {
    pub(super) fn read_instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(
                "SELECT i.service, i.instance, s.host, s.pid, s.start_time_ms, s.agent_version, s.labels,
                        (SELECT min(first_seen_ms) FROM segments WHERE instance_id = i.id),
                        s.last_seen_ms,
                        (SELECT count(*) FROM segments WHERE instance_id = i.id),
                        s.heap_profiling, s.heap_profiling_reason, s.agent_stats, s.id
                 FROM instances i
                 JOIN segments s ON s.id = (SELECT id FROM segments WHERE instance_id = i.id
                                            ORDER BY last_seen_ms DESC LIMIT 1)
                 WHERE ?1 IS NULL OR i.service = ?1
                 ORDER BY i.service, i.instance",
            )?;
            let rows = stmt.query_map([service], |r| {
                let labels: String = r.get(6)?;
                let stats: String = r.get(12)?;
                Ok(InstanceInfo {
                    service: r.get(0)?,
                    instance: r.get(1)?,
                    host: r.get(2)?,
                    pid: r.get(3)?,
                    start_time_ms: r.get(4)?,
                    agent_version: r.get(5)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    first_seen_ms: r.get(7)?,
                    last_seen_ms: r.get(8)?,
                    segments: r.get(9)?,
                    heap_profiling: r.get(10)?,
                    heap_profiling_reason: r.get(11)?,
                    agent_stats: serde_json::from_str(&stats).unwrap_or_default(),
                    segment: r.get(13)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(
                "SELECT s.id, s.pid, s.start_time_ms, s.first_seen_ms, s.last_seen_ms, s.labels
                 FROM segments s JOIN instances i ON i.id = s.instance_id
                 WHERE i.service = ?1 AND i.instance = ?2 ORDER BY s.first_seen_ms",
            )?;
            let rows = stmt.query_map([service, instance], |r| {
                let labels: String = r.get(5)?;
                Ok(Segment {
                    id: r.get(0)?,
                    pid: r.get(1)?,
                    start_time_ms: r.get(2)?,
                    first_seen_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_metric_names(
        &self,
        service: &str,
        instance: Option<&str>,
    ) -> Result<Vec<String>> {
        self.with_reader(|c| {
            // Names are few; scanning them and probing each is cheaper than
            // a DISTINCT over all samples.
            let mut stmt = c.prepare(&format!(
                "SELECT m.name FROM metrics m WHERE EXISTS (
                    SELECT 1 FROM samples x JOIN segments s ON s.id = x.segment_id
                    JOIN instances i ON i.id = s.instance_id
                    WHERE x.metric_id = m.id AND {}) ORDER BY m.name",
                clause(true, instance.is_some())
            ))?;
            let rows = stmt.query_map(params![service, instance], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT i.instance, p.start_ms, p.duration_ms, p.source, p.name
                 FROM pauses p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 WHERE {} AND p.start_ms >= ?3 AND p.start_ms <= ?4
                 ORDER BY p.start_ms LIMIT 10000",
                selector_clause(sel)
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms],
                |r| {
                    Ok(StoredPause {
                        instance: r.get(0)?,
                        start_ms: r.get(1)?,
                        duration_ms: r.get(2)?,
                        source: pause_source(r.get(3)?)?,
                        name: r.get(4)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, i.instance, p.segment_id, p.ts_ms, p.sample_period, p.total_bytes, p.total_objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY i.instance, p.ts_ms",
                selector_clause(sel)
            ))?;
            let rows = stmt.query_map(params![sel.service, sel.instance, sel.from_ms, sel.to_ms], profile_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>> {
        self.with_reader(|c| {
            Ok(c.query_row(
                "SELECT p.id, i.instance, p.segment_id, p.ts_ms, p.sample_period, p.total_bytes, p.total_objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 WHERE i.service = ?1 AND i.instance = ?2
                 ORDER BY abs(p.ts_ms - ?3) LIMIT 1",
                params![service, instance, at_ms],
                profile_row,
            )
            .optional()?)
        })
    }

    pub(super) fn read_profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT stack_id, bytes, objects, alloc_bytes, alloc_objects
                 FROM profile_stacks WHERE profile_id = ?1",
            )?;
            let rows = stmt.query_map([profile_id], |r| {
                Ok(StackValue {
                    stack_id: r.get(0)?,
                    bytes: r.get(1)?,
                    objects: r.get(2)?,
                    alloc_bytes: r.get(3)?,
                    alloc_objects: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_profile_ages(&self, profile_id: i64) -> Result<HashMap<i64, Ages>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT stack_id, ages FROM profile_ages WHERE profile_id = ?1")?;
            let rows = stmt.query_map([profile_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = HashMap::new();
            for row in rows {
                let (id, text) = row?;
                // A row this analyzer cannot read is skipped, not fatal:
                // ages only refine the ranking.
                if let Ok(a) = serde_json::from_str::<Ages>(&text) {
                    out.insert(id, a);
                }
            }
            Ok(out)
        })
    }

    pub(super) fn read_profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>> {
        self.with_reader(|c| {
            c.query_row(
                "SELECT pprof FROM profiles WHERE id = ?1",
                [profile_id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("profile {profile_id}")))
        })
    }

    pub(super) fn read_site_series(&self, sel: &Selector, stack_id: i64) -> Result<Vec<SitePoint>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, p.ts_ms, ps.stack_id, ps.bytes, ps.objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 JOIN profile_stacks ps ON ps.profile_id = p.id AND ps.stack_id = ?5
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY p.ts_ms",
                selector_clause(sel)
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms, stack_id],
                site_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_site_points(&self, sel: &Selector) -> Result<Vec<SitePoint>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, p.ts_ms, ps.stack_id, ps.bytes, ps.objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 JOIN profile_stacks ps ON ps.profile_id = p.id
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY p.ts_ms",
                selector_clause(sel)
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms],
                site_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn read_stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached("SELECT frames FROM stacks WHERE id = ?1")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(json) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
                    out.push((*id, serde_json::from_str(&json).unwrap_or_default()));
                }
            }
            Ok(out)
        })
    }
}

fn site_row(r: &rusqlite::Row) -> rusqlite::Result<SitePoint> {
    Ok(SitePoint {
        profile_id: r.get(0)?,
        ts_ms: r.get(1)?,
        stack_id: r.get(2)?,
        bytes: r.get(3)?,
        objects: r.get(4)?,
    })
}

fn profile_row(r: &rusqlite::Row) -> rusqlite::Result<StoredProfile> {
    Ok(StoredProfile {
        id: r.get(0)?,
        instance: r.get(1)?,
        segment: r.get(2)?,
        ts_ms: r.get(3)?,
        sample_period_bytes: r.get::<_, i64>(4)? as u64,
        total_bytes: r.get(5)?,
        total_objects: r.get(6)?,
    })
}

/// A pause source as stored; only ingest writes them, from the enum.
fn pause_source(s: String) -> rusqlite::Result<heaptide_wire::PauseSource> {
    heaptide_wire::PauseSource::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown pause source {s:?}").into(),
        )
    })
}
