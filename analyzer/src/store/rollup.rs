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
//! [`plan`] here: a tier's whole buckets in the middle of a window, raw
//! samples at its end, and at its start when it is short.

use std::sync::Arc;

use super::EnvelopeBucket;

/// One tier of rollups: its bucket width, and how long its buckets are
/// kept (`None`: as long as the store keeps anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tier {
    pub res_ms: i64,
    pub keep_ms: Option<i64>,
}

const HOUR: i64 = 3_600_000;

/// The minute tier's bucket width.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// The quarter-hour tier's bucket width.
pub(crate) const QUARTER_HOUR_MS: i64 = 900_000;

/// The start of the bucket of width `res_ms` that holds `ts_ms`: a window
/// that starts there reads no raw rows at its start.
pub(crate) fn bucket_start(ts_ms: i64, res_ms: i64) -> i64 {
    ts_ms.div_euclid(res_ms) * res_ms
}

/// The tiers, finest first. The minute tier serves windows of a few hours
/// to a day, and young instances' shorter spans; the quarter-hour tier, a
/// day and longer, as long as the store keeps data (raw samples are
/// thinned after a day: see [`super::RetentionPolicy`]).
pub(crate) const TIERS: [Tier; 2] = [
    Tier {
        res_ms: MINUTE_MS,
        keep_ms: Some(26 * HOUR),
    },
    Tier {
        res_ms: QUARTER_HOUR_MS,
        keep_ms: None,
    },
];

/// Windows shorter than this are read raw: a few minutes of samples are
/// fewer rows than the pieces of a plan.
pub(crate) const MIN_SPAN_MS: i64 = 10 * 60_000;

/// Windows at least this long start at their first whole bucket of the
/// tier: the part before it, under a bucket (at most a twenty-fourth of
/// the window), is left out rather than read raw. Reading it was most of
/// a fleet's judgement on ClickHouse: a series' few raw rows there sit in
/// a granule of thousands, in the window's oldest and fullest day, so a
/// cohort of 256 instances read about 16 M rows for it
/// (docs/benchmarks.md). The window's end is always read whole: it holds
/// the newest samples. Shorter windows (an hour's early detection, a fast
/// leak) are read exactly.
pub(crate) const WHOLE_START_SPAN_MS: i64 = 6 * HOUR;

/// One piece of an envelope's read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A tier's buckets starting in `[from_ms, to_ms)`, both multiples of
    /// `res_ms`.
    Tier {
        res_ms: i64,
        from_ms: i64,
        to_ms: i64,
    },
    /// Raw samples in `[from_ms, to_ms]`, inclusive.
    Raw { from_ms: i64, to_ms: i64 },
}

impl Piece {
    /// The tier a piece reads, if it reads one.
    pub(crate) fn res_ms(&self) -> Option<i64> {
        match *self {
            Piece::Tier { res_ms, .. } => Some(res_ms),
            Piece::Raw { .. } => None,
        }
    }
}

/// The plan for an envelope of `bucket_ms` over `[from_ms, to_ms]`
/// (inclusive), read at `now_ms`: the coarsest tier's whole buckets in the
/// middle, raw samples for what is left at each end (at the start, only
/// for a window under [`WHOLE_START_SPAN_MS`]). `None` when rollups
/// cannot serve it exactly: a short window, a width that is no tier's
/// multiple (a tier's bucket must fall in one envelope bucket), a window
/// older than the tiers keep, or one without a whole bucket.
///
/// One tier only: finer tiers toward the ends read fewer raw rows but cost
/// a statement (or a union's arm) each, which measured slower on
/// ClickHouse and no faster on SQLite (docs/benchmarks.md).
pub(crate) fn plan(from_ms: i64, to_ms: i64, bucket_ms: i64, now_ms: i64) -> Option<Vec<Piece>> {
    if to_ms - from_ms < MIN_SPAN_MS || from_ms < 0 {
        return None;
    }
    // An hour's margin on what a tier keeps, since retention runs every
    // few minutes.
    let res = TIERS
        .iter()
        .rev()
        .find(|t| {
            bucket_ms % t.res_ms == 0 && t.keep_ms.is_none_or(|k| from_ms >= now_ms - k + HOUR)
        })?
        .res_ms;
    let first = bucket_start(from_ms, res) + if from_ms.rem_euclid(res) == 0 { 0 } else { res };
    let last = bucket_start(to_ms + 1, res);
    if last <= first {
        return None;
    }
    let mut pieces = Vec::with_capacity(3);
    if from_ms < first && to_ms - from_ms < WHOLE_START_SPAN_MS {
        pieces.push(Piece::Raw {
            from_ms,
            to_ms: first - 1,
        });
    }
    pieces.push(Piece::Tier {
        res_ms: res,
        from_ms: first,
        to_ms: last,
    });
    if last <= to_ms {
        pieces.push(Piece::Raw {
            from_ms: last,
            to_ms,
        });
    }
    Some(pieces)
}

/// One tier's bucket of one series, as ingest gathers a batch's new
/// samples before writing them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cell {
    pub min: f64,
    pub max: f64,
    pub n: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A batch's new samples gathered by (series, tier width, bucket start),
/// so that a store writes each bucket once per batch rather than once per
/// sample: a backfill of thousands of samples touches a few hundred rows.
#[derive(Debug, Default)]
pub(crate) struct Gather<K> {
    cells: std::collections::HashMap<(K, i64, i64), Cell>,
}

impl<K: std::hash::Hash + Eq> Gather<K> {
    /// Adds one new sample of the series `key` to its bucket of each tier.
    pub fn add(&mut self, key: K, ts_ms: i64, v: f64)
    where
        K: Clone,
    {
        for t in TIERS {
            let bucket = bucket_start(ts_ms, t.res_ms);
            self.cells
                .entry((key.clone(), t.res_ms, bucket))
                .and_modify(|c| {
                    c.min = c.min.min(v);
                    c.max = c.max.max(v);
                    c.n += 1;
                    c.first_ms = c.first_ms.min(ts_ms);
                    c.last_ms = c.last_ms.max(ts_ms);
                })
                .or_insert(Cell {
                    min: v,
                    max: v,
                    n: 1,
                    first_ms: ts_ms,
                    last_ms: ts_ms,
                });
        }
    }

    /// Every bucket touched: ((series, width, start), what the batch adds).
    pub fn cells(self) -> impl Iterator<Item = ((K, i64, i64), Cell)> {
        self.cells.into_iter()
    }
}

/// A segment's service and instance, shared by all its parts and buckets.
pub(crate) type Names = (Arc<str>, Arc<str>);

/// Each segment's [`Names`], made once.
#[derive(Default)]
pub(crate) struct NameCache(fnv::FnvHashMap<i64, Names>);

impl NameCache {
    /// `segment`'s names, read by `read` the first time they are asked for.
    pub(crate) fn of<'a, E>(
        &mut self,
        segment: i64,
        read: impl FnOnce() -> Result<(&'a str, &'a str), E>,
    ) -> Result<Names, E> {
        if let Some(names) = self.0.get(&segment) {
            return Ok(names.clone());
        }
        let (s, i) = read()?;
        let names: Names = (s.into(), i.into());
        self.0.insert(segment, names.clone());
        Ok(names)
    }
}

/// An envelope bucket before its middle is known: what rollups and raw
/// edges each give of a bucket, merged by [`merge`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    pub service: Arc<str>,
    pub instance: Arc<str>,
    pub segment: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub min: f64,
    pub max: f64,
    pub samples: i64,
}

/// Merges parts of the same segment and envelope bucket (`bucket_ms`),
/// and orders the buckets by time, as [`super::Store::envelope`] does.
/// The parts are sorted by that key and merged in one pass: a map of
/// them cost a tenth of judging a fleet on ClickHouse.
pub(crate) fn merge(mut parts: Vec<Part>, bucket_ms: i64) -> Vec<EnvelopeBucket> {
    let w = bucket_ms.max(1);
    let key = |p: &Part| (p.segment, p.first_ms.div_euclid(w));
    parts.sort_unstable_by_key(key);
    let mut merged: Vec<Part> = Vec::with_capacity(parts.len());
    for p in parts {
        match merged.last_mut() {
            Some(q) if key(q) == key(&p) => {
                q.first_ms = q.first_ms.min(p.first_ms);
                q.last_ms = q.last_ms.max(p.last_ms);
                q.min = q.min.min(p.min);
                q.max = q.max.max(p.max);
                q.samples += p.samples;
            }
            _ => merged.push(p),
        }
    }
    let mut out: Vec<EnvelopeBucket> = merged
        .into_iter()
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
    out.sort_unstable_by_key(|b| (b.ts_ms, b.segment));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * HOUR;

    /// Checks that `pieces` cover `[from, to]` exactly, in order.
    fn covers(pieces: &[Piece], from: i64, to: i64) {
        let mut at = from;
        for p in pieces {
            let (a, b) = match *p {
                Piece::Tier {
                    res_ms,
                    from_ms,
                    to_ms,
                } => {
                    assert_eq!((from_ms % res_ms, to_ms % res_ms), (0, 0), "{p:?}");
                    (from_ms, to_ms)
                }
                Piece::Raw { from_ms, to_ms } => (from_ms, to_ms + 1),
            };
            assert_eq!(a, at, "{pieces:?}");
            at = b;
        }
        assert_eq!(at, to + 1, "{pieces:?}");
    }

    #[test]
    fn a_day_reads_quarter_hours_and_raw_samples_at_its_end() {
        let now = 100 * DAY + 123_456;
        let p = plan(now - DAY, now, 900_000, now).unwrap();
        // From the first whole quarter hour.
        let start = (now - DAY).div_euclid(900_000) * 900_000 + 900_000;
        covers(&p, start, now);
        let kinds: Vec<&str> = p
            .iter()
            .map(|p| match p {
                Piece::Tier {
                    res_ms: 900_000, ..
                } => "15m",
                Piece::Tier { .. } => "1m",
                Piece::Raw { .. } => "raw",
            })
            .collect();
        assert_eq!(kinds, ["15m", "raw"]);
        // A window under six hours is read exactly, from its first
        // millisecond.
        let hour = plan(now - HOUR, now, 120_000, now).unwrap();
        covers(&hour, now - HOUR, now);
        assert!(matches!(hour[0], Piece::Raw { .. }), "{hour:?}");
        for piece in &p {
            if let Piece::Raw { from_ms, to_ms } = piece {
                assert!(to_ms - from_ms < 900_000, "{piece:?}");
            }
        }
    }

    #[test]
    fn aligned_windows_need_no_raw_and_odd_widths_no_rollups() {
        let now = 100 * DAY;
        let p = plan(now - DAY, now - 1, 900_000, now).unwrap();
        assert_eq!(
            p,
            vec![Piece::Tier {
                res_ms: 900_000,
                from_ms: now - DAY,
                to_ms: now
            }]
        );
        assert_eq!(plan(now - DAY, now, 450_000, now), None, "7.5 minutes");
        assert_eq!(
            plan(now - 5 * 60_000, now, 60_000, now),
            None,
            "short window"
        );
        let six = plan(now - 6 * HOUR + 7, now, 240_000, now).unwrap();
        covers(&six, now - 6 * HOUR + 7, now);
        assert!(six.iter().all(|p| !matches!(
            p,
            Piece::Tier {
                res_ms: 900_000,
                ..
            }
        )));
    }

    #[test]
    fn the_minute_tier_is_not_read_past_what_it_keeps() {
        let now = 100 * DAY + 7_000;
        let old = plan(now - 2 * DAY, now - DAY, 900_000, now).unwrap();
        let start = (now - 2 * DAY).div_euclid(900_000) * 900_000 + 900_000;
        covers(&old, start, now - DAY);
        assert!(old
            .iter()
            .all(|p| !matches!(p, Piece::Tier { res_ms: 60_000, .. })));
        assert_eq!(plan(now - 2 * DAY, now - DAY, 60_000, now), None);
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
    fn a_batch_gathers_each_bucket_once_per_tier() {
        let mut g = Gather::default();
        for k in 0..12 {
            g.add("fds", 10_000 * k, k as f64);
        }
        let mut cells: Vec<_> = g.cells().collect();
        cells.sort_by_key(|c| (c.0 .1, c.0 .2));
        // Two minutes and one quarter hour.
        assert_eq!(cells.len(), 3);
        let (key, c) = &cells[1];
        assert_eq!((key.1, key.2), (60_000, 60_000));
        assert_eq!(
            (c.min, c.max, c.n, c.first_ms, c.last_ms),
            (6.0, 11.0, 6, 60_000, 110_000)
        );
        assert_eq!(cells[2].1.n, 12);
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
