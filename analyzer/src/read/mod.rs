//! The read side, shared by the CLI, the read API and the dashboards:
//! what a question returns once the data is stored and judged.
//!
//! - [`query`]: services, pauses, folded stacks, pprof downloads and
//!   profile diffs;
//! - [`flames`]: the folded stacks a flamegraph shows, for one instance or
//!   a service's instances merged, with framework frames folded (`fold`);
//! - [`views`] and [`service_page`]: the dashboards' view models, which
//!   `heaptide-ui` draws;
//! - [`report`]: the `leaks` and `predict` tables.

mod charts;
pub mod flames;
pub(crate) mod fold;
pub(crate) mod query;
pub mod report;
pub mod service_page;
pub mod views;
