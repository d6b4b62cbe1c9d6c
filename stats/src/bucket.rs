//! Bucket floors and peaks, and the noise measures the growth recipe
//! takes from them.

use crate::segment::Piece;
use crate::Pt;

/// The floor and peak of one bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's middle.
    pub t: f64,
    /// Its first point's time.
    pub start: f64,
    pub min: f64,
    pub max: f64,
}

/// Cuts `pts` (sorted by time) into `n` equal spans of time and keeps the
/// minimum and maximum of each non-empty one.
pub fn buckets(pts: &[Pt], n: usize) -> Vec<Bucket> {
    if pts.is_empty() || n == 0 {
        return Vec::new();
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let width = ((t1 - t0) / n as f64).max(f64::MIN_POSITIVE);
    let mut out: Vec<Bucket> = Vec::with_capacity(n);
    let mut current: Option<(usize, Bucket)> = None;
    for &(t, v) in pts {
        let k = (((t - t0) / width) as usize).min(n - 1);
        match &mut current {
            Some((ck, b)) if *ck == k => {
                b.min = b.min.min(v);
                b.max = b.max.max(v);
            }
            _ => {
                out.extend(current.take().map(|c| c.1));
                let mid = t0 + width * (k as f64 + 0.5);
                current = Some((
                    k,
                    Bucket {
                        t: mid,
                        start: t,
                        min: v,
                        max: v,
                    },
                ));
            }
        }
    }
    out.extend(current.map(|c| c.1));
    out
}

/// The noise of a series from its successive differences, with the
/// largest tenth left out so that steps and a trend do not count: a
/// trimmed von Neumann estimate. (The MAD is no use here: floors of a
/// quantised series repeat, and their differences' MAD is often zero.)
pub(crate) fn diff_sigma(pts: &[Pt]) -> f64 {
    let diffs: Vec<f64> = pts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    if diffs.is_empty() {
        return 0.0;
    }
    let mut sorted = diffs.clone();
    let med = crate::median(&mut sorted);
    let mut dev: Vec<f64> = diffs.iter().map(|d| (d - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let keep = (dev.len() * 9 / 10).max(1);
    let ms = dev[..keep].iter().map(|d| d * d).sum::<f64>() / keep as f64;
    // RMS of the central 90% of a normal is 0.79 of its sigma; a
    // difference has sqrt(2) sigmas.
    ms.sqrt() / 0.79 / std::f64::consts::SQRT_2
}

/// The floors less the lines of their pieces.
pub(crate) fn residuals(floors: &[Pt], pieces: &[Piece]) -> Vec<f64> {
    pieces
        .iter()
        .flat_map(|p| {
            floors[p.start..p.end]
                .iter()
                .map(move |(t, v)| v - p.at(*t))
        })
        .collect()
}

/// Lag-1 autocorrelation.
pub(crate) fn lag1(r: &[f64]) -> f64 {
    let n = r.len();
    if n < 3 {
        return 0.0;
    }
    let mean = r.iter().sum::<f64>() / n as f64;
    let var: f64 = r.iter().map(|x| (x - mean).powi(2)).sum();
    if var <= 0.0 {
        return 0.0;
    }
    r.windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / var
}
