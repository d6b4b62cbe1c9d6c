//! How many agents one analyzer sustains, and what a day of one agent costs
//! in the store.
//!
//! `cargo run --release -p heaptide-tests --bin ingest_load [-- --steps 250,500,1000,1500 --seconds 70]`
//!
//! Simulated agents run in this process and talk HTTP over loopback to a
//! real `analyzer serve`: each sends a batch of 45 metrics every 10 s and a
//! heap profile of 2,000 distinct stacks every minute. Each step raises the
//! number of agents until p99 ingest latency passes 100 ms. Then one agent's
//! seven days are written as history and retention is applied, to measure
//! bytes stored per agent-day in steady state.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use heaptide_analyzer::store::{RetentionPolicy, SqliteStore, Store};
use heaptide_tests::{analyzer, http, now_ms};
use heaptide_wire::pprof::{build_heap_profile, encode_gzip, Frame, StackSample};
use heaptide_wire::*;

const METRICS: usize = 45;
const STACKS: usize = 2000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// 2,000 distinct stacks of 10 to 24 frames over 600 function names, with
/// `variant` moving a tenth of the values, as consecutive profiles do.
fn profile(variant: u64, rng: &mut fastrand::Rng) -> String {
    let names: Vec<String> = (0..600)
        .map(|i| format!("service::module_{}::function_{i}", i % 37))
        .collect();
    let mut shape = fastrand::Rng::with_seed(99);
    let stacks: Vec<StackSample> = (0..STACKS)
        .map(|s| {
            let depth = 10 + shape.usize(0..15);
            let mut frames: Vec<Frame> = (0..depth)
                .map(|_| Frame {
                    function: names[shape.usize(0..names.len())].clone(),
                    file: "src/lib.rs".into(),
                    line: 0,
                })
                .collect();
            // Call sites are shared, as in a real program; leaves differ.
            for f in &mut frames {
                f.line = 1 + (f.function.len() as u32 * 7) % 400;
            }
            frames[0].line = s as u32;
            let base = 4096 * (1 + shape.i64(0..500));
            let moved = if rng.u64(0..10) == variant % 10 {
                rng.i64(0..8192)
            } else {
                0
            };
            StackSample {
                frames,
                objects: base / 64,
                bytes: base + moved,
            }
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .encode(encode_gzip(&build_heap_profile(&stacks, 524288, 0)))
}

/// The 45 metrics a real agent sends, with plausible values.
fn metrics(v: f64) -> BTreeMap<String, f64> {
    let names = [
        "heap.allocated",
        "heap.active",
        "heap.resident",
        "heap.mapped",
        "heap.retained",
        "heap.metadata",
        "process.rss",
        "process.vsize",
        "process.minor_faults",
        "process.major_faults",
        "process.voluntary_ctxt_switches",
        "process.involuntary_ctxt_switches",
        "fds",
        "fds.file",
        "fds.socket",
        "fds.pipe",
        "fds.anon",
        "fds.other",
        "threads",
        "threads.name.tokio-runtime-worker",
        "threads.name.heaptide-sample",
        "threads.name.heaptide-send",
        "threads.name.heaptide-meter",
        "threads.name.main",
        "tcp",
        "tcp.established",
        "tcp.close_wait",
        "tcp.listen",
        "tcp.time_wait",
        "limit.nofile.soft",
        "limit.nofile.hard",
        "limit.nproc",
        "limit.threads_max",
        "limit.physical_memory",
        "limit.cgroup.memory_max",
        "cgroup.memory_current",
        "pause.p50_ms",
        "pause.p99_ms",
        "pause.p999_ms",
        "pause.max_ms",
        "app.requests",
        "agent.cpu_seconds",
        "agent.heap_bytes",
        "agent.dropped_items",
        "limit.cgroup.pids_max",
    ];
    assert_eq!(names.len(), METRICS);
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let value = if n.starts_with("heap.") || n.starts_with("process.rss") {
                200e6 + v * 1000.0 + i as f64
            } else if n.starts_with("limit.") {
                1e9
            } else if n.starts_with("pause.") {
                0.2 + (v % 7.0) / 10.0
            } else {
                (v % 50.0) + i as f64
            };
            (n.to_string(), value)
        })
        .collect()
}

fn batch(
    agent: usize,
    seq: u64,
    ts: i64,
    start: i64,
    profiles: Vec<Profile>,
    samples: Vec<Sample>,
) -> Vec<u8> {
    let b = Batch {
        version: WIRE_VERSION,
        agent: AgentInfo {
            service: "sim".into(),
            instance: format!("sim-{agent}"),
            host: "h".into(),
            pid: 1000 + agent as u32,
            start_time_ms: start,
            agent_version: "sim".into(),
            labels: BTreeMap::new(),
        },
        seq,
        sent_at_ms: ts,
        heap_profiling: HeapProfilingStatus {
            enabled: true,
            reason: None,
            sample_period_bytes: Some(524288),
        },
        agent_stats: AgentStats::default(),
        samples,
        pause_events: vec![],
        profiles,
    };
    let json = serde_json::to_vec(&b).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &json).unwrap();
    gz.finish().unwrap()
}

fn post(http: &ureq::Agent, url: &str, body: &[u8]) -> u16 {
    http.post(url)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .send(body)
        .map(|mut r| {
            let _ = r.body_mut().read_to_string();
            r.status().as_u16()
        })
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Step {
    agents: usize,
    batches: u64,
    errors: u64,
    p50: f64,
    p99: f64,
    max: f64,
    behind_ms: f64,
    cpu: f64,
}

/// Due time, agent and sequence number of each agent's next batch.
type Schedule = BinaryHeap<Reverse<(Instant, usize, u64)>>;

fn run_step(url: &str, pid: u32, agents: usize, seconds: u64, profiles: &[String]) -> Step {
    let start = now_ms();
    // Every agent has a slot in a 10 s cycle and sends a profile every
    // sixth batch, so load is even, as a fleet's is.
    let queue: Arc<Mutex<Schedule>> = Arc::new(Mutex::new(BinaryHeap::new()));
    let t0 = Instant::now();
    for a in 0..agents {
        let offset = Duration::from_millis((a as u64 * 10_000) / agents as u64);
        queue.lock().unwrap().push(Reverse((t0 + offset, a, 0)));
    }
    let end = t0 + Duration::from_secs(seconds);
    let cpu0 = cpu_seconds(pid);
    let hist = Arc::new(Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let behind = Arc::new(Mutex::new(0f64));
    let workers: Vec<_> = (0..48)
        .map(|_| {
            let (queue, hist, errors, behind) =
                (queue.clone(), hist.clone(), errors.clone(), behind.clone());
            let url = url.to_owned();
            let profiles = profiles.to_vec();
            std::thread::spawn(move || {
                let http = http();
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some(Reverse((due, agent, seq))) = next else {
                        return;
                    };
                    if due >= end {
                        return;
                    }
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else {
                        let mut b = behind.lock().unwrap();
                        *b = b.max((now - due).as_secs_f64() * 1000.0);
                    }
                    let ts = start + (due - t0).as_millis() as i64;
                    let profs = if seq % 6 == (agent as u64 % 6) {
                        vec![Profile {
                            ts_ms: ts,
                            sample_period_bytes: 524288,
                            pprof_gz_base64: profiles[(seq as usize + agent) % profiles.len()]
                                .clone(),
                        }]
                    } else {
                        vec![]
                    };
                    let body = batch(
                        agent,
                        seq,
                        ts,
                        start - 1000,
                        profs,
                        vec![Sample {
                            ts_ms: ts,
                            metrics: metrics(seq as f64),
                        }],
                    );
                    let sent = Instant::now();
                    let status = post(&http, &url, &body);
                    let us = sent.elapsed().as_micros() as u64;
                    if status == 200 {
                        let _ = hist.lock().unwrap().record(us.max(1));
                    } else {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    queue.lock().unwrap().push(Reverse((
                        due + Duration::from_secs(10),
                        agent,
                        seq + 1,
                    )));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let h = hist.lock().unwrap();
    let behind_ms = *behind.lock().unwrap();
    Step {
        agents,
        batches: h.len(),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
        behind_ms,
        cpu: (cpu_seconds(pid) - cpu0) / wall * 100.0,
    }
}

/// Writes seven days of one agent as history, applies retention and
/// returns (used bytes, file bytes).
fn agent_week(dir: &std::path::Path, days: i64) -> (u64, u64, RetentionReportLite) {
    let path = dir.join("week.db");
    let store_dir = tempfile::tempdir_in(dir).unwrap();
    let an = analyzer(
        store_dir.path(),
        &path,
        "127.0.0.1:0",
        &["--config", &write_config(dir)],
    );
    let url = an.url(INGEST_PATH);
    let http = http();
    let now = now_ms();
    let start = now - days * 86_400_000;
    let mut rng = fastrand::Rng::with_seed(5);
    let variants: Vec<String> = (0..6).map(|v| profile(v, &mut rng)).collect();
    let mut seq = 0;
    let mut ts = start;
    while ts < now {
        // One hour per upload: 360 samples and 60 profiles.
        let mut samples = Vec::new();
        let mut profiles = Vec::new();
        for i in 0..360 {
            let t = ts + i * 10_000;
            if t >= now {
                break;
            }
            samples.push(Sample {
                ts_ms: t,
                metrics: metrics((t / 10_000 % 1000) as f64),
            });
            if i % 6 == 0 {
                profiles.push(Profile {
                    ts_ms: t,
                    sample_period_bytes: 524288,
                    pprof_gz_base64: variants[(i / 6 % 6) as usize].clone(),
                });
            }
        }
        // Ten minutes per request keeps each under the 8 MiB limit.
        for (chunk_s, chunk_p) in samples.chunks(60).zip(profiles.chunks(10)) {
            seq += 1;
            let body = batch(
                0,
                seq,
                chunk_s[0].ts_ms,
                start - 1000,
                chunk_p.to_vec(),
                chunk_s.to_vec(),
            );
            loop {
                match post(&http, &url, &body) {
                    200 => break,
                    429 => std::thread::sleep(Duration::from_millis(300)),
                    s => panic!("history upload failed with {s}"),
                }
            }
        }
        ts += 3_600_000;
    }
    drop(an);
    let store = SqliteStore::open(&path).unwrap();
    let r = store
        .retain(now_ms(), &RetentionPolicy::with_retention(7 * 86_400_000))
        .unwrap();
    let stats = store.stats().unwrap();
    drop(store);
    ui_timings(dir, &path);
    (
        stats.used_bytes,
        stats.file_bytes,
        RetentionReportLite {
            profiles_deleted: r.profiles_deleted,
            samples_downsampled: r.samples_downsampled,
        },
    )
}

/// Server time of the pages over the week's store: the last 24 hours of
/// one instance at 10 s samples and a 2,000-stack profile a minute.
fn ui_timings(dir: &std::path::Path, store: &std::path::Path) {
    let an = analyzer(dir, store, "127.0.0.1:0", &[]);
    let http = http();
    let now = now_ms();
    let pages = [
        ("overview `/`", "/".to_owned()),
        (
            "instance page, 24h",
            "/ui/instance?service=sim&instance=sim-0&window=24h".to_owned(),
        ),
        (
            "instance page, 7d",
            "/ui/instance?service=sim&instance=sim-0&window=7d".to_owned(),
        ),
        (
            "live heap flamegraph",
            format!("/ui/flame.svg?service=sim&instance=sim-0&at={now}"),
        ),
        (
            "growth flamegraph, 24h apart",
            format!(
                "/ui/flame.svg?service=sim&instance=sim-0&kind=growth&from={}&to={now}",
                now - 86_400_000
            ),
        ),
        (
            "`GET /v1/leaks?since=24h`",
            "/v1/leaks?service=sim&since=24h".to_owned(),
        ),
    ];
    println!("\n| page (24 h of one instance) | median ms | max ms |\n|---|---|---|");
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            let status = http
                .get(&an.url(&path))
                .call()
                .map(|mut r| {
                    let _ = r.body_mut().with_config().limit(64 << 20).read_to_vec();
                    r.status().as_u16()
                })
                .unwrap_or(0);
            assert_eq!(status, 200, "{path}");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} | {:.0} |",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
}

struct RetentionReportLite {
    profiles_deleted: u64,
    samples_downsampled: u64,
}

fn write_config(dir: &std::path::Path) -> String {
    let p = dir.join("serve.toml");
    std::fs::write(&p, "rate_limit = 1000.0\n").unwrap();
    p.display().to_string()
}

fn main() {
    let steps: Vec<usize> = arg("--steps")
        .unwrap_or_else(|| "250,500,1000,1500,2000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(70);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = std::process::Command::new(cargo)
        .args(["build", "--release", "-j2", "-p", "heaptide-analyzer"])
        .status()
        .expect("cargo build");
    assert!(ok.success());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let profiles: Vec<String> = (0..10).map(|v| profile(v, &mut rng)).collect();
    eprintln!(
        "profile: {} bytes of gzipped, base64 pprof",
        profiles[0].len()
    );
    let mut rows = Vec::new();
    // --steps "" skips the load steps (to time only the pages and the store).
    for &n in &steps {
        let an = analyzer(
            dir.path(),
            &dir.path().join(format!("load-{n}.db")),
            "127.0.0.1:0",
            &["--config", &write_config(dir.path())],
        );
        let pid = an.child.id();
        eprintln!("{n} agents for {seconds} s");
        let step = run_step(&an.url(INGEST_PATH), pid, n, seconds, &profiles);
        let rss = rss_mib(pid);
        let over = step.p99 > 100.0 || step.errors > 0;
        rows.push((step, rss));
        if over {
            break;
        }
    }
    println!("| agents | batches | errors | p50 ms | p99 ms | max ms | sender lag max ms | server CPU (% of one core) | server peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (s, rss) in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
            s.agents, s.batches, s.errors, s.p50, s.p99, s.max, s.behind_ms, s.cpu, rss
        );
    }
    eprintln!("writing one agent's week of history");
    let days: i64 = arg("--days").and_then(|s| s.parse().ok()).unwrap_or(7);
    let (used, file, r) = agent_week(dir.path(), days);
    println!(
        "\none agent, {days} days at 10 s samples ({METRICS} metrics) and a {STACKS}-stack profile a minute, after retention \
         (samples downsampled: {}, profiles thinned: {}):\n\n| used bytes | file bytes | used per agent-day |\n|---|---|---|\n| {:.1} MiB | {:.1} MiB | {:.2} MiB |",
        r.samples_downsampled,
        r.profiles_deleted,
        used as f64 / 1048576.0,
        file as f64 / 1048576.0,
        used as f64 / days as f64 / 1048576.0
    );
}
