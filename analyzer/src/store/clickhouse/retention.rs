//! Retention and size. ClickHouse 18.16 has no `TTL`, so this pass does
//! what TTLs on day-partitioned tables would: a day whose last moment is
//! past the retention is one `DROP PARTITION` per table; a day of raw
//! samples past the first tier is folded into 1-minute rows by one
//! `INSERT … SELECT` inside ClickHouse, and its raw partition dropped;
//! the same again from 1 minute to 10. Every step is idempotent, so two
//! analyzers running it at once store nothing twice.

use super::rowbinary::{lit, RowWriter};
use super::ClickHouseStore;
use crate::error::Result;
use crate::store::*;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// Tables partitioned by day alone. `settles` and `late` are kept as long
/// as the data: a mark must outlive a pause in settling, and settling
/// starts afresh when its record is gone (`super::settle`).
const DAY_TABLES: [&str; 9] = [
    "settles",
    "late",
    "latest",
    "pauses",
    "profiles",
    "profile_stacks",
    "profile_ages",
    "alerts",
    "transitions",
];

/// One active partition of a table.
struct Part {
    table: String,
    id: String,
    rows: u64,
}

impl Part {
    /// The first millisecond after the day of a `YYYYMMDD` partition
    /// (or `YYYYMMDD-res`), or the hour of `profile_raw`'s.
    fn end_ms(&self) -> Option<i64> {
        if self.table == "profile_raw" {
            return self.id.parse::<i64>().ok().map(|h| (h + 1) * HOUR_MS);
        }
        let day = self.id.split('-').next()?;
        let date = humantime::parse_rfc3339_weak(&format!(
            "{}-{}-{}T00:00:00",
            day.get(0..4)?,
            day.get(4..6)?,
            day.get(6..8)?
        ))
        .ok()?;
        let ms = date.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
        Some(ms + DAY_MS)
    }

    /// The resolution of a `samples` partition.
    fn res(&self) -> Option<i64> {
        self.id.split_once('-')?.1.parse().ok()
    }

    fn day_literal(&self) -> Option<String> {
        let d = self.id.get(0..8)?;
        Some(format!("'{}-{}-{}'", &d[0..4], &d[4..6], &d[6..8]))
    }
}

/// Where a rollup partition of resolution `res` expires: its tier's own
/// keep, if it has one, else the store's.
fn rollup_cutoff(res: Option<i64>, cutoff: i64, now_ms: i64) -> i64 {
    crate::store::rollup::TIERS
        .iter()
        .find(|t| Some(t.res_ms) == res)
        .and_then(|t| t.keep_ms)
        .map_or(cutoff, |k| cutoff.max(now_ms - k))
}

impl ClickHouseStore {
    fn parts(&self) -> Result<Vec<Part>> {
        self.rows(
            &format!(
                "SELECT table, partition_id, sum(rows) FROM system.parts
                 WHERE database = {} AND active GROUP BY table, partition_id",
                lit(&self.url.database)
            ),
            |r| {
                Ok(Part {
                    table: r.string()?,
                    id: r.string()?,
                    rows: r.u64()?,
                })
            },
        )
    }

    fn drop_part(&self, p: &Part) -> Result<()> {
        self.exec(&format!(
            "ALTER TABLE {} DROP PARTITION ID {}",
            p.table,
            lit(&p.id)
        ))
    }

    pub(super) fn apply_retention(
        &self,
        now_ms: i64,
        policy: &RetentionPolicy,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let cutoff = now_ms - policy.keep_ms;
        for p in self.parts()? {
            let Some(end) = p.end_ms() else { continue };
            let expired = match p.table.as_str() {
                "profile_raw" => end <= now_ms - policy.raw_profile_keep_ms,
                "samples" => end <= cutoff,
                t if super::rollups::tier_of(t).is_some() => {
                    end <= rollup_cutoff(super::rollups::tier_of(t), cutoff, now_ms)
                }
                t => DAY_TABLES.contains(&t) && end <= cutoff,
            };
            if expired {
                self.drop_part(&p)?;
                match p.table.as_str() {
                    "samples" => report.samples_deleted += p.rows,
                    "pauses" => report.pauses_deleted += p.rows,
                    "profiles" => report.profiles_deleted += p.rows,
                    "profile_raw" => report.raw_profiles_dropped += p.rows,
                    _ => {}
                }
            } else if p.table == "samples" {
                report.samples_downsampled += self.downsample(&p, end, now_ms, policy)?;
            } else if p.table == "profiles" && end <= now_ms - policy.profile_thin_after_ms {
                self.thin_profiles(&p, policy.profile_bucket_ms)?;
            }
        }
        Ok(report)
    }

    /// Folds a day of samples into the next tier once the whole day is
    /// past the tier's age, then drops the finer rows. Returns the rows
    /// folded.
    fn downsample(&self, p: &Part, end: i64, now_ms: i64, policy: &RetentionPolicy) -> Result<u64> {
        let (Some(res), Some(day)) = (p.res(), p.day_literal()) else {
            return Ok(0);
        };
        // The coarsest tier this day is old enough for, and finer than
        // what it holds.
        let Some(bucket) = policy
            .tiers
            .iter()
            .filter(|(after, bucket)| end <= now_ms - after && *bucket > res)
            .map(|(_, bucket)| *bucket)
            .max()
        else {
            return Ok(0);
        };
        // A folded row is stamped with the first time it folds, not the
        // bucket's start: the rollups' views see this insert too (18.16
        // pushes the inserted block past their `res = 0` filter), and a
        // time the bucket already counted adds nothing to its distinct
        // count, while its mean lies within the floor and peak.
        self.exec(&format!(
            "INSERT INTO samples (segment, metric, res, ts_ms, value, vmin, vmax, n)
             SELECT segment, metric, {bucket}, min(ts_ms),
                    sum(v * k) / sum(k), min(lo), max(hi), sum(k)
             FROM (SELECT segment, metric, ts_ms, any(value) AS v, any(vmin) AS lo,
                     any(vmax) AS hi, any(n) AS k
                   FROM samples WHERE toDate(intDiv(ts_ms, 1000)) = {day} AND res = {res}
                   GROUP BY segment, metric, ts_ms)
             GROUP BY segment, metric, intDiv(ts_ms, {bucket})"
        ))?;
        self.drop_part(p)?;
        Ok(p.rows)
    }

    /// Keeps one profile per bucket of a day past the thinning age: the
    /// first. A mutation, run once per day: a marker in `meta` says it ran.
    fn thin_profiles(&self, p: &Part, bucket_ms: i64) -> Result<()> {
        let Some(day) = p.day_literal() else {
            return Ok(());
        };
        let marker = format!("thinned {}", p.id);
        let done = self.rows(
            &format!("SELECT count() FROM meta WHERE key = {}", lit(&marker)),
            |r| r.u64(),
        )?;
        if done.first().copied().unwrap_or(0) > 0 {
            return Ok(());
        }
        let keep = format!(
            "(segment, ts_ms) NOT IN (SELECT segment, min(ts_ms) FROM profiles
               WHERE toDate(intDiv(ts_ms, 1000)) = {day} GROUP BY segment, intDiv(ts_ms, {bucket_ms}))"
        );
        // Profiles last: the others' mutations read it.
        for table in ["profile_stacks", "profile_ages", "profiles"] {
            self.exec(&format!(
                "ALTER TABLE {table} DELETE WHERE toDate(intDiv(ts_ms, 1000)) = {day} AND {keep}"
            ))?;
        }
        let mut w = RowWriter::default();
        w.str(&marker).i64(1).row();
        self.client.insert("meta", &w.buf).map_err(|e| self.fail(e))
    }

    /// Bytes of the database's active parts on disk: cheap, for `/metrics`.
    pub(super) fn measure_disk(&self) -> Result<u64> {
        Ok(self.disk()?.0)
    }

    fn disk(&self) -> Result<(u64, u64)> {
        let rows = self.rows(
            &format!(
                "SELECT sum(bytes_on_disk), sum(data_compressed_bytes) FROM system.parts
                 WHERE database = {} AND active",
                lit(&self.url.database)
            ),
            |r| Ok((r.u64()?, r.u64()?)),
        )?;
        Ok(rows.first().copied().unwrap_or((0, 0)))
    }

    pub(super) fn measure(&self) -> Result<StoreStats> {
        let (disk_bytes, data_bytes) = self.disk()?;
        let count = |sql: &str| -> Result<u64> {
            Ok(self.rows(sql, |r| r.u64())?.first().copied().unwrap_or(0))
        };
        let agent_ms = self.rows(
            "SELECT sum(span) FROM (SELECT greatest(max(last_seen_ms) - min(first_seen_ms), 0) AS span
               FROM segments GROUP BY id)",
            |r| r.i64(),
        )?;
        let agent_days = agent_ms.first().copied().unwrap_or(0) as f64 / DAY_MS as f64;
        Ok(StoreStats {
            disk_bytes,
            data_bytes,
            instances: count("SELECT uniqExact(service, instance) FROM segments")?,
            segments: count("SELECT uniqExact(id) FROM segments")?,
            samples: count("SELECT count() FROM samples")?,
            profiles: count("SELECT uniqExact(id) FROM profiles")?,
            stacks: count("SELECT uniqExact(id) FROM stacks")?,
            agent_days,
            bytes_per_agent_day: (agent_days > 0.0).then(|| disk_bytes as f64 / agent_days),
        })
    }
}
