//! Slow clients against `analyzer serve` at its default settings, started
//! with a soft limit of 1,024 open files: an honest client's request times
//! and the ingest rate, with no attack and under `--connections` (10,000
//! by default) slow connections from one host, side by side in one run.
//!
//! `cargo run --release -p heaptide-tests --bin slow_clients [-- --connections 10000 --seconds 30 --kind slowloris]`
//!
//! `--kind` is `slowloris` (a header byte every 2 s), `idle` (nothing) or
//! `nonreader` (pipelined requests for the overview page, never read).
//! The attacker connects from 127.0.0.2; the honest client (a request
//! every 100 ms) and the ingest (four agents, 100 batches a second in
//! all, beyond the default per-agent limit of 5 a second, so it runs with
//! `--rate-limit 1000`) from 127.0.0.3 to 127.0.0.6.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use heaptide_testkit::hostile::{
    analyzer_at_1024, probe, quantile, raise_fd_limit, Attack, Behaviour,
};
use heaptide_testkit::raw;
use heaptide_tests::*;

/// An agent fleet's ingest: four agents, on 127.0.0.3 to 127.0.0.6, each
/// sending a batch every 40 ms (100 a second in all) while `run` holds; returns the
/// batches acknowledged per second and each batch's time to
/// acknowledgement.
fn ingest(an: &Proc, run: &AtomicBool) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let per_agent: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let agents: Vec<_> = (0..4)
            .map(|a: u8| {
                s.spawn(move || {
                    let (mut times, mut seq) = (Vec::new(), 0);
                    while run.load(Ordering::Relaxed) {
                        seq += 1;
                        let now = now_ms();
                        let agent = fixtures::agent("rate", &format!("r-{a}"), 1, now - 60_000);
                        let mut b = fixtures::batch(agent, seq, now);
                        b.samples
                            .push(fixtures::metrics(now, &[("fds", seq as f64)]));
                        let t = Instant::now();
                        let body = serde_json::to_vec(&b).unwrap();
                        let from = IpAddr::from([127, 0, 0, 3 + a]);
                        let sent =
                            raw::post_from(from, an.addr, heaptide_wire::INGEST_PATH, &[], &body);
                        let ok = matches!(sent.map(|r| r.status), Ok(200));
                        times.push(if ok { t.elapsed() } else { Duration::MAX });
                        std::thread::sleep(Duration::from_millis(40).saturating_sub(t.elapsed()));
                    }
                    times
                })
            })
            .collect();
        agents.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let times: Vec<Duration> = per_agent.into_iter().flatten().collect();
    let acked = times.iter().filter(|t| **t != Duration::MAX).count();
    (acked as f64 / started.elapsed().as_secs_f64(), times)
}

/// The honest client's times, and the ingest's rate and times, over
/// `span`.
fn measure(an: &Proc, span: Duration) -> (Vec<Duration>, (f64, Vec<Duration>)) {
    let run = Arc::new(AtomicBool::new(true));
    std::thread::scope(|s| {
        let rate = s.spawn(|| ingest(an, &run));
        let times = probe(an.addr, span, Duration::from_millis(100));
        run.store(false, Ordering::Relaxed);
        (times, rate.join().unwrap())
    })
}

fn ms(t: Duration) -> f64 {
    t.as_secs_f64().min(999.0) * 1e3
}

fn report(what: &str, times: &[Duration], (rate, ingest): &(f64, Vec<Duration>)) {
    let failed = |t: &[Duration]| t.iter().filter(|t| **t == Duration::MAX).count();
    println!(
        "| {what} | {} | {:.1} | {:.1} | {:.1} | {} | {rate:.0} | {:.1} | {} |",
        times.len(),
        ms(quantile(times, 0.5)),
        ms(quantile(times, 0.99)),
        ms(quantile(times, 1.0)),
        failed(times),
        ms(quantile(ingest, 0.99)),
        failed(ingest),
    );
}

fn main() {
    let n: usize = flag_value("--connections").map_or(10_000, |v| v.parse().unwrap());
    let secs: u64 = flag_value("--seconds").map_or(30, |v| v.parse().unwrap());
    let behaviour = match flag_value("--kind").as_deref().unwrap_or("slowloris") {
        "idle" => Behaviour::Idle,
        "nonreader" => Behaviour::NonReader {
            path: "/",
            requests: 2000,
        },
        _ => Behaviour::Slowloris,
    };
    let hard = raise_fd_limit();
    assert!(
        hard as usize > n + 1000,
        "the hard open-file limit {hard} is too low for {n} connections"
    );
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_at_1024(dir.path(), &["--rate-limit", "1000"]);
    let span = Duration::from_secs(secs);
    println!("| run | requests | p50 ms | p99 ms | max ms | failed | batches/s acknowledged (100 sent) | batch p99 ms | batches failed |\n|---|---|---|---|---|---|---|---|---|");
    let (times, rate) = measure(&an, span);
    report("no attack", &times, &rate);
    let attacker = IpAddr::from([127, 0, 0, 2]);
    let attack = Attack::start(behaviour, attacker, an.addr, n);
    let t = attack.wait_opened(n, Duration::from_secs(120));
    let (times, rate) = measure(&an, span);
    report(&format!("{n} {behaviour:?} connections"), &times, &rate);
    let t2 = attack.tally();
    println!(
        "\nopened {}, failed {}, closed by the server during the run {}; analyzer peak RSS {:.0} MiB",
        t.opened,
        t.failed,
        t2.closed_after.len(),
        resident(an.child.id()).peak_mib
    );
}
