#![doc = include_str!("../README.md")]
//!
//! The statistics behind leak detection: envelopes, change points
//! ([`segment`]), the growth recipe ([`growth`]), the Theil–Sen slope with Sen's confidence interval, and the
//! Mann–Kendall trend test with Hamed and Rao's correction for
//! autocorrelation.
//!
//! Written here rather than taken from a crate: no maintained Rust crate
//! implements Sen's interval or the Hamed–Rao correction (pymannkendall is
//! the reference this follows), and each routine is a few dozen lines over
//! at most a few hundred points. The normal distribution comes from `libm`.

mod bucket;
pub mod growth;
pub mod segment;
mod staircase;
mod summary;
#[cfg(test)]
mod testing;
mod trend;

pub use growth::{buckets, fit_floors, fit_growth, Bucket, GrowthFit, RecipeOptions, Shape};
pub use summary::{envelope, mad_sigma, median, normal_cdf, remove_daily_cycle, Pt, Summary};
pub use trend::{trend, trend_with_z, Trend};
