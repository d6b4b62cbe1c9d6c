//! The lock of the age table's shards: one that the allocation hooks only
//! ever try, and that `fork` never copies held.
//!
//! A hook runs inside the allocator, on whatever thread allocates. With a
//! blocking lock, a child forked while another thread held a shard would
//! inherit it held, and hang on its first sampled allocation (a prefork
//! server or a daemonizing helper does exactly this). So:
//! - a hook tries a shard for a bounded spin, and skips the allocation,
//!   counted, when it stays busy;
//! - `pthread_atfork` handlers take every shard before the fork and
//!   release them after it, in the parent and in the child, so the child's
//!   table is consistent and unlocked.
//!
//! std's `Mutex` has no bounded wait, and its guard cannot be held from a
//! `prepare` handler until the `parent` or `child` one; hence this small
//! lock of one atomic flag.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spins a hook gives a busy shard: a hook holds one for a few probes,
/// and the reader for one copy of a shard (microseconds), so a shard
/// still busy after this is held by a thread that is not running.
const HOOK_SPINS: u32 = 1 << 14;

pub(crate) struct HookLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, which exists only
// while `held` was set by this guard's owner (acquire/release ordering),
// so at most one thread reaches it at a time; `T: Send` lets it move.
unsafe impl<T: Send> Sync for HookLock<T> {}

pub(crate) struct Guard<'a, T>(&'a HookLock<T>);

impl<T> HookLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        HookLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn try_once(&self) -> bool {
        self.held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// For a hook: the lock within a bounded spin, or `None`.
    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        for _ in 0..HOOK_SPINS {
            if self.try_once() {
                return Some(Guard(self));
            }
            std::hint::spin_loop();
        }
        None
    }

    /// For the agent's own threads, which may wait: spins, yielding.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            std::thread::yield_now();
        }
    }

    /// Takes the lock with no guard, for the fork handlers; [`Self::release`]
    /// gives it back.
    pub(crate) fn hold(&self) {
        std::mem::forget(self.lock());
    }

    pub(crate) fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock (see `Sync` above).
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Registers `prepare`, `parent` and `child` with `pthread_atfork`, once
/// per process.
pub(crate) fn on_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are `extern "C" fn()` that live for the
        // whole process (they are plain functions); registering them has
        // no other effect. jemalloc registered its own at start-up, so
        // ours prepare first and release last: the table is taken before
        // the allocator's locks, and given back after them.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if rc != 0 {
            tracing::warn!(
                "heaptide: pthread_atfork failed ({rc}); forked children skip busy shards"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_skipped_by_hooks_and_released_by_hand() {
        let l = HookLock::new(5);
        l.hold();
        assert!(l.try_lock().is_none());
        l.release();
        let mut g = l.try_lock().unwrap();
        *g += 1;
        drop(g);
        assert_eq!(*l.lock(), 6);
    }
}
