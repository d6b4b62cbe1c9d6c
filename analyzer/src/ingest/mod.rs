//! Ingest: every way data arrives, decoded and validated into one
//! [`ValidBatch`] before anything reaches the store.
//!
//! - [`native`](decode): the agent's own batches, `POST /v1/ingest`
//!   (`docs/wire.md`);
//! - [`foreign`]: heap profiles from any pprof source, pushed or scraped,
//!   each made a batch as if an agent had sent it;
//! - [`otlp`]: OpenTelemetry's profiles signal, each resource's memory
//!   profile made a batch the same way.

pub mod foreign;
pub mod names;
mod native;
pub mod otlp;

pub(crate) use native::MAX_CLOCK_SKEW_MS;
pub use native::{accept, decode, DecodedProfile, Limits, ValidBatch};
