//! What counting one sampled allocation for its stack's allocations adds
//! to the sample hook (`allocs::record`: the unbiasing, a shard's try-lock
//! and a few probes; the stack's hash, which the hook computes for its
//! ages anyway, is measured beside it), for one stack hit again and again
//! and for 400 stacks in turn, and what taking the counts costs a profile.
//!
//! `cargo bench -p heaptide-agent --features testing --bench allocs`

use std::time::Instant;

use heaptide_agent::testing::allocs;

const CALLS: usize = 5_000_000;

/// Nanoseconds per call of `f(i)`, the best of five rounds.
fn per_call(mut f: impl FnMut(usize)) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for i in 0..CALLS {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / CALLS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    allocs::install();
    // Stacks of 30 frames, as a service's allocation stacks are.
    let stacks: Vec<Vec<usize>> = (0..400)
        .map(|s| (0..30).map(|f| 0x5555_0000 + s * 4096 + f * 64).collect())
        .collect();
    let sites: Vec<u64> = stacks.iter().map(|s| allocs::site(s)).collect();
    let hash = per_call(|i| {
        std::hint::black_box(allocs::site(&stacks[i % stacks.len()]));
    });
    let one = per_call(|_| allocs::record(sites[0], &stacks[0], 64));
    let _ = allocs::take();
    let many = per_call(|i| {
        let k = i % stacks.len();
        allocs::record(sites[k], &stacks[k], 64)
    });
    let start = Instant::now();
    let taken = allocs::take();
    let take_us = start.elapsed().as_secs_f64() * 1e6;
    // At the default period of 512 KiB, one allocation in period / size is
    // sampled: for 136-byte objects (the storm's mean), one in 3,855.
    let share = |ns: f64| ns / (512.0 * 1024.0 / 136.0);
    println!("the stack's hash (already in the hook): {hash:.1} ns");
    println!("one stack: {one:.1} ns per sampled allocation ({:.4} ns per allocation at 512 KiB and 136 B)", share(one));
    println!(
        "400 stacks in turn: {many:.1} ns per sampled allocation ({:.4} ns per allocation)",
        share(many)
    );
    println!("take: {take_us:.0} µs for {taken} stacks");
}
