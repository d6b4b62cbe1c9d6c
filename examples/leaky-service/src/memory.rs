//! Routes whose RSS grows outside the heap, or by its overhead:
//!
//! - `GET /leak-mmap?kb=N`: maps N KiB (default 1024) of anonymous memory
//!   outside the allocator, touches it and never unmaps it, as a C
//!   library's arena would.
//! - `GET /fragment?kb=N`: allocates N KiB (default 1024) of small objects
//!   of the next size class, and keeps one in 8: every slab of those
//!   objects keeps one, so the allocator's pages stay active for the few
//!   kept, and fragmentation grows seven times faster than the heap, over
//!   the first 20 calls (one per size class).
//! - `GET /spawn-stack-thread?kb=N`: starts a parked thread that has used
//!   N KiB (default 256) of its stack: thread stacks grow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;

static MAPPED: Mutex<Vec<memmap2::MmapMut>> = Mutex::new(Vec::new());
static STRAGGLERS: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static SCRATCH: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static NEXT_CLASS: AtomicUsize = AtomicUsize::new(0);
static STACK_THREADS: AtomicUsize = AtomicUsize::new(0);

/// jemalloc's small size classes up to 1 KiB with 4 KiB pages: each of
/// their slabs holds at least 8 objects.
const SMALL_CLASSES: [usize; 20] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
];

#[derive(serde::Deserialize)]
struct Params {
    kb: Option<usize>,
}

fn kb(p: &Params, default: usize) -> usize {
    p.kb.unwrap_or(default).clamp(1, 64 * 1024)
}

fn leak_mmap(kb: usize) -> String {
    match memmap2::MmapMut::map_anon(kb * 1024) {
        Ok(mut m) => {
            m.fill(0x5A);
            let mut all = MAPPED.lock().unwrap_or_else(|p| p.into_inner());
            all.push(m);
            format!("{}\n", all.len())
        }
        Err(e) => format!("error: {e}\n"),
    }
}

#[inline(never)]
fn fragment(kb: usize) -> String {
    let class = SMALL_CLASSES[NEXT_CLASS.fetch_add(1, Ordering::Relaxed) % SMALL_CLASSES.len()];
    let n = (kb * 1024 / class).max(8);
    // Every object is alive at once, so that they fill whole slabs. The
    // list of them is kept from call to call: a new one each call would
    // be a large allocation freed at once (4 MiB of pointers for 16-byte
    // objects), pages the allocator keeps, growing beside the
    // fragmentation this route is about.
    let mut all = SCRATCH.lock().unwrap_or_else(|p| p.into_inner());
    all.extend((0..n).map(|i| std::hint::black_box(vec![i as u8; class].into_boxed_slice())));
    let mut kept = STRAGGLERS.lock().unwrap_or_else(|p| p.into_inner());
    kept.extend(all.drain(..).step_by(8));
    format!("{}\n", kept.len())
}

/// Uses `kb` KiB of this thread's stack, so its pages are resident.
#[inline(never)]
fn touch_stack(kb: usize) -> u8 {
    let mut page = [0u8; 4096];
    page[0] = kb as u8;
    let page = std::hint::black_box(page);
    if kb <= 4 {
        page[0]
    } else {
        touch_stack(kb - 4).wrapping_add(page[4095])
    }
}

fn spawn_stack_thread(kb: usize) -> String {
    let n = STACK_THREADS.fetch_add(1, Ordering::Relaxed);
    let kb = kb.min(1024);
    let spawned = std::thread::Builder::new()
        .name(format!("leaky-stack-{n}"))
        // Room for the recursion that touches `kb`: a debug build's frames
        // are a few times the 4 KiB page each one holds.
        .stack_size((kb * 4 + 512) * 1024)
        .spawn(move || {
            std::hint::black_box(touch_stack(kb));
            loop {
                std::thread::park();
            }
        });
    match spawned {
        Ok(_) => format!("{}\n", n + 1),
        Err(e) => format!("error: {e}\n"),
    }
}

pub fn routes() -> Router {
    Router::new()
        .route(
            "/leak-mmap",
            get(|Query(p): Query<Params>| async move { leak_mmap(kb(&p, 1024)) }),
        )
        .route(
            "/fragment",
            get(|Query(p): Query<Params>| async move { fragment(kb(&p, 1024)) }),
        )
        .route(
            "/spawn-stack-thread",
            get(|Query(p): Query<Params>| async move { spawn_stack_thread(kb(&p, 256)) }),
        )
}
