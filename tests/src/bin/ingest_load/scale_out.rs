//! Scale-out, side by side in one run: a fleet against one analyzer on
//! SQLite, then the same fleet split between two analyzers that share one
//! ClickHouse server, as a load balancer that keeps each agent on one
//! analyzer would split it.

use std::path::Path;

use heaptide_analyzer::store::{ClickHouseStore, ClickHouseUrl, RetentionPolicy, Store};
use heaptide_testkit::clickhouse::ClickHouse;
use heaptide_tests::{analyzer, cpu_seconds, now_ms};
use heaptide_wire::INGEST_PATH;

use super::fleet::{rss_mib, run_step_at, Origin, Step};
use super::{upload_week, write_config};

/// p99 ingest latency a fleet size must stay under to count as sustained.
const P99_LIMIT_MS: f64 = 1000.0;

fn row(setup: &str, s: &Step, cpu: f64, rss: f64) {
    println!(
        "| {setup} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
        s.agents, s.batches, s.errors, s.p50, s.p99, s.max, s.behind_ms, cpu, rss
    );
}

/// Runs each size of `steps` on both setups until both are over the limit.
pub fn compare(dir: &Path, steps: &str, seconds: u64, profiles: &[String]) {
    let ch = ClickHouse::start();
    println!("| store | agents | batches | errors | p50 ms | p99 ms | max ms | sender lag max ms | analyzers' CPU (% of one core) | analyzers' peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let (mut sqlite_over, mut ch_over) = (false, false);
    for n in steps
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        if !sqlite_over {
            sqlite_over = !sqlite_step(dir, n, seconds, profiles);
        }
        if !ch_over {
            ch_over = !clickhouse_step(dir, &ch, n, seconds, profiles);
        }
        if sqlite_over && ch_over {
            break;
        }
    }
}

fn now() -> Origin {
    Origin {
        t0: std::time::Instant::now(),
        ms: now_ms(),
    }
}

fn sustained(s: &Step) -> bool {
    s.p99 <= P99_LIMIT_MS && s.errors == 0
}

/// `n` agents against one analyzer on SQLite; whether it held.
fn sqlite_step(dir: &Path, n: usize, seconds: u64, profiles: &[String]) -> bool {
    let store = dir.join(format!("scale-{n}.db"));
    let an = analyzer(
        dir,
        &store,
        "127.0.0.1:0",
        &["--config", &write_config(dir)],
    );
    eprintln!("sqlite: {n} agents for {seconds} s");
    let s = run_step_at(
        &an.url(INGEST_PATH),
        an.child.id(),
        n,
        seconds,
        profiles,
        now(),
    );
    row("SQLite, 1 analyzer", &s, s.cpu, rss_mib(an.child.id()));
    sustained(&s)
}

/// `n` agents split between two analyzers on `ch`; whether it held.
fn clickhouse_step(
    dir: &Path,
    ch: &ClickHouse,
    n: usize,
    seconds: u64,
    profiles: &[String],
) -> bool {
    let url = ch.url(&format!("scale_{n}"));
    let ans: Vec<_> = (0..2)
        .map(|i| {
            let shard = format!("{i}/2");
            let args = ["--config", &write_config(dir), "--shard", &shard];
            analyzer(dir, Path::new(&url), "127.0.0.1:0", &args)
        })
        .collect();
    eprintln!("clickhouse: {n} agents for {seconds} s over two analyzers");
    let server = ch.server_pid().unwrap_or(0);
    let (server_cpu0, t0) = (cpu_seconds(server), std::time::Instant::now());
    let origin = now();
    let halves: Vec<Step> = std::thread::scope(|scope| {
        let runs: Vec<_> = ans
            .iter()
            .map(|an| {
                let url = an.url(INGEST_PATH);
                let pid = an.child.id();
                scope.spawn(move || run_step_at(&url, pid, n / 2, seconds, profiles, origin))
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a half of the fleet"))
            .collect()
    });
    // The worse half's latencies stand for the fleet's; counts add.
    let mut s = halves
        .iter()
        .max_by(|a, b| a.p99.total_cmp(&b.p99))
        .cloned()
        .expect("two halves");
    s.agents = halves.iter().map(|h| h.agents).sum();
    s.batches = halves.iter().map(|h| h.batches).sum();
    s.errors = halves.iter().map(|h| h.errors).sum();
    let cpu: f64 = halves.iter().map(|h| h.cpu).sum();
    let server_cpu = 100.0 * (cpu_seconds(server) - server_cpu0) / t0.elapsed().as_secs_f64();
    let rss: f64 = ans.iter().map(|a| rss_mib(a.child.id())).sum();
    row("ClickHouse, 2 analyzers", &s, cpu, rss);
    println!(
        "| (clickhouse-server itself) | | | | | | | | {server_cpu:.0} | {:.0} |",
        rss_mib(server)
    );
    sustained(&s)
}

/// One agent's `days` of history through an analyzer into ClickHouse,
/// then retention, then the bytes its active parts hold per agent-day.
pub fn clickhouse_week(dir: &Path, days: i64) {
    let ch = ClickHouse::start();
    let url = ch.url("week");
    let an = analyzer(
        dir,
        Path::new(&url),
        "127.0.0.1:0",
        &["--config", &write_config(dir)],
    );
    upload_week(&an.url(INGEST_PATH), days);
    drop(an);
    let store = ClickHouseStore::open(ClickHouseUrl::parse(&url).unwrap()).unwrap();
    let r = store
        .retain(now_ms(), &RetentionPolicy::with_retention(7 * 86_400_000))
        .unwrap();
    // Thinning is a mutation, which runs in the background: wait for it.
    let pending =
        || ch.query("SELECT count() FROM system.mutations WHERE database = 'week' AND NOT is_done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while pending().trim() != "0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    // Merges fold the many parts an upload leaves into the few a steady
    // state has; OPTIMIZE runs them now rather than in the background.
    for t in [
        "segments",
        "samples",
        "pauses",
        "stacks",
        "profiles",
        "profile_stacks",
        "profile_ages",
        "profile_raw",
    ] {
        ch.query(&format!("OPTIMIZE TABLE week.{t} FINAL"));
    }
    let s = store.stats().unwrap();
    eprintln!(
        "after retention: {} profiles, {} sample rows, mutations pending: {}",
        s.profiles,
        s.samples,
        pending().trim()
    );
    println!(
        "\none agent, {days} days in ClickHouse after retention (samples downsampled: {}, profiles dropped: {}):\n\n| disk bytes | compressed data bytes | disk per agent-day |\n|---|---|---|\n| {:.1} MiB | {:.1} MiB | {:.2} MiB |",
        r.samples_downsampled,
        r.profiles_deleted,
        s.disk_bytes as f64 / 1048576.0,
        s.data_bytes as f64 / 1048576.0,
        s.disk_bytes as f64 / days as f64 / 1048576.0
    );
}
