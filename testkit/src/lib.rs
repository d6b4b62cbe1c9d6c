//! Test helpers shared by heaptide's crates, so that no crate's tests
//! depend on another crate's test code:
//!
//! - [`process`]: workspace binaries started as real processes on
//!   loopback, killed when dropped, and small HTTP helpers;
//! - [`certs`]: a private CA and a server certificate made in the test;
//! - [`clickhouse`]: a real ClickHouse server with a private data path
//!   on loopback ports;
//! - [`fixtures`]: wire batches with metric samples and real gzipped pprof
//!   heap profiles;
//! - [`golden`]: golden files, blessed with `HEAPTIDE_BLESS=1`, that show
//!   a diff when they differ;
//! - [`receiver`]: a real HTTP server on loopback that records what
//!   webhooks send it, and can answer slowly or with errors;
//! - [`hostile`]: slow, idle and non-reading clients by the thousand,
//!   and a probe that times an honest one;
//! - [`raw`]: raw HTTP from a chosen loopback address, to play agents on
//!   other hosts.

pub mod certs;
pub mod clickhouse;
pub mod fixtures;
pub mod golden;
pub mod hostile;
pub mod process;
pub mod raw;
pub mod receiver;
pub mod unnamed;

pub use process::*;
