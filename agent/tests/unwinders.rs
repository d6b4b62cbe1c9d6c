//! The frame-pointer unwinder records the same stacks as libgcc's on the
//! same allocations: each sampled allocation is unwound by both.

heaptide_agent::global_allocator!();

#[inline(never)]
fn allocate_deep(depth: usize, out: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        for i in 0..200 {
            out.push(std::hint::black_box(vec![i as u8; 64 + i]));
        }
    } else {
        allocate_deep(depth - 1, out);
        std::hint::black_box(&out);
    }
}

#[test]
fn frame_pointer_stacks_match_libgcc_on_the_same_allocations() {
    let mut kept = Vec::new();
    let mut on_threads = Vec::new();
    // Through jemalloc, the allocation path and eight levels of this test.
    let (compared, agreed) = heaptide_agent::testing::compare_unwinders(12, || {
        allocate_deep(8, &mut kept);
        // Other threads have stacks of their own, found separately.
        for _ in 0..2 {
            on_threads.push(std::thread::spawn(|| {
                let mut v = Vec::new();
                allocate_deep(4, &mut v);
                v.len()
            }));
        }
        for t in on_threads.drain(..) {
            assert_eq!(t.join().unwrap(), 200);
        }
    })
    .unwrap();
    assert!(compared >= 600, "every allocation is sampled: {compared}");
    assert_eq!(
        agreed,
        compared,
        "stacks that differ: {}",
        compared - agreed
    );
}
