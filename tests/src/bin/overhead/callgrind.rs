//! Instruction counts of the allocation workload under callgrind: the
//! same number of allocations in each mode, counted by valgrind's CPU
//! simulator, so the figure is the same on a busy machine as on an idle
//! one. The agent's own periodic work is left out (its intervals are an
//! hour, its pause meter ticks once a second); the wall-clock runs
//! measure it.

use std::process::Stdio;

use heaptide_tests::analyzer;

const MODES: [(usize, &str); 4] = [
    (0, "jemalloc, profiling off"),
    (2, "profiling on, no agent (libgcc's unwinder)"),
    (3, "agent on, libgcc's unwinder"),
    (1, "agent on, frame-pointer unwinder"),
];

pub(crate) fn run(ops: u64) {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("bench.db"), "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let mut counts = Vec::new();
    for (mode, name) in MODES {
        eprintln!("callgrind: {name}");
        let mut child = super::alloc_command(mode, 0, ops, &endpoint);
        // Only what each allocation costs: the agent's periodic work (a
        // profile and its symbolization, the pause meter's ticks) grows
        // with a run's wall time, which callgrind and the machine's load
        // stretch unevenly. The wall-clock runs count it, as the agent's
        // CPU.
        child
            .env("HEAPTIDE_INTERVAL", "1h")
            .env("HEAPTIDE_PROFILE_INTERVAL", "1h")
            .env("HEAPTIDE_PAUSE_TICK", "1s");
        let out_file = dir.path().join(format!("callgrind.{mode}"));
        let mut cmd = std::process::Command::new("valgrind");
        cmd.arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(child.get_program())
            .args(child.get_args())
            .envs(child.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.output().expect("valgrind (apt-get install valgrind)");
        let text = String::from_utf8_lossy(&out.stderr);
        let ir: u64 = text
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no instruction count from callgrind:\n{text}"));
        counts.push((name, ir));
    }
    let base = counts[0].1 as f64;
    println!("{ops} allocations per run\n");
    println!("| mode | instructions | per allocation | over profiling off |");
    println!("|---|---|---|---|");
    for (name, ir) in counts {
        println!(
            "| {name} | {ir} | {:.0} | {:+.1}% |",
            ir as f64 / ops as f64,
            (ir as f64 / base - 1.0) * 100.0
        );
    }
}
