//! A frame-pointer unwinder for jemalloc's sampled allocations.
//!
//! jemalloc records the stack of every sampled allocation with libgcc's
//! unwinder, which interprets DWARF call-frame information for each frame.
//! On an allocation storm at the default period that adds a quarter to
//! the instructions the program runs; following the chain of saved frame
//! pointers instead costs a few loads per frame (`docs/benchmarks.md`).
//! The chain exists only when the program keeps frame pointers
//! (`-C force-frame-pointers=yes`, or a debug build), so [`install`]
//! probes for it: it walks the chain beside libgcc's unwinder from a known
//! point and installs the walk through `experimental.hooks.prof_backtrace`
//! only when the two agree. Otherwise libgcc stays.
//!
//! The walk never reads outside the calling thread's stack: each frame
//! pointer must lie above the walk's own frame and below the top of the
//! stack (from `pthread_getattr_np`, cached per thread), be aligned, and
//! grow towards the top; the walk stops at the first that is not, at a
//! null return address, or at the frame limit jemalloc passes.

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use tikv_jemalloc_ctl::raw;

use crate::error::{Error, Result};

/// Which unwinder records the stacks of sampled allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unwinder {
    /// Frame pointers when the probe finds them intact, else libgcc.
    #[default]
    Auto,
    /// Follow frame pointers without probing (for binaries known to keep
    /// them); the walk stays bounded either way.
    FramePointers,
    /// jemalloc's own libgcc unwinder.
    Libgcc,
}

impl Unwinder {
    /// The name used in `HEAPTIDE_UNWINDER` and in the agent's status.
    pub fn as_str(self) -> &'static str {
        match self {
            Unwinder::Auto => "auto",
            Unwinder::FramePointers => "frame-pointers",
            Unwinder::Libgcc => "libgcc",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Unwinder> {
        [Unwinder::Auto, Unwinder::FramePointers, Unwinder::Libgcc]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// The prof_backtrace hook: `(vec, *len, max_len)`.
type Hook = unsafe extern "C" fn(*mut *mut c_void, *mut c_uint, c_uint);

/// The hook that was installed before ours (jemalloc's libgcc walk), used
/// when this thread's stack bounds cannot be found, and restored by
/// [`uninstall`]. Zero while ours is not installed.
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The bounds (lowest, highest address) of this thread's stack;
    /// `(0, 0)` until asked, `(0, 1)` when they cannot be found.
    /// Const-initialized and without a destructor, so reading it never
    /// allocates or registers anything, which matters inside the allocator.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Installs the unwinder `choice` resolves to and says which one runs.
pub(crate) fn install(choice: Unwinder) -> Result<Unwinder> {
    let chosen = match choice {
        Unwinder::Auto if frame_pointers_intact() => Unwinder::FramePointers,
        Unwinder::Auto => Unwinder::Libgcc,
        other => other,
    };
    if chosen == Unwinder::FramePointers {
        set_hook(frame_pointer_hook)?;
    }
    Ok(chosen)
}

/// Puts back the hook that ran before [`install`].
pub(crate) fn uninstall() {
    let previous = PREVIOUS.swap(0, Ordering::SeqCst);
    if previous != 0 {
        // SAFETY: `previous` was read from `experimental.hooks.prof_backtrace`
        // by `set_hook`, so it is a function of the hook's type.
        let hook: Hook = unsafe { std::mem::transmute::<usize, Hook>(previous) };
        if let Err(e) = write_hook(hook) {
            tracing::warn!("heaptide: restoring jemalloc's unwinder failed: {e}");
        }
    }
}

fn set_hook(hook: Hook) -> Result<()> {
    let old = write_hook(hook)?;
    // Keep the first previous hook: installing twice must not make ours
    // its own fallback.
    let _ = PREVIOUS.compare_exchange(0, old as usize, Ordering::SeqCst, Ordering::SeqCst);
    Ok(())
}

/// Writes `hook` into `experimental.hooks.prof_backtrace` and returns the
/// one it replaces.
fn write_hook(hook: Hook) -> Result<Hook> {
    // SAFETY: the mallctl reads and writes a `prof_backtrace_hook_t`, a
    // C function pointer of exactly `Hook`'s signature; jemalloc swaps it
    // atomically, so threads allocating meanwhile see one or the other.
    unsafe { raw::update(b"experimental.hooks.prof_backtrace\0", hook) }.map_err(|e| {
        Error::Jemalloc {
            name: "experimental.hooks.prof_backtrace",
            message: e.to_string(),
        }
    })
}

/// jemalloc calls this for each sampled allocation, inside the allocator
/// and with its reentrancy guard up. Where the frame-pointer walk cannot
/// go (no stack bounds, or no frame in them) jemalloc's own libgcc walk
/// runs, so that such a stack is unwound rather than left empty.
unsafe extern "C" fn frame_pointer_hook(vec: *mut *mut c_void, len: *mut c_uint, max: c_uint) {
    if stack_bounds().is_some() {
        // SAFETY: jemalloc passes a buffer of `max` pointers and a valid
        // `len`, both alive for the duration of the call.
        let out = unsafe { std::slice::from_raw_parts_mut(vec as *mut usize, max as usize) };
        // Skip the return into this hook: the stack starts in jemalloc,
        // whose frames the symbolizer drops as it does libgcc's.
        let n = walk(out, 1);
        if n > 0 {
            // SAFETY: see above; `n <= max`.
            unsafe { *len = n as c_uint };
            return;
        }
    }
    let previous = PREVIOUS.load(Ordering::Relaxed);
    if previous != 0 {
        // SAFETY: `previous` came from the same mallctl as a `Hook`; the
        // arguments are jemalloc's own, passed on unchanged.
        unsafe { std::mem::transmute::<usize, Hook>(previous)(vec, len, max) };
    }
}

/// The bounds of this thread's stack, cached.
fn stack_bounds() -> Option<(usize, usize)> {
    const UNKNOWN: (usize, usize) = (0, 1);
    let cached = STACK.try_with(Cell::get).unwrap_or(UNKNOWN);
    let bounds = if cached == (0, 0) {
        let bounds = query_stack_bounds().unwrap_or(UNKNOWN);
        let _ = STACK.try_with(|t| t.set(bounds));
        bounds
    } else {
        cached
    };
    (bounds != UNKNOWN).then_some(bounds)
}

fn query_stack_bounds() -> Option<(usize, usize)> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np initializes `attr` for the calling thread
    // when it returns 0; only then is it read and destroyed.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (rc == 0 && !addr.is_null()).then(|| (addr as usize, addr as usize + size))
    }
}

/// Follows the frame-pointer chain from the caller's frame, writing return
/// addresses (innermost first) into `out` after skipping `skip`, and
/// returns how many it wrote. Reads only within this thread's stack, and
/// nothing on an alternate signal stack.
#[inline(never)]
pub(crate) fn walk(out: &mut [usize], skip: usize) -> usize {
    let Some((low, top)) = stack_bounds() else {
        return 0;
    };
    // Everything the walk reads lies between its own frame and the top.
    let floor = &top as *const usize as usize;
    if !(low..top).contains(&floor) {
        return 0;
    }
    let mut fp = frame_pointer();
    let (mut n, mut seen) = (0, 0);
    while n < out.len() {
        let word = std::mem::size_of::<usize>();
        if fp < floor || !fp.is_multiple_of(word) || fp.saturating_add(2 * word) > top {
            break;
        }
        // SAFETY: `fp` and `fp + word` are aligned and lie between this
        // frame and the top of this thread's stack, memory the thread owns
        // and that stays mapped while it runs.
        let (next, ret) = unsafe { (*(fp as *const usize), *((fp + word) as *const usize)) };
        if ret == 0 {
            break;
        }
        if seen >= skip {
            out[n] = ret;
            n += 1;
        }
        seen += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

#[inline(always)]
fn frame_pointer() -> usize {
    let fp: usize;
    // SAFETY: copies the frame-pointer register; touches no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: as above, for AArch64's frame register.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        fp = 0;
    }
    fp
}

/// Whether the frame-pointer chain through this crate's code gives the
/// same return addresses as libgcc's unwinder.
fn frame_pointers_intact() -> bool {
    std::hint::black_box(probe_outer())
}

#[inline(never)]
fn probe_outer() -> bool {
    std::hint::black_box(probe_middle())
}

#[inline(never)]
fn probe_middle() -> bool {
    std::hint::black_box(probe_inner())
}

#[inline(never)]
fn probe_inner() -> bool {
    // The probe's own frames: beyond them lie the caller's, which may be
    // code built without frame pointers.
    let mut fp = [0usize; 4];
    let n = walk(&mut fp, 0);
    let mut gcc = [0usize; 32];
    let m = libgcc_backtrace(&mut gcc);
    // The first return addresses are two different call sites in this
    // function; from its caller on, the two must agree.
    n == fp.len() && agree(&fp[1..], &gcc[..m], 3)
}

/// Whether `fp`'s walk lines up with libgcc's `gcc` for at least `min`
/// frames: from where `fp`'s first address appears in `gcc`, every address
/// `fp` has must follow in the same order.
pub(crate) fn agree(fp: &[usize], gcc: &[usize], min: usize) -> bool {
    let Some(&first) = fp.first() else {
        return false;
    };
    let Some(at) = gcc.iter().position(|&a| a == first) else {
        return false;
    };
    let run = fp
        .iter()
        .zip(&gcc[at..])
        .take_while(|(a, b)| a == b)
        .count();
    run >= min.min(gcc.len() - at) && run == fp.len().min(gcc.len() - at)
}

/// Return addresses from libgcc's unwinder, innermost first.
pub(crate) fn libgcc_backtrace(out: &mut [usize]) -> usize {
    struct State<'a> {
        out: &'a mut [usize],
        n: usize,
    }
    extern "C" fn each(ctx: *mut c_void, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `State` passed to `_Unwind_Backtrace` below,
        // alive and unaliased for the whole walk.
        let state = unsafe { &mut *(arg as *mut State) };
        // SAFETY: `ctx` is the context libgcc passes to this callback.
        let ip = unsafe { _Unwind_GetIP(ctx) };
        if ip == 0 || state.n >= state.out.len() {
            return 5; // _URC_END_OF_STACK
        }
        state.out[state.n] = ip;
        state.n += 1;
        0 // _URC_NO_REASON
    }
    let mut state = State { out, n: 0 };
    // SAFETY: `each` matches libgcc's trace callback and only touches
    // `state`, which outlives the call.
    unsafe { _Unwind_Backtrace(each, &mut state as *mut State as *mut c_void) };
    state.n
}

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

/// Runs `f` with every allocation sampled and each stack recorded by
/// both unwinders; returns how many stacks were compared and how many
/// agreed for at least `min` frames. For the agent's tests.
///
/// # Errors
///
/// When heap profiling is off, so nothing can be sampled.
#[cfg(feature = "testing")]
pub fn compare_unwinders(min: usize, f: impl FnOnce()) -> Result<(u64, u64)> {
    use std::sync::atomic::AtomicU64;
    static COMPARED: AtomicU64 = AtomicU64::new(0);
    static AGREED: AtomicU64 = AtomicU64::new(0);
    static MIN: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn compare(vec: *mut *mut c_void, len: *mut c_uint, max: c_uint) {
        let previous = PREVIOUS.load(Ordering::Relaxed);
        if previous == 0 {
            return;
        }
        // SAFETY: `previous` came from the mallctl as a `Hook`; jemalloc's
        // arguments are passed on unchanged, and libgcc's stack is what
        // jemalloc records.
        unsafe { std::mem::transmute::<usize, Hook>(previous)(vec, len, max) };
        let mut fp = [0usize; 128];
        let n = walk(&mut fp, 1);
        // SAFETY: libgcc's hook filled `*len <= max` entries of `vec`.
        let gcc = unsafe { std::slice::from_raw_parts(vec as *const usize, *len as usize) };
        COMPARED.fetch_add(1, Ordering::Relaxed);
        if agree(&fp[..n], gcc, MIN.load(Ordering::Relaxed)) {
            AGREED.fetch_add(1, Ordering::Relaxed);
        }
    }
    MIN.store(min, Ordering::Relaxed);
    let (c0, a0) = (
        COMPARED.load(Ordering::SeqCst),
        AGREED.load(Ordering::SeqCst),
    );
    let period = crate::jemalloc::sample_period()?;
    crate::jemalloc::set_sample_period(1)?;
    // This thread's countdown to its next sample was drawn at the old
    // period, from an exponential distribution of that mean: 64 periods
    // run it out but for a chance of e^-64 (4 periods left 1 run in 55
    // with no sample on this thread).
    drop(std::hint::black_box(vec![0u8; 64 * period as usize]));
    set_hook(compare)?;
    f();
    uninstall();
    crate::jemalloc::set_sample_period(period)?;
    Ok((
        COMPARED.load(Ordering::SeqCst) - c0,
        AGREED.load(Ordering::SeqCst) - a0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(depth: usize, out: &mut [usize]) -> usize {
        if depth == 0 {
            let n = walk(out, 0);
            std::hint::black_box(n)
        } else {
            std::hint::black_box(nested(depth - 1, out))
        }
    }

    /// The tests build with frame pointers (debug), so the walk sees every
    /// level of a recursion, each return address into the same function.
    #[test]
    fn the_walk_follows_a_recursion_and_stays_bounded() {
        let mut out = [0usize; 64];
        let n = nested(10, &mut out);
        assert!(n >= 11, "{n} frames: {:x?}", &out[..n]);
        let mut small = [0usize; 3];
        assert_eq!(nested(10, &mut small), 3);
        assert!(frame_pointers_intact());
    }

    #[test]
    fn agreement_is_an_aligned_run() {
        assert!(agree(&[3, 4, 5], &[1, 2, 3, 4, 5, 6], 3));
        assert!(agree(&[3, 4], &[1, 2, 3, 4], 3), "libgcc ran out first");
        assert!(!agree(&[3, 9, 5], &[1, 2, 3, 4, 5, 6], 2));
        assert!(!agree(&[7], &[1, 2, 3], 1));
        assert!(!agree(&[], &[1], 1));
        assert!(!agree(&[3], &[1, 2, 3, 4, 5], 2), "too short");
    }
}
