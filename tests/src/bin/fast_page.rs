//! A fast leak pages fast: the time from a leak's start to its first page,
//! at `analyzer serve`'s default settings, against simulated agents that
//! sample as the real agent does at its defaults (every 10 s; every 2 s
//! while younger than 3 minutes or while a resource would run out within
//! the hour, flagging the batch urgent).
//!
//! `cargo run --release -p heaptide-tests --bin fast_page [-- --runs 10 --seed 1]`
//!
//! Scenarios, `--runs` instances of each, all at once in real time, each
//! its own service:
//! - `start`: an fd leak from the process's start, runway 4 to 55 minutes
//!   against a limit of 1,024;
//! - `mid`: the same leak starting in a process that has run flat for two
//!   hours (backfilled at the default pace);
//! - `warm-heap`: healthy: the heap climbs 200 MiB in two minutes, then
//!   holds, against 23.5 GiB of memory;
//! - `warm-fds`: healthy: 100 fds opened in two minutes, then held;
//! - `steady`: healthy: fds wander by one or two around 100.
//!
//! Each instance is watched for up to six minutes after its leak starts (or
//! its process, for the healthy ones). Reported: the share of leaks paged
//! within 3 minutes, and before exhaustion, and the healthy instances
//! paged.

use std::time::{Duration, Instant};

use heaptide_tests::receiver::{Answer, Receiver};
use heaptide_tests::*;

const LIMIT: f64 = 1024.0;
const MEMORY: f64 = 23.5 * 1024.0 * 1024.0 * 1024.0;
const INTERVAL_MS: i64 = 10_000;
const FAST_MS: i64 = 2_000;
const WATCH_MS: i64 = 360_000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Start,
    Mid,
    WarmHeap,
    WarmFds,
    Steady,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Mid => "mid",
            Kind::WarmHeap => "warm-heap",
            Kind::WarmFds => "warm-fds",
            Kind::Steady => "steady",
        }
    }
    fn leaks(self) -> bool {
        matches!(self, Kind::Start | Kind::Mid)
    }
}

/// One simulated process.
struct Sim {
    kind: Kind,
    service: String,
    process_start: i64,
    /// When the leak (or, for healthy ones, the watch) starts.
    leak_start: i64,
    /// Minutes from the leak's start to the limit.
    runway_min: f64,
    next_ms: i64,
    last: Option<(i64, f64)>,
    urgent_until: i64,
    seq: u64,
    paged: Option<i64>,
    rng: u64,
}

impl Sim {
    fn noise(&mut self) -> f64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.rng >> 33) % 3) as f64
    }

    /// fds and heap at `t`.
    fn values(&mut self, t: i64) -> (f64, f64) {
        let since = (t - self.leak_start).max(0) as f64 / 1000.0;
        let n = self.noise();
        let base_heap = 40.0 * 1024.0 * 1024.0 + n * 1e5;
        match self.kind {
            Kind::Start | Kind::Mid => {
                let rate = (LIMIT - 100.0) / (self.runway_min * 60.0);
                ((100.0 + rate * since).min(LIMIT) + n, base_heap)
            }
            Kind::WarmHeap => {
                let warm = 200.0 * 1024.0 * 1024.0 * (since / 120.0).min(1.0);
                (100.0 + n, base_heap + warm)
            }
            Kind::WarmFds => (100.0 + 100.0 * (since / 120.0).min(1.0) + n, base_heap),
            Kind::Steady => (100.0 + n, base_heap),
        }
    }

    /// The agent's cadence: urgent when the fds' growth since the last
    /// sample exhausts the limit within the hour.
    fn sample(&mut self, t: i64) -> heaptide_wire::MetricSample {
        let (fds, heap) = self.values(t);
        let urgent = fds >= LIMIT
            || self.last.is_some_and(|(t0, f0)| {
                let rate = (fds - f0) / ((t - t0) as f64 / 1000.0);
                rate > 0.0 && (LIMIT - fds) / rate < 3600.0
            });
        if urgent {
            self.urgent_until = t + 120_000;
        }
        self.last = Some((t, fds));
        let young = t - self.process_start < 180_000;
        let every = if young || t < self.urgent_until {
            FAST_MS
        } else {
            INTERVAL_MS
        };
        self.next_ms = t + every;
        fixtures::metrics(
            t,
            &[
                ("fds", fds),
                ("heap.allocated", heap),
                ("process.rss", heap * 1.3),
                ("limit.nofile.soft", LIMIT),
                ("limit.physical_memory", MEMORY),
                ("agent.urgent", f64::from(u8::from(t < self.urgent_until))),
                ("agent.interval_seconds", 10.0),
            ],
        )
    }

    fn batch(&mut self, samples: Vec<heaptide_wire::MetricSample>) -> heaptide_wire::Batch {
        self.seq += 1;
        let agent = fixtures::agent(&self.service, "i-1", 1, self.process_start);
        let mut b = fixtures::batch(agent, self.seq, samples.last().map_or(0, |s| s.ts_ms));
        b.samples = samples;
        b
    }
}

fn sims(runs: usize, seed: u64, now: i64) -> Vec<Sim> {
    let kinds = [
        Kind::Start,
        Kind::Mid,
        Kind::WarmHeap,
        Kind::WarmFds,
        Kind::Steady,
    ];
    let runways = [4.0, 6.0, 10.0, 20.0, 30.0, 55.0];
    let mut out = Vec::new();
    for kind in kinds {
        for i in 0..runs {
            // Starts spread over a minute: each meets the schedule at
            // another phase.
            let start = now + (i as i64 * 60_000) / runs as i64;
            let process_start = if kind == Kind::Mid {
                start - 2 * 3_600_000
            } else {
                start
            };
            out.push(Sim {
                kind,
                service: format!("{}-{i}", kind.name()),
                process_start,
                leak_start: start,
                runway_min: runways[i % runways.len()],
                next_ms: start,
                last: None,
                urgent_until: 0,
                seq: 0,
                paged: None,
                rng: seed.wrapping_add(i as u64 * 7919 + kind as u64 * 104_729),
            });
        }
    }
    out
}

/// Two hours of flat history at the default pace, in batches of 100.
fn backfill(url: &str, s: &mut Sim) {
    let mut t = s.process_start;
    while t < s.leak_start {
        let mut samples = Vec::new();
        while t < s.leak_start && samples.len() < 100 {
            let (fds, heap) = s.values(t);
            samples.push(fixtures::metrics(
                t,
                &[
                    ("fds", fds),
                    ("heap.allocated", heap),
                    ("process.rss", heap * 1.3),
                    ("limit.nofile.soft", LIMIT),
                    ("limit.physical_memory", MEMORY),
                    ("agent.urgent", 0.0),
                    ("agent.interval_seconds", 10.0),
                ],
            ));
            t += INTERVAL_MS;
        }
        let b = s.batch(samples);
        post_batch(url, &b);
    }
    s.last = None;
}

fn main() {
    let runs: usize = flag_value("--runs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = flag_value("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--alert-webhook", &hook.url()],
    );
    let url = an.url(heaptide_wire::INGEST_PATH);
    let mut all = sims(runs, seed, now_ms() + 5_000);
    for s in all.iter_mut().filter(|s| s.kind == Kind::Mid) {
        backfill(&url, s);
    }
    let end = Instant::now() + Duration::from_millis((WATCH_MS + 70_000) as u64);
    while Instant::now() < end {
        let now = now_ms();
        for s in all.iter_mut() {
            let over = now - s.leak_start > WATCH_MS;
            if now >= s.next_ms && s.paged.is_none() && !over {
                let sample = s.sample(now);
                let b = s.batch(vec![sample]);
                post_batch(&url, &b);
            }
        }
        for a in hook.alerts() {
            let svc = a["labels"]["service"].as_str().unwrap_or("");
            if a["status"] != "firing" {
                continue;
            }
            if let Some(s) = all
                .iter_mut()
                .find(|s| s.service == svc && s.paged.is_none())
            {
                s.paged = Some(now_ms());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    report(&all);
}

fn report(all: &[Sim]) {
    println!("| scenario | runway | paged after the leak's start | before exhaustion |");
    println!("|---|---|---|---|");
    let (mut leaks, mut within3, mut before, mut healthy, mut false_pages) = (0, 0, 0, 0, 0);
    for s in all {
        let after = s.paged.map(|p| (p - s.leak_start) as f64 / 1000.0);
        if s.kind.leaks() {
            leaks += 1;
            let exhaust = s.runway_min * 60.0;
            within3 += usize::from(after.is_some_and(|a| a <= 180.0));
            let in_time = after.is_some_and(|a| a < exhaust);
            before +=
                usize::from(in_time || (after.is_none() && exhaust > WATCH_MS as f64 / 1000.0));
            println!(
                "| {} | {:.0} min | {} | {} |",
                s.kind.name(),
                s.runway_min,
                after.map_or("not paged".into(), |a| format!("{a:.0} s")),
                if in_time { "yes" } else { "no" }
            );
        } else {
            healthy += 1;
            false_pages += usize::from(s.paged.is_some());
            if let Some(a) = after {
                println!("| {} | healthy | paged at {a:.0} s | |", s.kind.name());
            }
        }
    }
    println!(
        "\nleaks paged within 3 minutes: {within3} of {leaks}; \
         paged before exhaustion (or not exhausted while watched): {before} of {leaks}; \
         healthy instances paged: {false_pages} of {healthy}"
    );
}
