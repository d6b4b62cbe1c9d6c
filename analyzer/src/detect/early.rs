//! Verdicts before the standard count of samples, for growth that cannot
//! wait: the early rule, the pace at which samples count, and a resource
//! found at its limit. `docs/detection.md` states the rule and its error
//! rate.

use std::time::Duration;

use super::{Assessment, Finding, LeakVerdict, Lifetime, Options, Resource};
use crate::error::Result;
use crate::select::Selector;
use crate::store::Store;

/// How far back the recent look reaches.
pub(crate) const RECENT_MS: i64 = 15 * 60_000;

/// The normal quantile of a two-sided interval at `alpha`, for early
/// verdicts' wider bounds: 99.9% for the default significance.
pub(super) const EARLY_Z: f64 = 3.29;

/// The significance an early verdict needs: `alpha` shared among the
/// early looks a lifetime gets, one per sample from `min_early_points`.
pub(super) fn early_alpha(opts: &Options) -> f64 {
    let looks = opts.min_points.saturating_sub(opts.min_early_points).max(1);
    opts.alpha / looks as f64
}

impl Assessment {
    /// An early verdict (see [`fit_segment`]) settled by its urgency: a
    /// leak judged on fewer than the standard count of samples stands only
    /// when its fitted rate exhausts the resource within
    /// [`Options::early_runway_secs`] (`runway_secs`, `None`
    /// when no limit is known). Otherwise the verdict waits for the
    /// standard count.
    pub fn settle_early(mut self, runway_secs: Option<f64>, opts: &Options) -> Self {
        let Some(n) = self.early else {
            return self;
        };
        let urgent = runway_secs.is_some_and(|s| s <= opts.early_runway_secs);
        if self.verdict == LeakVerdict::Leak && urgent {
            self.reason = format!(
                "{}; judged early, on {n} samples, with wider bounds",
                self.reason
            );
            return self;
        }
        // An early look only ever finds an urgent leak; anything else
        // waits for the standard count.
        let why = if self.verdict == LeakVerdict::Leak {
            format!(
                "the growth is significant, but a verdict before {} samples needs a runway under {}",
                opts.min_points,
                humantime::format_duration(Duration::from_secs_f64(opts.early_runway_secs))
            )
        } else {
            format!("need at least {}", opts.min_points)
        };
        Assessment {
            early: Some(n),
            segments_growing: self.segments_growing,
            segments_judged: self.segments_judged,
            ..Assessment::insufficient(format!("{n} samples; {why}"))
        }
    }
}

impl Lifetime {
    /// Counts samples at most one per `interval_h` of the span: an agent
    /// that samples faster than its configured interval (while young, or
    /// while a resource runs out) adds resolution, but the standard
    /// verdict still waits for as long as the configured pace would take
    /// to gather its samples. Only urgent growth is judged sooner, by the
    /// early rule.
    pub fn at_pace(&mut self, interval_h: f64) {
        let (Some(first), Some(last)) = (self.buckets.first(), self.buckets.last()) else {
            return;
        };
        if interval_h > 0.0 {
            let paced = ((last.t - first.start).max(0.0) / interval_h).floor() as usize + 1;
            self.samples = self.samples.min(paced);
        }
    }
}

/// The recent look. A leak that starts late in a long lifetime is a short
/// regime in an envelope cut for the whole window (a day's 15-minute
/// buckets need hours to show it). While the agent says a resource runs
/// out ([`heaptide_wire::metric::AGENT_URGENT`]), the newest lifetime's
/// last [`RECENT_MS`] is judged again at fine resolution. The look is held
/// to the early rule whatever its count of samples (its samples are
/// capped below the standard count): significance at the early level,
/// wider bounds, and a runway under the hour at its fitted rate.
pub(crate) fn recent_lifetime(
    store: &dyn Store,
    sel: &Selector,
    metric: &str,
    pace_secs: Option<f64>,
    opts: &Options,
) -> Result<Option<Lifetime>> {
    let recent = sel.starting(sel.from_ms.max(sel.to_ms - RECENT_MS));
    let width = ((sel.to_ms - recent.from_ms) / super::stats::growth::MAX_BUCKETS as i64).max(1000);
    let lives = super::analyze::split(store.envelope(&recent, metric, width)?);
    Ok(lives.into_iter().last().map(|mut life| {
        if let Some(secs) = pace_secs {
            life.at_pace(secs / 3600.0);
        }
        life.samples = life.samples.min(opts.min_points.saturating_sub(1));
        life
    }))
}

/// A leak the recent look found, saying so.
pub(crate) fn recent(mut a: Assessment) -> Assessment {
    a.reason = format!(
        "grows fast in the last {} minutes: {}",
        RECENT_MS / 60_000,
        a.reason
    );
    a
}

/// Whether `current` has reached `limit`: a count within half a percent
/// (at least two) of it, since the agent's own descriptors and a thread
/// or two come and go at the edge; memory within 2%, where the kernel
/// reclaims and kills. The heap is judged through RSS, and sockets
/// through the fds they share a limit with.
pub(crate) fn at_limit(r: Resource, current: f64, limit: f64) -> bool {
    match r {
        Resource::Fds | Resource::Threads => current >= limit - (limit * 0.005).max(2.0),
        Resource::Rss => current >= limit * 0.98,
        // A pool is exhausted with every slot in use: the next caller waits.
        Resource::Pool | Resource::Queue => current >= limit,
        Resource::Heap | Resource::Sockets | Resource::Tasks => false,
    }
}

/// A saturated pool's waiters, in its reason.
pub(crate) fn waiting(f: &mut Finding, waiting: Option<f64>) {
    if let Some(w) = waiting.filter(|w| *w >= 1.0) {
        f.reason = format!("{}, {w:.0} waiting", f.reason);
    }
}

/// Marks a finding as a resource run out: the most urgent finding there
/// is, whatever its trend (a resource held at its limit cannot grow).
pub(crate) fn exhausted(f: &mut Finding, current: f64, limit: f64) {
    f.verdict = LeakVerdict::Exhausted;
    f.reason = format!(
        "at its limit: {} of {}{}",
        heaptide_ui::format::amount(f.unit, current),
        heaptide_ui::format::amount(f.unit, limit),
        f.limit_source
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    f.time_to_exhaustion_seconds = Some(0.0);
    f.time_to_exhaustion_bounds_seconds = Some([0.0, 0.0]);
}

#[cfg(test)]
mod tests {
    use super::super::assess::tests::{noise, series};
    use super::super::assess_lifetimes;
    use super::super::stats::{buckets, Pt};
    use super::*;

    #[test]
    fn counts_near_the_limit_are_exhausted_and_memory_within_two_percent() {
        assert!(at_limit(Resource::Fds, 255.0, 256.0));
        assert!(at_limit(Resource::Fds, 254.0, 256.0));
        assert!(!at_limit(Resource::Fds, 250.0, 256.0));
        assert!(at_limit(Resource::Fds, 19_901.0, 20_000.0));
        assert!(at_limit(Resource::Rss, 99.0, 100.0));
        assert!(!at_limit(Resource::Rss, 95.0, 100.0));
        assert!(!at_limit(Resource::Heap, 100.0, 100.0));
    }

    #[test]
    fn few_samples_judge_only_an_urgent_leak() {
        let mut seed = 3;
        let pts = series(15, |t| 100.0 + 600.0 * t + 0.5 * noise(&mut seed.clone()));
        let _ = &mut seed;
        // One bucket a sample, as the store's envelope gives a young
        // instance.
        let lives = [Lifetime {
            buckets: buckets(&pts, pts.len()),
            samples: pts.len(),
        }];
        let opts = Options::default();
        let a = assess_lifetimes(&lives, &opts);
        assert_eq!(a.early, Some(15));
        // Runs out within the hour: a verdict now.
        let urgent = a.clone().settle_early(Some(1800.0), &opts);
        assert_eq!(urgent.verdict, LeakVerdict::Leak, "{}", urgent.reason);
        assert!(
            urgent.reason.contains("judged early, on 15 samples"),
            "{}",
            urgent.reason
        );
        // Hours of room: it waits for the standard count.
        let calm = a.settle_early(Some(5.0 * 3600.0), &opts);
        assert_eq!(calm.verdict, LeakVerdict::InsufficientData);
        assert!(calm.reason.contains("runway under 1h"), "{}", calm.reason);
        // Flat and few: no verdict at all, not "flat".
        let flat = series(15, |_| 100.0);
        let a = assess_lifetimes(&[Lifetime::from_points(&flat)], &opts);
        let a = a.settle_early(Some(60.0), &opts);
        assert_eq!(a.verdict, LeakVerdict::InsufficientData, "{}", a.reason);
    }

    #[test]
    fn fast_samples_count_at_the_configured_pace() {
        // 60 samples a second apart, from an agent whose interval is 10 s:
        // six intervals' worth, so an early look at most.
        let pts: Vec<Pt> = (0..60).map(|i| (i as f64 / 3600.0, i as f64)).collect();
        let mut life = Lifetime::from_points(&pts);
        life.at_pace(10.0 / 3600.0);
        assert!((6..=7).contains(&life.samples), "{}", life.samples);
    }
}
