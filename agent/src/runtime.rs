//! The running agent: its three threads (sampler, sender, pause meter),
//! the state they share, what each costs, and the one [`Agent`] handle
//! that starts and stops them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use heaptide_wire::{AgentInfo, AgentStats, HeapProfilingStatus};

use crate::config::{self, Builder, Config};
use crate::error::{Error, Result};
use crate::{age, jemalloc, pause, process, queue, sampler, sender, unwind};

/// A builder that reads `HEAPTIDE_*` variables for whatever it is not told.
pub fn builder() -> Builder {
    Builder::default()
}

/// Starts an agent configured from the environment alone.
///
/// # Errors
///
/// As [`Builder::start`]: a `HEAPTIDE_*` variable that cannot be read or
/// is out of bounds, an agent already running, or a thread that cannot be
/// spawned.
pub fn start() -> Result<Agent> {
    builder().start()
}

/// Adds to the request counter, so that budgets can be set per request.
pub fn count_requests(n: u64) {
    REQUESTS.fetch_add(n, Ordering::Relaxed);
}

pub(crate) static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Set in the copy of the agent that `libheaptide_preload.so` carries.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Marks this copy of the agent as the preload library's own, which must
/// not hand over to itself. Called by `heaptide-preload` alone.
#[doc(hidden)]
pub fn __preloaded() {
    PRELOADED.store(true, Ordering::Relaxed);
}

/// When the process runs under `libheaptide_preload.so`, its agent stops:
/// this one, linked into the program, sees the program's own heap, which
/// the preloaded one cannot. One agent per process either way.
fn take_over_from_preload() {
    if PRELOADED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no
    // preconditions; a null result (no preload) is checked.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"heaptide_preload_hand_over".as_ptr()) };
    if f.is_null() {
        return;
    }
    // SAFETY: the preload library defines this symbol as
    // `extern "C" fn()`, which takes nothing and returns nothing.
    let hand_over: extern "C" fn() = unsafe { std::mem::transmute(f) };
    tracing::info!("heaptide: the preloaded agent stops; this process links its own");
    hand_over();
}
static RUNNING: RwLock<Option<Arc<Shared>>> = RwLock::new(None);

pub(crate) fn recorder() -> Option<Arc<pause::PauseRecorder>> {
    RUNNING.read().ok()?.as_ref().map(|s| s.pauses.clone())
}

#[cfg(feature = "tokio")]
pub(crate) fn stopping_flag() -> Arc<AtomicBool> {
    RUNNING
        .read()
        .ok()
        .and_then(|r| r.as_ref().map(|s| s.stopping.clone()))
        .unwrap_or_else(|| Arc::new(AtomicBool::new(true)))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// CPU time and heap bytes of one agent thread, written by that thread.
#[derive(Default)]
pub(crate) struct ThreadCost {
    cpu_ns: AtomicU64,
    allocated: AtomicU64,
    deallocated: AtomicU64,
}

impl ThreadCost {
    /// Must be called on the thread this cost belongs to.
    pub(crate) fn update(&self) {
        use nix::time::{clock_gettime, ClockId};
        if let Ok(ts) = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID) {
            let ns = ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64;
            self.cpu_ns.store(ns, Ordering::Relaxed);
        }
        if let Some(c) = jemalloc::thread_counters() {
            self.allocated.store(c.allocated, Ordering::Relaxed);
            self.deallocated.store(c.deallocated, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub(crate) struct ThreadCosts {
    pub sampler: ThreadCost,
    pub sender: ThreadCost,
    pub meter: ThreadCost,
}

impl ThreadCosts {
    fn all(&self) -> [&ThreadCost; 3] {
        [&self.sampler, &self.sender, &self.meter]
    }
}

/// State shared by the agent's threads.
pub(crate) struct Shared {
    pub config: Config,
    pub agent_info: AgentInfo,
    pub queue: queue::Queue,
    pub pauses: Arc<pause::PauseRecorder>,
    pub thread_costs: ThreadCosts,
    pub send_failures: AtomicU64,
    pub profile_failures: AtomicU64,
    pub heap_status: Mutex<HeapProfilingStatus>,
    /// Set once by `shutdown`; shared with the tokio probe's task.
    pub stopping: Arc<AtomicBool>,
    flush_deadline: Mutex<Option<Instant>>,
    wake: (Mutex<()>, Condvar),
    /// Set when an upload of debug info landed: the next profile is taken
    /// at the next sample, not at its time.
    pub profile_soon: AtomicBool,
    /// Whether the analyzer can name this process's profiles: always with
    /// in-process names; else once it answered a batch and got what it
    /// asked for (see `upload`).
    pub symbols_ready: AtomicBool,
}

impl Shared {
    pub(crate) fn heap_profiling_status(&self) -> HeapProfilingStatus {
        self.heap_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(HeapProfilingStatus {
                enabled: false,
                reason: Some("status unavailable".into()),
                sample_period_bytes: None,
                unwinder: None,
                unnamed_objects: Vec::new(),
            })
    }

    pub(crate) fn agent_stats(&self) -> AgentStats {
        let (_, dropped_items, dropped_bytes) = self.queue.stats();
        let costs = self.thread_costs.all();
        let cpu_ns: u64 = costs.iter().map(|c| c.cpu_ns.load(Ordering::Relaxed)).sum();
        let alloc: u64 = costs
            .iter()
            .map(|c| c.allocated.load(Ordering::Relaxed))
            .sum();
        let dealloc: u64 = costs
            .iter()
            .map(|c| c.deallocated.load(Ordering::Relaxed))
            .sum();
        AgentStats {
            cpu_seconds: cpu_ns as f64 / 1e9,
            heap_bytes: alloc.saturating_sub(dealloc),
            dropped_items: dropped_items + self.pauses.dropped_events.load(Ordering::Relaxed),
            dropped_bytes,
            send_failures: self.send_failures.load(Ordering::Relaxed),
            profile_failures: self.profile_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn flush_deadline(&self) -> Option<Instant> {
        self.flush_deadline.lock().ok().and_then(|d| *d)
    }

    /// Sleeps up to `d`, returning early when the agent stops.
    pub(crate) fn sleep_unless_stopping(&self, d: Duration) {
        let Ok(guard) = self.wake.0.lock() else {
            return;
        };
        let _ = self
            .wake
            .1
            .wait_timeout_while(guard, d, |_| !self.stopping.load(Ordering::Relaxed));
    }
}

/// A running agent. Dropping it shuts it down, like [`Agent::shutdown`].
pub struct Agent {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    sender_done: Option<std::sync::mpsc::Receiver<()>>,
    /// The process that started it: a child forked from it has none of
    /// its threads, and leaves them alone.
    pid: u32,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Who is sending, as every batch says.
fn agent_info(config: &Config) -> AgentInfo {
    AgentInfo {
        service: config.service.clone(),
        instance: config.instance.clone(),
        host: config::hostname(),
        pid: std::process::id(),
        start_time_ms: process::start_time_ms(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        labels: config.labels.clone(),
    }
}

impl Agent {
    /// Starts the sampler, sender and pause-meter threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when a setting is out of its bounds,
    /// [`Error::AlreadyRunning`] when this process already runs an agent,
    /// and [`Error::Spawn`] when a thread cannot be started. Heap profiling
    /// that cannot be switched on is not an error: the agent runs without
    /// it and says why in [`Agent::heap_profiling`].
    pub fn start(config: Config) -> Result<Agent> {
        config.check()?;
        take_over_from_preload();
        let mut running = RUNNING.write().map_err(|_| Error::AlreadyRunning)?;
        if running.is_some() {
            return Err(Error::AlreadyRunning);
        }
        let profiling = sampler::init_profiling(&config);
        if let Some(reason) = &profiling.reason {
            tracing::warn!("heaptide: heap profiles are off: {reason}");
        }
        let agent_info = agent_info(&config);
        let shared = Arc::new(Shared {
            queue: queue::Queue::new(config.queue_bytes),
            pauses: Arc::new(pause::PauseRecorder::new(config.pause_threshold)),
            thread_costs: ThreadCosts::default(),
            send_failures: AtomicU64::new(0),
            profile_failures: AtomicU64::new(0),
            heap_status: Mutex::new(profiling),
            stopping: Arc::new(AtomicBool::new(false)),
            flush_deadline: Mutex::new(None),
            wake: (Mutex::new(()), Condvar::new()),
            profile_soon: AtomicBool::new(false),
            symbols_ready: AtomicBool::new(config.symbolize == crate::Symbolize::Agent),
            agent_info,
            config,
        });
        let mut agent = Agent {
            shared: shared.clone(),
            threads: Vec::new(),
            sender_done: None,
            pid: std::process::id(),
        };
        let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    crate::allocs::mark_agent_thread();
                    // A bug in the agent must not take the host down with it.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                        tracing::error!("heaptide: the {name} thread panicked and stopped");
                    }
                })
                .map_err(|source| Error::Spawn {
                    thread: name,
                    source,
                })
        };
        let s = shared.clone();
        agent.threads.push(spawn(
            "heaptide-meter",
            Box::new(move || {
                pause::run_meter(
                    &s.pauses,
                    s.config.pause_tick,
                    &s.stopping,
                    &s.thread_costs.meter,
                )
            }),
        )?);
        let s = shared.clone();
        agent.threads.push(spawn(
            "heaptide-sample",
            Box::new(move || sampler::run(&s)),
        )?);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let sender = sender::Sender::new(shared.clone());
        agent.threads.push(spawn(
            "heaptide-send",
            Box::new(move || {
                sender.run();
                let _ = done_tx.send(());
            }),
        )?);
        agent.sender_done = Some(done_rx);
        *running = Some(shared);
        Ok(agent)
    }

    /// The settings this agent runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// What the agent has cost so far, as sent in each batch.
    pub fn stats(&self) -> AgentStats {
        self.shared.agent_stats()
    }

    /// Whether heap profiles are being taken, and if not, why.
    pub fn heap_profiling(&self) -> HeapProfilingStatus {
        self.shared.heap_profiling_status()
    }

    /// Stops sampling, takes a last sample and sends what it can within the
    /// configured shutdown timeout. Threads still busy then are left to
    /// finish on their own; the host is not kept waiting.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(done) = self.sender_done.take() else {
            return;
        };
        if std::process::id() != self.pid {
            // A forked child that did not exec: the agent's threads stayed
            // in the parent, so there is nothing to flush or wait for, and
            // the locks they shared may have been copied held. The child
            // exits without the agent; its hooks stay harmless.
            return;
        }
        let deadline = Instant::now() + self.shared.config.shutdown_timeout;
        if let Ok(mut d) = self.shared.flush_deadline.lock() {
            *d = Some(deadline);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.1.notify_all();
        // The sampler pushes its last sample and closes the queue; the
        // sender drains it and finishes.
        let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        if let Ok(mut running) = RUNNING.write() {
            *running = None;
        }
        unwind::uninstall();
        age::uninstall();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
