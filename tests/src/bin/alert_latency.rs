//! Detection to notification: how long after the first sample that makes
//! a leak significant its webhook is called.
//!
//! `cargo run --release -p heaptide-tests --bin alert_latency [-- --services 5 --every 10s]`
//!
//! A real `analyzer serve` evaluates every `--every`, with the critical
//! leak rule's `for` equal to one interval (the default: 1m at the default
//! 1m interval), and sends to a real receiver on 127.0.0.1. Each simulated
//! service starts a process that, in real time, opens one more fd a second
//! against a limit of 1,024 and reports every second (a leak on every
//! request, from the start). After every batch the engine is asked
//! afresh (`/v1/leaks?fresh=true`) whether the leak is significant and
//! critical yet: that batch is the moment of detection. The latency is from
//! that moment to the receiver's first firing alert for the service.

use std::time::{Duration, Instant};

use heaptide_tests::receiver::{Answer, Receiver};
use heaptide_tests::*;

/// One sample at `ts` of a process started at `started`, of `fds(ts)`.
fn batch(service: &str, seq: u64, started: i64, ts: i64, fds: f64) -> heaptide_wire::Batch {
    let agent = fixtures::agent(service, "i-1", 1, started);
    let mut b = fixtures::batch(agent, seq, ts);
    b.samples.push(fixtures::metrics(
        ts,
        &[("fds", fds), ("limit.nofile.soft", 1024.0)],
    ));
    b
}

fn critical(an: &Proc, service: &str) -> bool {
    let v = get_json(&an.url(&format!("/v1/leaks?fresh=true&service={service}")));
    v["findings"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["severity"] == "critical"))
}

/// `analyzer serve` evaluating every `every`, the critical leak rule's
/// `for` one interval, sending to `hook`.
fn serve(dir: &std::path::Path, every: &str, hook: &Receiver) -> Proc {
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "rate_limit = 100.0\n[alerts.leak_critical]\nwithin = \"24h\"\nfor = \"{every}\"\n"
        ),
    )
    .unwrap();
    analyzer(
        dir,
        &dir.join("h.db"),
        "127.0.0.1:0",
        &[
            "--evaluate-every",
            every,
            "--config",
            cfg.to_str().unwrap(),
            "--alert-webhook",
            &hook.url(),
        ],
    )
}

/// The table of each service's times, from its process's start, and the
/// summary.
fn report(
    names: &[String],
    detected: &[Option<Instant>],
    notified: &[Option<Instant>],
    started: &[Instant],
    interval: Duration,
    every: &str,
) {
    println!("| service | leak significant after start | notified after start | detection to notification | in evaluation intervals ({every}) |");
    println!("|---|---|---|---|---|");
    let mut lat = Vec::new();
    for i in 0..names.len() {
        let (Some(d), Some(n)) = (detected[i], notified[i]) else {
            println!(
                "| {} | {:?} | {:?} | not measured | |",
                names[i],
                detected[i].map(|d| d - started[i]),
                notified[i].map(|n| n - started[i])
            );
            continue;
        };
        let l = n.saturating_duration_since(d).as_secs_f64();
        lat.push(l);
        println!(
            "| {} | {:.0} s | {:.0} s | {:.1} s | {:.2} |",
            names[i],
            (d - started[i]).as_secs_f64(),
            (n - started[i]).as_secs_f64(),
            l,
            l / interval.as_secs_f64()
        );
    }
    lat.sort_by(f64::total_cmp);
    if let (Some(med), Some(max)) = (lat.get(lat.len() / 2), lat.last()) {
        println!(
            "\nmedian {med:.1} s ({:.2} intervals), max {max:.1} s ({:.2} intervals); target: under 2 intervals",
            med / interval.as_secs_f64(),
            max / interval.as_secs_f64()
        );
    }
}

fn main() {
    let services: usize = flag_value("--services")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let every = flag_value("--every").unwrap_or_else(|| "10s".into());
    let interval = humantime::parse_duration(&every).expect("--every is a duration");
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let an = serve(dir.path(), &every, &hook);
    let url = an.url(heaptide_wire::INGEST_PATH);
    let t0 = now_ms();
    let names: Vec<String> = (0..services).map(|i| format!("svc-{i}")).collect();
    // The processes start spread over one interval, so that each meets the
    // evaluation schedule at another phase.
    let step = heaptide_analyzer::select::ms(interval) / services.max(1) as i64;
    let starts: Vec<i64> = (0..services as i64).map(|i| t0 + i * step).collect();
    let mut detected: Vec<Option<Instant>> = vec![None; services];
    let mut notified: Vec<Option<Instant>> = vec![None; services];
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut seq = 1;
    while notified.iter().any(Option::is_none) && Instant::now() < deadline {
        let now = now_ms();
        for (i, s) in names.iter().enumerate().filter(|(i, _)| now >= starts[*i]) {
            let fds = 20.0 + ((now - starts[i]) / 1000) as f64;
            post_batch(&url, &batch(s, seq, starts[i], now, fds));
            if detected[i].is_none() && critical(&an, s) {
                detected[i] = Some(Instant::now());
            }
        }
        for g in hook.received() {
            let svc = g.body["groupLabels"]["service"].as_str().unwrap_or("");
            if let Some(i) = names.iter().position(|n| n == svc) {
                notified[i].get_or_insert(g.at);
            }
        }
        seq += 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let started: Vec<Instant> = starts.iter().map(|s| an_start(*s)).collect();
    report(&names, &detected, &notified, &started, interval, &every);
}

/// The `Instant` of the wall-clock `start_ms`.
fn an_start(start_ms: i64) -> Instant {
    Instant::now() - Duration::from_millis((now_ms() - start_ms).max(0) as u64)
}
