//! The robust trend: the Theil–Sen slope with Sen's confidence interval,
//! and the Mann–Kendall test with Hamed and Rao's correction for
//! autocorrelation.

use crate::summary::{median, normal_cdf, Pt};

/// A robust trend fit.
#[derive(Debug, Clone, Copy)]
pub struct Trend {
    /// Theil–Sen slope, units per hour.
    pub slope: f64,
    /// Sen's interval on the slope (95% unless asked otherwise), widened
    /// for autocorrelation.
    pub lo: f64,
    pub hi: f64,
    /// Intercept such that `value ≈ intercept + slope * t`.
    pub intercept: f64,
    /// Mann–Kendall Z with the Hamed–Rao variance.
    pub z: f64,
    /// One-sided p-value of an upward trend.
    pub p_up: f64,
    pub n: usize,
}

impl Trend {
    pub fn at(&self, t: f64) -> f64 {
        self.intercept + self.slope * t
    }
}

/// Fits a Theil–Sen line and tests it with Mann–Kendall. `None` under
/// four points.
pub fn trend(pts: &[Pt]) -> Option<Trend> {
    trend_with(pts, true, 1.96)
}

/// Like [`trend`], with Sen's interval at the two-sided normal quantile `z`
/// (1.96 for 95%, 3.29 for 99.9%).
pub fn trend_with_z(pts: &[Pt], z: f64) -> Option<Trend> {
    trend_with(pts, true, z)
}

fn trend_with(pts: &[Pt], correct_autocorrelation: bool, z_interval: f64) -> Option<Trend> {
    let n = pts.len();
    if n < 4 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let dt = pts[j].0 - pts[i].0;
            let dv = pts[j].1 - pts[i].1;
            if dt > 0.0 {
                slopes.push(dv / dt);
            }
            s += match dv.partial_cmp(&0.0) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    if slopes.is_empty() {
        return None;
    }
    // Only three order statistics of the pairwise slopes are used (the
    // median and Sen's bounds): each is selected in linear time rather
    // than sorting them all, which was most of judging a series.
    let m = slopes.len();
    let mut slopes = Ranked::new(slopes);
    let slope = if m % 2 == 1 {
        slopes.at(m / 2)
    } else {
        (slopes.at(m / 2 - 1) + slopes.at(m / 2)) / 2.0
    };
    let mut resid: Vec<f64> = pts.iter().map(|(t, v)| v - slope * t).collect();
    let intercept = median(&mut resid.clone());

    let nf = n as f64;
    let mut var_s = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    // Ties reduce the variance of S.
    let mut vals: Vec<f64> = pts.iter().map(|p| p.1).collect();
    vals.sort_by(f64::total_cmp);
    let mut k = 0;
    while k < vals.len() {
        let mut j = k;
        while j + 1 < vals.len() && vals[j + 1] == vals[k] {
            j += 1;
        }
        let t = (j - k + 1) as f64;
        if t > 1.0 {
            var_s -= t * (t - 1.0) * (2.0 * t + 5.0) / 18.0;
        }
        k = j + 1;
    }
    var_s = var_s.max(1.0);
    if correct_autocorrelation {
        var_s *= hamed_rao_factor(&mut resid);
    }
    let z = if s > 0 {
        (s as f64 - 1.0) / var_s.sqrt()
    } else if s < 0 {
        (s as f64 + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    // Sen's interval: order statistics of the pairwise slopes.
    let c = z_interval * var_s.sqrt();
    let lo_ix = ((m as f64 - c) / 2.0).floor().max(0.0) as usize;
    let hi_ix = (((m as f64 + c) / 2.0).ceil() as usize).min(m - 1);
    Some(Trend {
        slope,
        lo: slopes.at(lo_ix.min(m - 1)),
        hi: slopes.at(hi_ix),
        intercept,
        z,
        p_up: 1.0 - normal_cdf(z),
        n,
    })
}

/// The `k`-th smallest of `v` (0-based, by `total_cmp`), as a sort would
/// place it; `v` is reordered, its values unchanged.
fn order_stat(v: &mut [f64], k: usize) -> f64 {
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

/// Values with their middle one selected, so that each order statistic
/// asked for after it is selected within the half that holds it: Sen's
/// bounds lie on either side of the median, and selecting each over all
/// the slopes again was a fifth of judging a fleet.
struct Ranked {
    v: Vec<f64>,
    mid: usize,
}

impl Ranked {
    fn new(mut v: Vec<f64>) -> Ranked {
        let mid = v.len() / 2;
        if !v.is_empty() {
            order_stat(&mut v, mid);
        }
        Ranked { v, mid }
    }

    /// The `k`-th smallest, as [`order_stat`] over all the values gives.
    fn at(&mut self, k: usize) -> f64 {
        let mid = self.mid;
        match k.cmp(&mid) {
            std::cmp::Ordering::Less => order_stat(&mut self.v[..mid], k),
            std::cmp::Ordering::Equal => self.v[mid],
            std::cmp::Ordering::Greater => order_stat(&mut self.v[mid + 1..], k - mid - 1),
        }
    }
}

/// Hamed and Rao (1998): the variance of S grows by
/// `1 + 2/(n(n-1)(n-2)) * Σ (n-k)(n-k-1)(n-k-2) ρ_k` over the lags whose
/// rank autocorrelation of the detrended series is significant. Kept at
/// least 1: a correction never makes the test bolder.
fn hamed_rao_factor(detrended: &mut [f64]) -> f64 {
    let n = detrended.len();
    // Under a couple of dozen points the lag correlations are themselves
    // mostly noise, and the correction would only add noise.
    if n < 24 {
        return 1.0;
    }
    let ranks = ranks(detrended);
    let mean = (n as f64 + 1.0) / 2.0;
    let denom: f64 = ranks.iter().map(|r| (r - mean).powi(2)).sum();
    if denom == 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let bound = 1.96 / nf.sqrt();
    let mut sum = 0.0;
    for k in 1..n - 2 {
        let rho: f64 = (0..n - k)
            .map(|i| (ranks[i] - mean) * (ranks[i + k] - mean))
            .sum::<f64>()
            / denom;
        if rho.abs() > bound {
            let kf = k as f64;
            sum += (nf - kf) * (nf - kf - 1.0) * (nf - kf - 2.0) * rho;
        }
    }
    (1.0 + 2.0 / (nf * (nf - 1.0) * (nf - 2.0)) * sum).max(1.0)
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::noise;

    #[test]
    fn an_order_statistic_is_what_a_sort_places_there() {
        let mut seed = 11;
        for n in [1usize, 2, 7, 100, 4_560] {
            // Ties and both signs, as pairwise slopes have.
            let v: Vec<f64> = (0..n).map(|_| (noise(&mut seed) * 4.0).round()).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for k in [0, n / 3, n / 2, n - 1] {
                let mut w = v.clone();
                assert_eq!(
                    order_stat(&mut w, k).to_bits(),
                    sorted[k].to_bits(),
                    "n {n}, k {k}"
                );
            }
        }
    }

    #[test]
    fn ranked_values_give_each_order_statistic_a_sort_places() {
        let mut seed = 5;
        for n in [1usize, 2, 3, 8, 101, 4_560] {
            let v: Vec<f64> = (0..n).map(|_| (noise(&mut seed) * 4.0).round()).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            // In the order the trend asks: the middle, then either side.
            let mut r = Ranked::new(v);
            for k in [n / 2, n.saturating_sub(1) / 2, 0, n - 1, n / 3, 2 * n / 3] {
                assert_eq!(r.at(k).to_bits(), sorted[k].to_bits(), "n {n}, k {k}");
            }
        }
    }

    #[test]
    fn theil_sen_finds_the_slope_despite_outliers() {
        let mut pts: Vec<Pt> = (0..50).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        pts[10].1 = 1e6;
        pts[30].1 = -1e6;
        let t = trend(&pts).unwrap();
        assert!((t.slope - 3.0).abs() < 1e-9);
        assert!(t.lo <= 3.0 && t.hi >= 3.0);
        assert!((t.intercept - 7.0).abs() < 1e-6);
        assert!(t.p_up < 1e-6);
    }

    #[test]
    fn noise_alone_is_rarely_a_trend() {
        // Property: over many seeds, a flat noisy series is an upward
        // trend at p < 0.01 about 1% of the time, not more.
        let mut seed = 7;
        let mut hits = 0;
        for _ in 0..400 {
            let pts: Vec<Pt> = (0..40)
                .map(|i| (i as f64, 100.0 + noise(&mut seed)))
                .collect();
            if trend(&pts).unwrap().p_up < 0.01 {
                hits += 1;
            }
        }
        assert!(hits <= 12, "{hits} of 400 flat series looked like trends");
    }

    #[test]
    fn sen_interval_covers_the_true_slope() {
        let mut seed = 11;
        let mut covered = 0;
        for _ in 0..200 {
            let pts: Vec<Pt> = (0..40)
                .map(|i| (i as f64, 0.5 * i as f64 + 3.0 * noise(&mut seed)))
                .collect();
            let t = trend(&pts).unwrap();
            if t.lo <= 0.5 && 0.5 <= t.hi {
                covered += 1;
            }
        }
        assert!(
            covered >= 180,
            "95% interval covered the slope {covered} of 200 times"
        );
    }

    #[test]
    fn autocorrelation_widens_the_test() {
        // A random walk has no trend but strong autocorrelation; without
        // the correction Mann–Kendall calls most of them trends.
        let mut seed = 3;
        let (mut plain, mut corrected) = (0, 0);
        for _ in 0..200 {
            let mut v = 0.0;
            let pts: Vec<Pt> = (0..60)
                .map(|i| {
                    v += noise(&mut seed);
                    (i as f64, v)
                })
                .collect();
            plain += usize::from(trend_with(&pts, false, 1.96).unwrap().p_up < 0.01);
            corrected += usize::from(trend(&pts).unwrap().p_up < 0.01);
        }
        assert!(
            corrected * 5 < plain * 4,
            "{corrected} corrected vs {plain} plain of 200 random walks flagged"
        );
    }
}
