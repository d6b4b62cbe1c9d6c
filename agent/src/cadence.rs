//! When the next sample and the next heap profile are due.
//!
//! The configured interval suits a healthy service. Two moments need more
//! evidence sooner, so that a fast leak pages before it runs its resource
//! out (`docs/detection.md`):
//! - a young process, whose first minutes decide whether a leak that
//!   starts with it is told from a warm-up;
//! - a resource whose growth since the last sample would exhaust its limit
//!   within the hour, or that is at its limit already.
//!
//! Then resources are sampled every [`fast_interval`], and heap profiles
//! come early: at [`EARLY_PROFILES`] after the start, then every profile
//! interval. Fast sampling costs one `/proc` read per second or two, well
//! inside the agent's CPU budget (`docs/budgets.md`).

use std::time::{Duration, Instant};

use heaptide_wire::metric;

use crate::process::Metrics;

/// How long after the start the agent samples fast.
pub(crate) const YOUNG: Duration = Duration::from_secs(180);
/// A resource that would be exhausted sooner than this, at the rate it
/// grew since the last sample, is sampled fast.
pub(crate) const URGENT_RUNWAY: Duration = Duration::from_secs(3600);
/// How long fast sampling lasts after the last urgent sample, so that one
/// quiet interval of a leak in bursts does not slow it again.
pub(crate) const URGENT_HOLD: Duration = Duration::from_secs(120);
/// The fast interval is the configured one divided by this...
const FAST_DIVISOR: u32 = 5;
/// ...but never shorter than this.
const FASTEST: Duration = Duration::from_secs(1);
/// When the first heap profiles are taken, after the start, before the
/// regular cadence begins: a leak's sites are named in its first minute.
pub(crate) const EARLY_PROFILES: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(30)];

/// The fast interval for a configured `interval`: a fifth of it, at least
/// a second, and never slower than the interval itself.
pub(crate) fn fast_interval(interval: Duration) -> Duration {
    (interval / FAST_DIVISOR).max(FASTEST).min(interval)
}

/// A resource's value and its limit in one sample.
#[derive(Debug, Clone, Copy)]
struct Level {
    value: f64,
    limit: f64,
}

/// The resources watched for urgency: each with the metric of its value
/// and the metrics of its limits (the smallest present applies).
const WATCHED: [(&str, &[&str]); 4] = [
    (metric::FDS, &[metric::LIMIT_NOFILE_SOFT]),
    (
        metric::THREADS,
        &[
            metric::LIMIT_PIDS_MAX,
            metric::LIMIT_NPROC,
            metric::LIMIT_THREADS_MAX,
        ],
    ),
    (
        metric::RSS,
        &[
            metric::LIMIT_MEMORY_MAX,
            metric::LIMIT_AS,
            metric::LIMIT_PHYSICAL_MEMORY,
        ],
    ),
    (
        metric::HEAP_ALLOCATED,
        &[
            metric::LIMIT_MEMORY_MAX,
            metric::LIMIT_AS,
            metric::LIMIT_PHYSICAL_MEMORY,
        ],
    ),
];

/// The sampler's clock: decides each next sample's delay from what the
/// last samples showed.
#[derive(Debug)]
pub(crate) struct Cadence {
    interval: Duration,
    fast: Duration,
    started: Instant,
    urgent_until: Option<Instant>,
    last: Option<(Instant, [Option<Level>; WATCHED.len()])>,
}

impl Cadence {
    pub(crate) fn new(interval: Duration, started: Instant) -> Cadence {
        Cadence {
            interval,
            fast: fast_interval(interval),
            started,
            urgent_until: None,
            last: None,
        }
    }

    /// Takes in one sample; returns whether the agent is in an urgent
    /// stretch: a resource was urgent in this sample or within the last
    /// [`URGENT_HOLD`]. The analyzer looks again at fine resolution while
    /// the flag is up, so it is held as long as fast sampling is: a slow
    /// leak's sample-to-sample growth is often lost in noise at the fast
    /// interval, and a flag that flickers would leave it unjudged.
    pub(crate) fn observe(&mut self, now: Instant, m: &Metrics) -> bool {
        let levels = WATCHED.map(|(value, limits)| {
            let limit = limits
                .iter()
                .filter_map(|l| m.get(*l).copied())
                .fold(f64::INFINITY, f64::min);
            m.get(value)
                .map(|&value| Level { value, limit })
                .filter(|l| l.limit.is_finite())
        });
        let urgent = match &self.last {
            Some((then, before)) => {
                let dt = now.saturating_duration_since(*then).as_secs_f64();
                levels
                    .iter()
                    .zip(before)
                    .any(|(now, before)| urgent(*now, *before, dt))
            }
            None => levels.iter().flatten().any(|l| l.value >= l.limit),
        };
        if urgent {
            self.urgent_until = Some(now + URGENT_HOLD);
        }
        self.last = Some((now, levels));
        self.urgent_until.is_some_and(|u| now < u)
    }

    /// The delay until the next sample.
    pub(crate) fn next_delay(&self, now: Instant) -> Duration {
        let young = now.saturating_duration_since(self.started) < YOUNG;
        let urgent = self.urgent_until.is_some_and(|u| now < u);
        if young || urgent {
            self.fast
        } else {
            self.interval
        }
    }
}

/// Whether a resource is at its limit, or grew since `before` at a rate
/// that exhausts it within [`URGENT_RUNWAY`].
fn urgent(now: Option<Level>, before: Option<Level>, dt_secs: f64) -> bool {
    let Some(now) = now else { return false };
    if now.value >= now.limit {
        return true;
    }
    let Some(before) = before else { return false };
    let rate = (now.value - before.value) / dt_secs.max(1e-3);
    rate > 0.0 && (now.limit - now.value) / rate < URGENT_RUNWAY.as_secs_f64()
}

/// The profile schedule: the early ones, then every `every` after the
/// last of them (or from the start, when `every` is shorter than they
/// are, as in tests that profile every second).
pub(crate) fn profile_times(every: Duration) -> impl Iterator<Item = Duration> {
    let early: Vec<Duration> = EARLY_PROFILES.into_iter().filter(|e| *e < every).collect();
    let base = early.last().copied().unwrap_or(Duration::ZERO);
    early
        .into_iter()
        .chain((1u32..).map(move |k| base + every * k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fds: f64, nofile: f64) -> Metrics {
        Metrics::from([
            (metric::FDS.to_owned(), fds),
            (metric::LIMIT_NOFILE_SOFT.to_owned(), nofile),
        ])
    }

    #[test]
    fn young_processes_and_urgent_growth_are_sampled_fast() {
        let t0 = Instant::now();
        let ten = Duration::from_secs(10);
        let mut c = Cadence::new(ten, t0);
        assert_eq!(c.next_delay(t0), Duration::from_secs(2), "young");
        let old = t0 + YOUNG + ten;
        assert!(!c.observe(old, &sample(100.0, 1024.0)));
        assert_eq!(c.next_delay(old), ten, "old and flat");
        // 10 more fds in 10 s: 914 left at 1/s is 15 minutes.
        let later = old + ten;
        assert!(c.observe(later, &sample(110.0, 1024.0)));
        assert_eq!(c.next_delay(later), Duration::from_secs(2));
        // It stays fast for the hold, then slows down again.
        let quiet = later + ten;
        assert!(c.observe(quiet, &sample(110.0, 1024.0)), "held");
        assert_eq!(c.next_delay(quiet), Duration::from_secs(2));
        assert_eq!(c.next_delay(later + URGENT_HOLD), ten);
        let after = later + URGENT_HOLD;
        assert!(!c.observe(after, &sample(110.0, 1024.0)), "hold over");
        // Slow growth is not urgent: 1 fd a minute has hours of room.
        let mut c = Cadence::new(ten, t0);
        assert!(!c.observe(old, &sample(100.0, 1024.0)));
        assert!(!c.observe(old + Duration::from_secs(60), &sample(101.0, 1024.0)));
    }

    #[test]
    fn a_resource_at_its_limit_is_urgent_from_the_first_sample() {
        let t0 = Instant::now();
        let mut c = Cadence::new(Duration::from_secs(10), t0);
        assert!(c.observe(t0 + YOUNG * 2, &sample(256.0, 256.0)));
    }

    #[test]
    fn the_fast_interval_is_a_fifth_but_at_least_a_second() {
        assert_eq!(
            fast_interval(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            fast_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            fast_interval(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn profiles_come_early_then_regularly() {
        let s = |d: u64| Duration::from_secs(d);
        let at: Vec<Duration> = profile_times(s(60)).take(4).collect();
        assert_eq!(at, [s(10), s(30), s(90), s(150)]);
        let at: Vec<Duration> = profile_times(s(1)).take(3).collect();
        assert_eq!(at, [s(1), s(2), s(3)]);
        let at: Vec<Duration> = profile_times(s(20)).take(3).collect();
        assert_eq!(at, [s(10), s(30), s(50)]);
    }
}
