//! The age of live memory: sampled allocations are tracked from the
//! allocator's hooks, age into older buckets, and leave when freed.

heaptide_agent::global_allocator!();

use std::time::Duration;

use heaptide_agent::testing::{live_bytes_by_age, track_ages_of_every_allocation};

#[inline(never)]
fn keep(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| std::hint::black_box(vec![i as u8; size]))
        .collect()
}

#[test]
fn live_memory_ages_and_freed_memory_leaves() {
    track_ages_of_every_allocation().unwrap();
    // Runs out this thread's countdown, drawn at the old period.
    drop(std::hint::black_box(vec![0u8; 8 << 20]));
    let old = keep(100, 10_000);
    std::thread::sleep(Duration::from_millis(10_500));
    let young = keep(200, 10_000);
    let ages = live_bytes_by_age(1);
    // Every allocation is sampled at a period of one byte, so each object
    // stands for itself: 1 MB is over ten seconds old, 2 MB younger.
    let older: u64 = ages[1..].iter().sum();
    assert!(
        (1_000_000..1_100_000).contains(&older),
        "over 10 s: {older} in {ages:?}"
    );
    assert!(ages[0] >= 2_000_000, "under 10 s: {ages:?}");
    drop(old);
    let after = live_bytes_by_age(1);
    let older: u64 = after[1..].iter().sum();
    assert!(older < 100_000, "freed memory leaves the table: {after:?}");
    drop(young);
    let end = live_bytes_by_age(1);
    assert!(end[0] < ages[0] - 1_900_000, "{end:?}");
}
