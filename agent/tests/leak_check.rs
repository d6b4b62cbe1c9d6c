//! `heaptide_agent::testing` in a real test binary, with jemalloc as the
//! global allocator, checks running in parallel as `cargo test` runs them.

heaptide_agent::global_allocator!();

use std::sync::Mutex;

use heaptide_agent::testing::{LeakCheck, LeakCheckError};

static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());
static FILES: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());

#[inline(never)]
fn keep_one_kib_forever() {
    let buf = vec![7u8; 1024].into_boxed_slice();
    KEPT.lock().unwrap().push(std::hint::black_box(buf));
}

#[inline(never)]
fn parse_and_drop(i: usize) -> usize {
    let s = format!("{i},{},{}", i * 2, i * 3);
    s.split(',').map(|p| p.parse::<usize>().unwrap_or(0)).sum()
}

#[test]
fn a_leaking_closure_fails_and_is_named() {
    let err = LeakCheck::new("keeps a KiB")
        .run(keep_one_kib_forever)
        .unwrap_err();
    let LeakCheckError::Leak { report, .. } = &err else {
        panic!("{err}")
    };
    let per_iter = report.bytes_per_iter.slope;
    assert!(
        (900.0..1300.0).contains(&per_iter),
        "measured {per_iter} bytes per iteration"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("keep_one_kib_forever"),
        "the message names the leaking function: {msg}"
    );
    assert!(msg.contains("over budget"), "{msg}");
}

#[test]
fn a_clean_closure_passes() {
    let r = LeakCheck::new("parse").assert(|| {
        std::hint::black_box(parse_and_drop(7));
    });
    assert!(
        r.bytes_per_iter.hi >= 0.0 && r.bytes_per_iter.lo <= 0.0,
        "{r:?}"
    );
}

/// Clean but noisy: it keeps the last few results, replacing older ones,
/// so the bytes held wander from iteration to iteration without growing.
#[test]
fn a_noisy_but_clean_closure_passes_100_times_in_100() {
    let mut failures = Vec::new();
    for run in 0..100u64 {
        let mut ring: Vec<Vec<u8>> = Vec::new();
        let mut seed = run.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let r = LeakCheck::new("ring").warmup(40).run(|| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let size = 64 + (seed % 4096) as usize;
            if ring.len() == 16 {
                ring.remove((seed % 16) as usize);
            }
            ring.push(vec![1u8; size]);
            std::hint::black_box(parse_and_drop(size));
        });
        if let Err(e) = r {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 100 runs failed; first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn fd_and_thread_budgets() {
    let err = LeakCheck::new("keeps files")
        .max_fds_per_iter(0.0)
        .iterations(40)
        .run(|| {
            FILES
                .lock()
                .unwrap()
                .push(std::fs::File::open("/dev/null").unwrap())
        })
        .unwrap_err();
    assert!(err.to_string().contains("fds"), "{err}");
    LeakCheck::new("closes files")
        .max_fds_per_iter(0.0)
        .iterations(40)
        .assert(|| {
            drop(std::fs::File::open("/dev/null").unwrap());
        });
    let err = LeakCheck::new("parks threads")
        .max_threads_per_iter(0.0)
        .iterations(30)
        .warmup(0)
        .run(|| {
            std::thread::spawn(|| loop {
                std::thread::park();
            });
        })
        .unwrap_err();
    assert!(err.to_string().contains("threads"), "{err}");
}

#[test]
fn a_leaking_neighbour_does_not_fail_a_clean_check() {
    for _ in 0..5 {
        let leaky = std::thread::spawn(|| {
            LeakCheck::new("neighbour")
                .iterations(300)
                .run(keep_one_kib_forever)
                .is_err()
        });
        let clean = std::thread::spawn(|| {
            LeakCheck::new("bystander").iterations(300).run(|| {
                std::hint::black_box(parse_and_drop(3));
            })
        });
        assert!(leaky.join().unwrap(), "the leaking neighbour must fail");
        let clean = clean.join().unwrap();
        assert!(
            clean.is_ok(),
            "the clean check failed beside a leaking one: {}",
            clean.unwrap_err()
        );
    }
}

/// A closure that frees everything it allocates leaks nothing, but its
/// allocations count against an allocation budget: 64 KiB a call fails
/// a budget of 16 KiB, passes one of 1 MiB, and is measured.
#[test]
fn allocation_budgets_count_what_is_freed_too() {
    let churn = || {
        std::hint::black_box(vec![1u8; 64 << 10]);
    };
    let err = LeakCheck::new("churns")
        .max_alloc_bytes_per_iter(16.0 * 1024.0)
        .iterations(40)
        .run(churn)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("allocated: ") && text.contains("budget 16.0 KiB: over budget"),
        "{text}"
    );
    let report = LeakCheck::new("churns within budget")
        .max_alloc_bytes_per_iter(1024.0 * 1024.0)
        .iterations(40)
        .assert(churn);
    let g = report.alloc_per_iter.unwrap();
    // At least what the closure asks for: jemalloc's count of this thread
    // read 65.6 KiB an iteration here, a little more.
    assert!((65536.0..70_000.0).contains(&g.slope), "{g:?}");
    assert!(
        report.bytes_per_iter.slope.abs() < 64.0,
        "nothing leaks: {report:?}"
    );
}
