//! The growth recipe: how heaptide decides whether a series grows, and how
//! fast. `analyzer leaks`, `analyzer check` and the agent's in-test
//! `LeakCheck` all judge growth through [`fit_growth`] (or
//! [`fit_floors`], for floors a store already computed), so they cannot
//! disagree on the same points.
//!
//! 1. take the floor envelope: each bucket's minimum, and its maximum for
//!    the peaks, so that a sawtooth whose troughs stay flat, and spikes,
//!    do not count as growth;
//! 2. take out a daily cycle when one stands clear of the noise, over
//!    windows long enough to see it;
//! 3. split the floors into straight pieces at change points in slope and
//!    in level ([`crate::segment`]);
//! 4. steps up that recur with no step down (a staircase: a thread leaked
//!    per failed reconnect, a batch job's retained buffer) are growth,
//!    judged over the staircase, with an interval from the count of steps;
//! 5. otherwise the current regime is the last piece: a single step at a
//!    deploy starts a new regime and is not growth. Its Theil–Sen trend,
//!    tested with Mann–Kendall corrected for autocorrelation, is the
//!    growth;
//! 6. note whether the growth decelerates toward a cap, whether it
//!    persists into the last third, and how far peaks rise above the floor.

pub use crate::bucket::{buckets, Bucket};
use crate::bucket::{diff_sigma, lag1, residuals};
use crate::segment::{segments, Piece};
use crate::staircase::{levels, staircase, steps};
use crate::{mad_sigma, normal_cdf, remove_daily_cycle, trend_with_z, Pt, Trend};

/// How the recipe is applied to one kind of series.
#[derive(Debug, Clone, Copy)]
pub struct RecipeOptions {
    /// Two-sided normal quantile of the rate's interval: 1.96 for 95%.
    pub z: f64,
    /// Take out a daily cycle: only for series whose time unit is hours.
    pub daily_cycle: bool,
    /// Fewest steps up, with none down, that make a staircase.
    pub min_steps: usize,
    /// Judge only the current regime (after the last change point). A test
    /// loop has no deploys: it judges the whole run.
    pub regimes: bool,
}

impl Default for RecipeOptions {
    fn default() -> Self {
        RecipeOptions {
            z: 1.96,
            daily_cycle: true,
            min_steps: 3,
            regimes: true,
        }
    }
}

/// Most buckets a series is cut into: 15-minute floors over a day.
pub const MAX_BUCKETS: usize = 96;
/// Fewest buckets a piece spans.
const MIN_PIECE: usize = 6;
/// A step is a jump of more than this many noise deviations.
pub(crate) const STEP_SIGMAS: f64 = 5.0;
/// Penalty of a piece, in units of the noise variance times ln(buckets):
/// a piece costs its intercept, its slope and its change point, and the
/// floors of a random walk must not be cut into trends.
const PIECE_PENALTY: f64 = 8.0;

/// The shape of the growth judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A line: the current regime's trend.
    Steady,
    /// Steps up with none down, judged over the staircase.
    Staircase { steps: usize },
}

/// What the recipe found.
#[derive(Debug, Clone, Copy)]
pub struct GrowthFit {
    /// The growth judged: its rate, interval and significance.
    pub trend: Trend,
    pub shape: Shape,
    /// When the judged growth (the regime, or the staircase) began.
    pub regime_start: f64,
    /// The last point's time.
    pub end: f64,
    /// The floor at the last point.
    pub current_floor: f64,
    /// Growth that slows toward a ceiling: a cache or pool filling up.
    pub decelerating: bool,
    /// The last third of the regime still grows.
    pub persistent: bool,
    /// The regime only climbs back to where the floor already was before
    /// it: the rising half of a cycle, or a random walk's return.
    pub recovering: bool,
    /// How far peaks rise above the fitted floor (95th percentile).
    pub headroom: f64,
    /// Spread of the floors around their pieces.
    pub noise: f64,
}

impl GrowthFit {
    /// Growth significant at one-sided level `alpha`, whose interval is
    /// above zero, that neither levels off nor stops.
    pub fn is_growing(&self, alpha: f64) -> bool {
        self.trend.p_up < alpha
            && self.trend.lo > 0.0
            && !self.decelerating
            && self.persistent
            && !self.recovering
    }

    /// The span judged, from the regime's start to the last point.
    pub fn span(&self) -> f64 {
        self.end - self.regime_start
    }
}

/// Applies the recipe to raw `pts`, sorted by time. `None` when too few
/// points remain to fit a trend.
pub fn fit_growth(pts: &[Pt], opts: &RecipeOptions) -> Option<GrowthFit> {
    fit_floors(&buckets(pts, (pts.len() / 4).clamp(8, MAX_BUCKETS)), opts)
}

/// Applies the recipe to bucket floors and peaks, sorted by time.
pub fn fit_floors(b: &[Bucket], opts: &RecipeOptions) -> Option<GrowthFit> {
    if b.len() < 4 {
        return None;
    }
    let mut floors: Vec<Pt> = b.iter().map(|x| (x.t, x.min)).collect();
    let starts: Vec<f64> = b.iter().map(|x| x.start).collect();
    let mut peaks: Vec<Pt> = b.iter().map(|x| (x.t, x.max)).collect();
    if opts.daily_cycle {
        if let Some(flat) = remove_daily_cycle(&floors) {
            for ((f, p), d) in floors.iter_mut().zip(peaks.iter_mut()).zip(&flat) {
                p.1 += d.1 - f.1;
                f.1 = d.1;
            }
        }
    }
    let m = floors.len();
    let scale = floors.iter().map(|p| p.1.abs()).fold(0.0, f64::max) + 1.0;
    // Counts (fds, threads) are whole numbers whose floors are often
    // exactly flat: their noise is at least half of one, so that a one-off
    // floor of one more is noise and not a piece or a step.
    let whole = floors.iter().all(|p| (p.1 - p.1.round()).abs() < 1e-9);
    let floor_noise = if whole { 0.5f64 } else { 0.0 }.max(1e-9 * scale);
    let sigma = diff_sigma(&floors).max(floor_noise);
    let min_len = MIN_PIECE.max(m / 16);
    let penalty = PIECE_PENALTY * sigma * sigma * (m as f64).ln();
    let pieces = segments(&floors, min_len, penalty);
    let noise = mad_sigma(&residuals(&floors, &pieces)).max(floor_noise);
    let levels = levels(&floors, &pieces);
    let steps = steps(&levels, noise);
    let fit = staircase(&floors, &starts, &pieces, &levels, &steps, noise, opts)
        .or_else(|| steady(&floors, &starts, &pieces, noise, opts))?;
    Some(GrowthFit {
        headroom: headroom(&peaks, &fit),
        noise,
        ..fit
    })
}

/// The current regime, the last piece, judged by its robust trend.
fn steady(
    floors: &[Pt],
    starts: &[f64],
    pieces: &[Piece],
    noise: f64,
    opts: &RecipeOptions,
) -> Option<GrowthFit> {
    if pieces.is_empty() {
        return None;
    }
    let start = if opts.regimes {
        regime_piece(floors, pieces, noise).start
    } else {
        0
    };
    let regime = &floors[start..];
    let mut t = trend_with_z(regime, opts.z)?;
    // A random walk drifts in runs that a trend test takes for growth.
    // Over 24 points and more, Mann–Kendall's autocorrelation correction
    // answers for that; a shorter regime whose floors still wander about
    // its trend (strongly autocorrelated residuals) must also drift more
    // than its own steps explain, the mean step tested against their
    // spread, with a Bonferroni factor for the start the search chose.
    if regime.len() < 24 {
        let resid: Vec<f64> = regime.iter().map(|(x, y)| y - t.at(*x)).collect();
        if lag1(&resid) > 0.5 {
            let starts = (floors.len() / MIN_PIECE).max(1) as f64;
            t.p_up = t.p_up.max((drift_p(regime) * starts).min(1.0));
        }
    }
    let third = (regime.len() / 3).max(4).min(regime.len());
    let first = trend_with_z(&regime[..third], opts.z);
    let tail = trend_with_z(&regime[regime.len() - third..], opts.z);
    // Within the regime, or against the piece before it when they join
    // without a step: growth that slows toward a ceiling.
    let within = match (first, tail) {
        (Some(f), Some(l)) => f.slope > 0.0 && l.hi < 0.5 * f.slope && l.slope < 0.35 * f.slope,
        _ => false,
    };
    let before = opts.regimes && pieces.len() >= 2 && {
        let prev = pieces[pieces.len() - 2];
        prev.slope > 0.0 && t.hi < 0.5 * prev.slope && t.slope < 0.35 * prev.slope
    };
    let end = floors[floors.len() - 1].0;
    // Growth sets new highs: a regime that only climbs back to where the
    // floor already was (the rising half of a cycle, a random walk's
    // return) is not growth.
    let before_max = floors[..start]
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    Some(GrowthFit {
        trend: t,
        shape: Shape::Steady,
        recovering: t.at(end) <= before_max + STEP_SIGMAS * noise,
        regime_start: starts[start],
        end,
        current_floor: t.at(end),
        decelerating: within || before,
        persistent: tail.is_none_or(|l| l.slope > 0.0),
        headroom: 0.0,
        noise: 0.0,
    })
}

/// The first piece of the current regime: the last piece, joined with the
/// pieces before it that it continues, with no step between them and a
/// slope of the same sign and within a factor of two. Noise can cut a
/// steady leak into pieces; only a real change in slope or level starts a
/// new regime.
fn regime_piece(floors: &[Pt], pieces: &[Piece], noise: f64) -> Piece {
    let mut k = pieces.len() - 1;
    let cur = pieces[k];
    while k > 0 {
        let prev = pieces[k - 1];
        let t = (floors[prev.end - 1].0 + floors[pieces[k].start].0) / 2.0;
        let jump = (pieces[k].at(t) - prev.at(t)).abs() / noise;
        let alike = cur.slope > 0.0 && prev.slope > 0.5 * cur.slope && prev.slope < 2.0 * cur.slope;
        if jump >= STEP_SIGMAS || !alike {
            break;
        }
        k -= 1;
    }
    pieces[k]
}

/// One-sided p-value of a positive mean step between successive floors.
fn drift_p(pts: &[Pt]) -> f64 {
    let d: Vec<f64> = pts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    if d.len() < 3 {
        return 1.0;
    }
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    if var <= 0.0 {
        return if mean > 0.0 { 0.0 } else { 1.0 };
    }
    1.0 - normal_cdf(mean / (var / n).sqrt())
}

/// The 95th percentile of the peaks above the fitted floor, over the
/// judged span.
fn headroom(peaks: &[Pt], fit: &GrowthFit) -> f64 {
    let mut above: Vec<f64> = peaks
        .iter()
        .filter(|p| p.0 >= fit.regime_start)
        .map(|p| p.1 - fit.trend.at(p.0))
        .collect();
    above.sort_by(f64::total_cmp);
    above
        .get(above.len() * 95 / 100)
        .copied()
        .unwrap_or(0.0)
        .max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise, sigma about 3.
    fn wobble(i: usize) -> f64 {
        let mut x = (i as u64 + 1).wrapping_mul(6364136223846793005);
        (0..12)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .sum::<f64>()
            * 3.0
            - 18.0
    }

    /// One point a minute for `hours`, times in hours.
    fn series(hours: usize, f: impl Fn(f64) -> f64) -> Vec<Pt> {
        (0..hours * 60)
            .map(|i| {
                let t = i as f64 / 60.0;
                (t, f(t) + wobble(i))
            })
            .collect()
    }

    #[test]
    fn steady_growth_is_growing_and_flat_is_not() {
        let g = fit_growth(&series(10, |t| 100.0 + 50.0 * t), &RecipeOptions::default()).unwrap();
        assert!(g.is_growing(1e-3), "{g:?}");
        assert!((g.trend.slope - 50.0).abs() < 2.0, "{}", g.trend.slope);
        let f = fit_growth(&series(10, |_| 100.0), &RecipeOptions::default()).unwrap();
        assert!(!f.is_growing(1e-3), "{f:?}");
    }

    #[test]
    fn a_step_at_a_deploy_starts_a_new_regime() {
        let g = fit_growth(
            &series(10, |t| if t < 4.0 { 100.0 } else { 500.0 }),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert!(!g.is_growing(1e-3), "{g:?}");
        assert!((g.regime_start - 4.0).abs() < 0.5, "{}", g.regime_start);
    }

    #[test]
    fn the_rate_is_the_current_regimes_after_a_slope_change() {
        let g = fit_growth(
            &series(24, |t| {
                100.0 + if t < 12.0 { 0.0 } else { 20.0 * (t - 12.0) }
            }),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert!(g.is_growing(1e-3), "{g:?}");
        assert!((g.trend.slope - 20.0).abs() < 1.5, "{}", g.trend.slope);
        assert!((g.regime_start - 12.0).abs() < 1.0, "{}", g.regime_start);
    }

    #[test]
    fn a_staircase_is_growth_over_its_span() {
        // 40 up every 3 hours, flat between.
        let g = fit_growth(
            &series(24, |t| 100.0 + 40.0 * (t / 3.0).floor()),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert_eq!(g.shape, Shape::Staircase { steps: 7 }, "{g:?}");
        assert!(g.is_growing(1e-3), "{g:?}");
        assert!(
            (g.trend.slope - 40.0 / 3.0).abs() < 2.0,
            "{}",
            g.trend.slope
        );
        assert!(g.trend.lo > 0.0 && g.trend.lo < g.trend.slope && g.trend.hi > g.trend.slope);
    }

    #[test]
    fn steps_that_return_are_not_a_staircase() {
        let g = fit_growth(
            &series(24, |t| {
                100.0
                    + if (t / 3.0).floor() as i64 % 2 == 0 {
                        0.0
                    } else {
                        40.0
                    }
            }),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert_eq!(g.shape, Shape::Steady);
        assert!(!g.is_growing(1e-3), "{g:?}");
    }

    #[test]
    fn the_rising_half_of_a_cycle_is_not_growing() {
        let cycle = |t: f64| 300.0 * (2.0 * std::f64::consts::PI * (t - 6.0) / 24.0).sin();
        let g = fit_growth(
            &series(24, |t| 1000.0 + cycle(t + 12.0)),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert!(g.recovering && !g.is_growing(1e-3), "{g:?}");
    }

    #[test]
    fn warming_up_to_a_plateau_is_not_growing() {
        let g = fit_growth(
            &series(10, |t| 100.0 + 500.0 * (1.0 - (-t / 2.0).exp())),
            &RecipeOptions::default(),
        )
        .unwrap();
        assert!(!g.is_growing(1e-3), "{g:?}");
    }

    #[test]
    fn buckets_keep_floor_and_peak() {
        let pts: Vec<Pt> = (0..10).map(|i| (i as f64, (i % 5) as f64)).collect();
        let b = buckets(&pts, 2);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].min, b[0].max), (0.0, 4.0));
        assert!(fit_growth(&pts[..3], &RecipeOptions::default()).is_none());
    }
}
