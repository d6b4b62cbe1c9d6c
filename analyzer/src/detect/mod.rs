//! Leak detection and exhaustion prediction.
//!
//! For each resource of each instance, over a window:
//! 1. split the series at restarts (segments);
//! 2. judge each lifetime with the workspace's growth recipe
//!    ([`heaptide_stats::growth`]): floor envelope, regime after the last
//!    level shift, robust trend, deceleration and persistence;
//! 3. corroborate across restarts and across the service's instances;
//! 4. for heap growth, run a trend test on every allocation site's live
//!    bytes from the profiles, with jemalloc's sampling noise, and name the
//!    sites that explain it;
//! 5. give a time to exhaustion, with bounds, only for detected growth.
//!
//! [`assess`] is pure (points in, verdict out); [`analyze`] feeds it from a
//! store; [`Finding`] is what the CLI, the API and the dashboards show.

mod analyze;
mod assess;
mod cohort;
mod death;
mod detail;
mod early;
mod finding;
mod reads;
mod resource;
mod sites;

/// The statistics, shared with `check` and the agent's in-test checks.
pub use heaptide_stats as stats;

pub use analyze::analyze;
pub(crate) use analyze::sort_worst_first;
pub(crate) use analyze::to_h;
pub(crate) use assess::assess_lifetimes;
pub use assess::{
    assess, assess_sites, runway, time_to_exhaustion, Assessment, LeakVerdict, Lifetime, Options,
    SiteGrowth,
};
pub(crate) use cohort::COHORT;
pub use death::{deaths_of, Death};
pub use finding::{Analysis, Finding, Severity, Site};
pub use resource::{Resource, Subject};
pub(crate) use sites::growing_sites;

pub(crate) const MS_PER_HOUR: f64 = 3_600_000.0;
