//! Verdicts that cannot wait, on a real SQLite store: a leak that starts
//! late in a long lifetime is found by the recent look while its agent
//! flags it urgent, and not without the flag; a resource at its limit is
//! `exhausted` with only a few samples.

use heaptide_analyzer::detect::{analyze, LeakVerdict, Options, Resource};
use heaptide_analyzer::ingest;
use heaptide_analyzer::select::{now_ms, Selector};
use heaptide_analyzer::store::{SqliteStore, Store};
use heaptide_testkit::fixtures;

/// Sends `(ts, fds, urgent)` samples of an instance whose process started
/// at `started`, sampling at a configured 10 s.
fn send(store: &SqliteStore, instance: &str, started: i64, samples: &[(i64, f64, f64)]) {
    let now = now_ms();
    for (seq, chunk) in samples.chunks(100).enumerate() {
        let agent = fixtures::agent("svc", instance, 1, started);
        let mut batch = fixtures::batch(agent, seq as u64 + 1, chunk[chunk.len() - 1].0);
        for &(ts, fds, urgent) in chunk {
            batch.samples.push(fixtures::metrics(
                ts,
                &[
                    ("fds", fds),
                    ("limit.nofile.soft", 1024.0),
                    ("agent.urgent", urgent),
                    ("agent.interval_seconds", 10.0),
                ],
            ));
        }
        store
            .ingest(
                &ingest::accept(batch, &ingest::Limits::default(), now).unwrap(),
                now,
            )
            .unwrap();
    }
}

/// Two hours flat at 100 fds with a wobble of one, every 10 s, then an
/// fd leak of 2 a second sampled every 2 s for the last `leak_secs`.
fn late_leak(leak_secs: i64, urgent: f64) -> (i64, Vec<(i64, f64, f64)>) {
    let now = now_ms();
    let leak_start = now - leak_secs * 1000;
    let started = leak_start - 2 * 3_600_000;
    let mut out: Vec<(i64, f64, f64)> = (0..720)
        .map(|i| (started + i * 10_000, 100.0 + (i % 2) as f64, 0.0))
        .collect();
    let mut ts = leak_start;
    while ts <= now - 1000 {
        let fds = 100.0 + 2.0 * (ts - leak_start) as f64 / 1000.0;
        out.push((ts, fds, urgent));
        ts += 2000;
    }
    (started, out)
}

fn fds_finding(store: &SqliteStore, instance: &str) -> heaptide_analyzer::detect::Finding {
    let now = now_ms();
    let sel = Selector::all(now - 24 * 3_600_000, now);
    analyze(store, &sel, &Options::default())
        .unwrap()
        .findings
        .into_iter()
        .find(|f| f.instance == instance && f.resource == Resource::Fds)
        .unwrap()
}

#[test]
fn a_late_fast_leak_is_found_by_the_recent_look_only_when_urgent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).unwrap();
    let (started, urgent) = late_leak(100, 1.0);
    send(&store, "urgent", started, &urgent);
    let (started, calm) = late_leak(100, 0.0);
    send(&store, "calm", started, &calm);

    let f = fds_finding(&store, "urgent");
    assert_eq!(f.verdict, LeakVerdict::Leak, "{}", f.reason);
    assert!(f.reason.contains("last 15 minutes"), "{}", f.reason);
    // 300 fds in 100 s; about 720 left at 2 a second is about 6 minutes.
    let tte = f.time_to_exhaustion_seconds.unwrap();
    assert!((200.0..700.0).contains(&tte), "{tte}");
    // The same data without the agent's word waits for the day's envelope.
    let f = fds_finding(&store, "calm");
    assert_ne!(f.verdict, LeakVerdict::Leak, "{}", f.reason);
}

#[test]
fn a_resource_at_its_limit_is_exhausted_after_a_handful_of_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.db")).unwrap();
    let now = now_ms();
    let samples: Vec<(i64, f64, f64)> = (0..4)
        .map(|i| (now - 8000 + i * 2000, 1024.0, 1.0))
        .collect();
    send(&store, "pinned", now - 10_000, &samples);
    let f = fds_finding(&store, "pinned");
    assert_eq!(f.verdict, LeakVerdict::Exhausted, "{}", f.reason);
    assert_eq!(f.time_to_exhaustion_seconds, Some(0.0));
    assert!(f.reason.contains("RLIMIT_NOFILE"), "{}", f.reason);
}
