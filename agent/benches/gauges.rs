//! What one update of a pool's gauge costs: `Gauge::acquire` and
//! `release`, beside a bare relaxed `fetch_add` on an atomic of the
//! program's own, in the same run, on one thread and on two threads that
//! share the gauge.
//!
//! `cargo bench -p heaptide-agent --bench gauges`

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

const UPDATES: u64 = 50_000_000;

/// Nanoseconds per update on each thread, the best of five rounds: each
/// thread runs `f` (two updates) `UPDATES / 2` times.
fn per_update(threads: usize, f: impl Fn() + Sync) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..UPDATES / 2 {
                            f();
                        }
                    });
                }
            });
            start.elapsed().as_nanos() as f64 / UPDATES as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let pool = heaptide_agent::pool("bench", 64);
    static BARE: AtomicI64 = AtomicI64::new(0);
    for threads in [1, 2] {
        let bare = per_update(threads, || {
            BARE.fetch_add(1, Ordering::Relaxed);
            BARE.fetch_sub(1, Ordering::Relaxed);
        });
        let gauge = per_update(threads, || {
            black_box(pool).acquire();
            black_box(pool).release();
        });
        println!(
            "{threads} thread(s): bare atomic {bare:.2} ns/update, gauge {gauge:.2} ns/update (x{:.2})",
            gauge / bare
        );
    }
}
