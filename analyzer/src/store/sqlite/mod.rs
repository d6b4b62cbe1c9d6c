//! The embedded store: one SQLite file in WAL mode.
//!
//! A profile's stacks are stored once each in `stacks`; a snapshot stores
//! only (stack, bytes, objects) rows, indexed by stack, so that a day of one
//! site's live bytes is an index range scan. Every statement binds its
//! parameters: no SQL is ever built from input.

mod findings;
mod read;
mod retention;
mod schema;
mod series;
mod symbols;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::*;
use crate::error::{Error, StoreTrouble};
use crate::ingest::ValidBatch;
use schema::{configure, SCHEMA, SCHEMA_VERSION};
use write::IdCache;

pub struct SqliteStore {
    path: PathBuf,
    bounds: Bounds,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

struct Writer {
    conn: Connection,
    ids: IdCache,
}

/// When a commit is on disk: SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Synced at checkpoints: a commit survives the analyzer being killed,
    /// and an OS crash or power loss can lose the last few.
    #[default]
    Normal,
    /// Every commit synced before the batch is acknowledged.
    Full,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Normal => "normal",
            Durability::Full => "full",
        })
    }
}

impl std::str::FromStr for Durability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "normal" => Ok(Durability::Normal),
            "full" => Ok(Durability::Full),
            _ => Err(Error::invalid("durability", "must be normal or full")),
        }
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if needed, with
    /// [`Durability::Normal`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Durability::Normal)
    }

    /// Opens the store at `path` for writing, creating it if needed.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: rusqlite::Error| Error::StoreOpen {
            path: path.display().to_string(),
            source: source.into(),
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn, durability.pragma()).map_err(open_err)?;
        let version = check_version(&conn, &path, false)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        if (1..5).contains(&version) {
            schema::backfill_rollups(&conn).map_err(open_err)?;
        }
        if (1..6).contains(&version) {
            schema::add_names_last_seen(&conn, crate::select::now_ms()).map_err(open_err)?;
        }
        if (1..7).contains(&version) {
            for column in ["alloc_bytes", "alloc_objects"] {
                schema::add_column(
                    &conn,
                    "profile_stacks",
                    column,
                    "INTEGER NOT NULL DEFAULT 0",
                )
                .map_err(open_err)?;
            }
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
        Ok(Self::with_writer(path, conn))
    }

    /// Opens a store that must already exist, read-only, as the read
    /// commands do: they can neither change it nor upgrade its schema.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(Error::StoreMissing(path.display().to_string()));
        }
        let conn = read_only(&path)?;
        check_version(&conn, &path, true)?;
        Ok(Self::with_writer(path, conn))
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or what is wrong.
    pub fn integrity_check(&self) -> Result<String> {
        let w = self.writer();
        Ok(w.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?)
    }

    /// SQLite's `synchronous` on the writing connection: 1 is NORMAL, 2
    /// FULL ([`Durability`]).
    pub fn synchronous(&self) -> Result<i64> {
        let w = self.writer();
        Ok(w.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
    }

    /// The same store, holding new instances to `bounds`.
    pub fn bounded(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn with_writer(path: PathBuf, conn: Connection) -> Self {
        SqliteStore {
            path,
            bounds: Bounds::default(),
            writer: Mutex::new(Writer {
                conn,
                ids: IdCache::default(),
            }),
            readers: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match conn {
            Some(c) => c,
            None => read_only(&self.path)?,
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

/// SQLite's errors, sorted into the trouble every backend reports.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let trouble = match e.sqlite_error_code() {
            Some(C::DiskFull) => StoreTrouble::DiskFull,
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreTrouble::Busy,
            Some(C::SystemIoFailure | C::CannotOpen) => StoreTrouble::DiskUnusable,
            _ => StoreTrouble::Other,
        };
        Error::StoreFailed {
            trouble,
            reason: e.to_string(),
        }
    }
}

fn read_only(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| Error::StoreOpen {
        path: path.display().to_string(),
        source: source.into(),
    })?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

/// Refuses a store written by a newer analyzer, and, read-only, one that
/// would need an upgrade first.
fn check_version(conn: &Connection, path: &Path, read_only: bool) -> Result<i32> {
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| Error::StoreOpen {
            path: path.display().to_string(),
            source: source.into(),
        })?;
    let reason = if version > SCHEMA_VERSION {
        format!("store schema version {version} is newer than this analyzer's {SCHEMA_VERSION}")
    } else if read_only && version < SCHEMA_VERSION {
        format!("store schema version {version} is older than this analyzer's {SCHEMA_VERSION}; run `analyzer serve` on it once to upgrade it")
    } else {
        return Ok(version);
    };
    Err(Error::Config {
        path: path.display().to_string(),
        reason,
    })
}

impl Store for SqliteStore {
    /// One transaction per batch: stored when this returns.
    fn submit(&self, vb: &ValidBatch, received_ms: i64) -> Result<Receipt> {
        self.write_batch(vb, received_ms).map(Receipt::ready)
    }

    fn instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.read_instances(service)
    }

    fn segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>> {
        self.read_segments(service, instance)
    }

    fn metric_names(&self, service: &str, instance: Option<&str>) -> Result<Vec<String>> {
        self.read_metric_names(service, instance)
    }

    fn all_metric_names(&self) -> Result<Vec<String>> {
        // Retention keeps the names table to names with data.
        self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT name FROM metrics")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        self.read_series(sel, metric)
    }

    fn envelopes_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<ByInstance<Vec<EnvelopeBucket>>> {
        self.read_envelopes_of(sel, instances, metrics, bucket_ms)
    }

    fn latest_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
    ) -> Result<ByInstance<Point>> {
        self.read_latest_of(sel, instances, metrics)
    }

    fn envelope(
        &self,
        sel: &Selector,
        metric: &str,
        bucket_ms: i64,
    ) -> Result<Vec<EnvelopeBucket>> {
        self.read_envelope(sel, metric, bucket_ms)
    }

    fn latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        self.read_latest(sel, metric)
    }

    fn pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        self.read_pauses(sel)
    }

    fn profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        self.read_profiles(sel)
    }

    fn profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>> {
        self.read_profile_nearest(service, instance, at_ms)
    }

    fn profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>> {
        self.read_profile_values(profile_id)
    }

    fn profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>> {
        self.read_profile_raw(profile_id)
    }

    fn profile_ages(&self, profile_id: i64) -> Result<HashMap<i64, Ages>> {
        self.read_profile_ages(profile_id)
    }

    fn site_series(&self, sel: &Selector, stack_id: i64) -> Result<Vec<SitePoint>> {
        self.read_site_series(sel, stack_id)
    }

    fn site_points(&self, sel: &Selector) -> Result<Vec<SitePoint>> {
        self.read_site_points(sel)
    }

    fn symbols(
        &self,
        build_id: &str,
        offsets: &[u64],
    ) -> Result<std::collections::HashMap<u64, Vec<heaptide_wire::pprof::Frame>>> {
        self.read_symbols(build_id, offsets)
    }

    fn keep_symbols(
        &self,
        build_id: &str,
        rows: &[(u64, Vec<heaptide_wire::pprof::Frame>)],
    ) -> Result<()> {
        self.write_symbols(build_id, rows)
    }

    fn stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>> {
        self.read_stacks(ids)
    }

    fn retain(&self, now_ms: i64, policy: &RetentionPolicy) -> Result<RetentionReport> {
        self.apply_retention(now_ms, policy)
    }

    fn disk_bytes(&self) -> Result<u64> {
        self.measure_file()
    }

    fn stats(&self) -> Result<StoreStats> {
        self.measure()
    }
}

impl EvaluationState for SqliteStore {
    fn keep_findings(
        &self,
        service: &str,
        instance: &str,
        evaluated_ms: i64,
        findings_json: &str,
    ) -> Result<()> {
        self.write_findings(service, instance, evaluated_ms, findings_json)
    }

    fn kept_findings(&self, service: Option<&str>) -> Result<Vec<KeptFindings>> {
        self.read_findings(service)
    }

    fn kept_times(&self) -> Result<HashMap<(String, String), i64>> {
        self.read_kept_times()
    }

    /// One analyzer writes a SQLite file, so it holds every shard:
    /// `serve` refuses `--shard` with this store.
    fn keep_alerts(&self, _shard: Shard, alerts: &[KeptAlert]) -> Result<()> {
        self.write_alerts(alerts)
    }

    fn kept_alerts(&self) -> Result<Vec<KeptAlert>> {
        self.read_alerts()
    }

    fn record_transitions(&self, transitions: &[Transition]) -> Result<()> {
        self.write_transitions(transitions)
    }

    fn transitions(&self, service: &str, instance: &str, limit: usize) -> Result<Vec<Transition>> {
        self.read_transitions(service, instance, limit)
    }
}
