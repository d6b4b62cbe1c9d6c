//! Continuous evaluation: on a schedule, the engine judges every instance
//! that sent data since it was last judged ([`evaluate`]), the store keeps
//! the findings, and the alert rules are checked against what was kept
//! ([`alerts`]), which moves each alert through pending, firing and
//! resolved and tells the webhooks. [`schedule`] runs both, one pass after
//! another, beside `serve`.

pub mod alerts;
pub(crate) mod evaluate;
pub mod schedule;

pub use evaluate::{analysis, evaluate, kept, sparkline, Kept, Pass};
pub(crate) use evaluate::{evaluate_shard, kept_by_instance, WINDOW_MS};
