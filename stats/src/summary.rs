//! Summaries of a series: the point type, the normal distribution, the
//! median and MAD, bucketed envelopes and the removal of a daily cycle.

/// A point of a series: time in hours, value in the resource's unit.
pub type Pt = (f64, f64);

/// Standard normal CDF.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median absolute deviation, scaled to estimate a normal sigma.
pub fn mad_sigma(v: &[f64]) -> f64 {
    let mut c = v.to_vec();
    let m = median(&mut c);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&mut dev)
}

/// How a bucket is summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The minimum: a floor that a sawtooth's peaks and spikes do not lift.
    Min,
    /// The median: for symmetric noise such as heap sampling.
    Median,
}

/// Cuts `pts` (sorted by time) into `buckets` equal spans of time and
/// summarises each non-empty one at its mid-time.
pub fn envelope(pts: &[Pt], buckets: usize, how: Summary) -> Vec<Pt> {
    if pts.is_empty() || buckets == 0 {
        return Vec::new();
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let width = ((t1 - t0) / buckets as f64).max(f64::MIN_POSITIVE);
    let mut out = Vec::with_capacity(buckets);
    let mut i = 0;
    for b in 0..buckets {
        let end = if b + 1 == buckets {
            f64::INFINITY
        } else {
            t0 + width * (b + 1) as f64
        };
        let mut vals = Vec::new();
        while i < pts.len() && pts[i].0 < end {
            vals.push(pts[i].1);
            i += 1;
        }
        if vals.is_empty() {
            continue;
        }
        let v = match how {
            Summary::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
            Summary::Median => median(&mut vals),
        };
        out.push((t0 + width * (b as f64 + 0.5), v));
    }
    out
}

/// Removes a daily cycle: fits `a + b·t + c·sin(ωt) + d·cos(ωt)` with
/// ω = 2π/24 h by least squares and, when the cycle's amplitude stands
/// clear of the residual noise, returns the points with `c·sin + d·cos`
/// taken out (harmonic regression). Only meaningful over a window of
/// more than a day and a half; shorter windows are returned unchanged.
///
/// Hand-written: a 4×4 normal-equation solve does not justify a linear
/// algebra crate.
pub fn remove_daily_cycle(pts: &[Pt]) -> Option<Vec<Pt>> {
    let span = pts.last()?.0 - pts.first()?.0;
    if span < 36.0 || pts.len() < 48 {
        return None;
    }
    let w = 2.0 * std::f64::consts::PI / 24.0;
    let row = |t: f64| [1.0, t - pts[0].0, (w * t).sin(), (w * t).cos()];
    let mut a = [[0.0f64; 5]; 4];
    for (t, y) in pts {
        let r = row(*t);
        for (i, line) in a.iter_mut().enumerate() {
            for (j, cell) in line.iter_mut().take(4).enumerate() {
                *cell += r[i] * r[j];
            }
            line[4] += r[i] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..4 {
        let pivot = (col..4).max_by(|x, y| a[*x][col].abs().total_cmp(&a[*y][col].abs()))?;
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-12 {
            return None;
        }
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(pivot_row.iter()).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    let beta: Vec<f64> = (0..4).map(|i| a[i][4] / a[i][i]).collect();
    let resid: Vec<f64> = pts
        .iter()
        .map(|(t, y)| y - row(*t).iter().zip(&beta).map(|(x, b)| x * b).sum::<f64>())
        .collect();
    let amplitude = (beta[2] * beta[2] + beta[3] * beta[3]).sqrt();
    if amplitude <= 3.0 * mad_sigma(&resid) {
        return None;
    }
    Some(
        pts.iter()
            .map(|(t, y)| (*t, y - beta[2] * (w * t).sin() - beta[3] * (w * t).cos()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::noise;
    use crate::trend;

    #[test]
    fn normal_cdf_matches_tables() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-12);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-3.0) - 0.00135).abs() < 1e-5);
    }

    #[test]
    fn a_daily_cycle_is_taken_out_and_the_trend_kept() {
        let mut seed = 21;
        let pts: Vec<Pt> = (0..72 * 6)
            .map(|i| {
                let t = i as f64 / 6.0;
                (
                    t,
                    1000.0
                        + 300.0 * (2.0 * std::f64::consts::PI * t / 24.0).sin()
                        + 2.0 * t
                        + noise(&mut seed),
                )
            })
            .collect();
        let flat = remove_daily_cycle(&pts).expect("a strong cycle is found");
        let t = trend(&flat).unwrap();
        assert!((t.slope - 2.0).abs() < 0.2, "{}", t.slope);
        let no_cycle: Vec<Pt> = (0..72 * 6)
            .map(|i| (i as f64 / 6.0, 5.0 * i as f64 + noise(&mut seed)))
            .collect();
        assert!(remove_daily_cycle(&no_cycle).is_none());
        assert!(
            remove_daily_cycle(&pts[..100]).is_none(),
            "under 36 h nothing changes"
        );
    }

    #[test]
    fn floor_envelope_ignores_sawtooth_peaks() {
        let pts: Vec<Pt> = (0..600)
            .map(|i| (i as f64 / 60.0, 100.0 + (i % 30) as f64 * 10.0))
            .collect();
        let e = envelope(&pts, 10, Summary::Min);
        assert_eq!(e.len(), 10);
        assert!(e.iter().all(|p| p.1 == 100.0));
    }
}
