//! Retention (expiry, downsampling, profile thinning) and the store's
//! size.

use rusqlite::params;

use super::{SqliteStore, Writer};
use crate::error::Result;
use crate::store::*;

impl SqliteStore {
    pub(super) fn apply_retention(
        &self,
        now_ms: i64,
        policy: &RetentionPolicy,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let mut guard = self.writer();
        let Writer { conn, ids } = &mut *guard;
        let tx = conn.transaction()?;
        let cutoff = now_ms - policy.keep_ms;
        report.samples_deleted =
            tx.execute("DELETE FROM samples WHERE ts_ms < ?1", [cutoff])? as u64;
        report.pauses_deleted =
            tx.execute("DELETE FROM pauses WHERE start_ms < ?1", [cutoff])? as u64;
        report.samples_downsampled = downsample(&tx, now_ms, policy)?;
        for t in crate::store::rollup::TIERS {
            let before = t.keep_ms.map_or(cutoff, |k| cutoff.max(now_ms - k));
            // Only segments that began before the cutoff hold buckets
            // before it; each is a range of the primary key.
            tx.execute(
                "DELETE FROM rollups
                 WHERE segment_id IN (SELECT id FROM segments WHERE first_seen_ms < ?1
                                      OR start_time_ms < ?1)
                   AND metric_id IN (SELECT id FROM metrics)
                   AND res = ?2 AND bucket_ms < ?1",
                params![before, t.res_ms],
            )?;
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
        for table in ["profile_stacks", "profile_ages"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE profile_id IN ({doomed})"),
                params![cutoff, thin_before, policy.profile_bucket_ms],
            )?;
        }
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
            ids.forget_stacks();
        }
        // A name last written before the cutoff, less the clock skew an
        // agent may have and the marking interval, has no data left.
        let names_before = cutoff - crate::ingest::MAX_CLOCK_SKEW_MS - 3_600_000;
        if tx.execute(
            "DELETE FROM metrics WHERE last_seen_ms < ?1",
            [names_before],
        )? > 0
        {
            ids.forget_metrics();
        }
        tx.execute("DELETE FROM findings WHERE evaluated_ms < ?1", [cutoff])?;
        tx.execute("DELETE FROM transitions WHERE at_ms < ?1", [cutoff])?;
        tx.execute(
            "DELETE FROM segments WHERE last_seen_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM samples WHERE segment_id = segments.id)
               AND NOT EXISTS (SELECT 1 FROM profiles WHERE segment_id = segments.id)",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(report)
    }

    /// The file and its WAL on disk: cheap, unlike [`Self::measure`].
    pub(super) fn measure_file(&self) -> Result<u64> {
        self.with_reader(|c| Ok(file_bytes(c, &self.path)?))
    }

    pub(super) fn measure(&self) -> Result<StoreStats> {
        self.with_reader(|c| {
            let count = |sql: &str| -> rusqlite::Result<u64> {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|v| v as u64)
            };
            let page_count = count("PRAGMA page_count")?;
            let page_size = count("PRAGMA page_size")?;
            let disk_bytes = file_bytes(c, &self.path)?;
            let data_bytes = (page_count - count("PRAGMA freelist_count")?) * page_size;
            let agent_ms: f64 = c.query_row(
                "SELECT coalesce(sum(max(last_seen_ms - first_seen_ms, 0)), 0) FROM segments",
                [],
                |r| r.get(0),
            )?;
            let agent_days = agent_ms / 86_400_000.0;
            Ok(StoreStats {
                disk_bytes,
                data_bytes,
                instances: count("SELECT count(*) FROM instances")?,
                segments: count("SELECT count(*) FROM segments")?,
                samples: count("SELECT count(*) FROM samples")?,
                profiles: count("SELECT count(*) FROM profiles")?,
                stacks: count("SELECT count(*) FROM stacks")?,
                agent_days,
                bytes_per_agent_day: (agent_days > 0.0).then(|| data_bytes as f64 / agent_days),
            })
        })
    }
}

fn file_bytes(c: &rusqlite::Connection, path: &std::path::Path) -> rusqlite::Result<u64> {
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok((pages * page_size) as u64 + wal)
}

/// Folds samples older than each tier into its buckets, keeping each
/// bucket's mean, minimum and maximum; returns the rows folded.
fn downsample(tx: &rusqlite::Transaction, now_ms: i64, policy: &RetentionPolicy) -> Result<u64> {
    let mut downsampled = 0;
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
        downsampled += moved as u64;
    }
    Ok(downsampled)
}
