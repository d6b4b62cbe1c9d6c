//! What `libheaptide_preload.so` costs programs that know nothing of
//! heaptide, measured side by side in one run.
//!
//! `cargo run --release -p heaptide-tests --bin preload_overhead [-- --rounds 7]`
//!
//! Two workloads, built or run here: a C allocation storm
//! (`tests/preload/storm.c`, 16 B to 4 KiB objects with 10,000 live) and
//! a Python workload of JSON documents and strings
//! (`tests/preload/workload.py`), each in three modes, in alternating
//! order round after round so that drift in the machine's speed hits all
//! alike:
//! - `plain`: the program as it is, on glibc's malloc;
//! - `jemalloc`: under the preload with jemalloc's profiling off
//!   (`_RJEM_MALLOC_CONF=prof:false`): what the allocator swap alone costs;
//! - `preload`: under the preload at its defaults, streaming to a real
//!   analyzer: what a user gets.
//!
//! It prints a Markdown table of each mode's median rate, its spread, and
//! its ratio to `plain`.

use std::path::{Path, PathBuf};
use std::process::Command;

use heaptide_tests::analyzer;

const MODES: [&str; 3] = ["plain", "jemalloc", "preload"];

fn main() {
    let rounds: usize = heaptide_tests::flag_value("--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    heaptide_tests::build_release(&["heaptide-analyzer", "heaptide-preload"]);
    let exe = std::env::current_exe().unwrap();
    let lib = exe.with_file_name("libheaptide_preload.so");
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("bench.db"), "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload");
    let storm = dir.path().join("storm");
    let cc = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&storm)
        .arg(sources.join("storm.c"))
        .status()
        .expect("cc");
    assert!(cc.success());
    let workloads: [(&str, Vec<PathBuf>); 2] = [
        (
            "C allocation storm, allocations/s",
            vec![storm, "30000000".into()],
        ),
        (
            "Python JSON and strings, rounds/s",
            vec![
                "python3".into(),
                sources.join("workload.py"),
                "60000".into(),
            ],
        ),
    ];
    println!("| workload | mode | median | min | max | ratio to plain |");
    println!("|---|---|---|---|---|---|");
    for (name, argv) in &workloads {
        let mut rates: [Vec<f64>; 3] = Default::default();
        for round in 0..rounds {
            let mut order = [0, 1, 2];
            if round % 2 == 1 {
                order.reverse();
            }
            for mode in order {
                rates[mode].push(run(argv, mode, &lib, &endpoint));
            }
        }
        let plain = median(&rates[0]);
        for (mode, r) in rates.iter().enumerate() {
            let m = median(r);
            let (lo, hi) = r
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            println!(
                "| {name} | {} | {m:.0} | {lo:.0} | {hi:.0} | {:.3} |",
                MODES[mode],
                m / plain
            );
        }
    }
}

/// One run of `argv` in `mode`; its rate, the first number it prints.
fn run(argv: &[PathBuf], mode: usize, lib: &Path, endpoint: &str) -> f64 {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if mode > 0 {
        cmd.env("LD_PRELOAD", lib)
            .env("HEAPTIDE_ENDPOINT", endpoint)
            .env("HEAPTIDE_SERVICE", "preload-bench");
    }
    if mode == 1 {
        cmd.env("_RJEM_MALLOC_CONF", "prof:false");
    }
    let out = cmd.output().expect("workload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text:?}"))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
