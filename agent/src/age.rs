//! The age of live memory: when each sampled allocation that is still
//! alive was made, as SWAT and JFR's Old Object Sample track it.
//!
//! jemalloc calls `experimental.hooks.prof_sample` for every allocation it
//! samples, with the sampled stack, and `prof_sample_free` when one is
//! freed. The hooks keep (address → birth, site, size) in a fixed table,
//! and each heap profile reads the table into bytes by age per stack.
//! Memory that is both old and still accumulating is what a leak looks
//! like; a cache's or a queue's live memory stays young as it churns.
//!
//! The sample hook also counts each sampled allocation for its stack's
//! allocation rate ([`crate::allocs`]).
//!
//! The hooks run inside the allocator: they never allocate and never wait
//! for long. The table is sixteen shards, each a fixed array behind its
//! own lock ([`crate::hook_lock`]), taken for a few slot probes by a hook
//! and for one copy into a buffer allocated beforehand by the reader. A
//! hook only tries its shard: a shard that stays busy, or is full, skips
//! the allocation and counts it. The shards are taken around `fork`, so a
//! child inherits them consistent and free. Allocations made before the
//! hooks were installed are not in the table at all.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tikv_jemalloc_ctl::raw;

use crate::error::{Error, Result};
use crate::hook_lock::{self, HookLock};
use heaptide_wire::AGE_BUCKETS_SECS;

const SHARDS: usize = 16;
/// Slots per shard (a power of two); at most half are filled, so that
/// probes stay short. 16 × 1,024 tracked allocations is a live heap of
/// about 8 GiB at the default 512 KiB period, in 1 MiB of table.
const SLOTS: usize = 2048;
const MAX_PROBES: usize = 64;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0 when empty.
    ptr: usize,
    born_ms: u64,
    site: u64,
    size: u64,
}

struct Shard {
    slots: Box<[Slot]>,
    len: usize,
}

struct Table {
    shards: Vec<HookLock<Shard>>,
    epoch: Instant,
    /// Sampled allocations not recorded: their shard was full, or busy
    /// past a hook's bounded wait.
    untracked: AtomicU64,
}

static TABLE: OnceLock<Table> = OnceLock::new();

type SampleHook = unsafe extern "C" fn(*const c_void, usize, *mut *mut c_void, c_uint, usize);
type FreeHook = unsafe extern "C" fn(*const c_void, usize);

/// Installs the hooks; the table is made once, on the first call.
pub(crate) fn install() -> Result<()> {
    TABLE.get_or_init(|| Table {
        shards: (0..SHARDS)
            .map(|_| {
                HookLock::new(Shard {
                    slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
                    len: 0,
                })
            })
            .collect(),
        epoch: Instant::now(),
        untracked: AtomicU64::new(0),
    });
    crate::allocs::install();
    hook_lock::on_fork(before_fork, after_fork, after_fork);
    write_hooks(Some(on_sample), Some(on_free))
}

/// Takes every shard, so that no thread holds one as `fork` copies it.
extern "C" fn before_fork() {
    if let Some(t) = TABLE.get() {
        t.shards.iter().for_each(HookLock::hold);
    }
    crate::allocs::hold_all();
}

/// Gives the shards back, in the parent and in the child alike.
extern "C" fn after_fork() {
    crate::allocs::release_all();
    if let Some(t) = TABLE.get() {
        t.shards.iter().for_each(HookLock::release);
    }
}

/// Removes the hooks. The table stays, and is emptied.
pub(crate) fn uninstall() {
    if let Err(e) = write_hooks(None, None) {
        tracing::warn!("heaptide: removing the age hooks failed: {e}");
    }
    if let Some(t) = TABLE.get() {
        for shard in &t.shards {
            let mut s = shard.lock();
            s.slots.fill(Slot::default());
            s.len = 0;
        }
    }
}

fn write_hooks(sample: Option<SampleHook>, free: Option<FreeHook>) -> Result<()> {
    let err = |name: &'static str| {
        move |e: tikv_jemalloc_ctl::Error| Error::Jemalloc {
            name,
            message: e.to_string(),
        }
    };
    // SAFETY: each mallctl takes a nullable C function pointer of exactly
    // these signatures (`prof_sample_hook_t`, `prof_sample_free_hook_t`);
    // `Option<fn>` has the layout of a nullable pointer.
    unsafe {
        raw::write(b"experimental.hooks.prof_sample_free\0", free)
            .map_err(err("experimental.hooks.prof_sample_free"))?;
        raw::write(b"experimental.hooks.prof_sample\0", sample)
            .map_err(err("experimental.hooks.prof_sample"))
    }
}

/// A site's identity: its stack of return addresses, hashed the same way
/// here and for the stacks of a heap dump.
pub(crate) fn site_of(addrs: impl IntoIterator<Item = u64>) -> u64 {
    // FNV-1a's step over whole addresses rather than their bytes (a
    // multiply a frame, not eight: the hook runs it on every sampled
    // allocation), with a rotation so that high bits reach the low ones;
    // only compared within this process.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in addrs {
        h = (h ^ a).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    h
}

fn shard_of(ptr: usize) -> (usize, usize) {
    let h = (ptr as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 60) as usize % SHARDS, (h >> 8) as usize & (SLOTS - 1))
}

unsafe extern "C" fn on_sample(
    ptr: *const c_void,
    _size: usize,
    bt: *mut *mut c_void,
    len: c_uint,
    usize_: usize,
) {
    let Some(t) = TABLE.get() else { return };
    let addrs: &[usize] = if bt.is_null() {
        &[]
    } else {
        // SAFETY: jemalloc passes the sampled stack's `len` return
        // addresses, alive for the duration of the call.
        unsafe { std::slice::from_raw_parts(bt as *const usize, len as usize) }
    };
    let site = site_of(addrs.iter().map(|&a| a as u64));
    crate::allocs::record(site, addrs, usize_ as u64);
    let born_ms = t.epoch.elapsed().as_millis() as u64;
    let (shard, start) = shard_of(ptr as usize);
    let Some(mut s) = t.shards[shard].try_lock() else {
        t.untracked.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if s.len >= SLOTS / 2 {
        t.untracked.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for i in 0..MAX_PROBES {
        let at = (start + i) & (SLOTS - 1);
        if s.slots[at].ptr == 0 || s.slots[at].ptr == ptr as usize {
            let added = s.slots[at].ptr == 0;
            s.slots[at] = Slot {
                ptr: ptr as usize,
                born_ms,
                site,
                size: usize_ as u64,
            };
            s.len += usize::from(added);
            return;
        }
    }
    t.untracked.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn on_free(ptr: *const c_void, _usize: usize) {
    let Some(t) = TABLE.get() else { return };
    let (shard, start) = shard_of(ptr as usize);
    // A free that finds its shard busy leaves its entry: the address is
    // overwritten when it is sampled again, and meanwhile reads as live.
    let Some(mut s) = t.shards[shard].try_lock() else {
        t.untracked.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(mut hole) = (0..MAX_PROBES)
        .map(|i| (start + i) & (SLOTS - 1))
        .take_while(|&at| s.slots[at].ptr != 0)
        .find(|&at| s.slots[at].ptr == ptr as usize)
    else {
        return;
    };
    // Backward-shift deletion keeps every entry reachable from its home
    // slot without tombstones.
    s.slots[hole] = Slot::default();
    s.len -= 1;
    let mut at = hole;
    loop {
        at = (at + 1) & (SLOTS - 1);
        let slot = s.slots[at];
        if slot.ptr == 0 {
            return;
        }
        let home = shard_of(slot.ptr).1;
        // Move the entry back if its home is not within (hole, at].
        if (at.wrapping_sub(home) & (SLOTS - 1)) >= (at.wrapping_sub(hole) & (SLOTS - 1)) {
            s.slots[hole] = slot;
            s.slots[at] = Slot::default();
            hole = at;
        }
    }
}

/// Sampled allocations and frees the table could not record, once the
/// hooks were installed.
pub(crate) fn untracked() -> Option<u64> {
    TABLE.get().map(|t| t.untracked.load(Ordering::Relaxed))
}

/// Live bytes by age bucket ([`AGE_BUCKETS_SECS`]) per site, unbiased
/// for `period` as the heap dump is; and how many sampled allocations and
/// frees the table could not record so far.
pub(crate) fn by_site(period: u64) -> (HashMap<u64, [u64; AGE_BUCKETS_SECS.len()]>, u64) {
    let Some(t) = TABLE.get() else {
        return (HashMap::new(), 0);
    };
    let now = t.epoch.elapsed().as_millis() as u64;
    let mut out: HashMap<u64, [u64; AGE_BUCKETS_SECS.len()]> = HashMap::new();
    // Allocated before any lock is taken: a hook on this thread must never
    // find its shard held by an allocation of the reader's.
    let mut copy: Vec<Slot> = Vec::with_capacity(SLOTS);
    for shard in &t.shards {
        copy.clear();
        {
            let s = shard.lock();
            copy.extend(s.slots.iter().filter(|x| x.ptr != 0));
        }
        for slot in &copy {
            let age_s = now.saturating_sub(slot.born_ms) / 1000;
            let bucket = AGE_BUCKETS_SECS
                .iter()
                .position(|&edge| age_s < edge)
                .unwrap_or(AGE_BUCKETS_SECS.len() - 1);
            out.entry(slot.site).or_default()[bucket] += unbiased(slot.size, period);
        }
    }
    (out, t.untracked.load(Ordering::Relaxed))
}

/// Live bytes by age over every site, for the agent's tests.
#[cfg(feature = "testing")]
pub fn live_bytes_by_age(period: u64) -> [u64; AGE_BUCKETS_SECS.len()] {
    let mut total = [0u64; AGE_BUCKETS_SECS.len()];
    for ages in by_site(period).0.values() {
        for (t, a) in total.iter_mut().zip(ages) {
            *t += a;
        }
    }
    total
}

/// What one sampled allocation of `size` bytes stands for, as jeprof
/// scales the dump: `size / (1 - exp(-size / period))`.
pub(crate) fn unbiased(size: u64, period: u64) -> u64 {
    if period <= 1 || size == 0 {
        return size;
    }
    let s = size as f64;
    (s / (1.0 - (-s / period as f64).exp())).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_hash_their_stacks_and_weights_are_unbiased() {
        assert_eq!(site_of([1, 2, 3]), site_of([1, 2, 3]));
        assert_ne!(site_of([1, 2, 3]), site_of([3, 2, 1]));
        // A 64-byte object at a 512 KiB period stands for ~512 KiB.
        let w = unbiased(64, 524288) as f64;
        assert!((w / 524288.0 - 1.0).abs() < 0.001, "{w}");
        assert_eq!(unbiased(4096, 1), 4096);
    }
}
