//! Pools and queues the service owns, as named gauges with a capacity:
//! the resources that run out before memory does.
//!
//! A service registers each pool or queue once ([`pool`], [`queue`]) and
//! updates the handle from its hot path, or hands the agent a function to
//! poll ([`watch_pool`], [`watch_queue`]) when the pool already counts.
//! Updates are relaxed atomics on a slot registered once: no lock, no
//! allocation, never blocking. The sampler reads every slot each sample
//! into `pool.<name>.*` and `queue.<name>.*` (docs/wire.md).
//!
//! The table is fixed ([`MAX_GAUGES`]) and each slot lives for the whole
//! process, so a handle is a plain reference; a service that registers
//! more gets a handle that counts nothing, and a warning.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use heaptide_wire::metric;

use crate::process::Metrics;

/// The most pools and queues one process registers.
pub const MAX_GAUGES: usize = 64;

/// What a pool or queue holds at one moment, as a poll returns it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GaugeState {
    /// Pools: slots checked out. Queues: items waiting.
    pub in_use: u64,
    /// Pools: slots open but not checked out.
    pub idle: u64,
    /// Pools: callers waiting for a slot.
    pub waiting: u64,
    /// The most slots or items it holds; `None` for an unbounded queue.
    pub capacity: Option<u64>,
}

type Poll = Box<dyn Fn() -> GaugeState + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pool,
    Queue,
}

/// One registered pool or queue.
struct Slot {
    name: String,
    kind: Kind,
    in_use: AtomicI64,
    idle: AtomicI64,
    waiting: AtomicI64,
    /// `u64::MAX` for none.
    capacity: AtomicU64,
    poll: Option<Poll>,
}

static SLOTS: [OnceLock<Slot>; MAX_GAUGES] = [const { OnceLock::new() }; MAX_GAUGES];
/// Registration only: the hot path never takes it.
static REGISTER: Mutex<usize> = Mutex::new(0);
/// The slot of every handle beyond [`MAX_GAUGES`]: it counts, but is
/// never read.
static OVERFLOW: Slot = Slot {
    name: String::new(),
    kind: Kind::Pool,
    in_use: AtomicI64::new(0),
    idle: AtomicI64::new(0),
    waiting: AtomicI64::new(0),
    capacity: AtomicU64::new(u64::MAX),
    poll: None,
};

/// A handle on a registered pool or queue: copy it freely; every update
/// is one relaxed atomic operation.
#[derive(Clone, Copy)]
pub struct Gauge(&'static Slot);

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.0.name).finish()
    }
}

fn register(name: &str, kind: Kind, capacity: Option<u64>, poll: Option<Poll>) -> Gauge {
    let name = heaptide_wire::gauge_name(name);
    let mut n = REGISTER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = SLOTS[..*n]
        .iter()
        .filter_map(OnceLock::get)
        .find(|s| s.name == name && s.kind == kind && s.poll.is_none() && poll.is_none())
    {
        // One name, one pool: registering it again shares its counts.
        return Gauge(existing);
    }
    let Some(cell) = SLOTS.get(*n) else {
        tracing::warn!("heaptide: more than {MAX_GAUGES} pools and queues; {name} is not watched");
        return Gauge(&OVERFLOW);
    };
    *n += 1;
    let slot = cell.get_or_init(|| Slot {
        name,
        kind,
        in_use: AtomicI64::new(0),
        idle: AtomicI64::new(0),
        waiting: AtomicI64::new(0),
        capacity: AtomicU64::new(capacity.unwrap_or(u64::MAX)),
        poll,
    });
    Gauge(slot)
}

/// Registers a pool of at most `capacity` slots (connections, permits,
/// workers) under `name`, and returns the handle its code updates.
pub fn pool(name: &str, capacity: u64) -> Gauge {
    register(name, Kind::Pool, Some(capacity), None)
}

/// Registers a queue under `name`, bounded at `capacity` items or
/// unbounded, and returns the handle its code updates.
pub fn queue(name: &str, capacity: Option<u64>) -> Gauge {
    register(name, Kind::Queue, capacity, None)
}

/// Registers a pool that the agent polls each sample: `poll` must return
/// at once (it runs on the agent's thread; a panic in it is caught and
/// the pool skipped for that sample).
pub fn watch_pool(name: &str, poll: impl Fn() -> GaugeState + Send + Sync + 'static) {
    register(name, Kind::Pool, None, Some(Box::new(poll)));
}

/// Registers a queue that the agent polls each sample; as [`watch_pool`],
/// with the depth in [`GaugeState::in_use`].
pub fn watch_queue(name: &str, poll: impl Fn() -> GaugeState + Send + Sync + 'static) {
    register(name, Kind::Queue, None, Some(Box::new(poll)));
}

impl Gauge {
    /// A slot checked out, or an item pushed.
    #[inline]
    pub fn acquire(self) {
        self.0.in_use.fetch_add(1, Ordering::Relaxed);
    }

    /// A slot given back, or an item taken.
    #[inline]
    pub fn release(self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }

    /// Slots in use, or items queued, when the caller counts them itself.
    #[inline]
    pub fn set_in_use(self, n: u64) {
        self.0.in_use.store(clamp(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn set_idle(self, n: u64) {
        self.0.idle.store(clamp(n), Ordering::Relaxed);
    }

    /// Callers waiting for a slot: a pool that has them is saturated.
    #[inline]
    pub fn set_waiting(self, n: u64) {
        self.0.waiting.store(clamp(n), Ordering::Relaxed);
    }

    /// One more caller waits, or one fewer.
    #[inline]
    pub fn wait(self) {
        self.0.waiting.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn waited(self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// A pool resized, or a queue rebounded.
    pub fn set_capacity(self, capacity: Option<u64>) {
        self.0
            .capacity
            .store(capacity.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// What the agent reads of it now.
    pub fn state(self) -> GaugeState {
        read(self.0)
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts below zero (a release without its acquire) read as zero.
fn read(s: &Slot) -> GaugeState {
    let get = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
    let cap = s.capacity.load(Ordering::Relaxed);
    GaugeState {
        in_use: get(&s.in_use),
        idle: get(&s.idle),
        waiting: get(&s.waiting),
        capacity: (cap != u64::MAX).then_some(cap),
    }
}

/// Every registered pool and queue, into `out`.
pub(crate) fn sample(out: &mut Metrics) {
    for s in SLOTS.iter().filter_map(OnceLock::get) {
        let state = match &s.poll {
            None => read(s),
            Some(poll) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(poll)) {
                Ok(state) => state,
                Err(_) => continue,
            },
        };
        let mut put = |name: String, v: u64| {
            out.insert(name, v as f64);
        };
        match s.kind {
            Kind::Pool => {
                put(metric::pool(&s.name, metric::POOL_IN_USE), state.in_use);
                put(metric::pool(&s.name, metric::POOL_IDLE), state.idle);
                put(metric::pool(&s.name, metric::POOL_WAITING), state.waiting);
                if let Some(c) = state.capacity {
                    put(metric::pool(&s.name, metric::CAPACITY), c);
                }
            }
            Kind::Queue => {
                put(metric::queue(&s.name, metric::QUEUE_DEPTH), state.in_use);
                if let Some(c) = state.capacity {
                    put(metric::queue(&s.name, metric::CAPACITY), c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_counts_and_reads_into_its_gauges() {
        let p = pool("Test DB", 8);
        for _ in 0..5 {
            p.acquire();
        }
        p.release();
        p.set_idle(3);
        p.wait();
        assert_eq!(
            p.state(),
            GaugeState {
                in_use: 4,
                idle: 3,
                waiting: 1,
                capacity: Some(8)
            }
        );
        // The same name shares the counts.
        pool("test db", 8).release();
        assert_eq!(p.state().in_use, 3);
        watch_queue("polled", || GaugeState {
            in_use: 7,
            ..GaugeState::default()
        });
        watch_pool("panics", || panic!("a poll that fails"));
        let mut m = Metrics::new();
        sample(&mut m);
        assert_eq!(m["pool.test_db.in_use"], 3.0);
        assert_eq!(m["pool.test_db.capacity"], 8.0);
        assert_eq!(m["queue.polled.depth"], 7.0);
        assert!(!m.contains_key("queue.polled.capacity"));
        assert!(!m.keys().any(|k| k.starts_with("pool.panics")));
    }
}
