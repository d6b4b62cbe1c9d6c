//! The simulated fleet: agents in this process that send batches over
//! loopback on a schedule, as a fleet's agents would.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use heaptide_tests::{cpu_seconds, http, now_ms};
use heaptide_wire::pprof::{build_heap_profile, encode_gzip, Frame, ProfileSample};
use heaptide_wire::*;

use super::{METRICS, STACKS};

pub fn profile(variant: u64, rng: &mut fastrand::Rng) -> String {
    let names: Vec<String> = (0..600)
        .map(|i| format!("service::module_{}::function_{i}", i % 37))
        .collect();
    let mut shape = fastrand::Rng::with_seed(99);
    let stacks: Vec<ProfileSample> = (0..STACKS)
        .map(|s| {
            let depth = 10 + shape.usize(0..15);
            let mut frames: Vec<Frame> = (0..depth)
                .map(|_| Frame {
                    function: names[shape.usize(0..names.len())].as_str().into(),
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
            ProfileSample {
                frames,
                objects: base / 64,
                bytes: base + moved,
                ..Default::default()
            }
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .encode(encode_gzip(&build_heap_profile(&stacks, 524288, 0)))
}

/// The 45 metrics a real agent sends, with plausible values.
pub fn metrics(v: f64) -> BTreeMap<String, f64> {
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

pub fn batch(
    agent: usize,
    seq: u64,
    ts: i64,
    start: i64,
    profiles: Vec<EncodedProfile>,
    samples: Vec<MetricSample>,
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
            unwinder: None,
            unnamed_objects: Vec::new(),
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

pub fn post(http: &ureq::Agent, url: &str, body: &[u8]) -> u16 {
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

/// Peak resident memory of `pid`, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    heaptide_tests::resident(pid).peak_mib
}

#[derive(Clone)]
pub struct Step {
    pub agents: usize,
    pub batches: u64,
    pub errors: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub behind_ms: f64,
    pub cpu: f64,
}

/// Due time, agent and sequence number of each agent's next batch.
type Schedule = BinaryHeap<Reverse<(Instant, usize, u64)>>;

/// What the simulated agents of one step share.
struct Load {
    url: String,
    profiles: Vec<String>,
    /// Wall clock and monotonic clock at the step's start, and its end.
    start: i64,
    t0: Instant,
    end: Instant,
    queue: Mutex<Schedule>,
    hist: Mutex<hdrhistogram::Histogram<u64>>,
    errors: std::sync::atomic::AtomicU64,
    behind: Mutex<f64>,
}

pub fn run_step(url: &str, pid: u32, agents: usize, seconds: u64, profiles: &[String]) -> Step {
    let origin = Origin {
        t0: Instant::now(),
        ms: now_ms(),
    };
    run_step_at(url, pid, agents, seconds, profiles, origin)
}

/// When the simulated fleet started: steps run from one origin carry on
/// each agent's process, clock and sequence.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub t0: Instant,
    pub ms: i64,
}

pub fn run_step_at(
    url: &str,
    pid: u32,
    agents: usize,
    seconds: u64,
    profiles: &[String],
    origin: Origin,
) -> Step {
    let t0 = Instant::now();
    let seq0 = t0.duration_since(origin.t0).as_secs() / 10 + 1;
    // Every agent has a slot in a 10 s cycle and sends a profile every
    // sixth batch, so load is even, as a fleet's is.
    let mut queue = BinaryHeap::new();
    for a in 0..agents {
        let offset = Duration::from_millis((a as u64 * 10_000) / agents as u64);
        queue.push(Reverse((t0 + offset, a, seq0)));
    }
    let load = Arc::new(Load {
        url: url.to_owned(),
        profiles: profiles.to_vec(),
        start: origin.ms,
        t0: origin.t0,
        end: t0 + Duration::from_secs(seconds),
        queue: Mutex::new(queue),
        hist: Mutex::new(
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ),
        errors: std::sync::atomic::AtomicU64::new(0),
        behind: Mutex::new(0.0),
    });
    let cpu0 = cpu_seconds(pid);
    // Sending threads: 48 by default. More keep the schedule when answers
    // are slow, and take CPU from the analyzer on a small machine.
    let senders: usize = heaptide_tests::flag_value("--senders")
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let workers: Vec<_> = (0..senders)
        .map(|_| {
            let load = load.clone();
            std::thread::spawn(move || worker(&load))
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let h = load.hist.lock().unwrap().clone();
    let behind_ms = *load.behind.lock().unwrap();
    Step {
        agents,
        batches: h.len(),
        errors: load.errors.load(std::sync::atomic::Ordering::Relaxed),
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
        behind_ms,
        cpu: (cpu_seconds(pid) - cpu0) / wall * 100.0,
    }
}

/// Sends each due batch of the schedule until the step ends.
fn worker(load: &Load) {
    let http = http();
    loop {
        let next = load.queue.lock().unwrap().pop();
        let Some(Reverse((due, agent, seq))) = next else {
            return;
        };
        if due >= load.end {
            return;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            let mut b = load.behind.lock().unwrap();
            *b = b.max((now - due).as_secs_f64() * 1000.0);
        }
        let ts = load.start + (due - load.t0).as_millis() as i64;
        let profs = if seq % 6 == (agent as u64 % 6) {
            vec![EncodedProfile {
                ts_ms: ts,
                sample_period_bytes: 524288,
                pprof_gz_base64: load.profiles[(seq as usize + agent) % load.profiles.len()]
                    .clone(),
                ages: Vec::new(),
            }]
        } else {
            vec![]
        };
        let samples = vec![MetricSample {
            ts_ms: ts,
            metrics: metrics(seq as f64),
        }];
        let body = batch(agent, seq, ts, load.start - 1000, profs, samples);
        let sent = Instant::now();
        let status = post(&http, &load.url, &body);
        let us = sent.elapsed().as_micros() as u64;
        if status == 200 {
            let _ = load.hist.lock().unwrap().record(us.max(1));
        } else {
            load.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let next = Reverse((due + Duration::from_secs(10), agent, seq + 1));
        load.queue.lock().unwrap().push(next);
    }
}
