//! Leak detection and exhaustion prediction.
//!
//! For each resource of each instance, over a window:
//! 1. split the series at restarts (segments);
//! 2. take its floor envelope (bucket minima), so a sawtooth whose troughs
//!    stay flat, and spikes, do not count as growth;
//! 3. split again at level shifts (a deploy's step), and keep the regime
//!    after the last one;
//! 4. fit a Theil–Sen trend and test it with Mann–Kendall, corrected for
//!    autocorrelation;
//! 5. ask for persistence (the last third still grows) and reject growth
//!    that decelerates toward a cap (a cache or pool filling up);
//! 6. corroborate across restarts and across the service's instances;
//! 7. for heap growth, run the same test on every allocation site's live
//!    bytes from the profiles, with jemalloc's sampling noise, and name the
//!    sites that explain it;
//! 8. give a time to exhaustion, with bounds, only for detected growth.

pub mod engine;
pub mod scenarios;

/// The statistics, shared with the agent's in-test checks.
pub use heaptide_stats as stats;

pub use engine::*;
