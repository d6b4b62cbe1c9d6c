//! RSS split into its parts on this very process: memory mapped outside
//! the allocator, thread stacks and fragmentation each land in their own
//! part, and the parts add up to RSS within 5%.

heaptide_agent::global_allocator!();

use heaptide_wire::metric;

const MIB: f64 = 1024.0 * 1024.0;

fn parts_sum(m: &std::collections::BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(metric::RSS_PART_PREFIX))
        .map(|(_, v)| v)
        .sum()
}

#[inline(never)]
fn touch_stack(kb: usize) -> u8 {
    let page = std::hint::black_box([kb as u8; 4096]);
    if kb <= 4 {
        page[0]
    } else {
        touch_stack(kb - 4).wrapping_add(page[4095])
    }
}

#[test]
fn each_kind_of_memory_lands_in_its_part_and_the_parts_add_up() {
    let before = heaptide_agent::testing::sample_now();
    let get =
        |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);

    // 64 MiB mapped outside the allocator, touched.
    let mut mapped = memmap2::MmapMut::map_anon(64 << 20).unwrap();
    mapped.fill(1);
    // 8 threads that used 512 KiB of their stacks each.
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                std::hint::black_box(touch_stack(512));
                tx.send(()).unwrap();
                std::thread::park();
            })
        })
        .collect();
    for _ in 0..8 {
        rx.recv().unwrap();
    }
    // 16 MiB of 64-byte objects, one in eight kept: fragmentation.
    let all: Vec<Box<[u8; 64]>> = (0..(16 << 20) / 64).map(|_| Box::new([7u8; 64])).collect();
    let kept: Vec<Box<[u8; 64]>> = all.into_iter().step_by(8).collect();

    let after = heaptide_agent::testing::sample_now();
    let grew = |k: &str| (get(&after, k) - get(&before, k)) / MIB;
    // jemalloc's `resident` may count pages that are not resident (its
    // manual says so), which the part outside the allocator then lacks.
    assert!(
        (54.0..80.0).contains(&grew(metric::RSS_PART_OUTSIDE)),
        "outside the allocator grew {:.1} MiB: {after:?}",
        grew(metric::RSS_PART_OUTSIDE)
    );
    // At least the 4 MiB asked for; a debug build's frames are larger.
    assert!(
        (3.5..16.0).contains(&grew(metric::RSS_PART_STACKS)),
        "stacks grew {:.1} MiB: {after:?}",
        grew(metric::RSS_PART_STACKS)
    );
    assert!(
        grew(metric::RSS_PART_FRAGMENTATION) > 10.0,
        "fragmentation grew {:.1} MiB: {after:?}",
        grew(metric::RSS_PART_FRAGMENTATION)
    );
    for m in [&before, &after] {
        let rss = get(m, metric::RSS);
        let off = (parts_sum(m) - rss).abs() / rss;
        assert!(
            off < 0.05,
            "the parts are {:.1}% off RSS: {m:?}",
            off * 100.0
        );
    }
    drop((mapped, kept));
    for t in &threads {
        t.thread().unpark();
    }
}
