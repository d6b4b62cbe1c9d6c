//! Rollups: per-series buckets written at ingest, so that an envelope over
//! a long window reads a bucket per minute or per quarter hour instead of
//! every raw sample.
//!
//! Each bucket of a tier holds its samples' minimum, maximum and count,
//! and the times of its first and last sample: exactly what an envelope
//! bucket is made of, so an envelope whose width is a multiple of a
//! tier's is the same read from either. No sum is kept: nothing reads a
//! mean over a long window from rollups (charts read the downsampled
//! samples), and on ClickHouse a replayed batch would count a sum twice,
//! where a count of distinct sample times does not.
//!
//! Both stores write them in the ingest path (SQLite in the batch's
//! transaction, for rows that were new; ClickHouse through a materialized
//! view into an `AggregatingMergeTree`), and read them through the
//! [`Plan`] here: the tier's buckets for the whole buckets of the window,
//! raw samples for the two partial ends.

use super::EnvelopeBucket;

/// One tier of rollups: its bucket width, and how long its buckets are
/// kept (`None`: as long as the store keeps anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tier {
    pub res_ms: i64,
    pub keep_ms: Option<i64>,
}

const HOUR: i64 = 3_600_000;

/// The tiers, finest first. The minute tier serves windows of a few hours
/// to a day, and young instances' shorter spans; the quarter-hour tier, a
/// day and longer, as long as the store keeps data (raw samples are
/// thinned after a day: see [`super::RetentionPolicy`]).
pub(crate) const TIERS: [Tier; 2] = [
    Tier {
        res_ms: 60_000,
        keep_ms: Some(26 * HOUR),
    },
    Tier {
        res_ms: 900_000,
        keep_ms: None,
    },
];

/// Windows shorter than this are read raw: a few hours of 10 s samples
/// are cheap, and the envelope's buckets there are narrower than a
/// minute.
pub(crate) const MIN_SPAN_MS: i64 = 3 * HOUR;

/// How an envelope is read: the tier's buckets in `[from_ms, to_ms)`,
/// and raw samples for `edges`, the window's parts outside whole buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub res_ms: i64,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Inclusive ranges of raw samples, empty ones left out.
    pub edges: Vec<(i64, i64)>,
}

/// The plan for an envelope of `bucket_ms` over `[from_ms, to_ms]`
/// (inclusive), read at `now_ms`; `None` when rollups cannot serve it
/// exactly: a short window, a width that is no tier's multiple, or a
/// window older than the tier keeps.
pub(crate) fn plan(from_ms: i64, to_ms: i64, bucket_ms: i64, now_ms: i64) -> Option<Plan> {
    if to_ms - from_ms < MIN_SPAN_MS || from_ms < 0 {
        return None;
    }
    // The coarsest tier that divides the width and still holds the window;
    // an hour's margin, since retention runs every few minutes.
    let tier = TIERS.iter().rev().find(|t| {
        bucket_ms % t.res_ms == 0 && t.keep_ms.is_none_or(|k| from_ms >= now_ms - k + HOUR)
    })?;
    let res = tier.res_ms;
    let first = from_ms.div_euclid(res) * res + if from_ms % res == 0 { 0 } else { res };
    let end = (to_ms + 1).div_euclid(res) * res;
    if end - first < 2 * res {
        return None;
    }
    let edges = [(from_ms, first - 1), (end, to_ms)]
        .into_iter()
        .filter(|(a, b)| a <= b)
        .collect();
    Some(Plan {
        res_ms: res,
        from_ms: first,
        to_ms: end,
        edges,
    })
}

/// An envelope bucket before its middle is known: what rollups and raw
/// edges each give of a bucket, merged by [`merge`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    pub service: String,
    pub instance: String,
    pub segment: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub min: f64,
    pub max: f64,
    pub samples: i64,
}

/// Merges parts of the same segment and envelope bucket (`bucket_ms`),
/// and orders the buckets by time, as [`super::Store::envelope`] does.
pub(crate) fn merge(parts: Vec<Part>, bucket_ms: i64) -> Vec<EnvelopeBucket> {
    let mut by_key: std::collections::BTreeMap<(i64, i64), Part> = Default::default();
    for p in parts {
        let key = (p.segment, p.first_ms.div_euclid(bucket_ms.max(1)));
        match by_key.entry(key) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(p);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let q = o.get_mut();
                q.first_ms = q.first_ms.min(p.first_ms);
                q.last_ms = q.last_ms.max(p.last_ms);
                q.min = q.min.min(p.min);
                q.max = q.max.max(p.max);
                q.samples += p.samples;
            }
        }
    }
    let mut out: Vec<EnvelopeBucket> = by_key
        .into_values()
        .map(|p| EnvelopeBucket {
            service: p.service,
            instance: p.instance,
            segment: p.segment,
            ts_ms: (p.first_ms + p.last_ms) / 2,
            first_ms: p.first_ms,
            min: p.min,
            max: p.max,
            samples: p.samples,
        })
        .collect();
    out.sort_by_key(|b| (b.ts_ms, b.segment));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * HOUR;

    #[test]
    fn a_day_at_quarter_hours_reads_the_coarse_tier_and_raw_edges() {
        let now = 100 * DAY + 123_456;
        let p = plan(now - DAY, now, 900_000, now).unwrap();
        assert_eq!(p.res_ms, 900_000);
        assert_eq!(p.from_ms % 900_000, 0);
        assert_eq!(p.to_ms % 900_000, 0);
        assert!(p.from_ms >= now - DAY && p.from_ms - (now - DAY) < 900_000);
        assert_eq!(p.edges, vec![(now - DAY, p.from_ms - 1), (p.to_ms, now)]);
    }

    #[test]
    fn aligned_windows_need_no_edges_and_odd_widths_no_rollups() {
        let now = 100 * DAY;
        let p = plan(now - DAY, now - 1, 900_000, now).unwrap();
        assert!(p.edges.is_empty(), "{p:?}");
        assert_eq!(plan(now - DAY, now, 450_000, now), None, "7.5 minutes");
        assert_eq!(plan(now - HOUR, now, 60_000, now), None, "short window");
        let six = plan(now - 6 * HOUR, now, 240_000, now).unwrap();
        assert_eq!(six.res_ms, 60_000);
    }

    #[test]
    fn the_minute_tier_is_not_read_past_what_it_keeps() {
        let now = 100 * DAY;
        assert_eq!(plan(now - 2 * DAY, now - DAY, 60_000, now), None);
        let old = plan(now - 2 * DAY, now - DAY, 900_000, now).unwrap();
        assert_eq!(old.res_ms, 900_000);
    }

    fn part(segment: i64, first: i64, last: i64, min: f64, max: f64, n: i64) -> Part {
        Part {
            service: "s".into(),
            instance: "i".into(),
            segment,
            first_ms: first,
            last_ms: last,
            min,
            max,
            samples: n,
        }
    }

    #[test]
    fn parts_of_one_bucket_merge_and_buckets_come_in_time_order() {
        let b = merge(
            vec![
                part(1, 1_000, 2_000, 5.0, 6.0, 2),
                part(1, 0, 500, 4.0, 9.0, 1),
                part(1, 10_000, 10_000, 1.0, 1.0, 1),
                part(2, 100, 100, 3.0, 3.0, 1),
            ],
            10_000,
        );
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].segment, b[0].ts_ms), (2, 100));
        assert_eq!((b[1].first_ms, b[1].ts_ms), (0, 1_000));
        assert_eq!((b[1].min, b[1].max, b[1].samples), (4.0, 9.0, 3));
        assert_eq!(b[2].first_ms, 10_000);
    }
}
