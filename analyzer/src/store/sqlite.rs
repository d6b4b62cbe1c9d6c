//! The embedded store: one SQLite file in WAL mode.
//!
//! A profile's stacks are stored once each in `stacks`; a snapshot stores
//! only (stack, bytes, objects) rows, indexed by stack, so that a day of one
//! site's live bytes is an index range scan. Every statement binds its
//! parameters: no SQL is ever built from input.

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::*;
use crate::error::Error;

const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    UNIQUE (service, instance)
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances(id),
    pid INTEGER NOT NULL,
    start_time_ms INTEGER NOT NULL,
    host TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    labels TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    heap_profiling INTEGER NOT NULL,
    heap_profiling_reason TEXT,
    agent_stats TEXT NOT NULL,
    UNIQUE (instance_id, pid, start_time_ms)
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- res is the bucket width in ms: 0 for raw samples. vmin/vmax are NULL
-- for raw samples, whose value is both.
CREATE TABLE IF NOT EXISTS samples (
    segment_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    vmin REAL,
    vmax REAL,
    n INTEGER NOT NULL DEFAULT 1,
    res INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (segment_id, metric_id, ts_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts_ms);
CREATE TABLE IF NOT EXISTS pauses (
    segment_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    PRIMARY KEY (segment_id, start_ms, source, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stacks (
    id INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL UNIQUE,
    frames TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY,
    segment_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    sample_period INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL,
    total_objects INTEGER NOT NULL,
    -- The gzipped pprof as received; NULL once older than the raw
    -- retention, after which downloads are rebuilt from the rows below.
    pprof BLOB,
    UNIQUE (segment_id, ts_ms)
);
CREATE INDEX IF NOT EXISTS profiles_ts ON profiles (ts_ms);
CREATE TABLE IF NOT EXISTS profile_stacks (
    profile_id INTEGER NOT NULL,
    stack_id INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    objects INTEGER NOT NULL,
    PRIMARY KEY (profile_id, stack_id)
) WITHOUT ROWID;
-- No index by stack: one site's series probes this primary key once per
-- profile, which is cheap, and an index would cost a third more space.
";

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

struct Writer {
    conn: Connection,
    ids: IdCache,
}

/// Ids of metric names and stacks already in the store, so that ingest
/// looks each up once.
#[derive(Default)]
struct IdCache {
    metric_ids: HashMap<String, i64>,
    stack_ids: HashMap<u64, i64>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL lets readers run while `serve` writes. NORMAL syncs at checkpoints:
    // a committed transaction survives the process being killed, and only
    // an OS crash or power loss could lose the last ones.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| Error::StoreOpen {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let version: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(Error::Config {
                path: path.display().to_string(),
                reason: format!(
                    "store schema version {version} is newer than this analyzer's {SCHEMA_VERSION}"
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(Writer {
                conn,
                ids: IdCache::default(),
            }),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Opens a store that must already exist, as read commands do.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        let p = path.as_ref();
        if !p.exists() {
            return Err(Error::StoreMissing(p.display().to_string()));
        }
        Self::open(p)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|source| Error::StoreOpen {
                    path: self.path.display().to_string(),
                    source,
                })?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut r) = self.readers.lock() {
            if r.len() < 8 {
                r.push(conn);
            }
        }
        out
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
    fn metric_id(&mut self, tx: &rusqlite::Transaction, name: &str) -> Result<i64> {
        if let Some(id) = self.metric_ids.get(name) {
            return Ok(*id);
        }
        tx.execute("INSERT OR IGNORE INTO metrics (name) VALUES (?1)", [name])?;
        let id: i64 = tx.query_row("SELECT id FROM metrics WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        self.metric_ids.insert(name.to_owned(), id);
        Ok(id)
    }

    fn stack_id(&mut self, tx: &rusqlite::Transaction, frames: &[Frame]) -> Result<i64> {
        let hash = stack_hash(frames);
        if let Some(id) = self.stack_ids.get(&hash) {
            return Ok(*id);
        }
        let json = serde_json::to_string(frames).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT OR IGNORE INTO stacks (hash, frames) VALUES (?1, ?2)",
            params![hash as i64, json],
        )?;
        let id: i64 = tx.query_row(
            "SELECT id FROM stacks WHERE hash = ?1",
            [hash as i64],
            |r| r.get(0),
        )?;
        if self.stack_ids.len() > 1_000_000 {
            self.stack_ids.clear();
        }
        self.stack_ids.insert(hash, id);
        Ok(id)
    }
}

/// One metric's points for (service, instance or all, metric, from, to);
/// callers add the order.
const POINTS: &str = "SELECT i.instance, x.segment_id, x.ts_ms, x.value,
        coalesce(x.vmin, x.value), coalesce(x.vmax, x.value)
    FROM samples x
    JOIN segments s ON s.id = x.segment_id
    JOIN instances i ON i.id = s.instance_id
    WHERE i.service = ?1 AND (?2 IS NULL OR i.instance = ?2)
      AND x.metric_id = (SELECT id FROM metrics WHERE name = ?3)
      AND x.ts_ms >= ?4 AND x.ts_ms <= ?5";

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

fn selector_clause() -> &'static str {
    "i.service = ?1 AND (?2 IS NULL OR i.instance = ?2)"
}

impl Store for SqliteStore {
    fn ingest(&self, vb: &ValidBatch, received_ms: i64) -> Result<IngestOutcome> {
        let b = &vb.batch;
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO instances (service, instance) VALUES (?1, ?2)",
            params![b.agent.service, b.agent.instance],
        )?;
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
        let new_segment = existing.is_none();
        let segment_id = match existing {
            Some(id) => {
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
                id
            }
            None => {
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
                tx.last_insert_rowid()
            }
        };
        // Replays of a batch whose acknowledgement was lost hit the primary
        // keys and are ignored.
        for s in &b.samples {
            for (name, v) in &s.metrics {
                let metric_id = ids.metric_id(&tx, name)?;
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO samples (segment_id, metric_id, ts_ms, value) VALUES (?1, ?2, ?3, ?4)",
                )?;
                stmt.execute(params![segment_id, metric_id, s.ts_ms, num(*v)])?;
            }
        }
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
            let total_bytes: i64 = decoded.stacks.iter().map(|s| s.bytes).sum();
            let total_objects: i64 = decoded.stacks.iter().map(|s| s.objects).sum();
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO profiles (segment_id, ts_ms, sample_period, total_bytes, total_objects, pprof)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![segment_id, p.ts_ms, p.sample_period_bytes as i64, total_bytes, total_objects, decoded.raw],
            )?;
            if inserted == 0 {
                continue;
            }
            let profile_id = tx.last_insert_rowid();
            // One row per distinct stack: pprof may repeat a stack.
            let mut merged: HashMap<i64, (i64, i64)> = HashMap::new();
            for s in &decoded.stacks {
                let id = ids.stack_id(&tx, &s.frames)?;
                let e = merged.entry(id).or_default();
                e.0 += s.bytes;
                e.1 += s.objects;
            }
            let mut stmt = tx.prepare_cached(
                "INSERT INTO profile_stacks (profile_id, stack_id, bytes, objects) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (stack_id, (bytes, objects)) in merged {
                stmt.execute(params![profile_id, stack_id, bytes, objects])?;
            }
        }
        tx.commit()?;
        Ok(IngestOutcome {
            samples: b.samples.len(),
            pause_events: b.pause_events.len(),
            profiles: b.profiles.len(),
            new_segment,
        })
    }

    fn instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(
                "SELECT i.service, i.instance, s.host, s.pid, s.start_time_ms, s.agent_version, s.labels,
                        (SELECT min(first_seen_ms) FROM segments WHERE instance_id = i.id),
                        s.last_seen_ms,
                        (SELECT count(*) FROM segments WHERE instance_id = i.id),
                        s.heap_profiling, s.heap_profiling_reason, s.agent_stats
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
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(
                "SELECT s.id, s.pid, s.start_time_ms, s.first_seen_ms, s.last_seen_ms
                 FROM segments s JOIN instances i ON i.id = s.instance_id
                 WHERE i.service = ?1 AND i.instance = ?2 ORDER BY s.first_seen_ms",
            )?;
            let rows = stmt.query_map([service, instance], |r| {
                Ok(Segment {
                    id: r.get(0)?,
                    pid: r.get(1)?,
                    start_time_ms: r.get(2)?,
                    first_seen_ms: r.get(3)?,
                    last_seen_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn metric_names(&self, service: &str, instance: Option<&str>) -> Result<Vec<String>> {
        self.with_reader(|c| {
            // Names are few; scanning them and probing each is cheaper than
            // a DISTINCT over all samples.
            let mut stmt = c.prepare(&format!(
                "SELECT m.name FROM metrics m WHERE EXISTS (
                    SELECT 1 FROM samples x JOIN segments s ON s.id = x.segment_id
                    JOIN instances i ON i.id = s.instance_id
                    WHERE x.metric_id = m.id AND {}) ORDER BY m.name",
                selector_clause()
            ))?;
            let rows = stmt.query_map(params![service, instance], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!("{POINTS} ORDER BY i.instance, x.ts_ms"))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, metric, sel.from_ms, sel.to_ms],
                point_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(&format!("{POINTS} ORDER BY x.ts_ms DESC LIMIT 1"))?;
            Ok(stmt
                .query_row(
                    params![sel.service, sel.instance, metric, sel.from_ms, sel.to_ms],
                    point_row,
                )
                .optional()?)
        })
    }

    fn pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT i.instance, p.start_ms, p.duration_ms, p.source, p.name
                 FROM pauses p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 WHERE {} AND p.start_ms >= ?3 AND p.start_ms <= ?4
                 ORDER BY p.start_ms LIMIT 10000",
                selector_clause()
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms],
                |r| {
                    Ok(StoredPause {
                        instance: r.get(0)?,
                        start_ms: r.get(1)?,
                        duration_ms: r.get(2)?,
                        source: r.get(3)?,
                        name: r.get(4)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn profiles(&self, sel: &Selector) -> Result<Vec<ProfileInfo>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, i.instance, p.segment_id, p.ts_ms, p.sample_period, p.total_bytes, p.total_objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY i.instance, p.ts_ms",
                selector_clause()
            ))?;
            let rows = stmt.query_map(params![sel.service, sel.instance, sel.from_ms, sel.to_ms], profile_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<ProfileInfo>> {
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

    fn profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT stack_id, bytes, objects FROM profile_stacks WHERE profile_id = ?1",
            )?;
            let rows = stmt.query_map([profile_id], |r| {
                Ok(StackValue {
                    stack_id: r.get(0)?,
                    bytes: r.get(1)?,
                    objects: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>> {
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

    fn site_series(&self, sel: &Selector, stack_id: i64) -> Result<Vec<SitePoint>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, p.ts_ms, ps.stack_id, ps.bytes, ps.objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 JOIN profile_stacks ps ON ps.profile_id = p.id AND ps.stack_id = ?5
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY p.ts_ms",
                selector_clause()
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms, stack_id],
                site_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn site_points(&self, sel: &Selector) -> Result<Vec<SitePoint>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT p.id, p.ts_ms, ps.stack_id, ps.bytes, ps.objects
                 FROM profiles p JOIN segments s ON s.id = p.segment_id
                 JOIN instances i ON i.id = s.instance_id
                 JOIN profile_stacks ps ON ps.profile_id = p.id
                 WHERE {} AND p.ts_ms >= ?3 AND p.ts_ms <= ?4
                 ORDER BY p.ts_ms",
                selector_clause()
            ))?;
            let rows = stmt.query_map(
                params![sel.service, sel.instance, sel.from_ms, sel.to_ms],
                |r| {
                    Ok(SitePoint {
                        profile_id: r.get(0)?,
                        ts_ms: r.get(1)?,
                        stack_id: r.get(2)?,
                        bytes: r.get(3)?,
                        objects: r.get(4)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>> {
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

    fn retain(&self, now_ms: i64, policy: &RetentionPolicy) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction()?;
        let cutoff = now_ms - policy.keep_ms;
        report.samples_deleted =
            tx.execute("DELETE FROM samples WHERE ts_ms < ?1", [cutoff])? as u64;
        report.pauses_deleted =
            tx.execute("DELETE FROM pauses WHERE start_ms < ?1", [cutoff])? as u64;
        // Tiers from the coarsest down, so each row is aggregated once.
        for (after_ms, bucket_ms) in policy.tiers.iter().rev() {
            let older = now_ms - after_ms;
            tx.execute("DROP TABLE IF EXISTS temp.agg", [])?;
            tx.execute(
                "CREATE TEMP TABLE agg AS
                 SELECT segment_id, metric_id, (ts_ms / ?2) * ?2 AS ts_ms,
                        sum(value * n) / sum(n) AS value,
                        min(coalesce(vmin, value)) AS vmin, max(coalesce(vmax, value)) AS vmax,
                        sum(n) AS n
                 FROM samples WHERE ts_ms < ?1 AND res < ?2
                 GROUP BY segment_id, metric_id, ts_ms / ?2",
                params![older, bucket_ms],
            )?;
            // Rows already at this resolution join their bucket too.
            let moved = tx.execute(
                "DELETE FROM samples WHERE ts_ms < ?1 AND res < ?2",
                params![older, bucket_ms],
            )?;
            tx.execute(
                "INSERT INTO samples (segment_id, metric_id, ts_ms, value, vmin, vmax, n, res)
                 SELECT a.segment_id, a.metric_id, a.ts_ms, a.value, a.vmin, a.vmax, a.n, ?1 FROM agg a
                 WHERE true
                 ON CONFLICT (segment_id, metric_id, ts_ms) DO UPDATE SET
                    value = (samples.value * samples.n + excluded.value * excluded.n) / (samples.n + excluded.n),
                    vmin = min(coalesce(samples.vmin, samples.value), excluded.vmin),
                    vmax = max(coalesce(samples.vmax, samples.value), excluded.vmax),
                    n = samples.n + excluded.n",
                [bucket_ms],
            )?;
            tx.execute("DROP TABLE temp.agg", [])?;
            report.samples_downsampled += moved as u64;
        }
        report.raw_profiles_dropped = tx.execute(
            "UPDATE profiles SET pprof = NULL WHERE ts_ms < ?1 AND pprof IS NOT NULL",
            [now_ms - policy.raw_profile_keep_ms],
        )? as u64;
        // Profiles: drop the expired, thin the old to one per bucket.
        let doomed = "SELECT id FROM profiles WHERE ts_ms < ?1
             OR (ts_ms < ?2 AND id NOT IN (
                 SELECT min(id) FROM profiles WHERE ts_ms < ?2 GROUP BY segment_id, ts_ms / ?3))";
        let thin_before = now_ms - policy.profile_thin_after_ms;
        tx.execute(
            &format!("DELETE FROM profile_stacks WHERE profile_id IN ({doomed})"),
            params![cutoff, thin_before, policy.profile_bucket_ms],
        )?;
        report.profiles_deleted = tx.execute(
            &format!("DELETE FROM profiles WHERE id IN ({doomed})"),
            params![cutoff, thin_before, policy.profile_bucket_ms],
        )? as u64;
        if report.profiles_deleted > 0 {
            report.stacks_deleted = tx.execute(
                "DELETE FROM stacks WHERE NOT EXISTS (SELECT 1 FROM profile_stacks ps WHERE ps.stack_id = stacks.id)",
                [],
            )? as u64;
            // Deleted ids must not be handed out from the cache again.
            ids.stack_ids.clear();
        }
        tx.execute(
            "DELETE FROM segments WHERE last_seen_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM samples WHERE segment_id = segments.id)
               AND NOT EXISTS (SELECT 1 FROM profiles WHERE segment_id = segments.id)",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats> {
        self.with_reader(|c| {
            let count = |sql: &str| -> rusqlite::Result<u64> {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|v| v as u64)
            };
            let page_count = count("PRAGMA page_count")?;
            let page_size = count("PRAGMA page_size")?;
            let wal = std::fs::metadata(format!("{}-wal", self.path.display()))
                .map(|m| m.len())
                .unwrap_or(0);
            let file_bytes = page_count * page_size + wal;
            let used_bytes = (page_count - count("PRAGMA freelist_count")?) * page_size;
            let agent_ms: f64 = c.query_row(
                "SELECT coalesce(sum(max(last_seen_ms - first_seen_ms, 0)), 0) FROM segments",
                [],
                |r| r.get(0),
            )?;
            let agent_days = agent_ms / 86_400_000.0;
            Ok(StoreStats {
                file_bytes,
                used_bytes,
                instances: count("SELECT count(*) FROM instances")?,
                segments: count("SELECT count(*) FROM segments")?,
                samples: count("SELECT count(*) FROM samples")?,
                profiles: count("SELECT count(*) FROM profiles")?,
                stacks: count("SELECT count(*) FROM stacks")?,
                agent_days,
                bytes_per_agent_day: (agent_days > 0.0).then(|| used_bytes as f64 / agent_days),
            })
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

fn profile_row(r: &rusqlite::Row) -> rusqlite::Result<ProfileInfo> {
    Ok(ProfileInfo {
        id: r.get(0)?,
        instance: r.get(1)?,
        segment: r.get(2)?,
        ts_ms: r.get(3)?,
        sample_period_bytes: r.get::<_, i64>(4)? as u64,
        total_bytes: r.get(5)?,
        total_objects: r.get(6)?,
    })
}
