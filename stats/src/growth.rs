//! The growth recipe: how heaptide decides whether a series grows, and how
//! fast. `analyzer leaks`, `analyzer check` and the agent's in-test
//! `LeakCheck` all judge growth through [`fit_growth`], so they cannot
//! disagree on the same points.
//!
//! 1. take out a cycle of a known period, when one stands clear of the
//!    noise (a daily cycle, over windows long enough to see it);
//! 2. take the floor envelope (bucket minima), so that a sawtooth whose
//!    troughs stay flat, and spikes, do not count as growth;
//! 3. keep the regime after the last level shift (a deploy's step) that
//!    leaves enough buckets to judge;
//! 4. fit a Theil–Sen trend with its interval, and test it with
//!    Mann–Kendall corrected for autocorrelation;
//! 5. note whether the growth decelerates toward a cap, whether it
//!    persists into the last third, and how far peaks rise above the floor.

use crate::{
    envelope, level_shifts, mad_sigma, remove_daily_cycle, trend_with_z, Pt, Summary, Trend,
};

/// How the recipe is applied to one kind of series.
#[derive(Debug, Clone, Copy)]
pub struct RecipeOptions {
    /// Two-sided normal quantile of the slope's interval: 1.96 for 95%.
    pub z: f64,
    /// Take out a daily cycle: only for series whose time unit is hours.
    pub daily_cycle: bool,
}

impl Default for RecipeOptions {
    fn default() -> Self {
        RecipeOptions {
            z: 1.96,
            daily_cycle: true,
        }
    }
}

/// Fewest buckets a regime keeps for its trend to be judged.
const MIN_REGIME_BUCKETS: usize = 8;

/// What the recipe found.
#[derive(Debug, Clone, Copy)]
pub struct GrowthFit {
    /// The trend of the current regime's floor.
    pub trend: Trend,
    /// When the current regime began, in the series' time unit.
    pub regime_start: f64,
    /// The last point's time.
    pub end: f64,
    /// Growth that slows toward a ceiling: a cache or pool filling up.
    pub decelerating: bool,
    /// The last third of the regime still grows.
    pub persistent: bool,
    /// How far peaks rise above the fitted floor (95th percentile).
    pub headroom: f64,
    /// Robust spread of the points around the fitted floor.
    pub noise: f64,
}

impl GrowthFit {
    /// Growth significant at one-sided level `alpha`, whose interval is
    /// above zero, that neither levels off nor stops.
    pub fn is_growing(&self, alpha: f64) -> bool {
        self.trend.p_up < alpha && self.trend.lo > 0.0 && !self.decelerating && self.persistent
    }

    /// The fitted floor at the last point.
    pub fn current_floor(&self) -> f64 {
        self.trend.at(self.end)
    }

    /// The span judged, from the regime's start to the last point.
    pub fn span(&self) -> f64 {
        self.end - self.regime_start
    }
}

/// Applies the recipe to `pts`, sorted by time. `None` when too few points
/// remain to fit a trend.
pub fn fit_growth(pts: &[Pt], opts: &RecipeOptions) -> Option<GrowthFit> {
    if pts.len() < 4 {
        return None;
    }
    let deseasoned = if opts.daily_cycle {
        remove_daily_cycle(pts)
    } else {
        None
    };
    let pts = deseasoned.as_deref().unwrap_or(pts);
    let buckets = (pts.len() / 4).clamp(MIN_REGIME_BUCKETS, 48);
    let env = envelope(pts, buckets, Summary::Min);
    // A shift in the last few buckets (one more fd, say) is too recent to
    // judge from.
    let start = level_shifts(&env)
        .into_iter()
        .rev()
        .map(|i| i + 1)
        .find(|s| env.len() - s >= MIN_REGIME_BUCKETS)
        .unwrap_or(0);
    let regime = &env[start..];
    let t = trend_with_z(regime, opts.z)?;
    let third = (regime.len() / 3).max(4);
    let first = trend_with_z(&regime[..third.min(regime.len())], opts.z);
    let last = trend_with_z(&regime[regime.len().saturating_sub(third)..], opts.z);
    let decelerating = match (first, last) {
        (Some(f), Some(l)) => f.slope > 0.0 && l.hi < 0.5 * f.slope && l.slope < 0.35 * f.slope,
        _ => false,
    };
    let persistent = last.is_none_or(|l| l.slope > 0.0);
    // The regime starts half a bucket before its first bucket's middle.
    let half_bucket = regime.get(1).map_or(0.0, |p| p.0 - regime[0].0) / 2.0;
    let regime_start = (regime[0].0 - half_bucket).max(pts[0].0);
    let mut above: Vec<f64> = pts
        .iter()
        .filter(|p| p.0 >= regime_start)
        .map(|p| p.1 - t.at(p.0))
        .collect();
    let noise = mad_sigma(&above);
    above.sort_by(f64::total_cmp);
    let headroom = above
        .get(above.len() * 95 / 100)
        .copied()
        .unwrap_or(0.0)
        .max(0.0);
    Some(GrowthFit {
        trend: t,
        regime_start,
        end: pts[pts.len() - 1].0,
        decelerating,
        persistent,
        headroom,
        noise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, slope: f64) -> Vec<Pt> {
        (0..n)
            .map(|i| {
                (
                    i as f64 / 60.0,
                    100.0 + slope * i as f64 / 60.0 + (i % 7) as f64,
                )
            })
            .collect()
    }

    #[test]
    fn steady_growth_is_growing_and_flat_is_not() {
        let g = fit_growth(&ramp(600, 50.0), &RecipeOptions::default()).unwrap();
        assert!(g.is_growing(1e-3));
        assert!((g.trend.slope - 50.0).abs() < 2.0, "{}", g.trend.slope);
        let f = fit_growth(&ramp(600, 0.0), &RecipeOptions::default()).unwrap();
        assert!(!f.is_growing(1e-3));
    }

    #[test]
    fn the_regime_starts_after_a_step() {
        let pts: Vec<Pt> = (0..600)
            .map(|i| {
                let t = i as f64 / 60.0;
                (t, if t < 4.0 { 100.0 } else { 500.0 } + (i % 5) as f64)
            })
            .collect();
        let g = fit_growth(&pts, &RecipeOptions::default()).unwrap();
        assert!(!g.is_growing(1e-3));
        assert!((g.regime_start - 4.0).abs() < 0.5, "{}", g.regime_start);
    }

    #[test]
    fn too_few_points_fit_nothing() {
        assert!(fit_growth(&ramp(3, 1.0), &RecipeOptions::default()).is_none());
    }
}
