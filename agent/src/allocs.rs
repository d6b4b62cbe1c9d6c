//! What each stack allocated between two heap profiles, freed or not: the
//! `alloc_space` and `alloc_objects` of Go's heap profiles, which show the
//! churn that costs CPU and fragments the heap though nothing stays live.
//!
//! jemalloc's dump holds live memory only: a stack whose allocations were
//! all freed is not in it, and `prof_accum` would keep every stack ever
//! sampled, on every thread, for the life of the process. So the sample
//! hook ([`crate::age`]) also adds each sampled allocation, unbiased, to
//! its stack's entry here, and each profile takes the entries and empties
//! them. The table is fixed: sixteen shards of 32 stacks, by the stack's
//! hash, each behind a [`HookLock`] that a hook only tries; a stack that
//! finds its shard busy or full is counted, not recorded. A stack keeps
//! its innermost [`MAX_FRAMES`] frames. The agent's own threads are not
//! counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::hook_lock::HookLock;

const SHARDS: usize = 16;
/// Stacks per shard between two profiles (a power of two).
const SITES: usize = 32;
const MAX_PROBES: usize = 8;
/// Frames kept per stack: jemalloc records up to 128, and the innermost
/// name the code; 64 covers the stacks of the services measured.
pub(crate) const MAX_FRAMES: usize = 64;

#[derive(Clone, Copy)]
struct Site {
    /// The stack's [`crate::age::site_of`]; 0 when empty.
    site: u64,
    objects: f64,
    bytes: u64,
    len: u8,
    frames: [u64; MAX_FRAMES],
}

impl Default for Site {
    fn default() -> Self {
        Site {
            site: 0,
            objects: 0.0,
            bytes: 0,
            len: 0,
            frames: [0; MAX_FRAMES],
        }
    }
}

struct Table {
    shards: Vec<HookLock<Box<[Site]>>>,
    /// Sampled allocations not recorded: their shard was full or busy.
    untracked: AtomicU64,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// Every sampled allocation's unbiased bytes since the table was made,
/// recorded in the table or not.
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// One stack's allocations since the previous [`take`], unbiased.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StackAllocs {
    pub site: u64,
    /// Return addresses, leaf first, at most [`MAX_FRAMES`].
    pub addrs: Vec<u64>,
    pub objects: u64,
    pub bytes: u64,
}

/// Makes the table, once; the age hooks fill it.
pub(crate) fn install() {
    TABLE.get_or_init(|| Table {
        shards: (0..SHARDS)
            .map(|_| HookLock::new(vec![Site::default(); SITES].into_boxed_slice()))
            .collect(),
        untracked: AtomicU64::new(0),
    });
}

thread_local! {
    /// Whether this thread is one of the agent's own, whose allocations
    /// (profiles, symbols, sends) are the agent's cost, reported as
    /// `agent.heap_bytes` and `agent.cpu_seconds`, not the service's.
    /// Const-initialized and without a destructor, so reading it in the
    /// hook never allocates.
    static AGENT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as the agent's: its allocations are not
/// counted.
pub(crate) fn mark_agent_thread() {
    AGENT_THREAD.with(|a| a.set(true));
}

/// The sampling period, kept here for the hook, which must not ask
/// jemalloc for it.
static PERIOD: AtomicU64 = AtomicU64::new(1);

/// Says that jemalloc now samples every `period` bytes on average.
pub(crate) fn set_period(period: u64) {
    PERIOD.store(period, Ordering::Relaxed);
}

/// Adds one sampled allocation of `size` bytes made at `addrs`, whose hash
/// is `site`, unbiased for the period as the dump's values are. Called in
/// the sample hook: it neither allocates nor waits for long.
pub(crate) fn record(site: u64, addrs: &[usize], size: u64) {
    let Some(t) = TABLE.get() else { return };
    if AGENT_THREAD.with(std::cell::Cell::get) {
        return;
    }
    let bytes = crate::age::unbiased(size, PERIOD.load(Ordering::Relaxed));
    let objects = bytes as f64 / size.max(1) as f64;
    TOTAL.fetch_add(bytes, Ordering::Relaxed);
    let site = site.max(1);
    let (shard, start) = place(site);
    let Some(mut s) = t.shards[shard].try_lock() else {
        t.untracked.fetch_add(1, Ordering::Relaxed);
        return;
    };
    for i in 0..MAX_PROBES {
        let e = &mut s[(start + i) & (SITES - 1)];
        if e.site == 0 {
            e.site = site;
            let n = addrs.len().min(MAX_FRAMES);
            for (f, a) in e.frames.iter_mut().zip(&addrs[..n]) {
                *f = *a as u64;
            }
            e.len = n as u8;
        }
        if e.site == site {
            e.objects += objects;
            e.bytes += bytes;
            return;
        }
    }
    t.untracked.fetch_add(1, Ordering::Relaxed);
}

/// A stack's shard and first slot, from the high bits of its hash mixed
/// again: stacks whose hashes differ in few bits (addresses a page apart)
/// must still spread over the shards, which a hash's own low bits did not
/// do (`benches/allocs.rs` found 96 of 400 stacks kept).
fn place(site: u64) -> (usize, usize) {
    let h = site.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (
        (h >> 60) as usize % SHARDS,
        (h >> 32) as usize & (SITES - 1),
    )
}

/// The stacks' allocations since the previous call, and the table emptied.
pub(crate) fn take() -> Vec<StackAllocs> {
    let Some(t) = TABLE.get() else {
        return Vec::new();
    };
    // Allocated before any shard is taken: a hook on this thread must
    // never find its shard held by an allocation of the reader's.
    let mut copy: Vec<Site> = Vec::with_capacity(SITES);
    let mut out = Vec::with_capacity(SITES * 2);
    for shard in &t.shards {
        copy.clear();
        {
            let mut s = shard.lock();
            copy.extend(s.iter().filter(|e| e.site != 0));
            s.fill(Site::default());
        }
        out.reserve(copy.len());
        out.extend(copy.iter().map(|e| StackAllocs {
            site: e.site,
            addrs: e.frames[..usize::from(e.len)].to_vec(),
            objects: e.objects.round() as u64,
            bytes: e.bytes,
        }));
    }
    out
}

/// Bytes allocated since the table was made, estimated from the samples.
pub(crate) fn total_bytes() -> Option<u64> {
    TABLE.get().map(|_| TOTAL.load(Ordering::Relaxed))
}

/// Sampled allocations the table could not record, since it was made.
pub(crate) fn untracked() -> Option<u64> {
    TABLE.get().map(|t| t.untracked.load(Ordering::Relaxed))
}

/// Takes every shard before `fork` copies them, as the age table does.
pub(crate) fn hold_all() {
    if let Some(t) = TABLE.get() {
        t.shards.iter().for_each(HookLock::hold);
    }
}

/// Gives the shards back, in the parent and in the child alike.
pub(crate) fn release_all() {
    if let Some(t) = TABLE.get() {
        t.shards.iter().for_each(HookLock::release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is the process's: one test at a time takes it.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_stack_adds_up_between_takes_and_starts_again_after() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        install();
        let _ = take();
        let a = [0x1000usize, 0x2000, 0x3000];
        let site = crate::age::site_of(a.iter().map(|&x| x as u64));
        record(site, &a, 100);
        record(site, &a, 50);
        let got: Vec<StackAllocs> = take().into_iter().filter(|s| s.site == site).collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].addrs, vec![0x1000, 0x2000, 0x3000]);
        assert_eq!(
            (got[0].objects, got[0].bytes),
            (2, 150),
            "period 1: as made"
        );
        assert!(take().iter().all(|s| s.site != site), "emptied by take");
    }

    #[test]
    fn the_agents_own_threads_are_not_counted() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        install();
        let _ = take();
        let a = [0x5150usize];
        let site = crate::age::site_of([0x5150]);
        std::thread::spawn(move || {
            mark_agent_thread();
            record(site, &a, 64);
        })
        .join()
        .unwrap();
        assert!(take().iter().all(|s| s.site != site));
    }

    #[test]
    fn deep_stacks_keep_their_innermost_frames_and_a_full_shard_counts() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        install();
        let deep: Vec<usize> = (1..=200).collect();
        let site = crate::age::site_of(deep.iter().map(|&x| x as u64));
        record(site, &deep, 8);
        let got = take().into_iter().find(|s| s.site == site).unwrap();
        assert_eq!(got.addrs.len(), MAX_FRAMES);
        assert_eq!(got.addrs[0], 1);
        // More stacks of one shard than it has room for: the rest counted.
        let before = untracked().unwrap();
        let shard0: Vec<u64> = (1..).filter(|s| place(*s).0 == 0).take(SITES * 2).collect();
        for site in shard0 {
            record(site, &[1], 1);
        }
        assert!(untracked().unwrap() > before);
        let _ = take();
    }
}
