//! The SQLite schema, versioned with `user_version`.

use rusqlite::Connection;

/// 2 added `findings`: the latest judgement of each instance; 3 added
/// `alerts` and `transitions`; 4 added `profile_ages`; 5 added `rollups`;
/// 6 added `metrics.last_seen_ms`, so that retention can delete names
/// with no data; 7 added `profile_stacks.alloc_bytes` and `alloc_objects`,
/// what each stack allocated since its process's previous profile; 8
/// added `symbols`, the names of build-ids' addresses.
pub(super) const SCHEMA_VERSION: i32 = 8;

pub(super) const SCHEMA: &str = "
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
-- last_seen_ms: when a batch last wrote the name, marked at most hourly.
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    last_seen_ms INTEGER NOT NULL DEFAULT 0
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
-- Per-series buckets of raw samples, res ms wide from bucket_ms, written
-- in each batch's transaction for the samples that were new
-- (`store::rollup`). No index by time: retention deletes through the
-- primary key, segment by segment, which costs less than an index's
-- bytes on every row.
CREATE TABLE IF NOT EXISTS rollups (
    segment_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    res INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,
    vmin REAL NOT NULL,
    vmax REAL NOT NULL,
    n INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (segment_id, metric_id, res, bucket_ms)
) WITHOUT ROWID;
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
-- The frames at each address of a build-id (its offset in the object's
-- file), resolved once for every instance that runs it.
CREATE TABLE IF NOT EXISTS symbols (
    build_id TEXT NOT NULL,
    offset INTEGER NOT NULL,
    frames TEXT NOT NULL,
    PRIMARY KEY (build_id, offset)
) WITHOUT ROWID;
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
    alloc_bytes INTEGER NOT NULL DEFAULT 0,
    alloc_objects INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (profile_id, stack_id)
) WITHOUT ROWID;
-- Live bytes of a profile's stack by age, as a JSON array over the wire's
-- age buckets; only for stacks whose agent tracked ages.
CREATE TABLE IF NOT EXISTS profile_ages (
    profile_id INTEGER NOT NULL,
    stack_id INTEGER NOT NULL,
    ages TEXT NOT NULL,
    PRIMARY KEY (profile_id, stack_id)
) WITHOUT ROWID;
-- The latest findings of each instance, as the engine's JSON, so pages
-- and commands need not judge a fleet to show it.
CREATE TABLE IF NOT EXISTS findings (
    instance_id INTEGER PRIMARY KEY,
    evaluated_ms INTEGER NOT NULL,
    findings TEXT NOT NULL
);
-- The pending and firing alerts, as JSON, replaced after every evaluation.
CREATE TABLE IF NOT EXISTS alerts (
    alert_key TEXT PRIMARY KEY,
    alert TEXT NOT NULL
);
-- When findings began, changed severity and ended, and when alerts fired
-- and resolved: each instance's history.
CREATE TABLE IF NOT EXISTS transitions (
    at_ms INTEGER NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    subject TEXT NOT NULL,
    resource TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_instance ON transitions (service, instance, at_ms);
-- No index by stack: one site's series probes this primary key once per
-- profile, which is cheap, and an index would cost a third more space.
";

/// `synchronous` is the store's durability (`Durability`): WAL lets readers
/// run while `serve` writes; NORMAL syncs at checkpoints, FULL at every
/// commit.
pub(super) fn configure(conn: &Connection, synchronous: &str) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Adds `column` to `table` unless it is there: a store written before
/// the column existed reads it as its default.
pub(super) fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    decl: &str,
) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Gives the names of a store written before version 6 the time they were
/// last written, taken to be now: they are deleted only once unused for
/// the whole retention from here.
pub(super) fn add_names_last_seen(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    add_column(
        conn,
        "metrics",
        "last_seen_ms",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    conn.execute("UPDATE metrics SET last_seen_ms = ?1", [now_ms])?;
    Ok(())
}

/// Fills the rollups of a store written before they existed, from its
/// samples, raw and downsampled alike: each row joins the bucket its time
/// falls in. Run once, in the upgrade's transaction.
pub(super) fn backfill_rollups(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for t in crate::store::rollup::TIERS {
        tx.execute(
            "INSERT OR IGNORE INTO rollups (segment_id, metric_id, res, bucket_ms, vmin, vmax, n, first_ms, last_ms)
             SELECT segment_id, metric_id, ?1, (ts_ms / ?1) * ?1, min(coalesce(vmin, value)),
                    max(coalesce(vmax, value)), sum(n), min(ts_ms), max(ts_ms)
             FROM samples WHERE ts_ms >= 0 GROUP BY segment_id, metric_id, ts_ms / ?1",
            [t.res_ms],
        )?;
    }
    tx.commit()
}
