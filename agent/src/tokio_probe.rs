//! Pauses of a tokio runtime, seen from the agent's own thread rather than
//! from a task on the runtime's timers: such a task panics on a runtime
//! built without timers, and sleeps through the very stall it should see.
//!
//! Two measures, each tick:
//! - **lateness**: a task spawned from this thread on a fixed-rate
//!   schedule records how long after it was due it ran; a runtime whose
//!   workers are all busy or blocked, or a stalled process, runs it late.
//!   Recorded with the coordinated-omission correction.
//! - **a blocked worker**: tokio's stable metrics say, per worker, how
//!   often it parked and unparked (even: running, odd: parked). A worker
//!   that keeps running without parking while another worker parks, for
//!   longer than the pause threshold, is stuck in one poll: a blocking call
//!   in async code. Its stall is recorded as a pause event naming the
//!   worker, as long as it lasted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use heaptide_wire::PauseSource;

use crate::pause::PauseRecorder;

/// Measures a tokio runtime's pauses from a thread of the agent's, every
/// `tick`. Returns `false` when no agent runs or the thread cannot start.
pub fn spawn_tokio_probe(handle: &tokio::runtime::Handle, tick: Duration) -> bool {
    let Some(rec) = crate::runtime::recorder() else {
        return false;
    };
    // The first runtime probed is the one whose tasks and queues each
    // sample reads.
    let _ = WATCHED.set(handle.clone());
    let stop = crate::runtime::stopping_flag();
    let handle = handle.clone();
    std::thread::Builder::new()
        .name("heaptide-tokio".into())
        .spawn(move || {
            crate::allocs::mark_agent_thread();
            run(&rec, &handle, tick, &stop)
        })
        .is_ok()
}

static WATCHED: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// tokio's default `max_blocking_threads`; [`tokio_max_blocking_threads`]
/// says another.
static MAX_BLOCKING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(512);

/// The `max_blocking_threads` the probed runtime was built with, which
/// tokio does not say back: the blocking pool's capacity.
pub fn tokio_max_blocking_threads(n: usize) {
    MAX_BLOCKING.store(n as u64, Ordering::Relaxed);
}

/// The probed runtime's tasks and queues, from tokio's stable metrics:
/// alive tasks and the global queue. Its blocking pool (threads against
/// `max_blocking_threads`, and the blocking queue) needs the unstable
/// metrics, so only a build with `--cfg tokio_unstable` reports it, as
/// the pool `tokio_blocking`.
pub(crate) fn sample(out: &mut crate::process::Metrics) {
    use heaptide_wire::metric;
    let Some(handle) = WATCHED.get() else {
        return;
    };
    let m = handle.metrics();
    out.insert(metric::TOKIO_TASKS_ALIVE.into(), m.num_alive_tasks() as f64);
    out.insert(
        metric::TOKIO_GLOBAL_QUEUE.into(),
        m.global_queue_depth() as f64,
    );
    #[cfg(tokio_unstable)]
    {
        let (threads, idle) = (m.num_blocking_threads(), m.num_idle_blocking_threads());
        let name = "tokio_blocking";
        let mut put = |part, v: usize| {
            out.insert(metric::pool(name, part), v as f64);
        };
        put(metric::POOL_IN_USE, threads.saturating_sub(idle));
        put(metric::POOL_IDLE, idle);
        put(metric::POOL_WAITING, m.blocking_queue_depth());
        out.insert(
            metric::pool(name, metric::CAPACITY),
            MAX_BLOCKING.load(Ordering::Relaxed) as f64,
        );
    }
}

/// One worker as last seen: its park/unpark count, since when, and whether
/// another worker parked meanwhile.
struct Seen {
    count: u64,
    since: Instant,
    others_parked: bool,
}

pub(crate) fn run(
    rec: &Arc<PauseRecorder>,
    handle: &tokio::runtime::Handle,
    tick: Duration,
    stop: &AtomicBool,
) {
    let metrics = handle.metrics();
    let workers = metrics.num_workers();
    let now = Instant::now();
    let mut seen: Vec<Seen> = (0..workers)
        .map(|w| Seen {
            count: metrics.worker_park_unpark_count(w),
            since: now,
            others_parked: false,
        })
        .collect();
    // A fixed-rate schedule: each task is due a tick after the last, and
    // records how long after that it ran. A stall of the whole process
    // delays the spawn itself, and shows as well.
    let mut due = Instant::now() + tick;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let (r, d) = (rec.clone(), due);
        // A runtime that has shut down drops the task; nothing panics.
        drop(handle.spawn(async move {
            r.record_lateness(PauseSource::Tokio, d.elapsed(), d, tick);
        }));
        watch_workers(rec, &metrics, &mut seen);
        due += tick;
        // After a stall, take up the schedule from now: the stall's missed
        // ticks are already counted by the correction.
        let now = Instant::now();
        if now > due + tick {
            due = now + tick;
        }
    }
}

fn watch_workers(rec: &PauseRecorder, metrics: &tokio::runtime::RuntimeMetrics, seen: &mut [Seen]) {
    let counts: Vec<u64> = (0..seen.len())
        .map(|w| metrics.worker_park_unpark_count(w))
        .collect();
    let now = Instant::now();
    for (w, s) in seen.iter_mut().enumerate() {
        let others_parked = counts.iter().enumerate().any(|(o, c)| o != w && c % 2 == 1);
        if counts[w] == s.count {
            s.others_parked |= others_parked;
            continue;
        }
        // The worker moved on. If it had been running all along while
        // another idled, the stretch was one blocked poll.
        let ran = now.duration_since(s.since);
        if s.count % 2 == 0 && s.others_parked && ran >= rec.threshold() {
            rec.push_event(
                PauseSource::Tokio,
                format!("tokio worker {w} blocked"),
                s.since,
                ran,
            );
        }
        *s = Seen {
            count: counts[w],
            since: now,
            others_parked: false,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime without timers, where one task blocks one of two workers
    /// for 300 ms: the probe runs, does not panic, and names the worker.
    #[test]
    fn one_blocked_worker_is_seen_on_a_runtime_without_timers() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let rec = Arc::new(PauseRecorder::new(Duration::from_millis(100)));
        let stop = Arc::new(AtomicBool::new(false));
        let probe = {
            let (rec, stop, handle) = (rec.clone(), stop.clone(), rt.handle().clone());
            std::thread::spawn(move || run(&rec, &handle, Duration::from_millis(5), &stop))
        };
        std::thread::sleep(Duration::from_millis(200));
        rt.spawn(async {
            // A blocking call in async code.
            std::thread::sleep(Duration::from_millis(300));
        });
        std::thread::sleep(Duration::from_millis(600));
        stop.store(true, Ordering::Relaxed);
        probe.join().unwrap();
        let (events, _, tokio) = rec.drain();
        WATCHED.set(rt.handle().clone()).unwrap();
        // A lateness task the probe spawned as it stopped may still wait
        // in the global queue for a moment (seen on a busy host).
        let read = || {
            let mut m = crate::process::Metrics::new();
            sample(&mut m);
            m
        };
        let mut m = read();
        for _ in 0..100 {
            if m[heaptide_wire::metric::TOKIO_GLOBAL_QUEUE] == 0.0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            m = read();
        }
        assert!(m[heaptide_wire::metric::TOKIO_TASKS_ALIVE] >= 0.0);
        assert_eq!(m[heaptide_wire::metric::TOKIO_GLOBAL_QUEUE], 0.0);
        // The blocking pool, in builds with tokio's unstable metrics.
        #[cfg(tokio_unstable)]
        assert_eq!(m["pool.tokio_blocking.capacity"], 512.0);
        #[cfg(not(tokio_unstable))]
        assert!(!m.contains_key("pool.tokio_blocking.capacity"));
        assert!(tokio.is_some(), "scheduling delay was measured");
        let blocked: Vec<_> = events
            .iter()
            .filter(|e| e.name.starts_with("tokio worker"))
            .collect();
        assert_eq!(blocked.len(), 1, "{events:?}");
        assert!(
            (250.0..1000.0).contains(&blocked[0].duration_ms),
            "{:?}",
            blocked[0]
        );
    }
}
