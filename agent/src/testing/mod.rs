//! Leak checks inside `cargo test`.
//!
//! A check runs a closure many times after a warm-up and measures the heap
//! bytes each iteration leaves behind, from jemalloc's counters of the
//! calling thread (`thread.allocatedp` and `thread.deallocatedp`). Only the
//! calling thread counts, so checks run in parallel, as `cargo test` runs
//! tests, and a leaking test does not make its neighbours fail. It fits a
//! Theil–Sen slope to the bytes held after each iteration and fails only
//! when the lower end of a 99.9% interval is above the budget: growth
//! beyond the noise, not one unlucky reading.
//!
//! When a check fails, its message names the allocation sites that grew,
//! from a diff of this thread's heap profile across the run.
//!
//! ```no_run
//! heaptide_agent::global_allocator!();
//!
//! #[test]
//! fn parsing_does_not_leak() {
//!     heaptide_agent::testing::LeakCheck::new("parse")
//!         .max_bytes_per_iter(0.0)
//!         .assert(|| {
//!             let _ = "42".parse::<u32>();
//!         });
//! }
//! ```
//!
//! The test crate needs jemalloc as its global allocator
//! (`heaptide_agent::global_allocator!()` at its root).

mod message;

pub use crate::age::live_bytes_by_age;
pub use crate::unwind::compare_unwinders;

/// Starts tracking the age of sampled allocations, as a running agent
/// does, with every allocation sampled; for the agent's tests.
///
/// # Errors
///
/// When jemalloc's sample period cannot be set (heap profiling is off).
pub fn track_ages_of_every_allocation() -> crate::Result<()> {
    crate::jemalloc::set_sample_period(1)?;
    crate::age::install()
}

/// What the sample hook does with one sampled allocation of `size` bytes
/// at `addrs` for its stack's allocation counts, and then taking the
/// counts as a profile does; for the agent's benchmarks.
pub mod allocs {
    /// Makes the table, as the agent does when heap profiling is on.
    pub fn install() {
        crate::allocs::install();
    }

    /// A stack's hash, which the hook computes once for its ages too.
    pub fn site(addrs: &[usize]) -> u64 {
        crate::age::site_of(addrs.iter().map(|&a| a as u64))
    }

    /// Counts one sampled allocation of the stack `site`, as the hook does.
    pub fn record(site: u64, addrs: &[usize], size: u64) {
        crate::allocs::record(site, addrs, size);
    }

    /// Takes and empties the counts, as each profile does: how many stacks.
    pub fn take() -> usize {
        crate::allocs::take().len()
    }
}

/// One sample of this process as the agent takes it: jemalloc's stats,
/// then `/proc` (RSS and its parts among them); for the agent's tests.
pub fn sample_now() -> std::collections::BTreeMap<String, f64> {
    let mut m = crate::process::Metrics::new();
    let _ = crate::jemalloc::read_stats(&mut m);
    crate::process::ProcessSampler::new().sample(&mut m);
    m
}

/// Each stack of a heap dump taken now, as its live bytes and its count of
/// frames; for the agent's tests of unwinding.
///
/// # Errors
///
/// When the heap cannot be dumped (heap profiling is off).
pub fn dumped_stacks() -> crate::Result<Vec<(u64, usize)>> {
    let (_, raw) = crate::jemalloc::dump()?;
    Ok(raw.iter().map(|r| (r.bytes, r.addrs.len())).collect())
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use heaptide_stats::{fit_growth, Pt, RecipeOptions};

use crate::jemalloc;
use message::leak_message;
pub use message::GrowingSite;

/// Two-sided 99.9% normal quantile: a clean closure fails about once in a
/// thousand runs at most, and the autocorrelation correction widens it.
const Z: f64 = 3.29;

/// Mean bytes between heap samples while checks run: fine enough to see
/// small leaks' sites in the failure message.
const CHECK_SAMPLE_PERIOD: u64 = 4096;

/// An undecided check runs on, doubling its iterations, up to this many
/// times the iterations asked for.
const MAX_ROUNDS_FACTOR: usize = 16;

/// fd and thread counts are process-wide, so the checks that budget them
/// take turns.
static PROCESS_WIDE: Mutex<()> = Mutex::new(());

/// A leak check of one closure.
#[derive(Debug, Clone)]
#[must_use]
pub struct LeakCheck {
    name: String,
    warmup: usize,
    iterations: usize,
    bytes: f64,
    alloc: Option<f64>,
    fds: Option<f64>,
    threads: Option<f64>,
}

/// What a check measured.
#[derive(Debug, Clone)]
pub struct LeakReport {
    pub name: String,
    pub iterations: usize,
    /// Heap bytes left behind per iteration, with a 99.9% interval.
    pub bytes_per_iter: Growth,
    /// Heap bytes allocated per iteration, freed or not, when budgeted.
    pub alloc_per_iter: Option<Growth>,
    pub fds_per_iter: Option<Growth>,
    pub threads_per_iter: Option<Growth>,
}

#[derive(Debug, Clone, Copy)]
pub struct Growth {
    pub slope: f64,
    pub lo: f64,
    pub hi: f64,
    pub budget: f64,
    /// Spread of the readings around the fitted line (robust sigma).
    pub noise: f64,
    /// Growth beyond the budget over the whole run.
    pub excess: f64,
}

impl Growth {
    /// Over budget: the whole interval is above it, and what the run
    /// accumulated beyond it stands clear of the readings' own wobble.
    pub fn exceeded(&self) -> bool {
        self.lo > self.budget && self.excess > 4.0 * self.noise
    }

    /// The run has decided: over budget, or even the upper end of the
    /// interval keeps within the budget or within the readings' wobble
    /// over the whole run. Otherwise more iterations would tell.
    fn decided(&self, iterations: usize) -> bool {
        self.exceeded()
            || self.hi <= self.budget
            || (self.hi - self.budget) * iterations as f64 <= 4.0 * self.noise
    }

    /// The workspace's growth recipe over (iteration, reading) points; the
    /// iteration is not a clock, so no daily cycle is looked for.
    fn fit(pts: &[Pt], budget: f64) -> Growth {
        let recipe = RecipeOptions {
            z: Z,
            daily_cycle: false,
            min_steps: 3,
            // The closure does the same thing every time: the whole run
            // is one regime.
            regimes: false,
        };
        let Some(g) = fit_growth(pts, &recipe) else {
            return Growth {
                slope: 0.0,
                lo: 0.0,
                hi: 0.0,
                budget,
                noise: 0.0,
                excess: 0.0,
            };
        };
        Growth {
            slope: g.trend.slope,
            lo: g.trend.lo,
            hi: g.trend.hi,
            budget,
            noise: g.noise,
            excess: (g.trend.slope - budget) * g.span(),
        }
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeakCheckError {
    #[error("{}", leak_message(.report, .sites))]
    Leak {
        report: Box<LeakReport>,
        sites: Vec<GrowingSite>,
    },
    #[error("heaptide leak checks need jemalloc as the global allocator: add heaptide_agent::global_allocator!() at the root of the test crate")]
    NoJemalloc,
    #[error("leak check {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

impl LeakCheck {
    /// A check named `name` (used in messages): 20 warm-up iterations, 200
    /// measured, and a budget of 0 bytes per iteration.
    pub fn new(name: impl Into<String>) -> Self {
        LeakCheck {
            name: name.into(),
            warmup: 20,
            iterations: 200,
            bytes: 0.0,
            alloc: None,
            fds: None,
            threads: None,
        }
    }

    /// Iterations run before measuring, so caches and pools can fill.
    pub fn warmup(mut self, n: usize) -> Self {
        self.warmup = n;
        self
    }

    /// Iterations measured (at least 20).
    pub fn iterations(mut self, n: usize) -> Self {
        self.iterations = n;
        self
    }

    /// Heap bytes each iteration may leave behind.
    pub fn max_bytes_per_iter(mut self, bytes: f64) -> Self {
        self.bytes = bytes;
        self
    }

    /// Heap bytes each iteration may allocate, freed or not: the churn a
    /// change adds to a hot path, counted exactly on the calling thread.
    pub fn max_alloc_bytes_per_iter(mut self, bytes: f64) -> Self {
        self.alloc = Some(bytes);
        self
    }

    /// Open file descriptors each iteration may leave behind.
    pub fn max_fds_per_iter(mut self, fds: f64) -> Self {
        self.fds = Some(fds);
        self
    }

    /// Threads each iteration may leave running.
    pub fn max_threads_per_iter(mut self, threads: f64) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Runs the check; panics with the failure message if it fails.
    ///
    /// # Panics
    ///
    /// When the check fails or cannot run: that is its purpose in a test.
    #[track_caller]
    pub fn assert(self, f: impl FnMut()) -> LeakReport {
        match self.run(f) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs the check.
    ///
    /// # Errors
    ///
    /// [`LeakCheckError`]: the settings are invalid, heap profiling is
    /// off, or a resource grew past its budget per iteration.
    pub fn run(self, mut f: impl FnMut()) -> Result<LeakReport, LeakCheckError> {
        if self.iterations < 20 {
            return Err(LeakCheckError::Invalid {
                name: self.name,
                reason: "needs at least 20 iterations".into(),
            });
        }
        if jemalloc::thread_counters().is_none() || !jemalloc::is_global_allocator() {
            return Err(LeakCheckError::NoJemalloc);
        }
        let profiling = prepare_profiling();
        let _turn = (self.fds.is_some() || self.threads.is_some())
            .then(|| PROCESS_WIDE.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in 0..self.warmup {
            f();
        }
        static CHECKS: AtomicU64 = AtomicU64::new(0);
        // jemalloc keeps at most 15 bytes of a thread's name.
        let tag = format!(
            "ht-check-{}",
            CHECKS.fetch_add(1, Ordering::Relaxed) % 100_000
        );
        let named = profiling && jemalloc::name_thread_in_dumps(&tag).is_ok();
        if named {
            // A thread draws its next sample point at its last sample, so
            // after the period changed it may sample nothing for up to the
            // old period. A few MiB of short-lived allocations move it on.
            for _ in 0..64 {
                std::hint::black_box(vec![0u8; 64 << 10]);
            }
        }
        let before = if named {
            jemalloc::dump_for(Some(&tag)).ok()
        } else {
            None
        };
        let report = self.measure(&mut f);
        let failed = report.bytes_per_iter.exceeded()
            || report.alloc_per_iter.is_some_and(|g| g.exceeded())
            || report.fds_per_iter.is_some_and(|g| g.exceeded())
            || report.threads_per_iter.is_some_and(|g| g.exceeded());
        if !failed {
            return Ok(report);
        }
        let sites = match (before, named) {
            (Some(before), true) => {
                let grew = report.bytes_per_iter.slope * report.iterations as f64;
                message::growing_sites(&before, &tag, grew)
            }
            _ => Vec::new(),
        };
        Err(LeakCheckError::Leak {
            report: Box::new(report),
            sites,
        })
    }
}

impl LeakCheck {
    /// Runs the closure, reading the heap (and fds and threads) after each
    /// iteration, until the answer is decided or the bound is reached.
    fn measure(&self, f: &mut impl FnMut()) -> LeakReport {
        let max = self.iterations * MAX_ROUNDS_FACTOR;
        let base = jemalloc::thread_counters().unwrap_or_default();
        let (fd0, th0) = (count_dir("/proc/self/fd"), count_dir("/proc/self/task"));
        // Allocated up front: growth of these buffers must not count.
        let mut heap: Vec<Pt> = Vec::with_capacity(max);
        let mut alloc: Vec<Pt> = Vec::with_capacity(if self.alloc.is_some() { max } else { 0 });
        let mut fds: Vec<Pt> = Vec::with_capacity(if self.fds.is_some() { max } else { 0 });
        let mut threads: Vec<Pt> = Vec::with_capacity(if self.threads.is_some() { max } else { 0 });
        let mut target = self.iterations;
        loop {
            for i in heap.len()..target {
                f();
                let c = jemalloc::thread_counters().unwrap_or_default();
                let held = (c.allocated - base.allocated) as f64
                    - (c.deallocated - base.deallocated) as f64;
                heap.push((i as f64, held));
                if self.alloc.is_some() {
                    alloc.push((i as f64, (c.allocated - base.allocated) as f64));
                }
                if self.fds.is_some() {
                    fds.push((i as f64, count_dir("/proc/self/fd") - fd0));
                }
                if self.threads.is_some() {
                    threads.push((i as f64, count_dir("/proc/self/task") - th0));
                }
            }
            let report = LeakReport {
                name: self.name.clone(),
                iterations: heap.len(),
                bytes_per_iter: Growth::fit(&heap, self.bytes),
                alloc_per_iter: self.alloc.map(|b| Growth::fit(&alloc, b)),
                fds_per_iter: self.fds.map(|b| Growth::fit(&fds, b)),
                threads_per_iter: self.threads.map(|b| Growth::fit(&threads, b)),
            };
            let n = report.iterations;
            let decided = report.bytes_per_iter.decided(n)
                && report.alloc_per_iter.is_none_or(|g| g.decided(n))
                && report.fds_per_iter.is_none_or(|g| g.decided(n))
                && report.threads_per_iter.is_none_or(|g| g.decided(n));
            if decided || target >= max {
                return report;
            }
            target = (target * 2).min(max);
        }
    }
}

fn count_dir(path: &str) -> f64 {
    std::fs::read_dir(path)
        .map(|d| d.count() as f64)
        .unwrap_or(0.0)
}

/// Lowers the sampling period once per process, before any check takes a
/// profile: `prof.reset` drops every sample, so it must not run mid-check.
fn prepare_profiling() -> bool {
    static ONCE: Once = Once::new();
    static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    ONCE.call_once(|| {
        if matches!(jemalloc::profiling_state(), jemalloc::ProfilingState::On) {
            ON.store(
                jemalloc::set_sample_period(CHECK_SAMPLE_PERIOD).is_ok(),
                Ordering::Relaxed,
            );
        }
    });
    ON.load(Ordering::Relaxed)
}
