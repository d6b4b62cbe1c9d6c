//! Ingest: one transaction per batch, with the ids of metric names and
//! stacks cached. Ids found or made inside a transaction are staged and
//! enter the cache only once it commits: after a rollback the database
//! never saved them, and a cached one would hand the same id to another
//! name for good.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use rusqlite::{params, OptionalExtension};

use super::{SqliteStore, Writer};
use crate::error::Result;
use crate::ingest::ValidBatch;
use crate::store::rollup::Gather;
use crate::store::*;
use heaptide_wire::pprof::Frame;

/// Ids of metric names and stacks already in the store, so that ingest
/// looks each up once.
#[derive(Default)]
pub(super) struct IdCache {
    /// Each name's id, and when its `last_seen_ms` was last marked.
    metric_ids: HashMap<String, (i64, i64)>,
    stack_ids: HashMap<StackKey, i64>,
    keys: StackKeys,
}

/// Ids looked up or inserted by the open transaction.
#[derive(Default)]
struct Staged {
    metric_ids: HashMap<String, (i64, i64)>,
    stack_ids: HashMap<StackKey, i64>,
}

/// A stack's key in the cache: 128 bits of SipHash under keys drawn at
/// random for this process, so that no one can craft two stacks that
/// share a cache entry.
type StackKey = (u64, u64);

#[derive(Default)]
struct StackKeys(std::hash::RandomState, std::hash::RandomState);

impl StackKeys {
    fn key(&self, frames: &[Frame]) -> StackKey {
        let hash = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            std::hash::Hash::hash(frames, &mut h);
            h.finish()
        };
        (hash(&self.0), hash(&self.1))
    }
}

/// How often a name's `last_seen_ms` is marked while it is written.
const MARK_EVERY_MS: i64 = 3_600_000;

/// How many rows past its hash a stack may be stored when FNV hashes
/// collide. Each probe compares the stored frames, so a collision costs a
/// row, never a wrong stack.
const MAX_PROBES: i64 = 16;

/// FNV-1a over the frames: stable across processes and Rust versions,
/// unlike `DefaultHasher`, because the hash is stored.
fn stack_hash(frames: &[Frame]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    for f in frames {
        h.write(f.function.as_bytes());
        h.write_u8(0);
        h.write(f.file.as_bytes());
        h.write_u8(0);
        h.write_u32(f.line);
        h.write_u8(0xff);
    }
    h.finish()
}

/// Stores a whole number as an INTEGER (a few bytes) and anything else as
/// REAL (eight).
fn num(v: f64) -> rusqlite::types::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        rusqlite::types::Value::Integer(v as i64)
    } else {
        rusqlite::types::Value::Real(v)
    }
}

impl IdCache {
    /// Drops every cached name id, after names were deleted.
    pub(super) fn forget_metrics(&mut self) {
        self.metric_ids.clear();
    }

    /// Drops every cached stack id, after stacks were deleted.
    pub(super) fn forget_stacks(&mut self) {
        self.stack_ids.clear();
    }

    /// Takes in the ids of a transaction that committed.
    fn absorb(&mut self, staged: Staged) {
        if self.stack_ids.len() + staged.stack_ids.len() > 1_000_000 {
            self.stack_ids.clear();
        }
        self.metric_ids.extend(staged.metric_ids);
        self.stack_ids.extend(staged.stack_ids);
    }

    /// The name's id, made if new; its `last_seen_ms` is marked when new
    /// and then at most every [`MARK_EVERY_MS`], a few writes an hour for
    /// the whole store.
    fn metric_id(
        &self,
        staged: &mut Staged,
        tx: &rusqlite::Transaction,
        name: &str,
        now_ms: i64,
    ) -> Result<i64> {
        let cached = staged.metric_ids.get(name).or(self.metric_ids.get(name));
        if let Some(&(id, marked)) = cached {
            if now_ms - marked < MARK_EVERY_MS {
                return Ok(id);
            }
        }
        tx.execute(
            "INSERT INTO metrics (name, last_seen_ms) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
            params![name, now_ms],
        )?;
        let id: i64 = tx.query_row("SELECT id FROM metrics WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        staged.metric_ids.insert(name.to_owned(), (id, now_ms));
        Ok(id)
    }

    fn stack_id(
        &self,
        staged: &mut Staged,
        tx: &rusqlite::Transaction,
        frames: &[Frame],
    ) -> Result<i64> {
        let key = self.keys.key(frames);
        if let Some(id) = self.stack_ids.get(&key).or(staged.stack_ids.get(&key)) {
            return Ok(*id);
        }
        let id = stored_stack_id(tx, frames)?;
        staged.stack_ids.insert(key, id);
        Ok(id)
    }
}

/// The stack's row, inserted if new. The FNV hash is where the search
/// starts, and the frames decide: a stored stack with the same hash but
/// other frames moves the search on to the next hash.
fn stored_stack_id(tx: &rusqlite::Transaction, frames: &[Frame]) -> Result<i64> {
    let json = serde_json::to_string(frames).unwrap_or_else(|_| "[]".into());
    let start = stack_hash(frames) as i64;
    for probe in 0..MAX_PROBES {
        let hash = start.wrapping_add(probe);
        let found: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, frames FROM stacks WHERE hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match found {
            Some((id, stored)) if stored == json => return Ok(id),
            Some(_) => continue,
            None => {
                tx.execute(
                    "INSERT INTO stacks (hash, frames) VALUES (?1, ?2)",
                    params![hash, json],
                )?;
                return Ok(tx.last_insert_rowid());
            }
        }
    }
    Err(crate::error::Error::invalid(
        "profiles",
        format!("a stack collides with {MAX_PROBES} stored stacks"),
    ))
}

impl SqliteStore {
    pub(super) fn write_batch(&self, vb: &ValidBatch, received_ms: i64) -> Result<IngestOutcome> {
        let b = &vb.batch;
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let mut staged = Staged::default();
        let tx = conn.transaction()?;
        let (segment_id, new_segment) = upsert_segment(&tx, b, received_ms, &self.bounds)?;
        // Replays of a batch whose acknowledgement was lost hit the primary
        // keys and are ignored.
        let mut fresh = Gather::default();
        for s in &b.samples {
            for (name, v) in &s.metrics {
                let metric_id = ids.metric_id(&mut staged, &tx, name, received_ms)?;
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO samples (segment_id, metric_id, ts_ms, value) VALUES (?1, ?2, ?3, ?4)",
                )?;
                if stmt.execute(params![segment_id, metric_id, s.ts_ms, num(*v)])? == 1 {
                    fresh.add(metric_id, s.ts_ms, *v);
                }
            }
        }
        roll_up(&tx, segment_id, fresh)?;
        for p in &b.pause_events {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO pauses (segment_id, start_ms, source, name, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            stmt.execute(params![
                segment_id,
                p.start_ms,
                p.source.as_str(),
                p.name,
                p.duration_ms
            ])?;
        }
        for (p, decoded) in b.profiles.iter().zip(&vb.profiles) {
            insert_profile(&tx, (ids, &mut staged), segment_id, p, decoded)?;
        }
        tx.commit()?;
        ids.absorb(staged);
        Ok(IngestOutcome {
            samples: b.samples.len(),
            pause_events: b.pause_events.len(),
            profiles: b.profiles.len(),
            new_segment,
        })
    }
}

/// The instance and its segment (process lifetime), created or updated;
/// returns the segment's id and whether it is new.
fn upsert_segment(
    tx: &rusqlite::Transaction,
    b: &heaptide_wire::Batch,
    received_ms: i64,
    bounds: &Bounds,
) -> Result<(i64, bool)> {
    let added = tx.execute(
        "INSERT OR IGNORE INTO instances (service, instance) VALUES (?1, ?2)",
        params![b.agent.service, b.agent.instance],
    )?;
    if added > 0 {
        check_bounds(tx, &b.agent.service, bounds)?;
    }
    let instance_id: i64 = tx.query_row(
        "SELECT id FROM instances WHERE service = ?1 AND instance = ?2",
        params![b.agent.service, b.agent.instance],
        |r| r.get(0),
    )?;
    let labels = serde_json::to_string(&b.agent.labels).unwrap_or_else(|_| "{}".into());
    let stats = serde_json::to_string(&b.agent_stats).unwrap_or_else(|_| "{}".into());
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM segments WHERE instance_id = ?1 AND pid = ?2 AND start_time_ms = ?3",
            params![instance_id, b.agent.pid, b.agent.start_time_ms],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        tx.execute(
            "UPDATE segments SET last_seen_ms = max(last_seen_ms, ?2),
                -- Cumulative figures from an older batch (a late
                -- retry) must not overwrite newer ones.
                heap_profiling = CASE WHEN ?3 >= last_seq THEN ?4 ELSE heap_profiling END,
                heap_profiling_reason = CASE WHEN ?3 >= last_seq THEN ?5 ELSE heap_profiling_reason END,
                agent_stats = CASE WHEN ?3 >= last_seq THEN ?6 ELSE agent_stats END,
                last_seq = max(last_seq, ?3), labels = ?7, agent_version = ?8, host = ?9
             WHERE id = ?1",
            params![
                id,
                received_ms,
                b.seq as i64,
                b.heap_profiling.enabled,
                b.heap_profiling.reason,
                stats,
                labels,
                b.agent.agent_version,
                b.agent.host
            ],
        )?;
        return Ok((id, false));
    }
    tx.execute(
        "INSERT INTO segments (instance_id, pid, start_time_ms, host, agent_version, labels,
            first_seen_ms, last_seen_ms, last_seq, heap_profiling, heap_profiling_reason, agent_stats)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11)",
        params![
            instance_id,
            b.agent.pid,
            b.agent.start_time_ms,
            b.agent.host,
            b.agent.agent_version,
            labels,
            received_ms,
            b.seq as i64,
            b.heap_profiling.enabled,
            b.heap_profiling.reason,
            stats
        ],
    )?;
    Ok((tx.last_insert_rowid(), true))
}

/// Refuses a new instance past the bounds; the transaction then rolls back.
fn check_bounds(tx: &rusqlite::Transaction, service: &str, bounds: &Bounds) -> Result<()> {
    let instances: i64 = tx.query_row(
        "SELECT count(*) FROM instances WHERE service = ?1",
        [service],
        |r| r.get(0),
    )?;
    if instances as u64 > bounds.max_instances_per_service {
        return Err(crate::error::Error::Bound {
            what: format!("instances of service {service:?}"),
            limit: bounds.max_instances_per_service,
            setting: "max_instances_per_service",
        });
    }
    let services: i64 = tx.query_row("SELECT count(DISTINCT service) FROM instances", [], |r| {
        r.get(0)
    })?;
    if services as u64 > bounds.max_services {
        return Err(crate::error::Error::Bound {
            what: "services".into(),
            limit: bounds.max_services,
            setting: "max_services",
        });
    }
    Ok(())
}

/// One profile and its (stack, bytes, objects) rows; a replayed profile
/// is already there and is skipped.
fn insert_profile(
    tx: &rusqlite::Transaction,
    (ids, staged): (&IdCache, &mut Staged),
    segment_id: i64,
    p: &heaptide_wire::EncodedProfile,
    decoded: &crate::ingest::DecodedProfile,
) -> Result<()> {
    let total_bytes: i64 = decoded.stacks.iter().map(|s| s.bytes).sum();
    let total_objects: i64 = decoded.stacks.iter().map(|s| s.objects).sum();
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO profiles (segment_id, ts_ms, sample_period, total_bytes, total_objects, pprof)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![segment_id, p.ts_ms, p.sample_period_bytes as i64, total_bytes, total_objects, decoded.raw],
    )?;
    if inserted == 0 {
        return Ok(());
    }
    let profile_id = tx.last_insert_rowid();
    // One row per distinct stack: pprof may repeat a stack.
    let mut merged: HashMap<i64, [i64; 4]> = HashMap::new();
    let mut stack_ids = Vec::with_capacity(decoded.stacks.len());
    for s in &decoded.stacks {
        let id = ids.stack_id(staged, tx, &s.frames)?;
        let e = merged.entry(id).or_default();
        for (sum, v) in e
            .iter_mut()
            .zip([s.bytes, s.objects, s.alloc_bytes, s.alloc_objects])
        {
            *sum = sum.saturating_add(v);
        }
        stack_ids.push(id);
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO profile_stacks (profile_id, stack_id, bytes, objects, alloc_bytes, alloc_objects)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (stack_id, [bytes, objects, alloc_bytes, alloc_objects]) in merged {
        stmt.execute(params![
            profile_id,
            stack_id,
            bytes,
            objects,
            alloc_bytes,
            alloc_objects
        ])?;
    }
    insert_ages(tx, profile_id, &stack_ids, &p.ages)
}

/// The ages of a profile's stacks, summed per stored stack.
fn insert_ages(
    tx: &rusqlite::Transaction,
    profile_id: i64,
    stack_ids: &[i64],
    ages: &[heaptide_wire::StackAges],
) -> Result<()> {
    let mut merged: HashMap<i64, crate::store::Ages> = HashMap::new();
    for a in ages {
        // Indices were checked against the profile at ingest.
        let Some(&id) = stack_ids.get(a.sample as usize) else {
            continue;
        };
        let e = merged.entry(id).or_default();
        for (sum, b) in e.iter_mut().zip(a.bytes) {
            *sum = sum.saturating_add(b);
        }
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO profile_ages (profile_id, stack_id, ages) VALUES (?1, ?2, ?3)",
    )?;
    for (stack_id, a) in merged {
        let text = serde_json::to_string(&a).unwrap_or_else(|_| "[]".into());
        stmt.execute(params![profile_id, stack_id, text])?;
    }
    Ok(())
}

/// Adds a batch's new raw samples to their rollup buckets, each bucket
/// once. Only samples that were stored count: replayed ones were ignored
/// above.
fn roll_up(tx: &rusqlite::Transaction, segment_id: i64, fresh: Gather<i64>) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO rollups (segment_id, metric_id, res, bucket_ms, vmin, vmax, n, first_ms, last_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT DO UPDATE SET vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax),
            n = n + excluded.n, first_ms = min(first_ms, excluded.first_ms),
            last_ms = max(last_ms, excluded.last_ms)",
    )?;
    for ((metric_id, res, bucket), c) in fresh.cells() {
        stmt.execute(params![
            segment_id, metric_id, res, bucket, c.min, c.max, c.n, c.first_ms, c.last_ms
        ])?;
    }
    Ok(())
}
