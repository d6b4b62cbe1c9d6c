#![doc = include_str!("../README.md")]

#[cfg(any(feature = "tokio", feature = "deadpool", feature = "bb8"))]
mod adapters;
mod age;
mod allocs;
mod cadence;
mod cgroup;
mod config;
mod error;
mod gauges;
mod hook_lock;
pub mod jemalloc;
mod kept;
mod objects;
mod pause;
mod pressure;
mod process;
mod queue;
mod rss_parts;
mod runtime;
mod sampler;
mod sender;
mod symbolize;
mod targets;
#[cfg(feature = "testing")]
pub mod testing;
mod thin;
#[cfg(feature = "tokio")]
mod tokio_probe;
mod unwind;
mod upload;

#[cfg(feature = "bb8")]
pub use adapters::watch_bb8;
#[cfg(feature = "deadpool")]
pub use adapters::watch_deadpool;
#[cfg(feature = "tokio")]
pub use adapters::watch_semaphore;
pub use config::{
    Builder, Config, DEFAULT_ENDPOINT, DEFAULT_HEAP_SAMPLE_PERIOD, DEFAULT_INTERVAL,
    DEFAULT_PAUSE_THRESHOLD, DEFAULT_PAUSE_TICK, DEFAULT_PROFILE_INTERVAL, DEFAULT_QUEUE_BYTES,
    DEFAULT_SEND_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, MIN_QUEUE_BYTES,
};
pub use error::{Error, Result};
pub use gauges::{pool, queue, watch_pool, watch_queue, Gauge, GaugeState, MAX_GAUGES};
/// What [`Agent::stats`] and [`Agent::heap_profiling`] return, as each
/// batch carries them.
pub use heaptide_wire::{AgentStats, HeapProfilingStatus};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use jemalloc::fuzz_parse_heap_dump;
pub use pause::{pause, record_pause, PauseGuard};
pub use runtime::{__preloaded, builder, count_requests, start, Agent};
pub use symbolize::Symbolize;
pub use tikv_jemallocator::Jemalloc;
#[cfg(feature = "tokio")]
pub use tokio_probe::{spawn_tokio_probe, tokio_max_blocking_threads};
pub use unwind::Unwinder;
