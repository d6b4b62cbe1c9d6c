//! The agent's overhead, measured side by side in one run.
//!
//! `cargo run --release -p heaptide-tests --bin overhead [-- --seconds 65 --rounds 2]`
//!
//! Two workloads, each run with the agent on (heap profiling on, default
//! intervals, streaming to a real analyzer) and off (plain jemalloc,
//! profiling off), in alternating rounds so that drift in the machine's
//! speed hits both alike:
//! 1. allocation-heavy: one thread allocating and freeing 16 B to 4 KiB
//!    objects with 10,000 live, also with the agent on but jemalloc's
//!    libgcc unwinder, and with profiling on and no agent;
//! 2. the leaky-service example under HTTP load from this process.
//!
//! It prints a Markdown table of throughput, p99 latency, the agent's CPU
//! and its memory.
//!
//! `-- --callgrind 2000000` instead counts the instructions of a fixed
//! number of allocations under `valgrind --tool=callgrind` in each
//! allocation mode: a figure the machine's noise does not move;
//! `-- --callgrind-http 20000` the instructions of a fixed request load
//! on the service, with and without the agent; `-- --storm 10` the
//! allocation modes alone on an allocation storm (small objects, never
//! touched), in wall-clock rounds.

heaptide_agent::global_allocator!();

mod callgrind;
mod callgrind_http;
mod storm;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heaptide_tests::{analyzer, get_json, leaky, Proc};

fn arg(name: &str, default: u64) -> u64 {
    heaptide_tests::flag_value(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("alloc-child") {
        alloc_child(
            args[2] == "on",
            args[3].parse().unwrap_or(10),
            args.get(4).and_then(|o| o.parse().ok()).unwrap_or(0),
        );
        return;
    }
    if let Some(n) = heaptide_tests::flag_value("--callgrind-http") {
        let dir = tempfile::tempdir().unwrap();
        let an = analyzer(dir.path(), &dir.path().join("bench.db"), "127.0.0.1:0", &[]);
        // `--keep DIR` keeps the dumps for callgrind_annotate.
        let keep = heaptide_tests::flag_value("--keep").map(std::path::PathBuf::from);
        let out = keep.as_deref().unwrap_or(dir.path());
        callgrind_http::run(n.parse().expect("--callgrind-http REQUESTS"), &an, out);
        return;
    }
    if let Some(secs) = heaptide_tests::flag_value("--storm") {
        storm::run(secs.parse().expect("--storm SECONDS"), arg("--rounds", 5));
        return;
    }
    if let Some(ops) = heaptide_tests::flag_value("--callgrind") {
        callgrind::run(ops.parse().expect("--callgrind OPS"));
        return;
    }
    let seconds = arg("--seconds", 65);
    let rounds = arg("--rounds", 2);
    let alloc_seconds = arg("--alloc-seconds", 20);
    heaptide_tests::build_release(&["heaptide-analyzer", "leaky-service"]);

    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("bench.db"), "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);

    let mut alloc: [Vec<AllocRun>; 4] = [vec![], vec![], vec![], vec![]];
    let mut service: [Vec<ServiceRun>; 2] = [vec![], vec![]];
    for round in 0..rounds {
        let order: [usize; 4] = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for mode in order {
            eprintln!("round {round}: allocation workload, mode {mode}");
            alloc[mode].push(run_alloc(mode, alloc_seconds, &endpoint));
        }
        for on in [round % 2 != 0, round % 2 == 0] {
            eprintln!(
                "round {round}: leaky-service under load, agent {}",
                if on { "on" } else { "off" }
            );
            service[usize::from(on)].push(run_service(
                on,
                seconds,
                dir.path(),
                &an,
                &format!("bench-{round}"),
            ));
        }
    }
    report(&alloc, &service, seconds, rounds, alloc_seconds);
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AllocRun {
    pub(crate) ops_per_sec: f64,
    agent_cpu_seconds: f64,
    wall_seconds: f64,
    agent_heap: f64,
    rss: f64,
}

/// The allocation workload's modes: 0 plain jemalloc, 1 agent on (its
/// frame-pointer unwinder), 2 jemalloc profiling on but no agent (libgcc's
/// unwinder: what the sampling itself costs), 3 agent on with libgcc's
/// unwinder.
pub(crate) fn alloc_command(mode: usize, seconds: u64, ops: u64, endpoint: &str) -> Command {
    let on = mode == 1 || mode == 3;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "alloc-child",
        if on { "on" } else { "off" },
        &seconds.to_string(),
        &ops.to_string(),
    ])
    .env("HEAPTIDE_ENDPOINT", endpoint)
    .env("HEAPTIDE_SERVICE", "bench-alloc")
    .stderr(Stdio::inherit());
    if mode == 0 {
        cmd.env("_RJEM_MALLOC_CONF", "prof:false");
    }
    if mode == 3 {
        cmd.env("HEAPTIDE_UNWINDER", "libgcc");
    }
    cmd
}

pub(crate) fn run_alloc(mode: usize, seconds: u64, endpoint: &str) -> AllocRun {
    let mut cmd = alloc_command(mode, seconds, 0, endpoint);
    let out = cmd.output().expect("alloc child");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("child output");
    AllocRun {
        ops_per_sec: v["ops_per_sec"].as_f64().unwrap(),
        agent_cpu_seconds: v["agent_cpu_seconds"].as_f64().unwrap(),
        wall_seconds: v["wall_seconds"].as_f64().unwrap(),
        agent_heap: v["agent_heap"].as_f64().unwrap(),
        rss: v["rss"].as_f64().unwrap(),
    }
}

/// Allocates for `seconds`, or exactly `max_ops` allocations when that is
/// not 0.
fn alloc_child(on: bool, seconds: u64, max_ops: u64) {
    let bare = std::env::var_os("OVERHEAD_STORM").is_some();
    let agent = on.then(|| heaptide_agent::start().expect("agent"));
    let start = Instant::now();
    let mut live: Vec<Vec<u8>> = (0..10_000).map(|_| Vec::new()).collect();
    let mut rng = fastrand_state(42);
    let mut ops = 0u64;
    let more = |ops: u64| {
        if max_ops > 0 {
            ops < max_ops
        } else {
            start.elapsed() < Duration::from_secs(seconds)
        }
    };
    while more(ops) {
        for _ in 0..10_000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let slot = (rng >> 33) as usize % live.len();
            live[slot] = if bare {
                // The storm: small objects, never touched.
                std::hint::black_box(Vec::with_capacity(16 + ((rng >> 13) as usize % 240)))
            } else {
                let size = 16 + ((rng >> 13) as usize % 4080);
                std::hint::black_box(vec![1u8; size])
            };
            ops += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let stats = agent.as_ref().map(|a| a.stats()).unwrap_or_default();
    let rss = peak_rss_of(std::process::id());
    drop(agent);
    println!(
        "{}",
        serde_json::json!({
            "ops_per_sec": ops as f64 / wall,
            "agent_cpu_seconds": stats.cpu_seconds,
            "wall_seconds": wall,
            "agent_heap": stats.heap_bytes,
            "rss": rss,
        })
    );
}

fn fastrand_state(seed: u64) -> u64 {
    seed ^ 0x9E37_79B9_7F4A_7C15
}

/// Peak resident memory in bytes (VmHWM), which catches the moment a
/// profile is taken as well as the steady state.
fn peak_rss_of(pid: u32) -> f64 {
    heaptide_tests::resident(pid).peak_mib * 1024.0 * 1024.0
}

#[derive(Debug, Clone, Default)]
struct ServiceRun {
    rps: f64,
    p99_ms: f64,
    agent_cpu_seconds: f64,
    wall_seconds: f64,
    agent_heap: f64,
    rss: f64,
}

fn run_service(
    on: bool,
    seconds: u64,
    dir: &std::path::Path,
    an: &Proc,
    instance: &str,
) -> ServiceRun {
    let instance = format!("{instance}-{}", if on { "on" } else { "off" });
    let env: Vec<(&str, &str)> = if on {
        vec![
            ("HEAPTIDE_INTERVAL", "10s"),
            ("HEAPTIDE_PROFILE_INTERVAL", "60s"),
        ]
    } else {
        vec![("LEAKY_AGENT", "off"), ("_RJEM_MALLOC_CONF", "prof:false")]
    };
    let svc = leaky(dir, &format!("http://{}", an.addr), &instance, &env);
    let started = Instant::now();
    let base = svc.url("");
    // Warm up, then measure from four client threads.
    load(&base, Duration::from_secs(3));
    let (n, hist, elapsed) = load(&base, Duration::from_secs(seconds));
    let wall = started.elapsed().as_secs_f64();
    let rss = peak_rss_of(svc.child.id());
    let mut run = ServiceRun {
        rps: n as f64 / elapsed,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        wall_seconds: wall,
        rss,
        ..Default::default()
    };
    if on {
        // The agent's own report, as the analyzer stored it.
        std::thread::sleep(Duration::from_secs(11));
        let v = get_json(&an.url("/v1/instances?service=leaky-service"));
        let inst = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance"] == instance.as_str())
            .cloned();
        if let Some(i) = inst {
            run.agent_cpu_seconds = i["agent_stats"]["cpu_seconds"].as_f64().unwrap_or(0.0);
            run.agent_heap = i["agent_stats"]["heap_bytes"].as_f64().unwrap_or(0.0);
            run.wall_seconds = started.elapsed().as_secs_f64();
        }
    }
    drop(svc);
    run
}

fn load(base: &str, dur: Duration) -> (u64, hdrhistogram::Histogram<u64>, f64) {
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let base = base.to_owned();
            std::thread::spawn(move || {
                let http = heaptide_tests::http();
                let mut hist =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut n = 0u64;
                let mut key = t * 1_000_000;
                while start.elapsed() < dur {
                    key += 1;
                    let path = if n.is_multiple_of(4) {
                        format!("/cache?key={}", key % 1500)
                    } else {
                        "/work".into()
                    };
                    let t0 = Instant::now();
                    let ok = http
                        .get(&format!("{base}{path}"))
                        .call()
                        .map(|mut r| r.body_mut().read_to_string().is_ok())
                        .unwrap_or(false);
                    if ok {
                        let _ = hist.record(t0.elapsed().as_micros() as u64);
                        n += 1;
                    }
                }
                (n, hist)
            })
        })
        .collect();
    let mut total = 0;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in threads {
        let (n, h) = t.join().unwrap();
        total += n;
        let _ = hist.add(h);
    }
    (total, hist, start.elapsed().as_secs_f64())
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn report(
    alloc: &[Vec<AllocRun>; 4],
    service: &[Vec<ServiceRun>; 2],
    seconds: u64,
    rounds: u64,
    alloc_seconds: u64,
) {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let a_off = mean(alloc[0].iter().map(|r| r.ops_per_sec));
    let a_on = mean(alloc[1].iter().map(|r| r.ops_per_sec));
    let a_cpu = mean(
        alloc[1]
            .iter()
            .map(|r| r.agent_cpu_seconds / r.wall_seconds * 100.0),
    );
    let a_heap = alloc[1].iter().map(|r| r.agent_heap).fold(0.0, f64::max);
    let a_rss = mean(alloc[1].iter().map(|r| r.rss)) - mean(alloc[0].iter().map(|r| r.rss));
    let a_prof = mean(alloc[2].iter().map(|r| r.ops_per_sec));
    let a_gcc = mean(alloc[3].iter().map(|r| r.ops_per_sec));
    let s_off = mean(service[0].iter().map(|r| r.rps));
    let s_on = mean(service[1].iter().map(|r| r.rps));
    let p_off = mean(service[0].iter().map(|r| r.p99_ms));
    let p_on = mean(service[1].iter().map(|r| r.p99_ms));
    let s_cpu = mean(
        service[1]
            .iter()
            .map(|r| r.agent_cpu_seconds / r.wall_seconds * 100.0),
    );
    let s_heap = service[1].iter().map(|r| r.agent_heap).fold(0.0, f64::max);
    let s_rss = mean(service[1].iter().map(|r| r.rss)) - mean(service[0].iter().map(|r| r.rss));
    println!("{rounds} rounds; allocation workload {alloc_seconds} s per run, service load {seconds} s per run\n");
    println!("| workload | metric | agent off | agent on | ratio on/off |");
    println!("|---|---|---|---|---|");
    println!(
        "| allocation-heavy | throughput (allocs/s) | {a_off:.0} | {a_on:.0} | {:.3} |",
        a_on / a_off
    );
    println!(
        "| allocation-heavy | throughput, agent on with libgcc's unwinder | {a_off:.0} | {a_gcc:.0} | {:.3} |",
        a_gcc / a_off
    );
    println!(
        "| allocation-heavy | throughput, jemalloc profiling on, no agent (libgcc) | {a_off:.0} | {a_prof:.0} | {:.3} |",
        a_prof / a_off
    );
    println!("| allocation-heavy | agent CPU (% of a core) | - | {a_cpu:.2} | |");
    println!(
        "| allocation-heavy | agent heap at the end (MiB, largest run) | - | {:.2} | |",
        mib(a_heap)
    );
    println!(
        "| allocation-heavy | peak RSS on minus off (MiB) | - | {:.2} | |",
        mib(a_rss)
    );
    println!(
        "| leaky-service | throughput (req/s) | {s_off:.0} | {s_on:.0} | {:.3} |",
        s_on / s_off
    );
    println!(
        "| leaky-service | p99 latency (ms) | {p_off:.2} | {p_on:.2} | {:.3} |",
        p_on / p_off
    );
    println!("| leaky-service | agent CPU (% of a core) | - | {s_cpu:.2} | |");
    println!(
        "| leaky-service | agent heap at the end (MiB, largest run) | - | {:.2} | |",
        mib(s_heap)
    );
    println!(
        "| leaky-service | peak RSS on minus off (MiB) | - | {:.2} | |",
        mib(s_rss)
    );
    print_rounds(service);
}

/// Each round's own service figures: a target "in every run" is read
/// here.
fn print_rounds(service: &[Vec<ServiceRun>; 2]) {
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!("\n| round | req/s off | req/s on | ratio | peak RSS off (MiB) | on | on minus off |");
    println!("|---|---|---|---|---|---|---|");
    for (k, (off, on)) in service[0].iter().zip(&service[1]).enumerate() {
        println!(
            "| {k} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} | {:.1} |",
            off.rps,
            on.rps,
            on.rps / off.rps,
            mib(off.rss),
            mib(on.rss),
            mib(on.rss - off.rss)
        );
    }
}
