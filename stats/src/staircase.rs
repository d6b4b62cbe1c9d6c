//! Growth in steps: a thread leaked per failed reconnect, a buffer kept by
//! a batch job. Steps up that recur with none down are growth, judged over
//! the staircase, with an interval from the count of steps.

use crate::growth::{GrowthFit, RecipeOptions, Shape, STEP_SIGMAS};
use crate::segment::Piece;
use crate::{normal_cdf, Pt, Trend};

/// Each piece's level: the median of its floors, which a piece tilted by
/// a step inside it does not skew as its line's ends would.
pub(crate) fn levels(floors: &[Pt], pieces: &[Piece]) -> Vec<f64> {
    pieces
        .iter()
        .map(|p| {
            crate::median(
                &mut floors[p.start..p.end]
                    .iter()
                    .map(|x| x.1)
                    .collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// The change of level from each piece to the next, in noise deviations.
pub(crate) fn steps(levels: &[f64], noise: f64) -> Vec<f64> {
    levels.windows(2).map(|w| (w[1] - w[0]) / noise).collect()
}

/// The exact-enough Poisson interval of a count `k` at normal quantile `z`
/// (Wilson–Hilferty's approximation of the gamma quantiles).
fn poisson_interval(k: f64, z: f64) -> (f64, f64) {
    let lo = if k > 0.0 {
        k * (1.0 - 1.0 / (9.0 * k) - z / (3.0 * k.sqrt()))
            .max(0.0)
            .powi(3)
    } else {
        0.0
    };
    let k1 = k + 1.0;
    let hi = k1 * (1.0 - 1.0 / (9.0 * k1) + z / (3.0 * k1.sqrt())).powi(3);
    (lo, hi)
}

/// Growth in steps: at least `min_steps` steps up, none down, and no piece
/// that falls. Its rate is the rise over the staircase's span; its
/// interval scales that rate by the Poisson interval of the step count.
pub(crate) fn staircase(
    floors: &[Pt],
    starts: &[f64],
    pieces: &[Piece],
    levels: &[f64],
    steps: &[f64],
    noise: f64,
    opts: &RecipeOptions,
) -> Option<GrowthFit> {
    let ups: Vec<usize> = (0..steps.len())
        .filter(|i| steps[*i] > STEP_SIGMAS)
        .collect();
    let downs = steps.iter().filter(|s| **s < -STEP_SIGMAS).count();
    let falls = pieces.iter().any(|p| {
        let span = floors[p.end - 1].0 - floors[p.start].0;
        p.slope * span < -STEP_SIGMAS * noise
    });
    if ups.len() < opts.min_steps.max(1) || downs > 0 || falls {
        return None;
    }
    // A staircase keeps climbing: a cache warming up also rises piece by
    // piece, but its later pieces rise less and less.
    let first = pieces[ups[0]];
    let level_at = |t: f64| {
        let k = pieces
            .iter()
            .position(|p| floors[p.end - 1].0 >= t)
            .unwrap_or(pieces.len() - 1);
        levels[k]
    };
    let (start, end) = (floors[first.start].0, floors[floors.len() - 1].0);
    let mid = (start + end) / 2.0;
    let (early, late) = (
        level_at(mid) - levels[ups[0]],
        levels[levels.len() - 1] - level_at(mid),
    );
    if late < 0.35 * early {
        return None;
    }
    let (t0, t1) = (floors[first.start].0, floors[floors.len() - 1].0);
    let current = levels[levels.len() - 1];
    // The rise over all the time watched: the rate a count of steps in
    // that time estimates.
    let rate = (current - levels[ups[0]]) / (t1 - t0).max(f64::MIN_POSITIVE);
    let k = ups.len() as f64;
    let (lo, hi) = poisson_interval(k, opts.z);
    let z_min = ups.iter().map(|i| steps[*i]).fold(f64::INFINITY, f64::min);
    let trend = Trend {
        slope: rate,
        lo: rate * lo / k,
        hi: rate * hi / k,
        intercept: current - rate * t1,
        z: z_min,
        p_up: 1.0 - normal_cdf(z_min),
        n: floors.len() - first.start,
    };
    Some(GrowthFit {
        trend,
        shape: Shape::Staircase { steps: ups.len() },
        regime_start: starts[first.start],
        end: t1,
        current_floor: current,
        decelerating: false,
        persistent: true,
        recovering: false,
        headroom: 0.0,
        noise,
    })
}
