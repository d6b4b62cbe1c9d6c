//! The engine's pure judgement of one resource's series, split at
//! restarts, and of each allocation site's live bytes. No store here: the
//! functions take points, in hours, and return verdicts.

use std::collections::HashMap;

use serde::Serialize;

use super::stats::growth::MAX_BUCKETS;
use super::stats::{
    buckets, envelope, fit_floors, median, trend, Bucket, GrowthFit, Pt, RecipeOptions, Shape,
    Summary,
};

/// Tuning of the engine. The defaults are what `docs/detection.md` measured.
#[derive(Debug, Clone)]
pub struct Options {
    /// Raw samples in a segment for the standard verdict.
    pub min_points: usize,
    /// Fewest raw samples for an early verdict: one made before
    /// `min_points`, only on strong evidence of urgent growth.
    pub min_early_points: usize,
    /// An early leak verdict stands only when its fitted rate exhausts
    /// the resource within this many seconds.
    pub early_runway_secs: f64,
    /// One-sided significance of an upward trend.
    pub alpha: f64,
    /// The same for an allocation site.
    pub site_alpha: f64,
    /// Most sites named per heap finding.
    pub max_sites: usize,
    /// Threads that judge instances; `None` for one per core. Continuous
    /// evaluation leaves a core to ingest.
    pub workers: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_points: 30,
            min_early_points: 8,
            early_runway_secs: 3600.0,
            alpha: 1e-3,
            site_alpha: 1e-3,
            max_sites: 5,
            workers: None,
        }
    }
}

/// What a series did over the window: the leak engine's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakVerdict {
    /// At its limit now: the resource has run out, whatever its trend.
    Exhausted,
    /// Unbounded growth: a leak.
    Leak,
    /// Growth that slows toward a cap: a cache or pool filling up.
    Bounded,
    /// No significant growth.
    Flat,
    /// Too little data to say.
    InsufficientData,
}

impl LeakVerdict {
    /// A verdict that calls for action: a leak, or a resource run out.
    pub fn alarms(self) -> bool {
        matches!(self, LeakVerdict::Leak | LeakVerdict::Exhausted)
    }
}

/// The engine's judgement of one series.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub verdict: LeakVerdict,
    pub reason: String,
    /// The growth judged: the newest lifetime's, or the median of the
    /// growing lifetimes'.
    pub fit: Option<GrowthFit>,
    /// When the judged growth began, Unix ms.
    pub started_ms: Option<i64>,
    /// The floor now.
    pub current_floor: Option<f64>,
    /// Segments that grew, of those judged.
    pub segments_growing: usize,
    pub segments_judged: usize,
    /// The raw samples of the judged lifetime, when it had fewer than the
    /// standard count: an early verdict, with wider bounds.
    pub early: Option<usize>,
}

impl Assessment {
    pub(super) fn insufficient(reason: String) -> Self {
        Assessment {
            verdict: LeakVerdict::InsufficientData,
            reason,
            fit: None,
            started_ms: None,
            current_floor: None,
            segments_growing: 0,
            segments_judged: 0,
            early: None,
        }
    }

    /// For a resource with no samples at all.
    pub fn no_samples(metric: &str) -> Self {
        Self::insufficient(format!("no {metric} samples in the window"))
    }
}

fn hours_to_ms(h: f64) -> i64 {
    (h * super::MS_PER_HOUR) as i64
}

/// One process lifetime's envelope: its bucket floors and peaks, and how
/// many raw samples they stand for.
#[derive(Debug, Clone, Default)]
pub struct Lifetime {
    pub buckets: Vec<Bucket>,
    pub samples: usize,
}

impl Lifetime {
    /// The envelope of raw points, cut as the recipe cuts them.
    pub fn from_points(pts: &[Pt]) -> Lifetime {
        Lifetime {
            buckets: buckets(pts, (pts.len() / 4).clamp(8, MAX_BUCKETS)),
            samples: pts.len(),
        }
    }
}

/// One process lifetime through the workspace's growth recipe.
///
/// The standard verdict needs `min_points` samples. A lifetime with fewer
/// (down to `min_early_points`) is judged early: its growth must then be
/// significant at `alpha` divided by the number of early looks a lifetime
/// can get (Bonferroni), so the chance that any early look flags a series
/// without growth stays under `alpha`; its interval is the wider 99.9%
/// one. Whether the verdict stands also depends on its urgency, which
/// needs the limit ([`super::early`]).
/// Only the newest lifetime is judged early: an ended one had its chance.
fn fit_segment(life: &Lifetime, opts: &Options, newest: bool) -> Result<GrowthFit, String> {
    let least = if newest {
        opts.min_early_points.min(opts.min_points)
    } else {
        opts.min_points
    };
    if life.samples < least {
        return Err(format!("{} samples; need at least {least}", life.samples));
    }
    let recipe = if life.samples < opts.min_points {
        RecipeOptions {
            z: super::early::EARLY_Z,
            ..RecipeOptions::default()
        }
    } else {
        RecipeOptions::default()
    };
    fit_floors(&life.buckets, &recipe).ok_or_else(|| "too few points to fit".into())
}

/// Judges one resource from its raw series, split at restarts. Times are
/// in hours; segments are in time order.
///
/// With no limit to say how urgent it is, an early verdict waits for the
/// standard count of samples ([`Assessment::settle_early`]).
pub fn assess(segments: &[Vec<Pt>], opts: &Options) -> Assessment {
    let lives: Vec<Lifetime> = segments.iter().map(|s| Lifetime::from_points(s)).collect();
    assess_lifetimes(&lives, opts).settle_early(None, opts)
}

/// Judges one resource from the envelopes of its lifetimes, in time order.
pub(crate) fn assess_lifetimes(segments: &[Lifetime], opts: &Options) -> Assessment {
    let total: usize = segments.iter().map(|l| l.samples).sum();
    let fits: Vec<Result<GrowthFit, String>> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| fit_segment(s, opts, i + 1 == segments.len()))
        .collect();
    let judged: Vec<&GrowthFit> = fits.iter().filter_map(|f| f.as_ref().ok()).collect();
    let Some(last) = judged.last().copied() else {
        let why = fits
            .last()
            .and_then(|f| f.as_ref().err().cloned())
            .unwrap_or_default();
        return Assessment::insufficient(format!("{total} samples in the window: {why}"));
    };
    let growing: Vec<&GrowthFit> = judged
        .iter()
        .copied()
        .filter(|f| f.is_growing(opts.alpha))
        .collect();
    let last_is_judged = fits.last().is_some_and(Result::is_ok);
    let early = segments
        .last()
        .map(|l| l.samples)
        .filter(|n| last_is_judged && *n < opts.min_points);
    let mut a = Assessment {
        verdict: LeakVerdict::Flat,
        reason: "no significant growth".into(),
        fit: Some(*last),
        started_ms: None,
        current_floor: Some(last.current_floor),
        segments_growing: growing.len(),
        segments_judged: judged.len(),
        early,
    };
    let alpha = if early.is_some() {
        super::early::early_alpha(opts)
    } else {
        opts.alpha
    };
    if last_is_judged && last.is_growing(alpha) {
        a.verdict = LeakVerdict::Leak;
        a.started_ms = Some(hours_to_ms(last.regime_start));
        a.reason = if let Shape::Staircase { steps } = last.shape {
            format!("grows in steps: {steps} steps up and none down")
        } else if growing.len() > 1 {
            format!(
                "grows steadily, in {} of {} process lifetimes",
                growing.len(),
                judged.len()
            )
        } else {
            "grows steadily".into()
        };
    } else if growing.len() >= 2 && (!last_is_judged || growing.len() * 2 > judged.len()) {
        // Restarts keep each lifetime short; growth that recurs in most
        // lifetimes is a leak even when the newest one is too young to tell.
        a.verdict = LeakVerdict::Leak;
        a.fit = Some(median_fit(&growing));
        let seg = &segments.last().expect("a judged segment exists").buckets;
        let recent = &seg[seg.len().saturating_sub(5)..];
        a.current_floor = recent.iter().map(|b| b.min).reduce(f64::min);
        a.started_ms = Some(hours_to_ms(growing[0].regime_start));
        a.reason = format!(
            "grows again after each restart, in {} of {} process lifetimes",
            growing.len(),
            judged.len()
        );
    } else if last.decelerating {
        a.verdict = LeakVerdict::Bounded;
        a.reason = "grows, but slows toward a ceiling (a cache or pool filling)".into();
    }
    a
}

/// The newest growing lifetime's fit, with the median slope and interval
/// of all growing lifetimes and the weakest of their significances.
fn median_fit(growing: &[&GrowthFit]) -> GrowthFit {
    let pick =
        |f: fn(&GrowthFit) -> f64| median(&mut growing.iter().map(|g| f(g)).collect::<Vec<_>>());
    let mut fit = *growing[growing.len() - 1];
    fit.trend.slope = pick(|g| g.trend.slope);
    fit.trend.lo = pick(|g| g.trend.lo);
    fit.trend.hi = pick(|g| g.trend.hi);
    fit.trend.p_up = growing.iter().map(|g| g.trend.p_up).fold(0.0, f64::max);
    fit
}

/// Time to exhaustion in hours, with bounds, for detected growth: when
/// the peaks (the floor now plus how far peaks rise above it) reach
/// `limit`, at the judged rate and at the ends of its interval.
pub fn time_to_exhaustion(a: &Assessment, limit: f64) -> Option<(f64, f64, f64)> {
    runway(a, limit, f64::NEG_INFINITY)
}

/// Like [`time_to_exhaustion`], with the peak at least `recent_peak`.
pub fn runway(a: &Assessment, limit: f64, recent_peak: f64) -> Option<(f64, f64, f64)> {
    if a.verdict != LeakVerdict::Leak {
        return None;
    }
    let fit = a.fit?;
    let t = fit.trend;
    let peak = (a.current_floor? + fit.headroom).max(recent_peak);
    let room = (limit - peak).max(0.0);
    Some((
        room / t.slope,
        room / t.hi,
        room / t.lo.max(f64::MIN_POSITIVE),
    ))
}

/// One allocation site's growth.
#[derive(Debug, Clone, Serialize)]
pub struct SiteGrowth {
    pub stack_id: i64,
    pub slope_per_hour: f64,
    pub slope_ci: [f64; 2],
    /// Its share of the growth of all growing sites.
    pub share: f64,
    pub current_bytes: f64,
}

/// Finds the allocation sites whose live bytes grow. `series` maps a stack
/// to its (hours, bytes) points, one per profile (0 where absent);
/// `period` is the sampling period: a site's sampled bytes have a variance
/// of about `period * bytes`, so growth must clear that noise too.
pub fn assess_sites(
    series: &HashMap<i64, Vec<Pt>>,
    period: f64,
    opts: &Options,
) -> Vec<SiteGrowth> {
    let mut out = Vec::new();
    for (stack, pts) in series {
        if pts.len() < 8 || pts.iter().all(|p| p.1 <= 0.0) {
            continue;
        }
        // Few profiles are judged as they are: bucketing them would leave
        // too few points for the test to ever be significant.
        let env = if pts.len() <= 48 {
            pts.clone()
        } else {
            envelope(pts, 48, Summary::Median)
        };
        let Some(t) = trend(&env) else { continue };
        let span = env[env.len() - 1].0 - env[0].0;
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
        let sampling_sd = (period * mean.max(0.0)).sqrt();
        if t.p_up < opts.site_alpha && t.lo > 0.0 && t.slope * span > 3.0 * sampling_sd {
            out.push(SiteGrowth {
                stack_id: *stack,
                slope_per_hour: t.slope,
                slope_ci: [t.lo, t.hi],
                share: 0.0,
                current_bytes: t.at(env[env.len() - 1].0).max(0.0),
            });
        }
    }
    let total: f64 = out.iter().map(|s| s.slope_per_hour).sum();
    for s in &mut out {
        s.share = if total > 0.0 {
            s.slope_per_hour / total
        } else {
            0.0
        };
    }
    out.sort_by(|a, b| {
        b.slope_per_hour
            .total_cmp(&a.slope_per_hour)
            .then(a.stack_id.cmp(&b.stack_id))
    });
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::detect) fn noise(seed: &mut u64) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s += ((*seed >> 11) as f64) / ((1u64 << 53) as f64);
        }
        s - 6.0
    }

    pub(in crate::detect) fn series(n: usize, f: impl Fn(f64) -> f64) -> Vec<Pt> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 60.0;
                (t, f(t))
            })
            .collect()
    }

    #[test]
    fn linear_growth_is_a_leak_with_a_runway() {
        let mut seed = 1;
        let s = series(600, |t| 1000.0 + 50.0 * t + 5.0 * noise(&mut seed.clone()));
        let _ = &mut seed;
        let a = assess(&[s], &Options::default());
        assert_eq!(a.verdict, LeakVerdict::Leak, "{}", a.reason);
        let (mid, lo, hi) = time_to_exhaustion(&a, 2000.0).unwrap();
        // At 10 h the level is 1500: 500 more at 50/h is 10 h.
        assert!((mid - 10.0).abs() < 1.5, "{mid}");
        assert!(lo <= mid && mid <= hi);
    }

    #[test]
    fn sawtooth_with_flat_troughs_is_not_a_leak() {
        let s = series(600, |t| 1000.0 + ((t * 60.0) as usize % 30) as f64 * 20.0);
        assert_ne!(assess(&[s], &Options::default()).verdict, LeakVerdict::Leak);
    }

    #[test]
    fn warm_up_to_a_plateau_is_bounded_not_a_leak() {
        let s = series(600, |t| 1000.0 + 500.0 * (1.0 - (-t / 2.0).exp()));
        let a = assess(&[s], &Options::default());
        assert_ne!(a.verdict, LeakVerdict::Leak, "{}", a.reason);
    }

    #[test]
    fn a_step_at_a_deploy_is_not_a_leak() {
        let mut seed = 9;
        let s: Vec<Pt> = series(600, |t| if t < 6.0 { 1000.0 } else { 1400.0 })
            .into_iter()
            .map(|(t, v)| (t, v + noise(&mut seed)))
            .collect();
        let a = assess(&[s], &Options::default());
        assert_eq!(a.verdict, LeakVerdict::Flat, "{}", a.reason);
    }

    #[test]
    fn too_little_data_says_so() {
        let a = assess(&[series(10, |t| t)], &Options::default());
        assert_eq!(a.verdict, LeakVerdict::InsufficientData);
        assert!(a.reason.contains("10 samples"), "{}", a.reason);
    }
}
