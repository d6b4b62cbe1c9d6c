//! The allocation modes on an allocation storm: one thread allocating and
//! freeing 16 to 256 byte objects it never touches, with 10,000 live,
//! tens of millions a second, so that what each allocation costs is most
//! of what the program does. Each mode runs in every round, in
//! alternating order; the medians are compared with jemalloc alone and
//! with jemalloc's own profiling.

use heaptide_tests::analyzer;

const MODES: [(usize, &str); 4] = [
    (0, "jemalloc, profiling off"),
    (2, "profiling on, no agent (libgcc's unwinder)"),
    (3, "agent on, libgcc's unwinder"),
    (1, "agent on, frame-pointer unwinder"),
];

pub(crate) fn run(seconds: u64, rounds: u64) {
    // Every child this run starts inherits it, and allocates as a storm.
    std::env::set_var("OVERHEAD_STORM", "1");
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("bench.db"), "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..MODES.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            eprintln!("round {round}: {}", MODES[i].1);
            rates[i].push(super::run_alloc(MODES[i].0, seconds, &endpoint).ops_per_sec);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let plain = median(&rates[0]);
    let profiling = median(&rates[1]);
    println!("{rounds} rounds of {seconds} s\n");
    println!("| mode | allocations/s, median | min | max | slowdown against jemalloc | points over profiling alone |");
    println!("|---|---|---|---|---|---|");
    for (i, (_, name)) in MODES.iter().enumerate() {
        let m = median(&rates[i]);
        let lo = rates[i].iter().copied().fold(f64::MAX, f64::min);
        let hi = rates[i].iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {m:.0} | {lo:.0} | {hi:.0} | {:.3}× | {:+.1} |",
            plain / m,
            (plain / m - plain / profiling) * 100.0
        );
    }
}
