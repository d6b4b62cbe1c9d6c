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
//!
//! `-- --scale-out 1000,2000,3000` instead runs each fleet size against
//! one analyzer on SQLite and against two analyzers sharing a ClickHouse
//! server (started by this run), side by side; `-- --clickhouse-week 7`
//! measures bytes per agent-day in ClickHouse.
//!
//! `-- --steps "" --compare-evaluation 1000` instead runs that many
//! agents twice, side by side: against an analyzer that evaluates every
//! 5 s (twelve times the default rate) and one that evaluates only at
//! start, to show what continuous evaluation costs ingest.

use std::time::{Duration, Instant};

use heaptide_analyzer::store::{RetentionPolicy, SqliteStore, Store};
use heaptide_tests::{analyzer, http, now_ms};
use heaptide_wire::*;

mod fleet;
mod scale_out;

use fleet::{batch, metrics, post, profile, rss_mib, run_step};

const METRICS: usize = 45;
const STACKS: usize = 2000;

fn arg(name: &str) -> Option<String> {
    heaptide_tests::flag_value(name)
}

/// 2,000 distinct stacks of 10 to 24 frames over 600 function names, with
/// `variant` moving a tenth of the values, as consecutive profiles do.
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
    upload_week(&an.url(INGEST_PATH), days);
    drop(an);
    let store = SqliteStore::open(&path).unwrap();
    let r = store
        .retain(now_ms(), &RetentionPolicy::with_retention(7 * 86_400_000))
        .unwrap();
    let stats = store.stats().unwrap();
    drop(store);
    ui_timings(dir, &path);
    (
        stats.data_bytes,
        stats.disk_bytes,
        RetentionReportLite {
            profiles_deleted: r.profiles_deleted,
            samples_downsampled: r.samples_downsampled,
        },
    )
}

/// Uploads one agent's `days` of history to `url`, an hour of 10 s
/// samples and a profile a minute per request.
pub fn upload_week(url: &str, days: i64) {
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
            samples.push(MetricSample {
                ts_ms: t,
                metrics: metrics((t / 10_000 % 1000) as f64),
            });
            if i % 6 == 0 {
                profiles.push(EncodedProfile {
                    ts_ms: t,
                    sample_period_bytes: 524288,
                    pprof_gz_base64: variants[(i / 6 % 6) as usize].clone(),
                    ages: Vec::new(),
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
                match post(&http, url, &body) {
                    200 => break,
                    429 => std::thread::sleep(Duration::from_millis(300)),
                    s => panic!("history upload failed with {s}"),
                }
            }
        }
        ts += 3_600_000;
    }
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

pub fn write_config(dir: &std::path::Path) -> String {
    let p = dir.join("serve.toml");
    // Every simulated agent connects from one address: the per-address
    // limits would count the fleet as one host.
    std::fs::write(
        &p,
        "rate_limit = 1000.0\nrequest_rate_per_address = 1000000.0\nmax_requests_per_address = 100000\n",
    )
    .unwrap();
    p.display().to_string()
}

/// `n` agents against an analyzer evaluating every 5 s, then one that
/// evaluates only at start, then both again: ingest latency with and
/// without evaluation, side by side in one run.
fn compare_evaluation(dir: &std::path::Path, n: usize, seconds: u64, profiles: &[String]) {
    println!("| evaluation | agents | batches | errors | p50 ms | p99 ms | max ms | server CPU (% of one core) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (round, every) in ["5s", "1h", "5s", "1h"].iter().enumerate() {
        let an = analyzer(
            dir,
            &dir.join(format!("compare-{round}.db")),
            "127.0.0.1:0",
            &["--config", &write_config(dir), "--evaluate-every", every],
        );
        let pid = an.child.id();
        let s = run_step(&an.url(INGEST_PATH), pid, n, seconds, profiles);
        println!(
            "| every {every} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            s.agents, s.batches, s.errors, s.p50, s.p99, s.max, s.cpu
        );
    }
}

fn main() {
    let steps: Vec<usize> = arg("--steps")
        .unwrap_or_else(|| "250,500,1000,1500,2000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(70);
    heaptide_tests::build_release(&["heaptide-analyzer"]);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let profiles: Vec<String> = (0..10).map(|v| profile(v, &mut rng)).collect();
    eprintln!(
        "profile: {} bytes of gzipped, base64 pprof",
        profiles[0].len()
    );
    if let Some(steps) = arg("--scale-out") {
        scale_out::compare(dir.path(), &steps, seconds, &profiles);
        return;
    }
    if let Some(days) = arg("--clickhouse-week").and_then(|s| s.parse().ok()) {
        scale_out::clickhouse_week(dir.path(), days);
        return;
    }
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
    if let Some(n) = arg("--compare-evaluation").and_then(|s| s.parse().ok()) {
        compare_evaluation(dir.path(), n, seconds, &profiles);
        if steps.is_empty() {
            return;
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
